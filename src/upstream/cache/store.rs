//! The store: answers in a `quick_cache` bounded in bytes (key, answer and a fixed overhead per
//! entry), counted in the pool's cache metrics.

use bytes::Bytes;
use http::HeaderValue;
use prometheus::{IntCounter, IntGauge};
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::ops::Range;
use std::time::Instant;

/// Bytes counted per entry beyond its key and answer: the entry's own fields and the store's
/// bookkeeping.
pub const ENTRY_OVERHEAD: u64 = 128;

/// One kept answer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The answer's body as the backend sent it.
    pub body: Bytes,
    /// Where the JSON-RPC answer's id is in `body`: the asking client's id takes its place.
    pub id: Option<Range<usize>>,
    /// A beacon answer's `Eth-Consensus-Version` header, sent with it again.
    pub consensus_version: Option<HeaderValue>,
    /// When the answer stops being served; `None`: never (it cannot change).
    pub expires: Option<Instant>,
}

impl Entry {
    /// Whether the answer is past its lifetime.
    fn expired(&self) -> bool {
        self.expires.is_some_and(|at| at <= Instant::now())
    }

    /// The answer for a client whose request's id is `id` (its JSON text): the kept answer with
    /// that id in place of the first asker's.
    pub fn answer_for(&self, id: &[u8]) -> Bytes {
        let Some(at) = &self.id else {
            return self.body.clone();
        };
        let mut out = Vec::with_capacity(self.body.len() + id.len());
        out.extend_from_slice(&self.body[..at.start]);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.body[at.end..]);
        Bytes::from(out)
    }
}

/// The pool's cache metrics.
#[derive(Clone)]
pub struct CacheMetrics {
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub bytes: IntGauge,
    pub entries: IntGauge,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Entry> for ByBytes {
    fn weight(&self, key: &String, entry: &Entry) -> u64 {
        key.len() as u64 + entry.body.len() as u64 + ENTRY_OVERHEAD
    }
}

/// A pool's answers, at most `capacity` bytes.
pub struct AnswerCache {
    store: Cache<String, Entry, ByBytes>,
    capacity: u64,
    metrics: CacheMetrics,
}

impl AnswerCache {
    pub fn new(capacity: u64, metrics: CacheMetrics) -> Self {
        // An estimate of how many entries fit, for the store's first allocation.
        let items = usize::try_from(capacity / 2048)
            .unwrap_or(usize::MAX)
            .clamp(16, 1 << 20);
        metrics.bytes.set(0);
        metrics.entries.set(0);
        AnswerCache {
            store: Cache::with_weighter(items, capacity, ByBytes),
            capacity,
            metrics,
        }
    }

    /// The largest answer kept: a sixteenth of the capacity (larger ones are passed on, not kept).
    pub fn max_entry(&self) -> usize {
        usize::try_from(self.capacity / 16).unwrap_or(usize::MAX)
    }

    /// The answer kept under `key`, counted as a hit or a miss.
    pub fn get(&self, key: &str) -> Option<Entry> {
        let mut found = self.store.get(key);
        if found.as_ref().is_some_and(Entry::expired) {
            // Only while still expired: a fresh answer kept meanwhile by another request stays.
            self.store.remove_if(key, Entry::expired);
            self.count_held();
            found = None;
        }
        match found {
            Some(_) => self.metrics.hits.inc(),
            None => self.metrics.misses.inc(),
        }
        found
    }

    /// Keeps `entry` under `key`, unless it is larger than [`AnswerCache::max_entry`].
    pub fn insert(&self, key: String, entry: Entry) {
        if entry.body.len() + key.len() > self.max_entry() {
            return;
        }
        self.store.insert(key, entry);
        self.count_held();
    }

    /// Sets the bytes and entries gauges to what the store holds now.
    fn count_held(&self) {
        self.metrics
            .bytes
            .set(i64::try_from(self.store.weight()).unwrap_or(i64::MAX));
        self.metrics
            .entries
            .set(i64::try_from(self.store.len()).unwrap_or(i64::MAX));
    }

    /// Bytes held now (keys and overhead included).
    pub fn bytes(&self) -> u64 {
        self.store.weight()
    }

    pub fn entries(&self) -> usize {
        self.store.len()
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> CacheMetrics {
        let gauge = |name: &str| IntGauge::new(name, "test").unwrap();
        let counter = |name: &str| IntCounter::new(name, "test").unwrap();
        CacheMetrics {
            hits: counter("hits"),
            misses: counter("misses"),
            bytes: gauge("bytes"),
            entries: gauge("entries"),
        }
    }

    fn entry(body: &str) -> Entry {
        Entry {
            body: Bytes::from(body.to_string()),
            id: body.find("\"id\":").map(|at| at + 5..at + 6),
            consensus_version: None,
            expires: None,
        }
    }

    #[test]
    fn an_answer_past_its_lifetime_is_a_miss_and_goes() {
        let cache = AnswerCache::new(1024 * 1024, metrics());
        let body = r#"{"data":{"SECONDS_PER_SLOT":"12"}}"#;
        let fresh = Entry {
            expires: Some(Instant::now() + std::time::Duration::from_secs(60)),
            ..entry(body)
        };
        cache.insert("fresh".into(), fresh);
        let stale = Entry {
            expires: Some(Instant::now()),
            ..entry(body)
        };
        cache.insert("stale".into(), stale);
        assert!(cache.get("fresh").is_some());
        assert!(cache.get("stale").is_none(), "served past its lifetime");
        assert_eq!(cache.entries(), 1, "the stale answer went");
        assert_eq!(cache.metrics.entries.get(), 1, "the entries gauge follows");
        assert_eq!(
            u64::try_from(cache.metrics.bytes.get()).ok(),
            Some(cache.bytes()),
            "the bytes gauge follows"
        );
    }

    #[test]
    fn the_store_stays_within_its_bytes_under_many_keys() {
        let capacity = 1024 * 1024;
        let m = metrics();
        let cache = AnswerCache::new(capacity, m.clone());
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":"{}"}}"#,
            "ab".repeat(100)
        );
        for n in 0..100_000u64 {
            let key = format!("chain 1\neth_getBlockByNumber\n[\"0x{n:x}\",false]");
            cache.insert(key, entry(&body));
            assert!(
                cache.bytes() <= capacity,
                "{} bytes after {n}",
                cache.bytes()
            );
        }
        assert!(cache.entries() > 1000, "it holds many: {}", cache.entries());
        assert!(cache.entries() < 100_000, "it evicted some");
        assert_eq!(m.bytes.get() as u64, cache.bytes());
        assert_eq!(m.entries.get() as usize, cache.entries());
        // The newest keys are mostly there, the oldest mostly gone.
        let last = "chain 1\neth_getBlockByNumber\n[\"0x1869f\",false]";
        assert!(cache.get(last).is_some());
        assert_eq!(m.hits.get(), 1);
    }

    #[test]
    fn an_answer_over_a_sixteenth_is_not_kept() {
        let cache = AnswerCache::new(64 * 1024, metrics());
        assert_eq!(cache.max_entry(), 4096);
        cache.insert("big".into(), entry(&"x".repeat(4096)));
        assert!(cache.get("big").is_none());
        cache.insert("small".into(), entry(&"x".repeat(4000)));
        assert!(cache.get("small").is_some());
    }

    #[test]
    fn a_hit_carries_the_asking_clients_id() {
        let e = entry(r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#);
        for id in [
            "7",
            "\"abc\"",
            "123456789012345678901234567890",
            "null",
            "-1.5e3",
            "\"\\u00e9\"",
        ] {
            let answer = e.answer_for(id.as_bytes());
            let want = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0x1"}}"#);
            assert_eq!(answer, want.as_bytes());
        }
    }
}

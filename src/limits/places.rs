//! What a listener has in flight: requests (in all, and per client address) and WebSocket
//! sessions, each against its cap. A request takes its places when it arrives and gives them back
//! when it is dropped, however it ends: answered, refused, or cut short by an error or a panic in
//! a hook, so no failure can leave a place taken for ever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Buckets of the per-client request count: two addresses sharing a bucket share its count,
/// which can only make the limit stricter.
pub const CLIENT_BUCKETS: usize = 4096;

/// The listener's counts.
#[derive(Debug)]
pub struct Counts {
    requests: AtomicUsize,
    websockets: AtomicUsize,
    per_client: Box<[AtomicUsize]>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            requests: AtomicUsize::new(0),
            websockets: AtomicUsize::new(0),
            per_client: (0..CLIENT_BUCKETS).map(|_| AtomicUsize::new(0)).collect(),
        }
    }
}

/// Which count a place is in.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    Requests,
    WebSockets,
    /// The bucket of one client address.
    Client(usize),
}

impl Counts {
    fn counter(&self, count: Count) -> &AtomicUsize {
        match count {
            Count::Requests => &self.requests,
            Count::WebSockets => &self.websockets,
            Count::Client(bucket) => &self.per_client[bucket % CLIENT_BUCKETS],
        }
    }

    /// Takes a place in `count`; the flag says whether it was within `max` (a place over the cap
    /// is still held until dropped, so the count stays right).
    pub fn take(self: &Arc<Self>, count: Count, max: usize) -> (Place, bool) {
        let before = self.counter(count).fetch_add(1, Ordering::Relaxed);
        let place = Place {
            counts: self.clone(),
            count,
        };
        (place, before < max)
    }

    /// Places taken in `count` now.
    #[cfg(test)]
    fn taken(&self, count: Count) -> usize {
        self.counter(count).load(Ordering::Relaxed)
    }
}

/// One place in a count, given back when dropped.
#[derive(Debug)]
pub struct Place {
    counts: Arc<Counts>,
    count: Count,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.counts
            .counter(self.count)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bucket of the per-client count a client address falls in.
pub fn client_bucket(ip: std::net::IpAddr) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut h);
    (h.finish() as usize) % CLIENT_BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_come_back_however_their_holder_ends() {
        let counts = Arc::new(Counts::default());
        let (a, ok) = counts.take(Count::Requests, 1);
        assert!(ok);
        let (b, ok) = counts.take(Count::Requests, 1);
        assert!(!ok, "over the cap");
        drop(b);
        assert_eq!(counts.taken(Count::Requests), 1);
        // A holder that panics gives its place back while unwinding.
        let held = std::panic::catch_unwind(|| {
            let _place = counts.take(Count::Client(7), 10);
            panic!("a hook failed");
        });
        assert!(held.is_err());
        assert_eq!(counts.taken(Count::Client(7)), 0);
        drop(a);
        assert_eq!(counts.taken(Count::Requests), 0);
    }
}

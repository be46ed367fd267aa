//! A request's way through the cache: whether the cache may answer it ([`look_up`]) and, when
//! it could not, its answer gathered as it streams to the client and kept at its end if the
//! answer-side rules hold ([`Fill`]).

use super::beacon::{self, BeaconRule};
use super::standing::Standing;
use super::store::{AnswerCache, Entry};
use crate::jsonrpc::cacheable::{self, Rule};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;

/// The header beacon nodes name the fork of a block or state with.
pub const CONSENSUS_VERSION: &str = "eth-consensus-version";

/// What a request asks, as far as the cache is concerned.
pub enum Asked<'a> {
    /// One JSON-RPC call with an id (`params`: their raw text; `id`: its raw text), sent to
    /// `path_and_query` (passed on to the node after its URL's path: a node behind a provider's
    /// proxy may be another network on another path, so the key holds it).
    Call {
        path_and_query: &'a str,
        method: &'a str,
        params: Option<&'a str>,
        id: &'a [u8],
    },
    /// A beacon `GET` without a body.
    Get {
        path: &'a str,
        path_and_query: &'a str,
        /// The request takes JSON (no `Accept`, or one that names JSON or anything, not SSZ).
        takes_json: bool,
    },
}

/// What the cache does for a request.
pub enum Lookup {
    /// Answered: the body (with the asker's id) and the beacon fork header to send.
    Hit {
        body: Bytes,
        consensus_version: Option<HeaderValue>,
    },
    /// Not yet kept: gather the answer.
    Miss(Fill),
    /// Never kept.
    Pass,
}

#[derive(Debug, Clone, Copy)]
enum Want {
    Call(Rule),
    Get(BeaconRule),
}

/// An answer being gathered to be kept.
pub struct Fill {
    key: String,
    want: Want,
    /// The network the key names: only a backend on it may fill the entry.
    network: Arc<str>,
    gathered: BytesMut,
    /// The request's id (JSON text), which a kept JSON-RPC answer must carry.
    asked_id: Vec<u8>,
    limit: usize,
    consensus_version: Option<HeaderValue>,
}

/// Whether an `Accept` header takes a JSON answer.
pub fn takes_json(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return accept.is_none();
    };
    let accept = accept.to_ascii_lowercase();
    !accept.contains("octet-stream")
        && (accept.contains("json") || accept.contains("*/*") || accept.trim().is_empty())
}

/// Looks `asked` up in `cache`, the pool's traffic being on `network` (`None`: no backend is
/// up, so nothing is answered or kept).
pub fn look_up(
    cache: &AnswerCache,
    network: impl FnOnce() -> Option<Arc<str>>,
    asked: &Asked,
) -> Lookup {
    let (want, request) = match asked {
        Asked::Call {
            path_and_query,
            method,
            params,
            ..
        } => match cacheable::rule(method, *params) {
            Some(rule) => (
                Want::Call(rule),
                format!("POST {path_and_query}\n{method}\n{}", params.unwrap_or("")),
            ),
            None => return Lookup::Pass,
        },
        Asked::Get {
            path,
            path_and_query,
            takes_json,
        } => match beacon::rule(path) {
            Some(rule) if *takes_json => (Want::Get(rule), format!("GET {path_and_query}")),
            _ => return Lookup::Pass,
        },
    };
    // The pool's network is looked up only for a request the cache may answer.
    let Some(network) = network() else {
        return Lookup::Pass;
    };
    let key = format!("{network}\n{request}");
    match cache.get(&key) {
        Some(entry) => Lookup::Hit {
            body: match asked {
                Asked::Call { id, .. } => entry.answer_for(id),
                Asked::Get { .. } => entry.body.clone(),
            },
            consensus_version: entry.consensus_version,
        },
        None => Lookup::Miss(Fill {
            key,
            want,
            network,
            gathered: BytesMut::new(),
            asked_id: match asked {
                Asked::Call { id, .. } => id.to_vec(),
                Asked::Get { .. } => Vec::new(),
            },
            limit: cache.max_entry(),
            consensus_version: None,
        }),
    }
}

impl Fill {
    /// Looks at an answer's header (of each attempt): `false` when the answer cannot be kept
    /// (not a 200, compressed, a beacon answer that is not JSON).
    pub fn answer_header(&mut self, status: u16, headers: &HeaderMap) -> bool {
        self.gathered.clear();
        let plain = headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .all(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let json = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
        self.consensus_version = headers.get(CONSENSUS_VERSION).cloned();
        status == 200 && plain && (json || matches!(self.want, Want::Call(_)))
    }

    /// Bytes of the answer gathered so far.
    pub fn gathered(&self) -> usize {
        self.gathered.len()
    }

    /// Adds a piece of the answer; `false` once it is too large to keep.
    pub fn gather(&mut self, chunk: &[u8]) -> bool {
        if self.gathered.len() + chunk.len() > self.limit {
            return false;
        }
        self.gathered.extend_from_slice(chunk);
        true
    }

    /// The whole answer came from a backend with `standing`: it is kept if the rules hold and
    /// the backend is on the key's network.
    pub fn keep(self, cache: &AnswerCache, standing: Option<&Standing>) {
        let Some(standing) = standing.filter(|s| s.network == self.network) else {
            return;
        };
        let body = self.gathered.freeze();
        let id = match self.want {
            Want::Call(rule) => {
                match cacheable::keepable(rule, &body, standing.known, &self.asked_id) {
                    Some(id) => Some(id),
                    None => return,
                }
            }
            Want::Get(rule) if beacon::keepable(rule, &body) => None,
            Want::Get(_) => return,
        };
        let expires = match self.want {
            Want::Get(beacon::BeaconRule::ForAnEpoch) => {
                Some(std::time::Instant::now() + beacon::SPEC_LIFETIME)
            }
            _ => None,
        };
        let entry = Entry {
            body,
            id,
            consensus_version: self.consensus_version,
            expires,
        };
        cache.insert(self.key, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::cacheable::Known;
    use prometheus::{IntCounter, IntGauge};

    fn cache() -> AnswerCache {
        let metrics = super::super::store::CacheMetrics {
            hits: IntCounter::new("h", "h").unwrap(),
            misses: IntCounter::new("m", "m").unwrap(),
            bytes: IntGauge::new("b", "b").unwrap(),
            entries: IntGauge::new("e", "e").unwrap(),
        };
        AnswerCache::new(1 << 20, metrics)
    }

    fn standing(network: &str, finalized: Option<u64>) -> Standing {
        Standing {
            network: network.into(),
            known: Known {
                chain_id: Some(1),
                finalized,
            },
        }
    }

    fn call<'a>(id: &'a str) -> Asked<'a> {
        at("/", id)
    }

    fn at<'a>(path_and_query: &'a str, id: &'a str) -> Asked<'a> {
        Asked::Call {
            path_and_query,
            method: "eth_getBlockByNumber",
            params: Some(r#"["0x10",false]"#),
            id: id.as_bytes(),
        }
    }

    fn fill(cache: &AnswerCache, asked: &Asked, network: &str) -> Fill {
        match look_up(cache, || Some(network.into()), asked) {
            Lookup::Miss(fill) => fill,
            _ => panic!("expected a miss"),
        }
    }

    fn answered(cache: &AnswerCache, asked: &Asked, network: &str) -> Option<Bytes> {
        match look_up(cache, || Some(network.into()), asked) {
            Lookup::Hit { body, .. } => Some(body),
            _ => None,
        }
    }

    const ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"number":"0x10"}}"#;

    fn json_200() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        h
    }

    #[test]
    fn a_final_answer_from_the_keys_network_is_kept_and_served_with_the_askers_id() {
        let cache = cache();
        let mut f = fill(&cache, &call("1"), "chain 1");
        assert!(f.answer_header(200, &json_200()));
        assert!(f.gather(ANSWER.as_bytes()));
        f.keep(&cache, Some(&standing("chain 1", Some(16))));
        let hit = answered(&cache, &call("\"x\""), "chain 1").expect("kept");
        assert_eq!(hit, ANSWER.replace("\"id\":1", "\"id\":\"x\"").as_bytes());
        // Another network has its own entries.
        assert!(answered(&cache, &call("1"), "chain 5").is_none());
        // So has another path: behind a provider's proxy, it may reach another network.
        for path in ["/holesky", "/?network=holesky", "//"] {
            assert!(
                answered(&cache, &at(path, "1"), "chain 1").is_none(),
                "{path}"
            );
        }
    }

    #[test]
    fn answers_that_may_change_or_come_from_elsewhere_are_not_kept() {
        let cache = cache();
        let keep = |status: u16, network: &str, finalized: Option<u64>| {
            let mut f = fill(&cache, &call("1"), "chain 1");
            if f.answer_header(status, &json_200()) && f.gather(ANSWER.as_bytes()) {
                f.keep(&cache, Some(&standing(network, finalized)));
            }
        };
        keep(500, "chain 1", Some(16));
        keep(200, "chain 5", Some(16));
        keep(200, "chain 1", Some(15));
        keep(200, "chain 1", None);
        assert!(answered(&cache, &call("1"), "chain 1").is_none());
        let f = fill(&cache, &call("1"), "chain 1");
        f.keep(&cache, None);
        let mut gzip = json_200();
        gzip.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let mut f = fill(&cache, &call("1"), "chain 1");
        assert!(!f.answer_header(200, &gzip));
        assert!(matches!(look_up(&cache, || None, &call("1")), Lookup::Pass));
    }

    #[test]
    fn beacon_reads_need_json_both_ways() {
        let cache = cache();
        let get = |takes_json| Asked::Get {
            path: "/eth/v1/config/spec",
            path_and_query: "/eth/v1/config/spec",
            takes_json,
        };
        assert!(matches!(
            look_up(&cache, || Some("g".into()), &get(false)),
            Lookup::Pass
        ));
        let mut f = fill(&cache, &get(true), "g");
        assert!(!f.answer_header(200, &HeaderMap::new()), "SSZ or no type");
        assert!(f.answer_header(200, &json_200()));
        assert!(f.gather(br#"{"data":{}}"#));
        f.keep(&cache, Some(&standing("g", None)));
        assert!(answered(&cache, &get(true), "g").is_some());
        assert!(takes_json(None));
        for (accept, json) in [
            ("application/json", true),
            ("*/*", true),
            ("application/octet-stream", false),
            ("application/octet-stream;q=1,application/json;q=0.9", false),
            ("text/html", false),
        ] {
            let value = HeaderValue::from_static(accept);
            assert_eq!(takes_json(Some(&value)), json, "{accept}");
        }
    }
}

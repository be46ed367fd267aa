//! JSON-RPC method policy and batch limits for execution pools, as pure functions.
//!
//! A request passes untouched when a cheap scan shows only permitted methods. Otherwise it is
//! parsed, and: a denied single request is answered by the gateway; in a batch, the denied elements
//! are taken out and answered in place, the others go to the backend, and [`merge`] puts the
//! backend's answers and the gateway's errors back in the original order.
//!
//! The scan is only trusted where it cannot be fooled: method keys are found case-insensitively
//! (Go's JSON decoder, used by geth, matches keys that way), and a body with any backslash (an
//! escape that could spell `method` or a method name differently) is always parsed.

use super::rpc::{find_ci, skip_ws};
use serde_json::{json, Value};

/// Method prefixes denied unless a pool's `allow` list names them: node administration, debugging,
/// key management, mining, the engine API and the mempool.
pub const DEFAULT_DENY: &[&str] = &[
    "admin_*",
    "debug_*",
    "personal_*",
    "miner_*",
    "engine_*",
    "txpool_*",
];
/// JSON-RPC error code for a method the pool's policy refuses.
pub const METHOD_DENIED: i64 = -32601;
/// JSON-RPC error code for a refused request (too large a batch, not JSON-RPC).
pub const INVALID_REQUEST: i64 = -32600;

/// Which methods a pool forwards. Patterns are exact names or prefixes ending in `*`, compared
/// without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodPolicy {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Largest batch forwarded.
    pub max_batch: usize,
}

fn matches(pattern: &str, method: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => {
            method.len() >= prefix.len()
                && method[..prefix.len()].eq_ignore_ascii_case(prefix)
                && method.is_char_boundary(prefix.len())
        }
        None => pattern.eq_ignore_ascii_case(method),
    }
}

impl MethodPolicy {
    pub fn permits(&self, method: &str) -> bool {
        let allowed = self.allow.iter().any(|p| matches(p, method));
        if !self.allow.is_empty() && !allowed {
            return false;
        }
        if self.deny.iter().any(|p| matches(p, method)) {
            return false;
        }
        // The default denials yield only to an explicit allow entry.
        allowed || !DEFAULT_DENY.iter().any(|p| matches(p, method))
    }
}

/// What to do with a request body.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Forward as it is.
    Pass,
    /// Answer it here (every method denied, or an invalid request); no backend sees it.
    Answer(Vec<u8>),
    /// Forward `body` (the permitted elements of a batch) and merge the answer with `plan`.
    Rewrite { body: Vec<u8>, plan: Vec<Slot> },
}

/// One element of the client's batch: answered by the backend, or by the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Forwarded,
    Answered(Value),
}

/// Decides what to do with a JSON-RPC request body.
pub fn inspect(body: &[u8], policy: &MethodPolicy) -> Decision {
    if let Some(decision) = quick_pass(body, policy) {
        return decision;
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        // Not JSON: the backend will say so in its own words; nothing here could be a method.
        return if body.contains(&b'\\') || find_ci(body, b"\"method\"").is_some() {
            Decision::Answer(
                error(&Value::Null, INVALID_REQUEST, "request is not valid JSON")
                    .to_string()
                    .into_bytes(),
            )
        } else {
            Decision::Pass
        };
    };
    match request {
        Value::Array(items) => {
            if items.len() > policy.max_batch {
                let message = format!(
                    "batch of {} requests; this gateway takes at most {}",
                    items.len(),
                    policy.max_batch
                );
                return Decision::Answer(
                    error(&Value::Null, INVALID_REQUEST, &message)
                        .to_string()
                        .into_bytes(),
                );
            }
            let mut plan = Vec::with_capacity(items.len());
            let mut forward = Vec::new();
            for item in items {
                match refusal(&item, policy) {
                    Some(answer) => plan.push(Slot::Answered(answer)),
                    None => {
                        plan.push(Slot::Forwarded);
                        forward.push(item);
                    }
                }
            }
            if forward.is_empty() {
                let answers: Vec<Value> = plan
                    .into_iter()
                    .filter_map(|s| {
                        if let Slot::Answered(v) = s {
                            Some(v)
                        } else {
                            None
                        }
                    })
                    .collect();
                return Decision::Answer(Value::Array(answers).to_string().into_bytes());
            }
            if forward.len() == plan.len() {
                return Decision::Pass;
            }
            Decision::Rewrite {
                body: Value::Array(forward).to_string().into_bytes(),
                plan,
            }
        }
        single => match refusal(&single, policy) {
            Some(answer) => Decision::Answer(answer.to_string().into_bytes()),
            None => Decision::Pass,
        },
    }
}

/// `Some(Pass)` when a scan proves the request harmless: no backslash, and every method key found
/// names a permitted method, in a batch no longer than allowed.
fn quick_pass(body: &[u8], policy: &MethodPolicy) -> Option<Decision> {
    let count = scan_methods(body, policy)?;
    (count <= policy.max_batch).then_some(Decision::Pass)
}

/// Whether a scan proves every method named in `body` permitted, whatever the batch's size (for
/// WebSocket messages, which have no batch limit). `false` means only "look closer".
pub fn all_methods_permitted(body: &[u8], policy: &MethodPolicy) -> bool {
    scan_methods(body, policy).is_some()
}

/// How many method keys `body` has, when it has no backslash and each names a permitted method;
/// `None` when the scan cannot tell.
fn scan_methods(body: &[u8], policy: &MethodPolicy) -> Option<usize> {
    if body.contains(&b'\\') {
        return None;
    }
    let mut rest = body;
    let mut count = 0usize;
    while let Some(at) = find_ci(rest, b"\"method\"") {
        rest = &rest[at + 8..];
        count += 1;
        let value = skip_ws(rest).strip_prefix(b":").map(skip_ws)?;
        let value = value.strip_prefix(b"\"")?;
        let end = value.iter().position(|&b| b == b'"')?;
        let method = std::str::from_utf8(&value[..end]).ok()?;
        if !policy.permits(method) {
            return None;
        }
        rest = &value[end..];
    }
    Some(count)
}

/// The gateway's answer to one request object it will not forward, or `None` to forward it.
fn refusal(item: &Value, policy: &MethodPolicy) -> Option<Value> {
    let Value::Object(object) = item else {
        return Some(error(
            &Value::Null,
            INVALID_REQUEST,
            "a JSON-RPC request must be an object",
        ));
    };
    let id = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("id"))
        .map_or(Value::Null, |(_, v)| v.clone());
    let methods: Vec<&Value> = object
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("method"))
        .map(|(_, v)| v)
        .collect();
    for method in &methods {
        match method.as_str() {
            Some(m) if policy.permits(m) => {}
            Some(m) => {
                return Some(error(
                    &id,
                    METHOD_DENIED,
                    &format!("the method {m} is not available through this gateway"),
                ))
            }
            None => return Some(error(&id, INVALID_REQUEST, "the method must be a string")),
        }
    }
    None
}

/// Puts a rewritten batch back together: the backend's answers (matched by position among the
/// forwarded elements) and the gateway's errors, in the client's order. `None` when the backend's
/// answer is not an array of the expected length (it is passed on unchanged then).
pub fn merge(plan: &[Slot], backend_answer: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Array(answers)) = serde_json::from_slice::<Value>(backend_answer) else {
        return None;
    };
    let forwarded = plan.iter().filter(|s| matches!(s, Slot::Forwarded)).count();
    if answers.len() != forwarded {
        return None;
    }
    let mut answers = answers.into_iter();
    let merged: Vec<Value> = plan
        .iter()
        .map(|slot| match slot {
            Slot::Forwarded => answers.next().unwrap_or(Value::Null),
            Slot::Answered(v) => v.clone(),
        })
        .collect();
    Some(Value::Array(merged).to_string().into_bytes())
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> MethodPolicy {
        MethodPolicy {
            allow: vec![],
            deny: vec!["eth_sendRawTransaction".into()],
            max_batch: 3,
        }
    }

    #[test]
    fn patterns_and_defaults() {
        let p = policy();
        assert!(p.permits("eth_call"));
        assert!(!p.permits("admin_addPeer"));
        assert!(
            !p.permits("ADMIN_addPeer"),
            "case does not get around the policy"
        );
        assert!(!p.permits("debug_traceTransaction"));
        assert!(!p.permits("eth_sendRawTransaction"));
        let p = MethodPolicy {
            allow: vec!["eth_*".into(), "debug_traceTransaction".into()],
            deny: vec![],
            max_batch: 10,
        };
        assert!(p.permits("eth_getLogs"));
        assert!(
            p.permits("debug_traceTransaction"),
            "an explicit allow lifts a default denial"
        );
        assert!(!p.permits("debug_traceCall"));
        assert!(
            !p.permits("net_version"),
            "an allow list admits only what it names"
        );
    }

    #[test]
    fn permitted_requests_pass_without_parsing_decisions() {
        assert_eq!(
            inspect(
                br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#,
                &policy()
            ),
            Decision::Pass
        );
        assert_eq!(
            inspect(
                br#"[{"method":"eth_chainId","id":1},{"method":"eth_call","id":2}]"#,
                &policy()
            ),
            Decision::Pass
        );
        assert_eq!(inspect(b"not json at all", &policy()), Decision::Pass);
    }

    #[test]
    fn denied_single_request_is_answered_with_its_id() {
        let Decision::Answer(body) = inspect(
            br#"{"jsonrpc":"2.0","id":"x","method":"admin_peers"}"#,
            &policy(),
        ) else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["code"], METHOD_DENIED);
    }

    #[test]
    fn tricks_do_not_get_past() {
        for body in [
            &br#"{"id":1,"METHOD":"admin_addPeer"}"#[..],
            br#"{"id":1,"\u006dethod":"admin_addPeer"}"#,
            br#"{"id":1,"method":"admin\u005faddPeer"}"#,
            br#"{"id":1,"method":"eth_call","method":"admin_addPeer"}"#,
            br#"{"id":1,"method" : "debug_setHead"}"#,
        ] {
            assert!(
                matches!(inspect(body, &policy()), Decision::Answer(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn batch_with_denied_elements_is_rewritten_and_merged_in_order() {
        let body = br#"[{"id":1,"method":"eth_chainId"},{"id":2,"method":"admin_peers"},{"id":3,"method":"eth_blockNumber"}]"#;
        let Decision::Rewrite {
            body: forward,
            plan,
        } = inspect(body, &policy())
        else {
            panic!()
        };
        let forward: Value = serde_json::from_slice(&forward).unwrap();
        assert_eq!(forward.as_array().unwrap().len(), 2);
        assert_eq!(forward[1]["id"], 3);
        let backend = br#"[{"jsonrpc":"2.0","id":1,"result":"0x1"},{"jsonrpc":"2.0","id":3,"result":"0x10"}]"#;
        let merged: Value = serde_json::from_slice(&merge(&plan, backend).unwrap()).unwrap();
        let ids: Vec<&Value> = merged
            .as_array()
            .unwrap()
            .iter()
            .map(|v| &v["id"])
            .collect();
        assert_eq!(ids, [&json!(1), &json!(2), &json!(3)]);
        assert_eq!(merged[1]["error"]["code"], METHOD_DENIED);
        assert_eq!(merged[2]["result"], "0x10");
        assert_eq!(merge(&plan, b"{}"), None);
    }

    #[test]
    fn batch_limits_and_all_denied() {
        let big = br#"[{"method":"a","id":1},{"method":"b","id":2},{"method":"c","id":3},{"method":"d","id":4}]"#;
        let Decision::Answer(body) = inspect(big, &policy()) else {
            panic!()
        };
        assert!(String::from_utf8_lossy(&body).contains("at most 3"));
        let Decision::Answer(body) = inspect(br#"[{"id":7,"method":"admin_a"},5]"#, &policy())
        else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["id"], 7);
        assert_eq!(v[1]["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A small deterministic fuzz: every prefix and byte flip of some requests.
        let seeds: [&[u8]; 3] = [
            br#"[{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x1"},"latest"]},{"id":2,"method":"admin_x"}]"#,
            br#"{"id":"a\"b","method":"eth_getLogs","params":[[[[[[1]]]]]]}"#,
            "{\"method\":\"é\u{1F600}\",\"id\":null}".as_bytes(),
        ];
        for seed in seeds {
            for end in 0..=seed.len() {
                let _ = inspect(&seed[..end], &policy());
            }
            for i in 0..seed.len() {
                for flip in [0x00u8, 0x22, 0x5c, 0x80, 0xff] {
                    let mut bytes = seed.to_vec();
                    bytes[i] = flip;
                    let _ = inspect(&bytes, &policy());
                    let _ = merge(&[Slot::Forwarded], &bytes);
                }
            }
        }
        let deep = "[".repeat(100_000);
        let _ = inspect(deep.as_bytes(), &policy());
    }
}

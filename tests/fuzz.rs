//! Bounded fuzzing of everything that reads outside input: the config parser, the JSON-RPC
//! inspector, the health-response parsers and the haproxy importer. Inputs are mutations of real
//! samples and random JSON trees from a seeded generator; a panic anywhere fails the test, and
//! the inspector must never forward a denied method (checked against a full parse of what it
//! forwards). Each target runs for a fixed number of cases (about a second), so the suite stays
//! fast.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};
use ssv_ha::health::{consensus, execution};
use ssv_ha::jsonrpc::policy::{self, MethodPolicy};
use std::path::Path;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of `seed`: flipped, inserted, deleted or duplicated bytes, or a truncation.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            bytes.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 => bytes[at] = rng.next() as u8,
            1 => {
                const SPECIAL: &[u8] = b"{}[]\":,\\-0x ";
                bytes.insert(at, SPECIAL[rng.below(SPECIAL.len())]);
            }
            2 => {
                bytes.remove(at);
            }
            3 => {
                let end = (at + rng.below(16)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

/// A random JSON value, a few levels deep, with the field names the parsers look for.
fn random_json(rng: &mut Rng, depth: usize) -> Value {
    const KEYS: [&str; 12] = [
        "data",
        "id",
        "result",
        "error",
        "is_syncing",
        "el_offline",
        "head_slot",
        "connected",
        "genesis_time",
        "genesis_validators_root",
        "method",
        "code",
    ];
    match if depth == 0 {
        rng.below(5)
    } else {
        rng.below(7)
    } {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(
            [
                "0x1f",
                "12",
                "",
                "0x",
                "-1",
                "false",
                "é",
                "eth_call",
                "admin_peers",
                "DEBUG_traceCall",
                "eth_sendRawTransaction"
            ][rng.below(11)]
        ),
        4 => json!(format!("0x{:x}", rng.next())),
        5 => Value::Array(
            (0..rng.below(5))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(5))
                .map(|_| {
                    (
                        KEYS[rng.below(KEYS.len())].to_string(),
                        random_json(rng, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

#[test]
fn config_parser_never_panics() {
    let mut rng = Rng(0xc0ff_ee11);
    let samples: Vec<Vec<u8>> = [
        "conf/ssv-ha.yaml",
        "conf/swarm-listeners.yaml",
        "conf/home-staker.yaml",
    ]
    .iter()
    .map(|p| std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap())
    .collect();
    for _ in 0..5_000 {
        let pick = rng.below(samples.len());
        let input = mutate(&mut rng, &samples[pick]);
        let text = String::from_utf8_lossy(&input);
        let _ = ssv_ha::config::parse(&text, Path::new("/nonexistent"));
    }
}

/// A JSON value as serde_json reads it, with every entry of an object in order: duplicate keys
/// stay (`serde_json::Value` keeps only the last), and keys and strings are unescaped.
#[derive(Debug)]
enum Json {
    Scalar,
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Scalar)
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::Str(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Json>()? {
                    entries.push(entry);
                }
                Ok(Json::Object(entries))
            }
        }
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// Whether the fuzzed pool's policy (deny `eth_sendRawTransaction`, no allow list) refuses
/// `method`, written out here rather than asked of the gateway: the default denials are
/// prefixes, and names compare without regard to ASCII case.
fn denied(method: &str) -> bool {
    let method = method.to_ascii_lowercase();
    method == "eth_sendrawtransaction"
        || policy::DEFAULT_DENY
            .iter()
            .any(|p| method.starts_with(&p.trim_end_matches('*').to_ascii_lowercase()))
}

/// What a node would receive, read in full by serde_json: valid JSON, one request object or a
/// batch of 1 to `max_batch` of them, and every key that is `method` in any ASCII case a string
/// naming a method the policy permits. Returns what is wrong, if anything.
///
/// Invalid UTF-8 is read as Go's decoder (geth) reads it, each bad byte as U+FFFD: the inspector
/// lets it through inside values it does not read (`tests/hostile.rs` accepts that), and a
/// method name with such bytes must still be judged by the rest of its letters.
fn forwarded_violation(forwarded: &[u8], max_batch: usize) -> Option<String> {
    let parsed: Json = match serde_json::from_str(&String::from_utf8_lossy(forwarded)) {
        Ok(parsed) => parsed,
        Err(e) => return Some(format!("not valid JSON ({e})")),
    };
    let calls = match parsed {
        Json::Array(items) if items.is_empty() || items.len() > max_batch => {
            return Some(format!("a batch of {}", items.len()))
        }
        Json::Array(items) => items,
        call => vec![call],
    };
    for call in calls {
        let Json::Object(entries) = call else {
            return Some(format!("a request that is not an object: {call:?}"));
        };
        for (key, value) in entries {
            if !key.eq_ignore_ascii_case("method") {
                continue;
            }
            match value {
                Json::Str(name) if denied(&name) => {
                    return Some(format!("the denied method {name:?} (key {key:?})"))
                }
                Json::Str(_) => {}
                other => return Some(format!("a method that is not a string: {other:?}")),
            }
        }
    }
    None
}

/// Inspects `input` and checks what would be forwarded: the body itself on `Pass`, the
/// rewritten batch on `Rewrite`. Returns the decision's kind, so the caller can see the cases
/// exercised the property at all.
fn assert_forwards_only_permitted(input: &[u8], policy: &MethodPolicy) -> &'static str {
    let decision = policy::inspect(input, policy);
    let (kind, forwarded) = match &decision {
        policy::Decision::Pass => ("pass", input),
        policy::Decision::Rewrite { body, plan } => {
            let _ = policy::merge(plan, input);
            ("rewrite", body.as_slice())
        }
        policy::Decision::Answer(_) => return "answer",
    };
    if let Some(wrong) = forwarded_violation(forwarded, policy.max_batch) {
        panic!(
            "the inspector forwards {wrong}\n  input: {}\n  forwarded: {}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(forwarded)
        );
    }
    kind
}

#[test]
fn json_rpc_inspector_never_panics_and_never_forwards_a_denied_method() {
    let mut rng = Rng(0x5eed);
    let policy = MethodPolicy {
        allow: vec![],
        deny: vec!["eth_sendRawTransaction".into()],
        max_batch: 5,
    };
    // Denied methods in every guise the inspector must see through: other key cases, duplicate
    // keys, escapes, batches mixing permitted and denied calls.
    let samples: [&[u8]; 7] = [
        br#"[{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x1"},"latest"]},{"id":2,"method":"admin_x"}]"#,
        br#"{"jsonrpc":"2.0","id":"a","method":"eth_getLogs","params":[{"fromBlock":"0x1"}]}"#,
        br#"[{"method":"eth_chainId","id":1},{"METHOD":"debug_x","id":2},3,"x",null]"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","Method":"admin_peers"}"#,
        br#"{"method":"eth_call","method":"personal_sign","id":7}"#,
        br#"{"\u006dethod":"admin\u005fpeers","id":1}"#,
        br#"[{"id":1,"method":"eth_blockNumber"},{"id":2,"method":"eth_sendRawTransaction","params":["0x00"]},{"id":3,"mEtHoD":"DEBUG_traceCall"}]"#,
    ];
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for _ in 0..20_000 {
        let pick = rng.below(samples.len());
        let input = mutate(&mut rng, samples[pick]);
        *seen
            .entry(assert_forwards_only_permitted(&input, &policy))
            .or_default() += 1;
        let _ = ssv_ha::jsonrpc::scan::methods(&input);
    }
    for _ in 0..3_000 {
        let value = random_json(&mut rng, 4).to_string();
        *seen
            .entry(assert_forwards_only_permitted(value.as_bytes(), &policy))
            .or_default() += 1;
    }
    // The samples themselves, unmutated: each has a denied method that must be caught.
    for sample in samples {
        assert_forwards_only_permitted(sample, &policy);
    }
    // The property was put to the test: many inputs were forwarded whole or rewritten.
    for kind in ["pass", "rewrite", "answer"] {
        assert!(seen.get(kind).copied().unwrap_or(0) >= 200, "{seen:?}");
    }
}

#[test]
fn health_parsers_never_panic_and_never_pass_garbage() {
    let mut rng = Rng(0x4ea1_7400);
    for _ in 0..20_000 {
        let value = random_json(&mut rng, 4);
        // Whatever they return, they return: no panic. A reply without the fields is never healthy.
        if execution::parse_batch(&value, true).is_ok() {
            assert!(value.is_array());
        }
        if consensus::parse_syncing(&value).is_ok() {
            assert!(value["data"]["is_syncing"].is_boolean());
        }
        let _ = consensus::parse_peer_count(&value);
        let _ = consensus::parse_genesis(&value);
        let _ = consensus::parse_seconds_per_slot(&value);
    }
}

#[test]
fn haproxy_importer_never_panics() {
    let mut rng = Rng(0x4a9_0c5);
    let sample = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/haproxy-original.cfg"),
    )
    .unwrap();
    for _ in 0..3_000 {
        let input = mutate(&mut rng, &sample);
        let _ = ssv_ha::import::import(&String::from_utf8_lossy(&input), None);
    }
}

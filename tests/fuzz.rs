//! Bounded fuzzing of everything that reads outside input: the config parser, the JSON-RPC
//! inspector, the health-response parsers and the haproxy importer. Inputs are mutations of real
//! samples and random JSON trees from a seeded generator; a panic anywhere fails the test. Each
//! target runs for a fixed number of cases (about a second), so the suite stays fast.

use serde_json::{json, Value};
use ssv_ha::health::{consensus, execution};
use ssv_ha::proxy::policy::{self, MethodPolicy};
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
        3 => json!(["0x1f", "12", "", "0x", "-1", "false", "é"][rng.below(7)]),
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

#[test]
fn json_rpc_inspector_never_panics() {
    let mut rng = Rng(0x5eed);
    let policy = MethodPolicy {
        allow: vec![],
        deny: vec!["eth_sendRawTransaction".into()],
        max_batch: 5,
    };
    let samples: [&[u8]; 3] = [
        br#"[{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x1"},"latest"]},{"id":2,"method":"admin_x"}]"#,
        br#"{"jsonrpc":"2.0","id":"a","method":"eth_getLogs","params":[{"fromBlock":"0x1"}]}"#,
        br#"[{"method":"eth_chainId","id":1},{"METHOD":"debug_x","id":2},3,"x",null]"#,
    ];
    for _ in 0..20_000 {
        let pick = rng.below(samples.len());
        let input = mutate(&mut rng, samples[pick]);
        if let policy::Decision::Rewrite { plan, .. } = policy::inspect(&input, &policy) {
            let _ = policy::merge(&plan, &input);
        }
        let _ = ssv_ha::proxy::rpc::methods(&input);
    }
    for _ in 0..3_000 {
        let value = random_json(&mut rng, 4).to_string();
        let _ = policy::inspect(value.as_bytes(), &policy);
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

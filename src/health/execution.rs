//! Execution client probe: one JSON-RPC batch per check (`eth_syncing`, `net_peerCount`,
//! `eth_blockNumber`, `eth_chainId`, `eth_getBlockByNumber("latest")` for the head's age when
//! the pool checks it, and `eth_getBlockByNumber("finalized")` for the answer cache), parsed
//! strictly. The finalized block alone is optional: an error or `null` (an older node, a chain
//! before the merge) leaves it unknown and the verdict as it was.

use super::facts::{ExecutionFacts, Facts};
use super::probe::{fetch_json, hex_quantity};
use serde_json::{json, Value};

const METHODS: [&str; 6] = [
    "eth_syncing",
    "net_peerCount",
    "eth_blockNumber",
    "eth_chainId",
    "eth_getBlockByNumber",
    "eth_getBlockByNumber",
];

/// The batch's id of the finalized block's element (after the optional latest block's).
const FINALIZED: u64 = 6;

/// Probes an execution node at `url` (its HTTP JSON-RPC endpoint); `head_time`: also ask when
/// its latest block was made.
pub async fn probe(
    client: &reqwest::Client,
    url: &url::Url,
    head_time: bool,
) -> Result<Facts, String> {
    let batch: Vec<Value> = (1..=METHODS.len() as u64)
        .filter(|id| head_time || *id != 5)
        .map(|id| {
            let params = match id {
                5 => json!(["latest", false]),
                FINALIZED => json!(["finalized", false]),
                _ => json!([]),
            };
            let method = METHODS[id as usize - 1];
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        })
        .collect();
    let reply = fetch_json(client.post(url.clone()).json(&batch), "JSON-RPC batch").await?;
    parse_batch(&reply, head_time).map(Facts::Execution)
}

/// Interprets the batch reply. Public for tests; any unexpected shape is an error, never a pass.
/// `head_time`: the batch asked for the latest block (its timestamp is then required).
pub fn parse_batch(reply: &Value, head_time: bool) -> Result<ExecutionFacts, String> {
    let Some(items) = reply.as_array() else {
        if let Some(error) = reply.get("error") {
            return Err(format!("batch refused: {}", rpc_error(error)));
        }
        return Err("batch reply is not a JSON array".to_string());
    };
    let answer = |id: u64| -> Result<Result<&Value, String>, String> {
        let item = items
            .iter()
            .find(|item| item.get("id").and_then(Value::as_u64) == Some(id))
            .ok_or_else(|| format!("no reply to {} (id {id})", METHODS[id as usize - 1]))?;
        match (item.get("result"), item.get("error")) {
            (Some(result), None) => Ok(Ok(result)),
            (_, Some(error)) => Ok(Err(rpc_error(error))),
            (None, None) => Err(format!(
                "reply to {} has neither result nor error",
                METHODS[id as usize - 1]
            )),
        }
    };

    let syncing = match answer(1)? {
        Ok(Value::Bool(false)) => false,
        Ok(Value::Object(_)) | Ok(Value::Bool(true)) => true,
        Ok(other) => {
            return Err(format!(
                "eth_syncing returned {other}, expected false or an object"
            ))
        }
        Err(e) => return Err(format!("eth_syncing failed: {e}")),
    };
    let (peers, peers_error) =
        match answer(2)? {
            Ok(v) => (
                Some(hex_quantity(v).ok_or_else(|| {
                    format!("net_peerCount returned {v}, expected a hex quantity")
                })?),
                None,
            ),
            Err(e) => (None, Some(e)),
        };
    let head = match answer(3)? {
        Ok(v) => Some(
            hex_quantity(v)
                .ok_or_else(|| format!("eth_blockNumber returned {v}, expected a hex quantity"))?,
        ),
        Err(e) => return Err(format!("eth_blockNumber failed: {e}")),
    };
    let chain_id = match answer(4)? {
        Ok(v) => Some(
            hex_quantity(v)
                .ok_or_else(|| format!("eth_chainId returned {v}, expected a hex quantity"))?,
        ),
        Err(_) => None,
    };
    let head_time = if !head_time {
        None
    } else {
        match answer(5)? {
            Ok(block) => Some(
                block
                    .get("timestamp")
                    .and_then(hex_quantity)
                    .ok_or_else(|| format!("eth_getBlockByNumber returned {block}, expected a block with a hex timestamp"))?,
            ),
            Err(e) => return Err(format!("eth_getBlockByNumber failed: {e}")),
        }
    };
    Ok(ExecutionFacts {
        syncing,
        peers,
        peers_error,
        head,
        chain_id,
        head_time,
        // A finalized block above the node's own head is no block it has: unknown.
        finalized: finalized_block(items).filter(|f| head.is_some_and(|h| *f <= h)),
    })
}

/// The finalized block's number, when the node gave one; anything else (no answer, an error, a
/// `null` block, a block without a number) is "unknown", never a failed check.
fn finalized_block(items: &[Value]) -> Option<u64> {
    items
        .iter()
        .find(|item| item.get("id").and_then(Value::as_u64) == Some(FINALIZED))?
        .get("result")?
        .get("number")
        .and_then(hex_quantity)
}

fn rpc_error(error: &Value) -> String {
    let code = error.get("code").and_then(Value::as_i64);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    match code {
        Some(code) => format!("error {code}: {message}"),
        None => format!("error: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: u64, result: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    }

    #[test]
    fn healthy_batch_in_any_order() {
        let reply = json!([
            ok(4, json!("0x1")),
            ok(2, json!("0x19")),
            ok(1, json!(false)),
            ok(3, json!("0x10"))
        ]);
        let f = parse_batch(&reply, false).unwrap();
        assert_eq!(
            f,
            ExecutionFacts {
                syncing: false,
                peers: Some(25),
                peers_error: None,
                head: Some(16),
                chain_id: Some(1),
                head_time: None,
                finalized: None,
            }
        );
    }

    #[test]
    fn the_finalized_block_is_kept_and_its_failure_changes_no_verdict() {
        let base = vec![
            ok(1, json!(false)),
            ok(2, json!("0x19")),
            ok(3, json!("0x10")),
            ok(4, json!("0x1")),
        ];
        let with = |item: Value| {
            let mut items = base.clone();
            items.push(item);
            parse_batch(&Value::Array(items), false)
        };
        let block = json!({"number": "0x8", "hash": "0xab"});
        assert_eq!(with(ok(6, block)).unwrap().finalized, Some(8));
        // Above the node's own head (0x10): a block it does not have, so not known to be final.
        let ahead = json!({"number": "0x11", "hash": "0xab"});
        assert_eq!(with(ok(6, ahead)).unwrap().finalized, None);
        let at_head = json!({"number": "0x10", "hash": "0xab"});
        assert_eq!(with(ok(6, at_head)).unwrap().finalized, Some(16));
        for unknown in [
            ok(6, json!(null)),
            ok(6, json!({"hash": "0xab"})),
            ok(6, json!("0x8")),
            json!({"jsonrpc": "2.0", "id": 6, "error": {"code": -32000, "message": "finalized block not found"}}),
            json!({"jsonrpc": "2.0", "id": 6}),
        ] {
            let facts = with(unknown.clone()).expect("a healthy batch stays healthy");
            assert_eq!(facts.finalized, None, "{unknown}");
        }
        let facts = parse_batch(&Value::Array(base), false).expect("no answer at all");
        assert_eq!(facts.finalized, None);
    }

    #[test]
    fn syncing_object_and_missing_peer_count() {
        let reply = json!([
            ok(1, json!({"startingBlock": "0x0", "currentBlock": "0x5", "highestBlock": "0x10"})),
            {"jsonrpc": "2.0", "id": 2, "error": {"code": -32601, "message": "Method not found"}},
            ok(3, json!("0x5")),
            ok(4, json!("0x7a69")),
        ]);
        let f = parse_batch(&reply, false).unwrap();
        assert!(f.syncing);
        assert_eq!(f.peers, None);
        assert_eq!(
            f.peers_error.as_deref(),
            Some("error -32601: Method not found")
        );
    }

    #[test]
    fn surprises_are_failures() {
        let base = |syncing: Value| {
            json!([
                ok(1, syncing),
                ok(2, json!("0x19")),
                ok(3, json!("0x10")),
                ok(4, json!("0x1"))
            ])
        };
        assert!(parse_batch(&base(json!(null)), false)
            .unwrap_err()
            .contains("eth_syncing returned null"));
        assert!(parse_batch(&base(json!("false")), false).is_err());
        let wrong_id = json!([
            ok(1, json!(false)),
            ok(2, json!("0x19")),
            ok(7, json!("0x10")),
            ok(4, json!("0x1"))
        ]);
        assert!(parse_batch(&wrong_id, false)
            .unwrap_err()
            .contains("no reply to eth_blockNumber"));
        let bad_hex = json!([
            ok(1, json!(false)),
            ok(2, json!("25")),
            ok(3, json!("0x10")),
            ok(4, json!("0x1"))
        ]);
        assert!(parse_batch(&bad_hex, false)
            .unwrap_err()
            .contains("net_peerCount returned"));
        assert!(parse_batch(
            &json!({"error": {"code": -32600, "message": "batch not allowed"}}),
            false
        )
        .unwrap_err()
        .contains("batch refused"));
        assert!(parse_batch(&json!({"result": 1}), false).is_err());
    }
}

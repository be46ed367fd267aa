//! `bench-load serve-node`: an execution and a beacon node in one, for the read scenarios of
//! `benches/run` (an SSV node's start-up, hedged reads). Unlike `serve`, which answers every POST
//! with the same bytes, it answers each JSON-RPC call by its method under the caller's id, so a
//! gateway may keep an answer and give it to another client under that client's id; and it can
//! answer clients late while answering health checks on time, as a node that is slow but not
//! down does.
//!
//! Every answer is built once at start and only the id is put in per call: the node's own cost
//! per request stays small, so what the proxies in front of it cost is what is measured.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The node's head; `finalized` is 64 blocks behind it, as on mainnet after two epochs.
pub const HEAD: u64 = 21_000_000;
const FINALIZED: u64 = HEAD - 64;
/// Logs in every `eth_getLogs` answer, each with this many bytes of data: an SSV contract's
/// events over a 10,000-block range are of this order.
const LOGS: usize = 16;
const LOG_DATA_BYTES: usize = 512;

/// What the node answers with, built once.
struct Node {
    /// Client (not health check) requests wait this long.
    delay: Duration,
    /// What an `eth_getLogs` costs the node: a real node filters thousands of blocks for it.
    logs_cost: Duration,
    logs: String,
    spec: String,
    genesis: String,
}

pub fn app(delay: Duration, logs_cost: Duration) -> axum::Router {
    let node = Arc::new(Node {
        delay,
        logs_cost,
        logs: logs(),
        spec: json!({"data": spec()}).to_string(),
        genesis: json!({"data": {
            "genesis_time": "1606824023",
            "genesis_validators_root": "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
            "genesis_fork_version": "0x00000000"
        }})
        .to_string(),
    });
    axum::Router::new()
        .route("/eth/v1/beacon/genesis", get(genesis))
        .route("/eth/v1/config/spec", get(spec_answer))
        .route("/eth/v1/node/syncing", get(syncing))
        .route("/eth/v1/node/peer_count", get(peer_count))
        .route("/eth/v1/{*rest}", get(not_served))
        .fallback(post(rpc))
        .with_state(node)
}

/// A health check says who it is (`ssv-ha-health/...`): it is answered at once.
async fn wait(node: &Node, headers: &HeaderMap) {
    let probe = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("ssv-ha-health/"));
    if !probe && !node.delay.is_zero() {
        tokio::time::sleep(node.delay).await;
    }
}

fn json_answer(body: String) -> Response {
    ([("content-type", "application/json")], body).into_response()
}

async fn genesis(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    wait(&node, &headers).await;
    json_answer(node.genesis.clone())
}

async fn spec_answer(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    wait(&node, &headers).await;
    json_answer(node.spec.clone())
}

async fn syncing() -> Response {
    let head_slot = (unix_now() - 1_606_824_023) / 12;
    json_answer(
        json!({"data": {"head_slot": head_slot.to_string(), "sync_distance": "0",
            "is_syncing": false, "is_optimistic": false, "el_offline": false}})
        .to_string(),
    )
}

async fn peer_count() -> Response {
    json_answer(
        json!({"data": {"connected": "60", "disconnected": "0", "connecting": "0",
            "disconnecting": "0"}})
        .to_string(),
    )
}

async fn not_served(Path(rest): Path<String>) -> Response {
    let body = json!({"code": 404, "message": format!("/eth/v1/{rest} is not served here")});
    (StatusCode::NOT_FOUND, json_answer(body.to_string())).into_response()
}

/// A JSON-RPC call or batch, each call answered by its method under its own id.
async fn rpc(State(node): State<Arc<Node>>, headers: HeaderMap, body: Bytes) -> Response {
    wait(&node, &headers).await;
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return json_answer(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#.into(),
        );
    };
    let asks_logs =
        |call: &Value| call.get("method").and_then(Value::as_str) == Some("eth_getLogs");
    let logs = match &request {
        Value::Array(calls) => calls.iter().any(asks_logs),
        call => asks_logs(call),
    };
    if logs && !node.logs_cost.is_zero() {
        tokio::time::sleep(node.logs_cost).await;
    }
    match request {
        Value::Array(calls) => {
            let answers: Vec<String> = calls.iter().map(|call| answer(&node, call)).collect();
            json_answer(format!("[{}]", answers.join(",")))
        }
        call => json_answer(answer(&node, &call)),
    }
}

fn answer(node: &Node, call: &Value) -> String {
    let id = call.get("id").cloned().unwrap_or(Value::Null).to_string();
    let method = call.get("method").and_then(Value::as_str).unwrap_or("");
    let result = match method {
        "eth_getLogs" => node.logs.clone(),
        "eth_chainId" => "\"0x1\"".to_string(),
        "net_version" => "\"1\"".to_string(),
        "eth_syncing" => "false".to_string(),
        "net_peerCount" => "\"0x19\"".to_string(),
        "eth_blockNumber" | "eth_call" => format!("\"0x{HEAD:x}\""),
        "eth_getBlockByNumber" => block(call.pointer("/params/0").and_then(Value::as_str)),
        _ => {
            return format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"the method {method} does not exist"}}}}"#
            )
        }
    };
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

/// A block header's fields, the head's timestamp now.
fn block(tag: Option<&str>) -> String {
    let number = match tag {
        Some("finalized") | Some("safe") => FINALIZED,
        Some(hex) if hex.starts_with("0x") => u64::from_str_radix(&hex[2..], 16).unwrap_or(HEAD),
        _ => HEAD,
    };
    let age = HEAD.saturating_sub(number) * 12;
    json!({
        "number": format!("0x{number:x}"),
        "hash": format!("0x{number:064x}"),
        "parentHash": format!("0x{:064x}", number.saturating_sub(1)),
        "timestamp": format!("0x{:x}", unix_now().saturating_sub(age)),
        "transactions": [],
    })
    .to_string()
}

fn logs() -> String {
    let logs: Vec<Value> = (0..LOGS as u64)
        .map(|i| {
            let number = FINALIZED - 100_000 + i * 600;
            json!({
                "address": "0xdd9bc35ae942ef0cfa76930954a156b3ff30a4e1",
                "topics": [format!("0x{:064x}", 0x48a3ea0796746043u64), format!("0x{i:064x}")],
                "data": format!("0x{}", "5a".repeat(LOG_DATA_BYTES)),
                "blockNumber": format!("0x{number:x}"),
                "transactionHash": format!("0x{:064x}", number * 7 + i),
                "transactionIndex": "0x0",
                "blockHash": format!("0x{number:064x}"),
                "logIndex": format!("0x{i:x}"),
                "removed": false
            })
        })
        .collect();
    Value::Array(logs).to_string()
}

/// A beacon spec's size and shape: about a hundred constants.
fn spec() -> Value {
    let mut spec = serde_json::Map::new();
    spec.insert("SECONDS_PER_SLOT".into(), json!("12"));
    spec.insert("SLOTS_PER_EPOCH".into(), json!("32"));
    spec.insert("CONFIG_NAME".into(), json!("mainnet"));
    for i in 0..100 {
        spec.insert(
            format!("CONSTANT_{i}"),
            json!(format!("{}", 1u64 << (i % 60))),
        );
    }
    Value::Object(spec)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

//! A simulated execution client: JSON-RPC over HTTP POST (single and batch, any path) and over
//! WebSocket with `eth_subscribe newHeads` notifications.

use super::NodeState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn router() -> Router<Arc<NodeState>> {
    Router::new().fallback(handle)
}

async fn handle(
    State(state): State<Arc<NodeState>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    method: http::Method,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let probe = headers
        .get(http::header::USER_AGENT)
        .is_some_and(|ua| ua == crate::health::PROBE_USER_AGENT);
    if let Ok(ws) = ws {
        return ws.on_upgrade(move |socket| websocket(state, socket));
    }
    if method != http::Method::POST {
        return (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "JSON-RPC needs POST\n",
        )
            .into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return axum::Json(error(&Value::Null, -32700, "parse error")).into_response(),
    };
    axum::Json(answer(&state, &request, None, !probe)).into_response()
}

/// Answers a single request or a batch. `subscriptions` is set on WebSocket connections.
fn answer(
    state: &NodeState,
    request: &Value,
    subscriptions: Option<&mut Vec<String>>,
    record: bool,
) -> Value {
    match request {
        Value::Array(items) => {
            let mut subscriptions = subscriptions;
            let answers = items
                .iter()
                .map(|item| call(state, item, subscriptions.as_deref_mut(), record));
            Value::Array(answers.collect())
        }
        single => call(state, single, subscriptions, record),
    }
}

/// Answers one request; `record` notes client (not probe) methods.
fn call(
    state: &NodeState,
    request: &Value,
    subscriptions: Option<&mut Vec<String>>,
    record: bool,
) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return error(&id, -32600, "invalid request");
    };
    if record {
        state.record_rpc(method);
    }
    let s = state.status();
    let result = match method {
        "eth_syncing" if s.syncing => json!({
            "startingBlock": "0x0",
            "currentBlock": hex(s.head),
            "highestBlock": hex(s.head + 100),
        }),
        "eth_syncing" => json!(false),
        "net_peerCount" if s.peer_count_supported => json!(hex(s.peers)),
        "eth_blockNumber" => json!(hex(s.head)),
        "eth_chainId" => json!(hex(s.chain_id)),
        "net_version" => json!(s.chain_id.to_string()),
        "web3_clientVersion" => json!(format!("ssv-ha-sim/{}", state.name)),
        "eth_getBlockByNumber" => block(s.head, super::unix_now().saturating_sub(s.head_age_s)),
        "eth_subscribe" => match (
            subscriptions,
            request.pointer("/params/0").and_then(Value::as_str),
        ) {
            (Some(subs), Some("newHeads")) => {
                let sub = format!("0x{:x}", subs.len() + 1);
                subs.push(sub.clone());
                json!(sub)
            }
            (None, _) => return error(&id, -32601, "subscriptions need a WebSocket"),
            (_, _) => return error(&id, -32602, "only newHeads is simulated"),
        },
        "eth_unsubscribe" => json!(true),
        _ => {
            return error(
                &id,
                -32601,
                &format!("the method {method} does not exist/is not available"),
            )
        }
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

async fn websocket(state: Arc<NodeState>, mut socket: WebSocket) {
    let mut heads = state.heads.subscribe();
    let mut kill = state.kill.subscribe();
    let mut subscriptions: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            message = socket.recv() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                // WebSocket messages are client traffic too.
                state.client_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let reply = match serde_json::from_str::<Value>(&text) {
                                        Ok(request) => answer(&state, &request, Some(&mut subscriptions), true),
                    Err(_) => error(&Value::Null, -32700, "parse error"),
                };
                if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            head = heads.recv() => {
                let Ok(head) = head else { continue };
                for sub in &subscriptions {
                    let note = json!({
                        "jsonrpc": "2.0",
                        "method": "eth_subscription",
                        "params": {"subscription": sub, "result": block(head, super::unix_now())},
                    });
                    if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                        return;
                    }
                }
            }
            _ = kill.changed() => return,
        }
    }
}

fn block(number: u64, timestamp: u64) -> Value {
    json!({
        "number": hex(number),
        "hash": format!("0x{:064x}", number),
        "parentHash": format!("0x{:064x}", number.saturating_sub(1)),
        "timestamp": hex(timestamp),
    })
}

fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

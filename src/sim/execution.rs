//! A simulated execution client: JSON-RPC over HTTP POST (single and batch, any path) and over
//! WebSocket with `eth_subscribe` notifications (`newHeads`, `logs`; `newPendingTransactions` and
//! `syncing` are accepted and stay quiet). Like geth, it can refuse a WebSocket upgrade from an
//! origin it does not list (403) or to a path it does not serve WebSocket on (200 or 404).
//!
//! Its chain is made up: block `n`'s hash is a function of `n` (and of the branch, see
//! [`NodeStatus::branch_from`](super::NodeStatus::branch_from)), so two nodes on one head agree on
//! every block, and each block has two logs: one from [`LOG_ADDRESS`] with topic [`LOG_TOPIC`], one
//! from another address. `eth_getBlockByNumber` and `eth_getLogs` answer from the same chain.

use super::clock::unix_now;
use super::state::NodeState;
use super::status::NodeStatus;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

/// The address of the log every block has (log index 0).
pub const LOG_ADDRESS: &str = "0x00000000000000000000000000000000000000aa";

/// The topic of that log.
pub const LOG_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// The address of each block's other log (log index 1).
const OTHER_ADDRESS: &str = "0x00000000000000000000000000000000000000bb";

/// A WebSocket connection's subscriptions: id and what it is of.
type Subscriptions = Vec<(String, Subscription)>;

#[derive(Debug, Clone)]
enum Subscription {
    Heads,
    Logs(Value),
    Quiet,
}

pub fn router() -> Router<Arc<NodeState>> {
    Router::new().fallback(handle)
}

async fn handle(
    State(state): State<Arc<NodeState>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let probe = headers
        .get(http::header::USER_AGENT)
        .is_some_and(|ua| ua == crate::health::PROBE_USER_AGENT);
    if let Ok(ws) = ws {
        if let Some(refusal) = refuse_upgrade(&state.status(), uri.path(), &headers) {
            return refusal;
        }
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

/// geth's answer to a WebSocket upgrade it does not take (see
/// [`NodeStatus::ws_path`](super::NodeStatus::ws_path) and
/// [`NodeStatus::ws_origins`](super::NodeStatus::ws_origins)); `None` when it takes it.
fn refuse_upgrade(s: &NodeStatus, path: &str, headers: &http::HeaderMap) -> Option<Response> {
    // geth routes by path first: an upgrade elsewhere is a plain request to its HTTP side.
    if s.ws_path
        .as_deref()
        .is_some_and(|prefix| !path.starts_with(prefix))
    {
        let status = if path == "/" {
            http::StatusCode::OK
        } else {
            http::StatusCode::NOT_FOUND
        };
        return Some(status.into_response());
    }
    let origin = headers.get(http::header::ORIGIN)?;
    let allowed = s.ws_origins.as_ref()?.iter().any(|allowed| {
        allowed == "*" || allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes())
    });
    if allowed {
        return None;
    }
    // What gorilla/websocket's upgrader answers when the origin check fails.
    Some(
        (
            http::StatusCode::FORBIDDEN,
            [
                (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (http::header::SEC_WEBSOCKET_VERSION, "13"),
            ],
            "websocket: 'Origin' header value not allowed\n",
        )
            .into_response(),
    )
}

/// Answers a single request or a batch. `subscriptions` is set on WebSocket connections.
fn answer(
    state: &NodeState,
    request: &Value,
    subscriptions: Option<&mut Subscriptions>,
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
    subscriptions: Option<&mut Subscriptions>,
    record: bool,
) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return error(&id, -32600, "invalid request");
    };
    if record {
        state.record_rpc(method);
    }
    match result(state, method, request, subscriptions) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => error(&id, code, &message),
    }
}

/// A method's result, or the code and message of its JSON-RPC error.
type Outcome = Result<Value, (i64, String)>;

/// The methods the node knows: the result of `method` called with `request`'s params.
fn result(
    state: &NodeState,
    method: &str,
    request: &Value,
    subscriptions: Option<&mut Subscriptions>,
) -> Outcome {
    let s = state.status();
    Ok(match method {
        "eth_syncing" if s.syncing => json!({
            "startingBlock": "0x0",
            "currentBlock": hex(s.head),
            "highestBlock": hex(s.head + 100),
        }),
        "eth_syncing" => json!(false),
        "net_peerCount" if s.peer_count_supported => json!(hex(s.peers)),
        "eth_blockNumber" if subscriptions.is_some() => {
            json!(hex(state.take_wrong_block_number().unwrap_or(s.head)))
        }
        "eth_blockNumber" => json!(hex(s.head)),
        "eth_chainId" => json!(hex(s.chain_id)),
        "net_version" => json!(s.chain_id.to_string()),
        "web3_clientVersion" => json!(format!("ssv-ha-sim/{}", state.name)),
        "eth_getBlockByNumber" => return get_block_by_number(&s, request),
        "eth_getBlockByHash" => get_block_by_hash(&s, request),
        // The made-up chain has no transactions: every hash is unknown.
        "eth_getTransactionByHash" | "eth_getTransactionReceipt" => Value::Null,
        "eth_getLogs" => return get_logs(&s, request),
        "eth_subscribe" => return subscribe(state, request, subscriptions),
        "eth_unsubscribe" => unsubscribe(request, subscriptions),
        _ => {
            return Err((
                -32601,
                format!("the method {method} does not exist/is not available"),
            ))
        }
    })
}

/// `eth_getBlockByNumber`: `latest` (as old as the node's head is set to be) or a block up to
/// the head, `null` past it.
fn get_block_by_number(s: &NodeStatus, request: &Value) -> Outcome {
    Ok(match request.pointer("/params/0").and_then(Value::as_str) {
        None | Some("latest") | Some("pending") => {
            block(s, s.head, unix_now().saturating_sub(s.head_age_s))
        }
        Some("finalized") | Some("safe") if s.no_finalized => {
            return Err((-39001, "finalized block not found".to_string()))
        }
        Some("finalized") | Some("safe") => {
            let n = s.finalized_block();
            block(s, n, unix_now().saturating_sub(s.head - n))
        }
        Some("earliest") => block(s, 0, unix_now().saturating_sub(s.head)),
        Some(number) => match number_param(number) {
            Some(n) if n <= s.head => block(s, n, unix_now().saturating_sub(s.head - n)),
            Some(_) => Value::Null,
            None => return Err((-32602, "invalid block number".to_string())),
        },
    })
}

/// `eth_getBlockByHash`: the block of that hash on this node's branch, up to the head; `null`
/// for any other hash.
fn get_block_by_hash(s: &NodeStatus, request: &Value) -> Value {
    let Some(hash) = request.pointer("/params/0").and_then(Value::as_str) else {
        return Value::Null;
    };
    let number = hash
        .get(34..)
        .filter(|_| hash.len() == 66)
        .and_then(|n| u64::from_str_radix(n, 16).ok());
    match number {
        Some(n) if n <= s.head && block_hash(s, n) == hash => {
            block(s, n, unix_now().saturating_sub(s.head - n))
        }
        _ => Value::Null,
    }
}

/// `eth_getLogs`: the logs of the blocks in range that match the filter; logs of the first block
/// padded to the set size when the node is told to answer large.
fn get_logs(s: &NodeStatus, request: &Value) -> Outcome {
    let filter = request.pointer("/params/0").cloned().unwrap_or(json!({}));
    let bound = |name: &str, default: u64| match filter.get(name).and_then(Value::as_str) {
        None | Some("latest") => Some(default),
        Some("earliest") => Some(0),
        Some(n) => number_param(n),
    };
    let (Some(from), Some(to)) = (bound("fromBlock", s.head), bound("toBlock", s.head)) else {
        return Err((-32602, "invalid block range".to_string()));
    };
    if let Some(bytes) = s.logs_answer_bytes {
        let count = s.logs_answer_count.max(1);
        let mut log = block_logs(s, from.min(s.head)).swap_remove(0);
        log["data"] = json!(format!("0x{}", "ab".repeat(bytes / 2 / count)));
        let logs: Vec<Value> = (0..count)
            .map(|index| {
                let mut log = log.clone();
                log["logIndex"] = json!(hex(index as u64));
                log
            })
            .collect();
        return Ok(json!(logs));
    }
    let logs: Vec<Value> = (from..=to.min(s.head))
        .flat_map(|n| block_logs(s, n))
        .filter(|log| matches(&filter, log))
        .collect();
    Ok(json!(logs))
}

/// `eth_subscribe` on a WebSocket connection: a new subscription id for `newHeads`, `logs` (with
/// its filter) or a quiet kind.
fn subscribe(
    state: &NodeState,
    request: &Value,
    subscriptions: Option<&mut Subscriptions>,
) -> Outcome {
    let Some(subs) = subscriptions else {
        return Err((-32601, "subscriptions need a WebSocket".to_string()));
    };
    let Some(kind) = request.pointer("/params/0").and_then(Value::as_str) else {
        return Err((-32602, "eth_subscribe needs a kind".to_string()));
    };
    let subscription = match kind {
        "newHeads" => Subscription::Heads,
        "logs" => Subscription::Logs(request.pointer("/params/1").cloned().unwrap_or(json!({}))),
        "newPendingTransactions" | "syncing" => Subscription::Quiet,
        _ => return Err((-32602, format!("no \"{kind}\" subscription"))),
    };
    // Ids differ from node to node, as real nodes' do.
    let sub = format!("0x{:x}{:04x}", name_tag(&state.name), subs.len() + 1);
    subs.push((sub.clone(), subscription));
    Ok(json!(sub))
}

/// `eth_unsubscribe`: whether the subscription was there to end (`false` outside a WebSocket).
fn unsubscribe(request: &Value, subscriptions: Option<&mut Subscriptions>) -> Value {
    match (
        subscriptions,
        request.pointer("/params/0").and_then(Value::as_str),
    ) {
        (Some(subs), Some(sub)) => {
            let before = subs.len();
            subs.retain(|(id, _)| id != sub);
            json!(subs.len() < before)
        }
        _ => json!(false),
    }
}

async fn websocket(state: Arc<NodeState>, mut socket: WebSocket) {
    /// Counts the connection open while it lives.
    struct Open(Arc<NodeState>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0
                .ws_open
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    state
        .ws_open
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _open = Open(state.clone());
    let close_after = || state.status().ws_close_after;
    if close_after() == Some(0) {
        return;
    }
    let mut answered = 0;
    let mut heads = state.heads.subscribe();
    let mut kill = state.kill.subscribe();
    let mut subscriptions: Subscriptions = Vec::new();
    loop {
        let frozen = state.status().ws_frozen;
        tokio::select! {
            // Heads before requests: notifications of blocks made before a request came go out
            // before its answer, as a node sends them (and tests can rely on the order).
            biased;
            head = heads.recv() => {
                let Ok(head) = head else { continue };
                let s = state.status();
                for (sub, subscription) in &subscriptions {
                    let results = match subscription {
                        Subscription::Heads => vec![block(&s, head, unix_now())],
                        Subscription::Logs(filter) => block_logs(&s, head)
                            .into_iter()
                            .filter(|log| matches(filter, log))
                            .collect(),
                        Subscription::Quiet => vec![],
                    };
                    for result in results {
                        let note = json!({
                            "jsonrpc": "2.0",
                            "method": "eth_subscription",
                            "params": {"subscription": sub, "result": result},
                        });
                        if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // Frozen: the socket is not read until the node thaws.
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)), if frozen => {}
            message = socket.recv(), if !frozen => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                // WebSocket messages are client traffic too.
                state.client_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let reply = match as_go_reads(&text) {
                    // geth ignores a message shaped like an answer: it sends nothing back.
                    Ok(None) => continue,
                    Ok(Some(request)) => answer(&state, &request, Some(&mut subscriptions), true),
                    Err(_) => error(&Value::Null, -32700, "parse error"),
                };
                let delay = state.status().ws_answer_delay_ms;
                if delay > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                }
                let reply = if state.status().ws_id_last {
                    id_last(&reply)
                } else {
                    reply.to_string()
                };
                if socket.send(Message::Text(reply.into())).await.is_err() {
                    return;
                }
                answered += 1;
                if close_after().is_some_and(|n| answered >= n) {
                    return;
                }
            }
            _ = kill.changed() => return,
        }
    }
}

/// A WebSocket message as geth's decoder reads it: `id`, `method` and `params` by the key rule
/// of [`crate::jsonrpc::Key`] (any case, the last of two keys winning; a `Value` keeps neither
/// order nor case). `None` for a single message shaped like an answer (an id, a result or an
/// error, no method), which geth ignores.
fn as_go_reads(text: &str) -> serde_json::Result<Option<Value>> {
    use crate::jsonrpc::{Message, Shape};
    fn one(m: &Message) -> Value {
        let mut out = serde_json::Map::new();
        for (name, raw) in [("id", m.id), ("method", m.method), ("params", m.params)] {
            if let Some(value) = raw.and_then(|r| serde_json::from_str(r.get()).ok()) {
                out.insert(name.into(), value);
            }
        }
        Value::Object(out)
    }
    Ok(Some(match Message::read(text)? {
        Shape::Object(m) if m.method.is_none() && (m.result.is_some() || m.error.is_some()) => {
            return Ok(None)
        }
        Shape::Object(m) => one(&m),
        Shape::Array(items) => Value::Array(
            items
                .iter()
                .map(|raw| match Message::element(raw) {
                    Some(m) => one(&m),
                    None => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
                })
                .collect(),
        ),
        Shape::Other => serde_json::from_str(text)?,
    }))
}

/// Block `number`'s hash on this node's branch.
fn block_hash(s: &NodeStatus, number: u64) -> String {
    let branch = u64::from(s.branch_from.is_some_and(|from| number >= from));
    format!("0x{branch:032x}{number:032x}")
}

/// A block as `eth_getBlockByNumber` returns it without transactions (and as `newHeads` sends
/// its header).
fn block(s: &NodeStatus, number: u64, timestamp: u64) -> Value {
    json!({
        "number": hex(number),
        "hash": block_hash(s, number),
        "parentHash": block_hash(s, number.saturating_sub(1)),
        "timestamp": hex(timestamp),
    })
}

/// Block `number`'s two logs.
fn block_logs(s: &NodeStatus, number: u64) -> Vec<Value> {
    if s.no_logs_from.is_some_and(|from| number >= from) {
        return Vec::new();
    }
    let hash = block_hash(s, number);
    [(LOG_ADDRESS, LOG_TOPIC), (OTHER_ADDRESS, OTHER_ADDRESS)]
        .iter()
        .enumerate()
        .map(|(index, (address, topic))| {
            json!({
                "address": address,
                "topics": [topic],
                "data": hex(number),
                "blockNumber": hex(number),
                "blockHash": hash,
                "transactionHash": format!("0x{number:032x}{index:032x}"),
                "transactionIndex": hex(index as u64),
                "logIndex": hex(index as u64),
                "removed": false,
            })
        })
        .collect()
}

/// Whether a log matches a filter's `address` (one or a list) and `topics` (per position: one,
/// a list of alternatives, or `null` for any).
fn matches(filter: &Value, log: &Value) -> bool {
    let one_of = |wanted: &Value, have: Option<&Value>| match wanted {
        Value::Null => true,
        Value::Array(options) => options.is_empty() || options.iter().any(|o| Some(o) == have),
        single => Some(single) == have,
    };
    if let Some(address) = filter.get("address") {
        if !one_of(address, log.get("address")) {
            return false;
        }
    }
    let topics = filter.get("topics").and_then(Value::as_array);
    topics.is_none_or(|topics| {
        topics
            .iter()
            .enumerate()
            .all(|(i, wanted)| one_of(wanted, log.pointer(&format!("/topics/{i}"))))
    })
}

/// A block number parameter: `0x`-hex.
fn number_param(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// A short number from a node's name, to make its subscription ids its own.
fn name_tag(name: &str) -> u64 {
    name.bytes()
        .fold(0u64, |h, b| (h * 31 + u64::from(b)) & 0xffff)
}

/// An answer (or a batch of them) as text with each `id` written last.
fn id_last(reply: &Value) -> String {
    match reply {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(id_last).collect::<Vec<_>>().join(",")
        ),
        Value::Object(object) => {
            let mut rest = object.clone();
            let Some(id) = rest.remove("id") else {
                return reply.to_string();
            };
            let rest = Value::Object(rest).to_string();
            let open = rest.strip_suffix('}').unwrap_or(&rest);
            let comma = if open.len() > 1 { "," } else { "" };
            format!("{open}{comma}\"id\":{id}}}")
        }
        other => other.to_string(),
    }
}

fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

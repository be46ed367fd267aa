//! A plain-HTTP execution backend that records every byte of client traffic it receives (request
//! bodies, WebSocket upgrade headers and messages) and answers like a node: health probes get a
//! healthy answer, every JSON-RPC call with an id gets a result, notifications get nothing.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use ssv_ha::health::PROBE_USER_AGENT;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A method the recorder answers only after 3 s (a wide `eth_getLogs`, say).
pub const SLOW_METHOD: &str = "test_slowCall";
/// A method the recorder answers with an HTML 504, as a node's reverse proxy does for a call that
/// outlasts its timeout.
pub const GATEWAY_TIMEOUT_METHOD: &str = "test_proxyTimeout";
/// A method the recorder answers with an HTML 413, as a node's reverse proxy does for a body
/// over its limit.
pub const TOO_LARGE_METHOD: &str = "test_proxyTooLarge";

/// One thing a client's traffic brought to the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// An HTTP request's body (any method, any path).
    Body(Vec<u8>),
    /// A WebSocket upgrade request's headers.
    Upgrade(HeaderMap),
    /// A WebSocket message (text or binary).
    Message(Vec<u8>),
}

pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = axum::Router::new()
            .route("/ws", axum::routing::get(upgrade))
            .route("/ws/", axum::routing::get(upgrade))
            .fallback(http)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Recorder { addr, seen, server }
    }

    /// A backend entry for a pool's `backends:` list.
    pub fn backend_yaml(&self, name: &str) -> String {
        format!(
            "      - {{ name: {name}, url: \"http://{0}/\", ws_url: \"ws://{0}/ws\" }}\n",
            self.addr
        )
    }

    /// What arrived since the last call.
    pub fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Seen = axum::extract::State<Arc<Mutex<Vec<Received>>>>;

async fn http(seen: Seen, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let probe = headers
        .get("user-agent")
        .is_some_and(|ua| ua.as_bytes() == PROBE_USER_AGENT.as_bytes());
    if !probe {
        seen.lock().unwrap().push(Received::Body(body.to_vec()));
    }
    // An expensive call: answered, but only after a while.
    let text = String::from_utf8_lossy(&body);
    if text.contains(SLOW_METHOD) {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    // What a node's nginx or traefik answers to a call that outlasts its own timeout, or to a body
    // over its size limit.
    for (method, status) in [(GATEWAY_TIMEOUT_METHOD, 504), (TOO_LARGE_METHOD, 413)] {
        if text.contains(method) {
            let status = axum::http::StatusCode::from_u16(status).unwrap();
            let page = format!("<html><body><h1>{status}</h1></body></html>");
            return (status, [("content-type", "text/html")], page).into_response();
        }
    }
    let answer = answer(&body).unwrap_or_default();
    // Like geth, answer compressed to a client that accepts it.
    let gzip = headers
        .get("accept-encoding")
        .is_some_and(|v| String::from_utf8_lossy(v.as_bytes()).contains("gzip"));
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, answer.as_bytes()).unwrap();
        let compressed = encoder.finish().unwrap();
        return (
            [
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            compressed,
        )
            .into_response();
    }
    ([("content-type", "application/json")], answer).into_response()
}

async fn upgrade(seen: Seen, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    seen.lock().unwrap().push(Received::Upgrade(headers));
    ws.on_upgrade(move |socket| session(socket, seen.0))
}

async fn session(mut socket: WebSocket, seen: Arc<Mutex<Vec<Received>>>) {
    while let Some(Ok(message)) = socket.recv().await {
        let data = match message {
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Binary(b) => b.to_vec(),
            _ => continue,
        };
        seen.lock().unwrap().push(Received::Message(data.clone()));
        if let Some(answer) = answer(&data) {
            if socket.send(Message::Text(answer.into())).await.is_err() {
                return;
            }
        }
    }
}

/// A node's answer: a result for every call with an id, a parse error for what is not JSON,
/// nothing when only notifications came.
pub fn answer(body: &[u8]) -> Option<String> {
    let one = |call: &Value| -> Option<Value> {
        let id = call.get("id")?;
        let result = match call.get("method").and_then(Value::as_str) {
            Some("eth_syncing") => json!(false),
            Some("net_peerCount") => json!("0x19"),
            Some("eth_blockNumber") => json!("0x3e8"),
            Some("eth_getBlockByNumber") => {
                json!({"number": "0x3e8", "timestamp": format!("0x{:x}", unix_now())})
            }
            _ => json!("0x1"),
        };
        Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(calls)) => {
            let answers: Vec<Value> = calls.iter().filter_map(one).collect();
            (!answers.is_empty()).then(|| Value::Array(answers).to_string())
        }
        Ok(call) => one(&call).map(|a| a.to_string()),
        Err(_) => Some(
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}})
                .to_string(),
        ),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

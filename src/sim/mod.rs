//! Simulated execution and consensus nodes, shared by the tests, the demo and the benchmarks.
//!
//! A [`SimNode`] serves HTTP (optionally TLS from a [`tls::TestCa`]), WebSocket (execution) and
//! SSE (consensus) on `127.0.0.1`, with state that a test or a demo user changes at run time:
//! syncing, peers, head, optimistic, EL offline, an error status, a delay, WebSocket upgrades
//! refused as geth refuses them. It can stop accepting and drop every connection, and come back
//! on the same port. It records what it received, telling health probes (by their User-Agent)
//! apart from client traffic.
//!
//! Control over HTTP (for the demo): `POST /sim/state` with a JSON patch of [`NodeStatus`], and
//! `POST /sim/head` to produce a new head.

mod clock;
pub mod consensus;
pub mod execution;
mod state;
mod status;
pub mod tls;

pub use state::{NodeState, SeenRequest};
pub use status::{NodeStatus, StatusPatch, SECONDS_PER_SLOT};

use crate::health::PROBE_USER_AGENT;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use state::lock;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

/// Which API a simulated node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Execution,
    Consensus,
}

/// A running simulated node. Stops when dropped.
pub struct SimNode {
    pub kind: NodeKind,
    state: Arc<NodeState>,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl SimNode {
    /// Starts a node on `127.0.0.1:0`, plain HTTP.
    pub async fn start(kind: NodeKind, name: &str, status: NodeStatus) -> std::io::Result<SimNode> {
        Self::start_on(
            kind,
            name,
            status,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            None,
        )
        .await
    }

    /// Starts a node on `addr`, serving TLS with `tls` when given.
    pub async fn start_on(
        kind: NodeKind,
        name: &str,
        status: NodeStatus,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<SimNode> {
        let state = NodeState::new(name, status);
        let api = match kind {
            NodeKind::Execution => execution::router(),
            NodeKind::Consensus => consensus::router(),
        };
        let router = api
            .route(
                "/sim/state",
                axum::routing::post(control_state).get(control_get),
            )
            .route("/sim/head", axum::routing::post(control_head))
            .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
            .with_state(state.clone());
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let node = SimNode {
            kind,
            state,
            addr,
            tls,
            router,
            accept: Mutex::new(None),
        };
        node.serve(listener);
        Ok(node)
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's URL by host name (`localhost`, which the test certificates cover).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://localhost:{}", self.addr.port())
    }

    /// The WebSocket URL of an execution node (same port as HTTP).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://localhost:{}", self.addr.port())
    }

    pub fn status(&self) -> NodeStatus {
        self.state.status()
    }

    /// Changes the reported state.
    pub fn set(&self, change: impl FnOnce(&mut NodeStatus)) {
        change(&mut lock(&self.state.status));
    }

    /// Produces a new head: notifies WebSocket `newHeads` subscribers and SSE `head` listeners.
    pub fn new_head(&self) -> u64 {
        self.state.new_head()
    }

    /// Requests from clients (health probes not counted).
    pub fn client_requests(&self) -> u64 {
        self.state.client_requests.load(Ordering::SeqCst)
    }

    /// Consensus only: `/eth/v1/events` streams open now (a stream counts until the node drops
    /// it: its client went away, or [`Self::drop_sessions`]).
    pub fn open_event_streams(&self) -> u64 {
        self.state.event_streams.load(Ordering::SeqCst)
    }

    /// Consensus only: events produced on every stream so far (a stream whose reader stopped
    /// stops producing once the connection's buffers are full).
    pub fn events_sent(&self) -> u64 {
        self.state.events_sent.load(Ordering::SeqCst)
    }

    /// WebSocket connections open now (execution).
    pub fn ws_open(&self) -> u64 {
        self.state.ws_open.load(Ordering::SeqCst)
    }

    /// Every request received, probes included.
    pub fn seen(&self) -> Vec<SeenRequest> {
        lock(&self.state.seen).clone()
    }

    /// JSON-RPC methods received from clients, in order (batches flattened).
    pub fn rpc_methods(&self) -> Vec<String> {
        lock(&self.state.rpc_methods).clone()
    }

    /// Stops accepting (connections are refused) and drops every open connection and session.
    pub fn go_down(&self) {
        if let Some(task) = lock(&self.accept).take() {
            task.abort();
        }
        self.state.kill.send_modify(|g| *g += 1);
    }

    /// Listens again on the same port after [`Self::go_down`].
    pub fn come_back(&self) -> std::io::Result<()> {
        if lock(&self.accept).is_some() {
            return Ok(());
        }
        let listener = bind(self.addr)?;
        self.serve(listener);
        Ok(())
    }

    /// Whether the node accepts connections (not after [`Self::go_down`]).
    pub fn is_listening(&self) -> bool {
        lock(&self.accept).is_some()
    }

    /// Ends every live WebSocket and SSE session, keeping the listener.
    pub fn drop_sessions(&self) {
        self.state.kill.send_modify(|g| *g += 1);
    }

    fn serve(&self, listener: TcpListener) {
        let router = self.router.clone();
        let tls = self.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let kill = self.state.kill.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let tls = tls.clone();
                // Only a drop after this connection came ends it.
                let mut kill = kill.clone();
                kill.borrow_and_update();
                tokio::spawn(async move {
                    let service = TowerToHyperService::new(router);
                    let builder = hyper::server::conn::http1::Builder::new();
                    tokio::select! {
                        _ = async {
                            match tls {
                                None => {
                                    let _ = builder.serve_connection(TokioIo::new(stream), service).with_upgrades().await;
                                }
                                Some(acceptor) => {
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        let _ = builder.serve_connection(TokioIo::new(stream), service).with_upgrades().await;
                                    }
                                }
                            }
                        } => {}
                        _ = kill.changed() => {}
                    }
                });
            }
        });
        *lock(&self.accept) = Some(task);
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.go_down();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Records every request, applies the configured delay and failure status.
async fn observe(State(state): State<Arc<NodeState>>, request: Request, next: Next) -> Response {
    let seen = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        SeenRequest {
            method: request.method().to_string(),
            uri: request
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
            host: header("host"),
            forwarded_for: header("x-forwarded-for"),
            forwarded_proto: header("x-forwarded-proto"),
            probe: header("user-agent").is_some_and(|ua| ua == PROBE_USER_AGENT),
            headers: request.headers().clone(),
        }
    };
    if !seen.uri.starts_with("/sim/") {
        if !seen.probe {
            state.client_requests.fetch_add(1, Ordering::SeqCst);
        }
        let probe = seen.probe;
        lock(&state.seen).push(seen);
        let status = state.status();
        let delay = status.delay_ms + if probe { 0 } else { status.client_delay_ms };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if let Some(code) = status.fail_status {
            let code =
                http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            let page = format!(
                "<html><body><h1>{code}</h1>simulated failure of {}</body></html>",
                state.name
            );
            return (code, [(http::header::CONTENT_TYPE, "text/html")], page).into_response();
        }
        if let Some(body) = status.reply_override {
            return ([(http::header::CONTENT_TYPE, "application/json")], body).into_response();
        }
    }
    let mut response = next.run(request).await;
    if let Ok(v) = http::HeaderValue::from_str(&state.name) {
        response.headers_mut().insert("x-sim-node", v);
    }
    response
}

async fn control_state(State(state): State<Arc<NodeState>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<StatusPatch>(&body) {
        Ok(patch) => {
            state.apply(patch);
            axum::Json(state.status()).into_response()
        }
        Err(e) => (
            http::StatusCode::BAD_REQUEST,
            format!("bad state patch: {e}\n"),
        )
            .into_response(),
    }
}

async fn control_get(State(state): State<Arc<NodeState>>) -> Response {
    axum::Json(state.status()).into_response()
}

async fn control_head(State(state): State<Arc<NodeState>>) -> Response {
    let head = state.new_head();
    axum::Json(serde_json::json!({ "head": head })).into_response()
}

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

pub mod consensus;
pub mod execution;
pub mod tls;

use crate::health::PROBE_USER_AGENT;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// The state a node reports; every field can be changed while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub syncing: bool,
    pub peers: u64,
    /// Block number (execution) or slot (consensus).
    pub head: u64,
    pub chain_id: u64,
    /// Execution only: whether `net_peerCount` exists (anvil lacks it).
    pub peer_count_supported: bool,
    /// Consensus only.
    pub optimistic: bool,
    /// Consensus only; `None` leaves the field out, as older clients do.
    pub el_offline: Option<bool>,
    /// Answer every request with this HTTP status and an HTML page.
    pub fail_status: Option<u16>,
    /// Wait this long (ms) before answering.
    pub delay_ms: u64,
    /// Consensus only: send an SSE `:keep-alive` comment line this often (ms); `None`: never.
    pub sse_keep_alive_ms: Option<u64>,
    /// Execution only: how old (s) the latest block is; 0 makes it fresh on every ask, more
    /// makes a node that stopped following its chain.
    pub head_age_s: u64,
    /// Answer every request with this body (status 200, JSON content type), whatever it asked.
    pub reply_override: Option<String>,
    /// Execution only: blocks from this number on are another branch's (other hashes), as after
    /// a reorg; `None`: the common chain.
    pub branch_from: Option<u64>,
    /// Execution only: close every WebSocket, without a word, once it has answered this many
    /// messages (0: right after the upgrade).
    pub ws_close_after: Option<u64>,
    /// Execution only: wait this long (ms) before each WebSocket answer.
    pub ws_answer_delay_ms: u64,
    /// Execution only: the origins a WebSocket upgrade may come from, as geth's `--ws.origins`.
    /// An upgrade whose `Origin` is not listed (compared whole, in any letter case; `*` lets any
    /// in) is refused as geth refuses it: 403 with gorilla/websocket's text. One without `Origin`
    /// passes, as on geth (browsers always send it). `None`: no check.
    pub ws_origins: Option<Vec<String>>,
    /// Execution only: the path WebSocket is served under, as geth's `--ws.rpcprefix` when
    /// WebSocket shares the HTTP port. An upgrade to another path is answered as geth's HTTP side
    /// answers it: `/` gets 200 with no body (geth's answer to a GET without a body, for load
    /// balancers' checks), any other path 404 with no body. `None`: every path serves WebSocket.
    pub ws_path: Option<String>,
    /// Execution only: stop reading every WebSocket connection (a frozen node: its TCP window
    /// closes once its buffers are full); heads still go out.
    pub ws_frozen: bool,
    /// Execution only: write the `id` of each WebSocket answer as its last key (as Nethermind
    /// does), not its first.
    pub ws_id_last: bool,
    /// Execution only: answer `eth_getLogs` with one log whose `data` makes the answer about this
    /// many bytes, whatever the filter.
    pub logs_answer_bytes: Option<usize>,
    /// Execution only: the next `eth_blockNumber` on a WebSocket answers this number instead of
    /// the head (once; then the field is `None` again), as a node behind a stale cache might.
    pub ws_wrong_block_number: Option<u64>,
    /// Execution only: blocks from this number on have no logs.
    pub no_logs_from: Option<u64>,
    /// Consensus only: end every event stream at once, before any event (after its header).
    pub sse_end_at_once: bool,
    /// Consensus only: every event stream sends `head` events one after another, as fast as
    /// the connection takes them, each padded to about this many bytes (a client that stops
    /// reading fills its buffers at once); `None`: one event per new head.
    pub sse_flood_bytes: Option<usize>,
    /// Consensus only: genesis time (Unix seconds); by default the head is the wall-clock slot.
    pub genesis_time: u64,
    /// Consensus only: the network's genesis validators root.
    pub genesis_validators_root: String,
}

/// Slot length of the simulated consensus chain.
pub const SECONDS_PER_SLOT: u64 = 12;

impl Default for NodeStatus {
    fn default() -> Self {
        NodeStatus {
            syncing: false,
            peers: 25,
            head: 1000,
            chain_id: 1,
            peer_count_supported: true,
            optimistic: false,
            el_offline: Some(false),
            fail_status: None,
            delay_ms: 0,
            reply_override: None,
            branch_from: None,
            ws_close_after: None,
            sse_end_at_once: false,
            sse_flood_bytes: None,
            ws_answer_delay_ms: 0,
            ws_origins: None,
            ws_path: None,
            ws_frozen: false,
            ws_id_last: false,
            logs_answer_bytes: None,
            ws_wrong_block_number: None,
            no_logs_from: None,
            sse_keep_alive_ms: None,
            head_age_s: 0,
            genesis_time: unix_now().saturating_sub(1000 * SECONDS_PER_SLOT),
            genesis_validators_root: format!("0x{:064x}", 0x4b36_3db9u64),
        }
    }
}

/// A partial update of [`NodeStatus`], as sent to `POST /sim/state`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPatch {
    pub syncing: Option<bool>,
    pub peers: Option<u64>,
    pub head: Option<u64>,
    pub optimistic: Option<bool>,
    pub el_offline: Option<Option<bool>>,
    pub fail_status: Option<Option<u16>>,
    pub delay_ms: Option<u64>,
}

/// One request as the node saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub host: Option<String>,
    pub forwarded_for: Option<String>,
    pub forwarded_proto: Option<String>,
    pub probe: bool,
    /// Every header as received.
    pub headers: http::HeaderMap,
}

/// State shared by a node's handlers.
pub struct NodeState {
    pub name: String,
    status: Mutex<NodeStatus>,
    heads: broadcast::Sender<u64>,
    /// Bumped to end every live WebSocket and SSE session.
    kill: watch::Sender<u64>,
    seen: Mutex<Vec<SeenRequest>>,
    /// JSON-RPC methods received from clients (not probes), in order.
    rpc_methods: Mutex<Vec<String>>,
    client_requests: AtomicU64,
    /// Event streams open now.
    event_streams: AtomicU64,
    /// Events produced on every stream so far.
    events_sent: AtomicU64,
    /// WebSocket connections open now.
    ws_open: AtomicU64,
}

impl NodeState {
    fn new(name: &str, status: NodeStatus) -> Arc<Self> {
        Arc::new(NodeState {
            name: name.to_string(),
            status: Mutex::new(status),
            heads: broadcast::channel(64).0,
            kill: watch::channel(0).0,
            seen: Mutex::new(Vec::new()),
            rpc_methods: Mutex::new(Vec::new()),
            client_requests: AtomicU64::new(0),
            event_streams: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            ws_open: AtomicU64::new(0),
        })
    }

    pub fn status(&self) -> NodeStatus {
        lock(&self.status).clone()
    }

    /// The wrong `eth_blockNumber` to answer once, if one is set.
    fn take_wrong_block_number(&self) -> Option<u64> {
        lock(&self.status).ws_wrong_block_number.take()
    }

    fn apply(&self, patch: StatusPatch) {
        let mut s = lock(&self.status);
        if let Some(v) = patch.syncing {
            s.syncing = v;
        }
        if let Some(v) = patch.peers {
            s.peers = v;
        }
        if let Some(v) = patch.head {
            s.head = v;
        }
        if let Some(v) = patch.optimistic {
            s.optimistic = v;
        }
        if let Some(v) = patch.el_offline {
            s.el_offline = v;
        }
        if let Some(v) = patch.fail_status {
            s.fail_status = v;
        }
        if let Some(v) = patch.delay_ms {
            s.delay_ms = v;
        }
    }

    fn new_head(&self) -> u64 {
        let head = {
            let mut s = lock(&self.status);
            s.head += 1;
            s.head
        };
        // No receiver is fine: nobody subscribed yet.
        let _ = self.heads.send(head);
        head
    }

    fn record_rpc(&self, method: &str) {
        lock(&self.rpc_methods).push(method.to_string());
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
        lock(&state.seen).push(seen);
        let status = state.status();
        if status.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(status.delay_ms)).await;
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

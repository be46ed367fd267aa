//! The resolved configuration: real types, defaults applied, cross-references checked.
//!
//! Built only by `validate`; the rest of the gateway never sees the file structs.
//!
//! Imports go one way: the model names [`methods`](super::methods) (a pool's [`MethodPolicy`]
//! and its defaults live there); `methods` never names the model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

pub use super::file::{
    AdminExpose, ListenerMode, LogFormat, Policy, PoolKind, RouteEndpoint, SessionMode,
};
use super::methods::MethodPolicy;

/// Admin listener address when none is configured.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:8405";
/// Time allowed to establish a backend connection (TCP + TLS); haproxy's `timeout connect`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any read from a backend; haproxy's `timeout server`.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// A WebSocket with no traffic either way for this long is closed; haproxy's `timeout tunnel`.
pub const DEFAULT_WEBSOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest a kept-alive backend connection is kept unused: 30 s, well below what NATs and Docker
/// Swarm's IPVS (900 s) allow an idle flow before they forget it without a word.
pub const DEFAULT_BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many more backends a failed request is tried on; haproxy's `retries`.
pub const DEFAULT_RETRIES: u32 = 2;
/// Time between two health checks of a backend.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Time a health probe may take before it counts as failed (the original scripts' `curl -m2`).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive good checks that bring a down backend up.
pub const DEFAULT_RISE: u32 = 2;
/// Consecutive bad checks that take an up backend down.
pub const DEFAULT_FALL: u32 = 2;
/// Minimum peer count of a healthy node (the original scripts' `MIN_PEERS`).
pub const DEFAULT_MIN_PEERS: u64 = 10;
/// Blocks an execution node may be behind the pool's best head (the SSV node's own limit).
pub const DEFAULT_EXECUTION_MAX_LAG: u64 = 5;
/// Slots a consensus node may be behind the pool's best head ("synced" in Lighthouse's ranking).
pub const DEFAULT_CONSENSUS_MAX_LAG: u64 = 8;
/// Slots a consensus node's head may be behind the wall clock (one epoch: missed slots happen).
pub const DEFAULT_MAX_SLOT_LAG: u64 = 32;
/// How old an execution node's latest block may be: 2 minutes, ten 12-second slots without a block
/// (an execution client stops advancing when its consensus client is gone).
pub const DEFAULT_MAX_HEAD_AGE: Duration = Duration::from_secs(120);
/// Time live sessions may continue after SIGTERM.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Largest request body accepted.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Longest request URL accepted.
pub const DEFAULT_MAX_URL_BYTES: usize = 8 * 1024;
/// Longest time a body read whole may take to arrive: 30 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of request bodies and WebSocket messages held at once per listener: 64 MiB (six bodies
/// of the largest default size; the shipped container limits are 256 MiB).
pub const DEFAULT_MAX_HELD_BYTES: usize = 64 * 1024 * 1024;
/// Most request headers accepted.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Largest total size of request headers accepted.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Blocks a seamless WebSocket session's gap fill may cover when it moves (`max_gap_blocks`).
pub const DEFAULT_MAX_GAP_BLOCKS: u64 = 128;
/// Bytes of answers a pool's cache holds, keys and bookkeeping included: 32 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// The smallest cache: 64 KiB (its largest entry is a sixteenth of it, 4 KiB).
pub const MIN_CACHE_MAX_BYTES: u64 = 64 * 1024;
/// The largest cache: 16 GiB, far more than finalized reads need; a larger number is a typo.
pub const MAX_CACHE_MAX_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// Most requests in flight at once on one listener (haproxy's `maxconn 20000`).
pub const DEFAULT_MAX_REQUESTS: usize = 20_000;
/// Most requests in flight at once from one client address.
pub const DEFAULT_MAX_REQUESTS_PER_CLIENT: usize = 1_000;
/// Most WebSocket sessions open at once on one listener.
pub const DEFAULT_MAX_WEBSOCKETS: usize = 10_000;
/// Passthrough listeners: how long a client may take to send its TLS ClientHello (haproxy's
/// `tcp-request inspect-delay` in the original setup).
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a healthy-again primary must stay the first choice before sessions on lower-ranked
/// backends are moved back to it.
pub const DEFAULT_FAILBACK_DELAY: Duration = Duration::from_secs(10);
/// A pool's `hedge.delay` when its `hedge` section does not say.
pub const DEFAULT_HEDGE_DELAY: Duration = Duration::from_millis(300);
/// Shortest `hedge.delay` accepted: below it every read goes to two nodes.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(1);
/// Longest `hedge.delay` accepted: past it a hedge no longer saves a slot's duty.
pub const MAX_HEDGE_DELAY: Duration = Duration::from_secs(60);
/// Most extra backends one read may be sent to (`hedge.max`).
pub const MAX_HEDGES: u32 = 8;
/// Most backends one pool may hold (requests track tried backends in a 64-bit set).
pub const MAX_BACKENDS_PER_POOL: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Worker threads per listener.
    pub threads: usize,
    pub grace_period: Duration,
    /// Unix socket for handing the listening sockets to a new process (`run --upgrade`).
    pub upgrade_socket: PathBuf,
    pub pid_file: PathBuf,
    pub admin: SocketAddr,
    pub admin_auth: Option<Auth>,
    /// What the admin listener serves.
    pub admin_expose: AdminExpose,
    pub listeners: Vec<Listener>,
    pub pools: Vec<PoolConfig>,
    pub routes: Vec<Route>,
    pub timeouts: Timeouts,
    pub retries: u32,
    pub log: LogSettings,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_url_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    /// Bytes of request bodies and WebSocket messages held at once per listener, beyond the
    /// first 64 KiB of each.
    pub max_held_bytes: usize,
    /// Longest time a body the gateway reads whole may take to arrive.
    pub body_timeout: Duration,
}

/// The documented defaults.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Filter directives (`info`, `warn,ssv_ha=debug`).
    pub level: String,
    /// One `access` line per request.
    pub access: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Most WebSocket sessions open at once on this listener.
    pub max_websockets: usize,
    pub auth: Option<Auth>,
    /// Most requests in flight at once on this listener, and from one client address.
    pub max_requests: usize,
    pub max_requests_per_client: usize,
    pub mode: ListenerMode,
    /// Passthrough: longest wait for the ClientHello.
    pub hello_timeout: Duration,
}

/// Accepted `Authorization` header values (secret: never logged or shown).
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    pub accepted: Vec<http::HeaderValue>,
    /// The `WWW-Authenticate` challenge sent with a 401.
    pub challenge: &'static str,
}

impl Auth {
    /// Whether the request's `Authorization` header is one of the accepted values. The comparison
    /// takes the same time wherever the first difference is.
    pub fn admits(&self, presented: Option<&http::HeaderValue>) -> bool {
        let Some(presented) = presented else {
            return false;
        };
        let presented = presented.as_bytes();
        self.accepted.iter().any(|a| {
            let a = a.as_bytes();
            a.len() == presented.len()
                && a.iter()
                    .zip(presented)
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
    pub websocket_idle: Duration,
    /// Longest a kept-alive backend connection waits unused before it is closed.
    pub backend_idle: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub kind: PoolKind,
    pub policy: Policy,
    pub min_peers: u64,
    /// Blocks (execution) or slots (consensus) behind the pool's best head that are tolerated.
    pub max_lag: u64,
    /// Consensus only: slots behind the wall clock that are tolerated.
    pub max_slot_lag: u64,
    /// Execution only: how old a node's latest block may be; `None`: not checked.
    pub max_head_age: Option<Duration>,
    /// The network every node must be on; `None`: the nodes must agree among themselves.
    pub network: ExpectedNetwork,
    /// Execution only: the JSON-RPC methods forwarded and the largest batch.
    pub methods: MethodPolicy,
    /// With policy `first`: move sessions back to a primary this long after it is healthy again;
    /// `None` leaves them where they are.
    pub failback: Option<Duration>,
    /// Whether sessions are cut or moved on a failover.
    pub sessions: SessionMode,
    /// Execution pools with seamless sessions: the most blocks a moving WebSocket session's gap
    /// fill covers; past it the session closes.
    pub max_gap_blocks: u64,
    /// Hedged reads; `None`: off.
    pub hedge: Option<Hedge>,
    /// The answer cache of answers that cannot change; `None`: off.
    pub cache: Option<CacheConfig>,
    pub health: HealthSettings,
    pub backends: Vec<BackendConfig>,
}

/// Hedged reads of a pool: a request that only reads and has had no answer's header from the
/// backends asked so far after `delay` goes to the next healthy backend too, up to `max` more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hedge {
    pub delay: Duration,
    pub max: u32,
}

/// A pool's answer cache (`cache: { max_bytes }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes held at most, keys and a fixed per-entry overhead included.
    pub max_bytes: u64,
}

/// Network identity a pool's nodes must report, from the config. Empty: learned by agreement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedNetwork {
    pub chain_id: Option<u64>,
    /// Lower-case `0x` + 64 hex digits.
    pub genesis_validators_root: Option<String>,
    /// Lower-case `0x` + 8 hex digits.
    pub genesis_fork_version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub name: String,
    /// Where plain requests and health probes go.
    pub http: Endpoint,
    /// Where WebSocket upgrades go (the `url` when no `ws_url` is set).
    pub ws: Endpoint,
    pub backup: bool,
    /// Extra trusted CA certificates (PEM), from the backend or else its pool.
    pub ca: Option<PathBuf>,
    /// Headers added to every request to this backend. Values are marked sensitive: they never
    /// appear in logs, `/status` or metrics.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// One backend URL, split into what the proxy needs per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As configured, with `ws`/`wss` mapped to `http`/`https`.
    pub url: Url,
    pub tls: bool,
    /// Host name (or IP literal) used for DNS, SNI and the `Host` header.
    pub host: String,
    pub port: u16,
    /// Path prefix put before every request path; empty or starting with `/`, never ending with `/`.
    pub path_prefix: String,
}

impl Endpoint {
    /// The `Host` header value a backend expects: the port only when it is not the default one.
    pub fn host_header(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Lower-case host name without port; `None` matches any host.
    pub host: Option<String>,
    /// Index into [`Config::listeners`]; `None` means every listener.
    pub listener: Option<usize>,
    /// Index into [`Config::pools`].
    pub pool: usize,
    /// Passthrough: which of the backend's addresses its connections go to.
    pub endpoint: RouteEndpoint,
}

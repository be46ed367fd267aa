//! Serde structs that mirror the YAML file, one per section.
//!
//! Nothing here is validated beyond its shape: `validate` turns these into the resolved
//! [`super::model`] and reports every problem with its YAML path. Every struct denies unknown
//! fields, so a misspelt key is an error rather than a silently ignored setting.

use serde::Deserialize;
use std::path::PathBuf;

/// `server:` — process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Worker threads per listener. Default: the number of CPU cores.
    pub threads: Option<usize>,
    /// How long live requests may continue after SIGTERM. Default `30s`.
    pub grace_period: Option<String>,
    /// Unix socket the listening sockets are handed over on for a zero-downtime restart.
    pub upgrade_socket: Option<PathBuf>,
    /// Where the process id is written.
    pub pid_file: Option<PathBuf>,
}

/// `log:` — how the gateway logs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (default) or `json`.
    pub format: Option<LogFormat>,
    /// A level (`info`) or a filter (`info,ssv_ha=debug`); `RUST_LOG` wins when set.
    pub level: Option<String>,
    /// One line per request. Default `true`.
    pub access: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `admin:` — the admin listener that serves `/metrics` and `/status`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Default `127.0.0.1:8405`.
    pub address: Option<String>,
    /// Credentials required for everything but `/healthz` and `/readyz`.
    pub auth: Option<AuthSection>,
    /// What the listener serves ([`AdminExpose`]). Default `all`. Read on its own, so that a bad
    /// value is reported at `admin.expose`.
    pub expose: Option<serde_yaml::Value>,
}

/// What the admin listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminExpose {
    /// The status page, `/status`, `/metrics`, `/healthz`, `/readyz` and `POST /reload`.
    #[default]
    All,
    /// `/metrics`, `/healthz` and `/readyz` only: a Prometheus exporter that can listen on an
    /// open address without handing out the gateway's state or its reload.
    Metrics,
}

/// `auth:` — credentials a client must present. Values may be `${NAME}` (read from the environment).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `Authorization: Bearer TOKEN`.
    pub bearer: Option<String>,
    /// `Authorization: Basic ...` with this user and password.
    pub basic: Option<BasicSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSection {
    pub user: String,
    pub password: String,
}

/// One entry of `listeners:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// Name used by routes to bind to this listener. Default: the address.
    pub name: Option<String>,
    pub address: String,
    pub tls: Option<TlsSection>,
    /// Most WebSocket sessions open at once on this listener. Default 10000.
    pub max_websockets: Option<usize>,
    /// Credentials clients must present.
    pub auth: Option<AuthSection>,
    /// Most requests (WebSocket sessions included) in flight at once on this listener. Default 20000.
    pub max_requests: Option<usize>,
    /// Most requests in flight at once from one client address (on a passthrough listener:
    /// connections open at once). Default 1000.
    pub max_requests_per_client: Option<usize>,
    /// `http` (the default: HTTP, TLS terminated when `tls` is set) or `passthrough` (TLS passed
    /// through to the node, routed by the ClientHello's SNI name).
    pub mode: Option<ListenerMode>,
    /// Passthrough: how long a client may take to send its ClientHello. Default 5s.
    pub hello_timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerMode {
    Http,
    Passthrough,
}

/// See [`PoolSection::sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    #[default]
    Cut,
    Seamless,
}

/// Which of a backend's addresses a passthrough route's connections go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteEndpoint {
    /// The backend's `url`.
    #[default]
    Url,
    /// The backend's `ws_url`.
    WsUrl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Execution,
    Consensus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    First,
    RoundRobin,
}

/// One value of `pools:`. `backends` are kept as raw YAML so that each one is checked on its own
/// and every bad backend is reported, not only the first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub kind: PoolKind,
    pub policy: Option<Policy>,
    pub min_peers: Option<u64>,
    /// Blocks (execution) or slots (consensus) a node may be behind the pool's best head.
    pub max_lag: Option<u64>,
    /// Consensus only: slots a node's head may be behind the wall-clock slot.
    pub max_slot_lag: Option<u64>,
    /// Execution only: how old a node's latest block may be (`2m`), or `off` for chains that
    /// produce blocks on demand. Default 2m.
    pub max_head_age: Option<String>,
    /// Execution only: the chain id every node must report.
    pub chain_id: Option<u64>,
    /// Consensus only: the genesis validators root every node must report.
    pub genesis_validators_root: Option<String>,
    /// Consensus only: the genesis fork version every node must report.
    pub genesis_fork_version: Option<String>,
    /// Execution only: which JSON-RPC methods are forwarded.
    pub methods: Option<MethodsSection>,
    /// Execution only: the largest JSON-RPC batch forwarded. Default 1000.
    pub max_batch: Option<usize>,
    /// Move sessions back to a primary that is healthy again: `true` (default), `false`.
    pub failback: Option<bool>,
    /// Delay before sessions move back to a healthy-again primary. Default `10s`.
    pub failback_delay: Option<String>,
    /// What happens to a long-lived session when its backend goes down or fails back: `cut`
    /// (default: the client reconnects) or `seamless` (the WebSocket session or event stream
    /// moves to the next healthy backend while the client stays connected).
    pub sessions: Option<SessionMode>,
    /// Execution pools with `sessions: seamless`: the most blocks a moving WebSocket session's
    /// gap fill covers. Default 128.
    pub max_gap_blocks: Option<u64>,
    /// Hedged reads ([`HedgeSection`]); absent: off. Read on its own, so that a bad key is
    /// reported at `pools.NAME.hedge` and the rest of the pool is still checked.
    pub hedge: Option<serde_yaml::Value>,
    /// The answer cache: `{ max_bytes: N }` (default 33554432, 32 MiB) or `off`. Kept as YAML
    /// and read in `validate::cache`, so that either form gets an error naming its path.
    pub cache: Option<serde_yaml::Value>,
    /// PEM file with extra CA certificates trusted for this pool's backends.
    pub ca: Option<PathBuf>,
    pub health: Option<HealthSection>,
    #[serde(default)]
    pub backends: Vec<serde_yaml::Value>,
}

/// `hedge:` of a pool — a read with no answer after `delay` goes to another backend as well.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeSection {
    /// How long the backends asked so far may take before the next is asked too. Default `300ms`.
    pub delay: Option<String>,
    /// Most backends asked besides the first. Default 1.
    pub max: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
}

/// `methods:` of an execution pool: prefix patterns (`eth_*`) or exact names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodsSection {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `limits:` — what a client request may be.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest request body, in bytes. Default 10485760 (10 MiB).
    pub max_body_bytes: Option<usize>,
    /// Longest request URL (path and query), in bytes. Default 8192.
    pub max_url_bytes: Option<usize>,
    /// Most request headers. Default 100.
    pub max_headers: Option<usize>,
    /// Largest total size of the request headers (names and values), in bytes. Default 16384.
    pub max_header_bytes: Option<usize>,
    /// Most bytes of request bodies and WebSocket messages held at once on one listener, beyond
    /// the first 64 KiB of each. Default 67108864 (64 MiB).
    pub max_held_bytes: Option<usize>,
    /// Longest time a request body read whole (execution pools) may take to arrive. Default 30s.
    pub body_timeout: Option<String>,
}

/// One entry of a pool's `backends:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    pub name: String,
    pub url: String,
    pub ws_url: Option<String>,
    #[serde(default)]
    pub backup: bool,
    /// PEM file with extra CA certificates trusted for this backend (overrides the pool's).
    pub ca: Option<PathBuf>,
    /// Headers added to every request to this backend, probes included (an API key for a paid
    /// provider). A value `${NAME}` is read from the environment variable NAME.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub host: Option<String>,
    pub listener: Option<String>,
    pub pool: String,
    /// Passthrough listeners only: `url` (default) or `ws_url`.
    pub endpoint: Option<RouteEndpoint>,
}

/// `timeouts:` — haproxy's defaults from the original setup are ours.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSection {
    pub connect: Option<String>,
    pub response: Option<String>,
    pub websocket_idle: Option<String>,
    /// A kept-alive connection to a backend unused this long is closed, not reused. Default 30s.
    pub backend_idle: Option<String>,
}

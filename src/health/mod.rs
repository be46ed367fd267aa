//! Health = probe + verdict + hysteresis, and the Pingora health checks made of them.
//!
//! - [`execution`] and [`consensus`] probes only observe a node and return [`Facts`] or a probe error.
//! - [`verdict`] is a pure function from facts and the pool's rules to healthy-or-not with reasons.
//! - [`check`] puts both behind Pingora's `HealthCheck` trait ([`check::ExecutionCheck`],
//!   [`check::ConsensusCheck`]), with the pool-wide state a single check is judged against: the
//!   pool view (`view`, its rounds in `view/round.rs`), what a driver tells a check about a node
//!   (`spec`) and what is kept per node between its checks (`target`). `check` re-exports what
//!   a driver names.
//! - [`hysteresis`] is a pure rise/fall counter that turns verdicts into up/down transitions, and
//!   [`record`] is what a backend keeps of its health (read by `/status`).
//!
//! Nothing here knows the gateway's pools or its proxy: `upstream::monitor` drives the checks.

pub mod check;
pub mod consensus;
pub mod execution;
pub mod hysteresis;
mod probe;
pub mod record;
mod spec;
mod target;
pub mod verdict;
mod view;

use serde::Serialize;

/// What one successful probe saw on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Facts {
    Execution(ExecutionFacts),
    Consensus(ConsensusFacts),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionFacts {
    pub syncing: bool,
    /// `None` when the node does not answer `net_peerCount` (or it was not asked).
    pub peers: Option<u64>,
    /// Error of `net_peerCount` when the node refused it, kept for the reason text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers_error: Option<String>,
    pub head: Option<u64>,
    pub chain_id: Option<u64>,
    /// Unix time of the latest block, when it was asked (`max_head_age` is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_time: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsensusFacts {
    pub is_syncing: bool,
    pub is_optimistic: Option<bool>,
    pub el_offline: Option<bool>,
    pub head_slot: Option<u64>,
    /// `None` when peers were not asked (`min_peers: 0`).
    pub peers: Option<u64>,
    /// Read once per node and kept (it cannot change without the node changing network).
    pub genesis: Option<Genesis>,
    /// `SECONDS_PER_SLOT` of the node's spec, read once and kept.
    pub seconds_per_slot: Option<u64>,
}

/// The network identity of a beacon node, from `/eth/v1/beacon/genesis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Genesis {
    pub time: u64,
    pub validators_root: String,
    pub fork_version: String,
}

/// User-Agent of every health probe, so node logs (and the simulated nodes) can tell probes apart.
pub const PROBE_USER_AGENT: &str = concat!("ssv-ha-health/", env!("CARGO_PKG_VERSION"));

/// Logs a backend's health transition: the one line operators grep for, from active checks and
/// from failures on live traffic alike.
pub fn log_transition(pool: &str, backend: &str, up: bool, reason: &str) {
    if up {
        tracing::info!(pool = %pool, backend = %backend, reason = %reason, "backend up");
    } else {
        tracing::warn!(pool = %pool, backend = %backend, reason = %reason, "backend down");
    }
}

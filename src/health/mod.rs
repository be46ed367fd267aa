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
mod facts;
pub mod hysteresis;
mod probe;
pub mod record;
mod spec;
mod target;
mod transition_log;
pub mod verdict;
mod view;

pub use facts::{ConsensusFacts, ExecutionFacts, Facts, Genesis};
pub use probe::PROBE_USER_AGENT;
pub use transition_log::log_transition;

//! The log line of a health transition, shared by the active checks and the passive marking-down
//! of a backend on live traffic, so both read alike.

/// Logs a backend's health transition: the one line operators grep for, from active checks and
/// from failures on live traffic alike.
pub fn log_transition(pool: &str, backend: &str, up: bool, reason: &str) {
    if up {
        tracing::info!(pool = %pool, backend = %backend, reason = %reason, "backend up");
    } else {
        tracing::warn!(pool = %pool, backend = %backend, reason = %reason, "backend down");
    }
}

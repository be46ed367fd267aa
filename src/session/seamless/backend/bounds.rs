//! The bounds a backend socket keeps: the largest message it assembles (and what the client is
//! told of one over it), the bytes it queues, and how long the backend may take none of them.

use std::time::Duration;

/// The largest backend message a session assembles: 16 MiB. An answer over it becomes a
/// JSON-RPC error for its request ([`ANSWER_TOO_LARGE`]); the session and its backend stay. It
/// bounds what one session holds of one message (the assembled message, and once more while
/// the session's rules read it).
pub const MAX_BACKEND_MESSAGE: usize = 16 * 1024 * 1024;

/// The JSON-RPC error code of an answer larger than [`MAX_BACKEND_MESSAGE`] ("limit exceeded",
/// EIP-1474).
pub const ANSWER_TOO_LARGE: i64 = -32005;

/// Bytes kept of each end of a message over [`MAX_BACKEND_MESSAGE`], to find its `id`.
pub const KEPT_ENDS: usize = 1024;

/// Bytes queued for the backend past which the session stops reading its client (its frames
/// wait in its own TCP window).
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;

/// How long the backend may take no byte of what the session queued for it: past it, the
/// backend has failed for this session, which moves.
pub const SEND_DEADLINE: Duration = Duration::from_secs(10);

/// What the client is told of an answer over the limit.
pub fn too_large(length: u64) -> String {
    format!(
        "the node's answer ({length} bytes) is larger than the gateway's limit of {MAX_BACKEND_MESSAGE} bytes per message; ask for less (a narrower eth_getLogs range, say)"
    )
}

//! What one seamless WebSocket session is while it runs: the host that opened it, the client's
//! side, the pool it moves in ([`WsSession`]), and how its time on one backend ended
//! ([`Outcome`]). The files beside it add what the session does.

use super::super::watch::Move;
use crate::session::Host;
use crate::upstream::Pool;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::Duration;

/// One client's seamless WebSocket session: the host that opened it, the client's side, and the
/// pool it moves in.
pub(super) struct WsSession<'a, H: Host> {
    pub(super) host: &'a H,
    pub(super) session: &'a mut Session,
    pub(super) ctx: &'a mut H::Ctx,
    pub(super) pool: Arc<Pool>,
    /// The routing's response timeout when the session started: each call of a move, and the
    /// drain of a fail-back, get this long.
    pub(super) response_timeout: Duration,
    /// Set when the backend was let go while a write to the client waited (its mark-down): the
    /// session moves once that write is done.
    pub(super) leaving: Option<Move>,
}

/// How a session on one backend ended.
pub(super) enum Outcome {
    /// The client closed, went away, or the session was ended: nothing more to do.
    Over,
    /// It must move; `heard`: the backend sent something on the way.
    Move { why: Move, heard: bool },
}

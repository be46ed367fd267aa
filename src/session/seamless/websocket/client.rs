//! The client's side of a seamless WebSocket session: whole frames written to it, while the
//! session's pool is watched ([`WsSession::write_watched`]) or not, and the close frame that
//! ends its session.

use super::super::backend::BackendSocket;
use super::super::watch::{Look, Move, Watch, WATCH};
use super::state::WsSession;
use crate::session::relay::{frame, Closing};
use crate::session::Host;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, OpCode};

/// Longest a write to the client may wait (a client that stops reading holds its session, and
/// the backend's, no longer than this).
pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the close frame may wait when the gateway shuts down or reloads (a client that stops
/// reading does not hold the shutdown); an event stream's last chunk then, too.
pub const CLOSE_AT_END: Duration = Duration::from_secs(1);

/// Whether a write to the client went out, or the session ended while it waited.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    Done,
    Ended,
}

impl<H: Host> WsSession<'_, H> {
    /// Closes the client's WebSocket with a code and a reason, giving it
    /// [`CLIENT_WRITE_TIMEOUT`] to take the close frame.
    pub(super) async fn close(&mut self, code: CloseCode, reason: &str) {
        close_client(self.session, code, reason, CLIENT_WRITE_TIMEOUT).await;
    }

    /// One frame to the client, while the session's pool is watched: [`Written::Ended`] when the
    /// gateway shuts down or a reload replaces the pool meanwhile (the session ends at once, its
    /// client gone or not); an error when the client took nothing for [`CLIENT_WRITE_TIMEOUT`].
    /// A mark-down of backend `index` meanwhile lets go of `upstream` at once, as an event stream
    /// does, and the session moves once the write is done ([`WsSession::leaving`]).
    pub(super) async fn write_watched(
        &mut self,
        index: usize,
        upstream: &mut BackendSocket,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<Written> {
        let bytes = Bytes::from(frame(opcode, None, payload));
        let mut write = std::pin::pin!(self.session.write_response_body(Some(bytes), false));
        loop {
            tokio::select! {
                biased;
                written = &mut write => {
                    return written.map(|()| Written::Done).map_err(|e| e.into_down());
                }
                _ = tokio::time::sleep(WATCH) => {
                    match Watch::default().look(self.host.routing(), &self.pool, index) {
                        Look::End => {
                            tracing::info!(pool = %self.pool.name(), "shutting down or reloading while a write to a slow client waits: the session ends");
                            return Ok(Written::Ended);
                        }
                        Look::Move(Move::BackendDown) if self.leaving.is_none() => {
                            let backend = self.pool.backends[index].name();
                            tracing::info!(pool = %self.pool.name(), %backend, "a write to a slow client waits at its backend's mark-down: the backend is let go, and the session moves once the write is done");
                            upstream.let_go();
                            self.leaving = Some(Move::BackendDown);
                        }
                        Look::Move(_) | Look::Stay => {}
                    }
                }
            }
        }
    }
}

/// One whole frame to the client.
pub(super) async fn to_client(session: &mut Session, opcode: OpCode, payload: &[u8]) -> Result<()> {
    session
        .write_response_body(Some(Bytes::from(frame(opcode, None, payload))), false)
        .await
        .map_err(|e| e.into_down())
}

/// Closes the client's WebSocket with a code and a reason (best effort: it may be gone, or not
/// take it `within`).
pub(super) async fn close_client(
    session: &mut Session,
    code: CloseCode,
    reason: &str,
    within: Duration,
) {
    let closing = Closing {
        code,
        reason: reason.to_string(),
    };
    let close = session.write_response_body(Some(Bytes::from(closing.frame())), true);
    match tokio::time::timeout(within, close).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "could not send the close frame"),
        Err(_) => tracing::debug!(within = ?within, "the client did not take the close frame"),
    }
}

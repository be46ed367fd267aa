//! A seamless WebSocket session's move to the next healthy backend ([`WsSession::move_session`]):
//! backend after backend until one takes the session ([`super::carry_over`]) within
//! [`MOVE_DEADLINE`], then the replay: the requests in flight that are safe to repeat go to the
//! new backend, and its messages that waited meanwhile go to the client.

use super::super::backend::BackendSocket;
use super::super::subscriptions::SessionState;
use super::super::watch::{next_backend, watched, Look, Move, Watch, Watched};
use super::carry_over::{Carry, MoveFailed, MOVE_DEADLINE};
use super::client::{close_client, to_client, Written, CLOSE_AT_END};
use super::open::OpenFailed;
use super::state::WsSession;
use crate::session::Host;
use crate::upstream::connections::Connections;
use crate::upstream::Traffic;
use bytes::Bytes;
use pingora::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::Message;

/// What came of trying to move the session to one backend.
enum Tried {
    /// The backend took the session: the gateway's WebSocket to it, and its messages that
    /// waited while the session moved.
    Took(Box<BackendSocket>, Vec<Message>),
    /// It failed: the next one is tried.
    Next,
    /// The session cannot move anywhere, and its client was told why.
    Closed,
}

impl<H: Host> WsSession<'_, H> {
    /// Moves the session from backend `from` to the next healthy one; `None` when it closed
    /// instead (no backend, a gap too long, out of time), with the client told why.
    pub(super) async fn move_session(
        &mut self,
        from: usize,
        why: Move,
        state: &mut SessionState,
    ) -> Result<Option<(usize, BackendSocket)>> {
        let from_name = self.pool.backends[from].name().to_string();
        // Requests in flight on a backend that closed the connection may be why it did: they go
        // nowhere else.
        let (resend, answers) = state.on_move(&from_name, why != Move::BackendEnded);
        for answer in answers {
            to_client(self.session, OpCode::Data(Data::Text), &answer).await?;
        }
        // A fail-back goes to the better backend; otherwise the one that failed is not tried.
        let mut excluded = if why == Move::FailBack { 0 } else { 1 << from };
        let deadline = Instant::now() + MOVE_DEADLINE;
        let mut look = Watch::default();
        loop {
            let Some((index, connections, left)) =
                self.next_target(&mut look, from, excluded, deadline).await
            else {
                return Ok(None);
            };
            excluded |= 1 << index;
            let (mut upstream, waiting) = match self
                .try_backend(index, &connections, left, state, deadline)
                .await
            {
                Tried::Took(upstream, waiting) => (*upstream, waiting),
                Tried::Next => continue,
                Tried::Closed => return Ok(None),
            };
            let replayed = self
                .replay(index, &mut upstream, state, &resend, waiting)
                .await?;
            return Ok((replayed == Written::Done).then_some((index, upstream)));
        }
    }

    /// The next backend to try, its connections, and the time left for the move; `None` when
    /// the session closed instead (shutdown or reload, out of time, no healthy backend left).
    async fn next_target(
        &mut self,
        look: &mut Watch,
        from: usize,
        excluded: u64,
        deadline: Instant,
    ) -> Option<(usize, Arc<Connections>, Duration)> {
        if look.look(self.host.routing(), &self.pool, from) == Look::End {
            let reason = "the gateway is reloading or shutting down; reconnect";
            close_client(self.session, CloseCode::Restart, reason, CLOSE_AT_END).await;
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(pool = %self.pool.name(), kind = "websocket", deadline = ?MOVE_DEADLINE, "a WebSocket session could not move in time: it closes");
            let reason = "no backend took this session in time; reconnect";
            self.close(CloseCode::Restart, reason).await;
            return None;
        }
        let Some((index, connections)) = next_backend(&self.pool, excluded, |b| b.ws_connections())
        else {
            tracing::info!(pool = %self.pool.name(), kind = "websocket", "no healthy backend to move the session to: it closes");
            let reason = "no healthy backend to move this session to; reconnect";
            self.close(CloseCode::Restart, reason).await;
            return None;
        };
        Some((index, connections, left))
    }

    /// Opens the gateway's WebSocket to backend `index` (`left`: the time the move has) and
    /// carries the session over to it. Both race the watch: shutdown or a reload ends the
    /// session at once, and the backend's mark-down while it opens sends the move on. (Once the
    /// carry has begun it is not left for a mark-down: it may have given the client part of the
    /// gap; it ends within the move's time, and the session then moves again.)
    async fn try_backend(
        &mut self,
        index: usize,
        connections: &Connections,
        left: Duration,
        state: &mut SessionState,
        deadline: Instant,
    ) -> Tried {
        let (host, pool) = (self.host, Arc::clone(&self.pool));
        let backend = &pool.backends[index];
        self.session_ctx().backend = Some(index);
        let timeout = self.response_timeout.min(left);
        let open = self.open_upstream(connections, timeout);
        let opened = match watched(host.routing(), &pool, Some(index), open).await {
            Watched::Done(opened) => opened,
            Watched::Down => {
                tracing::info!(pool = %pool.name(), backend = %backend.name(), "moving a WebSocket session: the backend was marked down while it opened; trying the next");
                return Tried::Next;
            }
            Watched::End => return self.end_move().await,
        };
        let mut upstream = match opened {
            Ok((upstream, _)) => upstream,
            Err(OpenFailed::Connect(e)) => {
                tracing::warn!(pool = %pool.name(), backend = %backend.name(), error = %e, "moving a WebSocket session: backend failed; trying the next");
                pool.take_out(index, Traffic::WebSocket, "WebSocket: connect failed");
                return Tried::Next;
            }
            Err(OpenFailed::Handshake(e)) => {
                tracing::warn!(pool = %pool.name(), backend = %backend.name(), error = %e, "moving a WebSocket session: backend failed; trying the next");
                return Tried::Next;
            }
            Err(OpenFailed::Refused(header, _)) => {
                tracing::warn!(pool = %pool.name(), backend = %backend.name(), status = header.status.as_u16(), "moving a WebSocket session: the backend refused the upgrade; trying the next");
                return Tried::Next;
            }
        };
        let mut carry = Carry {
            upstream: &mut upstream,
            state,
            waiting: Vec::new(),
            waiting_bytes: 0,
            timeout: self.response_timeout,
            deadline,
        };
        let over = carry.over(self.session, pool.config.max_gap_blocks);
        let carried = match watched(host.routing(), &pool, None, over).await {
            Watched::Done(carried) => carried,
            Watched::Down | Watched::End => return self.end_move().await,
        };
        match carried {
            Ok(()) => {}
            Err(MoveFailed::Backend(e)) => {
                tracing::warn!(pool = %pool.name(), backend = %backend.name(), error = %e, "moving a WebSocket session: backend failed; trying the next");
                return Tried::Next;
            }
            Err(MoveFailed::Session(reason)) => {
                tracing::warn!(pool = %pool.name(), backend = %backend.name(), %reason, "a WebSocket session could not move: it closes");
                self.close(CloseCode::Error, &reason).await;
                return Tried::Closed;
            }
        }
        let waiting = std::mem::take(&mut carry.waiting);
        Tried::Took(Box::new(upstream), waiting)
    }

    /// Shutdown or a reload while the session moves: it ends (1012) at once.
    async fn end_move(&mut self) -> Tried {
        tracing::info!(pool = %self.pool.name(), kind = "websocket", "shutting down or reloading while a session moves: it ends");
        let reason = "the gateway is reloading or shutting down; reconnect";
        close_client(self.session, CloseCode::Restart, reason, CLOSE_AT_END).await;
        Tried::Closed
    }

    /// Replay on the new backend `index`: the requests in flight that are safe to repeat go to
    /// it, and its messages that waited during the move go to the client, through the session's
    /// rules.
    async fn replay(
        &mut self,
        index: usize,
        upstream: &mut BackendSocket,
        state: &mut SessionState,
        resend: &[Vec<u8>],
        waiting: Vec<Message>,
    ) -> Result<Written> {
        for request in resend {
            upstream.queue(Data::Text, request);
        }
        for message in waiting {
            let (data, payload) = match message {
                Message::Text(text) => (Data::Text, Bytes::from(text)),
                Message::Binary(bytes) => (Data::Binary, bytes),
                _ => continue,
            };
            let written = self
                .pass_to_client(index, upstream, state, data, payload)
                .await?;
            if written == Written::Ended {
                return Ok(Written::Ended);
            }
        }
        Ok(Written::Done)
    }
}

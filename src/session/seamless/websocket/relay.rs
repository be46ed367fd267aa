//! Relaying a seamless WebSocket session's messages on one backend, both ways, until the session
//! ends or must move ([`WsSession::relay_messages`]): the client's messages judged and sent on
//! under the gateway's ids, the backend's answered to the client under the client's, and the
//! watch looked at in between.
//!
//! No wait in it holds the watch: messages for the backend are queued and go out while the loop
//! waits for the next event ([`BackendSocket`]); a write to the client runs against the watch
//! ([`WsSession::write_watched`]).

use super::super::backend::{
    too_large, BackendSocket, Incoming, ANSWER_TOO_LARGE, MAX_BACKEND_MESSAGE, MAX_QUEUED_BYTES,
    SEND_DEADLINE,
};
use super::super::subscriptions::{Outgoing, SessionState, MAX_IN_FLIGHT, MAX_SESSION_BYTES};
use super::super::watch::{Look, Move, Watch, WATCH};
use super::client::{close_client, Written, CLOSE_AT_END};
use super::state::{Outcome, WsSession};
use crate::session::relay::whole_frames;
use crate::session::Host;
use bytes::Bytes;
use pingora::prelude::*;
use std::io;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// A backend message at least this long is read on a blocking thread, not on one that serves
/// other sessions.
const READ_ELSEWHERE: usize = 256 * 1024;

/// The session's stay on one backend, as the relay loop follows it.
struct Stay {
    /// The backend, as an index into the pool's backends.
    index: usize,
    /// When either side last sent something: past the idle timeout the session closes.
    heard: Instant,
    /// Whether the backend sent anything since the session came to it.
    spoke: bool,
    /// A fail-back waits for the answers in flight (the backend is healthy): since when.
    draining: Option<Instant>,
    look: Watch,
    idle_timeout: Duration,
    response_timeout: Duration,
}

impl Stay {
    /// The session leaves because its backend ended the connection, or failed it.
    fn backend_ended(&self) -> Option<Outcome> {
        Some(Outcome::Move {
            why: Move::BackendEnded,
            heard: self.spoke,
        })
    }
}

/// The payload of the close frame that answers the client's: the same code, when it is one an
/// endpoint may send (RFC 6455, 7.4); none for a close without one; 1002 (protocol error) for a
/// code no endpoint may send (1005, 1006, 1015, below 1000, ...) or a one-byte payload.
fn close_answer(payload: &[u8]) -> Vec<u8> {
    match payload {
        [] => Vec::new(),
        [high, low, ..] if CloseCode::from(u16::from_be_bytes([*high, *low])).is_allowed() => {
            vec![*high, *low]
        }
        _ => u16::from(CloseCode::Protocol).to_be_bytes().to_vec(),
    }
}

impl<H: Host> WsSession<'_, H> {
    /// Passes messages both ways on backend `index` until the session ends or must move.
    pub(super) async fn relay_messages(
        &mut self,
        index: usize,
        upstream: &mut BackendSocket,
        state: &mut SessionState,
    ) -> Result<Outcome> {
        let (idle_timeout, response_timeout) = {
            let routing = self.host.routing().load();
            (routing.timeouts.websocket_idle, routing.timeouts.response)
        };
        let mut stay = Stay {
            index,
            heard: Instant::now(),
            spoke: false,
            draining: None,
            look: Watch::default(),
            idle_timeout,
            response_timeout,
        };
        let mut watch = tokio::time::interval(WATCH);
        loop {
            // The backend was let go while a write to the client waited (its mark-down).
            if let Some(why) = self.leaving.take() {
                return Ok(Outcome::Move { why, heard: true });
            }
            // The client is not read (its own TCP window holds it back) past its limit of
            // requests in flight or its memory budget, while its messages wait for a backend slow
            // to take them, and while a fail-back drains: the answers in flight come in, then the
            // session moves.
            let reading = stay.draining.is_none()
                && state.in_flight() < MAX_IN_FLIGHT
                && state.held_bytes() < MAX_SESSION_BYTES
                && upstream.queued() < MAX_QUEUED_BYTES;
            let ended = tokio::select! {
                read = self.session.read_request_body(), if reading => match read {
                    Ok(Some(chunk)) => {
                        stay.heard = Instant::now();
                        self.on_client(index, upstream, state, chunk).await?
                    }
                    // The client went away.
                    Ok(None) | Err(_) => Some(Outcome::Over),
                },
                incoming = upstream.read() => {
                    self.on_backend(&mut stay, upstream, state, incoming).await?
                }
                _ = watch.tick() => self.on_watch(&mut stay, upstream, state).await,
            };
            match (ended, self.leaving.take()) {
                (Some(Outcome::Over), _) => return Ok(Outcome::Over),
                (_, Some(why)) => return Ok(Outcome::Move { why, heard: true }),
                (Some(outcome), None) => return Ok(outcome),
                (None, None) => {}
            }
        }
    }

    /// The client's next bytes, judged: its messages go to the backend (or are answered by the
    /// session itself), its pings are answered, its close ends the session (`Some`).
    async fn on_client(
        &mut self,
        index: usize,
        upstream: &mut BackendSocket,
        state: &mut SessionState,
        chunk: Bytes,
    ) -> Result<Option<Outcome>> {
        self.session_ctx().held = state.held_bytes();
        let judged = self
            .host
            .judge_client_frames(self.session, self.ctx, chunk)
            .await?;
        for (opcode, payload) in whole_frames(&judged) {
            let (opcode, reply) = match opcode {
                OpCode::Data(data) => match state.client_message(&payload) {
                    Outgoing::Backend(sent) => {
                        let data = match data {
                            Data::Text if std::str::from_utf8(&sent).is_ok() => Data::Text,
                            _ => Data::Binary,
                        };
                        upstream.queue(data, &sent);
                        continue;
                    }
                    Outgoing::Client(answer) => (OpCode::Data(Data::Text), answer),
                },
                OpCode::Control(Control::Ping) => (OpCode::Control(Control::Pong), payload),
                OpCode::Control(Control::Close) => {
                    let close = OpCode::Control(Control::Close);
                    self.write_watched(index, upstream, close, &close_answer(&payload))
                        .await?;
                    return Ok(Some(Outcome::Over));
                }
                OpCode::Control(_) => continue,
            };
            if self.write_watched(index, upstream, opcode, &reply).await? == Written::Ended {
                return Ok(Some(Outcome::Over));
            }
        }
        Ok(None)
    }

    /// What the backend sent: a message for the client, an answer too large (its request
    /// fails), or the end of the connection (the session moves: `Some`).
    async fn on_backend(
        &mut self,
        stay: &mut Stay,
        upstream: &mut BackendSocket,
        state: &mut SessionState,
        incoming: Option<io::Result<Incoming>>,
    ) -> Result<Option<Outcome>> {
        let incoming = match incoming {
            Some(Ok(incoming)) => incoming,
            Some(Err(e)) => {
                let backend = &self.pool.backends[stay.index];
                tracing::info!(pool = %self.pool.name(), backend = %backend.name(), error = %e, "WebSocket from the backend broke");
                return Ok(stay.backend_ended());
            }
            None => return Ok(stay.backend_ended()),
        };
        stay.heard = Instant::now();
        let written = match incoming {
            Incoming::Close => return Ok(stay.backend_ended()),
            Incoming::Oversized { id, length } => {
                stay.spoke = true;
                match self
                    .oversized(stay.index, upstream, state, id, length)
                    .await?
                {
                    Some(written) => written,
                    None => return Ok(stay.backend_ended()),
                }
            }
            Incoming::Data { data, payload } => {
                stay.spoke = true;
                self.pass_to_client(stay.index, upstream, state, data, payload)
                    .await?
            }
        };
        if written == Written::Ended {
            return Ok(Some(Outcome::Over));
        }
        // Answers came in: the session's share of the listener's held bytes follows.
        H::hold_session(self.ctx, state.held_bytes());
        Ok(None)
    }

    /// A backend message over [`MAX_BACKEND_MESSAGE`]: the failure of the request it answers,
    /// not the backend's, which gets an error under the client's id while the session stays.
    /// `None`: it answers nothing (it has no id), and the backend is left.
    async fn oversized(
        &mut self,
        index: usize,
        upstream: &mut BackendSocket,
        state: &mut SessionState,
        id: Option<u64>,
        length: u64,
    ) -> Result<Option<Written>> {
        let failed = id.and_then(|id| state.fail_request(id, ANSWER_TOO_LARGE, &too_large(length)));
        let backend = &self.pool.backends[index];
        match failed {
            Some(answer) => {
                tracing::info!(pool = %self.pool.name(), backend = %backend.name(), bytes = length, limit = MAX_BACKEND_MESSAGE, "an answer larger than the limit: its request fails, the session stays");
                let text = OpCode::Data(Data::Text);
                Ok(Some(
                    self.write_watched(index, upstream, text, &answer).await?,
                ))
            }
            None if id.is_some() => {
                tracing::debug!(pool = %self.pool.name(), backend = %backend.name(), bytes = length, "a message larger than the limit answered no request of the client's: dropped");
                Ok(Some(Written::Done))
            }
            None => {
                tracing::info!(pool = %self.pool.name(), backend = %backend.name(), bytes = length, limit = MAX_BACKEND_MESSAGE, "a message larger than the limit, with no id: the backend is left");
                Ok(None)
            }
        }
    }

    /// A look at the backend while the session is quiet: a move (after the answers in flight on
    /// a fail-back), the end at shutdown or reload, a backend that takes nothing, or a session
    /// idle too long end the stay (`Some`).
    async fn on_watch(
        &mut self,
        stay: &mut Stay,
        upstream: &mut BackendSocket,
        state: &SessionState,
    ) -> Option<Outcome> {
        match stay.look.look(self.host.routing(), &self.pool, stay.index) {
            Look::Stay => stay.draining = None,
            // Nothing new is sent to a backend the session leaves; what it was asked is answered
            // there first, up to the response timeout.
            Look::Move(Move::FailBack) if state.in_flight() > 0 => {
                let since = *stay.draining.get_or_insert_with(Instant::now);
                if since.elapsed() >= stay.response_timeout {
                    let why = Move::FailBack;
                    return Some(Outcome::Move { why, heard: true });
                }
            }
            Look::Move(why) => return Some(Outcome::Move { why, heard: true }),
            Look::End => {
                let reason = "the gateway is reloading or shutting down; reconnect";
                close_client(self.session, CloseCode::Restart, reason, CLOSE_AT_END).await;
                return Some(Outcome::Over);
            }
        }
        if let Some(stalled) = upstream.stalled_for().filter(|s| *s >= SEND_DEADLINE) {
            // A node that stopped reading its socket: the session leaves it. It is not marked
            // down, as a client could bring that about with its own flood of requests; nothing
            // in flight is sent again, for that reason.
            let backend = &self.pool.backends[stay.index];
            tracing::warn!(pool = %self.pool.name(), backend = %backend.name(), stalled = ?stalled, "the backend took none of the session's bytes: the session moves");
            return stay.backend_ended();
        }
        if stay.heard.elapsed() > stay.idle_timeout {
            let reason = "idle for longer than the session idle timeout";
            self.close(CloseCode::Away, reason).await;
            return Some(Outcome::Over);
        }
        None
    }

    /// One message from the backend, through the session's rules, to the client; and the
    /// gateway's own calls it prompted, to the backend (queued).
    pub(super) async fn pass_to_client(
        &mut self,
        index: usize,
        upstream: &mut BackendSocket,
        state: &mut SessionState,
        data: Data,
        bytes: Bytes,
    ) -> Result<Written> {
        let out = if bytes.len() >= READ_ELSEWHERE {
            let mut moved = std::mem::take(state);
            let (moved, out) = tokio::task::spawn_blocking(move || {
                let out = moved.backend_message(&bytes);
                (moved, out)
            })
            .await
            .or_err(
                ErrorType::InternalError,
                "reading a backend's WebSocket message",
            )?;
            *state = moved;
            out
        } else {
            state.backend_message(&bytes)
        };
        for out in out {
            let data = OpCode::Data(data);
            if self.write_watched(index, upstream, data, &out).await? == Written::Ended {
                return Ok(Written::Ended);
            }
        }
        for request in state.take_requests() {
            upstream.queue(Data::Text, &request);
        }
        Ok(Written::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_is_answered_with_its_code_when_an_endpoint_may_send_it() {
        for code in [1000u16, 1001, 1003, 1008, 1011, 3000, 4999] {
            assert_eq!(close_answer(&code.to_be_bytes()), code.to_be_bytes());
        }
        assert_eq!(close_answer(&[0x03, 0xe8, b'b', b'y', b'e']), [0x03, 0xe8]);
        assert!(close_answer(&[]).is_empty());
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000, 65535] {
            assert_eq!(
                close_answer(&bad.to_be_bytes()),
                1002u16.to_be_bytes(),
                "{bad}"
            );
        }
        assert_eq!(close_answer(&[0x03]), 1002u16.to_be_bytes());
    }
}

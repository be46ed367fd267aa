//! WebSocket sessions that outlive their backend (`sessions: seamless` on an execution pool).
//!
//! The gateway terminates the client's WebSocket and opens its own to the backend, so that it can
//! carry the session elsewhere: every client message is judged as on any session (the method
//! policy, the frame and message limits) and goes on under the gateway's request ids
//! ([`SessionState`]). A backend that refuses the upgrade (any status but 101: an `Origin` it does
//! not allow, a path it does not serve) gives the client its answer, as on a `cut` pool, and is
//! blamed for nothing ([`refusal`]). When the backend is marked down, fails back, or ends the
//! connection, the gateway opens a WebSocket to the next healthy backend and, before anything
//! else reaches the client from it:
//!
//! 1. creates every live subscription again and maps its new id to the one the client holds;
//! 2. checks the new backend's head (its `eth_blockNumber` must be a block it has; else its
//!    latest block is the head) and looks for a reorg across the switch: a block whose logs the
//!    client has and that the new backend does not have under the same hash has its logs taken
//!    back (`removed: true`);
//! 3. fills the gap, block by block up to the new backend's head: the heads the client missed
//!    (`eth_getBlockByNumber`, from where its chain parts from the client's heads if that is
//!    earlier) and the logs (`eth_getLogs` with the subscription's filter), each once; a gap
//!    longer than the pool's `max_gap_blocks` ends the session instead (1011, with the reason),
//!    as does a subscription no backend will create again;
//! 4. sends again the requests in flight that are safe to repeat, and answers the others with an
//!    error saying they were not repeated.
//!
//! Notifications the new backend sends meanwhile wait (bounded by [`MAX_WAITING_BYTES`]) and then
//! pass the same rules: nothing the client has goes out twice. Blocks above the new backend's
//! head that the client has logs of are decided later, when a head of the new backend's comes at
//! their number ([`SessionState`]). The decisions are [`super::carry`]'s; this file makes the
//! calls. With no healthy backend left the
//! session closes (1012, service restart), as a cut one would.
//!
//! No wait on a peer holds the loop that watches the backend (mark-down, fail-back, reload,
//! shutdown): messages for the backend are queued on the gateway's own socket to it
//! ([`super::backend`]), which moves the session when the backend takes none of them for
//! [`SEND_DEADLINE`], and a write to the client runs against the watch
//! (`Gateway::to_client_watched`). An answer over [`MAX_BACKEND_MESSAGE`] fails its request
//! only; a session moves at most [`MAX_MOVES`] times in [`MOVES_WINDOW`].

use super::super::websocket::{frame, whole_frames};
use super::super::{Gateway, RequestCtx};
use super::backend::{
    too_large, BackendSocket, Incoming, Recording, ANSWER_TOO_LARGE, MAX_QUEUED_BYTES,
    SEND_DEADLINE,
};
use super::carry::{self, Ask, Survey};
use super::subscriptions::{
    hex, hex_u64, Outgoing, SessionState, MAX_IN_FLIGHT, MAX_SESSION_BYTES,
};
use super::{next_backend, record_move, Look, Move, Watch, WATCH};
use crate::jsonrpc::{self, Shape};
use crate::upstream::connections::{upstream_error, Connections};
use crate::upstream::exchange::HOP_BY_HOP_RESPONSE;
use crate::upstream::{Pool, Traffic};
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// The session kind of WebSockets, in [`crate::metrics::SESSION_KINDS`].
const WEBSOCKET: usize = 0;

pub use super::backend::MAX_BACKEND_MESSAGE;

/// The longest body of a backend's refusal of an upgrade passed to the client ([`refusal`]).
pub const MAX_REFUSAL_BODY: usize = 16 * 1024;

/// Bytes of the new backend's messages that wait while a session moves.
pub const MAX_WAITING_BYTES: usize = 16 * 1024 * 1024;

/// The longest a move may take, every backend tried included: the client's frames are not read
/// while it lasts (a ping waits for its pong), so past it the session closes (1012) instead.
pub const MOVE_DEADLINE: Duration = Duration::from_secs(10);

/// Longest a write to the client may wait (a client that stops reading holds its session, and
/// the backend's, no longer than this).
pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the close frame may wait when the gateway shuts down or reloads (a client that stops
/// reading does not hold the shutdown).
const CLOSE_AT_END: Duration = Duration::from_secs(1);

/// Moves in a row, each without a message from the backend it went to, after which the session
/// closes instead of moving again (backends that all close on it).
pub const MAX_FRUITLESS_MOVES: u32 = 3;

/// Moves a session may make within [`MOVES_WINDOW`]: one more closes it (1011, with the reason),
/// so that neither a client nor a flapping node can make a session churn the backups (each move
/// creates its subscriptions again and fills their gap) and the event list.
pub const MAX_MOVES: usize = 10;

/// The window [`MAX_MOVES`] counts in.
pub const MOVES_WINDOW: Duration = Duration::from_secs(10 * 60);

/// A backend message at least this long is read on a blocking thread, not on one that serves
/// other sessions.
const READ_ELSEWHERE: usize = 256 * 1024;

type Upstream = BackendSocket;

/// How a session on one backend ended.
enum Outcome {
    /// The client closed, went away, or the session was ended: nothing more to do.
    Over,
    /// It must move; `heard`: the backend sent something on the way.
    Move { why: Move, heard: bool },
}

/// Why the gateway's WebSocket to a backend did not open.
enum OpenFailed {
    /// Connecting (TCP, TLS) failed.
    Connect(Box<Error>),
    /// The request could not be made, or the handshake broke or had no answer in time.
    Handshake(Box<Error>),
    /// The backend answered the upgrade with another status than 101: its answer, for the
    /// client ([`refusal`]).
    Refused(Box<ResponseHeader>, Bytes),
}

/// Whether a write to the client went out, or the session ended while it waited.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Done,
    Ended,
}

/// Why a move to one backend did not work.
enum MoveFailed {
    /// That backend failed: the next one is tried.
    Backend(String),
    /// The session cannot be carried anywhere: it closes with this reason.
    Session(String),
}

impl Gateway {
    /// Serves a WebSocket session of a `sessions: seamless` execution pool; `Ok` once it ended.
    pub(in crate::proxy) async fn serve_websocket(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        response_timeout: Duration,
    ) -> Result<()> {
        let Some(pool) = ctx.pool.clone() else {
            return Error::e_explain(ErrorType::InternalError, "WebSocket without a pool");
        };
        let Some(accept) = accept_key(session.req_header()) else {
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                "a WebSocket upgrade without Sec-WebSocket-Key, or not version 13",
            );
        };
        // The first backend is chosen like any request's, with the same rules for a failure.
        let (mut index, mut upstream, protocol) = loop {
            let connections = self.next_attempt(ctx, |b| b.ws_connections())?;
            let e = match self
                .open_upstream(session, ctx, &connections, response_timeout)
                .await
            {
                Ok((upstream, protocol)) => {
                    break (ctx.backend.unwrap_or_default(), upstream, protocol)
                }
                Err(OpenFailed::Connect(e)) => self.connect_failed(session, ctx, e),
                Err(OpenFailed::Handshake(e)) => self.proxy_failed(session, ctx, e, false),
                // The node's answer to this upgrade, as on a `cut` pool: the response hook holds
                // 502/503/504 (the node's own proxy saying it is gone) against the node and tries
                // another while it may; any other status is the node's to this client (an
                // `Origin` it does not list, a path it does not serve), and blames no one.
                Err(OpenFailed::Refused(mut header, body)) => {
                    match self
                        .upstream_response_filter(session, &mut header, ctx)
                        .await
                    {
                        Ok(()) => return self.pass_refusal(session, ctx, header, body).await,
                        Err(e) => e,
                    }
                }
            };
            if e.retry() {
                continue;
            }
            return Err(e);
        };
        let mut header = ResponseHeader::build(101, Some(4))?;
        header.insert_header(http::header::UPGRADE, "websocket")?;
        header.insert_header(http::header::CONNECTION, "Upgrade")?;
        header.insert_header(http::header::SEC_WEBSOCKET_ACCEPT, accept)?;
        if let Some(protocol) = protocol {
            header.insert_header(http::header::SEC_WEBSOCKET_PROTOCOL, protocol)?;
        }
        // Counts the session on this backend (`ctx.session_open`).
        self.upstream_response_filter(session, &mut header, ctx)
            .await?;
        self.response_filter(session, &mut header, ctx).await?;
        session
            .write_response_header(Box::new(header), false)
            .await
            .map_err(|e| e.into_down())?;
        // The session's idleness is judged here, both ways (a subscribed client sends nothing
        // for hours).
        session.as_downstream_mut().set_read_timeout(None);
        session
            .as_downstream_mut()
            .set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        let mut state = SessionState::default();
        let mut fruitless = 0;
        let mut moves: VecDeque<Instant> = VecDeque::new();
        loop {
            let outcome = self
                .relay_messages(session, ctx, &pool, index, &mut upstream, &mut state)
                .await;
            upstream.close(Duration::from_secs(1)).await;
            let why = match outcome? {
                Outcome::Over => return Ok(()),
                Outcome::Move { why, heard } => {
                    fruitless = if heard { 0 } else { fruitless + 1 };
                    why
                }
            };
            if fruitless > MAX_FRUITLESS_MOVES {
                tracing::warn!(pool = %pool.name(), moves = fruitless, "a WebSocket session moved again and again without a message from a backend: it closes");
                let reason = format!(
                    "moved {fruitless} times in a row without a message from a backend; reconnect"
                );
                close_client(session, CloseCode::Error, &reason, CLIENT_WRITE_TIMEOUT).await;
                return Ok(());
            }
            while moves.front().is_some_and(|at| at.elapsed() > MOVES_WINDOW) {
                moves.pop_front();
            }
            if moves.len() >= MAX_MOVES {
                tracing::warn!(pool = %pool.name(), moves = moves.len(), window = ?MOVES_WINDOW, "a WebSocket session moved too often: it closes");
                let reason = format!(
                    "moved {} times within {} minutes; reconnect",
                    moves.len(),
                    MOVES_WINDOW.as_secs() / 60
                );
                close_client(session, CloseCode::Error, &reason, CLIENT_WRITE_TIMEOUT).await;
                return Ok(());
            }
            moves.push_back(Instant::now());
            // The session stays counted on its backend until a move succeeds.
            let counted = ctx.backend;
            let moved = self
                .move_session(
                    session,
                    ctx,
                    &pool,
                    index,
                    why,
                    &mut state,
                    response_timeout,
                )
                .await;
            match moved {
                Ok(Some((to, moved))) => {
                    record_move(&pool, WEBSOCKET, Some(index), to, why);
                    ctx.backend = Some(to);
                    index = to;
                    upstream = moved;
                }
                Ok(None) => {
                    ctx.backend = counted;
                    return Ok(());
                }
                Err(e) => {
                    ctx.backend = counted;
                    return Err(e);
                }
            }
        }
    }

    /// Opens the gateway's WebSocket to the chosen backend (`ctx.backend`) with the client's
    /// request as the hooks shape it; returns it and the subprotocol the backend chose.
    async fn open_upstream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        connections: &Connections,
        response_timeout: Duration,
    ) -> Result<(Upstream, Option<http::HeaderValue>), OpenFailed> {
        let mut request = session.req_header().clone();
        self.upstream_request_filter(session, &mut request, ctx)
            .await
            .map_err(OpenFailed::Handshake)?;
        let request = handshake_request(&request).map_err(OpenFailed::Handshake)?;
        let stream = connections.open().await.map_err(OpenFailed::Connect)?;
        let handshake = tokio_tungstenite::client_async_with_config(
            request,
            Recording::new(stream),
            Some(backend_config()),
        );
        let broken = |e: String| {
            OpenFailed::Handshake(upstream_error(
                ErrorType::ConnectError,
                "WebSocket handshake",
                e,
            ))
        };
        match tokio::time::timeout(response_timeout, handshake).await {
            Ok(Ok((upstream, response))) => {
                let protocol = response
                    .headers()
                    .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                    .cloned();
                Ok((
                    BackendSocket::after_handshake(upstream.into_inner()),
                    protocol,
                ))
            }
            // An interim answer (100) is no answer to an upgrade.
            Ok(Err(tungstenite::Error::Http(response)))
                if !response.status().is_informational() =>
            {
                let (header, body) = refusal(*response);
                Err(OpenFailed::Refused(Box::new(header), body))
            }
            Ok(Err(e)) => Err(broken(e.to_string())),
            Err(_) => Err(OpenFailed::Handshake(upstream_error(
                ErrorType::ReadTimedout,
                "WebSocket handshake",
                format!("no answer within {response_timeout:?}"),
            ))),
        }
    }

    /// Sends the client a backend's answer to its upgrade, which the backend refused.
    async fn pass_refusal(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut header: Box<ResponseHeader>,
        body: Bytes,
    ) -> Result<()> {
        self.response_filter(session, &mut header, ctx).await?;
        let empty = body.is_empty();
        session
            .write_response_header(header, empty)
            .await
            .map_err(|e| e.into_down())?;
        if !empty {
            session
                .write_response_body(Some(body), true)
                .await
                .map_err(|e| e.into_down())?;
        }
        Ok(())
    }

    /// Passes messages both ways until the session ends or must move. No wait in it holds the
    /// watch: messages for the backend are queued and go out while the loop waits for the next
    /// event ([`BackendSocket`]); a write to the client runs against the watch
    /// ([`Gateway::to_client_watched`]).
    async fn relay_messages(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        pool: &Arc<Pool>,
        index: usize,
        upstream: &mut Upstream,
        state: &mut SessionState,
    ) -> Result<Outcome> {
        let backend = &pool.backends[index];
        let idle_timeout = self.routing.load().timeouts.websocket_idle;
        let mut heard = Instant::now();
        // Whether the backend sent anything since the session came to it.
        let mut spoke = false;
        // A fail-back waits for the answers in flight (the backend is healthy): since when.
        let mut draining: Option<Instant> = None;
        let response_timeout = self.routing.load().timeouts.response;
        let mut look = Watch::default();
        let mut watch = tokio::time::interval(WATCH);
        loop {
            // The client is not read (its own TCP window holds it back) past its limit of
            // requests in flight or its memory budget, while its messages wait for a backend slow
            // to take them, and while a fail-back drains: the answers in flight come in, then the
            // session moves.
            let reading = draining.is_none()
                && state.in_flight() < MAX_IN_FLIGHT
                && state.held_bytes() < MAX_SESSION_BYTES
                && upstream.queued() < MAX_QUEUED_BYTES;
            tokio::select! {
                read = session.read_request_body(), if reading => {
                    let chunk = match read {
                        Ok(Some(chunk)) => chunk,
                        // The client went away.
                        Ok(None) | Err(_) => return Ok(Outcome::Over),
                    };
                    heard = Instant::now();
                    ctx.session_held = state.held_bytes();
                    let judged = self.judge_client_frames(session, ctx, chunk).await?;
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
                                // The client's close is answered with the same code.
                                let code = payload.get(..2).map(<[u8]>::to_vec).unwrap_or_default();
                                self.to_client_watched(session, pool, index, OpCode::Control(Control::Close), &code).await?;
                                return Ok(Outcome::Over);
                            }
                            OpCode::Control(_) => continue,
                        };
                        if self.to_client_watched(session, pool, index, opcode, &reply).await? == Written::Ended {
                            return Ok(Outcome::Over);
                        }
                    }
                }
                incoming = upstream.read() => {
                    let incoming = match incoming {
                        Some(Ok(incoming)) => incoming,
                        Some(Err(e)) => {
                            tracing::info!(pool = %pool.name(), backend = %backend.name(), error = %e, "WebSocket from the backend broke");
                            return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke });
                        }
                        None => return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke }),
                    };
                    heard = Instant::now();
                    let written = match incoming {
                        Incoming::Close => {
                            return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke });
                        }
                        Incoming::Oversized { id, length } => {
                            spoke = true;
                            // The request's failure, not the backend's: it gets an error under
                            // the client's id, and the session stays.
                            let failed = id.and_then(|id| state.fail_request(id, ANSWER_TOO_LARGE, &too_large(length)));
                            match failed {
                                Some(answer) => {
                                    tracing::info!(pool = %pool.name(), backend = %backend.name(), bytes = length, limit = MAX_BACKEND_MESSAGE, "an answer larger than the limit: its request fails, the session stays");
                                    self.to_client_watched(session, pool, index, OpCode::Data(Data::Text), &answer).await?
                                }
                                None if id.is_some() => {
                                    tracing::debug!(pool = %pool.name(), backend = %backend.name(), bytes = length, "a message larger than the limit answered no request of the client's: dropped");
                                    Written::Done
                                }
                                None => {
                                    tracing::info!(pool = %pool.name(), backend = %backend.name(), bytes = length, limit = MAX_BACKEND_MESSAGE, "a message larger than the limit, with no id: the backend is left");
                                    return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke });
                                }
                            }
                        }
                        Incoming::Data { data, payload } => {
                            spoke = true;
                            self.pass_to_client(session, pool, index, upstream, state, data, payload).await?
                        }
                    };
                    if written == Written::Ended {
                        return Ok(Outcome::Over);
                    }
                    // Answers came in: the session's share of the listener's held bytes follows.
                    Gateway::hold_session(ctx, state.held_bytes());
                }
                _ = watch.tick() => {
                    match look.look(self, pool, index) {
                        Look::Stay => draining = None,
                        // Nothing new is sent to a backend the session leaves; what it was asked
                        // is answered there first, up to the response timeout.
                        Look::Move(Move::FailBack) if state.in_flight() > 0 => {
                            let since = *draining.get_or_insert_with(Instant::now);
                            if since.elapsed() >= response_timeout {
                                return Ok(Outcome::Move { why: Move::FailBack, heard: true });
                            }
                        }
                        Look::Move(why) => return Ok(Outcome::Move { why, heard: true }),
                        Look::End => {
                            close_client(session, CloseCode::Restart, "the gateway is reloading or shutting down; reconnect", CLOSE_AT_END).await;
                            return Ok(Outcome::Over);
                        }
                    }
                    if let Some(stalled) = upstream.stalled_for().filter(|s| *s >= SEND_DEADLINE) {
                        // A node that stopped reading its socket: the session leaves it. It is
                        // not marked down, as a client could bring that about with its own
                        // flood of requests; nothing in flight is sent again, for that reason.
                        tracing::warn!(pool = %pool.name(), backend = %backend.name(), stalled = ?stalled, "the backend took none of the session's bytes: the session moves");
                        return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke });
                    }
                    if heard.elapsed() > idle_timeout {
                        close_client(session, CloseCode::Away, "idle for longer than the session idle timeout", CLIENT_WRITE_TIMEOUT).await;
                        return Ok(Outcome::Over);
                    }
                }
            }
        }
    }

    /// One frame to the client, while the session's pool is watched: [`Written::Ended`] when the
    /// gateway shuts down or a reload replaces the pool meanwhile (the session ends at once, its
    /// client gone or not); an error when the client took nothing for [`CLIENT_WRITE_TIMEOUT`].
    async fn to_client_watched(
        &self,
        session: &mut Session,
        pool: &Arc<Pool>,
        index: usize,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<Written> {
        let bytes = Bytes::from(frame(opcode, None, payload));
        let mut write = std::pin::pin!(session.write_response_body(Some(bytes), false));
        loop {
            tokio::select! {
                biased;
                written = &mut write => {
                    return written.map(|()| Written::Done).map_err(|e| e.into_down());
                }
                _ = tokio::time::sleep(WATCH) => {
                    if Watch::default().look(self, pool, index) == Look::End {
                        tracing::info!(pool = %pool.name(), "shutting down or reloading while a write to a slow client waits: the session ends");
                        return Ok(Written::Ended);
                    }
                }
            }
        }
    }

    /// One message from the backend, through the session's rules, to the client; and the
    /// gateway's own calls it prompted, to the backend (queued).
    #[allow(clippy::too_many_arguments)]
    async fn pass_to_client(
        &self,
        session: &mut Session,
        pool: &Arc<Pool>,
        index: usize,
        upstream: &mut Upstream,
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
            if self
                .to_client_watched(session, pool, index, OpCode::Data(data), &out)
                .await?
                == Written::Ended
            {
                return Ok(Written::Ended);
            }
        }
        for request in state.take_requests() {
            upstream.queue(Data::Text, &request);
        }
        Ok(Written::Done)
    }

    /// Moves the session to the next healthy backend; `None` when it closed instead (no backend,
    /// or a gap too long), with the client told why.
    #[allow(clippy::too_many_arguments)]
    async fn move_session(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        pool: &Arc<Pool>,
        from: usize,
        why: Move,
        state: &mut SessionState,
        response_timeout: Duration,
    ) -> Result<Option<(usize, Upstream)>> {
        let from_name = pool.backends[from].name().to_string();
        // Requests in flight on a backend that closed the connection may be why it did: they go
        // nowhere else.
        let (resend, answers) = state.on_move(&from_name, why != Move::BackendEnded);
        for answer in answers {
            to_client(session, OpCode::Data(Data::Text), &answer).await?;
        }
        // A fail-back goes to the better backend; otherwise the one that failed is not tried.
        let mut excluded = if why == Move::FailBack { 0 } else { 1 << from };
        let max_gap = pool.config.max_gap_blocks;
        let deadline = tokio::time::Instant::now() + MOVE_DEADLINE;
        let mut look = Watch::default();
        loop {
            if look.look(self, pool, from) == Look::End {
                close_client(
                    session,
                    CloseCode::Restart,
                    "the gateway is reloading or shutting down; reconnect",
                    CLOSE_AT_END,
                )
                .await;
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                tracing::warn!(pool = %pool.name(), kind = "websocket", deadline = ?MOVE_DEADLINE, "a WebSocket session could not move in time: it closes");
                close_client(
                    session,
                    CloseCode::Restart,
                    "no backend took this session in time; reconnect",
                    CLIENT_WRITE_TIMEOUT,
                )
                .await;
                return Ok(None);
            }
            let Some((index, connections)) = next_backend(pool, excluded, |b| b.ws_connections())
            else {
                tracing::info!(pool = %pool.name(), kind = "websocket", "no healthy backend to move the session to: it closes");
                close_client(
                    session,
                    CloseCode::Restart,
                    "no healthy backend to move this session to; reconnect",
                    CLIENT_WRITE_TIMEOUT,
                )
                .await;
                return Ok(None);
            };
            excluded |= 1 << index;
            let backend = &pool.backends[index];
            ctx.backend = Some(index);
            let mut upstream = match self
                .open_upstream(session, ctx, &connections, response_timeout.min(left))
                .await
            {
                Ok((upstream, _)) => upstream,
                Err(OpenFailed::Connect(e)) => {
                    tracing::warn!(pool = %pool.name(), backend = %backend.name(), error = %e, "moving a WebSocket session: backend failed; trying the next");
                    pool.take_out(index, Traffic::WebSocket, "WebSocket: connect failed");
                    continue;
                }
                Err(OpenFailed::Handshake(e)) => {
                    tracing::warn!(pool = %pool.name(), backend = %backend.name(), error = %e, "moving a WebSocket session: backend failed; trying the next");
                    continue;
                }
                Err(OpenFailed::Refused(header, _)) => {
                    tracing::warn!(pool = %pool.name(), backend = %backend.name(), status = header.status.as_u16(), "moving a WebSocket session: the backend refused the upgrade; trying the next");
                    continue;
                }
            };
            let mut carry = Carry {
                upstream: &mut upstream,
                state,
                waiting: Vec::new(),
                waiting_bytes: 0,
                timeout: response_timeout,
                deadline,
            };
            match carry.over(session, max_gap).await {
                Ok(()) => {}
                Err(MoveFailed::Backend(e)) => {
                    tracing::warn!(pool = %pool.name(), backend = %backend.name(), error = %e, "moving a WebSocket session: backend failed; trying the next");
                    continue;
                }
                Err(MoveFailed::Session(reason)) => {
                    tracing::warn!(pool = %pool.name(), backend = %backend.name(), %reason, "a WebSocket session could not move: it closes");
                    close_client(session, CloseCode::Error, &reason, CLIENT_WRITE_TIMEOUT).await;
                    return Ok(None);
                }
            }
            let waiting = std::mem::take(&mut carry.waiting);
            for request in &resend {
                upstream.queue(Data::Text, request);
            }
            for message in waiting {
                let (data, payload) = match message {
                    Message::Text(text) => (Data::Text, Bytes::from(text)),
                    Message::Binary(bytes) => (Data::Binary, bytes),
                    _ => continue,
                };
                let written = self
                    .pass_to_client(session, pool, index, &mut upstream, state, data, payload)
                    .await?;
                if written == Written::Ended {
                    return Ok(None);
                }
            }
            return Ok(Some((index, upstream)));
        }
    }
}

/// Carries a session's subscriptions over to a new backend's WebSocket.
struct Carry<'a> {
    upstream: &'a mut Upstream,
    state: &'a mut SessionState,
    /// The backend's messages that came while the gateway waited for its own answers.
    waiting: Vec<Message>,
    waiting_bytes: usize,
    timeout: Duration,
    /// When the whole move must be done.
    deadline: tokio::time::Instant,
}

impl Carry<'_> {
    /// Creates the subscriptions again, takes back logs of blocks the new backend replaced, and
    /// fills the gap; the client sees the outcome only once every call succeeded. The decisions
    /// are [`carry`]'s steps; this makes their calls.
    async fn over(&mut self, session: &mut Session, max_gap: u64) -> Result<(), MoveFailed> {
        let mut new_ids = Vec::new();
        let mut hidden = None;
        for (client_sub, params) in carry::resubscriptions(self.state) {
            let id = self.call("eth_subscribe", params).await?;
            let Some(id) = id.as_str() else {
                return Err(MoveFailed::Backend(format!(
                    "eth_subscribe answered {id}, not a subscription id"
                )));
            };
            match client_sub {
                Some(client_sub) => new_ids.push((client_sub, id.to_string())),
                None => hidden = Some(id.to_string()),
            }
        }
        let claimed = self.call("eth_blockNumber", json!([])).await?;
        let claimed = hex_u64(&claimed)
            .ok_or_else(|| MoveFailed::Backend(format!("eth_blockNumber answered {claimed}")))?;
        let mut answers = carry::Answers::new(claimed);
        let found = loop {
            match carry::survey(self.state, &answers).map_err(MoveFailed::Backend)? {
                Survey::Done(found) => break found,
                Survey::Ask(Ask::Block(number)) => {
                    let block = self.block(json!(hex(number))).await?;
                    if let Some(parent) = block.as_ref().and_then(|b| hash_in(b, "parentHash")) {
                        answers.parents.insert(number, parent);
                    }
                    answers
                        .hashes
                        .insert(number, block.as_ref().and_then(|b| hash_in(b, "hash")));
                }
                Survey::Ask(Ask::Latest) => {
                    let latest = self.block(json!("latest")).await?;
                    let number = latest
                        .as_ref()
                        .and_then(|b| b.get("number"))
                        .and_then(hex_u64);
                    let hash = latest.as_ref().and_then(|b| hash_in(b, "hash"));
                    if let (Some(number), Some(hash)) = (number, hash) {
                        if let Some(parent) = latest.as_ref().and_then(|b| hash_in(b, "parentHash"))
                        {
                            answers.parents.insert(number, parent);
                        }
                        answers.hashes.insert(number, Some(hash));
                        answers.latest = Some(Some(number));
                    } else {
                        answers.latest = Some(None);
                    }
                }
            }
        };
        let plan = carry::plan(self.state, &found, max_gap).map_err(MoveFailed::Session)?;
        // The gap's content, fetched before the client sees any of it.
        let mut fetched = carry::Fetched::default();
        for number in plan.blocks_wanted().into_iter().flatten() {
            let Some(block) = self.block(json!(hex(number))).await? else {
                return Err(MoveFailed::Backend(format!(
                    "block {number} missing below its head {}",
                    plan.head
                )));
            };
            fetched.heads.insert(number, carry::header(block));
        }
        for (client_sub, filter) in plan.logs_wanted() {
            let found = self.call("eth_getLogs", json!([filter])).await?;
            let Value::Array(found) = found else {
                return Err(MoveFailed::Backend(format!(
                    "eth_getLogs answered {}",
                    short(&found)
                )));
            };
            fetched.logs.insert(client_sub, found);
        }
        // Everything is in hand: the session is the new backend's.
        let out = carry::apply(self.state, &plan, &new_ids, hidden, &fetched, max_gap);
        for message in out {
            to_client(session, OpCode::Data(Data::Text), &message)
                .await
                .map_err(|e| MoveFailed::Session(format!("the client went away: {e}")))?;
        }
        Ok(())
    }

    /// `eth_getBlockByNumber` without transactions (`number` a hex number or `"latest"`);
    /// `None` when the backend has no such block.
    async fn block(&mut self, number: Value) -> Result<Option<Value>, MoveFailed> {
        let block = self
            .call("eth_getBlockByNumber", json!([number, false]))
            .await?;
        Ok((!block.is_null()).then_some(block))
    }

    /// One call of the gateway's own on the new backend: its result, or why it failed. Other
    /// messages that come meanwhile wait.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, MoveFailed> {
        let id = self.state.own_id();
        // What an earlier backend's attempt left waiting is gone.
        self.state.set_waiting(self.waiting_bytes);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let fail = |e: String| MoveFailed::Backend(format!("{method}: {e}"));
        self.upstream
            .send(Message::Text(request.to_string().into()))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let deadline = (tokio::time::Instant::now() + self.timeout).min(self.deadline);
        loop {
            let message = match tokio::time::timeout_at(deadline, self.upstream.next()).await {
                Err(_) => {
                    return Err(fail(format!(
                        "no answer in time (a call has {:?}, a move {MOVE_DEADLINE:?} in all)",
                        self.timeout
                    )))
                }
                Ok(None) => return Err(fail("the backend closed the WebSocket".into())),
                Ok(Some(Err(e))) => return Err(fail(e.to_string())),
                Ok(Some(Ok(message))) => message,
            };
            let text = match &message {
                Message::Text(text) => text.as_bytes(),
                Message::Binary(bytes) => &bytes[..],
                Message::Close(_) => return Err(fail("the backend closed the WebSocket".into())),
                _ => continue,
            };
            // Read once, without a tree: only the answer to this call has its result parsed.
            if let Some(answer) = own_answer(text, id) {
                return answer.map_err(fail);
            }
            self.waiting_bytes += text.len();
            if self.waiting_bytes > MAX_WAITING_BYTES {
                return Err(MoveFailed::Session(format!(
                    "the next backend sent more than {MAX_WAITING_BYTES} bytes while the session moved"
                )));
            }
            self.state.set_waiting(self.waiting_bytes);
            self.waiting.push(message);
        }
    }
}

/// A block's `hash` or `parentHash`, lowercase.
fn hash_in(block: &Value, field: &str) -> Option<String> {
    block
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}

/// The result of the answer to the gateway's call `id`, if `message` is that answer (its error,
/// cut short, if it failed); `None` for any other message.
fn own_answer(message: &[u8], id: u64) -> Option<Result<Value, String>> {
    let text = std::str::from_utf8(message).ok()?;
    let Ok(Shape::Object(answer)) = jsonrpc::Message::read(text) else {
        return None;
    };
    if answer.method.is_some() || answer.id.map(|i| i.get()) != Some(id.to_string().as_str()) {
        return None;
    }
    if let Some(error) = answer.error {
        return Some(Err(short_raw(error.get())));
    }
    let result = answer.result.map_or(Ok(Value::Null), |r| {
        serde_json::from_str(r.get()).map_err(|e| format!("an answer it cannot read: {e}"))
    });
    Some(result)
}

/// A JSON text for a log line or a reason, cut short.
fn short_raw(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].to_string();
    if end < text.len() {
        out.push('…');
    }
    out
}

/// A JSON value for a log line or a reason, cut short.
fn short(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A backend's answer to an upgrade it refused, as the client gets it: its status, its headers
/// but those of its own hop, and its body. The handshake keeps only the body that came in the
/// read that ended the head (tungstenite reads 4 KiB at a time): a node's refusal is a line or
/// a short page and comes with its head; a body that came later is cut where it stopped, and
/// none is longer than [`MAX_REFUSAL_BODY`].
fn refusal(response: http::Response<Option<Vec<u8>>>) -> (ResponseHeader, Bytes) {
    let (parts, tail) = response.into_parts();
    let mut header = ResponseHeader::from(parts);
    let mut body = tail.unwrap_or_default();
    let chunked = header
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| v.as_bytes().to_ascii_lowercase().ends_with(b"chunked"));
    let length = header
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    if matches!(header.status.as_u16(), 204 | 304) {
        body.clear();
    } else if chunked {
        body = dechunk(&body);
    } else if let Some(length) = length {
        body.truncate(length);
    }
    body.truncate(MAX_REFUSAL_BODY);
    // Headers the `Connection` header names are the hop's too.
    let named: Vec<String> = header
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in named
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP_RESPONSE)
        .chain([
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "content-length",
        ])
    {
        header.remove_header(name);
    }
    header.set_version(http::Version::HTTP_11);
    // Cannot fail: a number is a valid header value.
    let _ = header.insert_header(http::header::CONTENT_LENGTH, body.len());
    (header, Bytes::from(body))
}

/// The data of the whole chunks at the start of a chunked body (`httparse` reads the sizes).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(httparse::Status::Complete((start, size))) = httparse::parse_chunk_size(rest) {
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| start.checked_add(size));
        let Some(chunk) = end.and_then(|end| rest.get(start..end)) else {
            // A chunk that came only in part: what came of it.
            out.extend_from_slice(rest.get(start..).unwrap_or_default());
            break;
        };
        if chunk.is_empty() || out.len() >= MAX_REFUSAL_BODY {
            break;
        }
        out.extend_from_slice(chunk);
        match rest.get(start + chunk.len()..) {
            Some([b'\r', b'\n', after @ ..]) => rest = after,
            _ => break,
        }
    }
    out
}

/// The handshake's socket, dropped once the upgrade is done ([`BackendSocket`] reads the
/// frames): small buffers.
fn backend_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// `Sec-WebSocket-Accept` for the client's upgrade request; `None` when it is not a version 13
/// WebSocket upgrade with a key.
fn accept_key(request: &RequestHeader) -> Option<String> {
    let version = request.headers.get(http::header::SEC_WEBSOCKET_VERSION)?;
    if version.as_bytes() != b"13" {
        return None;
    }
    let key = request.headers.get(http::header::SEC_WEBSOCKET_KEY)?;
    Some(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The gateway's upgrade request to a backend: the client's (as the request hooks shaped it),
/// with a key of its own and no subprotocol. The gateway speaks JSON-RPC to the node itself, and
/// a node that takes no subprotocol (geth, as every node does) answers 101 without one, which
/// the handshake would call broken if the client's `Sec-WebSocket-Protocol` went on: any client
/// could then have the node blamed and taken out. The client gets 101 without a subprotocol, as
/// from the node directly.
fn handshake_request(request: &RequestHeader) -> Result<http::Request<()>> {
    // The handshake reads only the path from the target; its scheme (always `ws`: TLS, when the
    // endpoint has it, is already on the connection) and host must be there all the same.
    let host = request
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("backend");
    let path = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = http::Request::builder()
        .method(http::Method::GET)
        .uri(format!("ws://{host}{path}"))
        .version(http::Version::HTTP_11);
    for (name, value) in &request.headers {
        if matches!(
            name.as_str(),
            "connection"
                | "upgrade"
                | "sec-websocket-key"
                | "sec-websocket-version"
                | "sec-websocket-extensions"
                | "sec-websocket-protocol"
                | "content-length"
                | "transfer-encoding"
        ) {
            continue;
        }
        out = out.header(name, value);
    }
    out.header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_VERSION, "13")
        .header(
            http::header::SEC_WEBSOCKET_KEY,
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .or_err(
            ErrorType::InvalidHTTPHeader,
            "the upgrade request to the backend",
        )
}

/// One whole frame to the client.
async fn to_client(session: &mut Session, opcode: OpCode, payload: &[u8]) -> Result<()> {
    session
        .write_response_body(Some(Bytes::from(frame(opcode, None, payload))), false)
        .await
        .map_err(|e| e.into_down())
}

/// Closes the client's WebSocket with a code and a reason (best effort: it may be gone, or not
/// take it `within`).
async fn close_client(session: &mut Session, code: CloseCode, reason: &str, within: Duration) {
    let closing = super::super::websocket::Closing {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_needs_version_13_and_a_key() {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(accept_key(&request), None);
        request
            .insert_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .unwrap();
        request.insert_header("sec-websocket-version", "8").unwrap();
        assert_eq!(accept_key(&request), None);
        request
            .insert_header("sec-websocket-version", "13")
            .unwrap();
        // RFC 6455's example.
        assert_eq!(
            accept_key(&request).as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn the_upgrade_request_has_its_own_key_and_no_extensions_or_subprotocol() {
        let mut request = RequestHeader::build("GET", b"/ws?x=1", None).unwrap();
        for (name, value) in [
            ("host", "ec-a.example"),
            ("sec-websocket-key", "client-key"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("sec-websocket-protocol", "json"),
        ] {
            request.insert_header(name, value).unwrap();
        }
        let out = handshake_request(&request).unwrap();
        assert_eq!(out.uri(), "ws://ec-a.example/ws?x=1");
        assert_ne!(out.headers()["sec-websocket-key"], "client-key");
        assert!(out.headers().get("sec-websocket-extensions").is_none());
        assert!(out.headers().get("sec-websocket-protocol").is_none());
        assert_eq!(out.headers()["host"], "ec-a.example");
    }

    fn refused(status: u16, headers: &[(&str, &str)], tail: &[u8]) -> (ResponseHeader, Bytes) {
        let mut response = http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        refusal(response.body(Some(tail.to_vec())).unwrap())
    }

    #[test]
    fn a_refusal_keeps_the_nodes_headers_but_those_of_its_hop() {
        let (header, body) = refused(
            403,
            &[
                ("content-type", "text/plain; charset=utf-8"),
                ("sec-websocket-version", "13"),
                ("connection", "keep-alive, x-hop"),
                ("keep-alive", "timeout=5"),
                ("x-hop", "1"),
                ("upgrade", "h2c"),
                ("content-length", "9"),
            ],
            b"Forbidden",
        );
        assert_eq!(header.status, 403);
        assert_eq!(&body[..], b"Forbidden");
        assert_eq!(header.headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(header.headers["sec-websocket-version"], "13");
        assert_eq!(header.headers["content-length"], "9");
        for hop in ["connection", "keep-alive", "x-hop", "upgrade"] {
            assert!(header.headers.get(hop).is_none(), "{hop}");
        }
    }

    #[test]
    fn a_refusals_body_is_cut_to_its_framing_and_bound() {
        // Bytes past the declared length are not the answer's.
        let (header, body) = refused(404, &[("content-length", "3")], b"abcdef");
        assert_eq!(&body[..], b"abc");
        assert_eq!(header.headers["content-length"], "3");
        // A body that came only in part is what came.
        let (_, body) = refused(403, &[("content-length", "100")], b"abc");
        assert_eq!(&body[..], b"abc");
        // Chunked: the data of the chunks, without their framing.
        let (header, body) = refused(
            403,
            &[("transfer-encoding", "chunked")],
            b"4\r\nForb\r\n5;x=1\r\nidden\r\n0\r\n\r\n",
        );
        assert_eq!(&body[..], b"Forbidden");
        assert!(header.headers.get("transfer-encoding").is_none());
        assert_eq!(header.headers["content-length"], "9");
        let (_, body) = refused(
            403,
            &[("transfer-encoding", "chunked")],
            b"4\r\nForb\r\n9\r\nidd",
        );
        assert_eq!(&body[..], b"Forbidd");
        let (_, body) = refused(
            403,
            &[("transfer-encoding", "chunked")],
            b"zz\r\nnot a chunk",
        );
        assert!(body.is_empty());
        // No framing: what came, up to the bound.
        let (_, body) = refused(200, &[], &vec![b'x'; MAX_REFUSAL_BODY + 10]);
        assert_eq!(body.len(), MAX_REFUSAL_BODY);
        let (header, body) = refused(204, &[], b"stray");
        assert!(body.is_empty());
        assert_eq!(header.headers["content-length"], "0");
    }

    #[test]
    fn reasons_are_cut_short() {
        let long = json!("x".repeat(500));
        assert!(short(&long).len() < 210);
    }
}

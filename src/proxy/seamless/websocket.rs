//! WebSocket sessions that outlive their backend (`sessions: seamless` on an execution pool).
//!
//! The gateway terminates the client's WebSocket and opens its own to the backend, so that it can
//! carry the session elsewhere: every client message is judged as on any session (the method
//! policy, the frame and message limits) and goes on under the gateway's request ids
//! ([`SessionState`]). When the backend is marked down, fails back, or ends the connection, the
//! gateway opens a WebSocket to the next healthy backend and, before anything else reaches the
//! client from it:
//!
//! 1. creates every live subscription again and maps its new id to the one the client holds;
//! 2. looks for a reorg across the switch: a block whose logs the client has and that the new
//!    backend does not have under the same hash has its logs taken back (`removed: true`);
//! 3. fills the gap, block by block up to the new backend's head: the heads the client missed
//!    (`eth_getBlockByNumber`) and the logs (`eth_getLogs` with the subscription's filter), each
//!    once; a gap longer than the pool's `max_gap_blocks` ends the session instead (1011, with
//!    the reason), as does a subscription no backend will create again;
//! 4. sends again the requests in flight that are safe to repeat, and answers the others with an
//!    error saying they were not repeated.
//!
//! Notifications the new backend sends meanwhile wait (bounded by [`MAX_WAITING_BYTES`]) and then
//! pass the same rules: nothing the client has goes out twice. With no healthy backend left the
//! session closes (1012, service restart), as a cut one would.

use super::super::websocket::{frame, whole_frames};
use super::super::{Gateway, RequestCtx};
use super::subscriptions::{
    hex, hex_u64, Gap, Outgoing, SessionState, Topic, MAX_IN_FLIGHT, MAX_SESSION_BYTES,
};
use super::{next_backend, record_move, Look, Move, Watch, WATCH};
use crate::jsonrpc::{self, Shape};
use crate::upstream::connections::{upstream_error, Connections, Stream};
use crate::upstream::{Pool, Traffic};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// The session kind of WebSockets, in [`crate::metrics::SESSION_KINDS`].
const WEBSOCKET: usize = 0;

/// The largest message the gateway reads from a backend (an `eth_getLogs` answer of a gap fill
/// is the largest it asks for).
pub const MAX_BACKEND_MESSAGE: usize = 64 * 1024 * 1024;

/// Bytes of the new backend's messages that wait while a session moves.
pub const MAX_WAITING_BYTES: usize = 16 * 1024 * 1024;

/// The longest a move may take, every backend tried included: the client's frames are not read
/// while it lasts (a ping waits for its pong), so past it the session closes (1012) instead.
pub const MOVE_DEADLINE: Duration = Duration::from_secs(10);

/// Longest a write to the client may wait (a client that stops reading holds its session, and
/// the backend's, no longer than this).
pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Moves in a row, each without a message from the backend it went to, after which the session
/// closes instead of moving again (backends that all close on it).
pub const MAX_FRUITLESS_MOVES: u32 = 3;

/// A backend message at least this long is read on a blocking thread, not on one that serves
/// other sessions.
const READ_ELSEWHERE: usize = 256 * 1024;

type Upstream = WebSocketStream<Box<dyn Stream>>;

/// How a session on one backend ended.
enum Outcome {
    /// The client closed, went away, or the session was ended: nothing more to do.
    Over,
    /// It must move; `heard`: the backend sent something on the way.
    Move { why: Move, heard: bool },
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
            match self
                .open_upstream(session, ctx, &connections, response_timeout)
                .await
            {
                Ok((upstream, protocol)) => {
                    break (ctx.backend.unwrap_or_default(), upstream, protocol)
                }
                Err((e, connecting)) => {
                    let e = if connecting {
                        self.connect_failed(session, ctx, e)
                    } else {
                        self.proxy_failed(session, ctx, e, false)
                    };
                    if e.retry() {
                        continue;
                    }
                    return Err(e);
                }
            }
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
        loop {
            let outcome = self
                .relay_messages(session, ctx, &pool, index, &mut upstream, &mut state)
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(1), upstream.close(None)).await;
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
                close_client(session, CloseCode::Error, &reason).await;
                return Ok(());
            }
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
    /// request as the hooks shape it; returns it and the subprotocol the backend chose. The error
    /// says whether the connection itself failed.
    async fn open_upstream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        connections: &Connections,
        response_timeout: Duration,
    ) -> Result<(Upstream, Option<http::HeaderValue>), (Box<Error>, bool)> {
        let mut request = session.req_header().clone();
        self.upstream_request_filter(session, &mut request, ctx)
            .await
            .map_err(|e| (e, false))?;
        let request = handshake_request(&request).map_err(|e| (e, false))?;
        let stream = connections.open().await.map_err(|e| (e, true))?;
        let handshake =
            tokio_tungstenite::client_async_with_config(request, stream, Some(backend_config()));
        match tokio::time::timeout(response_timeout, handshake).await {
            Ok(Ok((upstream, response))) => {
                let protocol = response
                    .headers()
                    .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                    .cloned();
                Ok((upstream, protocol))
            }
            Ok(Err(e)) => Err((
                upstream_error(
                    ErrorType::ConnectError,
                    "WebSocket handshake",
                    e.to_string(),
                ),
                false,
            )),
            Err(_) => Err((
                upstream_error(
                    ErrorType::ReadTimedout,
                    "WebSocket handshake",
                    format!("no answer within {response_timeout:?}"),
                ),
                false,
            )),
        }
    }

    /// Passes messages both ways until the session ends or must move.
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
            // Past its limit of requests in flight, or its memory budget, the client is not read:
            // its own TCP window holds it back until answers come.
            let reading =
                state.in_flight() < MAX_IN_FLIGHT && state.held_bytes() < MAX_SESSION_BYTES;
            tokio::select! {
                read = session.read_request_body(), if reading => {
                    let chunk = match read {
                        Ok(Some(chunk)) => chunk,
                        // The client went away.
                        Ok(None) | Err(_) => return Ok(Outcome::Over),
                    };
                    heard = Instant::now();
                    let judged = self.judge_client_frames(session, ctx, chunk).await?;
                    for (opcode, payload) in whole_frames(&judged) {
                        match opcode {
                            OpCode::Data(data) => {
                                let sent = match state.client_message(&payload) {
                                    Outgoing::Backend(sent) => sent,
                                    Outgoing::Client(answer) => {
                                        to_client(session, OpCode::Data(Data::Text), &answer).await?;
                                        continue;
                                    }
                                };
                                let message = match data {
                                    Data::Binary => Message::Binary(sent.into()),
                                    _ => match String::from_utf8(sent) {
                                        Ok(text) => Message::Text(text.into()),
                                        Err(e) => Message::Binary(e.into_bytes().into()),
                                    },
                                };
                                if let Err(e) = upstream.send(message).await {
                                    tracing::info!(pool = %pool.name(), backend = %backend.name(), error = %e, "WebSocket to the backend broke");
                                    return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke });
                                }
                            }
                            OpCode::Control(Control::Ping) => {
                                to_client(session, OpCode::Control(Control::Pong), &payload).await?;
                            }
                            OpCode::Control(Control::Close) => {
                                // The client's close is answered with the same code.
                                let code = payload.get(..2).map(<[u8]>::to_vec).unwrap_or_default();
                                to_client(session, OpCode::Control(Control::Close), &code).await?;
                                return Ok(Outcome::Over);
                            }
                            OpCode::Control(_) => {}
                        }
                    }
                }
                message = upstream.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => {
                            tracing::info!(pool = %pool.name(), backend = %backend.name(), error = %e, "WebSocket from the backend broke");
                            return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke });
                        }
                        None => return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke }),
                    };
                    heard = Instant::now();
                    match message {
                        Message::Close(_) => {
                            return Ok(Outcome::Move { why: Move::BackendEnded, heard: spoke });
                        }
                        other => {
                            spoke = true;
                            self.pass_to_client(session, upstream, state, other).await?;
                        }
                    }
                }
                _ = watch.tick() => {
                    match look.look(self, pool, index) {
                        Look::Stay => {}
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
                            close_client(session, CloseCode::Restart, "the gateway is reloading or shutting down; reconnect").await;
                            return Ok(Outcome::Over);
                        }
                    }
                    if heard.elapsed() > idle_timeout {
                        close_client(session, CloseCode::Away, "idle for longer than the session idle timeout").await;
                        return Ok(Outcome::Over);
                    }
                }
            }
        }
    }

    /// One message from the backend, through the session's rules, to the client; and the
    /// gateway's own calls it prompted, to the backend.
    async fn pass_to_client(
        &self,
        session: &mut Session,
        upstream: &mut Upstream,
        state: &mut SessionState,
        message: Message,
    ) -> Result<()> {
        let (data, bytes) = match message {
            Message::Text(text) => (Data::Text, Bytes::from(text)),
            Message::Binary(bytes) => (Data::Binary, bytes),
            // Pings are answered by the backend socket itself; pongs and raw frames say nothing.
            _ => return Ok(()),
        };
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
            to_client(session, OpCode::Data(data), &out).await?;
        }
        for request in state.take_requests() {
            if let Ok(text) = String::from_utf8(request) {
                // A failure shows on the next read, where the session moves.
                let _ = upstream.send(Message::Text(text.into())).await;
            }
        }
        Ok(())
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
                Err((e, connecting)) => {
                    tracing::warn!(pool = %pool.name(), backend = %backend.name(), error = %e, "moving a WebSocket session: backend failed; trying the next");
                    if connecting {
                        pool.take_out(index, Traffic::WebSocket, "WebSocket: connect failed");
                    }
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
                    close_client(session, CloseCode::Error, &reason).await;
                    return Ok(None);
                }
            }
            let waiting = std::mem::take(&mut carry.waiting);
            for request in &resend {
                if let Ok(text) = String::from_utf8(request.clone()) {
                    let _ = upstream.send(Message::Text(text.into())).await;
                }
            }
            for message in waiting {
                self.pass_to_client(session, &mut upstream, state, message)
                    .await?;
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
    /// fills the gap; the client sees the outcome only once every call succeeded.
    async fn over(&mut self, session: &mut Session, max_gap: u64) -> Result<(), MoveFailed> {
        let mut new_ids = Vec::new();
        for (client_sub, params) in self.state.subscriptions() {
            let id = self.call("eth_subscribe", params.clone()).await?;
            let Some(id) = id.as_str() else {
                return Err(MoveFailed::Backend(format!(
                    "eth_subscribe answered {id}, not a subscription id"
                )));
            };
            new_ids.push((client_sub, id.to_string()));
        }
        let hidden = if self.state.wants_hidden() {
            let id = self.call("eth_subscribe", json!(["newHeads"])).await?;
            Some(id.as_str().map(str::to_string).ok_or_else(|| {
                MoveFailed::Backend(format!(
                    "eth_subscribe answered {id}, not a subscription id"
                ))
            })?)
        } else {
            None
        };
        let head = self.call("eth_blockNumber", json!([])).await?;
        let head = hex_u64(&head)
            .ok_or_else(|| MoveFailed::Backend(format!("eth_blockNumber answered {head}")))?;
        let gaps = self.state.gaps();
        let mut hashes: HashMap<u64, Option<String>> = HashMap::new();
        // Where the new backend's chain parts from the heads the client's session saw: the logs
        // gap starts there at the latest (a reorg deeper than the blocks with the client's logs).
        let mut parted: Option<u64> = None;
        for (number, hash) in self.state.heads_seen() {
            if number > head {
                continue;
            }
            if self.hash_at(number, &mut hashes).await?.as_deref() == Some(hash.as_str()) {
                break;
            }
            parted = Some(number);
        }
        // Blocks the new backend replaced: from the oldest one, the logs the client has go back.
        let mut take_back: Vec<(String, u64)> = Vec::new();
        for gap in &gaps {
            let mut replaced = None;
            for (number, hash) in self.state.delivered_blocks(&gap.client_sub) {
                if number > head {
                    // Not there yet: the new backend will send them if it agrees.
                    continue;
                }
                let theirs = self.hash_at(number, &mut hashes).await?;
                if theirs.as_deref() == Some(hash.as_str()) {
                    break;
                }
                replaced = Some(number);
            }
            if let Some(number) = replaced {
                take_back.push((gap.client_sub.clone(), number));
            }
        }
        // Where each gap starts once the taken-back blocks are counted.
        let starts: Vec<(Gap, Option<u64>)> = gaps
            .into_iter()
            .map(|gap| {
                let back = take_back
                    .iter()
                    .find(|(sub, _)| *sub == gap.client_sub)
                    .map(|(_, n)| *n);
                let back = match gap.topic {
                    Topic::Logs { .. } => [back, parted].into_iter().flatten().min(),
                    _ => back,
                };
                let from = match (gap.from, back) {
                    (Some(f), Some(b)) => Some(f.min(b)),
                    (f, b) => f.or(b),
                };
                (gap, from)
            })
            .collect();
        let first = starts
            .iter()
            .filter(|(gap, _)| gap.topic != Topic::Other)
            .filter_map(|(_, from)| *from)
            .min();
        if let Some(first) = first.filter(|f| *f <= head) {
            let length = (head - first).saturating_add(1);
            if length > max_gap {
                return Err(MoveFailed::Session(format!(
                    "the client is {length} blocks behind the next backend, more than the pool's max_gap_blocks ({max_gap}); reconnect"
                )));
            }
        }
        // The gap's content, fetched before the client sees any of it.
        let mut heads: BTreeMap<u64, Value> = BTreeMap::new();
        let mut logs: HashMap<String, BTreeMap<u64, Vec<Value>>> = HashMap::new();
        for (gap, from) in &starts {
            let Some(from) = *from else { continue };
            if from > head {
                continue;
            }
            match &gap.topic {
                Topic::Heads => {
                    for number in from..=head {
                        if heads.contains_key(&number) {
                            continue;
                        }
                        let Some(mut block) = self.block(number).await? else {
                            return Err(MoveFailed::Backend(format!(
                                "block {number} missing below its head {head}"
                            )));
                        };
                        // A head notification is the block's header.
                        if let Some(object) = block.as_object_mut() {
                            for body in [
                                "transactions",
                                "uncles",
                                "withdrawals",
                                "size",
                                "totalDifficulty",
                            ] {
                                object.remove(body);
                            }
                        }
                        heads.insert(number, block);
                    }
                }
                Topic::Logs { filter } => {
                    let mut filter = filter.clone();
                    if let Some(object) = filter.as_object_mut() {
                        object.remove("blockHash");
                        object.insert("fromBlock".into(), json!(hex(from)));
                        object.insert("toBlock".into(), json!(hex(head)));
                    }
                    let found = self.call("eth_getLogs", json!([filter])).await?;
                    let Some(found) = found.as_array() else {
                        return Err(MoveFailed::Backend(format!(
                            "eth_getLogs answered {}",
                            short(&found)
                        )));
                    };
                    let by_block = logs.entry(gap.client_sub.clone()).or_default();
                    for log in found {
                        if let Some(number) = log.get("blockNumber").and_then(hex_u64) {
                            by_block.entry(number).or_default().push(log.clone());
                        }
                    }
                }
                Topic::Other => {}
            }
        }
        // Everything is in hand: the session is the new backend's.
        self.state.rebind(&new_ids, hidden);
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (client_sub, number) in &take_back {
            out.extend(self.state.take_back(client_sub, *number));
        }
        if let Some(first) = first {
            for number in first..=head {
                for (gap, from) in &starts {
                    if from.is_none_or(|f| f > number) {
                        continue;
                    }
                    let sub = &gap.client_sub;
                    match gap.topic {
                        Topic::Heads => {
                            if let Some(block) = heads.get(&number) {
                                out.extend(self.state.fill(sub, Some(block), &[]));
                            }
                        }
                        Topic::Logs { .. } => {
                            let found = logs.get(sub).and_then(|b| b.get(&number));
                            if let Some(found) = found {
                                out.extend(self.state.fill(sub, None, found));
                            }
                        }
                        Topic::Other => {}
                    }
                }
            }
        }
        self.state.filled_to(head, max_gap);
        for message in out {
            to_client(session, OpCode::Data(Data::Text), &message)
                .await
                .map_err(|e| MoveFailed::Session(format!("the client went away: {e}")))?;
        }
        Ok(())
    }

    /// The new backend's hash of block `number` (`None`: it has no such block), asked once.
    async fn hash_at(
        &mut self,
        number: u64,
        known: &mut HashMap<u64, Option<String>>,
    ) -> Result<Option<String>, MoveFailed> {
        if let Some(hash) = known.get(&number) {
            return Ok(hash.clone());
        }
        let block = self.block(number).await?;
        let hash = block
            .as_ref()
            .and_then(|b| b.get("hash"))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        known.insert(number, hash.clone());
        Ok(hash)
    }

    /// `eth_getBlockByNumber` without transactions; `None` when the backend has no such block.
    async fn block(&mut self, number: u64) -> Result<Option<Value>, MoveFailed> {
        let block = self
            .call("eth_getBlockByNumber", json!([hex(number), false]))
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

/// The backend's limits: messages up to [`MAX_BACKEND_MESSAGE`].
fn backend_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_BACKEND_MESSAGE))
        .max_frame_size(Some(MAX_BACKEND_MESSAGE))
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
/// with a key of its own.
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

/// Closes the client's WebSocket with a code and a reason (best effort: it may be gone).
async fn close_client(session: &mut Session, code: CloseCode, reason: &str) {
    let closing = super::super::websocket::Closing {
        code,
        reason: reason.to_string(),
    };
    if let Err(e) = session
        .write_response_body(Some(Bytes::from(closing.frame())), true)
        .await
    {
        tracing::debug!(error = %e, "could not send the close frame");
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
    fn the_upgrade_request_has_its_own_key_and_no_extensions() {
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
        assert_eq!(out.headers()["sec-websocket-protocol"], "json");
        assert_eq!(out.headers()["host"], "ec-a.example");
    }

    #[test]
    fn reasons_are_cut_short() {
        let long = json!("x".repeat(500));
        assert!(short(&long).len() < 210);
    }
}

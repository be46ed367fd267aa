//! One client's seamless event stream, carried from backend to backend ([`stream_events`]): the
//! first backend chosen like any request's, later ones whichever is healthy, each followed event
//! by event against the watch ([`EventStream::follow`]).

use super::super::watch::{
    ended, next_backend, record_move, watched, Look, Move, Watch, Watched, WATCH,
};
use super::super::websocket::{CLIENT_WRITE_TIMEOUT, CLOSE_AT_END, MOVE_DEADLINE};
use super::filter::{is_event, EventFilter, Events};
use crate::session::{open_to_client, routed_pool, Host, SessionCtx};
use crate::upstream::connections::Connections;
use crate::upstream::exchange::{exchange, this_hop, to_hyper, HOP_BY_HOP_RESPONSE};
use crate::upstream::routing::Routing;
use crate::upstream::{Pool, Traffic};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::Instant as Deadline;

/// The longest event the gateway holds while it arrives.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The session kind of event streams, in [`crate::metrics::SESSION_KINDS`].
const SSE: usize = 1;

/// Longest the client's stream goes without a byte: then a keep-alive comment goes out.
const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The most of a move's time ([`MOVE_DEADLINE`], as a WebSocket's) that one backend it asks may
/// take to answer: a slow one leaves time for the next.
pub const ASK_WITHIN: Duration = Duration::from_millis(MOVE_DEADLINE.as_millis() as u64 / 2);

/// Why the client's stream ends when no backend took it within [`MOVE_DEADLINE`] (a comment
/// line, its last).
const OUT_OF_TIME: &str = "no backend took this stream in time; reconnect";

/// Serves an event stream of a `sessions: seamless` pool for `host`, which routed and admitted
/// the request; `Ok` once the client's response ended (or the client went away).
pub async fn stream_events<H: Host>(
    host: &H,
    session: &mut Session,
    ctx: &mut H::Ctx,
    response_timeout: Duration,
) -> Result<()> {
    let pool = routed_pool::<H>(ctx, "event stream without a pool")?;
    // Every write to the client has a deadline, the response header's too (the body's are
    // also raced against the watch, see `write_watched`).
    session
        .as_downstream_mut()
        .set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
    let mut stream = EventStream {
        host,
        session,
        ctx,
        pool,
        response_timeout,
        filter: EventFilter::default(),
        moved: None,
        excluded: 0,
        moving: None,
        slow: false,
    };
    stream.serve().await
}

/// One client's event stream, carried from backend to backend.
struct EventStream<'a, H: Host> {
    host: &'a H,
    session: &'a mut Session,
    ctx: &'a mut H::Ctx,
    pool: Arc<Pool>,
    response_timeout: Duration,
    filter: EventFilter,
    /// Why the stream left its last backend.
    moved: Option<Move>,
    /// Backends the stream does not go to now (a bit per backend index).
    excluded: u64,
    /// While the stream moves: when the move's time is up.
    moving: Option<Deadline>,
    /// The move left a backend that did not answer in time.
    slow: bool,
}

/// What a backend's answer to the stream request decided.
enum Answered {
    /// The backend streams: its events are followed.
    Streams(Incoming),
    /// The client had the backend's own answer: the request is over.
    Over,
    /// The next backend is tried.
    Next,
}

/// A backend's answer to the stream request, or the error and whether it came while connecting.
type Asked = std::result::Result<http::Response<Incoming>, (Box<Error>, bool)>;

/// What asking a backend for the stream came to: its answer, or during a move `Done(None)` (no
/// answer in its time), its mark-down, or the end of the stream (shutdown, a reload) first.
type Asking = Watched<Option<Asked>>;

/// Sends `request` to a backend of `connections`: a refused connection and a failed exchange
/// count as on any request (the first takes the backend out, the second counts once against it).
async fn send(
    connections: &Connections,
    request: http::Request<http_body_util::Full<Bytes>>,
    response_timeout: Duration,
) -> Asked {
    match connections.connect().await {
        Err(e) => Err((e, true)),
        Ok(sender) => match exchange(sender, request, response_timeout).await {
            Ok((_sender, response)) => Ok(response),
            Err(e) => Err((e, false)),
        },
    }
}

impl<H: Host> EventStream<'_, H> {
    fn session_ctx(&mut self) -> &mut SessionCtx {
        H::session_ctx(self.ctx)
    }

    /// Whether the client has a stream (the response hook counted it open).
    fn opened(&mut self) -> bool {
        self.session_ctx().open.is_some()
    }

    /// Backend after backend until the stream is over: choose, ask, follow, move on.
    async fn serve(&mut self) -> Result<()> {
        loop {
            if self.moving.is_some_and(|until| Deadline::now() >= until) {
                tracing::warn!(pool = %self.pool.name(), kind = "sse", deadline = ?MOVE_DEADLINE, "an event stream could not move in time: it ends");
                return self.finish(Some(OUT_OF_TIME)).await;
            }
            let Some((index, connections)) = self.choose()? else {
                // None left: out of time too, if a backend was left for its slowness.
                return self.finish(self.slow.then_some(OUT_OF_TIME)).await;
            };
            let previous = self.session_ctx().backend.replace(index);
            let response = match self.ask(index, &connections).await? {
                Watched::Done(Some(Ok(response))) => response,
                Watched::Done(Some(Err((e, connecting)))) => {
                    self.failed(index, previous, e, connecting).await?;
                    continue;
                }
                Watched::Done(None) => {
                    let backend = &self.pool.backends[index];
                    tracing::warn!(pool = %self.pool.name(), backend = %backend.name(), within = ?ASK_WITHIN, "event stream: the backend did not answer in time; trying the next");
                    self.slow = true;
                    self.skip(index, previous).await?;
                    continue;
                }
                Watched::Down => {
                    let backend = &self.pool.backends[index];
                    tracing::info!(pool = %self.pool.name(), backend = %backend.name(), "event stream: the backend was marked down while it was asked; trying the next");
                    self.skip(index, previous).await?;
                    continue;
                }
                Watched::End => return self.finish(None).await,
            };
            let incoming = match self.answered(index, previous, response).await? {
                Answered::Streams(incoming) => incoming,
                Answered::Over => return Ok(()),
                Answered::Next => continue,
            };
            let mut delivered = false;
            let Some(why) = self.follow(index, incoming, &mut delivered).await? else {
                return self.finish(None).await;
            };
            self.moved = Some(why);
            self.moving = Some(Deadline::now() + MOVE_DEADLINE);
            self.slow = false;
            // Backends that end their stream before it delivered anything stay excluded until
            // one delivers: backends that all close at once end the client's stream instead of
            // trading it back and forth.
            if delivered {
                self.excluded = 0;
            }
            if why == Move::BackendEnded {
                self.excluded |= 1 << index;
            }
            self.keep_alive().await?;
        }
    }

    /// The backend to ask next, and its connections: the first is chosen like any request's
    /// (and counted the same); later ones are whichever is healthy now. `None`: none is left.
    fn choose(&mut self) -> Result<Option<(usize, Arc<Connections>)>> {
        if !self.opened() {
            let connections = self.host.next_attempt(self.ctx, |b| b.connections())?;
            let index = self.session_ctx().backend.unwrap_or_default();
            return Ok(Some((index, connections)));
        }
        let found = next_backend(&self.pool, self.excluded, |b| b.connections());
        if found.is_none() {
            tracing::info!(pool = %self.pool.name(), kind = "sse", "no healthy backend to move the event stream to: it ends");
        }
        Ok(found)
    }

    /// Sends the client's request, as the request hook shapes it, to backend `index`. During a
    /// move the answer is awaited against the watch and within the move's time: no answer
    /// within [`ASK_WITHIN`] (or the time the move has left) is `Done(None)`, shutdown or a
    /// reload ends the stream, and a mark-down of the backend asked sends the stream on.
    async fn ask(&mut self, index: usize, connections: &Connections) -> Result<Asking> {
        let mut request = self.session.req_header().clone();
        self.host
            .upstream_request(self.session, &mut request, self.ctx)
            .await?;
        this_hop(&mut request, 0)?;
        let hyper_request = to_hyper(&request, &Bytes::new())?;
        let send = send(connections, hyper_request, self.response_timeout);
        let Some(until) = self.moving else {
            return Ok(Watched::Done(Some(send.await)));
        };
        let within = tokio::time::timeout_at(until.min(Deadline::now() + ASK_WITHIN), send);
        let routing = self.host.routing();
        Ok(
            match watched(routing, &self.pool, Some(index), within).await {
                Watched::Done(asked) => Watched::Done(asked.ok()),
                Watched::Down => Watched::Down,
                Watched::End => Watched::End,
            },
        )
    }

    /// Backend `index` failed to answer. Before the client has a stream, the rules for a failed
    /// request decide whether another is tried (`Err`: the request ends); after, the backend is
    /// held to account as for any request, and the stream goes on to the next one.
    async fn failed(
        &mut self,
        index: usize,
        previous: Option<usize>,
        e: Box<Error>,
        connecting: bool,
    ) -> Result<()> {
        let backend = &self.pool.backends[index];
        tracing::warn!(pool = %self.pool.name(), backend = %backend.name(), error = %e, "event stream: backend failed; trying the next");
        if !self.opened() {
            // Nothing reached the client: Pingora's rules for a failed request.
            let e = if connecting {
                self.host.connect_failed(self.session, self.ctx, e)
            } else {
                self.host.proxy_failed(self.session, self.ctx, e)
            };
            return if e.retry() { Ok(()) } else { Err(e) };
        }
        if connecting {
            self.pool
                .take_out(index, Traffic::EventStream, "event stream: connect failed");
        } else {
            self.pool.count_live_failure(index, "event stream failed");
        }
        self.skip(index, previous).await
    }

    /// Backend `index` does not take the stream now: the next is tried, the client kept alive.
    async fn skip(&mut self, index: usize, previous: Option<usize>) -> Result<()> {
        self.excluded |= 1 << index;
        self.session_ctx().backend = previous;
        self.keep_alive().await
    }

    /// What backend `index`'s answer decides. Before the client has a stream, a stream starts
    /// it and any other answer is the client's; after, a stream continues it (a move) and any
    /// other answer sends it on to the next backend.
    async fn answered(
        &mut self,
        index: usize,
        previous: Option<usize>,
        response: http::Response<Incoming>,
    ) -> Result<Answered> {
        let streams = response.status() == http::StatusCode::OK
            && response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
        let (parts, incoming) = response.into_parts();
        match (self.opened(), streams) {
            (false, false) => {
                // The node's answer (a 400 for an unknown topic, say) is the client's.
                let mut header = ResponseHeader::from(parts);
                for name in HOP_BY_HOP_RESPONSE {
                    header.remove_header(name);
                }
                self.host
                    .upstream_response(self.session, &mut header, self.ctx)
                    .await?;
                self.host
                    .relay_answer(
                        self.session,
                        self.ctx,
                        header,
                        incoming,
                        self.response_timeout,
                    )
                    .await?;
                Ok(Answered::Over)
            }
            (false, true) => {
                self.start(ResponseHeader::from(parts)).await?;
                Ok(Answered::Streams(incoming))
            }
            (true, false) => {
                let backend = &self.pool.backends[index];
                tracing::warn!(pool = %self.pool.name(), backend = %backend.name(), status = parts.status.as_u16(), "event stream: the backend did not answer with a stream; trying the next");
                self.excluded |= 1 << index;
                self.session_ctx().backend = previous;
                self.keep_alive().await?;
                Ok(Answered::Next)
            }
            (true, true) => {
                let why = self.moved.unwrap_or(Move::BackendEnded);
                record_move(&self.pool, SSE, previous, index, why);
                self.moving = None;
                self.filter.switched();
                Ok(Answered::Streams(incoming))
            }
        }
    }

    /// A keep-alive comment while the stream moves, raced against shutdown and reloads: either
    /// ends the stream (`Err`) rather than wait on a client that stopped reading.
    async fn keep_alive(&mut self) -> Result<()> {
        let routing = self.host.routing();
        let write = write_client(
            self.session,
            Some(Bytes::from_static(KEEP_ALIVE)),
            false,
            CLIENT_WRITE_TIMEOUT,
        );
        match watched(routing, &self.pool, None, write).await {
            Watched::Done(written) => written,
            Watched::Down | Watched::End => Err(ended_while_writing()),
        }
    }

    /// Ends the client's stream, with a comment saying why (`reason`) if given. At shutdown or
    /// a reload the last bytes are given [`CLOSE_AT_END`] (a client that stopped reading does
    /// not hold either), else [`CLIENT_WRITE_TIMEOUT`].
    async fn finish(&mut self, reason: Option<&str>) -> Result<()> {
        let within = if ended(self.host.routing(), &self.pool) {
            CLOSE_AT_END
        } else {
            CLIENT_WRITE_TIMEOUT
        };
        if let Some(reason) = reason {
            let comment = Bytes::from(format!(": {reason}\n\n"));
            write_client(self.session, Some(comment), false, within).await?;
        }
        write_client(self.session, None, true, within).await
    }

    /// Gives the client the first backend's stream header, chunked and through the hooks.
    async fn start(&mut self, mut header: ResponseHeader) -> Result<()> {
        for name in HOP_BY_HOP_RESPONSE {
            header.remove_header(name);
        }
        header.remove_header(&http::header::CONTENT_LENGTH);
        header.set_version(http::Version::HTTP_11);
        header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        open_to_client(self.host, self.session, self.ctx, header).await
    }

    /// Writes backend `index`'s events to the client until it should move on (`Some`), or the
    /// stream is over (`None`: idle too long, or an event too large).
    ///
    /// Every wait here has a deadline and none holds the watch: the backend is read against the
    /// watch and its idle timeout, and each write to the client runs against the watch too
    /// ([`write_watched`]).
    async fn follow(
        &mut self,
        index: usize,
        incoming: Incoming,
        delivered: &mut bool,
    ) -> Result<Option<Move>> {
        let (host, pool) = (self.host, &self.pool);
        let (session, filter) = (&mut *self.session, &mut self.filter);
        let backend = &pool.backends[index];
        let idle_timeout = host.routing().load().timeouts.websocket_idle;
        let mut events = Events::default();
        let mut heard = Instant::now();
        // Last write to the client: a quiet stream gets a keep-alive comment now and then, which
        // also finds a client that went away (a write fails) while the backend has nothing to say.
        let mut wrote = Instant::now();
        let mut watching = Watching {
            routing: host.routing(),
            pool,
            index,
            look: Watch::default(),
            tick: tokio::time::interval(WATCH),
            incoming: Some(incoming),
            leaving: None,
        };
        loop {
            if let Some(why) = watching.leaving {
                return Ok(Some(why));
            }
            let Some(incoming) = watching.incoming.as_mut() else {
                return Ok(Some(Move::BackendEnded));
            };
            tokio::select! {
                frame = incoming.frame() => {
                    let data = match frame {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => data,
                            Err(_trailers) => continue,
                        },
                        Some(Err(e)) => {
                            tracing::info!(pool = %pool.name(), backend = %backend.name(), error = %e, "event stream from the backend broke");
                            return Ok(Some(Move::BackendEnded));
                        }
                        None => return Ok(Some(Move::BackendEnded)),
                    };
                    heard = Instant::now();
                    // Events already read go out even when the backend is let go meanwhile.
                    for block in events.feed(&data) {
                        if filter.admit(&block) {
                            // A comment alone is no event: backends that greet a stream with one
                            // and end it have delivered nothing, and are not tried again.
                            *delivered |= is_event(&block);
                            let mut out = block;
                            out.extend_from_slice(b"\n\n");
                            write_watched(session, &mut watching, Bytes::from(out)).await?;
                            wrote = Instant::now();
                        }
                    }
                    if events.pending() > MAX_EVENT_BYTES {
                        tracing::warn!(pool = %pool.name(), backend = %backend.name(), limit = MAX_EVENT_BYTES, "event stream closed: an event longer than the limit");
                        return Ok(None);
                    }
                }
                _ = watching.tick.tick() => {
                    match watching.look.look(watching.routing, pool, index) {
                        Look::Stay => {}
                        Look::Move(why) => return Ok(Some(why)),
                        Look::End => return Ok(None),
                    }
                    if heard.elapsed() > idle_timeout {
                        return Ok(None);
                    }
                    if wrote.elapsed() >= CLIENT_KEEP_ALIVE {
                        write_watched(session, &mut watching, Bytes::from_static(KEEP_ALIVE)).await?;
                        wrote = Instant::now();
                    }
                }
            }
        }
    }
}

/// Writes `bytes` to the client while the watch goes on looking at the backend: a client slow
/// to read holds neither the watch nor the backend. A move seen meanwhile lets go of the
/// backend's stream at once (nothing moves for a client that takes nothing; the move follows
/// once the write is done). Shutdown or a reload ends the stream, and so does a write that waits
/// [`CLIENT_WRITE_TIMEOUT`]: `Err`, and the client's connection closes.
async fn write_watched(
    session: &mut Session,
    watching: &mut Watching<'_>,
    bytes: Bytes,
) -> Result<()> {
    let pool = watching.pool;
    let write = write_client(session, Some(bytes), false, CLIENT_WRITE_TIMEOUT);
    tokio::pin!(write);
    loop {
        tokio::select! {
            written = &mut write => return written,
            _ = watching.tick.tick() => {
                match watching.look.look(watching.routing, pool, watching.index) {
                    Look::Stay => {}
                    Look::Move(why) => {
                        if watching.leaving.is_none() {
                            tracing::info!(pool = %pool.name(), backend = %pool.backends[watching.index].name(), reason = why.as_str(), "event stream: the client is not reading; its backend's stream is let go, and the move waits for the client");
                            watching.leaving = Some(why);
                            watching.incoming = None;
                        }
                    }
                    Look::End => return Err(ended_while_writing()),
                }
            }
        }
    }
}

/// What a session's watch needs while it follows one backend.
struct Watching<'a> {
    /// The routing in force (a reload that replaces the pool ends the stream).
    routing: &'a ArcSwap<Routing>,
    pool: &'a Arc<Pool>,
    index: usize,
    look: Watch,
    tick: tokio::time::Interval,
    /// The backend's stream; `None` once let go.
    incoming: Option<Incoming>,
    /// Set when the session must leave the backend, once the write in progress is done.
    leaving: Option<Move>,
}

/// The stream ends at shutdown or a reload while a write to its client waits.
fn ended_while_writing() -> Box<Error> {
    tracing::info!("event stream ended at shutdown or reload while the client was not reading");
    Error::explain(
        ErrorType::WriteError,
        "the client was not reading when the gateway ended its stream",
    )
    .into_down()
}

/// One write to the client, given up after `within` (a client that stopped reading holds its
/// stream no longer).
async fn write_client(
    session: &mut Session,
    bytes: Option<Bytes>,
    end: bool,
    within: Duration,
) -> Result<()> {
    let write = session.write_response_body(bytes, end);
    match tokio::time::timeout(within, write).await {
        Ok(written) => written.map_err(|e| e.into_down()),
        Err(_) => {
            tracing::info!(
                timeout = ?within,
                "event stream ended: the client took nothing in time"
            );
            Err(Error::explain(
                ErrorType::WriteTimedout,
                format!("the client took nothing for {within:?}"),
            )
            .into_down())
        }
    }
}

/// The keep-alive comment.
const KEEP_ALIVE: &[u8] = b":\n\n";

//! Event streams that outlive their backend (`sessions: seamless` on a consensus pool).
//!
//! The gateway reads the backend's `/eth/v1/events` stream itself, event by event, and writes each
//! event to the client. When the backend is marked down, fails back, or ends the stream, the
//! gateway opens the same request on the next healthy backend and goes on writing to the same
//! client response: the client stays connected. Events the client already has are dropped (by
//! slot and block root for `head` and `block`, by epoch for `finalized_checkpoint`, by their whole
//! content for the other topics), and nothing older than what was delivered goes out, so the order
//! holds. Keep-alive comments bridge the switch. With no healthy backend left the stream ends, as
//! a cut one would.
//!
//! Every wait on a peer has a deadline, and none holds the watch that sees mark-downs,
//! fail-backs, reloads and shutdown: the backend's stream is read against the watch and the idle
//! timeout, and each write to the client runs against the watch too and is given
//! [`CLIENT_WRITE_TIMEOUT`] (a client that stopped reading ends its stream then). A move seen while
//! a write waits lets go of the backend's stream at once, and the move itself waits for the write;
//! shutdown or a reload ends the stream, write pending or not.
//!
//! Memory per stream is bounded: one event in the making (at most [`MAX_EVENT_BYTES`]) and the
//! keys of the last [`RECENT_EVENTS`] events of the unkeyed topics.

use super::super::{Gateway, RequestCtx};
use super::websocket::CLIENT_WRITE_TIMEOUT;
use super::{next_backend, record_move, Look, Move, Watch, WATCH};
use crate::upstream::exchange::{exchange, this_hop, to_hyper, HOP_BY_HOP_RESPONSE};
use crate::upstream::{Pool, Traffic};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest event the gateway holds while it arrives.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// How many recent events of topics without a slot or epoch are remembered to drop repeats.
pub const RECENT_EVENTS: usize = 1024;

/// The session kind of event streams, in [`crate::metrics::SESSION_KINDS`].
const SSE: usize = 1;

/// Longest the client's stream goes without a byte: then a keep-alive comment goes out.
const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(15);

impl Gateway {
    /// Serves an event stream of a `sessions: seamless` pool; `Ok` once the client's response
    /// ended (or the client went away).
    pub(in crate::proxy) async fn stream_events(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        response_timeout: Duration,
    ) -> Result<()> {
        let Some(pool) = ctx.pool.clone() else {
            return Error::e_explain(ErrorType::InternalError, "event stream without a pool");
        };
        // Every write to the client has a deadline, the response header's too (the body's are
        // also raced against the watch, see `write_watched`).
        session
            .as_downstream_mut()
            .set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        let mut filter = EventFilter::default();
        let mut moved: Option<Move> = None;
        let mut excluded = 0u64;
        loop {
            // The first backend is chosen like any request's (and counted the same); later ones
            // are whichever is healthy now.
            let (index, connections) = if ctx.session_open.is_none() {
                let connections = self.next_attempt(ctx, |b| b.connections())?;
                (ctx.backend.unwrap_or_default(), connections)
            } else {
                match next_backend(&pool, excluded, |b| b.connections()) {
                    Some(found) => found,
                    None => {
                        tracing::info!(pool = %pool.name(), kind = "sse", "no healthy backend to move the event stream to: it ends");
                        return end(session).await;
                    }
                }
            };
            let previous = ctx.backend.replace(index);
            let mut request = session.req_header().clone();
            self.upstream_request_filter(session, &mut request, ctx)
                .await?;
            this_hop(&mut request, 0)?;
            // A refused connection and a failed exchange count as on any request: the first
            // takes the backend out, the second counts once against it.
            let answer = match connections.connect().await {
                Err(e) => Err((e, true)),
                Ok(sender) => match to_hyper(&request, &Bytes::new()) {
                    Err(e) => return Err(e),
                    Ok(hyper_request) => exchange(sender, hyper_request, response_timeout)
                        .await
                        .map_err(|e| (e, false)),
                },
            };
            let response = match answer {
                Ok((_sender, response)) => response,
                Err((e, connecting)) => {
                    let backend = &pool.backends[index];
                    tracing::warn!(pool = %pool.name(), backend = %backend.name(), error = %e, "event stream: backend failed; trying the next");
                    if ctx.session_open.is_none() {
                        // Nothing reached the client: Pingora's rules for a failed request.
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
                    if connecting {
                        pool.take_out(index, Traffic::EventStream, "event stream: connect failed");
                    } else {
                        pool.count_live_failure(index, "event stream failed");
                    }
                    excluded |= 1 << index;
                    ctx.backend = previous;
                    keep_alive(session).await?;
                    continue;
                }
            };
            let streams = response.status() == http::StatusCode::OK
                && response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/event-stream"));
            let (parts, incoming) = response.into_parts();
            match (ctx.session_open.is_some(), streams) {
                (false, false) => {
                    // The node's answer (a 400 for an unknown topic, say) is the client's.
                    let mut header = ResponseHeader::from(parts);
                    for name in HOP_BY_HOP_RESPONSE {
                        header.remove_header(name);
                    }
                    self.upstream_response_filter(session, &mut header, ctx)
                        .await?;
                    return self
                        .relay(session, ctx, header, incoming, response_timeout)
                        .await;
                }
                (false, true) => {
                    let mut header = ResponseHeader::from(parts);
                    for name in HOP_BY_HOP_RESPONSE {
                        header.remove_header(name);
                    }
                    header.remove_header(&http::header::CONTENT_LENGTH);
                    header.set_version(http::Version::HTTP_11);
                    header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                    // Counts the session on this backend (`ctx.session_open`).
                    self.upstream_response_filter(session, &mut header, ctx)
                        .await?;
                    self.response_filter(session, &mut header, ctx).await?;
                    session
                        .write_response_header(Box::new(header), false)
                        .await
                        .map_err(|e| e.into_down())?;
                }
                (true, false) => {
                    let backend = &pool.backends[index];
                    tracing::warn!(pool = %pool.name(), backend = %backend.name(), status = parts.status.as_u16(), "event stream: the backend did not answer with a stream; trying the next");
                    excluded |= 1 << index;
                    ctx.backend = previous;
                    keep_alive(session).await?;
                    continue;
                }
                (true, true) => {
                    let why = moved.unwrap_or(Move::BackendEnded);
                    record_move(&pool, SSE, previous, index, why);
                    filter.switched();
                }
            }
            let mut delivered = false;
            match self
                .follow(session, &pool, index, incoming, &mut filter, &mut delivered)
                .await?
            {
                Some(why) => {
                    moved = Some(why);
                    // Backends that end their stream before it delivered anything stay excluded
                    // until one delivers: backends that all close at once end the client's stream
                    // instead of trading it back and forth.
                    if delivered {
                        excluded = 0;
                    }
                    if why == Move::BackendEnded {
                        excluded |= 1 << index;
                    }
                    keep_alive(session).await?;
                }
                None => return end(session).await,
            }
        }
    }

    /// Writes backend `index`'s events to the client until it should move on (`Some`), or the
    /// stream is over (`None`: idle too long, or an event too large).
    ///
    /// Every wait here has a deadline and none holds the watch: the backend is read against the
    /// watch and its idle timeout, and each write to the client runs against the watch too
    /// ([`Self::write_watched`]).
    async fn follow(
        &self,
        session: &mut Session,
        pool: &Arc<Pool>,
        index: usize,
        incoming: Incoming,
        filter: &mut EventFilter,
        delivered: &mut bool,
    ) -> Result<Option<Move>> {
        let backend = &pool.backends[index];
        let idle_timeout = self.routing.load().timeouts.websocket_idle;
        let mut pending: Vec<u8> = Vec::new();
        // How far into `pending` no event end was found.
        let mut scanned = 0;
        let mut heard = Instant::now();
        // Last write to the client: a quiet stream gets a keep-alive comment now and then, which
        // also finds a client that went away (a write fails) while the backend has nothing to say.
        let mut wrote = Instant::now();
        let mut watching = Watching {
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
                    pending.extend_from_slice(&data);
                    // Each byte is looked at once however the events arrive (a byte at a time,
                    // or many in one read), and what was taken goes in one drain. Events already
                    // read go out even when the backend is let go meanwhile.
                    let mut taken = 0;
                    loop {
                        let (block, used) = match split_event(&pending[taken..], scanned) {
                            Ok(found) => found,
                            Err(resume) => {
                                scanned = resume;
                                break;
                            }
                        };
                        taken += used;
                        scanned = 0;
                        if filter.admit(&block) {
                            let mut out = block;
                            out.extend_from_slice(b"\n\n");
                            self.write_watched(session, &mut watching, Bytes::from(out))
                                .await?;
                            wrote = Instant::now();
                            *delivered = true;
                        }
                    }
                    pending.drain(..taken);
                    if pending.len() > MAX_EVENT_BYTES {
                        tracing::warn!(pool = %pool.name(), backend = %backend.name(), limit = MAX_EVENT_BYTES, "event stream closed: an event longer than the limit");
                        return Ok(None);
                    }
                }
                _ = watching.tick.tick() => {
                    match watching.look.look(self, pool, index) {
                        Look::Stay => {}
                        Look::Move(why) => return Ok(Some(why)),
                        Look::End => return Ok(None),
                    }
                    if heard.elapsed() > idle_timeout {
                        return Ok(None);
                    }
                    if wrote.elapsed() >= CLIENT_KEEP_ALIVE {
                        self.write_watched(session, &mut watching, Bytes::from_static(KEEP_ALIVE))
                            .await?;
                        wrote = Instant::now();
                    }
                }
            }
        }
    }

    /// Writes `bytes` to the client while the watch goes on looking at the backend: a client
    /// slow to read holds neither the watch nor the backend. A move seen meanwhile lets go of
    /// the backend's stream at once (nothing moves for a client that takes nothing; the move
    /// follows once the write is done). Shutdown or a reload ends the stream, and so does a
    /// write that waits [`CLIENT_WRITE_TIMEOUT`]: `Err`, and the client's connection closes.
    async fn write_watched(
        &self,
        session: &mut Session,
        watching: &mut Watching<'_>,
        bytes: Bytes,
    ) -> Result<()> {
        let pool = watching.pool;
        let write = write_client(session, Some(bytes), false);
        tokio::pin!(write);
        loop {
            tokio::select! {
                written = &mut write => return written,
                _ = watching.tick.tick() => {
                    match watching.look.look(self, pool, watching.index) {
                        Look::Stay => {}
                        Look::Move(why) => {
                            if watching.leaving.is_none() {
                                tracing::info!(pool = %pool.name(), backend = %pool.backends[watching.index].name(), reason = why.as_str(), "event stream: the client is not reading; its backend's stream is let go, and the move waits for the client");
                                watching.leaving = Some(why);
                                watching.incoming = None;
                            }
                        }
                        Look::End => {
                            tracing::info!(pool = %pool.name(), "event stream ended at shutdown or reload while the client was not reading");
                            return Err(Error::explain(
                                ErrorType::WriteError,
                                "the client was not reading when the gateway ended its stream",
                            )
                            .into_down());
                        }
                    }
                }
            }
        }
    }
}

/// What a session's watch needs while it follows one backend.
struct Watching<'a> {
    pool: &'a Arc<Pool>,
    index: usize,
    look: Watch,
    tick: tokio::time::Interval,
    /// The backend's stream; `None` once let go.
    incoming: Option<Incoming>,
    /// Set when the session must leave the backend, once the write in progress is done.
    leaving: Option<Move>,
}

/// One write to the client, given up after [`CLIENT_WRITE_TIMEOUT`] (a client that stopped
/// reading holds its stream no longer).
async fn write_client(session: &mut Session, bytes: Option<Bytes>, end: bool) -> Result<()> {
    let write = session.write_response_body(bytes, end);
    match tokio::time::timeout(CLIENT_WRITE_TIMEOUT, write).await {
        Ok(written) => written.map_err(|e| e.into_down()),
        Err(_) => {
            tracing::info!(
                timeout = ?CLIENT_WRITE_TIMEOUT,
                "event stream ended: the client took nothing within the client write timeout"
            );
            Err(Error::explain(
                ErrorType::WriteTimedout,
                format!("the client took nothing for {CLIENT_WRITE_TIMEOUT:?}"),
            )
            .into_down())
        }
    }
}

/// The keep-alive comment.
const KEEP_ALIVE: &[u8] = b":\n\n";

/// A comment line: keeps the client's stream alive while the gateway switches backends.
async fn keep_alive(session: &mut Session) -> Result<()> {
    write_client(session, Some(Bytes::from_static(KEEP_ALIVE)), false).await
}

async fn end(session: &mut Session) -> Result<()> {
    write_client(session, None, true).await
}

/// The first whole event in `buffer` (its lines, without the blank line that ends it) and how many
/// bytes it took; else where a later look may resume, past what holds no event end. Line ends may
/// be `\n` or `\r\n`. `from` is where to resume (0, or what the last look returned).
fn split_event(buffer: &[u8], from: usize) -> Result<(Vec<u8>, usize), usize> {
    let mut i = from.min(buffer.len());
    while let Some(at) = buffer[i..].iter().position(|&b| b == b'\n') {
        let newline = i + at;
        // The line that ends here: empty when its line end follows another line end.
        let line_end = match newline.checked_sub(1) {
            Some(cr) if buffer[cr] == b'\r' => cr,
            _ => newline,
        };
        if line_end == 0 || buffer[line_end - 1] == b'\n' {
            let block = &buffer[..line_end];
            let block = block.strip_suffix(b"\n").unwrap_or(block);
            let block = block.strip_suffix(b"\r").unwrap_or(block);
            return Ok((block.to_vec(), newline + 1));
        }
        i = newline + 1;
    }
    Err(buffer.len())
}

/// Decides which events the client has not had yet.
///
/// A backend's own events pass in the order it sends them (a reorg's head at a lower slot too),
/// but for a repeat of the last one. After a switch, the new backend's events of a keyed topic
/// pass once they are past what the client has (the floor); the floor holds for
/// [`FLOOR_LIFETIME`] at most, so a slot no chain has reached yet (a node's bug) cannot silence a
/// stream for good.
#[derive(Debug, Default)]
pub struct EventFilter {
    /// Per topic keyed by slot or epoch: the last key delivered and the block root with it.
    last: HashMap<String, (u64, String)>,
    /// After a switch: per topic, what the client has; and since when.
    floor: HashMap<String, (u64, String)>,
    floor_since: Option<Instant>,
    recent: VecDeque<u64>,
    recent_set: HashSet<u64>,
}

/// Longest a floor holds after a switch: a new backend this far behind the client would be
/// judged lagging by its health checks long before.
pub const FLOOR_LIFETIME: Duration = Duration::from_secs(5 * 60);

impl EventFilter {
    /// The stream moved to another backend: its events must get past what the client has.
    pub fn switched(&mut self) {
        self.floor = self.last.clone();
        self.floor_since = Some(Instant::now());
    }

    /// Whether the event (an SSE block: `event:`, `data:` lines) goes to the client; records it.
    /// Comments and events without data pass.
    pub fn admit(&mut self, block: &[u8]) -> bool {
        let text = String::from_utf8_lossy(block);
        let mut event = "message".to_string();
        let mut data = String::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if data.is_empty() {
            return true;
        }
        let json: Option<Value> = serde_json::from_str(&data).ok();
        let field = |name: &str| -> Option<&str> { json.as_ref()?.get(name)?.as_str() };
        let keyed = match event.as_str() {
            "head" | "block" | "block_gossip" | "blob_sidecar" => field("slot")
                .and_then(|s| s.parse::<u64>().ok())
                .map(|slot| (slot, field("block").or(field("block_root")).unwrap_or(""))),
            "finalized_checkpoint" => field("epoch")
                .and_then(|e| e.parse::<u64>().ok())
                .map(|epoch| (epoch, "")),
            _ => None,
        };
        if let Some((key, root)) = keyed {
            // blob sidecars share a slot and block: each index is its own event.
            if event != "blob_sidecar" {
                let floor_holds = self
                    .floor_since
                    .is_some_and(|since| since.elapsed() < FLOOR_LIFETIME);
                if let Some((floor, floor_root)) = self.floor.get(&event) {
                    if floor_holds && (key < *floor || (key == *floor && root == floor_root)) {
                        return false;
                    }
                    self.floor.remove(&event);
                }
                if self
                    .last
                    .get(&event)
                    .is_some_and(|(last, last_root)| key == *last && root == last_root)
                {
                    return false;
                }
                self.last.insert(event, (key, root.to_string()));
                return true;
            }
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (event.as_str(), data.as_str()).hash(&mut hasher);
        let key = hasher.finish();
        if !self.recent_set.insert(key) {
            return false;
        }
        self.recent.push_back(key);
        if self.recent.len() > RECENT_EVENTS {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(slot: u64, root: &str) -> Vec<u8> {
        format!("event: head\ndata: {{\"slot\":\"{slot}\",\"block\":\"{root}\"}}").into_bytes()
    }

    #[test]
    fn events_are_split_on_blank_lines_whatever_the_line_ends() {
        let buffer = b"event: head\r\ndata: {}\r\n\r\nevent: block\ndata: {}\n\nevent: par";
        let (first, used) = split_event(buffer, 0).unwrap();
        assert_eq!(first, b"event: head\r\ndata: {}");
        let (second, used2) = split_event(&buffer[used..], 0).unwrap();
        assert_eq!(second, b"event: block\ndata: {}");
        let rest = &buffer[used + used2..];
        assert_eq!(split_event(rest, 0), Err(rest.len()));
        // Resumed byte by byte, the ends are found where a whole look finds them.
        let mut resume = 0;
        let mut found = Vec::new();
        let mut start = 0;
        for end in 1..=buffer.len() {
            match split_event(&buffer[start..end], resume) {
                Ok((block, used)) => {
                    found.push(block);
                    start += used;
                    resume = 0;
                }
                Err(at) => resume = at,
            }
        }
        assert_eq!(found, vec![first, second]);
        assert_eq!(split_event(b"\n\ndata: x", 0), Ok((Vec::new(), 1)));
    }

    /// The session loop's way of reading (resume where the last look stopped, drain what was
    /// taken), fed `chunks`.
    fn read_like_follow(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut pending: Vec<u8> = Vec::new();
        let mut scanned = 0;
        let mut out = Vec::new();
        for data in chunks {
            pending.extend_from_slice(data);
            let mut taken = 0;
            loop {
                let (block, used) = match split_event(&pending[taken..], scanned) {
                    Ok(found) => found,
                    Err(resume) => {
                        scanned = resume;
                        break;
                    }
                };
                taken += used;
                scanned = 0;
                out.push(block);
            }
            pending.drain(..taken);
        }
        out
    }

    #[test]
    fn attack_events_are_the_same_at_every_split_in_two_and_three() {
        let streams: [&[u8]; 4] = [
            b"event: head\r\ndata: {\"slot\":\"1\"}\r\n\r\n:\r\n\r\nevent: block\r\ndata: {}\r\n\r\n",
            b"event: head\ndata: a\n\n\n\nevent: x\ndata: b\ndata: c\n\n:ka\n\n",
            b"data: x\r\n\ndata: y\n\r\ndata: z\r\n\r\n",
            b"\r\n\r\ndata: q\r\n\r\n",
        ];
        for stream in streams {
            let whole = read_like_follow(&[stream]);
            for i in 0..=stream.len() {
                for j in i..=stream.len() {
                    let got = read_like_follow(&[&stream[..i], &stream[i..j], &stream[j..]]);
                    assert_eq!(
                        got,
                        whole,
                        "split at {i} and {j} of {:?}",
                        String::from_utf8_lossy(stream)
                    );
                }
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(read_like_follow(&bytes), whole);
        }
    }

    #[test]
    fn a_head_the_client_has_or_an_older_one_is_dropped_after_a_switch() {
        let mut f = EventFilter::default();
        assert!(f.admit(&head(10, "0xa")));
        assert!(!f.admit(&head(10, "0xa")), "the same head again");
        assert!(
            f.admit(&head(9, "0x9")),
            "the backend's own reorg to a lower slot"
        );
        assert!(f.admit(&head(10, "0xa")));
        f.switched();
        assert!(
            !f.admit(&head(9, "0x9")),
            "an older head from the next backend"
        );
        assert!(!f.admit(&head(10, "0xa")), "one the client has");
        assert!(
            f.admit(&head(10, "0xb")),
            "another block at the same slot (a reorg)"
        );
        assert!(f.admit(&head(11, "0xc")));
        assert!(
            f.admit(&head(10, "0xd")),
            "past the floor, the backend's order again"
        );
        let block = b"event: block\ndata: {\"slot\":\"11\",\"block\":\"0xc\"}";
        assert!(f.admit(block), "topics are kept apart");
        assert!(!f.admit(block));
    }

    #[test]
    fn an_absurd_slot_does_not_silence_the_stream_for_good() {
        let mut f = EventFilter::default();
        assert!(f.admit(&head(u64::MAX - 1, "0xbad")));
        f.switched();
        assert!(
            !f.admit(&head(12, "0xc")),
            "held back while the floor holds"
        );
        f.floor_since = Instant::now().checked_sub(FLOOR_LIFETIME);
        assert!(f.admit(&head(13, "0xd")), "the floor expired");
        assert!(f.admit(&head(14, "0xe")));
    }

    #[test]
    fn checkpoints_go_by_epoch_and_other_topics_by_content() {
        let mut f = EventFilter::default();
        let cp = |e: u64| {
            format!("event: finalized_checkpoint\ndata: {{\"epoch\":\"{e}\",\"block\":\"0x1\"}}")
                .into_bytes()
        };
        assert!(f.admit(&cp(3)));
        assert!(!f.admit(&cp(3)));
        f.switched();
        assert!(!f.admit(&cp(2)));
        assert!(f.admit(&cp(4)));
        let exit = b"event: voluntary_exit\ndata: {\"message\":{\"epoch\":\"1\",\"validator_index\":\"7\"}}";
        assert!(f.admit(exit));
        assert!(!f.admit(exit));
        assert!(f.admit(b": keep-alive"), "comments pass");
        for i in 0..(RECENT_EVENTS + 10) {
            f.admit(format!("event: attestation\ndata: {{\"n\":{i}}}").as_bytes());
        }
        assert!(f.recent.len() <= RECENT_EVENTS && f.recent_set.len() <= RECENT_EVENTS);
    }
}

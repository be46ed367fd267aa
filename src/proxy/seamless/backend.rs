//! The gateway's WebSocket to the backend of a seamless session ([`BackendSocket`]): frames read
//! with tungstenite's frame codec ([`FrameHeader`]), messages assembled up to
//! [`MAX_BACKEND_MESSAGE`], and a bounded queue of outgoing frames that the session loop flushes
//! while it does everything else.
//!
//! - **Nothing waits on the backend.** A send only queues the frame; the bytes go out while the
//!   session waits for the next message ([`BackendSocket::read`]), so a node that stops reading
//!   its socket (a zero TCP window) never holds the loop that sees mark-down, idle time and
//!   shutdown. The loop stops reading its client while [`BackendSocket::queued`] is over
//!   [`MAX_QUEUED_BYTES`], and moves the session once the backend has taken no byte for
//!   [`SEND_DEADLINE`] ([`BackendSocket::stalled_for`]).
//! - **An answer too large is that request's failure.** The frame header gives a message's length
//!   before its payload: past [`MAX_BACKEND_MESSAGE`] the payload is not kept, only its first and
//!   last [`KEPT_ENDS`] bytes, where a node writes the answer's `id` (geth before `result`,
//!   Nethermind as the last key). The rest is read and dropped as it arrives, the connection
//!   stays, and the session answers that request with an error under the client's id
//!   ([`Incoming::Oversized`]).
//! - **A ping is answered while the queue has room.** Past [`MAX_QUEUED_BYTES`] queued, a ping
//!   from the backend goes unanswered, so a node that floods pings and reads nothing cannot grow
//!   the queue.
//! - **An idle session holds little.** The read buffer starts at [`IDLE_READ`] bytes and grows
//!   only while a large message arrives; it goes back once the message is through. (tungstenite's
//!   own socket keeps a 128 KiB read buffer per connection.)
//!
//! The upgrade itself stays tokio-tungstenite's; the bytes the node sent after its 101 answer, if
//! any, are kept ([`Recording`]).

use super::super::websocket::frame;
use crate::upstream::connections::Stream;
use bytes::Bytes;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, Cursor, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{FrameHeader, Utf8Bytes};
use tungstenite::Message;

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

/// The read buffer of a session between messages.
const IDLE_READ: usize = 4 * 1024;

/// The read size while a large frame arrives.
const LARGE_READ: usize = 64 * 1024;

/// Longest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// What the backend sent.
#[derive(Debug)]
pub enum Incoming {
    /// A whole text or binary message.
    Data { data: Data, payload: Bytes },
    /// The backend's close frame.
    Close,
    /// A message over [`MAX_BACKEND_MESSAGE`], read and dropped: its length and the top-level
    /// `id` found at either end (of the first or last element, for a batch).
    Oversized { id: Option<u64>, length: u64 },
}

/// A message being received.
#[derive(Debug)]
enum Assembly {
    Whole {
        data: Data,
        payload: Vec<u8>,
    },
    Oversized {
        head: Vec<u8>,
        tail: Vec<u8>,
        length: u64,
    },
}

impl Assembly {
    fn take(&mut self, bytes: &[u8]) {
        match self {
            Assembly::Whole { payload, .. } => payload.extend_from_slice(bytes),
            Assembly::Oversized { head, tail, length } => {
                *length += bytes.len() as u64;
                let room = KEPT_ENDS - head.len();
                head.extend_from_slice(&bytes[..room.min(bytes.len())]);
                let last = &bytes[bytes.len().saturating_sub(KEPT_ENDS)..];
                tail.extend_from_slice(last);
                if tail.len() > KEPT_ENDS {
                    tail.drain(..tail.len() - KEPT_ENDS);
                }
            }
        }
    }

    fn held(&self) -> u64 {
        match self {
            Assembly::Whole { payload, .. } => payload.len() as u64,
            Assembly::Oversized { length, .. } => *length,
        }
    }

    /// The same message, its payload no longer kept.
    fn oversized(self) -> Assembly {
        match self {
            Assembly::Whole { payload, .. } => {
                let mut over = Assembly::Oversized {
                    head: Vec::new(),
                    tail: Vec::new(),
                    length: 0,
                };
                over.take(&payload);
                over
            }
            over => over,
        }
    }

    fn done(self) -> Incoming {
        match self {
            Assembly::Whole { data, payload } => Incoming::Data {
                data,
                payload: Bytes::from(payload),
            },
            Assembly::Oversized { head, tail, length } => Incoming::Oversized {
                id: id_from_head(&head).or_else(|| id_from_tail(&tail)),
                length,
            },
        }
    }
}

/// The gateway's WebSocket to one backend (the client side of the protocol: its frames are
/// masked).
pub struct BackendSocket {
    stream: Box<dyn Stream>,
    /// Bytes received and not yet taken: a frame header, or part of a frame's payload.
    input: Vec<u8>,
    /// The data frame being received: whether it ends its message, and payload bytes to come.
    frame: Option<(bool, u64)>,
    message: Option<Assembly>,
    /// Frames for the backend, the first one `written` bytes in.
    output: VecDeque<Bytes>,
    written: usize,
    queued: usize,
    /// Bytes handed to the stream that a flush must push out (TLS holds some).
    unflushed: bool,
    /// When the backend last took bytes, or when it was given some to take.
    progress: Instant,
    /// The backend ended the connection.
    ended: bool,
}

impl BackendSocket {
    /// The socket once tokio-tungstenite's handshake is done: what came after the 101 answer is
    /// the first bytes of the first frame.
    pub fn after_handshake(recorded: Recording<Box<dyn Stream>>) -> BackendSocket {
        let Recording { stream, read, .. } = recorded;
        let input = read
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|end| read[end + 4..].to_vec())
            .unwrap_or_default();
        BackendSocket::new(stream, input)
    }

    fn new(stream: Box<dyn Stream>, input: Vec<u8>) -> BackendSocket {
        BackendSocket {
            stream,
            input,
            frame: None,
            message: None,
            output: VecDeque::new(),
            written: 0,
            queued: 0,
            unflushed: false,
            progress: Instant::now(),
            ended: false,
        }
    }

    /// Queues one message for the backend (text or binary); it goes out while the session waits
    /// for the next message.
    pub fn queue(&mut self, data: Data, payload: &[u8]) {
        self.push(frame(OpCode::Data(data), Some(mask()), payload));
    }

    /// Bytes queued and not yet taken by the backend.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// How long the backend has taken none of the bytes waiting for it; `None` when nothing
    /// waits.
    pub fn stalled_for(&self) -> Option<Duration> {
        (!self.output.is_empty() || self.unflushed).then(|| self.progress.elapsed())
    }

    /// As a `tungstenite` stream sends a message: queued (text, binary or close; other kinds are
    /// the socket's own business). `Err` once the backend ended the connection.
    pub async fn send(&mut self, message: Message) -> io::Result<()> {
        if self.ended {
            return Err(io::Error::new(
                ErrorKind::BrokenPipe,
                "the backend ended the connection",
            ));
        }
        match message {
            Message::Text(text) => self.queue(Data::Text, text.as_bytes()),
            Message::Binary(bytes) => self.queue(Data::Binary, &bytes),
            Message::Close(_) => {
                self.push(frame(OpCode::Control(Control::Close), Some(mask()), &[]))
            }
            _ => {}
        }
        Ok(())
    }

    /// As a `tungstenite` stream reads: the next message (`None` once the connection ended). A
    /// message over [`MAX_BACKEND_MESSAGE`] with an `id` comes as that request's error
    /// ([`ANSWER_TOO_LARGE`]); without one, as an error of the connection.
    pub async fn next(&mut self) -> Option<io::Result<Message>> {
        let incoming = match self.read().await? {
            Ok(incoming) => incoming,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(match incoming {
            Incoming::Data {
                data: Data::Text,
                payload,
            } => match Utf8Bytes::try_from(payload.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(payload),
            },
            Incoming::Data { payload, .. } => Message::Binary(payload),
            Incoming::Close => Message::Close(None),
            Incoming::Oversized {
                id: Some(id),
                length,
            } => {
                let error = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {"code": ANSWER_TOO_LARGE, "message": too_large(length)},
                });
                Message::Text(error.to_string().into())
            }
            Incoming::Oversized { id: None, length } => {
                return Some(Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{}, with no id", too_large(length)),
                )))
            }
        }))
    }

    /// The next message from the backend (`None` once it ended the connection), while the
    /// queued frames go out. Cancel-safe: nothing is lost when the future is dropped.
    pub async fn read(&mut self) -> Option<io::Result<Incoming>> {
        poll_fn(|cx| self.poll_read_message(cx)).await
    }

    /// Sends a close frame and waits up to `within` for it to go out (best effort).
    pub async fn close(&mut self, within: Duration) {
        if !self.ended {
            self.push(frame(
                OpCode::Control(Control::Close),
                Some(mask()),
                &1000u16.to_be_bytes(),
            ));
        }
        let flush = poll_fn(|cx| match self.poll_write_queued(cx) {
            Err(_) => Poll::Ready(()),
            Ok(()) if self.stalled_for().is_none() => Poll::Ready(()),
            Ok(()) => Poll::Pending,
        });
        let _ = tokio::time::timeout(within, flush).await;
        let _ = tokio::time::timeout(
            within,
            poll_fn(|cx| Pin::new(&mut self.stream).poll_shutdown(cx)),
        )
        .await;
    }

    fn push(&mut self, bytes: Vec<u8>) {
        if self.stalled_for().is_none() {
            self.progress = Instant::now();
        }
        self.queued += bytes.len();
        self.output.push_back(Bytes::from(bytes));
    }

    /// Writes what the backend takes of the queue now.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while let Some(front) = self.output.front() {
            match Pin::new(&mut self.stream).poll_write(cx, &front[self.written..]) {
                Poll::Ready(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.progress = Instant::now();
                    self.unflushed = true;
                    self.written += n;
                    self.queued -= n;
                    if self.written == front.len() {
                        self.output.pop_front();
                        self.written = 0;
                    }
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    self.progress = Instant::now();
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    fn poll_read_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Incoming>>> {
        if let Err(e) = self.poll_write_queued(cx) {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            let queued = self.output.len();
            match self.take_message() {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Some(incoming)) => return Poll::Ready(Some(Ok(incoming))),
                Ok(None) => {}
            }
            if self.output.len() != queued {
                // A pong to send.
                if let Err(e) = self.poll_write_queued(cx) {
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match self.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(0)) => {
                    self.ended = true;
                    if self.frame.is_some() || !self.input.is_empty() {
                        return Poll::Ready(Some(Err(io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "the backend ended the connection inside a frame",
                        ))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    /// Reads more of the backend's bytes into `input`.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let large = self
            .frame
            .is_some_and(|(_, left)| left as usize > IDLE_READ);
        let chunk = if large { LARGE_READ } else { IDLE_READ };
        let have = self.input.len();
        self.input.resize(have + chunk, 0);
        let mut buf = ReadBuf::new(&mut self.input[have..]);
        let polled = Pin::new(&mut self.stream).poll_read(cx, &mut buf);
        let filled = buf.filled().len();
        self.input.truncate(have + filled);
        match polled {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(filled)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Takes what `input` holds of frames; a whole message when one is complete. Control frames
    /// are handled here (a ping is answered).
    fn take_message(&mut self) -> io::Result<Option<Incoming>> {
        let mut at = 0;
        let result = loop {
            if let Some((last, left)) = self.frame {
                let n = (self.input.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                if let Some(message) = self.message.as_mut() {
                    message.take(&self.input[at..at + n]);
                }
                at += n;
                let left = left - n as u64;
                if left > 0 {
                    self.frame = Some((last, left));
                    break Ok(None);
                }
                self.frame = None;
                if last {
                    break Ok(self.message.take().map(Assembly::done));
                }
                continue;
            }
            let mut cursor = Cursor::new(&self.input[at..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break Ok(None),
                Err(e) => break Err(protocol(format!("a malformed frame header: {e}"))),
            };
            let header_len = cursor.position() as usize;
            if let Err(e) = self.admit(&header, length) {
                break Err(e);
            }
            let data = match header.opcode {
                OpCode::Control(control) => {
                    // `admit` held it to 125 bytes.
                    let end = at + header_len + length as usize;
                    if self.input.len() < end {
                        break Ok(None);
                    }
                    let payload = self.input[at + header_len..end].to_vec();
                    at = end;
                    match control {
                        Control::Close => {
                            self.ended = true;
                            break Ok(Some(Incoming::Close));
                        }
                        // A node that sends pings and does not read its socket would have
                        // their pongs queued without bound: past [`MAX_QUEUED_BYTES`] waiting,
                        // a ping goes unanswered (RFC 6455, 5.5.3, lets an endpoint answer
                        // only the latest of several).
                        Control::Ping if self.queued < MAX_QUEUED_BYTES => self.push(frame(
                            OpCode::Control(Control::Pong),
                            Some(mask()),
                            &payload,
                        )),
                        _ => {}
                    }
                    continue;
                }
                OpCode::Data(data) => data,
            };
            at += header_len;
            let message = match (data, self.message.take()) {
                (Data::Continue, Some(message)) => message,
                (data, _) => Assembly::Whole {
                    data,
                    payload: Vec::new(),
                },
            };
            let over = message.held().saturating_add(length) > MAX_BACKEND_MESSAGE as u64;
            self.message = Some(if over { message.oversized() } else { message });
            self.frame = Some((header.is_final, length));
        };
        self.input.drain(..at);
        if self.input.is_empty() && self.frame.is_none() && self.input.capacity() > IDLE_READ {
            self.input = Vec::new();
        }
        result
    }

    /// Judges a frame from its header: what a server may send.
    fn admit(&self, header: &FrameHeader, length: u64) -> io::Result<()> {
        if header.mask.is_some() {
            return Err(protocol("a masked frame from the backend"));
        }
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(protocol(
                "a frame with RSV bits set; no extension was negotiated",
            ));
        }
        match header.opcode {
            OpCode::Data(Data::Reserved(op)) | OpCode::Control(Control::Reserved(op)) => {
                Err(protocol(format!("a frame with reserved opcode {op}")))
            }
            OpCode::Control(_) if !header.is_final || length > MAX_CONTROL_PAYLOAD => {
                Err(protocol("a fragmented or long control frame"))
            }
            OpCode::Data(Data::Continue) if self.message.is_none() => {
                Err(protocol("a continuation frame without a message"))
            }
            OpCode::Data(Data::Text | Data::Binary) if self.message.is_some() => {
                Err(protocol("a new message before the last one ended"))
            }
            _ => Ok(()),
        }
    }
}

fn protocol(reason: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, reason.into())
}

/// What the client is told of an answer over the limit.
pub fn too_large(length: u64) -> String {
    format!(
        "the node's answer ({length} bytes) is larger than the gateway's limit of {MAX_BACKEND_MESSAGE} bytes per message; ask for less (a narrower eth_getLogs range, say)"
    )
}

/// A mask for a frame to the backend. Masking guards intermediaries against a browser's
/// scripted bytes, which a gateway's own connection never carries; std's randomly keyed hasher
/// is random enough for it.
fn mask() -> [u8; 4] {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = std::collections::hash_map::RandomState::new()
        .hash_one(COUNT.fetch_add(1, Ordering::Relaxed));
    (n as u32).to_be_bytes()
}

/// The top-level `id` (a number) of the JSON at the start of a message, when it comes before
/// any value that does not fit in `head`: `{"jsonrpc":"2.0","id":7,"result":…` (in a batch, the
/// first element's).
pub fn id_from_head(head: &[u8]) -> Option<u64> {
    let mut at = skip_space(head, 0);
    if head.get(at) == Some(&b'[') {
        at = skip_space(head, at + 1);
    }
    if head.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_space(head, at);
        let (key, end) = string_at(head, at)?;
        at = skip_space(head, end);
        if head.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(head, at + 1);
        if key == b"id" {
            let digits = head[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            // The number must end inside `head`.
            head.get(at + digits)?;
            return std::str::from_utf8(&head[at..at + digits])
                .ok()?
                .parse()
                .ok();
        }
        at = skip_space(head, value_end(head, at)?);
        match head.get(at) {
            Some(b',') => at += 1,
            _ => return None,
        }
    }
}

/// The top-level `id` (a number) when it is the last member of the message's object:
/// `…],"id":7}` (in a batch, the last element's).
pub fn id_from_tail(tail: &[u8]) -> Option<u64> {
    let mut end = tail.len();
    let back = |end: usize| -> usize {
        let mut end = end;
        while end > 0 && tail[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        end
    };
    end = back(end);
    if end > 0 && tail[end - 1] == b']' {
        end = back(end - 1);
    }
    if end == 0 || tail[end - 1] != b'}' {
        return None;
    }
    end = back(end - 1);
    let digits = tail[..end]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let number = std::str::from_utf8(&tail[end - digits..end])
        .ok()?
        .parse()
        .ok()?;
    end = back(end - digits);
    if end == 0 || tail[end - 1] != b':' {
        return None;
    }
    end = back(end - 1);
    if end < 4 || &tail[end - 4..end] != b"\"id\"" {
        return None;
    }
    end = back(end - 4);
    // The key opens a member of the object: after a comma or its brace, never inside a string.
    (end > 0 && matches!(tail[end - 1], b',' | b'{')).then_some(number)
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The string starting at `at` (its raw bytes, escapes untouched) and where it ends.
fn string_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some((&bytes[at + 1..i], i + 1)),
            _ => i += 1,
        }
    }
}

/// Where the JSON value starting at `at` ends, if it ends inside `bytes`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_at(bytes, at).map(|(_, end)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_at(bytes, i)?.1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = bytes[at..]
                .iter()
                .take_while(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                .count();
            // A scalar must end inside `bytes` to be known whole.
            bytes.get(at + len)?;
            Some(at + len)
        }
    }
}

/// A stream that keeps what was read from it, for the bytes a handshake read past its answer.
pub struct Recording<S> {
    stream: S,
    read: Vec<u8>,
}

impl<S> Recording<S> {
    pub fn new(stream: S) -> Recording<S> {
        Recording {
            stream,
            read: Vec::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = buf.filled()[before..].to_vec();
            self.read.extend_from_slice(&new);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = frame(OpCode::from(opcode), None, payload);
        if !fin {
            f[0] &= 0x7f;
        }
        f
    }

    #[test]
    fn the_id_is_found_first_or_last() {
        assert_eq!(
            id_from_head(br#"{"jsonrpc":"2.0","id":42,"result":[{"a":"#),
            Some(42)
        );
        assert_eq!(
            id_from_head(br#" { "jsonrpc" : "2.0", "x":{"id":1,"s":"}\""}, "id" : 7 ,"result""#),
            Some(7)
        );
        assert_eq!(
            id_from_head(br#"[{"jsonrpc":"2.0","id":3,"result":[1,"#),
            Some(3)
        );
        // The id not in the head, or cut off: unknown.
        assert_eq!(
            id_from_head(br#"{"jsonrpc":"2.0","result":[{"id":5,"#),
            None
        );
        assert_eq!(id_from_head(br#"{"jsonrpc":"2.0","id":12"#), None);
        assert_eq!(id_from_tail(br#"x"}],"id":99}"#), Some(99));
        assert_eq!(id_from_tail(b"0\"}] ,\n \"id\" : 99 } \n"), Some(99));
        assert_eq!(id_from_tail(br#"x"}],"id":8}]"#), Some(8));
        // A string that ends like an id member is not one.
        assert_eq!(id_from_tail(br#"{"result":"a\"id\":9}"}"#), None);
        assert_eq!(id_from_tail(br#""result":{"id":9}}"#), None);
        assert_eq!(id_from_tail(br#"],"id":"9"}"#), None);
    }

    /// A socket reading `bytes` from the backend, which then ends the connection.
    fn socket_reading(bytes: Vec<u8>) -> BackendSocket {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            // Dropped (the connection ends) once its bytes are read.
            let _ = theirs.write_all(&bytes).await;
        });
        BackendSocket::new(Box::new(ours), Vec::new())
    }

    #[tokio::test]
    async fn an_oversized_message_is_dropped_with_its_id_and_the_next_one_reads() {
        let big = format!(
            r#"{{"jsonrpc":"2.0","result":["{}"],"id":77}}"#,
            "a".repeat(MAX_BACKEND_MESSAGE)
        );
        let mut bytes = server_frame(false, 1, &big.as_bytes()[..1000]);
        bytes.extend(server_frame(true, 9, b"hi"));
        bytes.extend(server_frame(true, 0, &big.as_bytes()[1000..]));
        bytes.extend(server_frame(
            true,
            1,
            br#"{"jsonrpc":"2.0","id":78,"result":1}"#,
        ));
        let mut socket = socket_reading(bytes);
        match socket.read().await {
            Some(Ok(Incoming::Oversized { id, length })) => {
                assert_eq!((id, length), (Some(77), big.len() as u64));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            socket.input.capacity() <= LARGE_READ * 2,
            "the payload was not kept: {}",
            socket.input.capacity()
        );
        match socket.read().await {
            Some(Ok(Incoming::Data { data, payload })) => {
                assert_eq!(data, Data::Text);
                assert_eq!(&payload[..], br#"{"jsonrpc":"2.0","id":78,"result":1}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn whole_messages_come_across_fragments_and_small_reads() {
        let body = br#"{"jsonrpc":"2.0","method":"eth_subscription","params":{}}"#;
        let mut bytes = server_frame(false, 1, &body[..10]);
        bytes.extend(server_frame(true, 10, b""));
        bytes.extend(server_frame(true, 0, &body[10..]));
        bytes.extend(server_frame(true, 8, &1000u16.to_be_bytes()));
        let mut socket = socket_reading(bytes);
        match socket.read().await {
            Some(Ok(Incoming::Data { payload, .. })) => assert_eq!(&payload[..], body),
            other => panic!("{other:?}"),
        }
        assert!(matches!(socket.read().await, Some(Ok(Incoming::Close))));
        assert!(socket.read().await.is_none());
    }

    #[tokio::test]
    async fn masked_or_compressed_frames_are_refused() {
        let mut masked = frame(OpCode::Data(Data::Text), Some([1, 2, 3, 4]), b"{}");
        masked[0] |= 0x80;
        let mut compressed = server_frame(true, 1, b"{}");
        compressed[0] |= 0x40;
        for bytes in [masked, compressed, server_frame(true, 0, b"x")] {
            let mut socket = socket_reading(bytes);
            assert!(matches!(socket.read().await, Some(Err(_))));
        }
    }

    #[tokio::test]
    async fn queued_frames_go_out_masked_while_the_socket_reads_and_a_stall_shows() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut socket = BackendSocket::new(Box::new(ours), Vec::new());
        assert_eq!(socket.stalled_for(), None);
        socket.queue(Data::Text, &[b'x'; 1000]);
        assert!(socket.queued() > 1000);
        // Nobody reads the other end past 64 bytes: the read waits, the send stalls.
        let waited = tokio::time::timeout(Duration::from_millis(100), socket.read()).await;
        assert!(waited.is_err());
        assert!(socket.stalled_for().is_some());
        assert!(socket.queued() > 900);
        // The other end reads: everything goes out, a masked frame.
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 1008];
            tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut got)
                .await
                .unwrap();
            got
        });
        let _ = tokio::time::timeout(Duration::from_millis(300), socket.read()).await;
        let got = reader.await.unwrap();
        assert_eq!(socket.queued(), 0);
        assert_eq!(got[0], 0x81);
        assert_eq!(got[1] & 0x80, 0x80, "masked");
        let (_, length) = FrameHeader::parse(&mut Cursor::new(&got)).unwrap().unwrap();
        assert_eq!(length, 1000);
    }
}

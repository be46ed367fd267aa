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
//!
//! The parts: [`queue`] (the frames for the backend and how they go out), [`reader`] (frames
//! read and messages assembled), [`answer_id`] (the `id` at either end of a message too large to
//! keep) and [`recording`] (the bytes a handshake read past its answer).
//!
//! [`IDLE_READ`]: reader::IDLE_READ
//! [`FrameHeader`]: tungstenite::protocol::frame::FrameHeader

mod answer_id;
mod queue;
mod reader;
mod recording;

pub use recording::Recording;

use crate::session::relay::frame;
use crate::upstream::connections::Stream;
use bytes::Bytes;
use queue::mask;
use reader::Assembly;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::Utf8Bytes;
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

    /// A socket on `stream`, `input` the bytes already read of its first frame.
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
}

/// What the client is told of an answer over the limit.
pub fn too_large(length: u64) -> String {
    format!(
        "the node's answer ({length} bytes) is larger than the gateway's limit of {MAX_BACKEND_MESSAGE} bytes per message; ask for less (a narrower eth_getLogs range, say)"
    )
}

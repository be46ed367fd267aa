//! The gateway's WebSocket to one backend ([`BackendSocket`]): built after the handshake, and
//! what a session calls on it (send, read, close). How frames go out is [`super::queue`], how
//! they come in [`super::reader`].

use super::bounds::{too_large, ANSWER_TOO_LARGE};
use super::message::{Assembly, Incoming};
use super::recording::Recording;
use crate::session::relay::frame;
use crate::upstream::connections::Stream;
use bytes::Bytes;
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

/// The gateway's WebSocket to one backend (the client side of the protocol: its frames are
/// masked).
pub struct BackendSocket {
    pub(super) stream: Box<dyn Stream>,
    /// Bytes received and not yet taken: a frame header, or part of a frame's payload.
    pub(super) input: Vec<u8>,
    /// The data frame being received: whether it ends its message, and payload bytes to come.
    pub(super) frame: Option<(bool, u64)>,
    pub(super) message: Option<Assembly>,
    /// Frames for the backend, the first one `written` bytes in.
    pub(super) output: VecDeque<Bytes>,
    pub(super) written: usize,
    pub(super) queued: usize,
    /// Bytes handed to the stream that a flush must push out (TLS holds some).
    pub(super) unflushed: bool,
    /// When the backend last took bytes, or when it was given some to take.
    pub(super) progress: Instant,
    /// The backend ended the connection.
    pub(super) ended: bool,
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
    pub(super) fn new(stream: Box<dyn Stream>, input: Vec<u8>) -> BackendSocket {
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
    ///
    /// [`MAX_BACKEND_MESSAGE`]: super::bounds::MAX_BACKEND_MESSAGE
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

    /// Lets go of the backend at once, without a close frame: the connection closes, and the
    /// socket reads as ended from then on (a marked-down backend is held no longer while a
    /// session waits on its client).
    pub fn let_go(&mut self) {
        self.stream = Box::new(tokio::io::empty());
        self.output.clear();
        (self.written, self.queued, self.unflushed) = (0, 0, false);
        self.ended = true;
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

/// A mask for a frame to the backend. Masking guards intermediaries against a browser's
/// scripted bytes, which a gateway's own connection never carries; std's randomly keyed hasher
/// is random enough for it.
pub(super) fn mask() -> [u8; 4] {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = std::collections::hash_map::RandomState::new()
        .hash_one(COUNT.fetch_add(1, Ordering::Relaxed));
    (n as u32).to_be_bytes()
}

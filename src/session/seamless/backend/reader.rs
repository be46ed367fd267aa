//! The backend's frames read and its messages assembled: control frames handled as they come (a
//! ping answered while the queue has room), a message over [`MAX_BACKEND_MESSAGE`] kept only by
//! its ends ([`Assembly::Oversized`]), and the read buffer back to [`IDLE_READ`] between messages.

use super::bounds::{MAX_BACKEND_MESSAGE, MAX_QUEUED_BYTES};
use super::message::{Assembly, Incoming};
use super::socket::{mask, BackendSocket};
use crate::session::relay::frame;
use std::io::{self, Cursor, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The read buffer of a session between messages.
pub(super) const IDLE_READ: usize = 4 * 1024;

/// The read size while a large frame arrives.
const LARGE_READ: usize = 64 * 1024;

/// Longest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

impl BackendSocket {
    pub(super) fn poll_read_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Incoming>>> {
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
            self.message = Some(if over {
                message.oversized()
            } else {
                message.expect(length)
            });
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
}

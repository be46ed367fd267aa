//! The frames a session queues for its backend, and how they go out: while the session waits
//! for the backend's next message ([`BackendSocket::read`]), never in a wait of their own, so a
//! backend that stops reading holds nothing but its queue ([`BackendSocket::stalled_for`]).

use super::socket::{mask, BackendSocket};
use crate::session::relay::frame;
use bytes::Bytes;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tungstenite::protocol::frame::coding::{Data, OpCode};

impl BackendSocket {
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

    /// Queues a frame; the stall clock starts when nothing waited before it.
    pub(super) fn push(&mut self, bytes: Vec<u8>) {
        if self.stalled_for().is_none() {
            self.progress = Instant::now();
        }
        self.queued += bytes.len();
        self.output.push_back(Bytes::from(bytes));
    }

    /// Writes what the backend takes of the queue now.
    pub(super) fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tungstenite::protocol::frame::FrameHeader;

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

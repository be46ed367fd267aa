//! A message from the backend: as the socket hands it on ([`Incoming`]) and while its frames
//! arrive ([`Assembly`]), a message over the limit kept only by its ends.

use super::answer_id::{id_from_head, id_from_tail};
use super::bounds::KEPT_ENDS;
use bytes::Bytes;
use tungstenite::protocol::frame::coding::Data;

/// What the backend sent.
#[derive(Debug)]
pub enum Incoming {
    /// A whole text or binary message.
    Data { data: Data, payload: Bytes },
    /// The backend's close frame.
    Close,
    /// A message over [`MAX_BACKEND_MESSAGE`], read and dropped: its length and the top-level
    /// `id` found at either end (of the first or last element, for a batch).
    ///
    /// [`MAX_BACKEND_MESSAGE`]: super::bounds::MAX_BACKEND_MESSAGE
    Oversized { id: Option<u64>, length: u64 },
}

/// A message being received.
#[derive(Debug)]
pub(super) enum Assembly {
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
    pub(super) fn take(&mut self, bytes: &[u8]) {
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

    pub(super) fn held(&self) -> u64 {
        match self {
            Assembly::Whole { payload, .. } => payload.len() as u64,
            Assembly::Oversized { length, .. } => *length,
        }
    }

    /// The same message, with room for a frame of `length` bytes more (under the limit: the
    /// caller checked), so that a message in one large frame is not copied as it grows.
    pub(super) fn expect(mut self, length: u64) -> Assembly {
        if let Assembly::Whole { payload, .. } = &mut self {
            payload.reserve(usize::try_from(length).unwrap_or(0));
        }
        self
    }

    /// The same message, its payload no longer kept.
    pub(super) fn oversized(self) -> Assembly {
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

    pub(super) fn done(self) -> Incoming {
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

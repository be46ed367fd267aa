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
//! The parts: [`socket`] (the socket and what a session calls on it), [`bounds`] (its limits),
//! [`message`] (a message whole or being assembled), [`queue`] (the frames for the backend and
//! how they go out), [`reader`] (frames read and messages assembled), [`answer_id`] (the `id` at
//! either end of a message too large to keep) and [`recording`] (the bytes a handshake read past
//! its answer).
//!
//! [`IDLE_READ`]: reader::IDLE_READ
//! [`KEPT_ENDS`]: bounds::KEPT_ENDS
//! [`FrameHeader`]: tungstenite::protocol::frame::FrameHeader

mod answer_id;
mod bounds;
mod message;
mod queue;
mod reader;
mod recording;
mod socket;

pub use bounds::{
    too_large, ANSWER_TOO_LARGE, MAX_BACKEND_MESSAGE, MAX_QUEUED_BYTES, SEND_DEADLINE,
};
pub use message::Incoming;
pub use recording::Recording;
pub use socket::BackendSocket;

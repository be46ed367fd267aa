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
//! [`CLIENT_WRITE_TIMEOUT`](super::websocket::CLIENT_WRITE_TIMEOUT) (a client that stopped
//! reading ends its stream then). A move seen while a write waits lets go of the backend's stream
//! at once, and the move itself waits for the write; shutdown or a reload ends the stream, write
//! pending or not (its last bytes are given [`CLOSE_AT_END`](super::websocket::CLOSE_AT_END)).
//! A move has [`MOVE_DEADLINE`](super::websocket::MOVE_DEADLINE) in all, as a WebSocket's, and
//! each backend it asks [`ASK_WITHIN`](stream::ASK_WITHIN) of it, so that a slow backend leaves
//! time for the next.
//!
//! Memory per stream is bounded: one event in the making (at most
//! [`MAX_EVENT_BYTES`](stream::MAX_EVENT_BYTES)) and the keys of the last
//! [`RECENT_EVENTS`](filter::RECENT_EVENTS) events of the unkeyed topics ([`filter`]).

mod filter;
mod stream;

pub use stream::stream_events;

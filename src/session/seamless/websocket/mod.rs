//! WebSocket sessions that outlive their backend (`sessions: seamless` on an execution pool).
//!
//! The gateway terminates the client's WebSocket and opens its own to the backend, so that it can
//! carry the session elsewhere: every client message is judged as on any session (the method
//! policy, the frame and message limits) and goes on under the gateway's request ids
//! ([`SessionState`]). A backend that refuses the upgrade (any status but 101: an `Origin` it does
//! not allow, a path it does not serve) gives the client its answer, as on a `cut` pool, and is
//! blamed for nothing ([`open`]). When the backend is marked down, fails back, or ends the
//! connection, the gateway opens a WebSocket to the next healthy backend and, before anything
//! else reaches the client from it ([`carry_over`]):
//!
//! 1. creates every live subscription again and maps its new id to the one the client holds;
//! 2. checks the new backend's head (its `eth_blockNumber` must be a block it has; else its
//!    latest block is the head) and looks for a reorg across the switch: a block whose logs the
//!    client has and that the new backend does not have under the same hash has its logs taken
//!    back (`removed: true`);
//! 3. fills the gap, block by block up to the new backend's head: the heads the client missed
//!    (`eth_getBlockByNumber`, from where its chain parts from the client's heads if that is
//!    earlier) and the logs (`eth_getLogs` with the subscription's filter), each once; a gap
//!    longer than the pool's `max_gap_blocks` ends the session instead (1011, with the reason),
//!    as does a subscription no backend will create again;
//! 4. sends again the requests in flight that are safe to repeat, and answers the others with an
//!    error saying they were not repeated ([`moving`]).
//!
//! Notifications the new backend sends meanwhile wait (bounded by
//! [`MAX_WAITING_BYTES`](carry_over::MAX_WAITING_BYTES)) and then pass the same rules: nothing
//! the client has goes out twice. Blocks above the new backend's head that the client has logs
//! of are decided later, when a head of the new backend's comes at their number
//! ([`SessionState`]). The decisions are [`super::carry`]'s; this folder makes the calls. With no
//! healthy backend left the session closes (1012, service restart), as a cut one would.
//!
//! No wait on a peer holds the loop that watches the backend (mark-down, fail-back, reload,
//! shutdown; [`relay`]): messages for the backend are queued on the gateway's own socket to it
//! ([`super::backend`]), which moves the session when the backend takes none of them for
//! [`SEND_DEADLINE`](super::backend::SEND_DEADLINE), and a write to the client runs against the
//! watch ([`client`]): a mark-down meanwhile lets go of the backend at once (the session moves
//! once the write is done). A move races the watch too ([`moving`]): shutdown or a reload ends
//! the session at once. An answer over [`MAX_BACKEND_MESSAGE`](super::backend::MAX_BACKEND_MESSAGE)
//! fails its request only; a session moves at most [`MAX_MOVES`](serve::MAX_MOVES) times in
//! [`MOVES_WINDOW`](serve::MOVES_WINDOW) ([`serve`]).
//!
//! [`SessionState`]: super::subscriptions::SessionState

mod carry_over;
mod client;
mod moving;
mod open;
mod relay;
mod serve;
mod state;

pub(super) use carry_over::MOVE_DEADLINE;
pub use client::{CLIENT_WRITE_TIMEOUT, CLOSE_AT_END};
pub use serve::serve_websocket;

//! What a seamless WebSocket session carries from one backend to the next: the client's
//! subscriptions (their ids, parameters and how far each got), its requests in flight, and the
//! rules that keep a notification from reaching the client twice. No I/O: the session loop
//! ([`super::websocket`]) feeds it the messages of both sides and carries out what it returns.
//!
//! # Where each part is
//!
//! - [`state`]: the session's state and its bookkeeping of requests in flight and ids;
//! - [`client`]: the rules of what the client may send, and each message of the client's on its
//!   way to the backend;
//! - [`node`]: each message of the backend's on its way to the client;
//! - [`subscription`]: the subscriptions, their ids on both sides, and what a move carries;
//! - [`window`]: the heads and logs already given, what a duplicate or a reorg is judged
//!   against, and the gap fill;
//! - [`log_memory`]: the logs a `logs` subscription delivered, within their bound;
//! - [`unanswered`]: requests their backend did not answer: sent again or answered;
//! - [`budget`]: the bytes the session holds, and its limits;
//! - [`wire`]: the JSON texts the gateway writes itself.
//!
//! Each message is read once, without a tree ([`crate::jsonrpc`]): its `method`, `id` and
//! `params` (for answers `result`, for notifications `params.subscription` and `params.result`)
//! are taken by the key rule the nodes use (any case; the last of two keys wins), the same rule
//! the method policy judges by. Every request goes to the backend under an id of the gateway's
//! own (a number put into the client's bytes in place of its id), so that answers are matched
//! whatever ids the client uses and the gateway's own calls never collide with them; the answer
//! goes back with the client's id put into the node's bytes. Nothing else is written again: the
//! client gets the node's bytes, keys in the node's order. Subscription ids are the first
//! backend's; after a move the new backend's ids are mapped to them both ways (notifications out,
//! `eth_unsubscribe` in). A message without a method is not a request (the node would ignore one
//! shaped like an answer, and its id would wait forever): the gateway answers it with an
//! invalid-request error (-32600) and the node sees nothing of it.
//!
//! Memory is counted in the bytes the state holds ([`SessionState::held_bytes`]) and bounded:
//! - all of it within one budget, [`MAX_SESSION_BYTES`]: the session stops reading the client at
//!   [`MAX_IN_FLIGHT`] requests or past that budget (so it holds at most the budget and one
//!   client message);
//! - the requests in flight, with the client's ids (as the client wrote them) and the requests
//!   kept to send again;
//! - the subscriptions' parameters, kept to create them again: [`MAX_SUBSCRIPTION_BYTES`] and
//!   [`MAX_SUBSCRIPTIONS`] (past either, an `eth_subscribe` is refused);
//! - per `logs` subscription the logs delivered in the last blocks, as the node's bytes, which is
//!   what a duplicate or a reorg across a switch is judged against: at most the pool's gap limit
//!   in blocks, and [`MAX_REMEMBERED_LOG_BYTES`] for the session, the newest block included
//!   (see [`log_memory::LogMemory`] for a block larger than its share);
//! - the heads seen ([`HEADS_SEEN`]), and the notifications the session loop holds during a move
//!   ([`SessionState::set_waiting`]).
//!
//! # The invariant: what the client was given against the backend's chain
//!
//! The session keeps, beside the subscriptions, four records; each rests on what the client
//! was actually given or on blocks a backend sent, never on a backend's claim (an
//! `eth_blockNumber` answer is checked against the blocks before a move uses it,
//! [`super::carry::survey`]):
//!
//! - **the heads given**, per `newHeads` subscription (the last [`HEADS_GIVEN`]): the client's
//!   chain as its heads built it;
//! - **the heads seen** (the last [`HEADS_SEEN`]), from the gateway's own `newHeads`, the
//!   client's, and the blocks a move fetched: the session's record of the backend's chain, each
//!   marked with the move that last saw it;
//! - **the resume point**, per `logs` subscription: the first block whose logs may not all have
//!   reached the client (after a move, never above the new backend's head + 1 where the chains
//!   part);
//! - **the remembered logs**, per `logs` subscription: every log the client holds from a block
//!   on (blocks more than the pool's `max_gap_blocks` below a move's head, or past the byte
//!   bound, are forgotten, and no log of a forgotten block is sent again).
//!
//! Let *the final chain* be the chain of the backend the session is on, as that backend has it
//! after the messages it sent so far have passed (a move included), and *the window* the blocks
//! from `max_gap_blocks` below the highest head the session's backends reached up to the final
//! chain's head (the records reach no further back). Then, after every message and every move:
//!
//! 1. **Heads.** Read as a node's `newHeads` stream, where a head at or below the last replaces
//!    the client's heads from its number on (a reorg report, as a node sends one; never the
//!    same block twice), the heads the client got are strictly increasing with no gap, their
//!    last at or above the final chain's head, and every one of them in the window, up to that
//!    head, is the final chain's block. Heads are promised from the first one the client got.
//! 2. **Logs.** Counting a `removed: true` as taking away the log it names (and only a log the
//!    client holds), every log of the final chain in the window that matches a subscription's
//!    filter, from the block after the head when the subscription was made, is held by the
//!    client exactly once.
//! 3. **No orphans.** No log the client holds is of a block in the window, at or below the final
//!    chain's head, that the final chain does not have; nor of a block above that head built on
//!    a block of the window, after the subscription's first, that the final chain replaced. (A
//!    block above its head built on one the session never saw as a head is not decided: a head
//!    of the new backend's at its number tells, and the logs of the blocks it orphans go back
//!    then.)
//!
//! `invariant_tests` checks this after every step of generated sessions: reorgs before, at and
//! after a move, backends behind and ahead, quiet filters, wrong `eth_blockNumber` answers.
//!
//! [`MAX_SUBSCRIPTIONS`]: client::MAX_SUBSCRIPTIONS
//! [`MAX_SUBSCRIPTION_BYTES`]: client::MAX_SUBSCRIPTION_BYTES
//! [`MAX_REMEMBERED_LOG_BYTES`]: log_memory::MAX_REMEMBERED_LOG_BYTES
//! [`HEADS_SEEN`]: window::HEADS_SEEN
//! [`HEADS_GIVEN`]: window::HEADS_GIVEN

mod budget;
mod client;
mod log_memory;
mod node;
mod state;
mod subscribing;
mod subscription;
#[cfg(test)]
mod testing;
mod unanswered;
mod window;
mod wire;

pub use budget::{MAX_IN_FLIGHT, MAX_SESSION_BYTES};
pub use client::Outgoing;
pub use state::SessionState;
pub use subscription::{Gap, Topic};
/// The tests of a move write the notifications a node would send.
#[cfg(test)]
pub use wire::notification;
pub use wire::{hex, hex_u64, hex_u64_raw};

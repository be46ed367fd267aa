//! Sessions that outlive their backend (`sessions: seamless`): on a failover or a fail-back the
//! gateway moves the session to the next healthy backend while the client stays connected.
//!
//! The HTTP path hands a session over once it has routed and admitted its request
//! ([`serve_websocket`], [`stream_events`]); what the session needs of that path afterwards (the
//! backend choice and its failure rules, the request and response hooks, the judgement of the
//! client's frames) it asks of its [`Host`](crate::session::Host), never of the proxy itself.
//!
//! - [`events`]: a consensus pool's `/eth/v1/events` stream, read event by event and continued
//!   on the next backend without the events the client has.
//! - [`websocket`]: an execution pool's WebSocket, which the gateway terminates on both sides so
//!   that it can carry the client's subscriptions and requests to another backend;
//!   [`subscriptions`] is what it carries, and [`carry`] the steps of a move, both pure.
//!
//! Both look at their backend every [`watch::WATCH`] ([`watch::Watch`]) and record each move the
//! same way ([`watch::record_move`]).

mod backend;
pub mod carry;
mod events;
#[cfg(test)]
mod invariant_tests;
pub mod subscriptions;
mod watch;
mod websocket;

pub use events::stream_events;
pub use websocket::serve_websocket;

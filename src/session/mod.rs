//! Long-lived sessions: WebSockets and event streams, which outlive the HTTP request that opened
//! them. This floor stands above `limits` and below `proxy`, and never imports `proxy`:
//!
//! - [`relay`]: the WebSocket frame relay of `cut` sessions (Pingora passes the bytes, the relay
//!   judges the client's frames message by message and follows the backend's), and the frame
//!   utilities the seamless sessions write with;
//! - [`Host`]: what a session needs of the HTTP path that opened it (the backend choice with its
//!   passive health and retry rules, the request and response hooks, the judgement of the
//!   client's frames, the routing in force), and [`SessionCtx`], the facts about the request
//!   that both share;
//! - [`seamless`]: the seamless WebSocket and event-stream sessions, with the watch that sees
//!   mark-down, fail-back, reload and shutdown, served through [`Host`].

mod host;
pub mod relay;
pub mod seamless;

pub use host::{open_to_client, routed_pool, Host, SessionCtx};

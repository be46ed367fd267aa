//! The state one request carries through the gateway's hooks, from admission to the access line.

use crate::config::model::Limits;
use crate::jsonrpc::policy::{Single, Slot};
use crate::limits::{held, places};
use crate::session::{relay, SessionCtx};
use crate::upstream::cache::Fill;
use crate::upstream::Traffic;
use bytes::{Bytes, BytesMut};
use std::time::Instant;

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    /// When the request arrived; set when it is to be logged.
    pub(super) started: Option<Instant>,
    /// The whole request body, when it was read before choosing a backend (for error replies).
    pub(super) body: Option<Bytes>,
    /// Every call of the request only reads (execution pools: [`crate::jsonrpc::reads`]; consensus
    /// pools: a `GET`): it may be asked of a second node.
    pub(super) reads_only: bool,
    /// The request, when it is one JSON-RPC call forwarded as the client sent it.
    pub(super) call: Option<Single>,
    /// How to put a rewritten batch's answer back together.
    pub(super) plan: Option<Vec<Slot>>,
    /// The backend's answer to a rewritten batch, gathered to be merged.
    pub(super) answer: Option<BytesMut>,
    /// The answer being gathered for the pool's cache (a cacheable request it did not hold).
    pub(super) fill: Option<Box<Fill>>,
    /// How the cache served the request (`hit`, `miss`, or empty: not cacheable), for the access
    /// line.
    pub(super) cached: &'static str,
    /// Body bytes seen and allowed.
    pub(super) body_seen: usize,
    /// The limits of the routing the request started with.
    pub(super) limits: Limits,
    /// The client's WebSocket frames, judged message by message (execution pools).
    pub(super) ws_frames: Option<relay::ClientFrames>,
    /// The backend's WebSocket frames, followed to know where the gateway may put a close frame.
    pub(super) ws_server: relay::ServerFrames,
    /// This request's part of the listener's held bytes (a body read whole, a WebSocket message,
    /// a seamless session's state).
    pub(super) held: Option<held::Share>,
    /// JSON-RPC methods of the request, for the access log.
    pub(super) rpc_methods: Option<String>,
    /// The pool and backend chosen, and the long-lived session the request may become: what
    /// the sessions share with this path ([`crate::session::Host`]).
    pub(super) session: SessionCtx,
    /// The retry budget of the routing the request started with.
    pub(super) retries: u32,
    /// Backends this request was sent to (bit per backend index).
    pub(super) tried: u64,
    pub(super) attempts: u32,
    /// The attempt the hooks are judging is a hedge ([`super::hedge`]): its failures count
    /// against no node's health.
    pub(super) hedge: bool,
    pub(super) traffic: Traffic,
    /// This request counts against the listener's WebSocket cap.
    pub(super) websocket_place: Option<places::Place>,
    /// This request counts against the listener's in-flight cap, and its client's.
    pub(super) request_place: Option<places::Place>,
    pub(super) client_place: Option<places::Place>,
    pub(super) upstream_start: Option<Instant>,
}

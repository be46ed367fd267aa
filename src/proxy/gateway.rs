//! The gateway of one listener: its routing, its limits and the counters of what it refused,
//! built once when the listener starts.

use crate::config::model::{Auth, Listener};
use crate::limits::{held, places};
use crate::metrics::Metrics;
use crate::upstream::routing::Routing;
use arc_swap::ArcSwap;
use prometheus::IntCounter;
use std::sync::Arc;

/// One listener's gateway: Pingora calls its hooks (`impl ProxyHttp` in `proxy`) for every
/// request the listener takes.
pub struct Gateway {
    /// Position of this listener in the config (its route table).
    pub(super) index: usize,
    pub(super) listener: String,
    pub(super) https: bool,
    pub(super) routing: Arc<ArcSwap<Routing>>,
    pub(super) unrouted: IntCounter,
    pub(super) too_large: IntCounter,
    pub(super) too_long: IntCounter,
    pub(super) too_many_headers: IntCounter,
    pub(super) websocket_too_large: IntCounter,
    pub(super) websocket_protocol: IntCounter,
    /// Request bodies and WebSocket messages held on this listener, and refusals for its limit.
    pub(super) held: Arc<held::HeldBudget>,
    pub(super) held_full: IntCounter,
    /// WebSocket sessions open on this listener, and their cap.
    pub(super) max_websockets: usize,
    pub(super) auth: Option<Auth>,
    /// Requests and WebSocket sessions in flight on this listener, and requests per client.
    pub(super) in_flight: Arc<places::Counts>,
    pub(super) max_requests: usize,
    pub(super) max_requests_per_client: usize,
}

impl Gateway {
    pub fn new(
        index: usize,
        listener: &Listener,
        routing: Arc<ArcSwap<Routing>>,
        metrics: &Metrics,
    ) -> Self {
        Gateway {
            index,
            listener: listener.name.clone(),
            https: listener.tls.is_some(),
            routing,
            unrouted: metrics.unrouted(&listener.name),
            too_large: metrics.refused("body_too_large"),
            too_long: metrics.refused("url_too_long"),
            too_many_headers: metrics.refused("headers_too_large"),
            websocket_too_large: metrics.refused("websocket_message_too_large"),
            websocket_protocol: metrics.refused("websocket_protocol"),
            held: Arc::new(held::HeldBudget::new(metrics.held(&listener.name))),
            held_full: metrics.refused("held_bytes"),
            max_websockets: listener.max_websockets,
            auth: listener.auth.clone(),
            in_flight: Arc::default(),
            max_requests: listener.max_requests,
            max_requests_per_client: listener.max_requests_per_client,
        }
    }
}

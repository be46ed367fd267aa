//! A node's shared state: what it reports, its head and kill channels, and what it has seen and
//! counted, for its handlers and for the [`super::SimNode`] that owns it.

use super::status::{NodeStatus, StatusPatch};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, watch};

/// One request as the node saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub host: Option<String>,
    pub forwarded_for: Option<String>,
    pub forwarded_proto: Option<String>,
    pub probe: bool,
    /// Every header as received.
    pub headers: http::HeaderMap,
}

/// State shared by a node's handlers.
pub struct NodeState {
    pub name: String,
    pub(super) status: Mutex<NodeStatus>,
    pub(super) heads: broadcast::Sender<u64>,
    /// Bumped to end every live WebSocket and SSE session.
    pub(super) kill: watch::Sender<u64>,
    pub(super) seen: Mutex<Vec<SeenRequest>>,
    /// JSON-RPC methods received from clients (not probes), in order.
    pub(super) rpc_methods: Mutex<Vec<String>>,
    pub(super) client_requests: AtomicU64,
    /// Event streams open now.
    pub(super) event_streams: AtomicU64,
    /// Events produced on every stream so far.
    pub(super) events_sent: AtomicU64,
    /// WebSocket connections open now.
    pub(super) ws_open: AtomicU64,
}

impl NodeState {
    pub(super) fn new(name: &str, status: NodeStatus) -> Arc<Self> {
        Arc::new(NodeState {
            name: name.to_string(),
            status: Mutex::new(status),
            heads: broadcast::channel(64).0,
            kill: watch::channel(0).0,
            seen: Mutex::new(Vec::new()),
            rpc_methods: Mutex::new(Vec::new()),
            client_requests: AtomicU64::new(0),
            event_streams: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            ws_open: AtomicU64::new(0),
        })
    }

    pub fn status(&self) -> NodeStatus {
        lock(&self.status).clone()
    }

    /// The wrong `eth_blockNumber` to answer once, if one is set.
    pub(super) fn take_wrong_block_number(&self) -> Option<u64> {
        lock(&self.status).ws_wrong_block_number.take()
    }

    pub(super) fn apply(&self, patch: StatusPatch) {
        let mut s = lock(&self.status);
        if let Some(v) = patch.syncing {
            s.syncing = v;
        }
        if let Some(v) = patch.peers {
            s.peers = v;
        }
        if let Some(v) = patch.head {
            s.head = v;
        }
        if let Some(v) = patch.optimistic {
            s.optimistic = v;
        }
        if let Some(v) = patch.el_offline {
            s.el_offline = v;
        }
        if let Some(v) = patch.fail_status {
            s.fail_status = v;
        }
        if let Some(v) = patch.delay_ms {
            s.delay_ms = v;
        }
        if let Some(v) = patch.client_delay_ms {
            s.client_delay_ms = v;
        }
    }

    pub(super) fn new_head(&self) -> u64 {
        let head = {
            let mut s = lock(&self.status);
            s.head += 1;
            s.head
        };
        // No receiver is fine: nobody subscribed yet.
        let _ = self.heads.send(head);
        head
    }

    pub(super) fn record_rpc(&self, method: &str) {
        lock(&self.rpc_methods).push(method.to_string());
    }
}

/// Locks `m`, going on with what a handler that panicked while holding it left.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

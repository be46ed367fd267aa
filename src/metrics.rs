//! Prometheus metrics of the gateway: a leaf every layer may count into (the admin listener only
//! renders them), in a registry of its own (two gateways in one process, as in
//! tests, do not share counters). Hot-path handles are resolved once per backend, so a request
//! never hashes label values. Beside the counters, the ring of recent [`events`] that every layer
//! records into in the same way.

pub mod events;

use events::Events;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::Arc;

/// Why sessions were cut, as labelled in `ssv_ha_sessions_cut_total`; indexed by
/// `upstream::session::CutReason`, which names each.
pub const CUT_REASONS: [&str; 5] = ["backend_down", "failback", "shutdown", "idle", "removed"];

/// The kinds of `ssv_ha_sessions_open`: WebSocket and SSE sessions of HTTP listeners, and the
/// TCP connections of passthrough listeners.
pub const SESSION_KINDS: [&str; 3] = ["websocket", "sse", "passthrough"];

/// Why a session moved to another backend, as labelled in `ssv_ha_sessions_moved_total`.
pub const MOVE_REASONS: [&str; 3] = ["backend_down", "failback", "backend_ended"];

/// Directions of `ssv_ha_backend_transitions_total`: index 0 down, 1 up.
pub const TRANSITIONS: [&str; 2] = ["down", "up"];

/// Index of passthrough connections in [`BackendMetrics::sessions_open`].
pub const PASSTHROUGH: usize = 2;

/// Status classes counted per backend: index = first digit of the status, 0 for "no response".
pub const STATUS_CLASSES: [&str; 6] = ["error", "1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    upstream_latency: HistogramVec,
    backend_healthy: IntGaugeVec,
    backend_head: IntGaugeVec,
    backend_lag: IntGaugeVec,
    backend_peers: IntGaugeVec,
    backend_backup: IntGaugeVec,
    transitions: IntCounterVec,
    health_checks: IntCounterVec,
    check_duration: HistogramVec,
    sessions_open: IntGaugeVec,
    sessions_cut: IntCounterVec,
    passthrough: IntCounterVec,
    moved: IntCounterVec,
    retries: IntCounterVec,
    unavailable: IntCounterVec,
    unrouted: IntCounterVec,
    held: IntGaugeVec,
    reloads: IntCounterVec,
    active: IntGaugeVec,
    failovers: IntCounterVec,
    max_lag: IntGaugeVec,
    denied: IntCounterVec,
    refused: IntCounterVec,
    /// Recent events, shown by `/status` and the status page; kept across reloads with the rest.
    pub events: Arc<Events>,
}

/// Handles for one backend, resolved at start.
pub struct BackendMetrics {
    pub requests: [IntCounter; 6],
    pub upstream_latency: prometheus::Histogram,
    pub healthy: IntGauge,
    pub head: IntGauge,
    pub lag: IntGauge,
    pub peers: IntGauge,
    /// 1 when the backend is configured as a backup.
    pub backup: IntGauge,
    /// Changes between up and down, by index in [`TRANSITIONS`].
    pub transitions: [IntCounter; 2],
    pub check_duration: prometheus::Histogram,
    pub checks_ok: IntCounter,
    pub checks_failed: IntCounter,
    /// Open sessions: `[websocket, sse, passthrough]` (indexed by [`SESSION_KINDS`]).
    pub sessions_open: [IntGauge; 3],
    /// Connections a passthrough listener spliced to this backend.
    pub passthrough: IntCounter,
    /// Sessions cut, by index in [`CUT_REASONS`].
    pub sessions_cut: [IntCounter; 5],
    /// 1 while this backend is the one its pool sends plain traffic to.
    pub active: IntGauge,
    /// The gateway's recent events (sessions cut).
    pub events: Arc<Events>,
}

/// Handles for one pool.
pub struct PoolMetrics {
    /// Requests (or batch elements) refused by the method policy or batch limit.
    pub denied: IntCounter,
    pub retries: IntCounter,
    pub unavailable: IntCounter,
    pub failovers: IntCounter,
    /// Sessions moved to another backend with the client connected: WebSocket sessions and
    /// event streams (indexed as [`SESSION_KINDS`]), by [`MOVE_REASONS`].
    pub moved: [[IntCounter; 3]; 2],
    /// The gateway's recent events (health transitions, failovers, session moves).
    pub events: Arc<Events>,
    /// The pool's `max_lag`, in blocks or slots.
    pub max_lag: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ssv_ha_requests_total",
                "Requests answered, by pool, backend and status class",
            ),
            &["pool", "backend", "class"],
        )?;
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "ssv_ha_upstream_latency_seconds",
                "Time from choosing a backend to the end of its response",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["pool", "backend"],
        )?;
        let backend_healthy = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_backend_healthy",
                "1 when the backend passes its health rules and gets traffic",
            ),
            &["pool", "backend"],
        )?;
        let backend_head = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_backend_head",
                "Last head seen by the health check: block number (execution) or slot (consensus)",
            ),
            &["pool", "backend"],
        )?;
        let backend_lag = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_backend_lag",
                "Blocks or slots behind the best head of the pool at the last check",
            ),
            &["pool", "backend"],
        )?;
        let backend_peers = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_backend_peers",
                "Peers the node reported at the last check",
            ),
            &["pool", "backend"],
        )?;
        let backend_backup = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_backend_backup",
                "1 when the backend is configured as a backup (used only when no primary is healthy)",
            ),
            &["pool", "backend"],
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "ssv_ha_backend_transitions_total",
                "Times the backend went up or down (its first check's verdict not counted)",
            ),
            &["pool", "backend", "to"],
        )?;
        let check_duration = HistogramVec::new(
            HistogramOpts::new(
                "ssv_ha_health_check_duration_seconds",
                "Time a health check took, DNS included",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["pool", "backend"],
        )?;
        let sessions_open = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_sessions_open",
                "Long-lived sessions open through the gateway, by kind (websocket, sse, passthrough)",
            ),
            &["pool", "backend", "kind"],
        )?;
        let passthrough = IntCounterVec::new(
            Opts::new(
                "ssv_ha_passthrough_connections_total",
                "Connections a passthrough listener spliced to a backend",
            ),
            &["pool", "backend"],
        )?;
        let moved = IntCounterVec::new(
            Opts::new(
                "ssv_ha_sessions_moved_total",
                "Sessions moved to another backend while their client stayed connected",
            ),
            &["pool", "kind", "reason"],
        )?;
        let sessions_cut = IntCounterVec::new(
            Opts::new(
                "ssv_ha_sessions_cut_total",
                "Sessions ended by the gateway, by reason (backend_down, failback, shutdown, idle, removed)",
            ),
            &["pool", "backend", "reason"],
        )?;
        let health_checks = IntCounterVec::new(
            Opts::new(
                "ssv_ha_health_checks_total",
                "Health checks run, by result (ok or failed)",
            ),
            &["pool", "backend", "result"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "ssv_ha_retries_total",
                "Requests sent again to another backend after a failure",
            ),
            &["pool"],
        )?;
        let unavailable = IntCounterVec::new(
            Opts::new(
                "ssv_ha_unavailable_total",
                "Requests answered 503 because no backend of the pool was healthy",
            ),
            &["pool"],
        )?;
        let unrouted = IntCounterVec::new(
            Opts::new(
                "ssv_ha_unrouted_requests_total",
                "Requests refused because no route matched their host",
            ),
            &["listener"],
        )?;
        let held = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_held_bytes",
                "Bytes of request bodies and WebSocket messages a listener holds now, beyond the first 64 KiB of each",
            ),
            &["listener"],
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_pool_active_backend",
                "1 for the backend each pool sends plain traffic to now",
            ),
            &["pool", "backend"],
        )?;
        let failovers = IntCounterVec::new(
            Opts::new(
                "ssv_ha_failovers_total",
                "Times a pool's traffic moved from one backend to another",
            ),
            &["pool"],
        )?;
        let max_lag = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_pool_max_lag",
                "The pool's max_lag: blocks or slots behind its best head that make a backend unhealthy",
            ),
            &["pool"],
        )?;
        let denied = IntCounterVec::new(
            Opts::new(
                "ssv_ha_denied_requests_total",
                "JSON-RPC requests with methods the pool's policy refuses (or too large a batch)",
            ),
            &["pool"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "ssv_ha_refused_requests_total",
                "Requests refused at the door, by reason (body_too_large, url_too_long, headers_too_large)",
            ),
            &["reason"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "ssv_ha_config_reloads_total",
                "Configuration reloads, by result (success, failure)",
            ),
            &["result"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "ssv_ha_build_info",
                "Always 1; the version label tells the build",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Both results show from the start, at 0.
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_latency.clone()),
            Box::new(backend_healthy.clone()),
            Box::new(backend_head.clone()),
            Box::new(backend_lag.clone()),
            Box::new(backend_peers.clone()),
            Box::new(backend_backup.clone()),
            Box::new(transitions.clone()),
            Box::new(health_checks.clone()),
            Box::new(check_duration.clone()),
            Box::new(sessions_open.clone()),
            Box::new(sessions_cut.clone()),
            Box::new(passthrough.clone()),
            Box::new(moved.clone()),
            Box::new(retries.clone()),
            Box::new(unavailable.clone()),
            Box::new(unrouted.clone()),
            Box::new(held.clone()),
            Box::new(reloads.clone()),
            Box::new(active.clone()),
            Box::new(failovers.clone()),
            Box::new(max_lag.clone()),
            Box::new(denied.clone()),
            Box::new(refused.clone()),
            Box::new(build_info),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            requests,
            upstream_latency,
            backend_healthy,
            backend_head,
            backend_lag,
            backend_peers,
            backend_backup,
            transitions,
            health_checks,
            check_duration,
            sessions_open,
            sessions_cut,
            passthrough,
            moved,
            retries,
            unavailable,
            unrouted,
            held,
            reloads,
            active,
            failovers,
            max_lag,
            denied,
            refused,
            events: Arc::new(Events::default()),
        })
    }

    /// Takes a backend that a reload removed out of the exported series, so that it no longer
    /// reads as an unhealthy backend of its pool (an alert on a pool with no healthy backend
    /// would fire for good). Only for a name no backend of the new configuration has: a backend
    /// under the same name holds the same series.
    pub fn forget_backend(&self, pool: &str, backend: &str) {
        // A series never touched is not there to remove: nothing to do.
        for class in STATUS_CLASSES {
            let _ = self.requests.remove_label_values(&[pool, backend, class]);
        }
        for vec in [
            &self.backend_healthy,
            &self.backend_head,
            &self.backend_lag,
            &self.backend_peers,
            &self.backend_backup,
            &self.active,
        ] {
            let _ = vec.remove_label_values(&[pool, backend]);
        }
        for vec in [&self.upstream_latency, &self.check_duration] {
            let _ = vec.remove_label_values(&[pool, backend]);
        }
        let _ = self.passthrough.remove_label_values(&[pool, backend]);
        for to in TRANSITIONS {
            let _ = self.transitions.remove_label_values(&[pool, backend, to]);
        }
        for kind in SESSION_KINDS {
            let _ = self
                .sessions_open
                .remove_label_values(&[pool, backend, kind]);
        }
        for reason in CUT_REASONS {
            let _ = self
                .sessions_cut
                .remove_label_values(&[pool, backend, reason]);
        }
        for result in ["ok", "failed"] {
            let _ = self
                .health_checks
                .remove_label_values(&[pool, backend, result]);
        }
    }

    /// Takes a pool that a reload removed out of the exported series (its backends go with
    /// [`Metrics::forget_backend`]).
    pub fn forget_pool(&self, pool: &str) {
        for vec in [
            &self.retries,
            &self.unavailable,
            &self.failovers,
            &self.denied,
        ] {
            let _ = vec.remove_label_values(&[pool]);
        }
        let _ = self.max_lag.remove_label_values(&[pool]);
        for kind in [SESSION_KINDS[0], SESSION_KINDS[1]] {
            for reason in MOVE_REASONS {
                let _ = self.moved.remove_label_values(&[pool, kind, reason]);
            }
        }
    }

    pub fn backend(&self, pool: &str, backend: &str) -> BackendMetrics {
        let requests =
            STATUS_CLASSES.map(|class| self.requests.with_label_values(&[pool, backend, class]));
        BackendMetrics {
            requests,
            upstream_latency: self.upstream_latency.with_label_values(&[pool, backend]),
            healthy: self.backend_healthy.with_label_values(&[pool, backend]),
            head: self.backend_head.with_label_values(&[pool, backend]),
            lag: self.backend_lag.with_label_values(&[pool, backend]),
            peers: self.backend_peers.with_label_values(&[pool, backend]),
            backup: self.backend_backup.with_label_values(&[pool, backend]),
            transitions: TRANSITIONS
                .map(|to| self.transitions.with_label_values(&[pool, backend, to])),
            check_duration: self.check_duration.with_label_values(&[pool, backend]),
            sessions_open: SESSION_KINDS
                .map(|kind| self.sessions_open.with_label_values(&[pool, backend, kind])),
            passthrough: self.passthrough.with_label_values(&[pool, backend]),
            active: self.active.with_label_values(&[pool, backend]),
            sessions_cut: CUT_REASONS.map(|reason| {
                self.sessions_cut
                    .with_label_values(&[pool, backend, reason])
            }),
            checks_ok: self.health_checks.with_label_values(&[pool, backend, "ok"]),
            checks_failed: self
                .health_checks
                .with_label_values(&[pool, backend, "failed"]),
            events: self.events.clone(),
        }
    }

    pub fn pool(&self, pool: &str) -> PoolMetrics {
        PoolMetrics {
            retries: self.retries.with_label_values(&[pool]),
            unavailable: self.unavailable.with_label_values(&[pool]),
            failovers: self.failovers.with_label_values(&[pool]),
            moved: [SESSION_KINDS[0], SESSION_KINDS[1]]
                .map(|kind| MOVE_REASONS.map(|r| self.moved.with_label_values(&[pool, kind, r]))),
            max_lag: self.max_lag.with_label_values(&[pool]),
            denied: self.denied.with_label_values(&[pool]),
            events: self.events.clone(),
        }
    }

    /// Counts a request refused before routing went further (`body_too_large`, `url_too_long`).
    pub fn refused(&self, reason: &str) -> IntCounter {
        self.refused.with_label_values(&[reason])
    }

    pub fn count_reload(&self, success: bool) {
        self.reloads
            .with_label_values(&[if success { "success" } else { "failure" }])
            .inc();
    }

    pub fn unrouted(&self, listener: &str) -> IntCounter {
        self.unrouted.with_label_values(&[listener])
    }

    /// The gauge of what a listener holds (see `proxy::held`).
    pub fn held(&self, listener: &str) -> IntGauge {
        self.held.with_label_values(&[listener])
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

impl BackendMetrics {
    /// Counts `sessions` cut for the reason at `reason` in [`CUT_REASONS`].
    pub fn count_cut(&self, reason: usize, sessions: u64) {
        if let Some(counter) = self.sessions_cut.get(reason) {
            counter.inc_by(sessions);
        }
    }

    /// Counts a change of the backend's state: to up when `up`, else to down.
    pub fn count_transition(&self, up: bool) {
        self.transitions[usize::from(up)].inc();
    }

    /// Counts one answered request by the class of its status (0 = no response).
    pub fn count_status(&self, status: u16) {
        let class = (status / 100) as usize;
        self.requests[if class < 6 { class } else { 0 }].inc();
    }
}

//! Prometheus metrics of the gateway: a leaf every layer may count into (the admin listener only
//! renders them), in a registry of its own (two gateways in one process, as in
//! tests, do not share counters). Hot-path handles are resolved once per backend, so a request
//! never hashes label values. Beside the counters, the ring of recent [`events`] that every layer
//! records into in the same way.

pub mod events;
mod families;

use events::Events;
use families::register;

use prometheus::{
    Encoder, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
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

/// Winners of a hedged read, as labelled in `ssv_ha_hedge_wins_total`: index 0 the first
/// attempt, 1 a hedge.
pub const HEDGE_WINNERS: [&str; 2] = ["first", "hedge"];

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
    hedges: IntCounterVec,
    hedge_wins: IntCounterVec,
    unavailable: IntCounterVec,
    unrouted: IntCounterVec,
    held: IntGaugeVec,
    reloads: IntCounterVec,
    active: IntGaugeVec,
    failovers: IntCounterVec,
    max_lag: IntGaugeVec,
    denied: IntCounterVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
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
    /// Reads sent to one more backend, and which attempt won them (by [`HEDGE_WINNERS`]).
    pub hedges: IntCounter,
    pub hedge_wins: [IntCounter; 2],
    pub unavailable: IntCounter,
    pub failovers: IntCounter,
    /// Sessions moved to another backend with the client connected: WebSocket sessions and
    /// event streams (indexed as [`SESSION_KINDS`]), by [`MOVE_REASONS`].
    pub moved: [[IntCounter; 3]; 2],
    /// The gateway's recent events (health transitions, failovers, session moves).
    pub events: Arc<Events>,
    /// The pool's `max_lag`, in blocks or slots.
    pub max_lag: IntGauge,
    /// Requests the answer cache answered, and cacheable ones it had no answer for.
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    /// What the answer cache holds now: bytes (keys and overhead included) and entries.
    pub cache_bytes: IntGauge,
    pub cache_entries: IntGauge,
}

impl Metrics {
    /// A registry of its own holding every family of the `families` table, by group.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let build_info: IntGaugeVec = register(&r, &families::BUILD_INFO)?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let reloads: IntCounterVec = register(&r, &families::RELOADS)?;
        // Both results show from the start, at 0.
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        Ok(Metrics {
            requests: register(&r, &families::REQUESTS)?,
            upstream_latency: register(&r, &families::UPSTREAM_LATENCY)?,
            backend_healthy: register(&r, &families::BACKEND_HEALTHY)?,
            backend_head: register(&r, &families::BACKEND_HEAD)?,
            backend_lag: register(&r, &families::BACKEND_LAG)?,
            backend_peers: register(&r, &families::BACKEND_PEERS)?,
            backend_backup: register(&r, &families::BACKEND_BACKUP)?,
            transitions: register(&r, &families::TRANSITIONS)?,
            health_checks: register(&r, &families::HEALTH_CHECKS)?,
            check_duration: register(&r, &families::CHECK_DURATION)?,
            sessions_open: register(&r, &families::SESSIONS_OPEN)?,
            sessions_cut: register(&r, &families::SESSIONS_CUT)?,
            passthrough: register(&r, &families::PASSTHROUGH)?,
            moved: register(&r, &families::MOVED)?,
            retries: register(&r, &families::RETRIES)?,
            hedges: register(&r, &families::HEDGES)?,
            hedge_wins: register(&r, &families::HEDGE_WINS)?,
            unavailable: register(&r, &families::UNAVAILABLE)?,
            active: register(&r, &families::ACTIVE)?,
            failovers: register(&r, &families::FAILOVERS)?,
            max_lag: register(&r, &families::MAX_LAG)?,
            denied: register(&r, &families::DENIED)?,
            cache_hits: register(&r, &families::CACHE_HITS)?,
            cache_misses: register(&r, &families::CACHE_MISSES)?,
            cache_bytes: register(&r, &families::CACHE_BYTES)?,
            cache_entries: register(&r, &families::CACHE_ENTRIES)?,
            unrouted: register(&r, &families::UNROUTED)?,
            held: register(&r, &families::HELD)?,
            refused: register(&r, &families::REFUSED)?,
            reloads,
            registry: r,
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
            &self.hedges,
            &self.unavailable,
            &self.failovers,
            &self.denied,
            &self.cache_hits,
            &self.cache_misses,
        ] {
            let _ = vec.remove_label_values(&[pool]);
        }
        for gauge in [&self.max_lag, &self.cache_bytes, &self.cache_entries] {
            let _ = gauge.remove_label_values(&[pool]);
        }
        for winner in HEDGE_WINNERS {
            let _ = self.hedge_wins.remove_label_values(&[pool, winner]);
        }
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
            hedges: self.hedges.with_label_values(&[pool]),
            hedge_wins: HEDGE_WINNERS.map(|w| self.hedge_wins.with_label_values(&[pool, w])),
            unavailable: self.unavailable.with_label_values(&[pool]),
            failovers: self.failovers.with_label_values(&[pool]),
            moved: [SESSION_KINDS[0], SESSION_KINDS[1]]
                .map(|kind| MOVE_REASONS.map(|r| self.moved.with_label_values(&[pool, kind, r]))),
            max_lag: self.max_lag.with_label_values(&[pool]),
            denied: self.denied.with_label_values(&[pool]),
            cache_hits: self.cache_hits.with_label_values(&[pool]),
            cache_misses: self.cache_misses.with_label_values(&[pool]),
            cache_bytes: self.cache_bytes.with_label_values(&[pool]),
            cache_entries: self.cache_entries.with_label_values(&[pool]),
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

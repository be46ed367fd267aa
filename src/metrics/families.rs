//! The table of the gateway's metric families: each one's name, help text and label names (and a
//! histogram's buckets), grouped by what they are about. [`Metrics::new`](super::Metrics::new)
//! registers one vector per entry; the README's metrics table is held against what they export
//! (`tests/metrics.rs`).
//!
//! The kind of each family is the type of the `Metrics` field it fills: a [`Family`] makes a
//! counter or gauge vector, a [`Histogram`] a histogram vector, and a mismatch does not compile.

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// A counter or gauge family.
pub(super) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// A histogram family: its name, help and labels, and its bucket bounds in seconds.
pub(super) struct Histogram {
    pub family: Family,
    pub buckets: &'static [f64],
}

/// A labelled metric vector made from its table entry.
pub(super) trait FromTable: Collector + Clone + Sized + 'static {
    /// The kind of table entry it is made from.
    type Entry;
    /// The vector `entry` describes, not yet registered.
    fn from_table(entry: &Self::Entry) -> prometheus::Result<Self>;
}

impl FromTable for IntCounterVec {
    type Entry = Family;
    fn from_table(f: &Family) -> prometheus::Result<Self> {
        IntCounterVec::new(Opts::new(f.name, f.help), f.labels)
    }
}

impl FromTable for IntGaugeVec {
    type Entry = Family;
    fn from_table(f: &Family) -> prometheus::Result<Self> {
        IntGaugeVec::new(Opts::new(f.name, f.help), f.labels)
    }
}

impl FromTable for HistogramVec {
    type Entry = Histogram;
    fn from_table(h: &Histogram) -> prometheus::Result<Self> {
        let opts = HistogramOpts::new(h.family.name, h.family.help).buckets(h.buckets.to_vec());
        HistogramVec::new(opts, h.family.labels)
    }
}

/// Makes the vector of `entry` and registers it in `registry`.
pub(super) fn register<T: FromTable>(
    registry: &Registry,
    entry: &T::Entry,
) -> prometheus::Result<T> {
    let vector = T::from_table(entry)?;
    registry.register(Box::new(vector.clone()))?;
    Ok(vector)
}

// Backend traffic: what the proxy counts per backend.

pub(super) const REQUESTS: Family = Family {
    name: "ssv_ha_requests_total",
    help: "Requests answered, by pool, backend and status class",
    labels: &["pool", "backend", "class"],
};

pub(super) const UPSTREAM_LATENCY: Histogram = Histogram {
    family: Family {
        name: "ssv_ha_upstream_latency_seconds",
        help: "Time from choosing a backend to the end of its response",
        labels: &["pool", "backend"],
    },
    buckets: &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
};

// Backend health: what the health checks saw and decided.

pub(super) const BACKEND_HEALTHY: Family = Family {
    name: "ssv_ha_backend_healthy",
    help: "1 when the backend passes its health rules and gets traffic",
    labels: &["pool", "backend"],
};

pub(super) const BACKEND_HEAD: Family = Family {
    name: "ssv_ha_backend_head",
    help: "Last head seen by the health check: block number (execution) or slot (consensus)",
    labels: &["pool", "backend"],
};

pub(super) const BACKEND_LAG: Family = Family {
    name: "ssv_ha_backend_lag",
    help: "Blocks or slots behind the best head of the pool at the last check",
    labels: &["pool", "backend"],
};

pub(super) const BACKEND_PEERS: Family = Family {
    name: "ssv_ha_backend_peers",
    help: "Peers the node reported at the last check",
    labels: &["pool", "backend"],
};

pub(super) const BACKEND_BACKUP: Family = Family {
    name: "ssv_ha_backend_backup",
    help: "1 when the backend is configured as a backup (used only when no primary is healthy)",
    labels: &["pool", "backend"],
};

pub(super) const TRANSITIONS: Family = Family {
    name: "ssv_ha_backend_transitions_total",
    help: "Times the backend went up or down (its first check's verdict not counted)",
    labels: &["pool", "backend", "to"],
};

pub(super) const HEALTH_CHECKS: Family = Family {
    name: "ssv_ha_health_checks_total",
    help: "Health checks run, by result (ok or failed)",
    labels: &["pool", "backend", "result"],
};

pub(super) const CHECK_DURATION: Histogram = Histogram {
    family: Family {
        name: "ssv_ha_health_check_duration_seconds",
        help: "Time a health check took, DNS included",
        labels: &["pool", "backend"],
    },
    buckets: &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ],
};

// Long-lived sessions: open, cut, spliced and moved.

pub(super) const SESSIONS_OPEN: Family = Family {
    name: "ssv_ha_sessions_open",
    help: "Long-lived sessions open through the gateway, by kind (websocket, sse, passthrough)",
    labels: &["pool", "backend", "kind"],
};

pub(super) const SESSIONS_CUT: Family = Family {
    name: "ssv_ha_sessions_cut_total",
    help:
        "Sessions ended by the gateway, by reason (backend_down, failback, shutdown, idle, removed)",
    labels: &["pool", "backend", "reason"],
};

pub(super) const PASSTHROUGH: Family = Family {
    name: "ssv_ha_passthrough_connections_total",
    help: "Connections a passthrough listener spliced to a backend",
    labels: &["pool", "backend"],
};

pub(super) const MOVED: Family = Family {
    name: "ssv_ha_sessions_moved_total",
    help: "Sessions moved to another backend while their client stayed connected",
    labels: &["pool", "kind", "reason"],
};

// Pools: retries, the backend in use, failovers and what their policy refused.

pub(super) const RETRIES: Family = Family {
    name: "ssv_ha_retries_total",
    help: "Requests sent again to another backend after a failure",
    labels: &["pool"],
};

pub(super) const HEDGES: Family = Family {
    name: "ssv_ha_hedges_total",
    help: "Reads sent to one more backend because those asked had not answered within the pool's hedge delay",
    labels: &["pool"],
};

pub(super) const HEDGE_WINS: Family = Family {
    name: "ssv_ha_hedge_wins_total",
    help: "Hedged reads by the attempt whose answer the client got (first, hedge)",
    labels: &["pool", "winner"],
};

pub(super) const UNAVAILABLE: Family = Family {
    name: "ssv_ha_unavailable_total",
    help: "Requests answered 503 because no backend of the pool was healthy",
    labels: &["pool"],
};

pub(super) const ACTIVE: Family = Family {
    name: "ssv_ha_pool_active_backend",
    help: "1 for the backend each pool sends plain traffic to now",
    labels: &["pool", "backend"],
};

pub(super) const FAILOVERS: Family = Family {
    name: "ssv_ha_failovers_total",
    help: "Times a pool's traffic moved from one backend to another",
    labels: &["pool"],
};

pub(super) const MAX_LAG: Family = Family {
    name: "ssv_ha_pool_max_lag",
    help: "The pool's max_lag: blocks or slots behind its best head that make a backend unhealthy",
    labels: &["pool"],
};

pub(super) const DENIED: Family = Family {
    name: "ssv_ha_denied_requests_total",
    help: "JSON-RPC requests with methods the pool's policy refuses (or too large a batch)",
    labels: &["pool"],
};

// The answer cache of each pool (answers that cannot change).

pub(super) const CACHE_HITS: Family = Family {
    name: "ssv_ha_cache_hits_total",
    help: "Requests answered from the pool's cache, without a backend",
    labels: &["pool"],
};

pub(super) const CACHE_MISSES: Family = Family {
    name: "ssv_ha_cache_misses_total",
    help: "Cacheable requests the pool's cache had no answer for (sent to a backend)",
    labels: &["pool"],
};

pub(super) const CACHE_BYTES: Family = Family {
    name: "ssv_ha_cache_bytes",
    help: "Bytes the pool's cache holds now: answers, keys and a fixed overhead per entry",
    labels: &["pool"],
};

pub(super) const CACHE_ENTRIES: Family = Family {
    name: "ssv_ha_cache_entries",
    help: "Answers the pool's cache holds now",
    labels: &["pool"],
};

// Listeners: what was refused before reaching a pool, and what is held.

pub(super) const UNROUTED: Family = Family {
    name: "ssv_ha_unrouted_requests_total",
    help: "Requests refused because no route matched their host",
    labels: &["listener"],
};

pub(super) const HELD: Family = Family {
    name: "ssv_ha_held_bytes",
    help: "Bytes of request bodies and WebSocket messages a listener holds now, beyond the first 64 KiB of each",
    labels: &["listener"],
};

pub(super) const REFUSED: Family = Family {
    name: "ssv_ha_refused_requests_total",
    help:
        "Requests refused at the door, by reason (body_too_large, url_too_long, headers_too_large)",
    labels: &["reason"],
};

// The gateway itself.

pub(super) const RELOADS: Family = Family {
    name: "ssv_ha_config_reloads_total",
    help: "Configuration reloads, by result (success, failure)",
    labels: &["result"],
};

pub(super) const BUILD_INFO: Family = Family {
    name: "ssv_ha_build_info",
    help: "Always 1; the version label tells the build",
    labels: &["version"],
};

//! A pool of backends of one kind, with its selection policy and health rules.

use super::cache::{AnswerCache, CacheMetrics};
use super::selection::{self, Candidate};
use super::session::CutReason;
use super::{Backend, Traffic};
use crate::config::model::{self, Policy};
use crate::health::check::HealthObserver;
use crate::health::hysteresis::Transition;
use crate::metrics::events::EventKind;
use crate::metrics::PoolMetrics;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct Pool {
    /// The pool's settings as configured (its `backends` are also in [`Pool::backends`]).
    pub config: model::PoolConfig,
    pub backends: Vec<Arc<Backend>>,
    cursor: AtomicUsize,
    /// The backend last seen as [`Pool::active`] (`NONE` for none, `UNSEEN` before the first
    /// look), to count failovers.
    last_active: AtomicUsize,
    /// Held while a failure on live traffic is judged against the rest of the pool, so two
    /// failing at once cannot each see the other as the spare.
    passive: Mutex<()>,
    /// Set at shutdown: sessions the gateway follows itself (seamless event streams) end.
    closing: AtomicBool,
    /// Answers that cannot change (`cache:`); `None` when it is off. A reload that rebuilds the
    /// pool starts it empty.
    pub cache: Option<AnswerCache>,
    pub metrics: PoolMetrics,
}

const NONE: usize = usize::MAX;
/// [`Pool::note_active`] has not looked yet: the first active backend of a pool (at start, or
/// of a pool a reload rebuilt) is no failover.
const UNSEEN: usize = usize::MAX - 1;

impl Pool {
    pub fn new(
        config: model::PoolConfig,
        backends: Vec<Arc<Backend>>,
        metrics: PoolMetrics,
    ) -> Self {
        metrics
            .max_lag
            .set(i64::try_from(config.max_lag).unwrap_or(i64::MAX));
        let cache = config.cache.map(|c| {
            let m = &metrics;
            let counted = CacheMetrics {
                hits: m.cache_hits.clone(),
                misses: m.cache_misses.clone(),
                bytes: m.cache_bytes.clone(),
                entries: m.cache_entries.clone(),
            };
            AnswerCache::new(c.max_bytes, counted)
        });
        Pool {
            cache,
            config,
            backends,
            cursor: AtomicUsize::new(0),
            last_active: AtomicUsize::new(UNSEEN),
            passive: Mutex::new(()),
            closing: AtomicBool::new(false),
            metrics,
        }
    }

    /// Counts a failure on live traffic against backend `index` as one failed check, unless it
    /// is the pool's last healthy backend: a request that times out or draws an error page from
    /// every node (an expensive call, a body the node's proxy refuses) says more about the request
    /// than about the nodes, and only health checks may take the last one out. `false` when the
    /// failure was not counted for that reason.
    pub fn count_live_failure(&self, index: usize, reason: &str) -> bool {
        let Some(backend) = self.backends.get(index) else {
            return false;
        };
        let _judging = self.passive.lock().unwrap_or_else(|e| e.into_inner());
        let spare = self.backends.iter().any(|b| b.index != index && b.is_up());
        if spare || !backend.is_up() {
            let transition = backend.fail_on_traffic(reason, false);
            self.after_live_failure(backend, transition);
            return true;
        }
        false
    }

    /// Takes backend `index` out of rotation at once after a connection for `traffic` was refused
    /// or could not complete. Only health checks bring it back. A refusing `ws_url` that is not
    /// the checked `url` says nothing of the node the checks judge: the attempt fails, the node
    /// stays (its other sessions with it).
    pub fn take_out(&self, index: usize, traffic: Traffic, reason: &str) {
        if let Some(backend) = self.backends.get(index) {
            if !backend.checked(traffic) {
                return;
            }
            let transition = backend.fail_on_traffic(reason, true);
            self.after_live_failure(backend, transition);
        }
    }

    /// A failure on live traffic that took a backend down is logged and acted on like a failed
    /// check's (the health checks' [`HealthObserver`] does that for theirs).
    fn after_live_failure(&self, backend: &Backend, transition: Option<Transition>) {
        if transition == Some(Transition::Down) {
            let reason = backend.verdict_summary();
            crate::health::log_transition(self.name(), backend.name(), false, &reason);
            self.record_transition(backend, false, reason);
            backend.cut_sessions(CutReason::BackendDown);
        }
        self.note_active();
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The network the pool's traffic is on now, as the cache key names it: that of its healthy
    /// backends (the health rules keep them on one network). `None` when none is up.
    pub fn network(&self) -> Option<Arc<str>> {
        self.backends
            .iter()
            .filter(|b| b.is_up())
            .find_map(|b| b.standing())
            .map(|s| s.network.clone())
    }

    /// Records a backend's health transition in the recent events, with the reason its log line
    /// carries.
    fn record_transition(&self, backend: &Backend, up: bool, reason: String) {
        let kind = if up {
            EventKind::BackendUp
        } else {
            EventKind::BackendDown
        };
        self.metrics
            .events
            .record(kind, Some(self.name()), Some(backend.name()), reason);
    }

    /// Records that a session of `kind` (`sse`, `websocket`) moved from backend `from` to `to`
    /// with its client connected, because of `reason` (a label of `metrics::MOVE_REASONS`), in
    /// the recent events. Counting and logging the move stay with the caller.
    pub fn record_move(&self, kind: &str, from: Option<&str>, to: &str, reason: &str) {
        self.metrics
            .events
            .record_move(self.name(), kind, from, to, reason);
    }

    /// Ends the pool's long-lived sessions for shutdown: those proxied are cut, those the gateway
    /// follows itself see [`Pool::is_closing`] and end.
    pub fn close_sessions(&self) {
        self.closing.store(true, Ordering::Release);
        for backend in &self.backends {
            backend.cut_sessions(CutReason::Shutdown);
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Picks the backend for the next attempt of a request that already tried `tried`.
    pub fn select(&self, tried: u64) -> Option<usize> {
        let cursor = match self.config.policy {
            Policy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed),
            Policy::First => 0,
        };
        selection::select(
            self.config.policy,
            |i| self.candidate(i),
            self.backends.len(),
            tried,
            cursor,
        )
    }

    /// One more backend for a request already sent to `tried` and still waiting on them (a
    /// hedge): picked from where the rotation stands, without moving it. A hedge that moved it
    /// would leave the rotation where the slow backend comes first again, every time.
    pub fn select_beside(&self, tried: u64) -> Option<usize> {
        selection::select(
            self.config.policy,
            |i| self.candidate(i),
            self.backends.len(),
            tried,
            self.cursor.load(Ordering::Relaxed),
        )
    }

    /// Whether another attempt would find a backend, without moving the round-robin cursor.
    pub fn has_untried(&self, tried: u64) -> bool {
        selection::select(
            self.config.policy,
            |i| self.candidate(i),
            self.backends.len(),
            tried,
            0,
        )
        .is_some()
    }

    /// The backend plain traffic goes to now: the first healthy one in order (under
    /// `round_robin`, one of several). `None` when no backend is up.
    pub fn active(&self) -> Option<usize> {
        selection::select(
            Policy::First,
            |i| self.candidate(i),
            self.backends.len(),
            0,
            0,
        )
    }

    /// Publishes which backend is active now, after a health change; counts a failover when the
    /// traffic moved from one backend to another.
    pub fn note_active(&self) {
        let now = self.active().unwrap_or(NONE);
        let before = self.last_active.swap(now, Ordering::AcqRel);
        let first_look = before == UNSEEN;
        let before = if first_look { NONE } else { before };
        if before == now {
            return;
        }
        if before != NONE && now != NONE {
            self.metrics.failovers.inc();
        }
        // Every backend's gauge, not only the two named: a pool a reload rebuilt starts with no
        // `before`, and the backend active until then may be another one.
        for (i, backend) in self.backends.iter().enumerate() {
            backend.metrics.active.set(i64::from(i == now));
        }
        let name = |i: usize| {
            if i == NONE {
                "none"
            } else {
                self.backends[i].name()
            }
        };
        tracing::info!(pool = %self.name(), from = name(before), to = name(now), "active backend changed");
        if !first_look {
            self.metrics.events.record(
                EventKind::Failover,
                Some(self.name()),
                (now != NONE).then(|| name(now)),
                self.failover_reason(before, now),
            );
        }
    }

    /// Why traffic moved from backend `from` to `to` (either may be `NONE`), in one line.
    fn failover_reason(&self, from: usize, to: usize) -> String {
        let name = |i: usize| self.backends[i].name();
        let why_down = |i: usize| self.backends[i].verdict_summary();
        match (from, to) {
            (NONE, NONE) => "no healthy backend".to_string(),
            (NONE, to) => format!("none -> {}: {} is healthy again", name(to), name(to)),
            (from, NONE) => format!(
                "{} -> none: {} is down ({}) and no other backend is healthy; requests are answered 503",
                name(from),
                name(from),
                why_down(from)
            ),
            (from, to) if !self.backends[from].is_up() => format!(
                "{} -> {}: {} is down ({})",
                name(from),
                name(to),
                name(from),
                why_down(from)
            ),
            (from, to) => format!(
                "{} -> {}: {} is healthy again and ranks first",
                name(from),
                name(to),
                name(to)
            ),
        }
    }

    /// Preference order under `first`: primaries in config order, then backups in config order.
    pub fn rank(&self, i: usize) -> usize {
        if self.backends[i].config.backup {
            self.backends.len() + i
        } else {
            i
        }
    }

    fn candidate(&self, i: usize) -> Candidate {
        let b = &self.backends[i];
        Candidate {
            healthy: b.is_up(),
            backup: b.config.backup,
        }
    }
}

/// Acts on the health transitions of a pool's backends, as told by its health checks: a backend
/// that went down has its sessions cut (haproxy's `on-marked-down shutdown-sessions`); one that
/// recovered takes its sessions back after the pool's `failback` delay.
pub struct PoolHealth(pub Arc<Pool>);

impl HealthObserver for PoolHealth {
    fn health_changed(&self, node: &str, healthy: bool) {
        let pool = &self.0;
        let Some(backend) = pool.backends.iter().find(|b| b.name() == node) else {
            return;
        };
        pool.record_transition(backend, healthy, backend.verdict_summary());
        if !healthy {
            backend.cut_sessions(CutReason::BackendDown);
            return;
        }
        // A first check that passes displaces no session, so it schedules no fail-back.
        let recovered = backend.record().was_down;
        if let (Some(delay), true) = (pool.config.failback, recovered) {
            schedule_failback(pool.clone(), backend.index, delay);
        }
    }
}

/// With policy `first`, once a backend that came up is still the pool's first choice after
/// `delay`, the sessions on every backend ranked below it are cut so that they reconnect to it
/// (the cheap local primary carries the load again). Plain requests moved back at once.
fn schedule_failback(pool: Arc<Pool>, index: usize, delay: std::time::Duration) {
    if pool.config.policy != Policy::First {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if pool.active() != Some(index) {
            return;
        }
        let rank = pool.rank(index);
        for other in pool.backends.iter().filter(|b| pool.rank(b.index) > rank) {
            other.cut_sessions(CutReason::FailBack);
        }
    });
}

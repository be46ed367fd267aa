//! A pool of backends of one kind, with its selection policy and health rules.

use super::selection::{self, Candidate};
use super::Backend;
use crate::admin::metrics::PoolMetrics;
use crate::config::model::{HealthSettings, Policy, PoolKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Pool {
    pub name: String,
    pub kind: PoolKind,
    pub policy: Policy,
    pub min_peers: u64,
    pub health: HealthSettings,
    pub backends: Vec<Arc<Backend>>,
    cursor: AtomicUsize,
    pub metrics: PoolMetrics,
}

impl Pool {
    pub fn new(
        config: &crate::config::model::Pool,
        backends: Vec<Arc<Backend>>,
        metrics: PoolMetrics,
    ) -> Self {
        Pool {
            name: config.name.clone(),
            kind: config.kind,
            policy: config.policy,
            min_peers: config.min_peers,
            health: config.health,
            backends,
            cursor: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Picks the backend for the next attempt of a request that already tried `tried`.
    pub fn select(&self, tried: u64) -> Option<usize> {
        let cursor = match self.policy {
            Policy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed),
            Policy::First => 0,
        };
        selection::select(
            self.policy,
            |i| self.candidate(i),
            self.backends.len(),
            tried,
            cursor,
        )
    }

    /// Whether another attempt would find a backend, without moving the round-robin cursor.
    pub fn has_untried(&self, tried: u64) -> bool {
        selection::select(
            self.policy,
            |i| self.candidate(i),
            self.backends.len(),
            tried,
            0,
        )
        .is_some()
    }

    /// The backend that plain traffic goes to now under `first`; for `round_robin`, the first
    /// healthy one. `None` when no backend is up.
    pub fn active(&self) -> Option<usize> {
        self.has_untried(0)
            .then(|| {
                selection::select(
                    Policy::First,
                    |i| self.candidate(i),
                    self.backends.len(),
                    0,
                    0,
                )
            })
            .flatten()
    }

    fn candidate(&self, i: usize) -> Candidate {
        let b = &self.backends[i];
        Candidate {
            healthy: b.is_up(),
            backup: b.config.backup,
        }
    }
}

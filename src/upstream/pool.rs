//! A pool of backends of one kind, with its selection policy and health rules.

use super::selection::{self, Candidate};
use super::Backend;
use crate::admin::metrics::PoolMetrics;
use crate::config::model::{self, Policy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Pool {
    /// The pool's settings as configured (its `backends` are also in [`Pool::backends`]).
    pub config: model::Pool,
    pub backends: Vec<Arc<Backend>>,
    cursor: AtomicUsize,
    pub metrics: PoolMetrics,
}

impl Pool {
    pub fn new(config: model::Pool, backends: Vec<Arc<Backend>>, metrics: PoolMetrics) -> Self {
        Pool {
            config,
            backends,
            cursor: AtomicUsize::new(0),
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
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

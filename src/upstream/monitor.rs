//! Drives every pool's health checks on their interval, through Pingora's `HealthCheck` trait, and
//! publishes each report to its backend.
//!
//! One task per pool. Each round runs all of the pool's checks at once in one round of its
//! [`PoolView`], so a slow node never delays another's verdict and lag and network agreement are
//! judged on one set of observations. Each check first resolves its backend's host name again
//! (haproxy's `resolvers`: a name that does not resolve is a down backend with that reason, not a
//! crash); lookup and probe together are bounded by the probe timeout. A transition is
//! handed to the check's `health_status_change`, which logs it and tells the pool's
//! [`PoolHealth`] (sessions cut, fail-back).

use super::pool::PoolHealth;
use super::{Backend, Pool};
use crate::health::check::{
    no_answer, CheckSettings, NodeSpec, PoolView, Report, Started, Unresolved,
};
use crate::health::hysteresis::Transition;
use crate::health::Facts;
use async_trait::async_trait;
use pingora::lb::Backend as Target;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{oneshot, watch};

/// The pools to check now (the current routing's).
pub type PoolSource = Box<dyn Fn() -> Vec<Arc<Pool>> + Send + Sync>;

/// Runs the checks of the current pools, and starts checking the new pools after every
/// configuration reload.
pub struct Monitor {
    pools: PoolSource,
    reloads: watch::Receiver<u64>,
}

impl Monitor {
    /// `pools`: the pools of the routing in force; `reloads` changes after every reload.
    pub fn new(pools: PoolSource, reloads: watch::Receiver<u64>) -> Self {
        Monitor { pools, reloads }
    }
}

#[async_trait]
impl BackgroundService for Monitor {
    /// Ready once every pool finished its first round: the listeners (which depend on this
    /// service) open only then, so no request meets a pool that has not been checked yet. During
    /// a zero-downtime restart the old process serves meanwhile.
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let mut ready = Some(ready);
        let mut reloads = self.reloads.clone();
        // Dropping the set (at shutdown) stops every check.
        let mut tasks = tokio::task::JoinSet::new();
        let mut running: Vec<(Arc<Pool>, tokio::task::AbortHandle)> = Vec::new();
        loop {
            let pools = (self.pools)();
            while tasks.try_join_next().is_some() {}
            // A pool a reload left as it was keeps its checks running: restarting them at every
            // reload would let reloads faster than a probe stop all checks. Pools that changed or
            // went away stop; new and changed ones start.
            let (kept, gone): (Vec<_>, Vec<_>) = running
                .drain(..)
                .partition(|(pool, _)| pools.iter().any(|p| Arc::ptr_eq(p, pool)));
            for (_, task) in gone {
                task.abort();
            }
            running = kept;
            let mut first_rounds = Vec::new();
            for pool in &pools {
                if running.iter().any(|(p, _)| Arc::ptr_eq(p, pool)) {
                    continue;
                }
                let (done, first_round) = oneshot::channel::<()>();
                first_rounds.push(first_round);
                let task = tasks.spawn(run_pool(pool.clone(), shutdown.clone(), done));
                running.push((pool.clone(), task));
            }
            if let Some(ready) = ready.take() {
                tokio::select! {
                    _ = futures::future::join_all(first_rounds) => ready.notify_ready(),
                    _ = shutdown.changed() => break,
                }
            }
            tokio::select! {
                changed = reloads.changed() => {
                    if changed.is_err() {
                        // No reloads can come any more: just run until shutdown.
                        let _ = shutdown.changed().await;
                        break;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        // Shutting down: plain requests get the grace period, but long-lived sessions end now,
        // so their clients reconnect at once (to another replica, or to the process that took
        // the listeners over).
        for pool in (self.pools)() {
            pool.close_sessions();
        }
    }
}

async fn run_pool(pool: Arc<Pool>, mut shutdown: ShutdownWatch, first_round: oneshot::Sender<()>) {
    let mut first_round = Some(first_round);
    let view = PoolView::for_pool(
        pool.name(),
        pool.config.kind,
        CheckSettings::of_pool(&pool.config),
        Arc::new(PoolHealth(pool.clone())),
    );
    let check = view.check_for_kind();
    let specs: Vec<NodeSpec> = pool.backends.iter().map(|b| spec(b)).collect();
    let names: Vec<&str> = pool.backends.iter().map(|b| b.name()).collect();
    let mut ticker = tokio::time::interval(pool.config.health.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        view.begin_round(&names);
        // Each backend's name lookup and probe run on their own, together bounded by the probe
        // timeout: a slow name delays no other backend. A check's result is in its report (the
        // error text is the same reason).
        let targets = futures::future::join_all(pool.backends.iter().zip(&specs).map(
            |(backend, spec)| async {
                let target = target(&pool, backend, spec).await;
                let _ = check.check(&target).await;
                target
            },
        ))
        .await;
        for (backend, target) in pool.backends.iter().zip(&targets) {
            let Some(report) = view.report(backend.name()) else {
                continue;
            };
            if let Some(transition) = publish(backend, report) {
                check
                    .health_status_change(target, transition == Transition::Up)
                    .await;
            }
        }
        pool.note_active();
        if let Some(done) = first_round.take() {
            // Nobody waiting any more is fine.
            let _ = done.send(());
        }
    }
}

/// What identifies a backend's node to its check.
fn spec(backend: &Backend) -> NodeSpec {
    NodeSpec {
        name: backend.name().to_string(),
        url: backend.config.http.url.clone(),
        ca: backend.config.ca.clone(),
        headers: backend.config.headers.clone(),
    }
}

/// The Pingora backend a check probes: the address the traffic goes to, resolved now (within the
/// probe timeout, which the probe then shares), and the node's spec.
async fn target(pool: &Pool, backend: &Backend, spec: &NodeSpec) -> Target {
    let started = Instant::now();
    // Idle connections of a backend that gets no traffic expire here.
    if let Some(connections) = backend.connections() {
        connections.sweep();
    }
    let timeout = pool.config.health.timeout;
    let resolved = tokio::time::timeout(timeout, backend.resolve())
        .await
        .unwrap_or_else(|_| Err(no_answer(timeout)));
    let mut target = Target {
        addr: pingora::protocols::l4::socket::SocketAddr::Inet(SocketAddr::from((
            Ipv4Addr::UNSPECIFIED,
            backend.config.http.port,
        ))),
        weight: 1,
        ext: Default::default(),
    };
    match resolved {
        Ok(addr) => target.addr = pingora::protocols::l4::socket::SocketAddr::Inet(addr),
        Err(reason) => {
            target.ext.insert(Unresolved(reason));
        }
    }
    target.ext.insert(spec.clone());
    target.ext.insert(Started(started));
    target
}

/// Publishes a check's report to the backend (its metrics, its record, the up flag the request
/// path reads); returns the transition it caused.
fn publish(backend: &Backend, report: Report) -> Option<Transition> {
    let m = &backend.metrics;
    if report.verdict.healthy {
        m.checks_ok.inc();
    } else {
        m.checks_failed.inc();
    }
    m.check_duration.observe(report.latency.as_secs_f64());
    if let Ok(facts) = &report.facts {
        let (head, peers) = match facts {
            Facts::Execution(f) => (f.head, f.peers),
            Facts::Consensus(f) => (f.head_slot, f.peers),
        };
        if let Some(head) = head {
            m.head.set(head as i64);
        }
        if let Some(peers) = peers {
            m.peers.set(peers as i64);
        }
    }
    if let Some(lag) = report.verdict.lag {
        m.lag.set(lag as i64);
    }
    backend.observe(report)
}

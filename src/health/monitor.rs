//! Runs every pool's health checks on their interval and publishes each verdict to its backend.
//!
//! One task per pool. Each round probes all of the pool's backends at once (a slow node never
//! delays another's verdict), then judges them together, because lag and network agreement are
//! pool-wide rules. Host names are resolved again on every round (haproxy's `resolvers`): a name
//! that does not resolve is a down backend with that reason, not a crash.

use super::consensus::NodeConstants;
use super::hysteresis::Transition;
use super::verdict::{judge_pool, Observed, PoolMemory, Rules, Verdict};
use super::{consensus, execution, probe, Facts};
use crate::config::model::{Policy, PoolKind};
use crate::proxy::Routing;
use crate::upstream::session::CutReason;
use crate::upstream::{Backend, Pool};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};
use url::Url;

/// A node to probe, with what is kept between its checks.
pub struct Target {
    pub name: String,
    pub url: Url,
    client: Result<reqwest::Client, String>,
    /// The address the probe's host name stands for (see [`probe::Pin`]).
    pin: probe::Pin,
    constants: Mutex<NodeConstants>,
}

impl Target {
    /// `ca`: extra trusted CA certificates (PEM) for this node; `headers`: sent with every probe.
    pub fn new(
        name: &str,
        url: Url,
        ca: Option<&Path>,
        headers: &[(http::HeaderName, http::HeaderValue)],
    ) -> Self {
        let pin = probe::Pin::default();
        Target {
            name: name.to_string(),
            url,
            client: probe::client(ca, headers, pin.clone()),
            pin,
            constants: Mutex::new(NodeConstants::default()),
        }
    }
}

/// One probe's result and how long it took.
#[derive(Debug, Clone)]
pub struct Observation {
    pub facts: Result<Facts, String>,
    pub latency: Duration,
}

/// Probes one node, the whole probe bounded by `timeout`.
pub async fn observe(
    kind: PoolKind,
    target: &Target,
    rules: &Rules,
    timeout: Duration,
) -> Observation {
    let started = Instant::now();
    let facts = tokio::time::timeout(timeout, probe_facts(kind, target, rules))
        .await
        .unwrap_or_else(|_| Err(no_answer(timeout)));
    Observation {
        facts,
        latency: started.elapsed(),
    }
}

/// Probes a node for what the rules need: peers only when they are checked, the head's age only
/// when it is.
async fn probe_facts(kind: PoolKind, target: &Target, rules: &Rules) -> Result<Facts, String> {
    let client = target.client.as_ref().map_err(Clone::clone)?;
    let want_peers = rules.min_peers > 0;
    match kind {
        PoolKind::Execution => {
            execution::probe(client, &target.url, rules.max_head_age.is_some()).await
        }
        PoolKind::Consensus => {
            let mut constants = target
                .constants
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let facts = consensus::probe(client, &target.url, want_peers, &mut constants).await;
            *target.constants.lock().unwrap_or_else(|e| e.into_inner()) = constants;
            facts
        }
    }
}

fn no_answer(timeout: Duration) -> String {
    format!("no answer within {}", humantime::format_duration(timeout))
}

/// Judges a round of observations of one pool.
pub fn judge(
    kind: PoolKind,
    names: &[&str],
    observations: &[Observation],
    rules: &Rules,
    memory: &mut PoolMemory,
) -> Vec<Verdict> {
    let nodes: Vec<Observed<'_>> = names
        .iter()
        .zip(observations)
        .map(|(name, o)| Observed {
            name,
            facts: &o.facts,
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    judge_pool(kind, &nodes, rules, memory, now)
}

/// The rules of a pool's config.
pub fn rules(pool: &Pool) -> Rules {
    Rules {
        min_peers: pool.config.min_peers,
        max_lag: pool.config.max_lag,
        max_slot_lag: pool.config.max_slot_lag,
        max_head_age: pool.config.max_head_age.map(|d| d.as_secs()),
        expected: pool.config.network.clone(),
    }
}

/// Runs the checks of the pools of the current routing, and starts over with the new pools after
/// every configuration reload.
pub struct Monitor {
    routing: Arc<ArcSwap<Routing>>,
    reloads: watch::Receiver<u64>,
}

impl Monitor {
    pub fn new(routing: Arc<ArcSwap<Routing>>, reloads: watch::Receiver<u64>) -> Self {
        Monitor { routing, reloads }
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
            let routing = self.routing.load_full();
            while tasks.try_join_next().is_some() {}
            // A pool a reload left as it was keeps its checks running: restarting them at every
            // reload would let reloads faster than a probe stop all checks. Pools that changed or
            // went away stop; new and changed ones start.
            let (kept, gone): (Vec<_>, Vec<_>) = running
                .drain(..)
                .partition(|(pool, _)| routing.pools.iter().any(|p| Arc::ptr_eq(p, pool)));
            for (_, task) in gone {
                task.abort();
            }
            running = kept;
            let mut first_rounds = Vec::new();
            for pool in &routing.pools {
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
        for backend in self.routing.load().pools.iter().flat_map(|p| &p.backends) {
            backend.cut_sessions(CutReason::Shutdown);
        }
    }
}

async fn run_pool(pool: Arc<Pool>, mut shutdown: ShutdownWatch, first_round: oneshot::Sender<()>) {
    let mut first_round = Some(first_round);
    let targets: Vec<Target> = pool
        .backends
        .iter()
        .map(|b| {
            Target::new(
                b.name(),
                b.config.http.url.clone(),
                b.config.ca.as_deref(),
                &b.config.headers,
            )
        })
        .collect();
    let names: Vec<&str> = pool.backends.iter().map(|b| b.name()).collect();
    let rules = rules(&pool);
    let mut memory = PoolMemory::default();
    let mut ticker = tokio::time::interval(pool.config.health.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let probes = pool
            .backends
            .iter()
            .zip(&targets)
            .map(|(backend, target)| check(&pool, backend, target));
        let observations = futures::future::join_all(probes).await;
        let verdicts = judge(pool.config.kind, &names, &observations, &rules, &mut memory);
        for ((backend, observation), verdict) in
            pool.backends.iter().zip(observations).zip(verdicts)
        {
            publish(&pool, backend, observation, verdict);
        }
        pool.note_active();
        if let Some(done) = first_round.take() {
            // Nobody waiting any more is fine.
            let _ = done.send(());
        }
    }
}
/// Resolves the backend's names and probes it, all within the probe timeout.
async fn check(pool: &Pool, backend: &Backend, target: &Target) -> Observation {
    let timeout = pool.config.health.timeout;
    let started = Instant::now();
    // Idle connections of a backend that gets no traffic expire here.
    if let Some(connections) = backend.connections() {
        connections.sweep();
    }
    let facts = tokio::time::timeout(timeout, async {
        // Resolved once: the probe goes where the traffic goes.
        let addr = backend.resolve().await?;
        target.pin.store(Some(Arc::new(addr)));
        probe_facts(pool.config.kind, target, &rules(pool)).await
    })
    .await
    .unwrap_or_else(|_| Err(no_answer(timeout)));
    Observation {
        facts,
        latency: started.elapsed(),
    }
}

fn publish(pool: &Arc<Pool>, backend: &Backend, observation: Observation, verdict: Verdict) {
    let m = &backend.metrics;
    if verdict.healthy {
        m.checks_ok.inc();
    } else {
        m.checks_failed.inc();
    }
    m.check_duration.observe(observation.latency.as_secs_f64());
    if let Ok(facts) = &observation.facts {
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
    if let Some(lag) = verdict.lag {
        m.lag.set(lag as i64);
    }

    let health = pool.config.health;
    let mut record = backend.record();
    // A first check that passes displaces no session, so it schedules no fail-back.
    let recovered = record.hysteresis.state() == Some(false);
    let transition = record
        .hysteresis
        .record(verdict.healthy, health.rise, health.fall);
    record.last_check = Some(SystemTime::now());
    record.latency = Some(observation.latency);
    record.facts = observation.facts.ok();
    backend.settle(&mut record, transition, verdict);
    if let (Some(Transition::Up), Some(delay), true) = (transition, pool.config.failback, recovered)
    {
        schedule_failback(pool.clone(), backend.index, delay);
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

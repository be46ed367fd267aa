//! A pool's health as its checks share it: [`PoolView`] keeps each node's latest observation and
//! verdict and what the pool remembers, probes a node and judges it against the others, and
//! answers [`Report`]s. Checks of a round, judged together, are in `round`; what is kept per node
//! between its checks in [`target`](super::target).
//!
//! Imports go one way: the view reads the node specs and settings of [`spec`](super::spec); the
//! Pingora implementors of [`check`](super::check) hold a view.

mod round;

use super::facts::Facts;
use super::spec::{spec_of, ByName, CheckSettings, NodeSpec, Started, Unresolved};
use super::target::{probe_facts, Target};
use super::verdict::{judge_pool, Observed, PoolMemory, Verdict};
use crate::config::model::PoolKind;
use pingora::lb::Backend;
use pingora::{Error, ErrorType};
use round::Round;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// One probe's result and how long it took.
#[derive(Debug, Clone)]
pub struct Observation {
    pub facts: Result<Facts, String>,
    pub latency: Duration,
}

/// A node's last check: what was seen and what was decided.
#[derive(Debug, Clone)]
pub struct Report {
    pub facts: Result<Facts, String>,
    pub latency: Duration,
    pub verdict: Verdict,
}

/// Told of every health transition a check acts on
/// ([`HealthCheck::health_status_change`](pingora::lb::health_check::HealthCheck::health_status_change)).
pub trait HealthObserver: Send + Sync {
    fn health_changed(&self, node: &str, healthy: bool);
}

/// A pool's health as its checks share it. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct PoolView {
    shared: Arc<Shared>,
}

struct Shared {
    kind: PoolKind,
    settings: CheckSettings,
    /// The pool's name in log lines; empty for a view outside the gateway.
    pool: String,
    observer: Option<Arc<dyn HealthObserver>>,
    state: Mutex<State>,
    /// The generation of the last closed round.
    closed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// In the order first seen (the config's, under the gateway's monitor).
    nodes: Vec<Node>,
    memory: PoolMemory,
    round: Option<Round>,
    generations: u64,
}

struct Node {
    name: String,
    target: Arc<Target>,
    /// When its last check started.
    touched: Instant,
    latest: Option<Observation>,
    verdict: Option<Verdict>,
}

/// A node whose checks stopped this long ago no longer counts in the pool's rules (it left the
/// pool).
const FORGET_AFTER: Duration = Duration::from_secs(300);

impl PoolView {
    pub fn new(kind: PoolKind, settings: CheckSettings) -> Self {
        PoolView::with(kind, settings, String::new(), None)
    }

    /// A view for the gateway's pool `pool` (named in log lines), telling `observer` of every
    /// transition.
    pub fn for_pool(
        pool: &str,
        kind: PoolKind,
        settings: CheckSettings,
        observer: Arc<dyn HealthObserver>,
    ) -> Self {
        PoolView::with(kind, settings, pool.to_string(), Some(observer))
    }

    fn with(
        kind: PoolKind,
        settings: CheckSettings,
        pool: String,
        observer: Option<Arc<dyn HealthObserver>>,
    ) -> Self {
        PoolView {
            shared: Arc::new(Shared {
                kind,
                settings,
                pool,
                observer,
                state: Mutex::default(),
                closed: watch::Sender::new(0),
            }),
        }
    }

    /// The kind of the pool, which decides the probe and the check.
    pub(super) fn kind(&self) -> PoolKind {
        self.shared.kind
    }

    pub fn settings(&self) -> &CheckSettings {
        &self.shared.settings
    }

    /// The last check of node `name`: its facts, latency and verdict.
    pub fn report(&self, name: &str) -> Option<Report> {
        let state = self.state();
        let node = state.nodes.iter().find(|n| n.name == name)?;
        let observation = node.latest.as_ref()?;
        Some(Report {
            facts: observation.facts.clone(),
            latency: observation.latency,
            verdict: node.verdict.clone()?,
        })
    }

    /// The reason of the last verdict on node `name`.
    pub fn reason(&self, name: &str) -> Option<String> {
        let state = self.state();
        let node = state.nodes.iter().find(|n| n.name == name)?;
        node.verdict.as_ref().map(Verdict::summary)
    }

    pub(super) async fn check(&self, backend: &Backend) -> pingora::Result<()> {
        let verdict = match spec_of(backend) {
            Ok(spec) => self.probe_and_judge(backend, spec).await,
            Err(reason) => {
                self.leave_round(&backend.addr.to_string());
                Verdict::failed(reason)
            }
        };
        if verdict.healthy {
            Ok(())
        } else {
            Err(Error::explain(
                ErrorType::Custom("unhealthy"),
                verdict.summary(),
            ))
        }
    }

    async fn probe_and_judge(&self, backend: &Backend, spec: NodeSpec) -> Verdict {
        let started = backend
            .ext
            .get::<Started>()
            .map_or_else(Instant::now, |s| s.0);
        let timeout = self.shared.settings.timeout;
        let target = self.target(&spec);
        let facts = match backend.ext.get::<Unresolved>() {
            Some(Unresolved(reason)) => Err(reason.clone()),
            None => {
                let mut url = spec.url.clone();
                match backend.addr.as_inet() {
                    Some(addr) if backend.ext.get::<ByName>().is_none() => {
                        // The probe goes where the traffic goes: the Backend's address, under
                        // the URL's host name (Host header, TLS server name).
                        target.pin.store(Some(Arc::new(*addr)));
                        if url
                            .host_str()
                            .is_some_and(|h| h.parse::<IpAddr>().is_ok() || h.starts_with('['))
                        {
                            let _ = url.set_ip_host(addr.ip());
                        }
                        let _ = url.set_port(Some(addr.port()));
                    }
                    _ => target.pin.store(None),
                }
                let left = timeout.saturating_sub(started.elapsed());
                let rules = &self.shared.settings.rules;
                tokio::time::timeout(left, probe_facts(self.shared.kind, &target, &url, rules))
                    .await
                    .unwrap_or_else(|_| Err(no_answer(timeout)))
            }
        };
        let observation = Observation {
            facts,
            latency: started.elapsed(),
        };
        self.submit(&target, observation).await
    }

    /// The node's probe target, made again when its spec changed; marks the node as checked now.
    fn target(&self, spec: &NodeSpec) -> Arc<Target> {
        let mut state = self.state();
        let now = Instant::now();
        match state.nodes.iter_mut().find(|n| n.name == spec.name) {
            Some(node) => {
                node.touched = now;
                if node.target.spec != *spec {
                    node.target = Arc::new(Target::new(spec.clone()));
                }
                node.target.clone()
            }
            None => {
                // Nodes whose checks stopped (their backends left) are forgotten here.
                state
                    .nodes
                    .retain(|n| now.duration_since(n.touched) < FORGET_AFTER);
                let target = Arc::new(Target::new(spec.clone()));
                state.nodes.push(Node {
                    name: spec.name.clone(),
                    target: target.clone(),
                    touched: now,
                    latest: None,
                    verdict: None,
                });
                target
            }
        }
    }

    /// Judges node `name` against the latest observations of the pool's other nodes. What the
    /// pool agrees on (its network) is not remembered from such a judgement: the nodes seen so far
    /// may be a few of the pool, and the first one checked must not decide for all.
    fn judge_alone(&self, state: &mut State, name: &str) -> Verdict {
        let now = Instant::now();
        state
            .nodes
            .retain(|n| n.name == name || now.duration_since(n.touched) < FORGET_AFTER);
        let mut memory = state.memory.clone();
        let observed: Vec<Observed<'_>> = state
            .nodes
            .iter()
            .filter_map(|n| {
                n.latest.as_ref().map(|o| Observed {
                    name: &n.name,
                    facts: &o.facts,
                })
            })
            .collect();
        let position = observed.iter().position(|o| o.name == name);
        let mut verdicts = self.judge(&observed, &mut memory);
        let verdict = match position {
            Some(i) => verdicts.swap_remove(i),
            None => Verdict::failed("not observed".to_string()),
        };
        if let Some(node) = state.nodes.iter_mut().find(|n| n.name == name) {
            node.verdict = Some(verdict.clone());
        }
        verdict
    }

    fn judge(&self, observed: &[Observed<'_>], memory: &mut PoolMemory) -> Vec<Verdict> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        judge_pool(
            self.shared.kind,
            observed,
            &self.shared.settings.rules,
            memory,
            now,
        )
    }

    pub(super) fn status_changed(&self, backend: &Backend, healthy: bool) {
        let name = match spec_of(backend) {
            Ok(spec) => spec.name,
            Err(_) => backend.addr.to_string(),
        };
        let reason = self.reason(&name).unwrap_or_default();
        super::transition_log::log_transition(&self.shared.pool, &name, healthy, &reason);
        if let Some(observer) = &self.shared.observer {
            observer.health_changed(&name, healthy);
        }
    }

    pub(super) fn summary(&self, backend: &Backend) -> String {
        match spec_of(backend) {
            Ok(spec) if self.shared.pool.is_empty() => format!("{} ({})", spec.name, spec.url),
            Ok(spec) => format!("{}/{} ({})", self.shared.pool, spec.name, spec.url),
            Err(_) => backend.addr.to_string(),
        }
    }

    pub(super) fn threshold(&self, success: bool) -> usize {
        let settings = &self.shared.settings;
        let n = if success {
            settings.rise
        } else {
            settings.fall
        };
        n.max(1) as usize
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the state is still usable.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The verdict stored for node `name`, or a failure when it has none.
fn verdict_of(state: &State, name: &str) -> Verdict {
    state
        .nodes
        .iter()
        .find(|n| n.name == name)
        .and_then(|n| n.verdict.clone())
        .unwrap_or_else(|| Verdict::failed("not judged".to_string()))
}

/// The reason of a probe (or a name lookup) that did not finish in time.
pub fn no_answer(timeout: Duration) -> String {
    format!("no answer within {}", humantime::format_duration(timeout))
}

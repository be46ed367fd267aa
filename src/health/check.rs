//! The Ethereum health checks as Pingora [`HealthCheck`] implementors: [`ExecutionCheck`] and
//! [`ConsensusCheck`].
//!
//! A `check` probes one node and judges it. Two rules need the rest of the pool (lag behind the
//! best head, agreement on the network), so every check of a pool shares one [`PoolView`]: the
//! latest observation of each node and what the pool remembers. Judged alone (as Pingora's own
//! `LoadBalancer` calls it, one backend at a time), a node is judged against the latest
//! observations of the others. A driver that probes the whole pool at once (the gateway's monitor)
//! opens a round first ([`PoolView::begin_round`]): each check of the round then waits until the
//! last one arrives, and all are judged together on one set of observations.
//!
//! What identifies a node travels in the Pingora `Backend`'s `ext` as a [`NodeSpec`]; the
//! `Backend`'s address is where the probe goes (the address the traffic goes to), whatever the
//! URL's host name resolves to. A backend without a `NodeSpec` is probed at `http://{addr}/`.
//!
//! ```no_run
//! use pingora::lb::{selection::RoundRobin, LoadBalancer};
//! use ssv_ha::health::check::{CheckSettings, ExecutionCheck};
//!
//! let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(["127.0.0.1:8545", "127.0.0.1:8546"])?;
//! lb.set_health_check(Box::new(ExecutionCheck::new(CheckSettings::execution())));
//! # Ok::<(), std::io::Error>(())
//! ```

use super::consensus::NodeConstants;
use super::verdict::{judge_pool, Observed, PoolMemory, Rules, Verdict};
use super::{consensus, execution, probe, Facts};
use crate::config::model::{self, ExpectedNetwork, PoolKind};
use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use pingora::{Error, ErrorType};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use url::Url;

/// What identifies a node to its check; carried in a Pingora `Backend`'s `ext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The node's name in logs and reports; unique in its pool.
    pub name: String,
    /// Its API: JSON-RPC over HTTP(S) for an execution node, the beacon REST API for a consensus
    /// node. Its host name is sent (Host header, TLS server name); the `Backend`'s address is
    /// where the probe connects.
    pub url: Url,
    /// A PEM file of extra CA certificates to trust for this node.
    pub ca: Option<PathBuf>,
    /// Sent with every probe (an API key a node's proxy asks for).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl NodeSpec {
    pub fn new(name: impl Into<String>, url: Url) -> Self {
        NodeSpec {
            name: name.into(),
            url,
            ca: None,
            headers: Vec::new(),
        }
    }

    /// The spec of a backend that carries none: its address, over plain HTTP.
    fn of_address(backend: &Backend) -> Result<Self, String> {
        let addr = backend
            .addr
            .as_inet()
            .ok_or_else(|| format!("{} is not an IP address and port", backend.addr))?;
        let url = Url::parse(&format!("http://{addr}/"))
            .map_err(|e| format!("no URL for {addr}: {e}"))?;
        Ok(NodeSpec::new(addr.to_string(), url))
    }
}

/// Put in a `Backend`'s `ext` by a driver that could not find the node's address: the check fails
/// with this reason and probes nothing.
#[derive(Debug, Clone)]
pub struct Unresolved(pub String);

/// Put in a `Backend`'s `ext` by a driver that spent time on the check before calling it (looking
/// the name up): the probe ends by this instant plus the timeout, and its latency counts from it.
#[derive(Debug, Clone, Copy)]
pub struct Started(pub Instant);

/// Put in a `Backend`'s `ext` to probe the URL's host name as the system resolves it (each of its
/// addresses tried in turn), not the `Backend`'s address: for a one-off check of URLs
/// (`ssv-ha probe`), where no traffic goes.
#[derive(Debug, Clone, Copy)]
pub struct ByName;

/// How a pool's nodes are checked.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub rules: Rules,
    /// Longest one probe may take.
    pub timeout: Duration,
    /// Good checks in a row that bring a down node up.
    pub rise: u32,
    /// Bad checks in a row that take an up node down.
    pub fall: u32,
}

impl CheckSettings {
    /// The gateway's defaults for an execution pool.
    pub fn execution() -> Self {
        CheckSettings {
            rules: Rules {
                min_peers: model::DEFAULT_MIN_PEERS,
                max_lag: model::DEFAULT_EXECUTION_MAX_LAG,
                max_slot_lag: model::DEFAULT_MAX_SLOT_LAG,
                max_head_age: Some(model::DEFAULT_MAX_HEAD_AGE.as_secs()),
                expected: ExpectedNetwork::default(),
            },
            timeout: model::DEFAULT_HEALTH_TIMEOUT,
            rise: model::DEFAULT_RISE,
            fall: model::DEFAULT_FALL,
        }
    }

    /// The gateway's defaults for a consensus pool.
    pub fn consensus() -> Self {
        let mut settings = CheckSettings::execution();
        settings.rules.max_lag = model::DEFAULT_CONSENSUS_MAX_LAG;
        settings.rules.max_head_age = None;
        settings
    }

    /// The settings of a configured pool.
    pub fn of_pool(pool: &model::PoolConfig) -> Self {
        CheckSettings {
            rules: Rules {
                min_peers: pool.min_peers,
                max_lag: pool.max_lag,
                max_slot_lag: pool.max_slot_lag,
                max_head_age: pool.max_head_age.map(|d| d.as_secs()),
                expected: pool.network.clone(),
            },
            timeout: pool.health.timeout,
            rise: pool.health.rise,
            fall: pool.health.fall,
        }
    }
}

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

/// Told of every health transition a check acts on ([`HealthCheck::health_status_change`]).
pub trait HealthObserver: Send + Sync {
    fn health_changed(&self, node: &str, healthy: bool);
}

/// The health check of an execution pool (geth, Nethermind, Reth, ...): syncing, peers, head
/// lag behind the pool's best, head age, chain id.
pub struct ExecutionCheck {
    view: PoolView,
}

/// The health check of a consensus pool (Lighthouse, Teku, Lodestar, ...): syncing, optimistic,
/// execution layer offline, peers, slot lag behind the pool's best and the wall clock, genesis.
pub struct ConsensusCheck {
    view: PoolView,
}

impl ExecutionCheck {
    pub fn new(settings: CheckSettings) -> Self {
        ExecutionCheck {
            view: PoolView::new(PoolKind::Execution, settings),
        }
    }

    /// A check on a view its driver keeps (to open rounds and read reports).
    pub fn on(view: PoolView) -> Self {
        ExecutionCheck { view }
    }

    /// The pool state this check shares with the others of its pool.
    pub fn view(&self) -> &PoolView {
        &self.view
    }
}

impl ConsensusCheck {
    pub fn new(settings: CheckSettings) -> Self {
        ConsensusCheck {
            view: PoolView::new(PoolKind::Consensus, settings),
        }
    }

    /// A check on a view its driver keeps (to open rounds and read reports).
    pub fn on(view: PoolView) -> Self {
        ConsensusCheck { view }
    }

    /// The pool state this check shares with the others of its pool.
    pub fn view(&self) -> &PoolView {
        &self.view
    }
}

#[async_trait]
impl HealthCheck for ExecutionCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        self.view.check(target).await
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        self.view.status_changed(target, healthy);
    }

    fn backend_summary(&self, target: &Backend) -> String {
        self.view.summary(target)
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.view.threshold(success)
    }
}

#[async_trait]
impl HealthCheck for ConsensusCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        self.view.check(target).await
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        self.view.status_changed(target, healthy);
    }

    fn backend_summary(&self, target: &Backend) -> String {
        self.view.summary(target)
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.view.threshold(success)
    }
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

/// Checks of a pool that are judged together.
struct Round {
    generation: u64,
    names: Vec<String>,
    pending: HashSet<String>,
}

/// A node whose checks stopped this long ago no longer counts in the pool's rules (it left the
/// pool).
const FORGET_AFTER: Duration = Duration::from_secs(300);

/// How much longer than the probe timeout a check waits for the rest of its round.
const ROUND_GRACE: Duration = Duration::from_secs(1);

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

    /// The check of this pool's kind on this view, for a driver that holds the view.
    pub fn check_for_kind(&self) -> Box<dyn HealthCheck + Send + Sync> {
        match self.shared.kind {
            PoolKind::Execution => Box::new(ExecutionCheck::on(self.clone())),
            PoolKind::Consensus => Box::new(ConsensusCheck::on(self.clone())),
        }
    }

    pub fn settings(&self) -> &CheckSettings {
        &self.shared.settings
    }

    /// Opens a round: the next checks of `names` are judged together, once all have arrived. The
    /// driver must then run every one of them to the end: a check missing from a round holds the
    /// others for the probe timeout and a second, after which each is judged alone. A round still
    /// open is closed first, its nodes judged on what arrived.
    pub fn begin_round(&self, names: &[&str]) {
        let mut state = self.state();
        if let Some(generation) = state.round.as_ref().map(|r| r.generation) {
            self.close_round(&mut state);
            self.shared.closed.send_replace(generation);
        }
        state.generations += 1;
        state.round = Some(Round {
            generation: state.generations,
            names: names.iter().map(|n| n.to_string()).collect(),
            pending: names.iter().map(|n| n.to_string()).collect(),
        });
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

    async fn check(&self, backend: &Backend) -> pingora::Result<()> {
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

    /// Takes node `name` out of the open round (its check could not run), closing the round
    /// when it was the last one awaited.
    fn leave_round(&self, name: &str) {
        let mut state = self.state();
        let Some(round) = state.round.as_mut() else {
            return;
        };
        if round.pending.remove(name) && round.pending.is_empty() {
            let generation = round.generation;
            self.close_round(&mut state);
            self.shared.closed.send_replace(generation);
        }
    }

    /// Records a node's observation and returns its verdict: at once when it is not part of a
    /// round, else once the round is judged.
    async fn submit(&self, target: &Arc<Target>, observation: Observation) -> Verdict {
        let name = target.spec.name.as_str();
        let waiting = {
            let mut state = self.state();
            match state.nodes.iter_mut().find(|n| n.name == name) {
                Some(node) => node.latest = Some(observation),
                // Forgotten while its check ran.
                None => state.nodes.push(Node {
                    name: name.to_string(),
                    target: target.clone(),
                    touched: Instant::now(),
                    latest: Some(observation),
                    verdict: None,
                }),
            }
            let in_round = state.round.as_mut().and_then(|round| {
                let arrived = round.pending.remove(name);
                arrived.then_some((round.generation, round.pending.is_empty()))
            });
            match in_round {
                Some((generation, true)) => {
                    self.close_round(&mut state);
                    self.shared.closed.send_replace(generation);
                    return verdict_of(&state, name);
                }
                Some((generation, false)) => Some((generation, self.shared.closed.subscribe())),
                None => None,
            }
        };
        if let Some((generation, mut closed)) = waiting {
            let wait = closed.wait_for(|closed| *closed >= generation);
            let patience = self.shared.settings.timeout + ROUND_GRACE;
            if let Ok(Ok(_)) = tokio::time::timeout(patience, wait).await {
                return verdict_of(&self.state(), name);
            }
            // The rest of the round never came (its driver stopped): judge this one alone.
            let mut state = self.state();
            if state
                .round
                .as_ref()
                .is_some_and(|r| r.generation == generation)
            {
                state.round = None;
            }
        }
        let mut state = self.state();
        self.judge_alone(&mut state, name)
    }

    /// Judges the round's nodes together and stores each verdict.
    fn close_round(&self, state: &mut State) {
        let Some(round) = state.round.take() else {
            return;
        };
        let verdicts = {
            let State { nodes, memory, .. } = &mut *state;
            let observed: Vec<Observed<'_>> = round
                .names
                .iter()
                .filter_map(|name| nodes.iter().find(|n| &n.name == name))
                .filter_map(|n| {
                    n.latest.as_ref().map(|o| Observed {
                        name: &n.name,
                        facts: &o.facts,
                    })
                })
                .collect();
            let names: Vec<String> = observed.iter().map(|o| o.name.to_string()).collect();
            let verdicts = self.judge(&observed, memory);
            names.into_iter().zip(verdicts).collect::<Vec<_>>()
        };
        for (name, verdict) in verdicts {
            if let Some(node) = state.nodes.iter_mut().find(|n| n.name == name) {
                node.verdict = Some(verdict);
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

    fn status_changed(&self, backend: &Backend, healthy: bool) {
        let name = match spec_of(backend) {
            Ok(spec) => spec.name,
            Err(_) => backend.addr.to_string(),
        };
        let reason = self.reason(&name).unwrap_or_default();
        super::log_transition(&self.shared.pool, &name, healthy, &reason);
        if let Some(observer) = &self.shared.observer {
            observer.health_changed(&name, healthy);
        }
    }

    fn summary(&self, backend: &Backend) -> String {
        match spec_of(backend) {
            Ok(spec) if self.shared.pool.is_empty() => format!("{} ({})", spec.name, spec.url),
            Ok(spec) => format!("{}/{} ({})", self.shared.pool, spec.name, spec.url),
            Err(_) => backend.addr.to_string(),
        }
    }

    fn threshold(&self, success: bool) -> usize {
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

fn spec_of(backend: &Backend) -> Result<NodeSpec, String> {
    match backend.ext.get::<NodeSpec>() {
        Some(spec) => Ok(spec.clone()),
        None => NodeSpec::of_address(backend),
    }
}

fn verdict_of(state: &State, name: &str) -> Verdict {
    state
        .nodes
        .iter()
        .find(|n| n.name == name)
        .and_then(|n| n.verdict.clone())
        .unwrap_or_else(|| Verdict::failed("not judged".to_string()))
}

/// A node to probe, with what is kept between its checks.
struct Target {
    spec: NodeSpec,
    client: Result<reqwest::Client, String>,
    /// The address the probe's host name stands for (see [`probe::Pin`]).
    pin: probe::Pin,
    constants: Mutex<NodeConstants>,
}

impl Target {
    fn new(spec: NodeSpec) -> Self {
        let pin = probe::Pin::default();
        Target {
            client: probe::client(spec.ca.as_deref(), &spec.headers, pin.clone()),
            spec,
            pin,
            constants: Mutex::new(NodeConstants::default()),
        }
    }
}

/// Probes a node for what the rules need: peers only when they are checked, the head's age only
/// when it is.
async fn probe_facts(
    kind: PoolKind,
    target: &Target,
    url: &Url,
    rules: &Rules,
) -> Result<Facts, String> {
    let client = target.client.as_ref().map_err(Clone::clone)?;
    let want_peers = rules.min_peers > 0;
    match kind {
        PoolKind::Execution => execution::probe(client, url, rules.max_head_age.is_some()).await,
        PoolKind::Consensus => {
            let mut constants = target
                .constants
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let facts = consensus::probe(client, url, want_peers, &mut constants).await;
            *target.constants.lock().unwrap_or_else(|e| e.into_inner()) = constants;
            facts
        }
    }
}

/// The reason of a probe (or a name lookup) that did not finish in time.
pub fn no_answer(timeout: Duration) -> String {
    format!("no answer within {}", humantime::format_duration(timeout))
}

//! The Ethereum health checks used as any Pingora user would: through the `HealthCheck` trait,
//! on Pingora `Backend`s, against simulated nodes (healthy, syncing, few peers, lagging, on the
//! wrong network), each verdict checked with its reason.

use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use ssv_ha::config::model::PoolKind;
use ssv_ha::health::check::{
    CheckSettings, ConsensusCheck, ExecutionCheck, HealthObserver, NodeSpec, PoolView, Unresolved,
};
use ssv_ha::health::Facts;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::sync::{Arc, Mutex};
use url::Url;

async fn node(kind: NodeKind, name: &str, change: impl FnOnce(&mut NodeStatus)) -> SimNode {
    let mut status = NodeStatus::default();
    change(&mut status);
    SimNode::start(kind, name, status).await.unwrap()
}

/// The Pingora backend of a simulated node, its spec in `ext` as the gateway puts it there.
fn backend(node: &SimNode) -> Backend {
    let mut backend = Backend::new(&node.addr().to_string()).unwrap();
    let url = Url::parse(&node.url()).unwrap();
    backend.ext.insert(NodeSpec::new(node.name(), url));
    backend
}

fn outcome(result: pingora::Result<()>) -> Result<(), String> {
    result.map_err(|e| e.to_string())
}

fn assert_fails(result: &Result<(), String>, reason: &str) {
    match result {
        Err(e) => assert!(e.contains(reason), "`{e}` does not say `{reason}`"),
        Ok(()) => panic!("passed, expected `{reason}`"),
    }
}

#[tokio::test]
async fn the_execution_check_judges_each_node_through_the_trait() {
    let healthy = node(NodeKind::Execution, "healthy", |_| {}).await;
    let twin = node(NodeKind::Execution, "twin", |_| {}).await;
    let syncing = node(NodeKind::Execution, "syncing", |s| s.syncing = true).await;
    let lonely = node(NodeKind::Execution, "lonely", |s| s.peers = 2).await;
    let lagging = node(NodeKind::Execution, "lagging", |s| s.head = 990).await;
    let foreign = node(NodeKind::Execution, "foreign", |s| s.chain_id = 5).await;
    let mut settings = CheckSettings::execution();
    settings.rules.expected.chain_id = Some(1);
    settings.rise = 3;
    settings.fall = 4;
    let check = ExecutionCheck::new(settings);
    let check: &(dyn HealthCheck + Send + Sync) = &check;
    assert_eq!(check.health_threshold(true), 3);
    assert_eq!(check.health_threshold(false), 4);

    // One backend at a time, as Pingora's own health-check pass calls it: each node is
    // judged against what the pool's checks saw so far.
    let mut results = Vec::new();
    for n in [&healthy, &twin, &syncing, &lonely, &lagging, &foreign] {
        results.push(outcome(check.check(&backend(n)).await));
    }
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Ok(()));
    assert_fails(&results[2], "syncing (eth_syncing is not false)");
    assert_fails(&results[3], "peers 2 < 10");
    assert_fails(&results[4], "10 blocks behind");
    assert_fails(&results[5], "wrong network: chain id 5, expected 1");
    assert!(check
        .backend_summary(&backend(&lagging))
        .starts_with("lagging ("));
}

#[tokio::test]
async fn the_consensus_check_judges_a_round_on_one_set_of_observations() {
    // The healthy nodes answer late: a lagging node judged on its own, before they arrive,
    // would see no better head and pass. In a round it waits for them.
    let slow = |s: &mut NodeStatus| s.delay_ms = 300;
    let healthy = node(NodeKind::Consensus, "healthy", slow).await;
    let twin = node(NodeKind::Consensus, "twin", slow).await;
    let lagging = node(NodeKind::Consensus, "lagging", |s| s.head = 990).await;
    let syncing = node(NodeKind::Consensus, "syncing", |s| s.syncing = true).await;
    let lonely = node(NodeKind::Consensus, "lonely", |s| s.peers = 3).await;
    let foreign = node(NodeKind::Consensus, "foreign", |s| {
        s.genesis_validators_root = format!("0x{:064x}", 7)
    })
    .await;
    let nodes = [&healthy, &twin, &lagging, &syncing, &lonely, &foreign];
    let view = PoolView::new(PoolKind::Consensus, CheckSettings::consensus());
    let check = ConsensusCheck::on(view.clone());
    let backends: Vec<Backend> = nodes.iter().map(|n| backend(n)).collect();
    let names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    view.begin_round(&names);
    let results: Vec<Result<(), String>> =
        futures::future::join_all(backends.iter().map(|b| check.check(b)))
            .await
            .into_iter()
            .map(outcome)
            .collect();
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Ok(()));
    assert_fails(&results[2], "10 slots behind");
    assert_fails(&results[3], "syncing (node/syncing is_syncing is true)");
    assert_fails(&results[4], "peers 3 < 10");
    assert_fails(&results[5], "wrong network");
    let report = view.report("lagging").unwrap();
    assert_eq!(report.verdict.lag, Some(10));
    assert!(matches!(report.facts, Ok(Facts::Consensus(_))));
}

#[tokio::test]
async fn a_node_that_cannot_be_reached_fails_with_the_reason() {
    let view = PoolView::new(PoolKind::Execution, CheckSettings::execution());
    let check = ExecutionCheck::on(view.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    // No spec: probed at its address.
    let closed = Backend::new(&addr.to_string()).unwrap();
    assert_fails(&outcome(check.check(&closed).await), "cannot connect");
    let mut unresolved = Backend::new("127.0.0.1:1").unwrap();
    unresolved
        .ext
        .insert(Unresolved("cannot resolve node.invalid".into()));
    assert_fails(
        &outcome(check.check(&unresolved).await),
        "cannot resolve node.invalid",
    );
}

struct Seen(Mutex<Vec<(String, bool)>>);

impl HealthObserver for Seen {
    fn health_changed(&self, node: &str, healthy: bool) {
        self.0.lock().unwrap().push((node.to_string(), healthy));
    }
}

#[tokio::test]
async fn a_status_change_reaches_the_observer() {
    let seen = Arc::new(Seen(Mutex::default()));
    let view = PoolView::for_pool(
        "el",
        PoolKind::Execution,
        CheckSettings::execution(),
        seen.clone(),
    );
    let check = view.check_for_kind();
    let n = node(NodeKind::Execution, "a", |_| {}).await;
    check.health_status_change(&backend(&n), false).await;
    assert_eq!(*seen.0.lock().unwrap(), vec![("a".to_string(), false)]);
}

#[tokio::test]
async fn checked_one_at_a_time_the_first_node_does_not_decide_the_pools_network() {
    // No expected chain id: the pool's nodes must agree. The one on another chain is checked
    // first, when it is the only node seen.
    let foreign = node(NodeKind::Execution, "foreign", |s| s.chain_id = 5).await;
    let one = node(NodeKind::Execution, "one", |_| {}).await;
    let two = node(NodeKind::Execution, "two", |_| {}).await;
    let check = ExecutionCheck::new(CheckSettings::execution());
    let backends: Vec<Backend> = [&foreign, &one, &two].iter().map(|n| backend(n)).collect();
    let mut last = Vec::new();
    for _pass in 0..2 {
        last.clear();
        for b in &backends {
            last.push(outcome(check.check(b).await));
        }
    }
    assert_fails(&last[0], "wrong network: chain id 5");
    assert_eq!(last[1], Ok(()));
    assert_eq!(last[2], Ok(()));
}

#[tokio::test]
async fn the_probe_goes_to_the_backends_address_under_the_urls_name() {
    let n = node(NodeKind::Execution, "pinned", |_| {}).await;
    // A name no resolver knows and a port nobody listens on: only the Backend's address (the
    // one traffic would go to) reaches the node.
    let mut pinned = Backend::new(&n.addr().to_string()).unwrap();
    let url = Url::parse("http://node.invalid:1/").unwrap();
    pinned.ext.insert(NodeSpec::new("pinned", url));
    let check = ExecutionCheck::new(CheckSettings::execution());
    assert_eq!(outcome(check.check(&pinned).await), Ok(()));
    let seen = n.seen();
    assert!(
        seen.iter()
            .any(|r| r.probe
                && r.host.as_deref() == Some(&format!("node.invalid:{}", n.addr().port()))),
        "the probe names the URL's host: {:?}",
        seen.iter().map(|r| &r.host).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_pingora_load_balancer_checking_in_parallel_takes_out_the_bad_nodes() {
    use pingora::lb::{selection::RoundRobin, LoadBalancer};
    let healthy = node(NodeKind::Execution, "healthy", |_| {}).await;
    let twin = node(NodeKind::Execution, "twin", |_| {}).await;
    let syncing = node(NodeKind::Execution, "syncing", |s| s.syncing = true).await;
    let lagging = node(NodeKind::Execution, "lagging", |s| s.head = 990).await;
    let nodes = [&healthy, &twin, &syncing, &lagging];
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(nodes.iter().map(|n| n.addr())).unwrap();
    let check = ExecutionCheck::new(CheckSettings::execution());
    let view = check.view().clone();
    lb.set_health_check(Box::new(check));
    // Pingora starts every backend healthy and flips one after `fall` (2) failed checks in a
    // row; in the first parallel pass a node may be judged before the others were seen.
    for _ in 0..3 {
        lb.backends().run_health_check(true).await;
    }
    let ready = |n: &SimNode| {
        let b = Backend::new(&n.addr().to_string()).unwrap();
        lb.backends().ready(&b)
    };
    assert!(ready(&healthy) && ready(&twin));
    assert!(!ready(&syncing));
    assert!(
        !ready(&lagging),
        "{:?}",
        view.reason(&lagging.addr().to_string())
    );
    for _ in 0..8 {
        let chosen = lb.select(b"", 256).unwrap().addr.to_string();
        assert!(
            chosen == healthy.addr().to_string() || chosen == twin.addr().to_string(),
            "{chosen}"
        );
    }
}

//! The `examples/lb_health_check.rs` program (a plain Pingora `LoadBalancer` with
//! `ExecutionCheck`) against simulated nodes: the syncing node leaves rotation with its reason,
//! the healthy one is chosen.

#[allow(dead_code)]
#[path = "../examples/lb_health_check.rs"]
mod example;

use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};

#[tokio::test]
async fn the_example_load_balancer_sends_requests_only_to_the_healthy_node() {
    let healthy = SimNode::start(NodeKind::Execution, "healthy", NodeStatus::default())
        .await
        .unwrap();
    let syncing = SimNode::start(
        NodeKind::Execution,
        "syncing",
        NodeStatus {
            syncing: true,
            ..NodeStatus::default()
        },
    )
    .await
    .unwrap();
    let addresses = [healthy.addr().to_string(), syncing.addr().to_string()];
    let outcome = example::run(&addresses).await.unwrap();

    let node = |addr: &str| outcome.nodes.iter().find(|(a, ..)| a == addr).unwrap();
    let (_, up, reason) = node(&addresses[0]);
    assert!(*up, "healthy node: {reason}");
    assert_eq!(reason, "healthy");
    let (_, up, reason) = node(&addresses[1]);
    assert!(!*up, "syncing node stayed in rotation");
    assert!(reason.contains("syncing"), "{reason}");
    assert_eq!(outcome.selected.as_deref(), Some(addresses[0].as_str()));
    assert!(
        healthy.seen().iter().any(|r| r.probe),
        "the check probed the node"
    );
}

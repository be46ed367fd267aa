//! Attacks on the faults and long-lived paths of seamless sessions and passthrough (issue 24,
//! the second attack helper): event streams against odd backends and clients, WebSocket sessions
//! across faults, passthrough edges. Each test shows a defect found, or that one cannot happen.

mod common;

use common::*;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::time::Duration;

/// A gateway in front of two simulated consensus nodes, `cc-a` and its backup `cc-b`, in a
/// `sessions: seamless` pool with `extra` settings, both healthy.
async fn consensus_pair(extra: &str) -> (Pki, SimNode, SimNode, Gateway, SocketAddr) {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Consensus, "cc-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Consensus, "cc-b", NodeStatus::default())
        .await;
    let pools = pool_yaml_with(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        &format!("    sessions: seamless\n{extra}"),
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = config(
        admin,
        listen,
        &pools,
        &format!("  - {{ listener: \"{listen}\", pool: consensus }}\n"),
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    gw.wait_backend("consensus", "cc-b", true).await;
    (pki, a, b, gw, listen)
}

fn sse_moves(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("ssv_ha_sessions_moved_total{") && l.contains("kind=\"sse\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Two backends that greet each stream with a comment line (`: ok`) and then end it, before
/// any event: a comment is not an event delivered, so the client's stream must end as for
/// backends that end at once, not bounce between the two at full speed for good.
#[tokio::test(flavor = "multi_thread")]
async fn backends_that_send_only_a_comment_then_end_do_not_bounce_the_stream_for_good() {
    let (_pki, a, b, gw, listen) = consensus_pair("").await;
    let mut response = reqwest::Client::new()
        .get(format!("http://{listen}/eth/v1/events?topics=head"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    a.new_head();
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first event within 5 s")
        .unwrap();
    assert!(first.is_some());
    a.set(|s| s.sse_comment_then_end = true);
    b.set(|s| s.sse_comment_then_end = true);
    a.drop_sessions();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    let moved = sse_moves(&gw.metrics().await);
    assert!(
        ended.is_ok(),
        "the client's stream still open after 10 s, moved {moved} times"
    );
    assert!(
        moved <= 2.0,
        "the stream moved {moved} times before it ended"
    );
}

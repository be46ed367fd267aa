//! Recent events in `/status`: a primary that starts syncing shows as a failover to the backup
//! with the reason, after its own `backend_down`; the list outlives a reload that rebuilds the
//! pool, and reloads, applied or refused, are listed too.

mod common;

use common::*;
use serde_json::Value;
use ssv_ha::sim::{NodeKind, NodeStatus};
use std::time::Duration;

/// The events of `/status`, newest first, as `(kind, pool, backend, reason)`.
fn events(status: &Value) -> Vec<(String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    status["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array in {status:#}"))
        .iter()
        .map(|e| {
            assert!(
                e["time"]
                    .as_str()
                    .is_some_and(|t| humantime::parse_rfc3339(t).is_ok()),
                "{e}"
            );
            (
                text(&e["kind"]),
                text(&e["pool"]),
                text(&e["backend"]),
                text(&e["reason"]),
            )
        })
        .collect()
}

fn position(
    events: &[(String, String, String, String)],
    kind: &str,
    backend: &str,
    reason_has: &str,
) -> Option<usize> {
    events
        .iter()
        .position(|(k, _, b, r)| k == kind && b == backend && r.contains(reason_has))
}

async fn reload(admin: std::net::SocketAddr) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{admin}/reload"))
        .send()
        .await
        .expect("POST /reload")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_is_listed_with_its_reason_and_outlives_reloads() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let pools = |extra: &str| {
        pool_yaml_with(
            "execution",
            "execution",
            "first",
            &pki.ca_file,
            &[(&a, false), (&b, true)],
            extra,
        )
    };
    let (gw, listen) = start_on(&pools(""), EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    let started = events(&gw.status().await);
    assert!(
        !started.iter().any(|(k, ..)| k == "failover"),
        "the first active backend is no failover: {started:?}"
    );

    a.set(|s| s.syncing = true);
    let listed = wait_for(
        "a failover to ec-b in /status events",
        Duration::from_secs(10),
        || async {
            let listed = events(&gw.status().await);
            position(&listed, "failover", "ec-b", "ec-a -> ec-b").map(|_| listed)
        },
    )
    .await;
    let failover = position(&listed, "failover", "ec-b", "ec-a -> ec-b").unwrap();
    let (_, pool, _, reason) = &listed[failover];
    assert_eq!(pool, "execution");
    assert!(
        reason.contains("ec-a is down (syncing"),
        "the failover says why: {listed:?}"
    );
    let down = position(&listed, "backend_down", "ec-a", "syncing")
        .unwrap_or_else(|| panic!("ec-a's transition is listed: {listed:?}"));
    assert!(failover < down, "newest first: {listed:?}");

    // A refused reload is listed with its error.
    std::fs::write(&gw.config_path, "pools: [").unwrap();
    assert_eq!(reload(gw.admin).await, 422);
    // A reload that changes the pool rebuilds it; the events stay.
    std::fs::write(
        &gw.config_path,
        config(gw.admin, listen, &pools("    min_peers: 5\n"), EC_ROUTE),
    )
    .unwrap();
    assert_eq!(reload(gw.admin).await, 200);
    let listed = events(&gw.status().await);
    let failover = position(&listed, "failover", "ec-b", "ec-a -> ec-b")
        .unwrap_or_else(|| panic!("the failover outlives the reload: {listed:?}"));
    let refused = position(
        &listed,
        "reload_failed",
        "-",
        "configuration not reloaded: ",
    )
    .unwrap_or_else(|| panic!("the refused reload is listed: {listed:?}"));
    let applied = position(&listed, "reload", "-", "configuration reloaded: ")
        .unwrap_or_else(|| panic!("the applied reload is listed: {listed:?}"));
    assert!(
        applied < refused && refused < failover,
        "newest first: {listed:?}"
    );
}

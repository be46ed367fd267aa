//! Health rules, selection policies and failover, through the built gateway.

mod common;

use common::*;
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn first_policy_fails_over_without_client_errors_and_fails_back() {
    let EcPair {
        pki: _pki,
        a,
        b,
        gw,
        listen,
    } = ec_pair("").await;
    let client = reqwest::Client::new();

    for _ in 0..20 {
        assert_eq!(
            who_answers(&client, listen).await,
            (200, Some("ec-a".to_string()))
        );
    }
    assert_eq!(
        b.client_requests(),
        0,
        "the backup gets nothing while the primary is healthy"
    );

    // Kill the primary in the middle of a stream of requests: every request still succeeds.
    let stream = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut answered_by = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(1500) {
                let (status, node, body) = post(
                    &client,
                    &format!("http://{listen}/"),
                    "rpc.example.com",
                    &rpc("eth_blockNumber", 9),
                )
                .await;
                assert_eq!(status, 200, "a client saw an error during failover: {body}");
                assert_eq!(body["id"], 9);
                answered_by.push(node.unwrap_or_default());
            }
            answered_by
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.go_down();
    let answered_by = stream.await.expect("request stream");
    assert!(
        answered_by.iter().any(|n| n == "ec-a")
            && answered_by.last().map(String::as_str) == Some("ec-b"),
        "{answered_by:?}"
    );
    let down = gw.wait_backend("execution", "ec-a", false).await;
    assert!(
        down["reason"].as_str().unwrap().contains("connect"),
        "{down:#}"
    );

    // The primary comes back: traffic returns to it.
    a.come_back().expect("primary listens again");
    gw.wait_backend("execution", "ec-a", true).await;
    assert_eq!(
        who_answers(&client, listen).await,
        (200, Some("ec-a".to_string()))
    );
    let status = gw.status().await;
    assert_eq!(status["pools"][0]["active"], "ec-a");
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_spreads_over_healthy_backends_only() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let c = pki
        .node(
            NodeKind::Execution,
            "ec-c",
            NodeStatus {
                syncing: true,
                ..NodeStatus::default()
            },
        )
        .await;
    let pools = pool_yaml(
        "execution",
        "execution",
        "round_robin",
        &pki.ca_file,
        &[(&a, false), (&b, false), (&c, false)],
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    gw.wait_backend("execution", "ec-c", false).await;
    let client = reqwest::Client::new();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..40 {
        let (status, node) = who_answers(&client, listen).await;
        assert_eq!(status, 200);
        *counts.entry(node.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        counts.get("ec-c"),
        None,
        "a syncing node gets no traffic: {counts:?}"
    );
    assert!(
        counts["ec-a"] >= 10 && counts["ec-b"] >= 10,
        "traffic should be spread: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unhealthy_nodes_get_no_traffic_and_status_says_why() {
    let pki = Pki::new();
    let syncing = pki
        .node(
            NodeKind::Execution,
            "ec-syncing",
            NodeStatus {
                syncing: true,
                ..NodeStatus::default()
            },
        )
        .await;
    let lonely = pki
        .node(
            NodeKind::Execution,
            "ec-lonely",
            NodeStatus {
                peers: 3,
                ..NodeStatus::default()
            },
        )
        .await;
    let good = pki
        .node(NodeKind::Execution, "ec-good", NodeStatus::default())
        .await;
    let optimistic = pki
        .node(
            NodeKind::Consensus,
            "cc-optimistic",
            NodeStatus {
                optimistic: true,
                ..NodeStatus::default()
            },
        )
        .await;
    let el_offline = pki
        .node(
            NodeKind::Consensus,
            "cc-el-offline",
            NodeStatus {
                el_offline: Some(true),
                ..NodeStatus::default()
            },
        )
        .await;
    let cc_good = pki
        .node(
            NodeKind::Consensus,
            "cc-good",
            NodeStatus {
                el_offline: None,
                ..NodeStatus::default()
            },
        )
        .await;
    // A node whose certificate comes from a CA the gateway does not trust.
    let stranger = Pki::new();
    let untrusted = stranger
        .node(NodeKind::Execution, "ec-untrusted", NodeStatus::default())
        .await;

    let (admin, listen) = (free_addr(), free_addr());
    let mut pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[
            (&untrusted, false),
            (&syncing, false),
            (&lonely, false),
            (&good, false),
        ],
    );
    pools += &pool_yaml(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[
            (&optimistic, false),
            (&el_offline, false),
            (&cc_good, false),
        ],
    );
    let gw = Gateway::start(
        &config(admin, listen, &pools, &format!("{EC_ROUTE}{CC_ROUTE}")),
        admin,
        &[listen],
    )
    .await;

    let reason = |b: Value| b["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason(gw.wait_backend("execution", "ec-syncing", false).await).starts_with("syncing"));
    assert_eq!(
        reason(gw.wait_backend("execution", "ec-lonely", false).await),
        "peers 3 < 10"
    );
    let untrusted_reason = reason(gw.wait_backend("execution", "ec-untrusted", false).await);
    assert!(
        untrusted_reason.to_lowercase().contains("certificate"),
        "{untrusted_reason}"
    );
    assert!(
        reason(gw.wait_backend("consensus", "cc-optimistic", false).await)
            .starts_with("optimistic")
    );
    assert!(
        reason(gw.wait_backend("consensus", "cc-el-offline", false).await).contains("el_offline")
    );
    let good_cc = gw.wait_backend("consensus", "cc-good", true).await;
    assert!(
        reason(good_cc).contains("el_offline not reported"),
        "missing el_offline is accepted with a note"
    );
    gw.wait_backend("execution", "ec-good", true).await;

    let client = reqwest::Client::new();
    for _ in 0..10 {
        assert_eq!(
            who_answers(&client, listen).await,
            (200, Some("ec-good".to_string()))
        );
        let (status, node, _) = get(
            &client,
            &format!("http://{listen}/eth/v1/node/version"),
            "beacon.example.com",
        )
        .await;
        assert_eq!((status, node.as_deref()), (200, Some("cc-good")));
    }
    for node in [&syncing, &lonely, &untrusted, &optimistic, &el_offline] {
        assert_eq!(
            node.client_requests(),
            0,
            "{} got client traffic",
            node.name()
        );
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("ssv_ha_backend_healthy{backend=\"ec-good\",pool=\"execution\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ssv_ha_backend_healthy{backend=\"ec-lonely\",pool=\"execution\"} 0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_gets_no_traffic_before_its_first_good_check() {
    let pki = Pki::new();
    // Slower than the probe timeout: the first check fails, so the node is never up.
    let slow = pki
        .node(
            NodeKind::Execution,
            "ec-slow",
            NodeStatus {
                delay_ms: 400,
                ..NodeStatus::default()
            },
        )
        .await;
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&slow, false)],
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    let client = reqwest::Client::new();
    let (status, _) = who_answers(&client, listen).await;
    assert_eq!(status, 503);
    let down = gw.wait_backend("execution", "ec-slow", false).await;
    assert!(
        down["reason"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{down:#}"
    );
    assert_eq!(slow.client_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_healthy_backend_answers_503_at_once_in_the_client_protocol() {
    let pki = Pki::new();
    let ec = pki
        .node(
            NodeKind::Execution,
            "ec-a",
            NodeStatus {
                syncing: true,
                ..NodeStatus::default()
            },
        )
        .await;
    let cc = pki
        .node(
            NodeKind::Consensus,
            "cc-a",
            NodeStatus {
                syncing: true,
                ..NodeStatus::default()
            },
        )
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let mut pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&ec, false)],
    );
    pools += &pool_yaml(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&cc, false)],
    );
    let gw = Gateway::start(
        &config(admin, listen, &pools, &format!("{EC_ROUTE}{CC_ROUTE}")),
        admin,
        &[listen],
    )
    .await;
    gw.wait_backend("execution", "ec-a", false).await;
    gw.wait_backend("consensus", "cc-a", false).await;
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/");

    let started = Instant::now();
    let (status, _, body) = post(
        &client,
        &url,
        "rpc.example.com",
        &rpc("eth_blockNumber", 42),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 503);
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 42);
    assert_eq!(body["error"]["code"], -32000);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no healthy backend"));

    let (status, _, body) = post(
        &client,
        &url,
        "rpc.example.com",
        &json!([
            rpc("eth_chainId", 1),
            rpc("eth_blockNumber", "two".len() as u64)
        ]),
    )
    .await;
    assert_eq!(status, 503);
    let ids: Vec<&Value> = body
        .as_array()
        .expect("an array for a batch")
        .iter()
        .map(|e| &e["id"])
        .collect();
    assert_eq!(ids, [&json!(1), &json!(3)]);

    let started = Instant::now();
    let (status, _, body) = get(
        &client,
        &format!("{url}eth/v1/node/syncing"),
        "beacon.example.com",
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(status, 503);
    assert_eq!(body["code"], 503);
    assert!(body["message"].as_str().unwrap().contains("consensus"));
    assert_eq!(ec.client_requests() + cc.client_requests(), 0);
    assert!(gw
        .metrics()
        .await
        .contains("ssv_ha_unavailable_total{pool=\"execution\"} 2"));
}

//! Ethereum-aware health through the built gateway: lag, network, strict probing, passive health,
//! the cost of checks, and `ssv-ha probe`.

mod common;

use common::*;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::time::Duration;

struct Pools {
    gw: Gateway,
    listen: SocketAddr,
}

async fn start(pools: &str) -> Pools {
    let mut routes = String::new();
    if pools.contains("kind: execution") {
        routes += EC_ROUTE;
    }
    if pools.contains("kind: consensus") {
        routes += CC_ROUTE;
    }
    let (gw, listen) = start_on(pools, &routes).await;
    Pools { gw, listen }
}

fn reason(backend: &serde_json::Value) -> String {
    backend["reason"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_falls_behind_leaves_rotation_and_returns_when_caught_up() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let p = start(&pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, false)],
        "    max_lag: 3\n",
    ))
    .await;
    p.gw.wait_backend("execution", "ec-a", true).await;
    let client = reqwest::Client::new();
    assert_eq!(
        who_answers(&client, p.listen).await.1.as_deref(),
        Some("ec-a")
    );

    // ec-a is frozen while ec-b advances: within max_lag it stays, past it it leaves.
    for _ in 0..3 {
        b.new_head();
    }
    // Not after a bare sleep, which may end before any check saw the new heads: wait for two
    // check rounds that judged ec-a against them. A round probes every backend and publishes
    // ec-a before ec-b, so once ec-b shows its new head, ec-a was judged in that round; then
    // one more round of ec-a.
    let head = b.status().head;
    let at = |v: &serde_json::Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let first = wait_for(
        "a check round that saw ec-b's new head",
        Duration::from_secs(10),
        || async {
            let status = p.gw.status().await;
            let seen = Gateway::backend_status(&status, "execution", "ec-b");
            let a = Gateway::backend_status(&status, "execution", "ec-a");
            (seen["facts"]["head"] == head).then(|| at(&a["last_check"]))
        },
    )
    .await;
    let still = wait_for(
        "a second check round of ec-a",
        Duration::from_secs(10),
        || async {
            let a = Gateway::backend_status(&p.gw.status().await, "execution", "ec-a");
            (at(&a["last_check"]) > first).then_some(a)
        },
    )
    .await;
    assert_eq!(
        (&still["healthy"], &still["verdict"]["lag"]),
        (&serde_json::json!(true), &serde_json::json!(3)),
        "3 blocks behind is within max_lag 3: {still:#}"
    );
    b.new_head();
    let behind = p.gw.wait_backend("execution", "ec-a", false).await;
    assert_eq!(reason(&behind), "4 blocks behind ec-b");
    assert_eq!(
        who_answers(&client, p.listen).await.1.as_deref(),
        Some("ec-b")
    );
    assert!(p
        .gw
        .metrics()
        .await
        .contains("ssv_ha_backend_lag{backend=\"ec-a\",pool=\"execution\"} 4"));

    // It catches up and takes the traffic back.
    a.set(|s| s.head = b.status().head);
    p.gw.wait_backend("execution", "ec-a", true).await;
    assert_eq!(
        who_answers(&client, p.listen).await.1.as_deref(),
        Some("ec-a")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_network_nodes_never_get_traffic() {
    let pki = Pki::new();
    // Configured chain id: a node on another chain is out, whatever else it reports.
    let goerli = pki
        .node(
            NodeKind::Execution,
            "ec-goerli",
            NodeStatus {
                chain_id: 5,
                head: 9_000_000,
                ..NodeStatus::default()
            },
        )
        .await;
    let mainnet = pki
        .node(NodeKind::Execution, "ec-mainnet", NodeStatus::default())
        .await;
    // No expectation configured: the consensus nodes must agree; the odd one out is excluded.
    let other_root = format!("0x{:064x}", 7);
    let cc_a = pki
        .node(
            NodeKind::Consensus,
            "cc-a",
            NodeStatus {
                genesis_validators_root: other_root,
                ..NodeStatus::default()
            },
        )
        .await;
    let cc_b = pki
        .node(NodeKind::Consensus, "cc-b", NodeStatus::default())
        .await;
    let cc_c = pki
        .node(NodeKind::Consensus, "cc-c", NodeStatus::default())
        .await;
    let mut pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&goerli, false), (&mainnet, false)],
        "    chain_id: 1\n",
    );
    pools += &pool_yaml(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&cc_a, false), (&cc_b, false), (&cc_c, false)],
    );
    let p = start(&pools).await;

    let wrong = p.gw.wait_backend("execution", "ec-goerli", false).await;
    assert_eq!(reason(&wrong), "wrong network: chain id 5, expected 1");
    let right = p.gw.wait_backend("execution", "ec-mainnet", true).await;
    assert_eq!(
        right["verdict"]["lag"], 0,
        "a wrong-network head does not make the right node lag"
    );
    let odd = p.gw.wait_backend("consensus", "cc-a", false).await;
    assert!(
        reason(&odd).starts_with(
            "wrong network: genesis root 0x00000000…, the pool agreed on genesis root"
        ),
        "{odd:#}"
    );
    assert!(reason(&odd).ends_with("(cc-b, cc-c)"), "{odd:#}");
    p.gw.wait_backend("consensus", "cc-b", true).await;

    let client = reqwest::Client::new();
    for _ in 0..5 {
        assert_eq!(
            who_answers(&client, p.listen).await.1.as_deref(),
            Some("ec-mainnet")
        );
        let (_, node, _) = get(
            &client,
            &format!("http://{}/eth/v1/node/version", p.listen),
            "beacon.example.com",
        )
        .await;
        assert_eq!(node.as_deref(), Some("cc-b"));
    }
    assert_eq!(goerli.client_requests() + cc_a.client_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn surprising_replies_are_failures_with_reasons() {
    let pki = Pki::new();
    let html = pki
        .node(
            NodeKind::Execution,
            "ec-html",
            NodeStatus {
                fail_status: Some(200),
                ..NodeStatus::default()
            },
        )
        .await;
    let empty = pki
        .node(
            NodeKind::Execution,
            "ec-empty",
            NodeStatus {
                reply_override: Some("{}".into()),
                ..NodeStatus::default()
            },
        )
        .await;
    let wrong_id = r#"[{"jsonrpc":"2.0","id":1,"result":false},{"jsonrpc":"2.0","id":2,"result":"0x19"},{"jsonrpc":"2.0","id":99,"result":"0x10"},{"jsonrpc":"2.0","id":4,"result":"0x1"}]"#;
    let wrong = pki
        .node(
            NodeKind::Execution,
            "ec-wrong-id",
            NodeStatus {
                reply_override: Some(wrong_id.into()),
                ..NodeStatus::default()
            },
        )
        .await;
    let hang = pki
        .node(
            NodeKind::Execution,
            "ec-hang",
            NodeStatus {
                delay_ms: 5_000,
                ..NodeStatus::default()
            },
        )
        .await;
    let cc_html = pki
        .node(
            NodeKind::Consensus,
            "cc-502",
            NodeStatus {
                fail_status: Some(502),
                ..NodeStatus::default()
            },
        )
        .await;
    let cc_empty = pki
        .node(
            NodeKind::Consensus,
            "cc-empty",
            NodeStatus {
                reply_override: Some("{}".into()),
                ..NodeStatus::default()
            },
        )
        .await;
    let mut pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[
            (&html, false),
            (&empty, false),
            (&wrong, false),
            (&hang, false),
        ],
    );
    pools += &pool_yaml(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&cc_html, false), (&cc_empty, false)],
    );
    let p = start(&pools).await;

    let cases = [
        (
            "execution",
            "ec-html",
            "JSON-RPC batch: reply is not JSON (`<html><body><h1>200 OK</h1>",
        ),
        ("execution", "ec-empty", "batch reply is not a JSON array"),
        (
            "execution",
            "ec-wrong-id",
            "no reply to eth_blockNumber (id 3)",
        ),
        ("execution", "ec-hang", "no answer within 90ms"),
        ("consensus", "cc-502", "node/syncing: HTTP 502 (`<html>"),
        ("consensus", "cc-empty", "node/syncing reply has no `data`"),
    ];
    for (pool, backend, expected) in cases {
        let b = p.gw.wait_backend(pool, backend, false).await;
        assert!(
            reason(&b).starts_with(expected),
            "{backend}: `{}` should start with `{expected}`",
            reason(&b)
        );
    }
    let client = reqwest::Client::new();
    assert_eq!(who_answers(&client, p.listen).await.0, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_that_refuses_connections_is_out_after_one_failed_request() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    // Checks are slow here, so only live traffic can notice the failure in time.
    let slow = "    health: { interval: 1h, timeout: 1s }\n";
    let p = start(&pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        slow,
    ))
    .await;
    p.gw.wait_backend("execution", "ec-a", true).await;
    p.gw.wait_backend("execution", "ec-b", true).await;
    a.go_down();
    let client = reqwest::Client::new();
    assert_eq!(
        who_answers(&client, p.listen).await,
        (200, Some("ec-b".to_string())),
        "retried on the backup"
    );
    let status = Gateway::backend_status(&p.gw.status().await, "execution", "ec-a");
    assert_eq!(status["healthy"], false, "{status:#}");
    assert!(
        reason(&status).starts_with("failed on live traffic: connect failed"),
        "{status:#}"
    );
    // The next request goes straight to the backup, with no retry.
    assert_eq!(
        who_answers(&client, p.listen).await.1.as_deref(),
        Some("ec-b")
    );
    assert!(p
        .gw
        .metrics()
        .await
        .contains("ssv_ha_retries_total{pool=\"execution\"} 1\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_error_from_the_primary_is_retried_and_counts_against_it() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let slow = "    health: { interval: 1h, timeout: 1s, rise: 1, fall: 2 }\n";
    let p = start(&pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        slow,
    ))
    .await;
    p.gw.wait_backend("execution", "ec-a", true).await;
    p.gw.wait_backend("execution", "ec-b", true).await;
    let client = reqwest::Client::new();

    // traefik's answer when the node behind it is gone
    a.set(|s| s.fail_status = Some(502));
    assert_eq!(
        who_answers(&client, p.listen).await,
        (200, Some("ec-b".to_string()))
    );
    let one = Gateway::backend_status(&p.gw.status().await, "execution", "ec-a");
    assert_eq!(
        one["healthy"], true,
        "one 502 is one bad check of fall 2: {one:#}"
    );
    assert_eq!(
        who_answers(&client, p.listen).await,
        (200, Some("ec-b".to_string()))
    );
    let two = Gateway::backend_status(&p.gw.status().await, "execution", "ec-a");
    assert_eq!(two["healthy"], false, "{two:#}");
    assert_eq!(reason(&two), "failed on live traffic: HTTP 502");
}

/// A plain-HTTP execution node that passes its health checks and answers every client call with
/// its own failure: HTTP 500 with a JSON-RPC error, the node's answer (not a proxy's page).
async fn node_answering_500() -> SocketAddr {
    async fn serve(
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let probe = headers
            .get("user-agent")
            .is_some_and(|ua| ua.as_bytes() == ssv_ha::health::PROBE_USER_AGENT.as_bytes());
        if probe {
            let answer = common::recorder::answer(&body).unwrap_or_default();
            return ([("content-type", "application/json")], answer).into_response();
        }
        let error = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"node-500 internal error"}}"#;
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/json")],
            error,
        )
            .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(serve))
            .await
            .unwrap();
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_from_the_node_is_passed_through_not_retried() {
    // A 500 is the node's own answer: passed through, not retried, not held against the node.
    // The pool has a second healthy backend, so a retry would show: the client would get ec-b's
    // 200 instead of the 500.
    let pki = Pki::new();
    let failing = node_answering_500().await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let pools = format!(
        "  execution:\n    kind: execution\n    policy: first\n    ca: {}\n    health: {FAST_HEALTH}\n    backends:\n      - {{ name: node-500, url: \"http://{failing}/\" }}\n      - {{ name: ec-b, url: \"{}\", backup: true }}\n",
        pki.ca_file.display(),
        b.url()
    );
    let p = start(&pools).await;
    p.gw.wait_backend("execution", "node-500", true).await;
    p.gw.wait_backend("execution", "ec-b", true).await;
    let response = reqwest::Client::new()
        .post(format!("http://{}/", p.listen))
        .header("host", "rpc.example.com")
        .json(&rpc("eth_call", 1))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(
        status, 500,
        "the node's 500, not another node's answer: {body}"
    );
    assert!(body.contains("node-500 internal error"), "{body}");
    assert_eq!(b.client_requests(), 0, "ec-b was not asked");
    assert_eq!(
        metric(
            &p.gw.metrics().await,
            "ssv_ha_retries_total{pool=\"execution\"}"
        ),
        0.0,
        "not retried"
    );
    let node = Gateway::backend_status(&p.gw.status().await, "execution", "node-500");
    assert_eq!(node["healthy"], true, "{node:#}");
}

/// One HTTP request per check for an execution node; two for a consensus node after its first.
#[tokio::test(flavor = "multi_thread")]
async fn checks_are_cheap() {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let cc = pki
        .node(NodeKind::Consensus, "cc-a", NodeStatus::default())
        .await;
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
    let p = start(&pools).await;
    p.gw.wait_backend("execution", "ec-a", true).await;
    p.gw.wait_backend("consensus", "cc-a", true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let checks = |metrics: &str, pool: &str, backend: &str| -> u64 {
        let prefix = format!(
            "ssv_ha_health_checks_total{{backend=\"{backend}\",pool=\"{pool}\",result=\"ok\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let probes = |node: &SimNode| node.seen().iter().filter(|r| r.probe).count() as u64;
    // Read both sides at a moment no check is in flight: right after the metrics move.
    let metrics = p.gw.metrics().await;
    let (ec_checks, cc_checks) = (
        checks(&metrics, "execution", "ec-a"),
        checks(&metrics, "consensus", "cc-a"),
    );
    let (ec_probes, cc_probes) = (probes(&ec), probes(&cc));
    assert!(ec_checks >= 3, "{metrics}");
    assert!(
        ec_probes.abs_diff(ec_checks) <= 1,
        "{ec_probes} requests for {ec_checks} execution checks"
    );
    assert!(
        ec.seen()
            .iter()
            .filter(|r| r.probe)
            .all(|r| r.method == "POST"),
        "one batch POST per check"
    );
    // 4 requests the first time (genesis and spec), 2 after.
    let expected = 2 * cc_checks + 2;
    assert!(
        cc_probes.abs_diff(expected) <= 2,
        "{cc_probes} requests for {cc_checks} consensus checks"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_command_prints_observations_and_exit_code() {
    let ec = SimNode::start(
        NodeKind::Execution,
        "ec-a",
        NodeStatus {
            peers: 3,
            ..NodeStatus::default()
        },
    )
    .await
    .unwrap();
    let cc = SimNode::start(
        NodeKind::Consensus,
        "cc-a",
        NodeStatus {
            el_offline: None,
            ..NodeStatus::default()
        },
    )
    .await
    .unwrap();
    let probe = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
                .arg("probe")
                .args(args)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let out = probe(vec!["--kind".into(), "execution".into(), ec.url()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("UNHEALTHY: peers 3 < 10"), "{text}");
    assert!(
        text.contains("syncing false, peers 3, head 1000, chain id 1"),
        "{text}"
    );
    let out = probe(vec![
        "--kind".into(),
        "execution".into(),
        "--min-peers".into(),
        "3".into(),
        ec.url(),
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = probe(vec![
        "--kind".into(),
        "consensus".into(),
        "--min-peers".into(),
        "0".into(),
        "--json".into(),
        cc.url(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json[0]["reason"],
        "healthy; el_offline not reported (older client), accepted"
    );
    assert_eq!(json[0]["facts"]["head_slot"], 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_climbing_back_says_how_far_it_is_from_rotation() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    // Twenty good checks to come back: two seconds of climbing to watch.
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false)],
        "    health: { interval: 100ms, timeout: 90ms, rise: 20, fall: 1 }\n",
    );
    let p = start(&pools).await;
    p.gw.wait_backend("execution", "ec-a", true).await;
    a.set(|s| s.syncing = true);
    p.gw.wait_backend("execution", "ec-a", false).await;
    a.set(|s| s.syncing = false);
    let climbing = wait_for("a recovering reason", Duration::from_secs(10), || async {
        let status = p.gw.status().await;
        let b = Gateway::backend_status(&status, "execution", "ec-a");
        reason(&b).starts_with("recovering:").then_some(b)
    })
    .await;
    assert_eq!(climbing["healthy"], false, "{climbing}");
    assert!(
        reason(&climbing).ends_with("of 20 good checks"),
        "{climbing}"
    );
    p.gw.wait_backend("execution", "ec-a", true).await;
}

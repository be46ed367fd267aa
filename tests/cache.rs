//! The answer cache: finalized reads answered once by a node and then by the gateway, with each
//! client's own id; reads above the finalized block, errors and `null` always go to a node; the
//! byte bound; the network in the key; beacon genesis and spec kept, `head` not; the metrics,
//! `/status` and the access line.

mod common;

use common::*;
use serde_json::Value;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::time::Duration;

/// POSTs `body` as written and returns the status, the answering node (none when the gateway
/// answered from its cache) and the body's text.
/// How many times the node was asked `method` by clients (not by health checks).
fn asked(node: &SimNode, method: &str) -> usize {
    node.rpc_methods().iter().filter(|m| *m == method).count()
}

/// Waits until the gateway's health check saw the node's finalized block.
async fn wait_finalized(gw: &Gateway, backend: &str, block: u64) {
    wait_for(
        "the finalized block in /status",
        Duration::from_secs(10),
        || async move {
            let b = Gateway::backend_status(&gw.status().await, "execution", backend);
            (b["facts"]["finalized"] == block).then_some(())
        },
    )
    .await;
}

fn result_of(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    v["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_finalized_read_is_answered_once_and_with_each_askers_id() {
    let s = ec_pair("").await;
    wait_finalized(&s.gw, "ec-a", 936).await;
    let client = reqwest::Client::new();
    let params = r#"["0x10",false]"#;
    let (status, node, first) = post_text(
        &client,
        s.listen,
        call_text("1", "eth_getBlockByNumber", params),
    )
    .await;
    assert_eq!((status, node.as_deref()), (200, Some("ec-a")), "{first}");
    for id in ["7", "\"abc\"", "123456789012345678901234567890", "null"] {
        let (status, node, text) = post_text(
            &client,
            s.listen,
            call_text(id, "eth_getBlockByNumber", params),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(node, None, "answered by the gateway, not a node: {text}");
        assert_eq!(text, first.replacen("\"id\":1", &format!("\"id\":{id}"), 1));
    }
    assert_eq!(asked(&s.a, "eth_getBlockByNumber"), 1);
    // A finalized range of logs, the same way.
    let logs = r#"[{"fromBlock":"0x10","toBlock":"0x20","address":"0x00000000000000000000000000000000000000aa"}]"#;
    for id in 1..=3 {
        let (_, _, text) = post_text(
            &client,
            s.listen,
            call_text(&id.to_string(), "eth_getLogs", logs),
        )
        .await;
        assert_eq!(
            result_of(&text).as_array().map(Vec::len),
            Some(17),
            "{text}"
        );
    }
    assert_eq!(asked(&s.a, "eth_getLogs"), 1);
    let metrics = s.gw.metrics().await;
    assert_eq!(
        metric(&metrics, r#"ssv_ha_cache_hits_total{pool="execution"}"#),
        6.0
    );
    assert_eq!(
        metric(&metrics, r#"ssv_ha_cache_misses_total{pool="execution"}"#),
        2.0
    );
    assert_eq!(
        metric(&metrics, r#"ssv_ha_cache_entries{pool="execution"}"#),
        2.0
    );
    assert!(metric(&metrics, r#"ssv_ha_cache_bytes{pool="execution"}"#) > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_reorg_reads_above_the_finalized_block_get_the_new_chain() {
    let s = ec_pair("").await;
    wait_finalized(&s.gw, "ec-a", 936).await;
    let client = reqwest::Client::new();
    let hash_of = |text: &str| result_of(text)["hash"].as_str().map(str::to_string);
    let block = |n: &str| call_text("1", "eth_getBlockByNumber", &format!(r#"["{n}",false]"#));
    // Block 992 (above the finalized 936), a range that ends above it, and `latest`.
    let range = r#"[{"fromBlock":"0x3a0","toBlock":"0x3e0"}]"#;
    let (_, _, before) = post_text(&client, s.listen, block("0x3e0")).await;
    let (_, _, logs_before) =
        post_text(&client, s.listen, call_text("1", "eth_getLogs", range)).await;
    let (_, _, latest_before) = post_text(&client, s.listen, block("latest")).await;
    s.a.set(|st| st.branch_from = Some(950));
    let (_, node, after) = post_text(&client, s.listen, block("0x3e0")).await;
    assert_eq!(node.as_deref(), Some("ec-a"));
    assert_ne!(
        hash_of(&before),
        hash_of(&after),
        "a cached block survived the reorg"
    );
    let new_branch = format!("0x{:032x}", 1);
    assert!(
        hash_of(&after).is_some_and(|h| h.starts_with(&new_branch)),
        "{after}"
    );
    let (_, _, logs_after) =
        post_text(&client, s.listen, call_text("1", "eth_getLogs", range)).await;
    let last_hash = |text: &str| {
        let logs = result_of(text);
        logs.as_array()
            .and_then(|l| l.last())
            .map(|l| l["blockHash"].clone())
    };
    assert_ne!(
        last_hash(&logs_before),
        last_hash(&logs_after),
        "cached logs survived the reorg"
    );
    let (_, _, latest_after) = post_text(&client, s.listen, block("latest")).await;
    assert_ne!(hash_of(&latest_before), hash_of(&latest_after));
    assert_eq!(asked(&s.a, "eth_getBlockByNumber"), 4);
    assert_eq!(asked(&s.a, "eth_getLogs"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_and_null_answers_are_not_kept() {
    let s = ec_pair("").await;
    wait_finalized(&s.gw, "ec-a", 936).await;
    let client = reqwest::Client::new();
    let unknown_hash = format!("\"0x{}\"", "ee".repeat(32));
    let known_hash = format!("\"0x{:064x}\"", 0x10);
    let calls = [
        // The node does not know the method: an error.
        (
            "eth_getBalance",
            r#"["0x00000000000000000000000000000000000000aa","0x10"]"#.to_string(),
        ),
        // Unknown to the node: null.
        ("eth_getTransactionByHash", format!("[{unknown_hash}]")),
        ("eth_getBlockByHash", format!("[{unknown_hash},false]")),
    ];
    for (method, params) in &calls {
        for _ in 0..3 {
            let (status, node, text) =
                post_text(&client, s.listen, call_text("1", method, params)).await;
            assert_eq!(
                (status, node.as_deref()),
                (200, Some("ec-a")),
                "{method}: {text}"
            );
        }
        assert_eq!(asked(&s.a, method), 3, "{method}");
    }
    // The same method with a finalized block's hash is kept.
    for _ in 0..3 {
        let params = format!("[{known_hash},false]");
        let (_, _, text) = post_text(
            &client,
            s.listen,
            call_text("1", "eth_getBlockByHash", &params),
        )
        .await;
        assert_eq!(result_of(&text)["number"], "0x10", "{text}");
    }
    assert_eq!(asked(&s.a, "eth_getBlockByHash"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_stays_within_its_bytes_and_status_shows_it() {
    let s = ec_pair("    cache: { max_bytes: 65536 }\n").await;
    wait_finalized(&s.gw, "ec-a", 936).await;
    let client = reqwest::Client::new();
    for n in 0..400 {
        let params = format!(r#"["0x{n:x}",false]"#);
        let (status, _, _) = post_text(
            &client,
            s.listen,
            call_text("1", "eth_getBlockByNumber", &params),
        )
        .await;
        assert_eq!(status, 200);
    }
    let metrics = s.gw.metrics().await;
    let bytes = metric(&metrics, r#"ssv_ha_cache_bytes{pool="execution"}"#);
    let entries = metric(&metrics, r#"ssv_ha_cache_entries{pool="execution"}"#);
    assert!(bytes > 30_000.0 && bytes <= 65536.0, "{bytes} bytes");
    assert!(entries > 50.0 && entries < 400.0, "{entries} entries");
    let status = s.gw.status().await;
    let cache = &status["pools"][0]["cache"];
    assert_eq!(cache["capacity"], 65536, "{cache}");
    assert!(
        cache["bytes"].as_u64().is_some_and(|b| b > 0 && b <= 65536),
        "{cache}"
    );
    assert_eq!(cache["misses"], 400, "{cache}");
    // Off: nothing is kept, and /status says so.
    let off = ec_pair("    cache: off\n").await;
    for _ in 0..2 {
        post_text(&client, off.listen, call_text("1", "eth_chainId", "[]")).await;
    }
    assert_eq!(asked(&off.a, "eth_chainId"), 2);
    assert_eq!(off.gw.status().await["pools"][0]["cache"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_id_is_kept_after_the_first_and_never_from_another_network() {
    let s = ec_pair("").await;
    let client = reqwest::Client::new();
    for id in 1..=3 {
        for method in ["eth_chainId", "net_version"] {
            let (_, _, text) =
                post_text(&client, s.listen, call_text(&id.to_string(), method, "[]")).await;
            assert!(text.contains(&format!("\"id\":{id}")), "{text}");
        }
    }
    assert_eq!(
        (asked(&s.a, "eth_chainId"), asked(&s.a, "net_version")),
        (1, 1)
    );

    // A node that moved to another network since its last check answers for itself.
    let pki = Pki::new();
    let node = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let slow_checks = "    health: { interval: 1h, timeout: 2s, rise: 1, fall: 1 }\n";
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&node, false)],
        slow_checks,
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    node.set(|st| st.chain_id = 5);
    for _ in 0..3 {
        for method in ["eth_chainId", "net_version"] {
            let (_, answered_by, text) =
                post_text(&client, listen, call_text("1", method, "[]")).await;
            assert_eq!(answered_by.as_deref(), Some("ec-a"), "{text}");
            assert!(text.contains('5'), "{text}");
        }
    }
    assert_eq!(
        (asked(&node, "eth_chainId"), asked(&node, "net_version")),
        (3, 3)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn beacon_genesis_and_spec_are_kept_and_head_is_not() {
    let pki = Pki::new();
    let status = NodeStatus {
        head: 1000,
        ..NodeStatus::default()
    };
    let cc = pki.node(NodeKind::Consensus, "cc-a", status).await;
    let pools = pool_yaml(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&cc, false)],
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        "log: {{ format: json, level: info }}\n{}",
        config(admin, listen, &pools, CC_ROUTE)
    );
    let (gw, lines) = Gateway::start_logged_at(&yaml, admin, &[listen], "info").await;
    gw.wait_backend("consensus", "cc-a", true).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{listen}{path}");
    let paths = [
        "/eth/v1/beacon/genesis",
        "/eth/v1/config/spec",
        "/eth/v1/beacon/headers/head",
        "/eth/v1/beacon/headers/900",
        "/eth/v1/beacon/headers/990",
    ];
    let mut answers: Vec<Value> = Vec::new();
    for _ in 0..3 {
        for path in paths {
            let (status, _, body) = get(&client, &url(path), "beacon.example.com").await;
            assert_eq!(status, 200, "{path}: {body}");
            answers.push(body);
        }
    }
    assert_eq!(
        answers[0], answers[5],
        "genesis served from the cache as it came"
    );
    let seen = |path: &str| {
        cc.seen()
            .iter()
            .filter(|r| !r.probe && r.uri == path)
            .count()
    };
    // Kept: the network's own, and a slot the node calls finalized (64 behind its head).
    for path in [paths[0], paths[1], paths[3]] {
        assert_eq!(seen(path), 1, "{path}");
    }
    // Not kept: the head, and a slot not yet finalized.
    for path in [paths[2], paths[4]] {
        assert_eq!(seen(path), 3, "{path}");
    }
    // The access line tells a hit from a miss.
    let mut caches = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while caches.len() < 15 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left).expect("access lines");
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["target"] == "access" {
            caches.push((v["path"].clone(), v["cache"].clone(), v["backend"].clone()));
        }
    }
    assert_eq!(
        caches[0],
        (
            "/eth/v1/beacon/genesis".into(),
            "miss".into(),
            "cc-a".into()
        )
    );
    assert_eq!(
        caches[5],
        ("/eth/v1/beacon/genesis".into(), "hit".into(), "-".into())
    );
    assert_eq!(
        caches[2],
        (
            "/eth/v1/beacon/headers/head".into(),
            "".into(),
            "cc-a".into()
        )
    );
}

/// An answer being gathered to keep counts in the listener's held bytes: a listener at its limit
/// passes the answer on, unkept, and the next ask goes to the node again.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_is_kept_only_within_the_listeners_held_bytes() {
    let pki = Pki::new();
    let (a, pools) = large_logs_node(&pki, 256 * 1024).await;
    let client = reqwest::Client::new();
    let logs = call_text(
        "1",
        "eth_getLogs",
        r#"[{"fromBlock":"0x1","toBlock":"0x2"}]"#,
    );
    for (limits, kept) in [
        ("", true),
        (
            "limits: { max_body_bytes: 65536, max_held_bytes: 65536 }\n",
            false,
        ),
    ] {
        let (gw, listen) = start_with_limits(&pools, EC_ROUTE, limits).await;
        gw.wait_backend("execution", "ec-a", true).await;
        wait_finalized(&gw, "ec-a", 936).await;
        let before = asked(&a, "eth_getLogs");
        for _ in 0..2 {
            let (status, _, text) = post_text(&client, listen, logs.clone()).await;
            assert_eq!(status, 200, "{}", &text[..text.len().min(200)]);
            assert!(text.len() > 256 * 1024, "the whole answer passed");
        }
        let to_node = asked(&a, "eth_getLogs") - before;
        assert_eq!(to_node, if kept { 1 } else { 2 }, "limits {limits:?}");
    }
}

//! Configuration reload without a restart: SIGHUP and `POST /reload` swap in a valid file (new,
//! removed and changed backends and routes take effect; sessions on backends that remain are
//! untouched) or keep the running config and report every error.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus};
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn reload_over_http(admin: std::net::SocketAddr) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{admin}/reload"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A WebSocket through the gateway with a live `newHeads` subscription.
async fn subscribe_to_new_heads(
    listen: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{listen}/"))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let _subscribed = ws.next().await;
    ws
}

fn metric(metrics: &str, line_start: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_a_valid_file_and_keeps_sessions_on_kept_backends() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let cc = pki
        .node(NodeKind::Consensus, "cc-a", NodeStatus::default())
        .await;
    // Under the first config's peer threshold, over the second's.
    let c = pki
        .node(
            NodeKind::Execution,
            "ec-c",
            NodeStatus {
                peers: 7,
                ..NodeStatus::default()
            },
        )
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    // Everything on the listener goes to the execution pool, except what a host route claims.
    let catch_all = format!("  - {{ listener: \"{listen}\", pool: execution }}\n");
    let before = config(
        admin,
        listen,
        &pool_yaml(
            "execution",
            "execution",
            "first",
            &pki.ca_file,
            &[(&a, false), (&c, true)],
        ),
        &catch_all,
    );
    let gw = Gateway::start(&before, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    let lonely = gw.wait_backend("execution", "ec-c", false).await;
    assert_eq!(lonely["reason"], "peers 7 < 10");

    // A live subscription on ec-a, which the new config keeps as it is.
    let mut ws = subscribe_to_new_heads(listen).await;

    // New: a lower peer threshold, ec-b as another backup, a consensus pool and its route.
    let mut pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&c, true), (&b, true)],
        "    min_peers: 5\n",
    );
    pools += &pool_yaml(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&cc, false)],
    );
    std::fs::write(
        &gw.config_path,
        config(admin, listen, &pools, &format!("{catch_all}{CC_ROUTE}")),
    )
    .unwrap();
    let pid = gw_pid(&gw);
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());

    gw.wait_backend("execution", "ec-b", true).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    gw.wait_backend("execution", "ec-c", true).await;
    let client = reqwest::Client::new();
    let (status, node, _) = get(
        &client,
        &format!("http://{listen}/eth/v1/node/version"),
        "beacon.example.com",
    )
    .await;
    assert_eq!(
        (status, node.as_deref()),
        (200, Some("cc-a")),
        "the new route and pool serve"
    );
    assert_eq!(
        who_answers(&client, listen).await.1.as_deref(),
        Some("ec-a"),
        "the primary still takes the traffic"
    );

    // The session on the kept backend was not touched.
    let head = a.new_head();
    let note = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let note: Value = serde_json::from_str(note.to_text().unwrap()).unwrap();
    assert_eq!(note["params"]["result"]["number"], format!("0x{head:x}"));
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "ssv_ha_config_reloads_total{result=\"success\"} "),
        Some(1.0)
    );

    // Removing ec-a and ec-c ends their sessions; traffic goes to what remains (ec-b, now a primary,
    // and so replaced; the consensus pool is gone).
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&b, false)],
    );
    std::fs::write(&gw.config_path, config(admin, listen, &pools, &catch_all)).unwrap();
    let (status, body) = reload_over_http(admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("updated in place 1, new 0, removed or replaced 3"),
        "{body}"
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the session on the removed backend ends");
    assert!(!matches!(ended, Some(Ok(Message::Text(_)))), "{ended:?}");
    gw.wait_backend("execution", "ec-b", true).await;
    assert_eq!(
        who_answers(&client, listen).await.1.as_deref(),
        Some("ec-b")
    );
    let status = gw.status().await;
    assert_eq!(status["pools"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_file_is_refused_whole_and_the_running_config_stays() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let good = config(
        admin,
        listen,
        &pool_yaml(
            "execution",
            "execution",
            "first",
            &pki.ca_file,
            &[(&a, false)],
        ),
        EC_ROUTE,
    );
    let gw = Gateway::start(&good, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;

    let broken = good
        .replace("kind: execution", "kind: executoin")
        .replace("rpc.example.com", "bad host!");
    std::fs::write(&gw.config_path, &broken).unwrap();
    let (status, body) = reload_over_http(admin).await;
    assert_eq!(status, 422);
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("pools.execution: unknown variant `executoin`")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("routes[0].host")),
        "every error is reported: {errors:?}"
    );
    // SIGHUP with the same file: refused too, and the gateway keeps serving on the old config.
    assert!(Command::new("kill")
        .args(["-HUP", &gw_pid(&gw).to_string()])
        .status()
        .unwrap()
        .success());
    let client = reqwest::Client::new();
    wait_for(
        "the failed SIGHUP reload to be counted",
        Duration::from_secs(5),
        || async {
            (metric(
                &gw.metrics().await,
                "ssv_ha_config_reloads_total{result=\"failure\"} ",
            ) == Some(2.0))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        who_answers(&client, listen).await,
        (200, Some("ec-a".to_string()))
    );

    // A listener change needs a restart: refused, nothing applied.
    let moved = good.replace(&listen.to_string(), &free_addr().to_string());
    std::fs::write(&gw.config_path, moved).unwrap();
    let (status, body) = reload_over_http(admin).await;
    assert_eq!(status, 422);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("listeners changed: that needs a restart"),
        "{body}"
    );
    assert_eq!(who_answers(&client, listen).await.0, 200);
}

fn gw_pid(gw: &Gateway) -> u32 {
    gw.pid()
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_changed_and_a_backend_inserted_in_front_keep_the_others_health_and_sessions() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let new = pki
        .node(NodeKind::Execution, "ec-new", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let catch_all = format!("  - {{ listener: \"{listen}\", pool: execution }}\n");
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
    );
    let gw = Gateway::start(&config(admin, listen, &pools, &catch_all), admin, &[listen]).await;
    let before_a = gw.wait_backend("execution", "ec-a", true).await;
    let before_b = gw.wait_backend("execution", "ec-b", true).await;
    let mut ws = subscribe_to_new_heads(listen).await;

    // Another response timeout, other thresholds and health settings, and a new backend in
    // front of the two (a backup, so that the traffic stays where it is).
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&new, true), (&a, false), (&b, true)],
        "    max_lag: 3\n    min_peers: 5\n    health: { interval: 150ms, timeout: 140ms, rise: 3, fall: 2 }\n",
    );
    let changed = format!(
        "timeouts: {{ response: 30s }}\n{}",
        config(admin, listen, &pools, &catch_all)
    );
    std::fs::write(&gw.config_path, changed).unwrap();
    let (status, body) = reload_over_http(admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("updated in place 2, new 1, removed or replaced 0"),
        "{body}"
    );
    // Their health went on: up at once, the same transition as before the reload.
    let status = gw.status().await;
    for (name, before) in [("ec-a", &before_a), ("ec-b", &before_b)] {
        let after = Gateway::backend_status(&status, "execution", name);
        assert_eq!(after["state"], "up", "{name}: {after}");
        assert_eq!(after["last_change"], before["last_change"], "{name}");
    }
    // The session on ec-a goes on.
    let head = a.new_head();
    let note = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the session lives")
        .unwrap()
        .unwrap();
    let note: Value = serde_json::from_str(note.to_text().unwrap()).unwrap();
    assert_eq!(note["params"]["result"]["number"], format!("0x{head:x}"));
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "ssv_ha_sessions_cut_total{backend=\"ec-a\",pool=\"execution\",reason=\"removed\"} "
        ),
        Some(0.0)
    );
    gw.wait_backend("execution", "ec-new", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_faster_than_a_probe_do_not_stop_the_checks() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false)],
        "    health: { interval: 1s, timeout: 900ms, rise: 1, fall: 1 }\n",
    );
    let gw = Gateway::start(&config(admin, listen, &pools, EC_ROUTE), admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    // The node falls out of sync and answers slowly: a probe now takes half a second.
    a.set(|s| {
        s.syncing = true;
        s.delay_ms = 500;
    });
    // Meanwhile the same file is reloaded every 200 ms (a tool sending SIGHUP on a timer).
    let reloading = {
        let admin = gw.admin;
        tokio::spawn(async move {
            // Longer than the wait below: the node must go down while reloads keep coming.
            for _ in 0..60 {
                assert_eq!(reload_over_http(admin).await.0, 200);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let down = gw.wait_backend("execution", "ec-a", false).await;
    assert!(
        down["reason"].as_str().unwrap().contains("syncing"),
        "{down}"
    );
    reloading.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_backends_swapping_names_keep_their_health_and_sessions() {
    let pki = Pki::new();
    let x = pki
        .node(NodeKind::Execution, "node-x", NodeStatus::default())
        .await;
    let y = pki
        .node(NodeKind::Execution, "node-y", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let named = |first: &str, second: &str| {
        format!(
            "  execution:\n    kind: execution\n    policy: round_robin\n    ca: {}\n    health: {FAST_HEALTH}\n    backends:\n      - {{ name: {first}, url: \"{}\" }}\n      - {{ name: {second}, url: \"{}\" }}\n",
            pki.ca_file.display(),
            x.url(),
            y.url()
        )
    };
    let gw = Gateway::start(
        &config(admin, listen, &named("ec-a", "ec-b"), EC_ROUTE),
        admin,
        &[listen],
    )
    .await;
    let before_a = gw.wait_backend("execution", "ec-a", true).await;
    let before_b = gw.wait_backend("execution", "ec-b", true).await;
    std::fs::write(
        &gw.config_path,
        config(admin, listen, &named("ec-b", "ec-a"), EC_ROUTE),
    )
    .unwrap();
    let (status, body) = reload_over_http(admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("updated in place 2, new 0, removed or replaced 0"),
        "{body}"
    );
    // Each node's health went with it to its new name.
    let status = gw.status().await;
    let after_a = Gateway::backend_status(&status, "execution", "ec-a");
    let after_b = Gateway::backend_status(&status, "execution", "ec-b");
    assert_eq!(after_a["last_change"], before_b["last_change"]);
    assert_eq!(after_b["last_change"], before_a["last_change"]);
}

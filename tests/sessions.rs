//! Live WebSocket and SSE sessions across failover: cut when their backend goes down, moved back
//! to the primary (fail-back), ended cleanly on shutdown, capped per listener.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Setup {
    pki: Pki,
    a: SimNode,
    b: SimNode,
    gw: Gateway,
    listen: SocketAddr,
}

/// A primary and a backup of `kind` behind one listener, with fast checks and `extra` pool settings.
async fn setup(kind: NodeKind, extra: &str) -> Setup {
    let pki = Pki::new();
    let (pool, names) = match kind {
        NodeKind::Execution => ("execution", ["ec-a", "ec-b"]),
        NodeKind::Consensus => ("consensus", ["cc-a", "cc-b"]),
    };
    let a = pki.node(kind, names[0], NodeStatus::default()).await;
    let b = pki.node(kind, names[1], NodeStatus::default()).await;
    let (admin, listen) = (free_addr(), free_addr());
    let pools = pool_yaml_with(
        pool,
        pool,
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        extra,
    );
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\nserver: {{ grace_period: 1s, upgrade_socket: {dir}/upgrade.sock, pid_file: {dir}/ssv-ha.pid }}\nlisteners: [{{ address: \"{listen}\", max_websockets: 2 }}]\npools:\n{pools}routes: [{{ listener: \"{listen}\", pool: {pool} }}]\n",
        dir = pki.dir.path().display()
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend(pool, names[0], true).await;
    gw.wait_backend(pool, names[1], true).await;
    Setup {
        pki,
        a,
        b,
        gw,
        listen,
    }
}

/// Opens a WebSocket through the gateway, subscribes to newHeads; returns it and the serving node.
async fn subscribe(listen: SocketAddr) -> (Ws, String) {
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{listen}/"))
        .await
        .expect("WebSocket through the gateway");
    let node = response.headers()["x-sim-node"]
        .to_str()
        .unwrap()
        .to_string();
    ws.send(Message::Text(
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply = next_text(&mut ws).await.expect("subscription reply");
    assert!(reply["result"].is_string(), "{reply}");
    (ws, node)
}

/// The next JSON text message, or `None` when the connection ends.
async fn next_text(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no silence of 5 s")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// When the backend was last marked up or down, from `/status`.
async fn last_change(gw: &Gateway, pool: &str, backend: &str) -> SystemTime {
    let b = Gateway::backend_status(&gw.status().await, pool, backend);
    humantime::parse_rfc3339(b["last_change"].as_str().unwrap()).unwrap()
}

/// When the backend was marked down: waits until `/status` shows it down (read while it is still
/// up, `last_change` would be when it came up, long before any session ended).
async fn marked_down(gw: &Gateway, pool: &str, backend: &str) -> SystemTime {
    let b = gw.wait_backend(pool, backend, false).await;
    humantime::parse_rfc3339(b["last_change"].as_str().unwrap()).unwrap()
}

/// The session was still open when the gateway marked its backend down (`marked`) and closed
/// within 100 ms after. A session that had already ended before the mark was not cut by the
/// gateway (the node dropped it, or something else did): that is a failure, not "0 ms".
fn assert_cut_promptly(closed_at: SystemTime, marked: SystemTime) {
    let after = closed_at.duration_since(marked).unwrap_or_else(|early| {
        panic!(
            "the session closed {:?} before its backend was marked down: it was not the \
             gateway's cut",
            early.duration()
        )
    });
    assert!(
        after < Duration::from_millis(100),
        "the session closed {after:?} after its backend was marked down"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_is_cut_when_its_backend_goes_down_and_reconnects_to_the_backup() {
    let s = setup(NodeKind::Execution, "    failback_delay: 300ms\n").await;
    let (mut ws, node) = subscribe(s.listen).await;
    assert_eq!(node, "ec-a");
    s.a.new_head();
    assert_eq!(
        next_text(&mut ws).await.unwrap()["method"],
        "eth_subscription"
    );
    assert!(s.gw.metrics().await.contains(
        "ssv_ha_sessions_open{backend=\"ec-a\",kind=\"websocket\",pool=\"execution\"} 1"
    ));

    // The primary starts syncing while its socket stays open: the session must end.
    s.a.set(|st| st.syncing = true);
    let ended = next_text(&mut ws).await;
    let closed_at = SystemTime::now();
    assert!(
        ended.is_none(),
        "expected the session to end, got {ended:?}"
    );
    assert_cut_promptly(closed_at, marked_down(&s.gw, "execution", "ec-a").await);
    assert!(s.gw.metrics().await.contains(
        "ssv_ha_sessions_cut_total{backend=\"ec-a\",pool=\"execution\",reason=\"backend_down\"} 1"
    ));

    // The client reconnects: the backup serves it and pushes heads.
    let (mut ws, node) = subscribe(s.listen).await;
    assert_eq!(node, "ec-b");
    let head = s.b.new_head();
    let note = next_text(&mut ws).await.unwrap();
    assert_eq!(note["params"]["result"]["number"], format!("0x{head:x}"));

    // Fail-back: the primary is healthy again; after the delay the session on the backup ends
    // and the reconnect lands on the primary.
    s.a.set(|st| st.syncing = false);
    let up = Instant::now();
    assert!(
        next_text(&mut ws).await.is_none(),
        "the session on the backup should be moved back"
    );
    assert!(
        up.elapsed() >= Duration::from_millis(300),
        "fail-back came before its delay"
    );
    let (_ws, node) = subscribe(s.listen).await;
    assert_eq!(node, "ec-a");
    assert!(s.gw.metrics().await.contains("reason=\"failback\"} 1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_stream_is_cut_when_its_backend_goes_down_and_reconnects_to_the_backup() {
    // Fail-back off, with a short delay: had it been on, the gateway would move the session back
    // 500 ms after the primary recovers, well within the wait below.
    let s = setup(
        NodeKind::Consensus,
        "    failback: false\n    failback_delay: 500ms\n",
    )
    .await;
    let client = reqwest::Client::new();
    let open = || async {
        let r = client
            .get(format!("http://{}/eth/v1/events?topics=head", s.listen))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let node = r.headers()["x-sim-node"].to_str().unwrap().to_string();
        (r, node)
    };
    let (mut stream, node) = open().await;
    assert_eq!(node, "cc-a");
    s.a.new_head();
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains("event: head"));

    s.a.set(|st| st.el_offline = Some(true));
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                _ => return SystemTime::now(),
            }
        }
    })
    .await
    .expect("the stream should end");
    assert_cut_promptly(end, marked_down(&s.gw, "consensus", "cc-a").await);
    assert_eq!(
        metric(
            &s.gw.metrics().await,
            "ssv_ha_sessions_cut_total{backend=\"cc-a\",pool=\"consensus\",reason=\"backend_down\"}"
        ),
        1.0,
        "the gateway cut the stream"
    );

    let (mut stream, node) = open().await;
    assert_eq!(node, "cc-b");
    let slot = s.b.new_head();
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains(&format!("\"slot\":\"{slot}\"")));

    // With fail-back off, the stream stays on the backup when the primary recovers, also well
    // past failback_delay. No bare sleep: wait until the gateway has checked cc-a a full second
    // (twice the delay) after marking it up, cc-a up and the first choice throughout, so a
    // fail-back would have happened by then.
    s.a.set(|st| st.el_offline = Some(false));
    s.gw.wait_backend("consensus", "cc-a", true).await;
    let up_at = last_change(&s.gw, "consensus", "cc-a").await;
    let rfc3339 = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    wait_for(
        "a check of cc-a 1 s after it came up",
        Duration::from_secs(10),
        || async {
            let status = s.gw.status().await;
            let a = Gateway::backend_status(&status, "consensus", "cc-a");
            assert!(
                a["healthy"] == true && rfc3339(&a["last_change"]) == up_at,
                "cc-a must stay up for the wait to mean anything: {a:#}"
            );
            assert_eq!(status["pools"][0]["active"], "cc-a", "{status:#}");
            let checked = rfc3339(&a["last_check"]).duration_since(up_at).ok()?;
            (checked >= Duration::from_secs(1)).then_some(())
        },
    )
    .await;
    assert_eq!(
        metric(
            &s.gw.metrics().await,
            "ssv_ha_sessions_cut_total{backend=\"cc-b\",pool=\"consensus\",reason=\"failback\"}"
        ),
        0.0,
        "no session was moved back"
    );
    let slot = s.b.new_head();
    let chunk = match tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("no silence of 5 s")
    {
        Ok(Some(chunk)) => chunk,
        other => panic!("the stream on the backup ended with fail-back off: {other:?}"),
    };
    assert!(String::from_utf8_lossy(&chunk).contains(&format!("\"slot\":\"{slot}\"")));
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_sessions_are_capped_per_listener() {
    let s = setup(NodeKind::Execution, "").await;
    let (_one, _) = subscribe(s.listen).await;
    let (_two, _) = subscribe(s.listen).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/", s.listen)).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("a third WebSocket should be refused: {refused:?}");
    };
    assert_eq!(response.status(), 503);
    let body: Value =
        serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cap of 2 WebSocket sessions"),
        "{body}"
    );
    // Plain requests are not counted.
    assert_eq!(who_answers_on(s.listen).await, 200);
    drop(_one);
    // The slot frees when the session ends.
    wait_for("a free WebSocket slot", Duration::from_secs(5), || async {
        tokio_tungstenite::connect_async(format!("ws://{}/", s.listen))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

async fn who_answers_on(listen: SocketAddr) -> u16 {
    let (status, _, _) = post(
        &reqwest::Client::new(),
        &format!("http://{listen}/"),
        "x",
        &rpc("eth_blockNumber", 1),
    )
    .await;
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_sessions_at_once_and_exits_zero_within_the_grace_period() {
    let s = setup(NodeKind::Execution, "").await;
    let (mut ws, _) = subscribe(s.listen).await;
    let started = Instant::now();
    let terminate = tokio::task::spawn_blocking(move || s.gw.terminate());
    assert!(next_text(&mut ws).await.is_none(), "the session should end");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "sessions end at once, not after the grace period"
    );
    let status = terminate.await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(2) + Duration::from_millis(500),
        "exit took {:?} (grace 1 s)",
        started.elapsed()
    );
    drop(s.pki);
}

/// Passive health acts like active health: a backend that fails on live traffic (here a plain
/// request timing out) is taken down, and its sessions are cut at once, though no health check
/// ran in between.
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_taken_down_by_live_traffic_has_its_sessions_cut() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    // One check at start, the next an hour later: only live traffic can take ec-a down here.
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        "    health: { interval: 1h, timeout: 1s, rise: 1, fall: 1 }\n",
    );
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\ntimeouts: {{ response: 300ms }}\nlisteners: [{{ address: \"{listen}\" }}]\npools:\n{pools}routes: [{{ listener: \"{listen}\", pool: execution }}]\n"
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    let (mut ws, node) = subscribe(listen).await;
    assert_eq!(node, "ec-a");

    a.set(|st| st.delay_ms = 2000);
    let client = reqwest::Client::new();
    let (status, answered_by, _) = post(
        &client,
        &format!("http://{listen}/"),
        "rpc.example.com",
        &rpc("eth_blockNumber", 7),
    )
    .await;
    assert_eq!((status, answered_by.as_deref()), (200, Some("ec-b")));
    let down = Gateway::backend_status(&gw.status().await, "execution", "ec-a");
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed on live traffic")),
        "{down}"
    );
    assert_eq!(
        next_text(&mut ws).await,
        None,
        "the session on ec-a stayed open after live traffic took it down"
    );
}

/// A `ws_url` that refuses connections fails the WebSocket attempt (it goes to the next backend)
/// but not the node: the checks probe its `url`, which serves, so it keeps its plain traffic.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_ws_url_does_not_take_the_node_out() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let closed = free_addr();
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\nlisteners: [{{ address: \"{listen}\" }}]\npools:\n  execution:\n    kind: execution\n    ca: {ca}\n    health: {FAST_HEALTH}\n    backends:\n      - {{ name: ec-a, url: \"{a}\", ws_url: \"wss://localhost:{port}\" }}\n      - {{ name: ec-b, url: \"{b}\", backup: true }}\nroutes: [{{ listener: \"{listen}\", pool: execution }}]\n",
        ca = pki.ca_file.display(),
        a = a.url(),
        b = b.url(),
        port = closed.port(),
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    let (_ws, node) = subscribe(listen).await;
    assert_eq!(node, "ec-b", "the upgrade moved on to the next backend");
    let a_status = Gateway::backend_status(&gw.status().await, "execution", "ec-a");
    assert_eq!(a_status["state"], "up", "{a_status}");
    let (_, answered_by) = who_answers(&reqwest::Client::new(), listen).await;
    assert_eq!(answered_by.as_deref(), Some("ec-a"));
}

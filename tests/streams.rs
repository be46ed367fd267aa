//! Long-lived sessions through the gateway: WebSocket subscriptions and beacon SSE streams.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

struct Setup {
    _pki: Pki,
    ec: SimNode,
    cc: SimNode,
    gw: Gateway,
    ws_listen: std::net::SocketAddr,
    cc_listen: std::net::SocketAddr,
}

async fn setup(websocket_idle: &str) -> Setup {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let cc = pki
        .node(NodeKind::Consensus, "cc-a", NodeStatus::default())
        .await;
    let (admin, ws_listen, cc_listen) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
timeouts: {{ websocket_idle: {websocket_idle} }}
listeners:
  - {{ name: ws, address: "{ws_listen}" }}
  - {{ name: beacon, address: "{cc_listen}" }}
pools:
  execution:
    kind: execution
    ca: {ca}
    health: {FAST_HEALTH}
    backends:
      - {{ name: ec-a, url: "{ec_url}", ws_url: "{ws_url}/ws" }}
  consensus:
    kind: consensus
    ca: {ca}
    health: {FAST_HEALTH}
    backends: [{{ name: cc-a, url: "{cc_url}" }}]
routes:
  - {{ listener: ws, pool: execution }}
  - {{ listener: beacon, pool: consensus }}
"#,
        ca = pki.ca_file.display(),
        ec_url = ec.url(),
        ws_url = ec.ws_url(),
        cc_url = cc.url(),
    );
    let gw = Gateway::start(&yaml, admin, &[ws_listen, cc_listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    Setup {
        _pki: pki,
        ec,
        cc,
        gw,
        ws_listen,
        cc_listen,
    }
}

async fn connect_ws(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let request = format!("ws://{addr}/").into_client_request().unwrap();
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket through the gateway");
    assert_eq!(response.status(), 101);
    socket
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON message");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_subscription_receives_pushed_heads() {
    let s = setup("1h").await;
    let mut socket = connect_ws(s.ws_listen).await;
    socket
        .send(Message::Text(
            json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let reply = next_json(&mut socket).await;
    let subscription = reply["result"]
        .as_str()
        .expect("subscription id")
        .to_string();
    for _ in 0..3 {
        let head = s.ec.new_head();
        let note = next_json(&mut socket).await;
        assert_eq!(note["method"], "eth_subscription");
        assert_eq!(note["params"]["subscription"], subscription.as_str());
        assert_eq!(note["params"]["result"]["number"], format!("0x{head:x}"));
    }
    // Plain calls work on the same socket, and the upgrade went to the ws_url with its path.
    socket
        .send(Message::Text(rpc("eth_chainId", 2).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["result"], "0x1");
    let upgrade =
        s.ec.seen()
            .into_iter()
            .find(|r| !r.probe)
            .expect("the upgrade request");
    assert_eq!(upgrade.uri, "/ws/");
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_events_arrive_one_by_one_as_sent() {
    let s = setup("1h").await;
    let response = reqwest::get(format!(
        "http://{}/eth/v1/events?topics=head&topics=block",
        s.cc_listen
    ))
    .await
    .expect("SSE request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let seen =
        s.cc.seen()
            .into_iter()
            .find(|r| r.uri.starts_with("/eth/v1/events"))
            .unwrap();
    assert_eq!(
        seen.uri, "/eth/v1/events?topics=head&topics=block",
        "the query string passes untouched"
    );
    let mut response = response;
    let mut buffer = String::new();
    for _ in 0..3 {
        let slot = s.cc.new_head();
        let sent = Instant::now();
        // Each head arrives on its own, long before the next is produced.
        let expected = "event: block\ndata: {\"block\"";
        while !(buffer.contains(&format!("\"slot\":\"{slot}\"")) && buffer.contains(expected)) {
            let chunk = tokio::time::timeout(Duration::from_secs(2), response.chunk())
                .await
                .expect("the event was streamed, not buffered")
                .expect("stream readable")
                .expect("stream open");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "event took {:?}",
            sent.elapsed()
        );
        assert!(buffer.contains("event: head\n"), "{buffer}");
        buffer.clear();
    }
}

/// With a lowered idle limit: a quiet WebSocket outlives Pingora's usual cut-off pattern as long as
/// the limit allows, and is closed once it is exceeded.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_idle_timeout_comes_from_config() {
    let s = setup("2s").await;
    let mut socket = connect_ws(s.ws_listen).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    socket
        .send(Message::Text(rpc("eth_blockNumber", 1).to_string().into()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut socket).await["id"],
        1,
        "the socket survives 1.2 s of silence"
    );
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the idle socket should be closed after the 2 s limit"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "closed too early: {:?}",
        started.elapsed()
    );
}

/// The real thing: an idle WebSocket stays open past Pingora's default 60 s read timeout.
/// Slow; run with `cargo test -- --ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "takes 70 s"]
async fn idle_websocket_stays_open_past_60_seconds() {
    let s = setup("1h").await;
    let mut socket = connect_ws(s.ws_listen).await;
    tokio::time::sleep(Duration::from_secs(70)).await;
    socket
        .send(Message::Text(rpc("eth_blockNumber", 1).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["id"], 1);
    drop(s.gw);
}

/// Reads the stream until `needle` shows up; `None` when the stream ends first.
async fn read_until(
    response: &mut reqwest::Response,
    needle: &str,
    within: Duration,
) -> Option<String> {
    let mut text = String::new();
    tokio::time::timeout(within, async {
        while !text.contains(needle) {
            match response.chunk().await {
                Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
        Some(text.clone())
    })
    .await
    .unwrap_or_else(|_| panic!("`{needle}` did not arrive within {within:?}; got {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_keep_alive_comments_pass_through() {
    let s = setup("1h").await;
    s.cc.set(|st| st.sse_keep_alive_ms = Some(100));
    let mut response = reqwest::get(format!("http://{}/eth/v1/events?topics=head", s.cc_listen))
        .await
        .unwrap();
    assert!(
        read_until(&mut response, ": keep-alive", Duration::from_secs(2))
            .await
            .is_some()
    );
}

/// With a lowered idle limit: a silent SSE stream lives as long as the limit allows (it is not a
/// plain request's response timeout), then ends.
#[tokio::test(flavor = "multi_thread")]
async fn sse_idle_timeout_comes_from_config() {
    let s = setup("2s").await;
    let mut response = reqwest::get(format!("http://{}/eth/v1/events?topics=head", s.cc_listen))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let slot = s.cc.new_head();
    assert!(
        read_until(
            &mut response,
            &format!("\"slot\":\"{slot}\""),
            Duration::from_secs(1)
        )
        .await
        .is_some(),
        "the stream survives 1.2 s of silence"
    );
    let started = Instant::now();
    assert!(
        read_until(&mut response, "never sent", Duration::from_secs(6))
            .await
            .is_none(),
        "the silent stream ends"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "ended too early: {:?}",
        started.elapsed()
    );
}

/// The real thing: a silent SSE stream stays open past Pingora's 60 s downstream read timeout.
/// Slow; run with `cargo test -- --ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "takes 70 s"]
async fn silent_sse_stream_stays_open_past_60_seconds() {
    let s = setup("1h").await;
    let mut response = reqwest::get(format!("http://{}/eth/v1/events?topics=head", s.cc_listen))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(70)).await;
    let slot = s.cc.new_head();
    assert!(read_until(
        &mut response,
        &format!("\"slot\":\"{slot}\""),
        Duration::from_secs(2)
    )
    .await
    .is_some());
}

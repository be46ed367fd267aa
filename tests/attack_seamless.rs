//! Attacks on seamless WebSocket sessions and passthrough (issue 24, the attack helper): each
//! test shows a defect found (ignored while it is open).

mod common;

use common::seamless::*;
use common::wire::ws_handshake;
use common::*;
use std::time::Duration;

/// Whether `backend` of pool `execution` was ever marked down, and the retries counted.
async fn marked_down_and_retries(gw: &Gateway, backend: &str) -> (f64, f64) {
    let metrics = gw.metrics().await;
    let down = metric(
        &metrics,
        &format!(
            r#"ssv_ha_backend_transitions_total{{backend="{backend}",pool="execution",to="down"}}"#
        ),
    );
    let retries: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ssv_ha_retries_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    (down, retries)
}

/// A client that asks for a subprotocol (`Sec-WebSocket-Protocol`, which any browser page can
/// set) on a seamless pool whose nodes, as geth does, take no subprotocol and answer 101 without
/// one: the gateway's own handshake (tungstenite) calls that answer broken, and the node is
/// blamed for it ("failed on live traffic"), as the issue's item 1 was for a refusal. Under `cut`
/// the node's 101 goes to the client, which decides. Three such upgrades must leave the nodes in.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_asking_for_a_subprotocol_takes_no_node_out() {
    // Patient checks: a probe timing out on a busy machine would take a node out on its own.
    let s = setup(&format!("    health: {PATIENT_HEALTH}\n")).await;
    for _ in 0..3 {
        let (_socket, head) =
            ws_handshake(s.listen, "gateway.test", "sec-websocket-protocol: json\r\n").await;
        eprintln!("answer: {}", head.lines().next().unwrap_or_default());
    }
    // A live failure takes a node out at once; give the gauge a moment all the same.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for backend in ["ec-a", "ec-b"] {
        let (down, _) = marked_down_and_retries(&s.gw, backend).await;
        assert_eq!(
            down, 0.0,
            "{backend} was marked down by a client's subprotocol"
        );
    }
    let (_, retries) = marked_down_and_retries(&s.gw, "ec-a").await;
    assert_eq!(retries, 0.0, "the upgrade was retried on another node");
}

/// The gateway's resident memory, in bytes.
fn rss(gw: &Gateway) -> u64 {
    common::chaos::process_stats(gw.pid()).1 * 1024
}

/// A hostile WebSocket endpoint: takes one upgrade on `127.0.0.1:0`, answers 101, then hands the
/// socket to `then` (which never reads it unless it wants to).
async fn hostile_ws<F, Fut>(then: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_string())
            })
            .unwrap();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let answer = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n");
        s.write_all(answer.as_bytes()).await.unwrap();
        then(s).await;
    });
    addr
}

/// A node that sends pings and never reads its socket: each ping's pong was queued for it,
/// without bound (`BackendSocket`'s queue took control frames whatever `MAX_QUEUED_BYTES`
/// said), for the `SEND_DEADLINE` it has before the session leaves it (and for good, for a node
/// that takes a byte now and then). 300,000 pings of 125 bytes (38 MB sent) must not grow the
/// gateway by more than a few megabytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_flooding_pings_and_not_reading_does_not_grow_the_gateway() {
    use tokio::io::AsyncWriteExt;
    const PINGS: usize = 300_000;
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let hostile = hostile_ws(move |mut s| async move {
        let mut ping = vec![0x89u8, 125];
        ping.extend_from_slice(&[b'p'; 125]);
        let batch: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 1000)
            .collect();
        for _ in 0..PINGS / 1000 {
            if s.write_all(&batch).await.is_err() {
                return;
            }
        }
        let _ = sent_tx.send(());
        // Hold the connection, reading nothing.
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let s = setup_with_ws_url(hostile, &format!("    health: {PATIENT_HEALTH}\n")).await;
    let (gw, listen) = (&s.gw, s.listen);
    let before = rss(gw);
    let (_ws, _) = tokio_tungstenite::connect_async(format!("ws://{listen}/"))
        .await
        .expect("a WebSocket through the gateway");
    tokio::time::timeout(Duration::from_secs(8), sent_rx)
        .await
        .expect("the gateway read every ping before its send deadline")
        .unwrap();
    let grown = rss(gw).saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "the gateway grew by {} MiB holding pongs for a node that reads nothing",
        grown >> 20
    );
}

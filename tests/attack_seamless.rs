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
    let s = setup("").await;
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

//! `sessions: seamless` on a consensus pool: an SSE client's `/eth/v1/events` stream survives a
//! failover, and gets every slot once, in order.

mod common;

use common::seamless::cc_pair;
use common::*;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::time::Duration;

/// `(topic, slot)` of each event in the SSE text that is whole; the rest stays in `buffer`.
fn events(buffer: &mut String) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut topic = None;
        let mut slot = None;
        for line in block.lines() {
            if let Some(t) = line.strip_prefix("event:") {
                topic = Some(t.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                let data: serde_json::Value = serde_json::from_str(d.trim()).unwrap();
                slot = data["slot"].as_str().and_then(|s| s.parse().ok());
            }
        }
        if let (Some(topic), Some(slot)) = (topic, slot) {
            out.push((topic, slot));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_moves_to_the_backup_with_the_client_connected_and_every_slot_once() {
    let (_pki, a, b, gw, listen) = cc_pair("    failback_delay: 300ms\n").await;
    let admin = gw.admin;

    let mut response = reqwest::Client::new()
        .get(format!(
            "http://{listen}/eth/v1/events?topics=head&topics=block"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-sim-node"], "cc-a");
    let mut text = String::new();
    let mut got: Vec<(String, u64)> = Vec::new();
    macro_rules! read_until {
        ($last:expr) => {
            while !got.iter().any(|(t, s)| t == "block" && *s == $last) {
                let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
                    .await
                    .expect("an event within 5 s")
                    .unwrap()
                    .expect("the stream stayed open");
                text.push_str(&String::from_utf8_lossy(&chunk));
                got.extend(events(&mut text));
            }
        };
    }
    let gw = &gw;
    let open = |backend: &'static str| async move {
        let series =
            format!(r#"ssv_ha_sessions_open{{backend="{backend}",kind="sse",pool="consensus"}}"#);
        (metric(&gw.metrics().await, &series) == 1.0).then_some(())
    };
    wait_for("the stream on cc-a", Duration::from_secs(15), || {
        open("cc-a")
    })
    .await;
    for _ in 0..3 {
        a.new_head();
        b.new_head();
    }
    read_until!(1003);

    // The backup is two slots behind: its next two heads are ones the client has.
    b.set(|s| s.head = 1001);
    a.set(|s| s.syncing = true);
    gw.wait_backend("consensus", "cc-a", false).await;
    wait_for("the stream moved to cc-b", Duration::from_secs(15), || {
        open("cc-b")
    })
    .await;
    for _ in 0..4 {
        b.new_head();
    }
    read_until!(1005);

    // The primary recovers: after the fail-back delay the stream moves back to it.
    a.set(|s| {
        s.syncing = false;
        s.head = 1005;
    });
    wait_for("the stream back on cc-a", Duration::from_secs(15), || {
        open("cc-a")
    })
    .await;
    a.new_head();
    read_until!(1006);

    let expected: Vec<(String, u64)> = (1001..=1006)
        .flat_map(|slot| [("head".to_string(), slot), ("block".to_string(), slot)])
        .collect();
    assert_eq!(
        got, expected,
        "every slot once, in order, across the switch"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"ssv_ha_sessions_moved_total{kind="sse",pool="consensus",reason="backend_down"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ssv_ha_sessions_moved_total{kind="sse",pool="consensus",reason="failback"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ssv_ha_sessions_cut_total{backend="cc-a",pool="consensus",reason="backend_down"}"#
        ),
        0.0,
        "the stream was moved, not cut"
    );
    let status = gw.status().await;
    let pool = &status["pools"][0];
    assert_eq!(
        (pool["sessions"].as_str(), pool["sessions_moved"].as_u64()),
        (Some("seamless"), Some(2))
    );
    let page = reqwest::get(format!("http://{admin}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("2 moved so far"),
        "the status page shows the moves"
    );
}

/// At shutdown a seamless stream ends at once (the client reconnects to the process that took
/// over, or another replica) instead of holding the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn a_seamless_stream_ends_at_shutdown() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Consensus, "cc-a", NodeStatus::default())
        .await;
    let pools = pool_yaml_with(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&a, false)],
        "    sessions: seamless\n",
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\nserver: {{ grace_period: 20s, upgrade_socket: {dir}/upgrade.sock, pid_file: {dir}/ssv-ha.pid }}\nlisteners: [{{ address: \"{listen}\" }}]\npools:\n{pools}routes: [{{ listener: \"{listen}\", pool: consensus }}]\n",
        dir = pki.dir.path().display()
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    let mut response = reqwest::Client::new()
        .get(format!("http://{listen}/eth/v1/events?topics=head"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pid = gw.pid().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream stayed open into the 20 s grace period"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn backends_that_all_end_the_stream_at_once_end_the_clients_stream() {
    let (_pki, a, b, gw, listen) = cc_pair("").await;
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
    // Both stay healthy, but end every stream before its first event.
    a.set(|s| s.sse_end_at_once = true);
    b.set(|s| s.sse_end_at_once = true);
    a.drop_sessions();
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the client's stream ends instead of moving for ever"
    );
    let moved = metric(
        &gw.metrics().await,
        r#"ssv_ha_sessions_moved_total{kind="sse",pool="consensus",reason="backend_ended"}"#,
    );
    assert!(
        moved <= 2.0,
        "the stream moved {moved} times before it ended"
    );
}

/// A client that asks for an event stream and never reads it: a raw TCP connection with a small
/// receive buffer, so that the gateway's writes to it block after a few events.
async fn stalled_client(listen: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(listen).await.unwrap();
    stream
        .write_all(
            b"GET /eth/v1/events?topics=head HTTP/1.1\r\nhost: gateway\r\naccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    stream
}

/// Reads what the gateway had sent to a client that stopped reading, and returns once the
/// gateway closed the connection; panics if it still streams after `within`.
async fn closed_by_the_gateway(stream: &mut tokio::net::TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(within, async {
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the gateway still streams to the client after {within:?}"
    );
}

/// Waits until the gateway stopped taking events from `node` (its writes to a client that
/// stopped reading block, so it reads no more): no event produced for half a second.
async fn stalled(node: &SimNode) {
    let mut last = (node.events_sent(), std::time::Instant::now());
    wait_for(
        "the gateway to stop taking events",
        Duration::from_secs(15),
        || {
            let now = node.events_sent();
            if now != last.0 {
                last = (now, std::time::Instant::now());
            }
            let still = last.1.elapsed() >= Duration::from_millis(500);
            async move { still.then_some(()) }
        },
    )
    .await;
}

fn sse_open(metrics: &str, backend: &str) -> f64 {
    metric(
        metrics,
        &format!(r#"ssv_ha_sessions_open{{backend="{backend}",kind="sse",pool="consensus"}}"#),
    )
}

/// A client that stopped reading holds neither its backend nor its stream for good: at a
/// mark-down the backend's stream is let go at once (nothing moves for a client that takes
/// nothing), and the client's stream ends at the client write timeout (30 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stopped_reading_lets_go_of_its_backend_at_a_mark_down() {
    // Health checks that a busy machine does not fail by accident: this test is about a
    // mark-down it makes itself.
    let (_pki, a, b, gw, listen) =
        cc_pair("    health: { interval: 500ms, timeout: 450ms, rise: 1, fall: 2 }\n").await;
    a.set(|s| s.sse_flood_bytes = Some(16 * 1024));
    let mut client = stalled_client(listen).await;
    wait_for("the stream on cc-a", Duration::from_secs(15), || async {
        (a.open_event_streams() == 1 && sse_open(&gw.metrics().await, "cc-a") == 1.0).then_some(())
    })
    .await;
    stalled(&a).await;

    a.set(|s| s.syncing = true);
    gw.wait_backend("consensus", "cc-a", false).await;
    let marked = std::time::Instant::now();
    // At once, not at the client write timeout (30 s), which would end it anyway.
    wait_for(
        "cc-a's event stream to end at once after its mark-down",
        Duration::from_secs(5),
        || async { (a.open_event_streams() == 0).then_some(()) },
    )
    .await;
    let backend_let_go = marked.elapsed();
    wait_for(
        "the client's stream to end after the mark-down",
        Duration::from_secs(35),
        || async {
            let metrics = gw.metrics().await;
            (sse_open(&metrics, "cc-a") == 0.0 && sse_open(&metrics, "cc-b") == 0.0).then_some(())
        },
    )
    .await;
    let client_ended = marked.elapsed();
    closed_by_the_gateway(&mut client, Duration::from_secs(10)).await;
    assert_eq!(
        b.open_event_streams(),
        0,
        "a client that takes nothing is not moved"
    );
    eprintln!("after the mark-down: backend stream let go in {backend_let_go:?}, client's stream ended in {client_ended:?}");
}

/// At shutdown a stream to a client that stopped reading ends at once, its backend's too.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stopped_reading_ends_at_shutdown() {
    let pki = Pki::new();
    let a = pki
        .node(
            NodeKind::Consensus,
            "cc-a",
            NodeStatus {
                sse_flood_bytes: Some(16 * 1024),
                ..NodeStatus::default()
            },
        )
        .await;
    let pools = pool_yaml_with(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&a, false)],
        "    sessions: seamless\n    health: { interval: 500ms, timeout: 450ms, rise: 1, fall: 2 }\n",
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\nserver: {{ grace_period: 20s, upgrade_socket: {dir}/upgrade.sock, pid_file: {dir}/ssv-ha.pid }}\nlisteners: [{{ address: \"{listen}\" }}]\npools:\n{pools}routes: [{{ listener: \"{listen}\", pool: consensus }}]\n",
        dir = pki.dir.path().display()
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    let mut client = stalled_client(listen).await;
    wait_for("the stream on cc-a", Duration::from_secs(15), || async {
        (a.open_event_streams() == 1 && sse_open(&gw.metrics().await, "cc-a") == 1.0).then_some(())
    })
    .await;
    stalled(&a).await;
    std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    wait_for(
        "cc-a's event stream to end at shutdown (not at the 20 s grace period)",
        Duration::from_secs(10),
        || async { (a.open_event_streams() == 0).then_some(()) },
    )
    .await;
    closed_by_the_gateway(&mut client, Duration::from_secs(5)).await;
    drop(gw);
}

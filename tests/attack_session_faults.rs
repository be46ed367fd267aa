//! Attacks on the faults and long-lived paths of seamless sessions and passthrough (issue 24,
//! the second attack helper): event streams against odd backends and clients, WebSocket sessions
//! across faults, passthrough edges. Each test shows a defect found, or that one cannot happen.

mod common;

use common::seamless::cc_pair;
use common::*;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::time::Duration;

fn sse_moves(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("ssv_ha_sessions_moved_total{") && l.contains("kind=\"sse\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Two backends that greet each stream with a comment line (`: ok`) and then end it, before
/// any event: a comment is not an event delivered, so the client's stream must end as for
/// backends that end at once, not bounce between the two at full speed for good.
#[tokio::test(flavor = "multi_thread")]
async fn backends_that_send_only_a_comment_then_end_do_not_bounce_the_stream_for_good() {
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
    a.set(|s| s.sse_comment_then_end = true);
    b.set(|s| s.sse_comment_then_end = true);
    a.drop_sessions();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    let moved = sse_moves(&gw.metrics().await);
    assert!(
        ended.is_ok(),
        "the client's stream still open after 10 s, moved {moved} times"
    );
    assert!(
        moved <= 2.0,
        "the stream moved {moved} times before it ended"
    );
}

/// A stream on `cc-a` whose backup `cc-b` is slow to answer a client's request (60 s; its
/// health checks pass): `cc-a` is marked down, and the stream's move waits on `cc-b`'s answer.
/// Returns the client's response and when `cc-b` was asked.
async fn moving_to_a_slow_backup(
    a: &SimNode,
    b: &SimNode,
    gw: &Gateway,
    listen: SocketAddr,
) -> reqwest::Response {
    b.set(|s| s.client_delay_ms = 60_000);
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
    a.set(|s| s.syncing = true);
    gw.wait_backend("consensus", "cc-a", false).await;
    wait_for("the move to ask cc-b", Duration::from_secs(10), || async {
        (b.client_requests() >= 1).then_some(())
    })
    .await;
    response
}

/// Shutdown while a stream's move waits on a backend slow to answer: the stream ends at once,
/// as the docs say of shutdown, not after the backend's answer or the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_during_a_move_to_a_slow_backend_ends_the_stream_at_once() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Consensus, "cc-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Consensus, "cc-b", NodeStatus::default())
        .await;
    let pools = pool_yaml_with(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        "    sessions: seamless\n",
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\nserver: {{ grace_period: 20s, upgrade_socket: {dir}/upgrade.sock, pid_file: {dir}/ssv-ha.pid }}\nlisteners: [{{ address: \"{listen}\" }}]\npools:\n{pools}routes: [{{ listener: \"{listen}\", pool: consensus }}]\n",
        dir = pki.dir.path().display()
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    gw.wait_backend("consensus", "cc-b", true).await;
    let mut response = moving_to_a_slow_backup(&a, &b, &gw, listen).await;
    std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream stayed open after shutdown while its move waited on a slow backend"
    );
    drop(gw);
}

/// The backend a stream's move waits on is marked down meanwhile, and the first comes back:
/// the move does not wait out the slow backend's answer (or the response timeout, 120 s) with
/// the client fed nothing, but goes on to the healthy one.
#[tokio::test(flavor = "multi_thread")]
async fn a_move_waiting_on_a_backend_that_is_marked_down_goes_on() {
    let (_pki, a, b, gw, listen) = cc_pair("    failback: false\n").await;
    let mut response = moving_to_a_slow_backup(&a, &b, &gw, listen).await;
    a.set(|s| s.syncing = false);
    gw.wait_backend("consensus", "cc-a", true).await;
    b.set(|s| s.syncing = true);
    gw.wait_backend("consensus", "cc-b", false).await;
    let since = std::time::Instant::now();
    let mut text = String::new();
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            a.new_head();
            tokio::select! {
                chunk = response.chunk() => match chunk {
                    Ok(Some(bytes)) => {
                        text.push_str(&String::from_utf8_lossy(&bytes));
                        if text.matches("event:").count() >= 1 {
                            return true;
                        }
                    }
                    _ => return false,
                },
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    })
    .await;
    assert_eq!(
        event,
        Ok(true),
        "no event from cc-a {:?} after cc-b was marked down (got {text:?})",
        since.elapsed()
    );
}

/// A gateway in front of three simulated consensus nodes, `cc-a` and its backups `cc-b` and
/// `cc-c` (tried in that order), in a `sessions: seamless` pool, all healthy.
async fn consensus_three() -> (Pki, [SimNode; 3], Gateway, SocketAddr) {
    let pki = Pki::new();
    let mut nodes = Vec::new();
    for name in ["cc-a", "cc-b", "cc-c"] {
        nodes.push(
            pki.node(NodeKind::Consensus, name, NodeStatus::default())
                .await,
        );
    }
    let pools = pool_yaml_with(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&nodes[0], false), (&nodes[1], true), (&nodes[2], true)],
        "    sessions: seamless\n    failback: false\n",
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = config(
        admin,
        listen,
        &pools,
        &format!("  - {{ listener: \"{listen}\", pool: consensus }}\n"),
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    for node in &nodes {
        gw.wait_backend("consensus", node.name(), true).await;
    }
    let Ok(nodes) = <[SimNode; 3]>::try_from(nodes) else {
        unreachable!("three nodes")
    };
    (pki, nodes, gw, listen)
}

/// A move whose next backend is slow to answer (60 s, healthy to its checks) does not wait it
/// out with the client fed nothing: past its share of the move's time (5 s of 10) the stream
/// goes on to the backend after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_move_past_a_slow_backend_goes_on_to_the_next() {
    let (_pki, [a, b, c], gw, listen) = consensus_three().await;
    let mut response = moving_to_a_slow_backup(&a, &b, &gw, listen).await;
    let since = std::time::Instant::now();
    let mut text = String::new();
    let event = tokio::time::timeout(Duration::from_secs(12), async {
        loop {
            // Both backups at the same head: neither is marked down for lagging.
            b.new_head();
            c.new_head();
            tokio::select! {
                chunk = response.chunk() => match chunk {
                    Ok(Some(bytes)) => {
                        text.push_str(&String::from_utf8_lossy(&bytes));
                        if text.contains("event:") {
                            return true;
                        }
                    }
                    _ => return false,
                },
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    })
    .await;
    assert_eq!(
        event,
        Ok(true),
        "no event from cc-c {:?} after the move asked the slow cc-b (got {text:?})",
        since.elapsed()
    );
    assert!(
        since.elapsed() < Duration::from_secs(10),
        "the move took {:?}",
        since.elapsed()
    );
}

/// A move no backend takes within the move's time (10 s, as a WebSocket's): the stream ends,
/// with a comment that says why, instead of waiting on slow backends up to the response
/// timeout (120 s) with the client fed nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_move_no_backend_takes_in_time_ends_the_stream_with_the_reason() {
    let (_pki, [a, b, c], gw, listen) = consensus_three().await;
    c.set(|s| s.client_delay_ms = 60_000);
    let mut response = moving_to_a_slow_backup(&a, &b, &gw, listen).await;
    let since = std::time::Instant::now();
    let mut text = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(14), async {
        while let Ok(Some(bytes)) = response.chunk().await {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream still open {:?} into a move to slow backends (got {text:?})",
        since.elapsed()
    );
    assert!(
        text.contains(": no backend took this stream in time; reconnect"),
        "the stream ended without its reason: {text:?}"
    );
}

/// The gateway's CPU time so far (user and system), from its `/proc` stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis: state is the 3rd field, utime the 14th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// A gateway with a passthrough listener (`listener`: its settings after the mode) in front of
/// one simulated TLS node; (gateway, listener address, node, its CA).
async fn passthrough_gateway(listener: &str) -> (Gateway, SocketAddr, SimNode, Pki) {
    let pki = Pki::new();
    let node = pki
        .node(NodeKind::Execution, "a", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        r#"admin: {{ address: "{admin}" }}
listeners:
  - {{ name: tls, address: "{listen}", mode: passthrough{listener} }}
pools:
  execution:
    kind: execution
    ca: {ca}
    health: {FAST_HEALTH}
    backends:
      - {{ name: a, url: "{url}" }}
routes:
  - {{ host: rpc-lb.test, listener: tls, pool: execution }}
"#,
        url = node.url(),
        ca = pki.ca_file.display(),
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    (gw, listen, node, pki)
}

/// A ClientHello that claims 60 KiB, sent in one-byte TLS records (six bytes each on the wire,
/// as TLS allows), ten records at a time: the gateway must look at each record once, not
/// again at every read (which costs it the square of the records, a CPU amplifier any client
/// can use from one address).
#[tokio::test(flavor = "multi_thread")]
async fn a_hello_in_one_byte_records_costs_the_gateway_little_cpu() {
    use tokio::io::AsyncWriteExt;
    const CONNECTIONS: usize = 8;
    let (gw, listen, _node, _pki) = passthrough_gateway(", hello_timeout: 30s").await;
    let before = cpu_time(gw.pid());
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = tokio::net::TcpStream::connect(listen).await.unwrap();
                c.set_nodelay(true).unwrap();
                // The handshake header: a ClientHello of 0x00f000 bytes, one byte per record.
                let mut payload = vec![0x01u8, 0x00, 0xf0, 0x00];
                payload.resize(11_000, 0);
                let records: Vec<u8> = payload
                    .iter()
                    .flat_map(|&b| [0x16, 0x03, 0x01, 0x00, 0x01, b])
                    .collect();
                for batch in records.chunks(60) {
                    if c.write_all(batch).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let spent = cpu_time(gw.pid()).saturating_sub(before);
    eprintln!("{CONNECTIONS} hellos in one-byte records cost the gateway {spent:?} of CPU");
    assert!(
        spent < Duration::from_millis(1000),
        "{CONNECTIONS} hellos in one-byte records cost the gateway {spent:?} of CPU"
    );
}

/// A client that asks for an event stream and never reads it (a small receive buffer, so the
/// gateway's writes to it block after a few events).
async fn stalled_client(listen: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(listen).await.unwrap();
    stream
        .write_all(b"GET /eth/v1/events?topics=head HTTP/1.1\r\nhost: gateway\r\n\r\n")
        .await
        .unwrap();
    stream
}

/// A reload that replaces the pool while a write to a client that stopped reading waits: the
/// stream and its backend's end at once, not at the client write timeout (30 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_ends_a_stream_whose_client_stopped_reading() {
    let (_pki, a, _b, gw, listen) =
        cc_pair("    health: { interval: 500ms, timeout: 450ms, rise: 1, fall: 2 }\n").await;
    a.set(|s| s.sse_flood_bytes = Some(16 * 1024));
    let _client = stalled_client(listen).await;
    wait_for("the stream on cc-a", Duration::from_secs(15), || async {
        (a.open_event_streams() == 1).then_some(())
    })
    .await;
    // The gateway stopped taking events: its write to the client waits.
    let mut last = (a.events_sent(), std::time::Instant::now());
    wait_for("the writes to block", Duration::from_secs(15), || {
        let now = a.events_sent();
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
        let still = last.1.elapsed() >= Duration::from_millis(500);
        async move { still.then_some(()) }
    })
    .await;
    let yaml = std::fs::read_to_string(&gw.config_path).unwrap();
    let changed = yaml.replace(
        "sessions: seamless",
        "sessions: seamless\n    failback_delay: 7s",
    );
    assert_ne!(yaml, changed);
    std::fs::write(&gw.config_path, changed).unwrap();
    let reloaded = reqwest::Client::new()
        .post(format!("http://{}/reload", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
    wait_for(
        "cc-a's event stream to end at the reload",
        Duration::from_secs(5),
        || async { (a.open_event_streams() == 0).then_some(()) },
    )
    .await;
}

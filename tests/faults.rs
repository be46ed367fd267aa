//! Faults of a real network and of real load: an expensive call that outlasts the response
//! timeout on every node, and kept-alive backend connections that a middlebox forgot while idle.

mod common;

use common::recorder::{Recorder, GATEWAY_TIMEOUT_METHOD, SLOW_METHOD, TOO_LARGE_METHOD};
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "rpc.example.com";

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_outlasts_the_response_timeout_everywhere_never_empties_the_pool() {
    let (_a, _b, gw, listen, log) = primary_and_backup(1).await;
    // (`rise: 5` keeps a backend taken down out for a second: long enough for the slow call to
    // time out on the other one meanwhile, which is then the pool's last.)
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/");
    // Other clients call all along, and the pool is watched: it never has no healthy backend.
    let calling = Arc::new(AtomicBool::new(true));
    let others = {
        let (calling, client, url, admin) =
            (calling.clone(), client.clone(), url.clone(), gw.admin);
        tokio::spawn(async move {
            let mut served = 0;
            while calling.load(Ordering::Relaxed) {
                let (status, _, reply) = post(&client, &url, HOST, &rpc("eth_chainId", 1)).await;
                assert_eq!(status, 200, "another client was refused: {reply}");
                assert_eq!(reply["result"], "0x1", "{reply}");
                let status: serde_json::Value = reqwest::get(format!("http://{admin}/status"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(
                    !healthy(&status).is_empty(),
                    "the pool was left with no healthy backend: {status}"
                );
                served += 1;
            }
            served
        })
    };
    for i in 0..3 {
        let (status, _, reply) = post(&client, &url, HOST, &rpc(SLOW_METHOD, i)).await;
        assert_eq!(status, 502, "{reply}");
        assert_eq!(
            reply["id"], i,
            "the slow call gets an error with its id: {reply}"
        );
    }
    calling.store(false, Ordering::Relaxed);
    assert!(others.await.unwrap() > 0);
    // The gateway says what it thinks the cause is.
    let lines: Vec<String> = log.try_iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("last healthy backend") && l.contains(SLOW_METHOD)),
        "no log line names the request as the likely cause"
    );
}

/// A TCP relay that, like a NAT or IPVS, forgets a flow idle for longer than `forget_after`:
/// what is sent on it afterwards is dropped without a reset.
async fn forgetful_relay(to: SocketAddr, forget_after: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let last = Arc::new(std::sync::Mutex::new(Instant::now()));
            let forgotten = Arc::new(AtomicBool::new(false));
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            for (mut from, mut to) in [
                (
                    Box::new(ri) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(wo) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                ),
                (Box::new(ro), Box::new(wi)),
            ] {
                let (last, forgotten) = (last.clone(), forgotten.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = match from.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let idle = {
                            let mut last = last.lock().unwrap();
                            let idle = last.elapsed();
                            *last = Instant::now();
                            idle
                        };
                        if idle > forget_after {
                            forgotten.store(true, Ordering::Relaxed);
                        }
                        if forgotten.load(Ordering::Relaxed) {
                            continue;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_network_forgot_while_idle_costs_no_request_and_no_health() {
    let backend = Recorder::start().await;
    let relay = forgetful_relay(backend.addr, Duration::from_millis(600)).await;
    // Probes go straight to the node; traffic goes through the relay, which forgets flows idle
    // for 600 ms. The gateway keeps idle connections for 300 ms.
    let pools = format!(
        "  execution:\n    kind: execution\n    health: {{ interval: 10s, timeout: 1s, rise: 1, fall: 1 }}\n    backends:\n      - {{ name: ec-a, url: \"http://{relay}/\" }}\n"
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        "timeouts: {{ response: 5s, backend_idle: 300ms }}\n{}",
        config(admin, listen, &pools, EC_ROUTE)
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/");
    for round in 0..3 {
        assert_eq!(
            post(&client, &url, HOST, &rpc("eth_chainId", round))
                .await
                .0,
            200
        );
        // Quiet for longer than the relay remembers a flow.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let started = Instant::now();
        let (status, _, reply) = post(&client, &url, HOST, &rpc("eth_chainId", round)).await;
        assert_eq!(status, 200, "{reply}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the call after a quiet spell took {:?}: it went on a forgotten connection",
            started.elapsed()
        );
    }
    let entry = gw.wait_backend("execution", "ec-a", true).await;
    assert_eq!(entry["state"], "up");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "ssv_ha_retries_total{pool=\"execution\"}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_head_does_not_make_the_healthy_nodes_lag() {
    use ssv_ha::sim::{NodeKind, NodeStatus};
    let pki = Pki::new();
    let at = |head: u64| NodeStatus {
        head,
        ..NodeStatus::default()
    };
    let a = pki.node(NodeKind::Execution, "ec-a", at(1000)).await;
    let b = pki.node(NodeKind::Execution, "ec-b", at(1001)).await;
    let c = pki.node(NodeKind::Execution, "ec-c", at(1000)).await;
    let fork = pki.node(NodeKind::Execution, "fork", at(9000)).await;
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, false), (&c, false), (&fork, false)],
    );
    let (gw, _) = start_on(&pools, EC_ROUTE).await;
    for name in ["ec-a", "ec-b", "ec-c"] {
        gw.wait_backend("execution", name, true).await;
    }
    let entry = gw.wait_backend("execution", "fork", false).await;
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("ahead of every other node"),
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_whose_first_node_is_on_another_chain_ends_up_on_the_majority_s() {
    use ssv_ha::sim::{NodeKind, NodeStatus};
    let pki = Pki::new();
    let wrong = pki
        .node(
            NodeKind::Execution,
            "early-wrong",
            NodeStatus {
                chain_id: 5,
                ..NodeStatus::default()
            },
        )
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let c = pki
        .node(NodeKind::Execution, "ec-c", NodeStatus::default())
        .await;
    b.go_down();
    c.go_down();
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&wrong, false), (&b, false), (&c, false)],
    );
    let (gw, _) = start_on(&pools, EC_ROUTE).await;
    // Alone and undisputed, the early node serves; nothing is decided by it.
    gw.wait_backend("execution", "early-wrong", true).await;
    b.come_back().unwrap();
    c.come_back().unwrap();
    gw.wait_backend("execution", "ec-b", true).await;
    gw.wait_backend("execution", "ec-c", true).await;
    let entry = gw.wait_backend("execution", "early-wrong", false).await;
    assert_eq!(
        entry["reason"],
        "wrong network: chain id 5, the pool agreed on chain id 1 (ec-b, ec-c)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn execution_nodes_stalled_together_both_go_down_with_a_reason() {
    use ssv_ha::sim::{NodeKind, NodeStatus};
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    // The default max_head_age (2 minutes) applies.
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
    );
    let (gw, _) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    // Their consensus client died: same head, no new block for five minutes.
    for node in [&a, &b] {
        node.set(|s| s.head_age_s = 300);
    }
    for name in ["ec-a", "ec-b"] {
        let entry = gw.wait_backend("execution", name, false).await;
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.contains("latest block is") && reason.contains("max_head_age 120 s"),
            "{entry}"
        );
    }
}

/// A primary and a backup recorder behind a gateway with a 500 ms response timeout; health
/// checks every 200 ms with `fall` as given and `rise: 5` (a backend taken down stays out a
/// second).
async fn primary_and_backup(
    fall: u32,
) -> (
    Recorder,
    Recorder,
    Gateway,
    SocketAddr,
    std::sync::mpsc::Receiver<String>,
) {
    let (a, b) = (Recorder::start().await, Recorder::start().await);
    let pools = format!(
        "  execution:\n    kind: execution\n    policy: first\n    health: {{ interval: 200ms, timeout: 150ms, rise: 5, fall: {fall} }}\n    backends:\n{}{}",
        a.backend_yaml("ec-a"),
        b.backend_yaml("ec-b").replace(" }", ", backup: true }")
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        "timeouts: {{ response: 500ms }}\n{}",
        config(admin, listen, &pools, EC_ROUTE)
    );
    let (gw, log) = Gateway::start_logged(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    (a, b, gw, listen, log)
}

fn healthy(status: &serde_json::Value) -> Vec<String> {
    status["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["healthy"] == true)
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

async fn status_of(client: &reqwest::Client, url: &str, method: &str, id: u64) -> u16 {
    client
        .post(url)
        .header("host", HOST)
        .json(&rpc(method, id))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_counts_as_one_failed_check_not_a_take_down() {
    let (_a, _b, gw, listen, _log) = primary_and_backup(2).await;
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/");
    assert_eq!(status_of(&client, &url, SLOW_METHOD, 1).await, 502);
    // One timeout on each: one failed check's worth of `fall: 2`, so both stay in.
    assert_eq!(healthy(&gw.status().await), ["ec-a", "ec-b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_pages_the_request_draws_from_every_node_never_empty_the_pool() {
    let (_a, _b, gw, listen, log) = primary_and_backup(1).await;
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/");
    for i in 0..3 {
        // The nodes' proxies answer 504 (the call outlasts their timeout).
        assert_eq!(
            status_of(&client, &url, GATEWAY_TIMEOUT_METHOD, i).await,
            504
        );
        assert!(
            !healthy(&gw.status().await).is_empty(),
            "the pool was emptied"
        );
        assert_eq!(status_of(&client, &url, "eth_chainId", i).await, 200);
    }
    let lines: Vec<String> = log.try_iter().collect();
    assert!(lines
        .iter()
        .any(|l| l.contains("last healthy backend") && l.contains(GATEWAY_TIMEOUT_METHOD)));
    // A body the node's proxy refuses as too large is the request's doing: passed on, neither
    // counted nor retried.
    let retries = "ssv_ha_retries_total{pool=\"execution\"}";
    let retried = metric(&gw.metrics().await, retries);
    let before = healthy(&gw.status().await);
    assert_eq!(status_of(&client, &url, TOO_LARGE_METHOD, 9).await, 413);
    assert_eq!(healthy(&gw.status().await), before);
    assert_eq!(metric(&gw.metrics().await, retries), retried, "not retried");
}

/// Reads one HTTP/1.1 answer (a Content-Length or chunked body) from `buf`, filled from `s`.
async fn next_answer(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> (u16, String) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            let body_start = end + 4;
            if let Some(length) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
            {
                if buf.len() >= body_start + length {
                    let body =
                        String::from_utf8_lossy(&buf[body_start..body_start + length]).into_owned();
                    buf.drain(..body_start + length);
                    return (status, body);
                }
            } else if head.contains("transfer-encoding: chunked") {
                // Whole when the last chunk is in.
                let rest = &buf[body_start..];
                if let Some(last) = rest.windows(5).position(|w| w == b"0\r\n\r\n") {
                    let mut body = String::new();
                    let mut chunks = String::from_utf8_lossy(&rest[..last]).into_owned();
                    while let Some((size, tail)) = chunks.split_once("\r\n") {
                        let size = usize::from_str_radix(size, 16).unwrap();
                        body.push_str(&tail[..size]);
                        chunks = tail[size + 2..].to_string();
                    }
                    buf.drain(..body_start + last + 5);
                    return (status, body);
                }
            } else {
                buf.drain(..body_start);
                return (status, String::new());
            }
        }
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "the connection closed with answers missing");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_get_every_answer_in_order() {
    let backend = Recorder::start().await;
    let pools = format!(
        "  execution:\n    kind: execution\n    health: {FAST_HEALTH}\n    backends:\n{}",
        backend.backend_yaml("ec-a")
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    let post = |id: usize, method: &str, params: &str| {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":["{params}"]}}"#);
        format!(
            "POST / HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut requests = String::new();
    for id in 0..8 {
        requests.push_str(&match id {
            3 => format!("GET / HTTP/1.1\r\nhost: {HOST}\r\n\r\n"),
            5 => post(id, "eth_chainId", &"x".repeat(70_000)),
            // Answered by the gateway itself; the connection goes on.
            6 => post(id, "admin_peers", ""),
            _ => post(id, "eth_chainId", ""),
        });
    }
    let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
    // All eight at once, before any answer.
    s.write_all(requests.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    for id in 0..8 {
        let (status, body) = next_answer(&mut s, &mut buf).await;
        assert_eq!(status, 200, "answer {id}: {body}");
        if id != 3 {
            let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(reply["id"], id, "answers in order");
            assert_eq!(reply["error"].is_object(), id == 6, "{reply}");
        }
    }
}

//! Hedged reads (`hedge:` of a pool): a read the first backend is slow to answer goes to a second
//! one after the pool's delay, and the first answer wins; writes are never sent twice; the slow
//! node is not charged for being overtaken; a loser's connection is never used again.
//!
//! Run with `cargo test --test hedge`.

mod common;

use common::*;
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RPC: &str = "rpc.example.com";
const FAST: &str = "fast.example.com";
/// Health checks quick to pass, slow to fail: a loaded machine slows the probes too.
/// Held by the tests that time reads and the test that floods the gateway, so that they do not
/// run at once.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const STEADY_HEALTH: &str = "{ interval: 1s, timeout: 900ms, rise: 1, fall: 3 }";

/// A pool `execution` of `a` then `b` (policy `first`) hedging after `delay`, on `RPC`, and a
/// pool `fast` of `b` alone on `FAST`, to measure the fast node through the gateway.
async fn slow_and_fast(pki: &Pki, a: &SimNode, b: &SimNode, delay: &str) -> (Gateway, String) {
    let hedge = format!("    hedge: {{ delay: {delay}, max: 1 }}\n    health: {STEADY_HEALTH}\n");
    let mut pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(a, false), (b, false)],
        &hedge,
    );
    let alone = pool_yaml_with(
        "fast",
        "execution",
        "first",
        &pki.ca_file,
        &[(b, false)],
        &format!("    health: {STEADY_HEALTH}\n"),
    );
    pools.push_str(&alone.replace("ec-b", "ec-b-alone"));
    let routes = format!("{EC_ROUTE}  - {{ host: {FAST}, pool: fast }}\n");
    let (gw, listen) = start_on(&pools, &routes).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    gw.wait_backend("fast", "ec-b-alone", true).await;
    (gw, format!("http://{listen}/"))
}

async fn execution_nodes(pki: &Pki, a_delay_ms: u64) -> (SimNode, SimNode) {
    let slow = NodeStatus {
        client_delay_ms: a_delay_ms,
        ..NodeStatus::default()
    };
    let a = pki.node(NodeKind::Execution, "ec-a", slow).await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    (a, b)
}

/// The 99th percentile of `samples` (the largest but 1 in 100).
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// Times `n` sequential reads to `host`, each answered 200 with its own id.
async fn timed_reads(client: &reqwest::Client, url: &str, host: &str, n: u64) -> Vec<Duration> {
    let mut samples = Vec::new();
    for id in 0..n {
        let started = Instant::now();
        let (status, _, body) = post(client, url, host, &rpc("eth_blockNumber", id)).await;
        samples.push(started.elapsed());
        assert_eq!((status, &body["id"]), (200, &json!(id)), "{body}");
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_node_costs_a_read_the_hedge_delay_and_stays_healthy() {
    let _alone = TIMING.lock().await;
    let pki = Pki::new();
    let (a, b) = execution_nodes(&pki, 2000).await;
    let (gw, url) = slow_and_fast(&pki, &a, &b, "200ms").await;
    let client = reqwest::Client::new();
    let fast = p99(timed_reads(&client, &url, FAST, 50).await);
    let hedged = p99(timed_reads(&client, &url, RPC, 50).await);
    let bound = Duration::from_millis(200) + fast + Duration::from_millis(100);
    assert!(
        hedged <= bound,
        "p99 {hedged:?} through the hedging pool, over {bound:?} (the fast node's p99 {fast:?})"
    );
    assert!(
        a.client_requests() >= 50,
        "every read went to the slow node first"
    );
    // The slow node lost 50 races and was charged nothing: it stays up, never went down.
    let status = gw.status().await;
    let slow = Gateway::backend_status(&status, "execution", "ec-a");
    assert_eq!(slow["healthy"], true, "{slow:#}");
    let text = gw.metrics().await;
    let down = "ssv_ha_backend_transitions_total{backend=\"ec-a\",pool=\"execution\",to=\"down\"}";
    assert_eq!(metric(&text, down), 0.0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hedges_sent_and_their_winners_are_counted() {
    let pki = Pki::new();
    let (a, b) = execution_nodes(&pki, 1000).await;
    let (gw, url) = slow_and_fast(&pki, &a, &b, "100ms").await;
    let client = reqwest::Client::new();
    // The first node is slow: each read (one the cache never keeps) is hedged and the hedge wins.
    for id in 0..5 {
        let (_, node, _) = post(&client, &url, RPC, &rpc("eth_blockNumber", id)).await;
        assert_eq!(node.as_deref(), Some("ec-b"));
    }
    // Both are slow, the hedge slower: each read is hedged and the first wins.
    a.set(|s| s.client_delay_ms = 300);
    b.set(|s| s.client_delay_ms = 2000);
    for id in 0..3 {
        let (_, node, _) = post(&client, &url, RPC, &rpc("eth_blockNumber", id)).await;
        assert_eq!(node.as_deref(), Some("ec-a"));
    }
    // Neither is slow: nothing is hedged, nothing counted.
    a.set(|s| s.client_delay_ms = 0);
    b.set(|s| s.client_delay_ms = 0);
    post(&client, &url, RPC, &rpc("eth_blockNumber", 9)).await;
    let text = gw.metrics().await;
    let series = |s: &str| metric(&text, s);
    assert_eq!(
        series("ssv_ha_hedges_total{pool=\"execution\"}"),
        8.0,
        "{text}"
    );
    assert_eq!(
        series("ssv_ha_hedge_wins_total{pool=\"execution\",winner=\"hedge\"}"),
        5.0
    );
    assert_eq!(
        series("ssv_ha_hedge_wins_total{pool=\"execution\",winner=\"first\"}"),
        3.0
    );
    assert_eq!(series("ssv_ha_retries_total{pool=\"execution\"}"), 0.0);
    assert_eq!(series("ssv_ha_hedges_total{pool=\"fast\"}"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_hedged_only_when_every_call_reads() {
    let pki = Pki::new();
    let (a, b) = execution_nodes(&pki, 1000).await;
    let (gw, url) = slow_and_fast(&pki, &a, &b, "100ms").await;
    let client = reqwest::Client::new();
    let reads = json!([rpc("eth_blockNumber", 1), rpc("eth_chainId", 2)]);
    let started = Instant::now();
    let (status, node, _) = post(&client, &url, RPC, &reads).await;
    assert_eq!((status, node.as_deref()), (200, Some("ec-b")));
    assert!(started.elapsed() < Duration::from_millis(900));
    let raw =
        json!({"jsonrpc": "2.0", "id": 4, "method": "eth_sendRawTransaction", "params": ["0x02"]});
    let with_write = json!([rpc("eth_blockNumber", 3), raw]);
    let started = Instant::now();
    let (status, node, _) = post(&client, &url, RPC, &with_write).await;
    assert_eq!((status, node.as_deref()), (200, Some("ec-a")));
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let sent = b.rpc_methods();
    assert!(
        !sent.iter().any(|m| m == "eth_sendRawTransaction"),
        "{sent:?}"
    );
    let text = gw.metrics().await;
    assert_eq!(
        metric(&text, "ssv_ha_hedges_total{pool=\"execution\"}"),
        1.0
    );
}

/// What a raw test backend saw: each client request's body with the connection it came on, and
/// the connections that ended.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(usize, Value)>>,
    closed: Mutex<Vec<usize>>,
}

/// A plain-TCP execution backend: answers the health probe at once and every other call after
/// its delay (`delay_ms`, changed while it runs), with the call's id and `NAME:CONNECTION` as the
/// result, so that a test knows which connection carried each answer; or, when `status` is set
/// to another status than 200, with that status and an HTML page (a node's proxy failing).
struct RawBackend {
    addr: SocketAddr,
    seen: Arc<Seen>,
    delay_ms: Arc<AtomicU64>,
    status: Arc<AtomicU16>,
}

/// What a raw backend's connections share.
#[derive(Clone)]
struct Behaviour {
    name: &'static str,
    seen: Arc<Seen>,
    delay_ms: Arc<AtomicU64>,
    status: Arc<AtomicU16>,
}

impl RawBackend {
    async fn start(name: &'static str, delay_ms: u64) -> RawBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Behaviour {
            name,
            seen: Arc::default(),
            delay_ms: Arc::new(AtomicU64::new(delay_ms)),
            status: Arc::new(AtomicU16::new(200)),
        };
        let shared = behaviour.clone();
        tokio::spawn(async move {
            let connections = AtomicUsize::new(0);
            while let Ok((s, _)) = listener.accept().await {
                let conn = connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s, conn, shared.clone()));
            }
        });
        RawBackend {
            addr,
            seen: behaviour.seen,
            delay_ms: behaviour.delay_ms,
            status: behaviour.status,
        }
    }

    fn yaml(&self, name: &str) -> String {
        format!(
            "      - {{ name: {name}, url: \"http://{}/\" }}\n",
            self.addr
        )
    }

    fn requests(&self) -> Vec<(usize, Value)> {
        self.seen.requests.lock().unwrap().clone()
    }
}

async fn serve(mut s: TcpStream, conn: usize, b: Behaviour) {
    while let Some((head, body)) = read_request(&mut s).await {
        let (status, kind, answer) = if head.contains("ssv-ha-health") {
            (200, "application/json", HEALTHY_BATCH.to_string())
        } else {
            let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            b.seen.requests.lock().unwrap().push((conn, call.clone()));
            tokio::time::sleep(Duration::from_millis(b.delay_ms.load(Ordering::SeqCst))).await;
            match b.status.load(Ordering::SeqCst) {
                200 => {
                    let result = format!("{}:{conn}", b.name);
                    let answer = json!({"jsonrpc": "2.0", "id": call["id"], "result": result});
                    (200, "application/json", answer.to_string())
                }
                status => (status, "text/html", format!("<html>{status}</html>")),
            }
        };
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if s.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    b.seen.closed.lock().unwrap().push(conn);
}

/// Reads one request (header, lower-cased, and Content-Length body); `None` when the connection
/// ended.
async fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
            if buf.len() >= end + 4 + length {
                return Some((head, buf[end + 4..end + 4 + length].to_vec()));
            }
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A gateway whose pool `execution` hedges over `a` then `b` (policy `first`), with `health`.
async fn raw_pool(a: &RawBackend, b: &RawBackend, delay: &str, health: &str) -> (Gateway, String) {
    let pools = format!(
        "  execution:\n    kind: execution\n    policy: first\n    max_head_age: \"off\"\n    hedge: {{ delay: {delay}, max: 1 }}\n    health: {health}\n    backends:\n{}{}",
        a.yaml("ec-a"),
        b.yaml("ec-b")
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    (gw, format!("http://{listen}/"))
}

/// Sends `bodies` through `url` to `host` with `POST`, 200 at a time; each must be answered.
async fn post_all(url: &str, host: &'static str, bodies: Vec<(String, Value)>) {
    let client = reqwest::Client::new();
    let mut pending = tokio::task::JoinSet::new();
    let mut bodies = bodies.into_iter();
    loop {
        while pending.len() < 200 {
            let Some((path, body)) = bodies.next() else {
                break;
            };
            let (client, url) = (client.clone(), format!("{url}{path}"));
            pending.spawn(async move {
                let r = client
                    .post(url)
                    .header("host", host)
                    .json(&body)
                    .send()
                    .await
                    .expect("request through the gateway");
                assert!(r.status().as_u16() < 500, "{}", r.status());
            });
        }
        match pending.join_next().await {
            Some(done) => done.expect("a request task"),
            None => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_a_hedging_pool_reach_a_node_exactly_once() {
    let _alone = TIMING.lock().await;
    // Execution: 1,000 transactions, the first node slow enough that a hedge would go.
    let (a, b) = (
        RawBackend::start("a", 300).await,
        RawBackend::start("b", 0).await,
    );
    let (gw, url) = raw_pool(&a, &b, "50ms", STEADY_HEALTH).await;
    let transactions = (0..1000)
        .map(|n| {
            let raw = format!("0x02{n:08x}");
            let call = json!({"jsonrpc": "2.0", "id": n, "method": "eth_sendRawTransaction", "params": [raw]});
            (String::new(), call)
        })
        .collect();
    post_all(&url, RPC, transactions).await;
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for (_, call) in a.requests().into_iter().chain(b.requests()) {
        *received.entry(call["params"][0].to_string()).or_default() += 1;
    }
    assert_eq!(received.len(), 1000);
    assert!(received.values().all(|&n| n == 1), "some went twice");
    assert!(b.requests().is_empty(), "a write went to the second node");
    let text = gw.metrics().await;
    assert_eq!(
        metric(&text, "ssv_ha_hedges_total{pool=\"execution\"}"),
        0.0
    );
    drop(gw);

    // Consensus: 1,000 beacon POSTs, likewise.
    let pki = Pki::new();
    let slow = NodeStatus {
        client_delay_ms: 300,
        ..NodeStatus::default()
    };
    let ca = pki.node(NodeKind::Consensus, "cc-a", slow).await;
    let cb = pki
        .node(NodeKind::Consensus, "cc-b", NodeStatus::default())
        .await;
    let pools = pool_yaml_with(
        "consensus",
        "consensus",
        "first",
        &pki.ca_file,
        &[(&ca, false), (&cb, false)],
        &format!("    hedge: {{ delay: 50ms }}\n    health: {STEADY_HEALTH}\n"),
    );
    let (gw, listen) = start_on(&pools, CC_ROUTE).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    gw.wait_backend("consensus", "cc-b", true).await;
    let posts = (0..1000)
        .map(|n| {
            let path = format!("eth/v1/beacon/pool/attestations?n={n}");
            (path, json!([{ "n": n }]))
        })
        .collect();
    post_all(&format!("http://{listen}/"), "beacon.example.com", posts).await;
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for seen in ca.seen().into_iter().chain(cb.seen()) {
        if seen.method == "POST" {
            *received.entry(seen.uri).or_default() += 1;
        }
    }
    assert_eq!(received.len(), 1000, "every POST reached a node");
    assert!(received.values().all(|&n| n == 1), "some went twice");
    assert!(!cb.seen().iter().any(|s| s.method == "POST"));
    // A GET on the same pool is hedged: the pool does hedge.
    let client = reqwest::Client::new();
    let (_, node, _) = get(
        &client,
        &format!("http://{listen}/eth/v1/node/syncing"),
        "beacon.example.com",
    )
    .await;
    assert_eq!(node.as_deref(), Some("cc-b"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hedge_losers_connection_is_never_used_again() {
    let (a, b) = (
        RawBackend::start("a", 1000).await,
        RawBackend::start("b", 0).await,
    );
    let (_gw, url) = raw_pool(&a, &b, "100ms", STEADY_HEALTH).await;
    let client = reqwest::Client::new();
    let (status, _, body) = post(&client, &url, RPC, &rpc("eth_call", 1)).await;
    assert_eq!((status, &body["id"]), (200, &json!(1)));
    assert!(body["result"].as_str().unwrap().starts_with("b:"), "{body}");
    let loser = a.requests()[0].0;
    // The slow node's answer comes after the race; the gateway had let its connection go.
    wait_for(
        "the loser's connection to close",
        Duration::from_secs(5),
        || {
            let closed = a.seen.closed.lock().unwrap().contains(&loser);
            async move { closed.then_some(()) }
        },
    )
    .await;
    // The slow node is fast again: the next reads are its, each with its own answer, none on
    // the loser's connection.
    a.delay_ms.store(0, Ordering::SeqCst);
    for id in 2..12 {
        let (status, _, body) = post(&client, &url, RPC, &rpc("eth_call", id)).await;
        assert_eq!((status, &body["id"]), (200, &json!(id)), "{body}");
        assert!(body["result"].as_str().unwrap().starts_with("a:"), "{body}");
    }
    let on_loser = a.requests().iter().filter(|(c, _)| *c == loser).count();
    assert_eq!(
        on_loser, 1,
        "the loser's connection carried another request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hedge_that_fails_neither_wins_nor_is_charged() {
    let (a, b) = (
        RawBackend::start("a", 500).await,
        RawBackend::start("b", 0).await,
    );
    // One failure on live traffic would take a backend out.
    let health = "{ interval: 1s, timeout: 900ms, rise: 1, fall: 1 }";
    let (gw, url) = raw_pool(&a, &b, "50ms", health).await;
    b.status.store(502, Ordering::SeqCst);
    let client = reqwest::Client::new();
    for id in 0..5 {
        let (status, _, body) = post(&client, &url, RPC, &rpc("eth_call", id)).await;
        assert_eq!((status, &body["id"]), (200, &json!(id)), "{body}");
        assert!(body["result"].as_str().unwrap().starts_with("a:"), "{body}");
    }
    assert_eq!(b.requests().len(), 5, "each read was hedged");
    let text = gw.metrics().await;
    let down = "ssv_ha_backend_transitions_total{backend=\"ec-b\",pool=\"execution\",to=\"down\"}";
    assert_eq!(metric(&text, down), 0.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "ssv_ha_hedge_wins_total{pool=\"execution\",winner=\"first\"}"
        ),
        5.0
    );
}

/// Under `round_robin`, a hedge does not move the rotation: first attempts keep alternating, so
/// the slow node gets half of them, not every one (a hedge that moved the rotation would put the
/// slow node first again after each of its own hedges).
#[tokio::test(flavor = "multi_thread")]
async fn hedges_leave_the_round_robin_rotation_alone() {
    let pki = Pki::new();
    let (a, b) = execution_nodes(&pki, 300).await;
    let hedge = format!("    hedge: {{ delay: 30ms, max: 1 }}\n    health: {STEADY_HEALTH}\n");
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "round_robin",
        &pki.ca_file,
        &[(&a, false), (&b, false)],
        &hedge,
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    let url = format!("http://{listen}/");
    let client = reqwest::Client::new();
    for id in 0..20 {
        let (status, node, _) = post(&client, &url, RPC, &rpc("eth_blockNumber", id)).await;
        assert_eq!((status, node.as_deref()), (200, Some("ec-b")));
    }
    let slow_first = a.client_requests();
    assert!(
        (8..=12).contains(&slow_first),
        "the slow node was asked first {slow_first} times of 20"
    );
}

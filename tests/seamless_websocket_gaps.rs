//! Second attack pass on `sessions: seamless` WebSocket sessions (failing tests show findings).

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use ssv_ha::sim::execution::LOG_ADDRESS;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Default, Debug)]
struct Received {
    heads: Vec<u64>,
    logs: Vec<(u64, bool, String)>,
    answers: Vec<Value>,
}

fn number(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

impl Received {
    fn take(&mut self, message: Value) {
        if message["method"] == "eth_subscription" {
            let result = &message["params"]["result"];
            if result.get("logIndex").is_some() {
                self.logs.push((
                    number(&result["blockNumber"]),
                    result["removed"].as_bool().unwrap_or(false),
                    result["blockHash"].as_str().unwrap().to_string(),
                ));
            } else {
                self.heads.push(number(&result["number"]));
            }
        } else {
            self.answers.push(message);
        }
    }
}

async fn read_until(ws: &mut Ws, got: &mut Received, what: &str, done: impl Fn(&Received) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(got) {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{what} within 15 s; got {got:?}"))
            .expect("the connection stayed open")
            .expect("a message");
        match message {
            Message::Text(text) => got.take(serde_json::from_str(&text).unwrap()),
            Message::Close(frame) => {
                panic!("the gateway closed the session: {frame:?}; got {got:?}")
            }
            _ => {}
        }
    }
}

async fn call(ws: &mut Ws, got: &mut Received, id: u64, method: &str, params: Value) -> Value {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    read_until(ws, got, method, |g| g.answers.iter().any(|a| a["id"] == id)).await;
    let at = got.answers.iter().position(|a| a["id"] == id).unwrap();
    got.answers.remove(at)
}

struct Setup {
    _pki: Pki,
    a: SimNode,
    b: SimNode,
    gw: Gateway,
    listen: SocketAddr,
}

async fn setup(extra: &str) -> Setup {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        &format!("    sessions: seamless\n    failback: false\n{extra}"),
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = config(
        admin,
        listen,
        &pools,
        &format!("  - {{ listener: \"{listen}\", pool: execution }}\n"),
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    Setup {
        _pki: pki,
        a,
        b,
        gw,
        listen,
    }
}

async fn open_on(gw: &Gateway, backend: &str) {
    let series =
        format!(r#"ssv_ha_sessions_open{{backend="{backend}",kind="websocket",pool="execution"}}"#);
    wait_for(
        &format!("the session on {backend}"),
        Duration::from_secs(15),
        || async { (metric(&gw.metrics().await, &series) == 1.0).then_some(()) },
    )
    .await;
}

/// A `logs` subscription whose filter matches rarely (an SSV contract's events), and no
/// `newHeads`: its resume point stays at the head of its `eth_subscribe` (the `eth_blockNumber`
/// the gateway sends then) for as long as no log matches. Once more than `max_gap_blocks` blocks
/// went by, any move closes the session (1011, "blocks behind") although the client lacks
/// nothing the gateway could not fetch: the gap it computes is the subscription's age.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_logs_subscription_survives_a_move_after_more_than_max_gap_blocks() {
    let s = setup("    max_gap_blocks: 3\n").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.listen))
        .await
        .unwrap();
    let mut got = Received::default();
    let quiet = "0x00000000000000000000000000000000000000cc";
    call(
        &mut ws,
        &mut got,
        1,
        "eth_subscribe",
        json!(["logs", {"address": quiet}]),
    )
    .await;
    open_on(&s.gw, "ec-a").await;
    // Let the gateway's eth_blockNumber be answered (resume point = 1000).
    call(&mut ws, &mut got, 2, "eth_chainId", json!([])).await;
    for _ in 0..10 {
        s.a.new_head();
        s.b.new_head();
    }
    // The session is quiet but healthy on ec-a, which then fails.
    call(&mut ws, &mut got, 3, "eth_chainId", json!([])).await;
    s.a.go_down();
    s.gw.wait_backend("execution", "ec-a", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.b.new_head();
    let answer = call(&mut ws, &mut got, 4, "eth_chainId", json!([])).await;
    assert_eq!(
        answer["result"], "0x1",
        "the session goes on after the move"
    );
}

/// The new backend is one block behind the client and on another branch from that block. The
/// reorg check skips blocks above the new backend's head ("it will send them if it agrees"); when
/// it then sends its own block 1003, the log memory replaces block 1003 silently: the client gets
/// the new branch's log but never `removed: true` for the old one, and holds both.
#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_above_a_lagging_new_backends_head_takes_the_old_logs_back() {
    let s = setup("").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.listen))
        .await
        .unwrap();
    let mut got = Received::default();
    call(
        &mut ws,
        &mut got,
        1,
        "eth_subscribe",
        json!(["logs", {"address": LOG_ADDRESS}]),
    )
    .await;
    open_on(&s.gw, "ec-a").await;
    for _ in 0..2 {
        s.a.new_head();
        s.b.new_head();
    }
    s.a.new_head();
    read_until(&mut ws, &mut got, "logs of 1001-1003", |g| {
        g.logs.last().map(|l| (l.0, l.1)) == Some((1003, false))
    })
    .await;
    // ec-b is at 1002; its block 1003 will be another branch's.
    s.b.set(|st| st.branch_from = Some(1003));
    s.a.go_down();
    s.gw.wait_backend("execution", "ec-a", false).await;
    open_on(&s.gw, "ec-b").await;
    s.b.new_head();
    s.b.new_head();
    read_until(&mut ws, &mut got, "block 1004's log", |g| {
        g.logs.last().map(|l| (l.0, l.1)) == Some((1004, false))
    })
    .await;
    let seen: Vec<(u64, bool)> = got.logs.iter().map(|l| (l.0, l.1)).collect();
    assert_eq!(
        seen,
        vec![
            (1001, false),
            (1002, false),
            (1003, false),
            (1003, true),
            (1003, false),
            (1004, false)
        ],
        "the old branch's log of 1003 is taken back before the new branch's: {:?}",
        got.logs
    );
}

//! Harness of the `sessions: seamless` WebSocket tests: two simulated execution nodes (`ec-a`,
//! `ec-b` its backup) behind a gateway whose pool moves sessions, and a client that records what
//! it receives.

use super::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the client received, by kind, in order.
#[derive(Default, Debug)]
pub struct Received {
    pub heads: Vec<u64>,
    pub logs: Vec<(u64, bool)>,
    /// Subscription ids seen on notifications.
    pub ids: Vec<String>,
    pub answers: Vec<Value>,
}

pub fn number(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

impl Received {
    pub fn take(&mut self, message: Value) {
        if message["method"] == "eth_subscription" {
            let sub = message["params"]["subscription"]
                .as_str()
                .unwrap()
                .to_string();
            if !self.ids.contains(&sub) {
                self.ids.push(sub);
            }
            let result = &message["params"]["result"];
            if result.get("logIndex").is_some() {
                self.logs.push((
                    number(&result["blockNumber"]),
                    result["removed"].as_bool().unwrap_or(false),
                ));
            } else {
                self.heads.push(number(&result["number"]));
            }
        } else {
            self.answers.push(message);
        }
    }
}

pub async fn read_until(
    ws: &mut Ws,
    got: &mut Received,
    what: &str,
    done: impl Fn(&Received) -> bool,
) {
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

pub async fn call(ws: &mut Ws, got: &mut Received, id: u64, method: &str, params: Value) -> Value {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    read_until(ws, got, method, |g| g.answers.iter().any(|a| a["id"] == id)).await;
    let at = got.answers.iter().position(|a| a["id"] == id).unwrap();
    got.answers.remove(at)
}

pub struct Setup {
    pub _pki: Pki,
    pub a: SimNode,
    pub b: SimNode,
    pub gw: Gateway,
    pub listen: SocketAddr,
}

pub async fn setup_with(extra: &str, status: NodeStatus) -> Setup {
    setup_pool("first", true, extra, status, None).await
}

/// [`setup`]'s gateway with `ec-a`'s WebSocket endpoint at `ws`, a hand-made node (its HTTP
/// side, which the health checks read, stays the simulated node's).
pub async fn setup_with_ws_url(ws: SocketAddr, extra: &str) -> Setup {
    setup_pool("first", true, extra, NodeStatus::default(), Some(ws)).await
}

/// Both nodes primaries of a `round_robin` pool.
pub async fn setup_round_robin(extra: &str) -> Setup {
    setup_pool("round_robin", false, extra, NodeStatus::default(), None).await
}

/// `ec-a` and `ec-b` in a pool of this policy, `ec-b` a backup or not, `ec-a`'s WebSocket at
/// `a_ws` when given.
async fn setup_pool(
    policy: &str,
    b_backup: bool,
    extra: &str,
    status: NodeStatus,
    a_ws: Option<SocketAddr>,
) -> Setup {
    let pki = Pki::new();
    let a = pki.node(NodeKind::Execution, "ec-a", status.clone()).await;
    let b = pki.node(NodeKind::Execution, "ec-b", status).await;
    let pools = pool_yaml_with(
        "execution",
        "execution",
        policy,
        &pki.ca_file,
        &[(&a, false), (&b, b_backup)],
        &format!(
            "    sessions: seamless\n{}{extra}",
            if extra.contains("failback") {
                ""
            } else {
                "    failback: false\n"
            }
        ),
    );
    let pools = match a_ws {
        Some(ws) => pools.replacen(
            &format!("url: \"{}\"", a.url()),
            &format!("url: \"{}\", ws_url: \"ws://{ws}/\"", a.url()),
            1,
        ),
        None => pools,
    };
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

pub async fn setup(extra: &str) -> Setup {
    setup_with(extra, NodeStatus::default()).await
}

pub fn open_series(backend: &str) -> String {
    format!(r#"ssv_ha_sessions_open{{backend="{backend}",kind="websocket",pool="execution"}}"#)
}

pub async fn open_on(gw: &Gateway, backend: &str) {
    let series = open_series(backend);
    wait_for(
        &format!("the session on {backend}"),
        Duration::from_secs(15),
        || async { (metric(&gw.metrics().await, &series) == 1.0).then_some(()) },
    )
    .await;
}

/// The next text message (answers and notifications), or panics on close/timeout.
pub async fn next_text(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message within 15 s")
            .expect("open")
            .expect("a message");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Binary(b) => return serde_json::from_slice(&b).unwrap(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

/// The close code the session ends with (within `within`), skipping other messages.
pub async fn close_code(ws: &mut Ws, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no close within {within:?}"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
        }
    }
}

impl Setup {
    /// A client's WebSocket through the gateway.
    pub async fn connect(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", self.listen))
            .await
            .expect("a WebSocket through the gateway");
        ws
    }

    /// A client's WebSocket subscribed to `newHeads` (the answer read), its session on `backend`.
    pub async fn subscribed_on(&self, backend: &str) -> Ws {
        let mut ws = self.connect().await;
        ws.send(Message::Text(
            json!({"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]})
                .to_string()
                .into(),
        ))
        .await
        .expect("send");
        next_text(&mut ws).await;
        open_on(&self.gw, backend).await;
        ws
    }
}

/// Three simulated execution nodes (`ec-a`, `ec-b`, `ec-c`), all primaries, behind a gateway
/// whose pool rotates over them (`round_robin`, no fail-back), so that sessions land on each.
/// Health checks allow a loaded machine time ([`PATIENT_HEALTH`]): the tests on it send many
/// requests at once, and a check that times out would take a node out on its own.
pub struct Three {
    pub _pki: Pki,
    pub nodes: Vec<SimNode>,
    pub gw: Gateway,
    pub listen: SocketAddr,
}

/// Health checks with time to answer on a loaded machine (the first check still comes at once).
pub const PATIENT_HEALTH: &str = "{ interval: 2s, timeout: 2s, rise: 1, fall: 2 }";

/// [`Three`] with `sessions` (`seamless` or `cut`), every node in `status`.
pub async fn setup_three(sessions: &str, status: NodeStatus) -> Three {
    let pki = Pki::new();
    let mut nodes = Vec::new();
    for name in ["ec-a", "ec-b", "ec-c"] {
        nodes.push(pki.node(NodeKind::Execution, name, status.clone()).await);
    }
    let backends: Vec<(&SimNode, bool)> = nodes.iter().map(|n| (n, false)).collect();
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "round_robin",
        &pki.ca_file,
        &backends,
        &format!("    sessions: {sessions}\n    failback: false\n    health: {PATIENT_HEALTH}\n"),
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = config(
        admin,
        listen,
        &pools,
        &format!("  - {{ listener: \"{listen}\", pool: execution }}\n"),
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    for node in &nodes {
        gw.wait_backend("execution", node.name(), true).await;
    }
    Three {
        _pki: pki,
        nodes,
        gw,
        listen,
    }
}

impl Three {
    /// A client's WebSocket through the gateway to `path`, subscribed to `newHeads`; returns it
    /// and the subscription id it got.
    pub async fn subscribed(&self, path: &str) -> (Ws, String) {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}{path}", self.listen))
            .await
            .expect("a WebSocket through the gateway");
        let mut got = Received::default();
        let answer = call(&mut ws, &mut got, 1, "eth_subscribe", json!(["newHeads"])).await;
        let id = answer["result"]
            .as_str()
            .unwrap_or_else(|| panic!("a subscription id: {answer}"))
            .to_string();
        (ws, id)
    }
}

/// A gateway in front of two simulated consensus nodes, `cc-a` and its backup `cc-b`, in a pool
/// with `sessions: seamless` and `extra` settings, both healthy: (pki, cc-a, cc-b, gateway,
/// listener).
pub async fn cc_pair(extra: &str) -> (Pki, SimNode, SimNode, Gateway, SocketAddr) {
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
        &format!("    sessions: seamless\n{extra}"),
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = config(
        admin,
        listen,
        &pools,
        &format!("  - {{ listener: \"{listen}\", pool: consensus }}\n"),
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    gw.wait_backend("consensus", "cc-b", true).await;
    (pki, a, b, gw, listen)
}

//! A real execution client (anvil, installed by scripts/install-real-nodes.sh) behind the gateway:
//! JSON-RPC and a WebSocket `newHeads` subscription through it, the peer rule that anvil cannot
//! satisfy (it has no `net_peerCount`), a stalled anvil judged as lagging, and a seamless session
//! that outlives its anvil.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

struct Anvil(Child);

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn anvil_binary() -> PathBuf {
    let path = std::env::var_os("SSV_HA_ANVIL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(".real-nodes/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
        });
    assert!(
        path.is_file(),
        "REAL NODE MISSING: anvil not found at {}; run scripts/install-real-nodes.sh (the README's test command does)",
        path.display()
    );
    path
}

/// Starts anvil on a free port, mining a block a second, and waits until it listens.
async fn start_anvil() -> (Anvil, u16) {
    start_anvil_with(&[]).await
}

/// Starts anvil with extra arguments (a fork, say).
async fn start_anvil_with(extra: &[&str]) -> (Anvil, u16) {
    let port = free_addr().port();
    let anvil = Anvil(
        Command::new(anvil_binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--block-time",
                "1",
                "--chain-id",
                "31337",
                "--silent",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("start anvil"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("anvil to listen", Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
    (anvil, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn anvil_answers_json_rpc_and_new_heads_through_the_gateway() {
    let (anvil, port) = start_anvil().await;

    let (admin, rpc_listen, strict_listen) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners:
  - {{ name: rpc, address: "{rpc_listen}" }}
  - {{ name: strict, address: "{strict_listen}" }}
pools:
  execution:
    kind: execution
    max_head_age: off   # anvil makes blocks on demand
    min_peers: 0      # anvil has no net_peerCount
    health: {{ interval: 200ms, timeout: 150ms }}
    backends: [{{ name: anvil, url: "http://127.0.0.1:{port}" }}]
  strict:
    kind: execution
    max_head_age: off   # anvil makes blocks on demand
    health: {{ interval: 200ms, timeout: 150ms }}
    backends: [{{ name: anvil, url: "http://127.0.0.1:{port}" }}]
routes:
  - {{ listener: rpc, pool: execution }}
  - {{ listener: strict, pool: strict }}
"#
    );
    let gw = Gateway::start(&yaml, admin, &[rpc_listen, strict_listen]).await;
    gw.wait_backend("execution", "anvil", true).await;
    let strict = gw.wait_backend("strict", "anvil", false).await;
    assert!(
        strict["reason"]
            .as_str()
            .unwrap()
            .contains("net_peerCount unavailable"),
        "{strict:#}"
    );
    let anvil_status = Gateway::backend_status(&gw.status().await, "execution", "anvil");
    assert_eq!(anvil_status["facts"]["chain_id"], 31337);

    let client = reqwest::Client::new();
    let (status, _, body) = post(
        &client,
        &format!("http://{rpc_listen}/"),
        "anything",
        &rpc("eth_chainId", 1),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], "0x7a69");
    let batch = json!([rpc("eth_blockNumber", 1), rpc("net_version", 2)]);
    let (_, _, body) = post(
        &client,
        &format!("http://{rpc_listen}/"),
        "anything",
        &batch,
    )
    .await;
    assert_eq!(body[1]["result"], "31337");

    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{rpc_listen}/"))
        .await
        .expect("WebSocket to anvil via the gateway");
    socket
        .send(Message::Text(
            json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let mut subscription = None;
    let mut heads = Vec::new();
    while heads.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("anvil mines a block a second")
            .expect("socket open")
            .expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["id"] == 1 {
            subscription = value["result"].as_str().map(str::to_string);
        } else if value["method"] == "eth_subscription" {
            assert_eq!(
                value["params"]["subscription"].as_str(),
                subscription.as_deref()
            );
            heads.push(
                value["params"]["result"]["number"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    assert_ne!(heads[0], heads[1], "two different heads arrived");
    drop(anvil);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_anvil_is_marked_lagging_and_traffic_moves() {
    let ((_a, port_a), (_b, port_b)) = (start_anvil().await, start_anvil().await);
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners: [{{ address: "{listen}" }}]
pools:
  execution:
    kind: execution
    max_head_age: off   # anvil makes blocks on demand
    min_peers: 0
    max_lag: 2
    chain_id: 31337
    health: {{ interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}
    backends:
      - {{ name: anvil-a, url: "http://127.0.0.1:{port_a}" }}
      - {{ name: anvil-b, url: "http://127.0.0.1:{port_b}" }}
routes: [{{ listener: "{listen}", pool: execution }}]
"#
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "anvil-a", true).await;
    gw.wait_backend("execution", "anvil-b", true).await;
    let client = reqwest::Client::new();
    let chain_head = |port: u16| {
        let client = client.clone();
        async move {
            let (_, _, body) = post(
                &client,
                &format!("http://127.0.0.1:{port}/"),
                "localhost",
                &rpc("eth_blockNumber", 1),
            )
            .await;
            u64::from_str_radix(
                body["result"].as_str().unwrap().trim_start_matches("0x"),
                16,
            )
            .unwrap()
        }
    };

    // Stop anvil-a's chain: anvil-b keeps mining a block a second.
    let stop = json!({"jsonrpc": "2.0", "id": 1, "method": "evm_setIntervalMining", "params": [0]});
    post(
        &client,
        &format!("http://127.0.0.1:{port_a}/"),
        "localhost",
        &stop,
    )
    .await;
    let lagging = wait_for(
        "anvil-a to be marked lagging",
        Duration::from_secs(15),
        || async {
            let b = Gateway::backend_status(&gw.status().await, "execution", "anvil-a");
            (b["healthy"] == false).then_some(b)
        },
    )
    .await;
    let reason = lagging["reason"].as_str().unwrap();
    assert!(reason.ends_with("blocks behind anvil-b"), "{lagging:#}");

    // Traffic moved: the gateway now answers with anvil-b's head, past anvil-a's frozen one.
    let frozen = chain_head(port_a).await;
    let (status, _, body) = post(
        &client,
        &format!("http://{listen}/"),
        "anything",
        &rpc("eth_blockNumber", 2),
    )
    .await;
    assert_eq!(status, 200);
    let served = u64::from_str_radix(
        body["result"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert!(
        served > frozen + 2,
        "served head {served}, frozen anvil-a at {frozen}"
    );

    // ssv-ha probe judges the two the same way.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
            .args([
                "probe",
                "--kind",
                "execution",
                "--min-peers",
                "0",
                "--max-lag",
                "2",
            ])
            .args([
                format!("http://127.0.0.1:{port_a}"),
                format!("http://127.0.0.1:{port_b}"),
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("http://127.0.0.1:{port_a}: UNHEALTHY:"))
            && text.contains(&format!("http://127.0.0.1:{port_b}: HEALTHY")),
        "{text}"
    );
}

/// A `newHeads` subscription through the gateway survives a failover between two anvils: the
/// session on the stalled one is cut, the client reconnects once and keeps receiving heads.
#[tokio::test(flavor = "multi_thread")]
async fn new_heads_subscription_survives_a_failover_between_two_anvils() {
    let ((_a, port_a), (_b, port_b)) = (start_anvil().await, start_anvil().await);
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners: [{{ address: "{listen}" }}]
pools:
  execution:
    kind: execution
    max_head_age: off   # anvil makes blocks on demand
    min_peers: 0
    max_lag: 2
    failback: false
    health: {{ interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}
    backends:
      - {{ name: anvil-a, url: "http://127.0.0.1:{port_a}" }}
      - {{ name: anvil-b, url: "http://127.0.0.1:{port_b}", backup: true }}
routes: [{{ listener: "{listen}", pool: execution }}]
"#
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "anvil-a", true).await;
    gw.wait_backend("execution", "anvil-b", true).await;
    let client = reqwest::Client::new();

    let subscribe = || async {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{listen}/"))
            .await
            .expect("WebSocket via the gateway");
        let request =
            json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]});
        socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        socket
    };
    // Heads from the session, until it ends (`None`) or `count` arrived.
    async fn heads<S>(socket: &mut S, count: usize) -> Option<Vec<u64>>
    where
        S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        let mut heads = Vec::new();
        while heads.len() < count {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("a head or the end within 10 s");
            let Some(Ok(Message::Text(text))) = message else {
                return None;
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if let Some(number) = value
                .pointer("/params/result/number")
                .and_then(Value::as_str)
            {
                heads.push(u64::from_str_radix(number.trim_start_matches("0x"), 16).unwrap());
            }
        }
        Some(heads)
    }

    let mut socket = subscribe().await;
    assert!(
        heads(&mut socket, 2).await.is_some(),
        "heads arrive from anvil-a"
    );
    // anvil-a stops mining: it falls behind, is marked down, and its session is cut.
    let stop = json!({"jsonrpc": "2.0", "id": 1, "method": "evm_setIntervalMining", "params": [0]});
    post(
        &client,
        &format!("http://127.0.0.1:{port_a}/"),
        "localhost",
        &stop,
    )
    .await;
    assert_eq!(
        heads(&mut socket, usize::MAX).await,
        None,
        "the session on the stalled node ends"
    );
    let down = Gateway::backend_status(&gw.status().await, "execution", "anvil-a");
    assert_eq!(down["healthy"], false, "{down:#}");

    // One reconnect, and heads flow again, now from anvil-b.
    let mut socket = subscribe().await;
    let after = heads(&mut socket, 2)
        .await
        .expect("heads after the reconnect");
    assert!(after[1] > after[0]);
    let (_, _, body) = post(
        &client,
        &format!("http://127.0.0.1:{port_a}/"),
        "localhost",
        &rpc("eth_blockNumber", 1),
    )
    .await;
    let frozen = u64::from_str_radix(
        body["result"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert!(
        after[0] > frozen,
        "the new heads ({after:?}) come from the node that kept mining, not anvil-a at {frozen}"
    );
    let metrics = gw.metrics().await;
    assert!(metrics.contains("ssv_ha_sessions_cut_total{backend=\"anvil-a\",pool=\"execution\",reason=\"backend_down\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seamless_subscription_outlives_its_anvil_killed_outright() {
    // Shanghai: from Cancun on, every block's system calls read storage a forked anvil fetches
    // from its source, and the backup would die with the primary.
    let (primary, port_a) = start_anvil_with(&["--hardfork", "shanghai"]).await;
    // The backup shares the primary's history: it is forked from it, then mines its own blocks.
    let fork = format!("http://127.0.0.1:{port_a}");
    let (_backup, port_b) =
        start_anvil_with(&["--hardfork", "shanghai", "--fork-url", &fork]).await;
    // The backup mines a few blocks of its own first: what it reads from the primary for that is
    // then in hand, and it goes on without it.
    let client = reqwest::Client::new();
    let backup_head = || {
        let client = client.clone();
        async move {
            let (_, _, body) = post(
                &client,
                &format!("http://127.0.0.1:{port_b}/"),
                "anvil",
                &rpc("eth_blockNumber", 1),
            )
            .await;
            u64::from_str_radix(body["result"].as_str()?.trim_start_matches("0x"), 16).ok()
        }
    };
    let forked_at = wait_for("the backup's head", Duration::from_secs(10), backup_head).await;
    wait_for(
        "three blocks of the backup's own",
        Duration::from_secs(15),
        || async { backup_head().await.filter(|h| *h >= forked_at + 3) },
    )
    .await;
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners: [{{ address: "{listen}" }}]
pools:
  execution:
    kind: execution
    sessions: seamless
    max_head_age: off   # anvil makes blocks on demand
    min_peers: 0        # anvil has no net_peerCount
    max_lag: 10
    chain_id: 31337
    health: {{ interval: 200ms, timeout: 150ms }}
    backends:
      - {{ name: anvil-a, url: "http://127.0.0.1:{port_a}" }}
      - {{ name: anvil-b, url: "http://127.0.0.1:{port_b}", backup: true }}
routes: [{{ listener: "{listen}", pool: execution }}]
"#
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "anvil-a", true).await;
    gw.wait_backend("execution", "anvil-b", true).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{listen}/"))
        .await
        .expect("WebSocket through the gateway");
    socket
        .send(Message::Text(
            json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let mut subscription: Option<String> = None;
    let mut heads: Vec<u64> = Vec::new();
    // The client's chain as its heads build it: a head at or below the last is a reorg report
    // (the backup mined blocks of its own), never a block the client has.
    let mut chain: Vec<(u64, String)> = Vec::new();
    let mut killed_at = None;
    let mut primary = Some(primary);
    while heads.len() < killed_at.map_or(usize::MAX, |k| k + 3) {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .unwrap_or_else(|_| panic!("a head within 15 s; got {heads:?}"))
            .expect("the connection stayed open")
            .expect("a frame");
        let Message::Text(text) = message else {
            assert!(!matches!(message, Message::Close(_)), "closed: {message:?}");
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["id"] == 1 {
            subscription = value["result"].as_str().map(str::to_string);
            continue;
        }
        assert_eq!(
            value["params"]["subscription"].as_str(),
            subscription.as_deref(),
            "the client's subscription id, before and after the switch"
        );
        let number = value["params"]["result"]["number"].as_str().unwrap();
        let number = u64::from_str_radix(number.trim_start_matches("0x"), 16).unwrap();
        let hash = value["params"]["result"]["hash"]
            .as_str()
            .unwrap()
            .to_string();
        if let Some((last, _)) = chain.last() {
            assert!(number <= last + 1, "no gap: {number} after {last}");
        }
        assert!(
            !chain.contains(&(number, hash.clone())),
            "block {number} twice: {chain:?}"
        );
        chain.retain(|(n, _)| *n < number);
        chain.push((number, hash));
        heads.push(number);
        if heads.len() == 3 {
            // The primary goes outright: no health check saw it coming.
            drop(primary.take());
            killed_at = Some(heads.len());
        }
    }
    assert!(
        chain.windows(2).all(|w| w[0].0 + 1 == w[1].0),
        "the client's chain has every number once, in order: {chain:?} (heads {heads:?})"
    );
    let moved = metric(
        &gw.metrics().await,
        r#"ssv_ha_sessions_moved_total{kind="websocket",pool="execution",reason="backend_ended"}"#,
    );
    assert_eq!(moved, 1.0, "the session moved once");
}

//! A real execution client (anvil, installed by scripts/install-real-nodes.sh) behind the gateway:
//! JSON-RPC and a WebSocket `newHeads` subscription through it, and the peer rule that anvil
//! cannot satisfy (it has no `net_peerCount`).

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

#[tokio::test(flavor = "multi_thread")]
async fn anvil_answers_json_rpc_and_new_heads_through_the_gateway() {
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
            .stdout(Stdio::null())
            .spawn()
            .expect("start anvil"),
    );
    let anvil_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("anvil to listen", Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(anvil_addr)
            .await
            .ok()
            .map(|_| ())
    })
    .await;

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
    min_peers: 0      # anvil has no net_peerCount
    health: {{ interval: 200ms, timeout: 150ms }}
    backends: [{{ name: anvil, url: "http://127.0.0.1:{port}" }}]
  strict:
    kind: execution
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

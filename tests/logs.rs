//! Structured logs: with `log.format: json`, one JSON access line per request (pool, backend,
//! method, JSON-RPC methods, status, bytes, duration, retries) and one line per health
//! transition with its reason.

mod common;

use common::*;
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next JSON log line that `matches`, within a deadline.
fn next_line(
    lines: &mpsc::Receiver<String>,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {what}"));
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if matches(&value) {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_lines_and_transitions() {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&ec, false)],
    );
    let yaml = format!(
        "log: {{ format: json, level: info }}\n{}",
        config(admin, listen, &pools, EC_ROUTE)
    );
    let path = pki.dir.path().join("ssv-ha.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .args(["run", "-c"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _child = Child(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let up = next_line(&lines, "the backend coming up", |v| {
        v["message"] == "backend up"
    });
    assert_eq!(
        (up["pool"].as_str(), up["backend"].as_str()),
        (Some("execution"), Some("ec-a")),
        "{up}"
    );
    wait_for("the listener", Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(listen).await.ok()
    })
    .await;

    let client = reqwest::Client::new();
    let batch = json!([rpc("eth_chainId", 1), rpc("eth_blockNumber", 2)]);
    let (status, _, _) = post(
        &client,
        &format!("http://{listen}/"),
        "rpc.example.com",
        &batch,
    )
    .await;
    assert_eq!(status, 200);
    let access = next_line(&lines, "an access line", |v| v["target"] == "access");
    assert_eq!(access["pool"], "execution");
    assert_eq!(access["backend"], "ec-a");
    assert_eq!(access["method"], "POST");
    assert_eq!(access["rpc"], "eth_chainId,eth_blockNumber");
    assert_eq!(access["status"], 200);
    assert_eq!(access["retries"], 0);
    assert!(
        access["bytes"].as_u64().unwrap() > 20 && access["duration_ms"].as_f64().unwrap() > 0.0,
        "{access}"
    );

    ec.set(|s| s.peers = 1);
    let down = next_line(&lines, "the backend going down", |v| {
        v["message"] == "backend down"
    });
    assert_eq!(down["reason"], "peers 1 < 10", "{down}");
    let (status, _, _) = post(
        &client,
        &format!("http://{listen}/"),
        "rpc.example.com",
        &rpc("eth_call", 3),
    )
    .await;
    assert_eq!(status, 503);
    let refused = next_line(&lines, "an access line for the 503", |v| {
        v["target"] == "access"
    });
    assert_eq!(
        (
            refused["status"].as_u64(),
            refused["backend"].as_str(),
            refused["rpc"].as_str()
        ),
        (Some(503), Some("-"), Some("eth_call")),
        "{refused}"
    );

    // Refused at the door: logged too.
    let (status, _, _) = post(
        &client,
        &format!("http://{listen}/"),
        "unknown.example.com",
        &rpc("eth_chainId", 4),
    )
    .await;
    assert_eq!(status, 421);
    let unrouted = next_line(&lines, "an access line for the 421", |v| {
        v["target"] == "access"
    });
    assert_eq!(
        (unrouted["status"].as_u64(), unrouted["pool"].as_str()),
        (Some(421), Some("-")),
        "{unrouted}"
    );
}

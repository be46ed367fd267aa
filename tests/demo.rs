//! `ssv-ha demo`, driven the way the README tells a user to: start it, call through it, press `1`
//! to make the execution primary fail, watch the backup take over and the primary come back.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn answered_by(client: &reqwest::Client, url: &str, expected: &str) {
    wait_for(
        &format!("a JSON-RPC answer from {expected}"),
        Duration::from_secs(10),
        || async {
            let response = client
                .post(url)
                .json(&rpc("eth_blockNumber", 1))
                .send()
                .await
                .ok()?;
            let node = response
                .headers()
                .get("x-sim-node")?
                .to_str()
                .ok()?
                .to_string();
            (response.status() == 200 && node == expected).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_both_kinds_and_shows_a_failover() {
    let (ec, cc, admin) = (free_addr(), free_addr(), free_addr());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .arg("demo")
        .args([
            "--execution-listen",
            &ec.to_string(),
            "--consensus-listen",
            &cc.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ssv-ha demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut stdin = child.stdin.take().expect("stdin");
    let _demo = Demo(child);

    // The printed instructions name the gateway's addresses and end with a ready line.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = String::new();
    while !printed.contains("ssv-ha demo ready") {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the demo prints its instructions");
        printed.push_str(&line);
        printed.push('\n');
    }
    assert!(
        printed.contains(&format!("http://{ec}"))
            && printed.contains(&format!("http://{admin}/status")),
        "{printed}"
    );

    let client = reqwest::Client::new();
    let url = format!("http://{ec}/");
    answered_by(&client, &url, "ec-a").await;
    let beacon = client
        .get(format!("http://{cc}/eth/v1/node/syncing"))
        .send()
        .await
        .unwrap();
    assert_eq!(beacon.status(), 200);
    assert_eq!(beacon.headers()["x-sim-node"], "cc-a");

    writeln!(stdin, "1").unwrap();
    let said = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the demo answers the key");
    assert!(said.contains("ec-a now reports syncing"), "{said}");
    answered_by(&client, &url, "ec-b").await;
    let status: serde_json::Value = reqwest::get(format!("http://{admin}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ec_a = Gateway::backend_status(&status, "execution", "ec-a");
    assert!(
        ec_a["reason"].as_str().unwrap().starts_with("syncing"),
        "{ec_a:#}"
    );

    writeln!(stdin, "1").unwrap();
    answered_by(&client, &url, "ec-a").await;
}

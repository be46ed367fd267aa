//! A real consensus client (a Lodestar 1.5.1 dev chain, installed by
//! scripts/install-real-nodes.sh) behind the gateway: judged healthy with `min_peers: 0` and, with
//! no peers, unhealthy with `min_peers: 1` and that reason; its SSE head events stream through the
//! gateway; `ssv-ha probe` agrees.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Lodestar {
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Lodestar {
    fn drop(&mut self) {
        // Lodestar 1.5 ignores SIGTERM while "stopping gracefully": kill it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lodestar_binary() -> PathBuf {
    let path = std::env::var_os("SSV_HA_LODESTAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".real-nodes/lodestar/node_modules/.bin/lodestar"));
    assert!(
        path.exists(),
        "REAL NODE MISSING: lodestar not found at {}; run scripts/install-real-nodes.sh (the README's test command does)",
        path.display()
    );
    path
}

async fn start_lodestar() -> (Lodestar, u16) {
    let rest = free_addr().port();
    let p2p = free_addr().port();
    let data = tempfile::tempdir().unwrap();
    let polyfill = root().join("scripts/real-nodes/lodestar/promise-with-resolvers.cjs");
    let child = Command::new(lodestar_binary())
        .args([
            "dev",
            "--genesisValidators",
            "8",
            "--startValidators",
            "0..7",
            "--reset",
        ])
        .arg("--dataDir")
        .arg(data.path())
        // `dev` writes genesis.ssz into its working directory: keep it out of the repository.
        .current_dir(data.path())
        .args([
            "--rest.address",
            "127.0.0.1",
            "--rest.port",
            &rest.to_string(),
            "--port",
            &p2p.to_string(),
        ])
        .args([
            "--discv5",
            "false",
            "--params.SECONDS_PER_SLOT",
            "2",
            "--params.ALTAIR_FORK_EPOCH",
            "0",
        ])
        .args(["--server", &format!("http://127.0.0.1:{rest}")])
        .env("NODE_OPTIONS", format!("--require {}", polyfill.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lodestar");
    let node = Lodestar { child, _data: data };
    let client = reqwest::Client::new();
    wait_for("Lodestar's REST API", Duration::from_secs(90), || {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{rest}/eth/v1/node/syncing"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    (node, rest)
}

#[tokio::test(flavor = "multi_thread")]
async fn lodestar_behind_the_gateway() {
    let (_lodestar, rest) = start_lodestar().await;
    let (admin, beacon, strict) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners:
  - {{ name: beacon, address: "{beacon}" }}
  - {{ name: strict, address: "{strict}" }}
pools:
  consensus:
    kind: consensus
    min_peers: 0
    health: {{ interval: 500ms, timeout: 400ms }}
    backends: [{{ name: lodestar, url: "http://127.0.0.1:{rest}" }}]
  strict:
    kind: consensus
    min_peers: 1
    health: {{ interval: 500ms, timeout: 400ms }}
    backends: [{{ name: lodestar, url: "http://127.0.0.1:{rest}" }}]
routes:
  - {{ listener: beacon, pool: consensus }}
  - {{ listener: strict, pool: strict }}
"#
    );
    let gw = Gateway::start(&yaml, admin, &[beacon, strict]).await;
    let healthy = gw.wait_backend("consensus", "lodestar", true).await;
    assert!(
        healthy["reason"]
            .as_str()
            .unwrap()
            .contains("el_offline not reported"),
        "{healthy:#}"
    );
    assert_eq!(healthy["facts"]["seconds_per_slot"], 2);
    let lonely = gw.wait_backend("strict", "lodestar", false).await;
    assert_eq!(lonely["reason"], "peers 0 < 1", "{lonely:#}");

    // Beacon API and the SSE stream through the gateway.
    let client = reqwest::Client::new();
    let (status, _, body) = get(
        &client,
        &format!("http://{beacon}/eth/v1/node/syncing"),
        "ssv-ha",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["data"]["head_slot"].is_string());
    let (status, _, _) = get(
        &client,
        &format!("http://{strict}/eth/v1/node/syncing"),
        "ssv-ha",
    )
    .await;
    assert_eq!(status, 503, "the strict pool has no healthy node");
    let mut events = client
        .get(format!("http://{beacon}/eth/v1/events?topics=head"))
        .send()
        .await
        .expect("SSE through the gateway");
    assert_eq!(events.status(), 200);
    let mut text = String::new();
    let head = tokio::time::timeout(Duration::from_secs(60), async {
        while !text.contains("event: head") || !text.contains("\"slot\"") {
            let Ok(Some(chunk)) = events.chunk().await else {
                break;
            };
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text.clone()
    })
    .await
    .expect("a head event within 60 s (genesis delay, then one every 2 s)");
    assert!(head.contains("event: head"), "{head}");

    // ssv-ha probe says the same, with the right exit codes.
    let url = format!("http://127.0.0.1:{rest}");
    let probe = |min_peers: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
                .args([
                    "probe",
                    "--kind",
                    "consensus",
                    "--min-peers",
                    min_peers,
                    &url,
                ])
                .output()
                .unwrap()
        })
    };
    let ok = probe("0").await.unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let lonely = probe("1").await.unwrap();
    let text = String::from_utf8_lossy(&lonely.stdout);
    assert_eq!(lonely.status.code(), Some(1), "{text}");
    assert!(text.contains("UNHEALTHY: peers 0 < 1"), "{text}");
}

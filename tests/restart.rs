//! Zero-downtime restart: a new process started with `--upgrade` takes the listening sockets over
//! from the running one on SIGQUIT, and no client connection is refused meanwhile.

mod common;

use common::*;
use ssv_ha::sim::{NodeKind, NodeStatus};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_hands_over_the_listeners_without_refusing_a_connection() {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let socket = pki.dir.path().join("upgrade.sock");
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\nserver: {{ grace_period: 1s, upgrade_socket: {socket}, pid_file: {pid} }}\nlisteners: [{{ address: \"{listen}\" }}]\npools:\n{pools}routes: [{{ listener: \"{listen}\", pool: execution }}]\n",
        socket = socket.display(),
        pid = pki.dir.path().join("ssv-ha.pid").display(),
        pools = pool_yaml("execution", "execution", "first", &pki.ca_file, &[(&ec, false)]),
    );
    let old = Gateway::start(&yaml, admin, &[listen]).await;
    old.wait_backend("execution", "ec-a", true).await;

    // Clients keep opening new connections the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let resets = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, ok, failed, resets) = (stop.clone(), ok.clone(), failed.clone(), resets.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let sent = client
                    .post(format!("http://{listen}/"))
                    .json(&rpc("eth_blockNumber", 1))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    // A connection accepted by the old process in the instant it stops may be
                    // closed unanswered (Pingora's hand-over); a client retries that. Counted
                    // apart, and bounded below.
                    Err(e) if !e.is_connect() && e.is_request() => {
                        eprintln!("closed during the restart: {e:?}");
                        resets.fetch_add(1, Ordering::Relaxed)
                    }
                    other => {
                        eprintln!("failed during the restart: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };

    // The new process waits for the sockets; the old one hands them over on SIGQUIT.
    let new = Killed(
        Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
            .args(["run", "--upgrade", "-c"])
            .arg(&old.config_path)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the new process"),
    );
    wait_for(
        "the new process to wait for the sockets",
        Duration::from_secs(10),
        || {
            let socket = socket.clone();
            async move { socket.exists().then_some(()) }
        },
    )
    .await;
    let served_before = ok.load(Ordering::Relaxed);
    let status = tokio::task::spawn_blocking(move || old.signal_and_wait("QUIT"))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "the old process exits cleanly");
    // Only the new process is left: it must be serving.
    let after_old = ok.load(Ordering::Relaxed);
    wait_for(
        "requests served by the new process",
        Duration::from_secs(5),
        || {
            let ok = ok.clone();
            async move { (ok.load(Ordering::Relaxed) > after_old + 20).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a connection was refused or answered with an error during the restart"
    );
    assert!(
        resets.load(Ordering::Relaxed) <= 2,
        "too many connections closed unanswered"
    );
    assert!(
        ok.load(Ordering::Relaxed) > served_before + 100,
        "traffic kept flowing"
    );
    let status: serde_json::Value = reqwest::get(format!("http://{admin}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["pools"][0]["active"], "ec-a",
        "the new process's admin listener took over too"
    );
    drop(new);
}

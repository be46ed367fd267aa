//! Test harness: the built `ssv-ha` binary started on a config in a temp dir, simulated nodes with
//! TLS from a CA made for the test, and polling helpers with deadlines (no fixed sleeps).
#![allow(dead_code)]

pub mod chaos;
pub mod recorder;
pub mod seamless;
pub mod wire;

use serde_json::{json, Value};
use ssv_ha::sim::tls::TestCa;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound once by the OS, then released for the gateway to take).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A CA for the test plus a temp dir holding its certificate.
pub struct Pki {
    pub ca: TestCa,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = TestCa::new("ssv-ha test CA").expect("test CA");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = ca.write_cert(dir.path()).expect("write CA");
        Pki { ca, dir, ca_file }
    }

    /// A simulated node serving TLS for `localhost` with a certificate from this CA.
    pub async fn node(&self, kind: NodeKind, name: &str, status: NodeStatus) -> SimNode {
        let leaf = self
            .ca
            .leaf(&["localhost", "127.0.0.1"])
            .expect("leaf certificate");
        let tls = leaf.server_config().expect("server config");
        SimNode::start_on(
            kind,
            name,
            status,
            "127.0.0.1:0".parse().unwrap(),
            Some(tls),
        )
        .await
        .expect("start simulated node")
    }
}

/// Fast health settings so tests react in a fraction of a second.
pub const FAST_HEALTH: &str = "{ interval: 100ms, timeout: 90ms, rise: 1, fall: 1 }";

/// The built binary, running on a config; killed when dropped.
pub struct Gateway {
    child: Child,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Gateway {
    /// Writes `yaml` to a temp dir and starts `ssv-ha run` on it; returns once `/healthz` answers
    /// and every listener in `listeners` accepts connections.
    pub async fn start(yaml: &str, admin: SocketAddr, listeners: &[SocketAddr]) -> Gateway {
        Self::launch(yaml, admin, listeners, None, None).await
    }

    /// Like [`Gateway::start`], and every line the gateway logs is also sent to the receiver.
    pub async fn start_logged(
        yaml: &str,
        admin: SocketAddr,
        listeners: &[SocketAddr],
    ) -> (Gateway, std::sync::mpsc::Receiver<String>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (
            Self::launch(yaml, admin, listeners, Some(tx), None).await,
            rx,
        )
    }

    /// Like [`Gateway::start_logged`], with `RUST_LOG` set to `filter` (`info` for access lines).
    pub async fn start_logged_at(
        yaml: &str,
        admin: SocketAddr,
        listeners: &[SocketAddr],
        filter: &str,
    ) -> (Gateway, std::sync::mpsc::Receiver<String>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let gateway = Self::launch(yaml, admin, listeners, Some(tx), Some(filter)).await;
        (gateway, rx)
    }

    async fn launch(
        yaml: &str,
        admin: SocketAddr,
        listeners: &[SocketAddr],
        log: Option<std::sync::mpsc::Sender<String>>,
        filter: Option<&str>,
    ) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("ssv-ha.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
            .args(["run", "-c"])
            .arg(&config_path)
            .env(
                "RUST_LOG",
                filter.map_or_else(
                    || std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                    str::to_string,
                ),
            )
            .stdin(Stdio::null())
            .stderr(if log.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("start ssv-ha");
        let mut child = child;
        if let (Some(tx), Some(stderr)) = (log, child.stderr.take()) {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    eprintln!("{line}");
                    let _ = tx.send(line);
                }
            });
        }
        let mut gateway = Gateway {
            child,
            admin,
            dir,
            config_path,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                panic!("ssv-ha exited with {status} (its errors are above)");
            }
            let ready = client.get(format!("http://{admin}/healthz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ssv-ha's admin listener did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for &addr in listeners {
            wait_for(
                "a gateway listener",
                Duration::from_secs(10),
                || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
            )
            .await;
        }
        gateway
    }

    pub async fn status(&self) -> Value {
        reqwest::get(format!("http://{}/status", self.admin))
            .await
            .expect("GET /status")
            .json()
            .await
            .expect("status is JSON")
    }

    pub fn backend_status(status: &Value, pool: &str, backend: &str) -> Value {
        Self::find_backend(status, pool, backend)
            .unwrap_or_else(|| panic!("no backend {pool}/{backend} in {status:#}"))
    }

    fn find_backend(status: &Value, pool: &str, backend: &str) -> Option<Value> {
        status["pools"]
            .as_array()
            .and_then(|pools| pools.iter().find(|p| p["name"] == pool))
            .and_then(|p| p["backends"].as_array())
            .and_then(|bs| bs.iter().find(|b| b["name"] == backend))
            .cloned()
    }

    /// Waits until `/status` shows the backend healthy (or not) and returns its entry.
    pub async fn wait_backend(&self, pool: &str, backend: &str, healthy: bool) -> Value {
        wait_for(
            &format!("{pool}/{backend} healthy={healthy}"),
            Duration::from_secs(10),
            || async move {
                // A backend may appear only after a reload.
                let b = Self::find_backend(&self.status().await, pool, backend)?;
                (b["healthy"] == healthy && b["state"] != "unknown").then_some(b)
            },
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal_and_wait("TERM")
    }

    /// Sends a signal (`TERM`, `QUIT`, ...) and waits for the exit status.
    pub fn signal_and_wait(mut self, signal: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for ssv-ha")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a healthy execution node answers to the gateway's health-check batch (for test backends
/// that speak raw HTTP).
pub const HEALTHY_BATCH: &str = r#"[{"jsonrpc":"2.0","id":1,"result":false},{"jsonrpc":"2.0","id":2,"result":"0x19"},{"jsonrpc":"2.0","id":3,"result":"0x3e8"},{"jsonrpc":"2.0","id":4,"result":"0x1"}]"#;

/// The value of a metric series in Prometheus text (`0` when the series is absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

pub fn rpc(method: &str, id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": []})
}

/// POSTs JSON and returns status, the answering simulated node (`x-sim-node`) and the JSON body.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    host: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let response = client
        .post(url)
        .header("host", host)
        .json(body)
        .send()
        .await
        .expect("request through the gateway");
    read(response).await
}

/// The host name `ec_pair` and `start_on` route to the execution pool.
pub const RPC_HOST: &str = "rpc.example.com";

/// Posts `body` as it is to the gateway's execution host at `listen`; returns the status, the
/// simulated node that answered (`x-sim-node`), and the answer's text unparsed.
pub async fn post_text(
    client: &reqwest::Client,
    listen: std::net::SocketAddr,
    body: String,
) -> (u16, Option<String>, String) {
    let response = client
        .post(format!("http://{listen}/"))
        .header("host", RPC_HOST)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request through the gateway");
    let status = response.status().as_u16();
    let node = response
        .headers()
        .get("x-sim-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, node, response.text().await.expect("body"))
}

/// One JSON-RPC call's text, its id and params given as JSON text.
pub fn call_text(id: &str, method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

pub async fn get(client: &reqwest::Client, url: &str, host: &str) -> (u16, Option<String>, Value) {
    let response = client
        .get(url)
        .header("host", host)
        .send()
        .await
        .expect("request through the gateway");
    read(response).await
}

async fn read(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let node = response
        .headers()
        .get("x-sim-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.bytes().await.expect("body");
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&body)));
    (status, node, json)
}

// Config builders shared by the pool-level tests.

pub fn pool_yaml(
    name: &str,
    kind: &str,
    policy: &str,
    ca: &std::path::Path,
    backends: &[(&SimNode, bool)],
) -> String {
    pool_yaml_with(name, kind, policy, ca, backends, "")
}

/// A pool with extra settings (`extra`: indented YAML lines such as `    max_lag: 3\n`); the fast
/// health settings apply unless `extra` has its own `health:`.
pub fn pool_yaml_with(
    name: &str,
    kind: &str,
    policy: &str,
    ca: &std::path::Path,
    backends: &[(&SimNode, bool)],
    extra: &str,
) -> String {
    let health = if extra.contains("health:") {
        String::new()
    } else {
        format!("    health: {FAST_HEALTH}\n")
    };
    let mut yaml = format!("  {name}:\n    kind: {kind}\n    policy: {policy}\n    ca: {}\n{health}{extra}    backends:\n", ca.display());
    for (node, backup) in backends {
        yaml.push_str(&format!(
            "      - {{ name: {}, url: \"{}\", backup: {backup} }}\n",
            node.name(),
            node.url()
        ));
    }
    yaml
}

pub fn config(
    admin: std::net::SocketAddr,
    listen: std::net::SocketAddr,
    pools: &str,
    routes: &str,
) -> String {
    format!("admin: {{ address: \"{admin}\" }}\nlisteners: [{{ address: \"{listen}\" }}]\npools:\n{pools}routes:\n{routes}")
}

pub const EC_ROUTE: &str = "  - { host: rpc.example.com, pool: execution }\n";
pub const CC_ROUTE: &str = "  - { host: beacon.example.com, pool: consensus }\n";

pub async fn who_answers(
    client: &reqwest::Client,
    listen: std::net::SocketAddr,
) -> (u16, Option<String>) {
    let (status, node, _) = post(
        client,
        &format!("http://{listen}/"),
        "rpc.example.com",
        &rpc("eth_blockNumber", 1),
    )
    .await;
    (status, node)
}

/// Starts the gateway on one listener with `pools` (YAML under `pools:`) and `routes`, on free
/// ports; returns it and its listener.
/// A gateway in front of two simulated execution nodes, `ec-a` and its backup `ec-b`, in pool
/// `execution` (policy `first`, `extra` pool settings) on the `rpc.example.com` route, both
/// healthy. Keep `pki` alive as long as the nodes.
pub struct EcPair {
    pub pki: Pki,
    pub a: SimNode,
    pub b: SimNode,
    pub gw: Gateway,
    pub listen: SocketAddr,
}

pub async fn ec_pair(extra: &str) -> EcPair {
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
        extra,
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    EcPair {
        pki,
        a,
        b,
        gw,
        listen,
    }
}

/// One execution node, `ec-a`, whose `eth_getLogs` answers carry `bytes` of data, and its pool
/// (`execution`) as YAML: the large answers the held-bytes tests need.
pub async fn large_logs_node(pki: &Pki, bytes: usize) -> (SimNode, String) {
    let status = NodeStatus {
        logs_answer_bytes: Some(bytes),
        ..NodeStatus::default()
    };
    let node = pki.node(NodeKind::Execution, "ec-a", status).await;
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&node, false)],
        "",
    );
    (node, pools)
}

/// A gateway for `pools` and `routes` with `limits`, a top-level YAML line (or nothing).
pub async fn start_with_limits(pools: &str, routes: &str, limits: &str) -> (Gateway, SocketAddr) {
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!("{}\n{limits}", config(admin, listen, pools, routes));
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    (gw, listen)
}

pub async fn start_on(pools: &str, routes: &str) -> (Gateway, SocketAddr) {
    let (admin, listen) = (free_addr(), free_addr());
    let gw = Gateway::start(&config(admin, listen, pools, routes), admin, &[listen]).await;
    (gw, listen)
}

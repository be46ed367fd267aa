//! `ssv-ha demo`: two simulated execution nodes and two simulated consensus nodes on loopback, the
//! gateway in front of them, and keys to make a primary fail so the failover can be watched.

use crate::sim::{NodeKind, NodeStatus, SimNode};
use anyhow::Context;
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The demo's log filter unless `RUST_LOG` is set: ssv-ha's lines at `info` (health transitions,
/// failovers, the access line of each request), Pingora's only from `warn` up, so its start-up
/// lines ("Bootstrap starting", "Server starting", one per service) do not push the
/// instructions off the screen.
pub const LOG_FILTER: &str = "info,pingora=warn,pingora_core=warn,pingora_proxy=warn,\
     pingora_load_balancing=warn,pingora_pool=warn,pingora_runtime=warn,pingora_rustls=warn";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the gateway serves execution JSON-RPC (HTTP and WebSocket).
    #[arg(long, default_value = "127.0.0.1:18545")]
    pub execution_listen: SocketAddr,
    /// Where the gateway serves the beacon API.
    #[arg(long, default_value = "127.0.0.1:15052")]
    pub consensus_listen: SocketAddr,
    /// The admin listener (status, metrics).
    #[arg(long, default_value = "127.0.0.1:18405")]
    pub admin: SocketAddr,
    /// Seconds between two simulated blocks.
    #[arg(long, default_value_t = 2)]
    pub block_time: u64,
}

struct Nodes {
    ec_a: Arc<SimNode>,
    ec_b: Arc<SimNode>,
    cc_a: Arc<SimNode>,
    cc_b: Arc<SimNode>,
    runtime: tokio::runtime::Handle,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let nodes = start_nodes(Duration::from_secs(args.block_time.max(1)))?;
    let yaml = config_yaml(&args, &nodes);
    let config = crate::config::parse(&yaml, std::path::Path::new("."))
        .map_err(|errors| anyhow::anyhow!("demo config is invalid: {errors:?}"))?;
    let built = crate::server::build(&config, None, &Default::default())?;

    let ec = format!("http://{}", args.execution_listen);
    let cc = format!("http://{}", args.consensus_listen);
    println!(
        r#"ssv-ha demo: ec-a (primary) and ec-b (backup) behind {ec}; cc-a and cc-b behind {cc}

Try, in another terminal:
  curl -s {ec} -H 'content-type: application/json' -d '{{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}}' -i
  curl -sN '{cc}/eth/v1/events?topics=head&topics=block'
  websocat ws://{ecl}   then send {{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}}
  curl -s http://{admin}/status        (health and reasons; /metrics for Prometheus)
The x-sim-node response header names the node that answered.

Make a primary fail here (type the key, then Enter):
  1  ec-a starts/stops syncing        2  cc-a starts/stops syncing
  k  ec-a dies (refuses connections) / comes back
or over HTTP: curl -X POST {eca}/sim/state -d '{{"syncing":true}}'
Ctrl-C stops the demo.
ssv-ha demo ready"#,
        ecl = args.execution_listen,
        admin = args.admin,
        eca = nodes.ec_a.url(),
    );
    std::thread::spawn(move || keys(nodes));
    built.server.run_forever()
}

fn start_nodes(block_time: Duration) -> anyhow::Result<Nodes> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sim-nodes".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let start = |kind, name: &'static str| async move {
                    SimNode::start(kind, name, NodeStatus::default())
                        .await
                        .map(Arc::new)
                        .with_context(|| format!("starting {name}"))
                };
                let started = async {
                    Ok::<_, anyhow::Error>(Nodes {
                        ec_a: start(NodeKind::Execution, "ec-a").await?,
                        ec_b: start(NodeKind::Execution, "ec-b").await?,
                        cc_a: start(NodeKind::Consensus, "cc-a").await?,
                        cc_b: start(NodeKind::Consensus, "cc-b").await?,
                        runtime: tokio::runtime::Handle::current(),
                    })
                }
                .await;
                let all = match started {
                    Ok(nodes) => {
                        let all = [
                            nodes.ec_a.clone(),
                            nodes.ec_b.clone(),
                            nodes.cc_a.clone(),
                            nodes.cc_b.clone(),
                        ];
                        let _ = tx.send(Ok(nodes));
                        all
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let mut ticker = tokio::time::interval(block_time);
                loop {
                    ticker.tick().await;
                    for node in &all {
                        node.new_head();
                    }
                }
            });
        })?;
    rx.recv().context("the simulated nodes' thread ended")?
}

fn config_yaml(args: &DemoArgs, nodes: &Nodes) -> String {
    format!(
        r#"
admin: {{ address: "{admin}" }}
server: {{ threads: 2, grace_period: 1s }}
listeners:
  - {{ name: execution, address: "{ec}" }}
  - {{ name: consensus, address: "{cc}" }}
pools:
  execution:
    kind: execution
    policy: first
    health: {{ interval: 1s, timeout: 500ms, rise: 2, fall: 1 }}
    backends:
      - {{ name: ec-a, url: "{eca}" }}
      - {{ name: ec-b, url: "{ecb}", backup: true }}
  consensus:
    kind: consensus
    policy: first
    health: {{ interval: 1s, timeout: 500ms, rise: 2, fall: 1 }}
    backends:
      - {{ name: cc-a, url: "{cca}" }}
      - {{ name: cc-b, url: "{ccb}", backup: true }}
routes:
  - {{ listener: execution, pool: execution }}
  - {{ listener: consensus, pool: consensus }}
"#,
        admin = args.admin,
        ec = args.execution_listen,
        cc = args.consensus_listen,
        eca = nodes.ec_a.url(),
        ecb = nodes.ec_b.url(),
        cca = nodes.cc_a.url(),
        ccb = nodes.cc_b.url(),
    )
}

fn keys(nodes: Nodes) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        match line.trim() {
            "1" => toggle_syncing(&nodes.ec_a),
            "2" => toggle_syncing(&nodes.cc_a),
            "k" => {
                let _guard = nodes.runtime.enter();
                if nodes.ec_a.is_listening() {
                    nodes.ec_a.go_down();
                    println!("ec-a is dead: connections are refused (k brings it back)");
                } else {
                    match nodes.ec_a.come_back() {
                        Ok(()) => {
                            println!("ec-a listens again; it gets traffic after its checks pass")
                        }
                        Err(e) => println!("ec-a cannot listen again: {e}"),
                    }
                }
            }
            "" => {}
            other => println!("unknown key `{other}`: use 1, 2 or k"),
        }
    }
}

fn toggle_syncing(node: &SimNode) {
    node.set(|s| s.syncing = !s.syncing);
    let syncing = node.status().syncing;
    println!(
        "{} {}",
        node.name(),
        if syncing {
            "now reports syncing: traffic moves to the backup"
        } else {
            "is synced again: traffic returns to it"
        }
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_log_filter_parses() {
        // EnvFilter::new would drop a directive it cannot read without a word.
        tracing_subscriber::EnvFilter::try_new(super::LOG_FILTER).expect("a valid filter");
    }
}

//! ssv-ha's Ethereum health check in a plain Pingora `LoadBalancer`.
//!
//! ```text
//! cargo run --example lb_health_check -- 127.0.0.1:8545 127.0.0.1:8546
//! ```
//!
//! Each address is an execution node's JSON-RPC endpoint (plain HTTP). The load balancer runs the
//! check on every node, judged against the others (syncing, peers, lag behind the best head, head
//! age), then prints each node's health with its reason and the node it would send a request to.
//! In a Pingora server, set `lb.health_check_frequency` and run the load balancer as a background
//! service instead of calling the passes by hand.

use pingora::lb::{selection::RoundRobin, LoadBalancer};
use ssv_ha::health::check::{CheckSettings, ExecutionCheck};

/// Each node's address, health and reason, and the node a request would go to.
pub struct Outcome {
    pub nodes: Vec<(String, bool, String)>,
    pub selected: Option<String>,
}

pub async fn run(addresses: &[String]) -> std::io::Result<Outcome> {
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addresses)?;
    let settings = CheckSettings::execution();
    let passes = settings.rise.max(settings.fall);
    let check = ExecutionCheck::new(settings);
    // The check's pool view outlives the box the load balancer takes: it has the reasons.
    let view = check.view().clone();
    lb.set_health_check(Box::new(check));
    // Pingora counts `rise`/`fall` checks in a row before it flips a backend.
    for _ in 0..passes {
        lb.backends().run_health_check(false).await;
    }
    let backends = lb.backends();
    let nodes = backends
        .get_backend()
        .iter()
        .map(|b| {
            let name = b.addr.to_string();
            let reason = view.reason(&name).unwrap_or_default();
            (name, backends.ready(b), reason)
        })
        .collect();
    let selected = lb.select(b"", 256).map(|b| b.addr.to_string());
    Ok(Outcome { nodes, selected })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addresses: Vec<String> = std::env::args().skip(1).collect();
    if addresses.is_empty() {
        eprintln!("usage: lb_health_check HOST:PORT...");
        std::process::exit(2);
    }
    let outcome = run(&addresses).await?;
    for (node, healthy, reason) in &outcome.nodes {
        let word = if *healthy { "healthy" } else { "unhealthy" };
        println!("{node}: {word}: {reason}");
    }
    match outcome.selected {
        Some(node) => println!("a request would go to {node}"),
        None => println!("no node to send a request to"),
    }
    Ok(())
}

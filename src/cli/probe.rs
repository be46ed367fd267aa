//! `ssv-ha probe`: one health check of one or more nodes, judged as a pool, printed for a human
//! (or as JSON). Replaces the original check scripts for operators and container health checks.

use crate::config::model::{self, ExpectedNetwork, PoolKind};
use crate::health::check::{ByName, CheckSettings, NodeSpec, PoolView, Report};
use crate::health::verdict::{Rules, Verdict};
use crate::health::Facts;
use pingora::lb::Backend;
use pingora::protocols::l4::socket::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// What the nodes are.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Node API URLs (http:// or https://); several are judged together, as a pool.
    #[arg(required = true)]
    urls: Vec<url::Url>,
    /// Minimum peers; 0 switches the peer rule off.
    #[arg(long, default_value_t = model::DEFAULT_MIN_PEERS)]
    min_peers: u64,
    /// Blocks (execution) or slots (consensus) behind the best of the given nodes that are
    /// tolerated [default: 5 for execution, 8 for consensus].
    #[arg(long)]
    max_lag: Option<u64>,
    /// Consensus: slots behind the wall clock that are tolerated.
    #[arg(long, default_value_t = model::DEFAULT_MAX_SLOT_LAG)]
    max_slot_lag: u64,
    /// Execution: the chain id the nodes must report.
    #[arg(long)]
    chain_id: Option<u64>,
    /// Consensus: the genesis validators root the nodes must report.
    #[arg(long)]
    genesis_validators_root: Option<String>,
    /// Execution: how old the latest block may be, like 2m, or `off` for a chain that makes blocks
    /// on demand.
    #[arg(long, default_value = "2m", value_parser = head_age)]
    max_head_age: HeadAge,
    /// Longest a probe may take, like 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// PEM file with extra CA certificates to trust.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `--max-head-age`: a duration, or off.
#[derive(Debug, Clone, Copy)]
struct HeadAge(Option<Duration>);

fn head_age(text: &str) -> Result<HeadAge, String> {
    if text.trim() == "off" {
        return Ok(HeadAge(None));
    }
    humantime::parse_duration(text.trim())
        .map(|d| HeadAge(Some(d)))
        .map_err(|e| format!("`{text}` is neither a duration (2m) nor off: {e}"))
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Kind {
    Execution,
    Consensus,
}

pub fn run(args: ProbeArgs) -> ExitCode {
    let kind = match args.kind {
        Kind::Execution => PoolKind::Execution,
        Kind::Consensus => PoolKind::Consensus,
    };
    let rules = Rules {
        min_peers: args.min_peers,
        max_lag: args.max_lag.unwrap_or(match kind {
            PoolKind::Execution => model::DEFAULT_EXECUTION_MAX_LAG,
            PoolKind::Consensus => model::DEFAULT_CONSENSUS_MAX_LAG,
        }),
        max_slot_lag: args.max_slot_lag,
        max_head_age: match kind {
            PoolKind::Execution => args.max_head_age.0.map(|d| d.as_secs()),
            PoolKind::Consensus => None,
        },
        expected: ExpectedNetwork {
            chain_id: args.chain_id,
            genesis_validators_root: args.genesis_validators_root.map(|r| r.to_ascii_lowercase()),
            genesis_fork_version: None,
        },
    };
    let names: Vec<String> = args
        .urls
        .iter()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ssv-ha probe: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = CheckSettings {
        rules,
        timeout: args.timeout,
        rise: 1,
        fall: 1,
    };
    let view = PoolView::new(kind, settings);
    let check = view.check_for_kind();
    let reports: Vec<Report> = runtime.block_on(async {
        let backends: Vec<Backend> = names
            .iter()
            .zip(&args.urls)
            .map(|(name, url)| backend(name, url, args.ca.clone()))
            .collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // Judged together, as one round of a pool.
        view.begin_round(&name_refs);
        futures::future::join_all(backends.iter().map(|b| check.check(b))).await;
        names
            .iter()
            .map(|name| {
                view.report(name).unwrap_or_else(|| Report {
                    facts: Err("not checked".to_string()),
                    latency: Duration::ZERO,
                    verdict: Verdict::failed("not checked".to_string()),
                })
            })
            .collect()
    });
    let verdicts: Vec<&Verdict> = reports.iter().map(|r| &r.verdict).collect();

    if args.json {
        let nodes: Vec<serde_json::Value> = names
            .iter()
            .zip(&reports)
            .map(|(name, o)| {
                let v = &o.verdict;
                serde_json::json!({
                    "url": name,
                    "healthy": v.healthy,
                    "reason": v.summary(),
                    "verdict": v,
                    "facts": o.facts.as_ref().ok(),
                    "latency_ms": o.latency.as_secs_f64() * 1000.0,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(nodes));
    } else {
        for (name, report) in names.iter().zip(&reports) {
            print_text(name, report);
        }
    }
    if verdicts.iter().all(|v| v.healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The Pingora backend for one URL, probed by its host name as the system resolves it (every
/// address tried in turn), as the original check scripts did.
fn backend(name: &str, url: &url::Url, ca: Option<PathBuf>) -> Backend {
    let port = url.port_or_known_default().unwrap_or(80);
    let mut backend = Backend {
        addr: SocketAddr::Inet(std::net::SocketAddr::from(([0, 0, 0, 0], port))),
        weight: 1,
        ext: Default::default(),
    };
    let mut spec = NodeSpec::new(name, url.clone());
    spec.ca = ca;
    backend.ext.insert(spec);
    backend.ext.insert(ByName);
    backend
}

fn print_text(name: &str, o: &Report) {
    let v = &o.verdict;
    let word = if v.healthy { "HEALTHY" } else { "UNHEALTHY" };
    println!("{name}: {word}: {}", v.summary());
    let mut seen = Vec::new();
    match &o.facts {
        Ok(Facts::Execution(f)) => {
            seen.push(format!("syncing {}", f.syncing));
            seen.push(format!(
                "peers {}",
                f.peers.map_or("-".into(), |p| p.to_string())
            ));
            seen.push(format!(
                "head {}",
                f.head.map_or("-".into(), |h| h.to_string())
            ));
            seen.push(format!(
                "chain id {}",
                f.chain_id.map_or("-".into(), |c| c.to_string())
            ));
        }
        Ok(Facts::Consensus(f)) => {
            seen.push(format!("syncing {}", f.is_syncing));
            seen.push(format!(
                "optimistic {}",
                f.is_optimistic.map_or("-".into(), |b| b.to_string())
            ));
            seen.push(format!(
                "el_offline {}",
                f.el_offline.map_or("-".into(), |b| b.to_string())
            ));
            seen.push(format!(
                "peers {}",
                f.peers.map_or("-".into(), |p| p.to_string())
            ));
            seen.push(format!(
                "head slot {}",
                f.head_slot.map_or("-".into(), |h| h.to_string())
            ));
            if let Some(g) = &f.genesis {
                seen.push(format!("genesis root {}", g.validators_root));
            }
        }
        Err(_) => {}
    }
    if let Some(lag) = v.lag {
        seen.push(format!("lag {lag}"));
    }
    seen.push(format!(
        "latency {:.1} ms",
        o.latency.as_secs_f64() * 1000.0
    ));
    println!("  {}", seen.join(", "));
}

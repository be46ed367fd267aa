//! Runs every pool's health checks on their interval and publishes each verdict to its backend.
//!
//! One task per pool; each round probes all of the pool's backends at once, so a slow node never
//! delays the verdict on another. Host names are resolved again on every round (haproxy's
//! `resolvers`): a name that does not resolve is a down backend with that reason, not a crash.

use super::hysteresis::Transition;
use super::verdict::{judge, Rules};
use super::{consensus, execution, probe, Facts};
use crate::config::model::PoolKind;
use crate::upstream::{Backend, Pool};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub struct Monitor {
    pools: Vec<Arc<Pool>>,
}

impl Monitor {
    pub fn new(pools: Vec<Arc<Pool>>) -> Self {
        Monitor { pools }
    }
}

#[async_trait]
impl BackgroundService for Monitor {
    async fn start(&self, shutdown: ShutdownWatch) {
        let tasks = self
            .pools
            .iter()
            .map(|pool| run_pool(pool.clone(), shutdown.clone()));
        futures::future::join_all(tasks).await;
    }
}

async fn run_pool(pool: Arc<Pool>, mut shutdown: ShutdownWatch) {
    let clients: Vec<Result<reqwest::Client, String>> = pool
        .backends
        .iter()
        .map(|b| probe::client(&b.config))
        .collect();
    let mut ticker = tokio::time::interval(pool.health.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let checks = pool.backends.iter().zip(&clients).map(|(b, c)| check(&pool, b, c));
                futures::future::join_all(checks).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn check(pool: &Pool, backend: &Backend, client: &Result<reqwest::Client, String>) {
    let started = Instant::now();
    let observed = tokio::time::timeout(pool.health.timeout, observe(pool, backend, client))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", pool.health.timeout)));
    let latency = started.elapsed();
    let verdict = judge(
        &observed,
        Rules {
            min_peers: pool.min_peers,
        },
    );
    if verdict.healthy {
        backend.metrics.checks_ok.inc();
    } else {
        backend.metrics.checks_failed.inc();
    }

    let mut record = backend.record();
    let transition = record
        .hysteresis
        .record(verdict.healthy, pool.health.rise, pool.health.fall);
    backend.set_up(record.hysteresis.is_up());
    let now = SystemTime::now();
    record.last_check = Some(now);
    record.latency = Some(latency);
    record.facts = observed.ok();
    if let Some(t) = transition {
        record.last_change = Some(now);
        let reason = verdict.summary();
        match t {
            Transition::Up => {
                tracing::info!(pool = %pool.name, backend = %backend.name(), %reason, "backend up")
            }
            Transition::Down => {
                tracing::warn!(pool = %pool.name, backend = %backend.name(), %reason, "backend down")
            }
        }
    }
    record.verdict = Some(verdict);
}

async fn observe(
    pool: &Pool,
    backend: &Backend,
    client: &Result<reqwest::Client, String>,
) -> Result<Facts, String> {
    backend.resolve().await?;
    let client = client.as_ref().map_err(Clone::clone)?;
    let url = &backend.config.http.url;
    match pool.kind {
        PoolKind::Execution => execution::probe(client, url).await,
        PoolKind::Consensus => consensus::probe(client, url, pool.min_peers > 0).await,
    }
}

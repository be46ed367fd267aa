//! The routing built from a resolved config: pools, backends and route tables, at start-up and
//! again on every reload, which carries over what did not change.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::upstream::routing::{RouteTable, Routing};
use crate::upstream::{Backend, Pool};
use std::sync::Arc;

/// A backend that could not be built (its CA file changed or vanished since validation).
#[derive(Debug, thiserror::Error)]
#[error("backend {pool}/{backend}: {message}")]
pub struct BackendError {
    pub pool: String,
    pub backend: String,
    pub message: String,
}

/// Builds the routing of `config`. With a `previous` routing, backends are matched by pool and
/// name: one whose settings are all unchanged (and in the same place) is kept as it is; the same
/// node under other settings (timeouts, health thresholds, headers, its place) is rebuilt with
/// its health, addresses and live sessions carried over; only a node whose endpoints changed
/// starts anew.
pub fn build_routing(
    config: &Config,
    metrics: &Metrics,
    previous: Option<&Routing>,
) -> Result<Routing, BackendError> {
    let mut pools = Vec::with_capacity(config.pools.len());
    for pool in &config.pools {
        let old_pool = previous
            .and_then(|r| r.pools.iter().find(|p| p.config.name == pool.name))
            .filter(|old| old.config.kind == pool.kind);
        let same_timeouts = previous.is_some_and(|r| r.timeouts == config.timeouts);
        let mut backends = Vec::with_capacity(pool.backends.len());
        for (index, b) in pool.backends.iter().enumerate() {
            // By name; failing that, the same node under another name (two names swapped, a
            // rename): its state is carried over just the same.
            let old = old_pool.and_then(|old| {
                let by_name = old.backends.iter().find(|o| o.name() == b.name);
                by_name
                    .filter(|o| o.same_node(b))
                    .or_else(|| old.backends.iter().find(|o| o.same_node(b)))
                    .or(by_name)
            });
            let unchanged = old.filter(|o| {
                same_timeouts
                    && o.index == index
                    && o.config == *b
                    && old_pool.is_some_and(|p| p.config.health == pool.health)
            });
            let backend = match unchanged {
                Some(backend) => backend.clone(),
                None => Arc::new(
                    Backend::new(
                        pool,
                        index,
                        b.clone(),
                        config.timeouts,
                        metrics.backend(&pool.name, &b.name),
                        old.map(|o| o.as_ref()).filter(|o| o.same_node(b)),
                    )
                    .map_err(|message| BackendError {
                        pool: pool.name.clone(),
                        backend: b.name.clone(),
                        message,
                    })?,
                ),
            };
            backends.push(backend);
        }
        let unchanged = old_pool.filter(|old| {
            old.config == *pool
                && old.backends.len() == backends.len()
                && old
                    .backends
                    .iter()
                    .zip(&backends)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        });
        pools.push(match unchanged {
            Some(old) => old.clone(),
            None => Arc::new(Pool::new(pool.clone(), backends, metrics.pool(&pool.name))),
        });
    }
    let tables = (0..config.listeners.len())
        .map(|i| RouteTable::for_listener(config, i))
        .collect();
    Ok(Routing {
        pools,
        tables,
        retries: config.retries,
        timeouts: config.timeouts,
        access_log: config.log.access,
        limits: config.limits,
    })
}

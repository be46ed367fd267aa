//! Configuration reload without a restart (SIGHUP, or `POST /reload` on the admin listener).
//!
//! The file is read and validated again. If anything is wrong, the running configuration stays and
//! every error is reported. Otherwise a new [`Routing`] is built and swapped in at once. Backends
//! are matched by pool and name: unchanged ones are carried over as they are; the same node under
//! other settings is rebuilt with its health state, addresses and live sessions carried over; new
//! ones (and nodes whose endpoints changed) start unknown and get traffic after their first good
//! check; removed ones have their sessions ended. Changes that need new sockets or a new runtime
//! (listeners, admin listener, threads, grace period, upgrade socket) are refused with a note to
//! restart (`ssv-ha run --upgrade`); nothing is half-applied.

use super::routing::build_routing;
use crate::admin::Reload;
use crate::config::model::Config;
use crate::metrics::events::EventKind;
use crate::metrics::Metrics;
use crate::upstream::routing::Routing;
use crate::upstream::session::CutReason;
use crate::upstream::Backend;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Reloads the configuration file into the running gateway.
pub struct Reloader {
    /// `None` when the gateway was not started from a file (the demo).
    path: Option<PathBuf>,
    current: Mutex<Config>,
    routing: Arc<ArcSwap<Routing>>,
    metrics: Arc<Metrics>,
    /// Bumped after every swap, so the health monitor follows the new pools.
    generation: watch::Sender<u64>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        config: Config,
        routing: Arc<ArcSwap<Routing>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader {
            path,
            current: Mutex::new(config),
            routing,
            metrics,
            generation: watch::channel(0).0,
        }
    }

    /// Notified after every successful reload.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Reads the file again and applies it; on failure, returns every error and changes nothing.
    pub fn reload(&self) -> Result<String, Vec<String>> {
        let result = self.try_reload();
        match &result {
            Ok(summary) => {
                self.metrics.count_reload(true);
                tracing::info!(%summary, "configuration reloaded");
                self.metrics.events.record(
                    EventKind::Reload,
                    None,
                    None,
                    format!("configuration reloaded: {summary}"),
                );
            }
            Err(errors) => {
                self.metrics.count_reload(false);
                for error in errors {
                    tracing::error!(%error, "configuration not reloaded");
                }
                self.metrics.events.record(
                    EventKind::ReloadFailed,
                    None,
                    None,
                    format!("configuration not reloaded: {}", errors.join("; ")),
                );
            }
        }
        result
    }

    fn try_reload(&self) -> Result<String, Vec<String>> {
        let Some(path) = &self.path else {
            return Err(vec![
                "this gateway was not started from a configuration file".to_string(),
            ]);
        };
        let new = crate::config::load(path).map_err(|e| match e {
            crate::config::LoadError::Invalid { errors, .. } => {
                errors.iter().map(|e| e.to_string()).collect()
            }
            other => vec![other.to_string()],
        })?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let restart = needs_restart(&current, &new);
        if !restart.is_empty() {
            return Err(restart
                .into_iter()
                .map(|what| format!("{what} changed: that needs a restart (ssv-ha run --upgrade); nothing was applied"))
                .collect());
        }
        let old = self.routing.load_full();
        let routing =
            build_routing(&new, &self.metrics, Some(&old)).map_err(|e| vec![e.to_string()])?;

        let backends: Vec<&Arc<Backend>> = routing.pools.iter().flat_map(|p| &p.backends).collect();
        let kept = backends.iter().filter(|b| contains(&old, b)).count();
        let mut updated = 0;
        let mut removed = 0;
        for backend in old.pools.iter().flat_map(|p| &p.backends) {
            if contains(&routing, backend) {
                continue;
            }
            if backends.iter().any(|b| b.carries(backend)) {
                // The same node under new settings: its sessions go on with the new backend.
                updated += 1;
                continue;
            }
            removed += 1;
            backend.set_up(false);
            // A removed backend takes no traffic: its series must not show it active (a new
            // backend under its name sets it again once chosen).
            backend.metrics.active.set(0);
            backend.cut_sessions(CutReason::Removed);
            // Gone for good (no backend of the new configuration bears its name): its series go
            // too, or it would read as an unhealthy backend of its pool until a restart.
            let named_again = backends
                .iter()
                .any(|b| b.pool == backend.pool && b.name() == backend.name());
            if !named_again {
                self.metrics.forget_backend(&backend.pool, backend.name());
            }
        }
        for pool in &old.pools {
            if !routing.pools.iter().any(|p| p.name() == pool.name()) {
                self.metrics.forget_pool(pool.name());
            }
        }
        let added = backends.len() - kept - updated;
        let summary = format!(
            "{} pools, {} routes; backends kept {kept}, updated in place {updated}, new {added}, removed or replaced {removed}",
            routing.pools.len(),
            new.routes.len(),
        );
        self.routing.store(Arc::new(routing));
        *current = new;
        self.generation.send_modify(|g| *g += 1);
        Ok(summary)
    }
}

fn contains(routing: &Routing, backend: &Arc<Backend>) -> bool {
    routing
        .pools
        .iter()
        .flat_map(|p| &p.backends)
        .any(|b| Arc::ptr_eq(b, backend))
}

/// What differs between two configs that only a restart can apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut what = Vec::new();
    if old.listeners != new.listeners {
        what.push("listeners");
    }
    if old.admin != new.admin
        || old.admin_auth != new.admin_auth
        || old.admin_expose != new.admin_expose
    {
        what.push("admin");
    }
    if old.log.format != new.log.format || old.log.level != new.log.level {
        what.push("log.format or log.level");
    }
    if old.threads != new.threads {
        what.push("server.threads");
    }
    if old.grace_period != new.grace_period
        || old.upgrade_socket != new.upgrade_socket
        || old.pid_file != new.pid_file
    {
        what.push("server");
    }
    what
}

impl Reload for Reloader {
    fn reload(&self) -> Result<String, Vec<String>> {
        Reloader::reload(self)
    }
}

/// Reloads on SIGHUP.
pub struct ReloadOnSighup(pub Arc<Reloader>);

#[async_trait]
impl BackgroundService for ReloadOnSighup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /reload");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // The outcome is logged and counted by `reload`.
                    let _ = self.0.reload();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

//! Builds the Pingora server from a resolved [`Config`]: one proxy service per listener, the admin
//! service, and the health monitor as a background service.

use crate::admin::metrics::Metrics;
use crate::admin::AdminApp;
use crate::config::Config;
use crate::health::monitor::Monitor;
use crate::proxy::routing::RouteTable;
use crate::proxy::{Gateway, Shared};
use crate::upstream::{Backend, Pool};
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use std::sync::Arc;

/// Why the server could not be assembled (everything here was validated already, so these are
/// files that changed or vanished since, or a broken metrics registry).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("backend {pool}/{backend}: {message}")]
    Backend {
        pool: String,
        backend: String,
        message: String,
    },
    #[error("listener {listener}: {message}")]
    Listener { listener: String, message: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("pingora: {0}")]
    Pingora(#[from] Box<pingora::Error>),
}

/// Options of the process rather than of the config file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Take the listening sockets over from a running instance (Pingora's `--upgrade`).
    pub upgrade: bool,
}

/// The assembled server, plus handles for code that runs beside it (the demo, tests).
pub struct Built {
    pub server: Server,
    pub pools: Vec<Arc<Pool>>,
    pub metrics: Arc<Metrics>,
}

pub fn build(config: &Config, options: &RunOptions) -> Result<Built, BuildError> {
    let metrics = Arc::new(Metrics::new()?);
    let mut pools = Vec::with_capacity(config.pools.len());
    for pool in &config.pools {
        let mut backends = Vec::with_capacity(pool.backends.len());
        for (index, b) in pool.backends.iter().enumerate() {
            let backend = Backend::new(
                pool,
                index,
                b.clone(),
                config.timeouts,
                metrics.backend(&pool.name, &b.name),
            )
            .map_err(|message| BuildError::Backend {
                pool: pool.name.clone(),
                backend: b.name.clone(),
                message,
            })?;
            backends.push(Arc::new(backend));
        }
        pools.push(Arc::new(Pool::new(
            pool.clone(),
            backends,
            metrics.pool(&pool.name),
        )));
    }

    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.grace_period.as_secs()),
        // After the grace period, runtimes get one more second to wind down.
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.upgrade_socket.to_string_lossy().into_owned(),
        pid_file: config.pid_file.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let shared = Arc::new(Shared {
        pools: pools.clone(),
        retries: config.retries,
        websocket_idle: config.timeouts.websocket_idle,
    });
    let health = server.add_service(background_service(
        "health checks",
        Monitor::new(pools.clone()),
    ));
    for (index, listener) in config.listeners.iter().enumerate() {
        let gateway = Gateway::new(
            listener,
            RouteTable::for_listener(config, index),
            shared.clone(),
            metrics.unrouted(&listener.name),
        );
        let mut service = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            gateway,
            &format!("listener {}", listener.name),
        );
        let address = listener.address.to_string();
        match &listener.tls {
            None => service.add_tcp(&address),
            Some(tls) => {
                let resolver = crate::tls::cert_resolver_from_files(&tls.cert, &tls.key).map_err(
                    |message| BuildError::Listener {
                        listener: listener.name.clone(),
                        message,
                    },
                )?;
                // Paths stay empty: with a resolver set, Pingora never reads files (nor panics).
                let mut settings = TlsSettings::intermediate("", "")?;
                settings.set_cert_resolver(resolver);
                settings.set_alpn(pingora::protocols::ALPN::H1);
                service.add_tls_with_settings(&address, None, settings);
            }
        }
        server.add_service(service).add_dependency(&health);
    }

    let mut admin = Service::new(
        "admin".to_string(),
        AdminApp {
            pools: pools.clone(),
            metrics: metrics.clone(),
        },
    );
    admin.threads = Some(1);
    admin.add_tcp(&config.admin.to_string());
    server.add_service(admin);

    Ok(Built {
        server,
        pools,
        metrics,
    })
}

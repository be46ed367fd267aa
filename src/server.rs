//! Builds the Pingora server from a resolved [`Config`]: one proxy service per listener, the admin
//! service, the health monitor and the SIGHUP reloader as background services.

use crate::admin::metrics::Metrics;
use crate::admin::AdminApp;
use crate::config::Config;
use crate::health::monitor::Monitor;
use crate::proxy::{Gateway, Routing};
use crate::reload::{self, BackendError, ReloadOnSighup, Reloader};
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::prelude::*;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the server could not be assembled (everything here was validated already, so these are
/// files that changed or vanished since, or a broken metrics registry).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("listener {listener}: {message}")]
    Listener { listener: String, message: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("pingora: {0}")]
    Pingora(#[from] Box<pingora::Error>),
}

/// Idle upstream connections kept per backend.
const UPSTREAM_KEEPALIVE_POOL: usize = 1024;

/// Options of the process rather than of the config file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Take the listening sockets over from a running instance (Pingora's `--upgrade`).
    pub upgrade: bool,
}

/// The assembled server, plus handles for code that runs beside it (the demo, tests).
pub struct Built {
    pub server: Server,
    pub routing: Arc<ArcSwap<Routing>>,
    pub metrics: Arc<Metrics>,
    pub reloader: Arc<Reloader>,
}

/// Assembles the server. `path` is the file `config` came from, for reloads (`None`: no reload).
pub fn build(
    config: &Config,
    path: Option<PathBuf>,
    options: &RunOptions,
) -> Result<Built, BuildError> {
    let metrics = Arc::new(Metrics::new()?);
    let routing = reload::build_routing(config, &metrics, None)?;
    let routing = Arc::new(ArcSwap::from_pointee(routing));
    let reloader = Arc::new(Reloader::new(
        path,
        config.clone(),
        routing.clone(),
        metrics.clone(),
    ));

    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.grace_period.as_secs()),
        // After the grace period, runtimes get one more second to wind down.
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.upgrade_socket.to_string_lossy().into_owned(),
        pid_file: config.pid_file.to_string_lossy().into_owned(),
        // Idle upstream connections kept per peer: as many as clients may keep busy at once, so
        // a burst of concurrent requests does not turn into new connections (default 128).
        upstream_keepalive_pool_size: UPSTREAM_KEEPALIVE_POOL,
        // Each request stays on the thread that accepted it: no cross-thread hand-offs.
        work_stealing: false,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let monitor = Monitor::new(routing.clone(), reloader.subscribe());
    let health = server.add_service(background_service("health checks", monitor));
    for (index, listener) in config.listeners.iter().enumerate() {
        let gateway = Gateway::new(index, listener, routing.clone(), &metrics);
        let mut service = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            gateway,
            &format!("listener {}", listener.name),
        );
        // No L4 read buffer in front of client connections: Pingora reads request headers into
        // its own buffer anyway, and the default 64 KiB one per connection is what ten thousand
        // idle WebSockets would mostly hold (measured: 1.2 GB -> 0.6 GB for 9800 of them, with
        // no change in requests per second).
        let mut endpoint = ListenerConfig::tcp(listener.address.to_string())
            .l4_buffer(L4BufferSettings::default().read(0));
        if let Some(tls) = &listener.tls {
            let resolver =
                crate::tls::cert_resolver_from_files(&tls.cert, &tls.key).map_err(|message| {
                    BuildError::Listener {
                        listener: listener.name.clone(),
                        message,
                    }
                })?;
            // Paths stay empty: with a resolver set, Pingora never reads files (nor panics).
            let mut settings = TlsSettings::intermediate("", "")?;
            settings.set_cert_resolver(resolver);
            settings.set_alpn(pingora::protocols::ALPN::H1);
            endpoint = endpoint.tls(settings);
        }
        service.add_listener(endpoint);
        // Listeners open once every pool has been checked once.
        server.add_service(service).add_dependency(&health);
    }

    let mut admin = Service::new(
        "admin".to_string(),
        AdminApp {
            auth: config.admin_auth.clone(),
            routing: routing.clone(),
            metrics: metrics.clone(),
            reloader: reloader.clone(),
        },
    );
    admin.threads = Some(1);
    admin.add_tcp(&config.admin.to_string());
    server.add_service(admin);
    server.add_service(background_service(
        "reload on SIGHUP",
        ReloadOnSighup(reloader.clone()),
    ));

    Ok(Built {
        server,
        routing,
        metrics,
        reloader,
    })
}

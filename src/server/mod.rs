//! Start-up: builds the routing (pools, backends, route tables) and the Pingora server from a
//! resolved [`Config`]: one proxy service per listener, the admin service, the health monitor and
//! the SIGHUP reloader as background services. A [`reload`] builds the routing the same way.

pub mod reload;
mod routing;

pub use routing::{build_routing, BackendError};

use crate::admin::AdminApp;
use crate::config::model::{Listener, ListenerMode};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::passthrough::Passthrough;
use crate::proxy::Gateway;
use crate::upstream::monitor::Monitor;
use crate::upstream::routing::Routing;
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::prelude::*;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use pingora::services::ServiceWithDependents;
use reload::{ReloadOnSighup, Reloader};
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
    let routing = build_routing(config, &metrics, None)?;
    let routing = Arc::new(ArcSwap::from_pointee(routing));
    let reloader = Arc::new(Reloader::new(
        path,
        config.clone(),
        routing.clone(),
        metrics.clone(),
    ));
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(config));
    server.bootstrap();

    let current = routing.clone();
    let monitor = Monitor::new(
        Box::new(move || current.load().pools.clone()),
        reloader.subscribe(),
    );
    let health = server.add_service(background_service("health checks", monitor));
    for (index, listener) in config.listeners.iter().enumerate() {
        let service: Box<dyn ServiceWithDependents> = match listener.mode {
            ListenerMode::Passthrough => {
                passthrough_service(index, listener, routing.clone(), &metrics)
            }
            ListenerMode::Http => {
                http_service(&server, index, listener, routing.clone(), &metrics)?
            }
        };
        // Listeners open once every pool has been checked once.
        server.add_boxed_service(service).add_dependency(&health);
    }
    server.add_service(admin_service(config, &routing, &metrics, &reloader));
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

/// Pingora's settings for the process, from `config`.
fn server_conf(config: &Config) -> ServerConf {
    ServerConf {
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
    }
}

/// The service of a passthrough listener: TCP, its bytes spliced to a backend after the hello.
fn passthrough_service(
    index: usize,
    listener: &Listener,
    routing: Arc<ArcSwap<Routing>>,
    metrics: &Metrics,
) -> Box<dyn ServiceWithDependents> {
    let app = Passthrough::new(index, listener, routing, metrics);
    let mut service = Service::new(format!("listener {}", listener.name), app);
    // No L4 read buffer: the hello is read into the app's own, then bytes are spliced.
    service.add_listener(
        ListenerConfig::tcp(listener.address.to_string())
            .l4_buffer(L4BufferSettings::default().read(0)),
    );
    Box::new(service)
}

/// The proxy service of an HTTP listener, with TLS terminated when the listener has `tls`.
fn http_service(
    server: &Server,
    index: usize,
    listener: &Listener,
    routing: Arc<ArcSwap<Routing>>,
    metrics: &Metrics,
) -> Result<Box<dyn ServiceWithDependents>, BuildError> {
    let gateway = Gateway::new(index, listener, routing, metrics);
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
    Ok(Box::new(service))
}

/// The admin listener's service, on one thread.
fn admin_service(
    config: &Config,
    routing: &Arc<ArcSwap<Routing>>,
    metrics: &Arc<Metrics>,
    reloader: &Arc<Reloader>,
) -> Service<AdminApp> {
    let mut admin = Service::new(
        "admin".to_string(),
        AdminApp {
            auth: config.admin_auth.clone(),
            expose: config.admin_expose,
            routing: routing.clone(),
            metrics: metrics.clone(),
            reloader: reloader.clone(),
        },
    );
    admin.threads = Some(1);
    admin.add_tcp(&config.admin.to_string());
    admin
}

//! One backend at run time: its ready-made upstream peers, its health as an atomic flag for the
//! request path, and its last observation for `/status`.

use crate::admin::metrics::BackendMetrics;
use crate::config::model::{self, Endpoint, HealthSettings, Timeouts};
use crate::health::hysteresis::Hysteresis;
use crate::health::verdict::Verdict;
use crate::health::Facts;
use arc_swap::ArcSwapOption;
use http::HeaderValue;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// What the health monitor last saw and decided; read by `/status`.
#[derive(Debug, Default, Clone)]
pub struct HealthRecord {
    pub hysteresis: Hysteresis,
    pub verdict: Option<Verdict>,
    pub facts: Option<Facts>,
    pub latency: Option<Duration>,
    pub last_check: Option<SystemTime>,
    pub last_change: Option<SystemTime>,
}

pub struct Backend {
    pub config: model::Backend,
    pub pool: String,
    health: HealthSettings,
    /// Position in the pool (bit index in a request's tried set).
    pub index: usize,
    up: AtomicBool,
    http: Upstream,
    ws: Upstream,
    record: Mutex<HealthRecord>,
    pub metrics: BackendMetrics,
}

/// One endpoint (HTTP or WebSocket) of a backend, with its peer once the host name resolved.
struct Upstream {
    endpoint: Endpoint,
    host_header: HeaderValue,
    peer: ArcSwapOption<HttpPeer>,
    template: PeerTemplate,
}

#[derive(Clone)]
struct PeerTemplate {
    ca: Option<Arc<[WrappedX509]>>,
    connect: Duration,
    read: Duration,
    group_key: u64,
}

impl Backend {
    /// Builds the run-time backend. Fails only when its CA file cannot be loaded.
    pub fn new(
        pool: &model::Pool,
        index: usize,
        config: model::Backend,
        timeouts: Timeouts,
        metrics: BackendMetrics,
    ) -> Result<Self, String> {
        let ca = match &config.ca {
            None => None,
            Some(path) => {
                let certs = crate::tls::load_certs(path)?;
                let wrapped: Vec<WrappedX509> = certs
                    .into_iter()
                    .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
                    .collect();
                Some(Arc::from(wrapped.into_boxed_slice()))
            }
        };
        let group_key = |kind: &str| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&pool.name, &config.name, kind).hash(&mut h);
            h.finish()
        };
        let upstream =
            |endpoint: &Endpoint, read: Duration, kind: &str| -> Result<Upstream, String> {
                let host_header = HeaderValue::from_str(&endpoint.host_header()).map_err(|_| {
                    format!("host `{}` cannot be sent as a Host header", endpoint.host)
                })?;
                Ok(Upstream {
                    endpoint: endpoint.clone(),
                    host_header,
                    peer: ArcSwapOption::empty(),
                    template: PeerTemplate {
                        ca: ca.clone(),
                        connect: timeouts.connect,
                        read,
                        group_key: group_key(kind),
                    },
                })
            };
        let http = upstream(&config.http, timeouts.response, "http")?;
        let ws = upstream(&config.ws, timeouts.websocket_idle, "ws")?;
        Ok(Backend {
            pool: pool.name.clone(),
            health: pool.health,
            index,
            up: AtomicBool::new(false),
            http,
            ws,
            record: Mutex::new(HealthRecord::default()),
            metrics,
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether the backend may get traffic: healthy and its address known. Lock-free.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
        self.metrics.healthy.set(up as i64);
    }

    /// Takes the backend out of rotation at once after a failure on live traffic (passive health).
    /// Only active checks bring it back, after `rise` good ones.
    pub fn fail_passively(&self, reason: &str) {
        let mut record = self.record();
        let went_down = record.hysteresis.force_down().is_some();
        self.passive_outcome(&mut record, went_down, reason);
    }

    /// Counts a failure on live traffic like one failed health check: `fall` of them in a row
    /// take the backend down.
    pub fn count_failure(&self, reason: &str) {
        let mut record = self.record();
        let went_down = record
            .hysteresis
            .record(false, self.health.rise, self.health.fall)
            .is_some();
        self.passive_outcome(&mut record, went_down, reason);
    }

    fn passive_outcome(&self, record: &mut HealthRecord, went_down: bool, reason: &str) {
        self.set_up(record.hysteresis.is_up());
        if went_down {
            record.last_change = Some(SystemTime::now());
            let reason = format!("failed on live traffic: {reason}");
            tracing::warn!(pool = %self.pool, backend = %self.name(), %reason, "backend down");
            record.verdict = Some(Verdict::failed(reason));
        }
    }

    /// The peer to send a request to; `None` while the host name has not resolved.
    pub fn peer(&self, websocket: bool) -> Option<Arc<HttpPeer>> {
        self.upstream(websocket).peer.load_full()
    }

    pub fn endpoint(&self, websocket: bool) -> &Endpoint {
        &self.upstream(websocket).endpoint
    }

    pub fn host_header(&self, websocket: bool) -> &HeaderValue {
        &self.upstream(websocket).host_header
    }

    fn upstream(&self, websocket: bool) -> &Upstream {
        if websocket {
            &self.ws
        } else {
            &self.http
        }
    }

    /// The health record, for the monitor (writes) and `/status` (reads). Never on the request path.
    pub fn record(&self) -> MutexGuard<'_, HealthRecord> {
        // A poisoned lock only means a panic elsewhere mid-update; the record is still usable.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves both endpoints' host names and installs new peers where the address changed.
    /// Returns the HTTP endpoint's address, or why it could not be resolved.
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        let http = self.http.resolve().await;
        if self.ws.endpoint != self.http.endpoint {
            if let Err(e) = self.ws.resolve().await {
                return Err(format!("WebSocket endpoint: {e}"));
            }
        } else if let Ok(addr) = http {
            self.ws.install(addr);
        }
        http
    }
}

impl Upstream {
    async fn resolve(&self) -> Result<SocketAddr, String> {
        let host = self.endpoint.host.as_str();
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.endpoint.port),
            Err(_) => tokio::net::lookup_host((host, self.endpoint.port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host} resolves to no address"))?,
        };
        self.install(addr);
        Ok(addr)
    }

    fn install(&self, addr: SocketAddr) {
        let current = self.peer.load();
        if let Some(peer) = current.as_ref() {
            if peer._address == pingora::protocols::l4::socket::SocketAddr::Inet(addr) {
                return;
            }
        }
        self.peer.store(Some(Arc::new(self.build_peer(addr))));
    }

    fn build_peer(&self, addr: SocketAddr) -> HttpPeer {
        let t = &self.template;
        let mut peer = HttpPeer::new(addr, self.endpoint.tls, self.endpoint.host.clone());
        peer.group_key = t.group_key;
        peer.options.total_connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read);
        peer.options.write_timeout = Some(t.read);
        peer.options.ca = t.ca.clone();
        peer
    }
}

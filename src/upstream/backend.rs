//! One backend at run time: its ready-made upstream peers, its health as an atomic flag for the
//! request path, and its last observation for `/status`.

use super::cache::Standing;
use super::connections::{self, Connections, TlsTarget};
use super::session::{CutReason, SessionConnector, Sessions};
use super::Traffic;
use crate::config::model::{self, Endpoint, HealthSettings, Timeouts};
use crate::health::check::Report;
use crate::health::hysteresis::Transition;
use crate::health::record::HealthRecord;
use crate::metrics::events::EventKind;
use crate::metrics::BackendMetrics;
use arc_swap::ArcSwapOption;
use http::HeaderValue;
use pingora::upstreams::peer::{BasicPeer, HttpPeer, PeerOptions};
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub struct Backend {
    pub config: model::BackendConfig,
    pub pool: String,
    health: HealthSettings,
    /// Position in the pool (bit index in a request's tried set).
    pub index: usize,
    up: AtomicBool,
    http: Upstream,
    ws: Upstream,
    /// Live WebSocket and SSE sessions to this backend, to cut when it goes down.
    sessions: Arc<Sessions>,
    record: Mutex<HealthRecord>,
    /// What the answer cache may rely on from the last check (set only when it was healthy);
    /// read lock-free on the request path.
    standing: ArcSwapOption<Standing>,
    pub metrics: BackendMetrics,
}

/// One endpoint (HTTP or WebSocket) of a backend, with its peers once the host name resolved.
struct Upstream {
    endpoint: Endpoint,
    host_header: HeaderValue,
    peers: ArcSwapOption<Peers>,
    template: PeerTemplate,
}

/// The ways to reach an endpoint: pooled connections for plain requests, cuttable connections
/// (their own pool key) for long-lived sessions, and the gateway's own kept-alive connections for
/// requests it exchanges itself.
struct Peers {
    /// The address they reach.
    addr: SocketAddr,
    plain: HttpPeer,
    session: HttpPeer,
    direct: Option<Arc<Connections>>,
}

struct PeerTemplate {
    ca: Option<Arc<[WrappedX509]>>,
    connect: Duration,
    /// Longest silence on a plain request.
    read: Duration,
    /// Longest silence on a session (WebSocket or SSE).
    session_idle: Duration,
    /// Longest a pooled connection waits unused.
    backend_idle: Duration,
    group_key: u64,
    connector: Arc<SessionConnector>,
    /// The gateway's own connections: plain requests (HTTP endpoint), and WebSocket sessions it
    /// terminates itself (`sessions: seamless`, WebSocket endpoint).
    direct: Option<DirectTemplate>,
}

struct DirectTemplate {
    /// For an `https` endpoint.
    tls: Option<TlsTarget>,
}

impl Backend {
    /// Builds the run-time backend. Fails only when its CA file cannot be loaded. `carried`: the
    /// same node under its previous settings (a reload changed a timeout, a threshold, a header
    /// or its place in the pool): its health, its resolved addresses and its live sessions go on
    /// here, so the change costs neither a health reset nor a cut session.
    pub fn new(
        pool: &model::PoolConfig,
        index: usize,
        config: model::BackendConfig,
        timeouts: Timeouts,
        metrics: BackendMetrics,
        carried: Option<&Backend>,
    ) -> Result<Self, String> {
        let ca_certs = match &config.ca {
            None => None,
            Some(path) => Some(crate::tls::load_certs(path)?),
        };
        let ca = ca_certs.as_ref().map(|certs| {
            let wrapped: Vec<WrappedX509> = certs
                .iter()
                .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
                .collect();
            Arc::from(wrapped.into_boxed_slice())
        });
        let direct = |endpoint: &Endpoint| -> Result<DirectTemplate, String> {
            Ok(DirectTemplate {
                tls: if endpoint.tls {
                    let settings = connections::tls_config(ca_certs.as_deref())?;
                    Some(TlsTarget::new(settings, &endpoint.host)?)
                } else {
                    None
                },
            })
        };
        let sessions = carried.map_or_else(Arc::default, |c| c.sessions.clone());
        let connector = Arc::new(SessionConnector {
            sessions: sessions.clone(),
            connect_timeout: timeouts.connect,
        });
        let upstream = |endpoint: &Endpoint,
                        kind: &str,
                        direct: Option<DirectTemplate>|
         -> Result<Upstream, String> {
            let host_header = HeaderValue::from_str(&endpoint.host_header())
                .map_err(|_| format!("host `{}` cannot be sent as a Host header", endpoint.host))?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&pool.name, &config.name, kind).hash(&mut h);
            Ok(Upstream {
                endpoint: endpoint.clone(),
                host_header,
                peers: ArcSwapOption::empty(),
                template: PeerTemplate {
                    ca: ca.clone(),
                    connect: timeouts.connect,
                    read: timeouts.response,
                    session_idle: timeouts.websocket_idle,
                    backend_idle: timeouts.backend_idle,
                    group_key: h.finish(),
                    connector: connector.clone(),
                    direct,
                },
            })
        };
        let http = upstream(&config.http, "http", Some(direct(&config.http)?))?;
        let ws = upstream(&config.ws, "ws", Some(direct(&config.ws)?))?;
        metrics.backup.set(i64::from(config.backup));
        let backend = Backend {
            pool: pool.name.clone(),
            health: pool.health,
            index,
            up: AtomicBool::new(false),
            http,
            ws,
            sessions,
            record: Mutex::new(HealthRecord::default()),
            standing: ArcSwapOption::empty(),
            metrics,
            config,
        };
        if let Some(old) = carried {
            for (from, to) in [(&old.http, &backend.http), (&old.ws, &backend.ws)] {
                if let Some(peers) = from.peers.load().as_ref() {
                    to.install(peers.addr);
                }
            }
            *backend.record() = old.record().clone();
            backend.standing.store(old.standing.load_full());
            backend.set_up(old.is_up());
        }
        Ok(backend)
    }

    /// Whether `other` is this node under other settings (same endpoints and CA): a reload may
    /// carry its state over ([`Backend::new`]).
    pub fn same_node(&self, other: &model::BackendConfig) -> bool {
        self.config.http == other.http && self.config.ws == other.ws && self.config.ca == other.ca
    }

    /// Whether this backend took over `other`'s live sessions in a reload.
    pub fn carries(&self, other: &Backend) -> bool {
        Arc::ptr_eq(&self.sessions, &other.sessions)
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

    /// Ends every live WebSocket and SSE session to this backend; returns how many.
    pub fn cut_sessions(&self, reason: CutReason) -> usize {
        let cut = self.sessions.cut_all();
        if cut > 0 {
            self.metrics.count_cut(reason.index(), cut as u64);
            tracing::info!(pool = %self.pool, backend = %self.name(), sessions = cut, reason = reason.as_str(), "sessions cut");
            self.metrics.events.record(
                EventKind::SessionsCut,
                Some(&self.pool),
                Some(self.name()),
                format!("{cut} session(s) cut: {}", reason.describe()),
            );
        }
        cut
    }

    /// Records a health check's report; returns the transition it caused (acted on by the
    /// pool's health handler).
    pub fn observe(&self, report: Report) -> Option<Transition> {
        let standing = match &report.facts {
            Ok(facts) if report.verdict.healthy => Standing::of(facts).map(Arc::new),
            _ => None,
        };
        self.standing.store(standing);
        let mut record = self.record();
        let before = record.hysteresis.state();
        let transition = record.observe(report, self.health.rise, self.health.fall);
        self.set_up(record.is_up());
        self.count_transition(before, transition);
        transition
    }

    /// Records a failure on live traffic (passive health): at once out of rotation when `force`,
    /// else counted like one failed check, `fall` of them in a row taking the backend down. Only
    /// active checks bring it back, after `rise` good ones.
    pub fn fail_on_traffic(&self, reason: &str, force: bool) -> Option<Transition> {
        let mut record = self.record();
        let before = record.hysteresis.state();
        let transition = record.fail_live(reason, force, self.health.rise, self.health.fall);
        self.set_up(record.is_up());
        self.count_transition(before, transition);
        transition
    }

    /// Counts a change between up and down in `ssv_ha_backend_transitions_total`; the first
    /// check's verdict (from unknown) is no change, so a start or a new backend counts nothing.
    fn count_transition(&self, before: Option<bool>, transition: Option<Transition>) {
        if let (Some(_), Some(transition)) = (before, transition) {
            self.metrics.count_transition(transition == Transition::Up);
        }
    }

    /// Its latest verdict in one line (why it is down, or `healthy` with any notes), as logs,
    /// events and `/status` give it.
    pub fn verdict_summary(&self) -> String {
        self.record()
            .verdict
            .as_ref()
            .map_or_else(|| "not judged".to_string(), |v| v.summary())
    }

    /// What the answer cache may rely on: the network and finalized block of the last check,
    /// when it was healthy. Lock-free.
    pub fn standing(&self) -> Option<Arc<Standing>> {
        self.standing.load_full()
    }

    /// Whether the endpoint `traffic` goes to is the one the health checks probe.
    pub fn checked(&self, traffic: Traffic) -> bool {
        self.upstream(traffic).endpoint == self.http.endpoint
    }

    /// The peer for a request of this kind; `None` while the host name has not resolved.
    pub fn peer(&self, traffic: Traffic) -> Option<HttpPeer> {
        let peers = self.upstream(traffic).peers.load();
        let peers = peers.as_ref()?;
        Some(match traffic {
            Traffic::Plain => peers.plain.clone(),
            Traffic::EventStream | Traffic::WebSocket => peers.session.clone(),
        })
    }

    /// A raw TCP peer of the endpoint `traffic` goes to (the `ws_url`'s for WebSocket), for a
    /// passthrough listener: its connection is a session, cut with the others when the backend
    /// goes down. `None` while the host name has not resolved.
    pub fn passthrough_peer(&self, traffic: Traffic) -> Option<BasicPeer> {
        let upstream = self.upstream(traffic);
        let addr = upstream.peers.load().as_ref()?.addr;
        let mut options = PeerOptions::new();
        options.total_connection_timeout = Some(upstream.template.connect);
        options.custom_l4 = Some(upstream.template.connector.clone());
        Some(BasicPeer {
            _address: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
            sni: String::new(),
            options,
        })
    }

    /// The gateway's own connections for plain requests; `None` while the host name has not
    /// resolved.
    pub fn connections(&self) -> Option<Arc<Connections>> {
        self.http.peers.load().as_ref()?.direct.clone()
    }

    /// The gateway's own connections to the WebSocket endpoint, for the sessions it terminates
    /// itself; `None` while the host name has not resolved.
    pub fn ws_connections(&self) -> Option<Arc<Connections>> {
        self.ws.peers.load().as_ref()?.direct.clone()
    }

    pub fn endpoint(&self, traffic: Traffic) -> &Endpoint {
        &self.upstream(traffic).endpoint
    }

    pub fn host_header(&self, traffic: Traffic) -> &HeaderValue {
        &self.upstream(traffic).host_header
    }

    fn upstream(&self, traffic: Traffic) -> &Upstream {
        match traffic {
            Traffic::WebSocket => &self.ws,
            Traffic::Plain | Traffic::EventStream => &self.http,
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
        let current = self.peers.load();
        if current.as_ref().is_some_and(|peers| peers.addr == addr) {
            return;
        }
        let t = &self.template;
        let build = |read: Duration| {
            let mut peer = HttpPeer::new(addr, self.endpoint.tls, self.endpoint.host.clone());
            peer.group_key = t.group_key;
            peer.options.total_connection_timeout = Some(t.connect);
            peer.options.read_timeout = Some(read);
            peer.options.write_timeout = Some(read);
            peer.options.ca = t.ca.clone();
            peer.options.idle_timeout = Some(t.backend_idle);
            peer.options.tcp_keepalive = Some(connections::keepalive());
            peer
        };
        let plain = build(t.read);
        let mut session = build(t.session_idle);
        session.options.custom_l4 = Some(t.connector.clone());
        session.group_key = t.group_key.wrapping_add(1);
        let direct = t.direct.as_ref().map(|d| {
            Arc::new(Connections::new(
                addr,
                d.tls.clone(),
                t.connect,
                t.backend_idle,
            ))
        });
        self.peers.store(Some(Arc::new(Peers {
            addr,
            plain,
            session,
            direct,
        })));
    }
}

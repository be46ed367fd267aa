//! Passthrough listeners: TLS routed by its SNI name and passed through to the node, as the
//! original haproxy setup did (`mode tcp`, `req.ssl_sni`). TLS runs end to end between the client
//! and the node, so the gateway holds no certificate and sees no HTTP.
//!
//! A connection's first bytes are read until they hold the whole ClientHello (rustls reads it),
//! within the listener's `hello_timeout`. Its server name picks the route and so the pool; the
//! pool picks a healthy backend by the same health verdicts and policy as HTTP listeners. A
//! backend that cannot be connected to leaves rotation and the next healthy one is tried. Then
//! the bytes read so far are sent on and the two connections are spliced until either side
//! closes. The backend connection is a session of that backend: when it is marked down, the
//! connection is cut (haproxy's `on-marked-down shutdown-sessions`).
//!
//! What needs the HTTP inside the TLS does not apply here: the method policy, retries once bytes
//! have flowed, the gateway's JSON error replies (a connection without a route or a backend is
//! closed), credentials, per-client caps.

use super::places::{Count, Counts};
use super::Routing;
use crate::config::model::{Listener, RouteEndpoint};
use crate::metrics::{Metrics, PASSTHROUGH};
use crate::upstream::Traffic;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::connectors::TransportConnector;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most bytes read while waiting for a ClientHello (one fits in a few kilobytes; a post-quantum
/// key share makes it larger, still far below this).
const MAX_HELLO_BYTES: usize = 64 * 1024;

/// The application of one passthrough listener.
pub struct Passthrough {
    /// Position of this listener in the config (its route table).
    index: usize,
    listener: String,
    routing: Arc<ArcSwap<Routing>>,
    hello_timeout: Duration,
    max_connections: usize,
    in_flight: Arc<Counts>,
    connector: TransportConnector,
    unrouted: IntCounter,
    refused_hello: IntCounter,
}

impl Passthrough {
    pub fn new(
        index: usize,
        listener: &Listener,
        routing: Arc<ArcSwap<Routing>>,
        metrics: &Metrics,
    ) -> Self {
        Passthrough {
            index,
            listener: listener.name.clone(),
            routing,
            hello_timeout: listener.hello_timeout,
            max_connections: listener.max_requests,
            in_flight: Arc::default(),
            connector: TransportConnector::new(None),
            unrouted: metrics.unrouted(&listener.name),
            refused_hello: metrics.refused("no_client_hello"),
        }
    }
}

#[async_trait]
impl ServerApp for Passthrough {
    async fn process_new(
        self: &Arc<Self>,
        mut client: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (_place, within) = self.in_flight.take(Count::Requests, self.max_connections);
        if !within {
            tracing::warn!(listener = %self.listener, cap = self.max_connections, "connection refused: the listener is at its cap");
            return None;
        }
        let started = Instant::now();
        let hello = match tokio::time::timeout(self.hello_timeout, read_hello(&mut client)).await {
            Ok(Ok(hello)) => hello,
            // A port check (or a client that gave up): connected, sent nothing, closed.
            Ok(Err(NoHello::Silent)) => return None,
            Ok(Err(NoHello::Refused(reason))) => {
                self.refused_hello.inc();
                tracing::info!(listener = %self.listener, %reason, "connection closed before routing");
                return None;
            }
            Err(_) => {
                self.refused_hello.inc();
                tracing::info!(listener = %self.listener, reason = "no ClientHello within the hello timeout", "connection closed before routing");
                return None;
            }
        };
        self.splice(client, hello, started).await;
        None
    }
}

/// Why a connection was not routed.
enum NoHello {
    /// Closed before it sent a byte: not counted as refused.
    Silent,
    Refused(String),
}

impl From<String> for NoHello {
    fn from(reason: String) -> Self {
        NoHello::Refused(reason)
    }
}

/// What a connection said before it was routed.
struct Hello {
    /// Every byte read so far: sent on to the backend first.
    bytes: Vec<u8>,
    server_name: Option<String>,
}

/// Reads until the bytes hold a whole ClientHello.
async fn read_hello(client: &mut Stream) -> Result<Hello, NoHello> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut bytes = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the ClientHello failed: {e}"))?;
        if n == 0 && bytes.is_empty() {
            return Err(NoHello::Silent);
        }
        if n == 0 {
            return Err("the client closed before its ClientHello"
                .to_string()
                .into());
        }
        if bytes.len() + n > MAX_HELLO_BYTES {
            let reason = format!("no ClientHello in the first {} KiB", MAX_HELLO_BYTES / 1024);
            return Err(reason.into());
        }
        bytes.extend_from_slice(&chunk[..n]);
        let mut fresh = &chunk[..n];
        // Record by record: rustls holds at most one record's worth of unread bytes.
        while !fresh.is_empty() {
            acceptor
                .read_tls(&mut fresh)
                .map_err(|e| format!("not TLS: {e}"))?;
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let server_name = accepted
                        .client_hello()
                        .server_name()
                        .map(|name| name.to_ascii_lowercase());
                    return Ok(Hello { bytes, server_name });
                }
                Ok(None) => {}
                Err((e, _)) => return Err(format!("not a TLS ClientHello: {e}").into()),
            }
        }
    }
}

impl Passthrough {
    /// Routes the connection by its server name and splices it to a healthy backend.
    async fn splice(&self, client: Stream, hello: Hello, started: Instant) {
        let routing = self.routing.load_full();
        let name = hello.server_name.as_deref();
        let Some(target) = routing.tables[self.index].target(name) else {
            self.unrouted.inc();
            tracing::info!(listener = %self.listener, sni = name.unwrap_or("-"), "no route for the server name: connection closed");
            return;
        };
        let pool = routing.pools[target.pool].clone();
        let traffic = match target.endpoint {
            RouteEndpoint::Url => Traffic::Plain,
            RouteEndpoint::WsUrl => Traffic::WebSocket,
        };
        let mut tried = 0u64;
        let (index, mut upstream) = loop {
            let Some(index) = pool.select(tried) else {
                pool.metrics.unavailable.inc();
                tracing::warn!(listener = %self.listener, sni = name.unwrap_or("-"), pool = %pool.name(), "no healthy backend: connection closed");
                return;
            };
            tried |= 1 << index;
            let backend = &pool.backends[index];
            let Some(peer) = backend.passthrough_peer(traffic) else {
                continue;
            };
            match self.connector.new_stream(&peer).await {
                Ok(stream) => break (index, stream),
                Err(e) if super::exchange::out_of_local_resources(&e) => {
                    // The gateway's own trouble, not the node's: nothing is held against it.
                    tracing::warn!(listener = %self.listener, error = %e, "cannot open a backend connection: the gateway is out of file descriptors or local ports (raise LimitNOFILE / ulimit -n, or lower max_requests)");
                    return;
                }
                Err(e) => {
                    tracing::warn!(listener = %self.listener, pool = %pool.name(), backend = %backend.name(), error = %e, "passthrough connect failed; trying the next backend");
                    let reason = format!("connect failed ({})", e.etype().as_str());
                    pool.take_out(index, traffic, &reason);
                }
            }
        };
        let backend = &pool.backends[index];
        backend.metrics.passthrough.inc();
        let open = &backend.metrics.sessions_open[PASSTHROUGH];
        open.inc();
        let idle = routing.timeouts.websocket_idle;
        let result = async {
            upstream.write_all(&hello.bytes).await?;
            upstream.flush().await?;
            splice(client, upstream, idle).await
        }
        .await;
        open.dec();
        if routing.access_log {
            let (up, down, error) = match &result {
                Ok((up, down)) => (*up + hello.bytes.len() as u64, *down, None),
                Err(e) => (hello.bytes.len() as u64, 0, Some(e.to_string())),
            };
            tracing::info!(
                target: "access",
                listener = %self.listener,
                sni = name.unwrap_or("-"),
                pool = %pool.name(),
                backend = %backend.name(),
                bytes_up = up,
                bytes_down = down,
                duration_ms = started.elapsed().as_millis() as u64,
                error = error.as_deref().unwrap_or("-"),
                "passthrough"
            );
        }
    }
}

/// Copies both ways until both sides are done, or nothing crossed in either direction for `idle`
/// (a dead peer, or a backend that stopped reading, must not hold a place for ever). Returns the
/// bytes sent up and down.
async fn splice(client: Stream, upstream: Stream, idle: Duration) -> std::io::Result<(u64, u64)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let started = Instant::now();
    let heard = AtomicU64::new(0);
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let pump = |mut from: tokio::io::ReadHalf<Stream>, mut to: tokio::io::WriteHalf<Stream>| {
        let heard = &heard;
        async move {
            let mut buffer = vec![0u8; 16 * 1024];
            let mut total = 0u64;
            loop {
                let n = from.read(&mut buffer).await?;
                if n == 0 {
                    // Half-close: the other direction may still be talking.
                    let _ = to.shutdown().await;
                    return Ok::<u64, std::io::Error>(total);
                }
                to.write_all(&buffer[..n]).await?;
                // Pingora's streams may hold writes back: what was read goes out now.
                to.flush().await?;
                total += n as u64;
                heard.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        }
    };
    let both = futures::future::try_join(
        pump(client_read, upstream_write),
        pump(upstream_read, client_write),
    );
    let watchdog = async {
        loop {
            let last = Duration::from_millis(heard.load(Ordering::Relaxed));
            let quiet = started.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle.saturating_sub(quiet)).await;
        }
    };
    tokio::select! {
        done = both => done,
        _ = watchdog => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("nothing crossed for {}", humantime::format_duration(idle)),
        )),
    }
}

//! Passthrough listeners: TLS routed by its SNI name and passed through to the node, as the
//! original haproxy setup did (`mode tcp`, `req.ssl_sni`). TLS runs end to end between the client
//! and the node, so the gateway holds no certificate and sees no HTTP.
//!
//! A connection takes its places when it is accepted, before any byte is read: one in the
//! listener's `max_requests` and one in its source address's `max_requests_per_client` (as HTTP
//! listeners count requests), so neither many connections nor one address's idle ones can take
//! every place. The places come at accept rather than once the ClientHello is in, so that the
//! connections still waiting for one are bounded too (each holds a descriptor and its bytes).
//!
//! Its first bytes are read until they hold the whole ClientHello, within the listener's
//! `hello_timeout`. The gateway frames the TLS records itself ([`HelloFrames`], each record
//! looked at once however small) and hands rustls a ClientHello only once it is whole, so rustls
//! holds nothing while bytes are awaited; the bytes
//! read so far are held once, and every one of them counts against the listener's
//! `limits.max_held_bytes` (a connection that would go past it is closed and counted as
//! refused for `held_bytes`). Its server name picks the route and so the pool; the pool picks a
//! healthy backend by the same health verdicts and policy as HTTP listeners. A backend that cannot
//! be connected to leaves rotation and the next healthy one is tried. Then the bytes read so far
//! are sent on and the two connections are spliced until either side closes.
//!
//! The backend connection is a session of that backend: when it is marked down, the connection is
//! cut (haproxy's `on-marked-down shutdown-sessions`). A connection is registered for that cut
//! when it is made, and the backend's state is looked at after: one made while the backend was
//! being marked down is dropped (and the next backend tried) rather than outliving the cut.
//!
//! Once one side has closed its half (a backend that sent its answer and closed), the other
//! direction has [`HALF_CLOSED_GRACE`] of quiet to finish, as haproxy's `timeout client-fin` and
//! `server-fin` give, instead of the whole idle timeout.
//!
//! What needs the HTTP inside the TLS does not apply here: the method policy, retries once bytes
//! have flowed, the gateway's JSON error replies (a connection without a route or a backend is
//! closed), credentials, WebSocket caps.

use crate::config::model::{Listener, RouteEndpoint};
use crate::limits::held::{HeldBudget, Share};
use crate::limits::out_of_local_resources;
use crate::limits::places::{client_bucket, Count, Counts};
use crate::metrics::{Metrics, PASSTHROUGH};
use crate::upstream::routing::Routing;
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

/// Most bytes read at once while waiting for the ClientHello: what a connection holds grows by
/// this much at most beyond what it was sent.
const HELLO_READ: usize = 4 * 1024;

/// How long the other direction may stay quiet once one side closed its half of the connection.
pub const HALF_CLOSED_GRACE: Duration = Duration::from_secs(5);

/// A TLS record's header: content type, version, length.
const RECORD_HEADER: usize = 5;
/// The content type of handshake records.
const HANDSHAKE: u8 = 0x16;
/// The handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// The longest record payload TLS allows (2^14), plus what a TLS 1.2 record may add to it.
const MAX_RECORD_PAYLOAD: usize = (1 << 14) + 2048;

/// The application of one passthrough listener.
pub struct Passthrough {
    /// Position of this listener in the config (its route table).
    index: usize,
    listener: String,
    routing: Arc<ArcSwap<Routing>>,
    hello_timeout: Duration,
    max_connections: usize,
    max_per_client: usize,
    in_flight: Arc<Counts>,
    /// The ClientHello bytes held on this listener.
    held: Arc<HeldBudget>,
    connector: TransportConnector,
    unrouted: IntCounter,
    refused_hello: IntCounter,
    held_full: IntCounter,
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
            max_per_client: listener.max_requests_per_client,
            in_flight: Arc::default(),
            held: Arc::new(HeldBudget::new(metrics.held(&listener.name))),
            connector: TransportConnector::new(None),
            unrouted: metrics.unrouted(&listener.name),
            refused_hello: metrics.refused("no_client_hello"),
            held_full: metrics.refused("held_bytes"),
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
        let source = client
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _client_place = match source {
            Some(ip) => {
                let (place, within) = self
                    .in_flight
                    .take(Count::Client(client_bucket(ip)), self.max_per_client);
                if !within {
                    tracing::debug!(listener = %self.listener, client = %ip, cap = self.max_per_client, "connection refused: its address is at its cap");
                    return None;
                }
                Some(place)
            }
            None => None,
        };
        let started = Instant::now();
        let max_held = self.routing.load().limits.max_held_bytes;
        let mut share = self.held.share_counted();
        let read = read_hello(&mut client, &mut share, max_held);
        let hello = match tokio::time::timeout(self.hello_timeout, read).await {
            Ok(Ok(hello)) => hello,
            // A port check (or a client that gave up): connected, sent nothing, closed.
            Ok(Err(NoHello::Silent)) => return None,
            Ok(Err(NoHello::HeldFull)) => {
                self.held_full.inc();
                tracing::debug!(listener = %self.listener, max_held_bytes = max_held, "connection closed before routing: the listener holds its most ClientHello bytes");
                return None;
            }
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
        self.splice(client, hello, share, started).await;
        None
    }
}

/// Why a connection was not routed.
enum NoHello {
    /// Closed before it sent a byte: not counted as refused.
    Silent,
    /// Holding more of its ClientHello would take the listener past `max_held_bytes`.
    HeldFull,
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

/// Reads until the bytes hold a whole ClientHello. What is held (the bytes' capacity) is counted
/// in `share` before it is taken, against `max_held` for the listener.
async fn read_hello(
    client: &mut Stream,
    share: &mut Share,
    max_held: usize,
) -> Result<Hello, NoHello> {
    let mut bytes: Vec<u8> = Vec::new();
    let mut frames = HelloFrames::default();
    loop {
        let room = HELLO_READ.min(MAX_HELLO_BYTES - bytes.len());
        if room == 0 {
            let reason = format!("no ClientHello in the first {} KiB", MAX_HELLO_BYTES / 1024);
            return Err(reason.into());
        }
        if bytes.capacity() - bytes.len() < room {
            if !share.hold(bytes.len() + room, max_held) {
                return Err(NoHello::HeldFull);
            }
            bytes.reserve_exact(room);
        }
        let n = client
            .read_buf(&mut bytes)
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
        if let Some(end) = frames.advance(&bytes, MAX_HELLO_BYTES)? {
            let server_name = server_name(&bytes[..end])?;
            return Ok(Hello { bytes, server_name });
        }
    }
}

/// Where the ClientHello that a connection's bytes start with ends, found as they arrive: each
/// whole record is looked at once (a hello sent in one-byte records, as TLS allows, costs no more
/// than one in a single record), and only the first bytes of a record still arriving.
#[derive(Debug, Default)]
struct HelloFrames {
    /// Where the next record starts.
    at: usize,
    /// The handshake bytes of the whole records before it.
    carried: usize,
    /// The ClientHello's own header (type and 24-bit length), gathered across whole records.
    head: [u8; 4],
    head_len: usize,
}

impl HelloFrames {
    /// Where the ClientHello ends in `bytes` (the connection's bytes so far, of which earlier
    /// looks saw a prefix): `Some(end)` once `bytes[..end]` are whole handshake records that
    /// carry all of it, `None` while more must arrive. An error for bytes that cannot start one:
    /// another record type, a record longer than TLS allows, a first message that is not a
    /// ClientHello, or a ClientHello longer than `max` bytes.
    fn advance(&mut self, bytes: &[u8], max: usize) -> Result<Option<usize>, String> {
        loop {
            let Some(header) = bytes.get(self.at..self.at + RECORD_HEADER) else {
                return Ok(None);
            };
            if header[0] != HANDSHAKE {
                return Err(format!(
                    "not a TLS handshake (a record of content type {})",
                    header[0]
                ));
            }
            let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if length == 0 || length > MAX_RECORD_PAYLOAD {
                return Err(format!("not TLS (a handshake record of {length} bytes)"));
            }
            let start = self.at + RECORD_HEADER;
            let body = &bytes[start..bytes.len().min(start + length)];
            // The header gathered on a copy: a record still arriving is looked at again.
            let (mut head, mut head_len) = (self.head, self.head_len);
            for &b in body.iter().take(4 - head_len) {
                head[head_len] = b;
                head_len += 1;
            }
            if head_len == 4 && self.head_len < 4 {
                if head[0] != CLIENT_HELLO {
                    return Err(format!(
                        "not a ClientHello (handshake message type {})",
                        head[0]
                    ));
                }
                let hello = hello_len(&head);
                if hello > max {
                    return Err(format!(
                        "a ClientHello of {hello} bytes, over the {} KiB limit",
                        max / 1024
                    ));
                }
            }
            if body.len() < length {
                return Ok(None);
            }
            (self.head, self.head_len) = (head, head_len);
            self.carried += length;
            self.at = start + length;
            if head_len == 4 && self.carried >= hello_len(&head) {
                return Ok(Some(self.at));
            }
        }
    }
}

/// A ClientHello's length, its header included, from that header.
fn hello_len(head: &[u8; 4]) -> usize {
    4 + (usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]))
}

/// The server name of a whole ClientHello (its records, as [`HelloFrames`] found them), read by
/// rustls; rustls's buffers live only for this call.
fn server_name(records: &[u8]) -> Result<Option<String>, NoHello> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = records;
    while !rest.is_empty() {
        acceptor
            .read_tls(&mut rest)
            .map_err(|e| format!("not TLS: {e}"))?;
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(accepted
                    .client_hello()
                    .server_name()
                    .map(|name| name.to_ascii_lowercase()));
            }
            Ok(None) => {}
            Err((e, _)) => return Err(format!("not a TLS ClientHello: {e}").into()),
        }
    }
    Err("the ClientHello ended early".to_string().into())
}

impl Passthrough {
    /// Routes the connection by its server name and splices it to a healthy backend.
    async fn splice(&self, client: Stream, hello: Hello, held: Share, started: Instant) {
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
                // The connection is registered with the backend's sessions by now: a mark-down
                // from here on cuts it. One that came between the choice and the registration
                // is seen here, so no connection outlives a cut.
                Ok(_) if !backend.is_up() || pool.is_closing() => {
                    tracing::info!(listener = %self.listener, pool = %pool.name(), backend = %backend.name(), "the backend was marked down while connecting; trying the next");
                }
                Ok(stream) => break (index, stream),
                Err(e) if out_of_local_resources(&e) => {
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
        let sent = hello.bytes.len() as u64;
        let result = async {
            upstream.write_all(&hello.bytes).await?;
            upstream.flush().await?;
            // Sent on: nothing of the ClientHello is held from here.
            drop(hello.bytes);
            drop(held);
            splice(client, upstream, idle).await
        }
        .await;
        open.dec();
        if routing.access_log {
            let (up, down, error) = match &result {
                Ok((up, down)) => (*up + sent, *down, None),
                Err(e) => (sent, 0, Some(e.to_string())),
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
/// (a dead peer, or a backend that stopped reading, must not hold a place for ever). Once one
/// side closed its half, the other direction has [`HALF_CLOSED_GRACE`] of quiet to finish.
/// Returns the bytes sent up and down.
async fn splice(client: Stream, upstream: Stream, idle: Duration) -> std::io::Result<(u64, u64)> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let started = Instant::now();
    // When something last crossed, or a side closed its half (ms since `started`).
    let heard = AtomicU64::new(0);
    let half_closed = AtomicBool::new(false);
    let closing = tokio::sync::Notify::new();
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let pump = |mut from: tokio::io::ReadHalf<Stream>, mut to: tokio::io::WriteHalf<Stream>| {
        let (heard, half_closed, closing) = (&heard, &half_closed, &closing);
        async move {
            let mut buffer = vec![0u8; 16 * 1024];
            let mut total = 0u64;
            loop {
                let n = from.read(&mut buffer).await?;
                if n == 0 {
                    // Half-close: the other direction may still be talking, for a while.
                    let _ = to.shutdown().await;
                    heard.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    half_closed.store(true, Ordering::Relaxed);
                    closing.notify_one();
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
            let quiet_for = if half_closed.load(Ordering::Relaxed) {
                idle.min(HALF_CLOSED_GRACE)
            } else {
                idle
            };
            let last = Duration::from_millis(heard.load(Ordering::Relaxed));
            let quiet = started.elapsed().saturating_sub(last);
            if quiet >= quiet_for {
                return quiet_for;
            }
            tokio::select! {
                _ = tokio::time::sleep(quiet_for.saturating_sub(quiet)) => {}
                _ = closing.notified() => {}
            }
        }
    };
    tokio::select! {
        done = both => done,
        quiet_for = watchdog => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("nothing crossed for {}", humantime::format_duration(quiet_for)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the ClientHello in `bytes` ends, found in one look.
    fn hello_end(bytes: &[u8], max: usize) -> Result<Option<usize>, String> {
        HelloFrames::default().advance(bytes, max)
    }

    /// The records of a ClientHello that rustls's client sends for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        connection.write_tls(&mut out).unwrap();
        out
    }

    /// The same handshake bytes in records of at most `size` bytes.
    fn reframed(records: &[u8], size: usize) -> Vec<u8> {
        let mut payload = Vec::new();
        let mut at = 0;
        while at < records.len() {
            let length = usize::from(u16::from_be_bytes([records[at + 3], records[at + 4]]));
            payload.extend_from_slice(&records[at + 5..at + 5 + length]);
            at += 5 + length;
        }
        let mut out = Vec::new();
        for chunk in payload.chunks(size) {
            out.extend_from_slice(&[HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn a_client_hello_ends_where_its_last_record_does_however_it_is_framed() {
        let hello = client_hello("rpc-lb.test");
        for framed in [
            hello.clone(),
            reframed(&hello, 1),
            reframed(&hello, 3),
            reframed(&hello, 100),
        ] {
            for cut in 0..framed.len() {
                assert_eq!(
                    hello_end(&framed[..cut], MAX_HELLO_BYTES),
                    Ok(None),
                    "{cut} of {} bytes",
                    framed.len()
                );
            }
            // Found as the bytes arrive one by one, where one look finds it.
            let mut frames = HelloFrames::default();
            let found = (1..=framed.len()).find_map(|n| {
                frames
                    .advance(&framed[..n], MAX_HELLO_BYTES)
                    .unwrap()
                    .map(|end| (n, end))
            });
            assert_eq!(found, Some((framed.len(), framed.len())));
            let mut more = framed.clone();
            more.extend_from_slice(b"early data after the hello");
            assert_eq!(hello_end(&more, MAX_HELLO_BYTES), Ok(Some(framed.len())));
            let name = server_name(&framed).ok().flatten();
            assert_eq!(name.as_deref(), Some("rpc-lb.test"));
        }
    }

    #[test]
    fn bytes_that_cannot_start_a_client_hello_are_refused_early() {
        let refused = |bytes: &[u8]| hello_end(bytes, MAX_HELLO_BYTES).unwrap_err();
        assert!(refused(b"GET / HTTP/1.1\r\n").contains("not a TLS handshake"));
        assert!(refused(&[HANDSHAKE, 3, 1, 0, 0]).contains("0 bytes"));
        assert!(refused(&[HANDSHAKE, 3, 1, 0xff, 0xff]).contains("65535 bytes"));
        // A ServerHello, and a ClientHello that claims more than the limit: refused from their
        // first bytes, before the rest is waited for.
        assert!(refused(&[HANDSHAKE, 3, 1, 0x40, 0, 2, 0, 0, 50]).contains("not a ClientHello"));
        let claim = [HANDSHAKE, 3, 1, 0x40, 0, CLIENT_HELLO, 0x01, 0, 0];
        assert!(refused(&claim).contains("over the 64 KiB limit"));
        // The header split over one-byte records is read the same.
        let split: Vec<u8> = [CLIENT_HELLO, 0x01, 0, 0]
            .iter()
            .flat_map(|&b| [HANDSHAKE, 3, 1, 0, 1, b])
            .collect();
        assert!(hello_end(&split, MAX_HELLO_BYTES)
            .unwrap_err()
            .contains("over the 64 KiB limit"));
    }

    #[test]
    fn attack_hostile_bytes_never_panic_the_framing() {
        // A seeded generator: handshake-looking records with random lengths and contents.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 && bytes.len() > 5 {
                bytes[0] = HANDSHAKE;
                bytes[5] = CLIENT_HELLO;
            }
            if let Ok(Some(end)) = hello_end(&bytes, MAX_HELLO_BYTES) {
                assert!(end <= bytes.len());
                let _ = server_name(&bytes[..end]);
            }
        }
    }
}

//! Kept-alive HTTP/1.1 connections to one backend endpoint, for the requests the gateway exchanges
//! itself (`proxy::direct`): plain requests whose body is all in hand. Such a request goes out in a
//! single write, header and body together; Pingora's client writes and flushes them apart, which
//! made the extra send the largest cost of a small JSON-RPC call.
//!
//! Idle connections wait on a stack: the most recently used goes out first, so a quiet gateway
//! keeps reusing a few warm connections instead of cycling through every one it ever opened. One
//! unused for `timeouts.backend_idle` is closed rather than reused: NATs and Docker Swarm's IPVS
//! forget idle flows without a word, and a request sent on such a connection would wait for an
//! answer that never comes. TCP keepalive probes run on every connection. A connection the backend
//! closed while idle is dropped when taken; one it closes as the request goes out is marked as
//! reused in its lease, so the caller may send again on a fresh connection without blaming the
//! backend.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::l4::ext::TcpKeepalive;
use pingora::{Error, ErrorSource, ErrorType};
use rustls_pki_types::ServerName;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One connection's request side; the connection itself runs as its own task.
pub type Sender = SendRequest<Full<Bytes>>;

/// Idle connections kept per endpoint. More than this many concurrent requests still work; the
/// connections past it are closed when their request ends.
const IDLE_PER_ENDPOINT: usize = 1024;

/// TCP keepalive on backend connections: probes after 15 s of silence, every 5 s, 3 of them.
pub fn keepalive() -> TcpKeepalive {
    TcpKeepalive {
        idle: Duration::from_secs(15),
        interval: Duration::from_secs(5),
        count: 3,
        #[cfg(target_os = "linux")]
        user_timeout: Duration::ZERO,
    }
}

/// How to reach one endpoint at one address.
pub struct Connections {
    addr: SocketAddr,
    tls: Option<TlsTarget>,
    connect_timeout: Duration,
    /// Longest a connection waits unused before it is closed.
    idle_timeout: Duration,
    /// Idle connections and when each went idle: oldest at the front, next to use at the back.
    idle: Mutex<VecDeque<(Sender, Instant)>>,
}

/// The TLS side of an `https`/`wss` endpoint: client settings and the name its certificate must bear.
#[derive(Clone)]
pub struct TlsTarget {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl TlsTarget {
    pub fn new(config: Arc<rustls::ClientConfig>, host: &str) -> Result<Self, String> {
        Ok(TlsTarget {
            connector: TlsConnector::from(config),
            server_name: ServerName::try_from(host.to_string())
                .map_err(|e| format!("`{host}` cannot be a TLS server name: {e}"))?,
        })
    }
}

/// A connection ready for one request.
pub struct Lease {
    pub sender: Sender,
    /// Taken from the idle queue rather than opened for this request.
    pub reused: bool,
}

impl Connections {
    pub fn new(
        addr: SocketAddr,
        tls: Option<TlsTarget>,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Connections {
            addr,
            tls,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<(Sender, Instant)>> {
        // A poisoned lock only means a panic elsewhere mid-push; the queue is still usable.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that is still open and not idle too long, or else
    /// a new one.
    pub async fn lease(&self) -> Result<Lease, Box<Error>> {
        loop {
            let Some((mut sender, since)) = self.idle().pop_back() else {
                break;
            };
            // Idle too long: a middlebox may have forgotten it. Closed by the backend while idle:
            // the connection task has seen its end. One still not ready after the connect
            // timeout is stuck. Each is dropped.
            if since.elapsed() >= self.idle_timeout || sender.is_closed() {
                continue;
            }
            if !matches!(
                fast_timeout(self.connect_timeout, sender.ready()).await,
                Ok(Ok(()))
            ) {
                continue;
            }
            return Ok(Lease {
                sender,
                reused: true,
            });
        }
        let sender = self.connect().await?;
        Ok(Lease {
            sender,
            reused: false,
        })
    }

    /// Closes the idle connections unused for `idle_timeout` (also done as connections are
    /// taken and given back; this is for a backend that gets no traffic, a backup say).
    pub fn sweep(&self) {
        let mut idle = self.idle();
        while idle
            .front()
            .is_some_and(|(_, since)| since.elapsed() >= self.idle_timeout)
        {
            idle.pop_front();
        }
    }

    /// Gives a connection back after its response was read to the end. It may not be ready for
    /// the next request yet (the connection task finishes the answer on its own time): `lease`
    /// waits for that.
    pub fn give_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        // The oldest connections go when they expire or the queue is full (dropping one closes it).
        while idle.front().is_some_and(|(_, since)| {
            since.elapsed() >= self.idle_timeout || idle.len() >= IDLE_PER_ENDPOINT
        }) {
            idle.pop_front();
        }
        idle.push_back((sender, Instant::now()));
    }

    /// A new connection, past the idle ones.
    pub async fn connect(&self) -> Result<Sender, Box<Error>> {
        let stream = self.open().await?;
        handshake(stream).await
    }

    /// A new connection to the endpoint (TCP, and TLS for `https`/`wss`) before any HTTP: for a
    /// protocol the gateway speaks itself over it (a WebSocket it terminates).
    pub async fn open(&self) -> Result<Box<dyn Stream>, Box<Error>> {
        let timeout = self.connect_timeout;
        let establish = async {
            let tcp = TcpStream::connect(self.addr).await.map_err(|e| {
                let etype = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    ErrorType::ConnectRefused
                } else {
                    ErrorType::ConnectError
                };
                upstream_error(etype, format!("connecting to {}", self.addr), e)
            })?;
            // Small requests and answers must not wait for more to fill a segment.
            let _ = tcp.set_nodelay(true);
            // A connection the network lost shows up as an error, not as a silent wait.
            if let Err(e) = pingora::protocols::l4::ext::set_tcp_keepalive(&tcp, &keepalive()) {
                tracing::debug!(error = %e, "TCP keepalive not set");
            }
            let stream: Box<dyn Stream> = match &self.tls {
                None => Box::new(tcp),
                Some(tls) => Box::new(
                    tls.connector
                        .connect(tls.server_name.clone(), tcp)
                        .await
                        .map_err(|e| {
                            upstream_error(
                                ErrorType::TLSHandshakeFailure,
                                format!("TLS with {}", self.addr),
                                e,
                            )
                        })?,
                ),
            };
            Ok(stream)
        };
        match tokio::time::timeout(timeout, establish).await {
            Ok(result) => result,
            Err(_) => Err(upstream_error(
                ErrorType::ConnectTimedout,
                format!("connecting to {}", self.addr),
                format!("no connection within {timeout:?}"),
            )),
        }
    }
}

/// A connection to a backend, plain or TLS.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for S {}

async fn handshake<S>(stream: S) -> Result<Sender, Box<Error>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| upstream_error(ErrorType::ConnectError, "HTTP/1.1 handshake", e))?;
    tokio::spawn(async move {
        // Ends when the backend closes or the sender is dropped; either way nothing is waiting.
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "backend connection ended");
        }
    });
    Ok(sender)
}

/// An error of the upstream side, in Pingora's terms, so that one set of rules judges both ways
/// of proxying.
pub fn upstream_error(
    etype: ErrorType,
    context: impl Into<String>,
    cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Box<Error> {
    Error::create(
        etype,
        ErrorSource::Upstream,
        Some(context.into().into()),
        Some(cause.into()),
    )
}

/// The TLS client configuration for a backend: its own CA list when it has one, else the platform's
/// trust store (as Pingora's connector does), TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn tls_config(
    ca: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let Some(certs) = ca else {
        // The platform's store is read once per process.
        static PLATFORM: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
        return PLATFORM
            .get_or_init(|| {
                let native = rustls_native_certs::load_native_certs()
                    .map_err(|e| format!("cannot load the platform's CA certificates: {e}"))?;
                let mut roots = rustls::RootCertStore::empty();
                // Certificates rustls cannot use are skipped, as Pingora does.
                roots.add_parsable_certificates(native);
                client_config(roots)
            })
            .clone();
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .map_err(|e| format!("CA certificate not usable: {e}"))?;
    }
    client_config(roots)
}

fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend that answers every request with the number of the connection it came on.
    async fn numbering_backend() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let number = accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let body = number.to_string();
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends one request on a leased connection; returns the connection's number and gives it back.
    async fn ask(connections: &Connections) -> (String, bool) {
        let mut lease = connections.lease().await.unwrap();
        let request = http::Request::get("/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = lease.sender.send_request(request).await.unwrap();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        connections.give_back(lease.sender);
        (String::from_utf8_lossy(&body).into_owned(), lease.reused)
    }

    #[tokio::test]
    async fn the_most_recently_used_connection_goes_first_and_idle_ones_expire() {
        let addr = numbering_backend().await;
        let connections = Connections::new(
            addr,
            None,
            Duration::from_secs(1),
            Duration::from_millis(300),
        );
        // Two connections at once (0 and 1), the second given back last.
        let first = connections.lease().await.unwrap();
        let second = connections.lease().await.unwrap();
        connections.give_back(first.sender);
        tokio::task::yield_now().await;
        connections.give_back(second.sender);
        let (number, reused) = ask(&connections).await;
        assert!(reused);
        assert_eq!(number, "1", "the connection used last goes out first");
        let (number, _) = ask(&connections).await;
        assert_eq!(number, "1", "and again: the other one stays idle");
        // Unused past the idle timeout: closed, not reused.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (number, reused) = ask(&connections).await;
        assert!(!reused, "an expired connection is not reused");
        assert_eq!(number, "2");
        tokio::time::sleep(Duration::from_millis(400)).await;
        connections.sweep();
        assert!(connections.idle().is_empty(), "swept without traffic");
    }
}

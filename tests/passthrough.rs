//! Passthrough listeners: TLS routed by its SNI name and passed through to simulated TLS nodes
//! whose certificates are for the load-balancer names, as the original haproxy setup ran.

mod common;

use common::{free_addr, metric, rpc, Gateway, Pki, FAST_HEALTH};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use ssv_ha::sim::tls::Leaf;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// The names the nodes' certificates are for: the load balancer's, as in the original setup, and
/// `localhost` for the gateway's health checks.
const NAMES: [&str; 4] = ["rpc-lb.test", "ws-lb.test", "localhost", "127.0.0.1"];

async fn tls_node(pki: &Pki, name: &str) -> (SimNode, Leaf) {
    let leaf = pki.ca.leaf(&NAMES).unwrap();
    let node = SimNode::start_on(
        NodeKind::Execution,
        name,
        NodeStatus::default(),
        "127.0.0.1:0".parse().unwrap(),
        Some(leaf.server_config().unwrap()),
    )
    .await
    .unwrap();
    (node, leaf)
}

struct Setup {
    pki: Pki,
    primary: (SimNode, Leaf),
    backup: (SimNode, Leaf),
    /// Where the primary's `ws_url` points: its own node, so a test sees which address was used.
    primary_ws: SimNode,
    gateway: Gateway,
    listen: SocketAddr,
}

async fn setup() -> Setup {
    setup_with("").await
}

/// `top`: extra top-level settings (`timeouts: ...`).
async fn setup_with(top: &str) -> Setup {
    setup_full(top, ", hello_timeout: 1s", None, None).await
}

/// `listener`: the passthrough listener's settings after its mode; `a_url` (given the primary)
/// and `a_ws`: where the primary's `url` and `ws_url` point instead of its own nodes.
async fn setup_full(
    top: &str,
    listener: &str,
    a_url: Option<&dyn Fn(&SimNode) -> String>,
    a_ws: Option<String>,
) -> Setup {
    let pki = Pki::new();
    let primary = tls_node(&pki, "a").await;
    let backup = tls_node(&pki, "b").await;
    let primary_ws = tls_node(&pki, "a-ws").await.0;
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        r#"admin: {{ address: "{admin}" }}
{top}
listeners:
  - {{ name: tls, address: "{listen}", mode: passthrough{listener} }}
pools:
  execution:
    kind: execution
    policy: first
    ca: {ca}
    health: {FAST_HEALTH}
    backends:
      - {{ name: a, url: "{a}", ws_url: "{a_ws}" }}
      - {{ name: b, url: "{b}", backup: true }}
routes:
  - {{ host: rpc-lb.test, listener: tls, pool: execution }}
  - {{ host: ws-lb.test, listener: tls, pool: execution, endpoint: ws_url }}
"#,
        ca = pki.ca_file.display(),
        a = a_url.map_or_else(|| primary.0.url(), |url| url(&primary.0)),
        a_ws = a_ws.unwrap_or_else(|| primary_ws.ws_url()),
        b = backup.0.url(),
    );
    let gateway = Gateway::start(&yaml, admin, &[listen]).await;
    gateway.wait_backend("execution", "a", true).await;
    gateway.wait_backend("execution", "b", true).await;
    Setup {
        pki,
        primary,
        backup,
        primary_ws,
        gateway,
        listen,
    }
}

fn tls_config(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pki.ca_file).unwrap();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

/// A TLS connection through the gateway, with `name` as its SNI.
async fn connect(
    pki: &Pki,
    listen: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(listen).await?;
    let connector = tokio_rustls::TlsConnector::from(tls_config(pki));
    let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    connector.connect(server_name, tcp).await
}

fn peer_certificate(stream: &TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    let (_, connection) = stream.get_ref();
    connection.peer_certificates().unwrap()[0].to_vec()
}

/// One JSON-RPC call on a kept-alive connection; returns the node that answered (`x-sim-node`).
async fn call(stream: &mut TlsStream<tokio::net::TcpStream>, host: &str) -> String {
    let body = rpc("eth_blockNumber", 1).to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-answer");
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                return head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-sim-node:"))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default();
            }
        }
    }
}

#[tokio::test]
async fn tls_passes_through_to_the_primary_then_to_the_backup_when_it_goes_down() {
    let s = setup().await;
    let mut open = connect(&s.pki, s.listen, "rpc-lb.test").await.unwrap();
    assert_eq!(
        peer_certificate(&open),
        s.primary.1.cert_der(),
        "the client sees the primary's own certificate: TLS runs end to end"
    );
    assert_eq!(call(&mut open, "rpc-lb.test").await, "a");
    let status = s.gateway.status().await;
    assert_eq!(
        Gateway::backend_status(&status, "execution", "a")["sessions"],
        1,
        "/status counts the open connection"
    );
    let metrics = s.gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"ssv_ha_passthrough_connections_total{backend="a",pool="execution"}"#
        ),
        1.0
    );

    // The primary goes down: the open connection is cut, new ones reach the backup.
    s.primary.0.set(|n| n.syncing = true);
    s.gateway.wait_backend("execution", "a", false).await;
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
    assert!(
        cut.is_ok(),
        "the connection to the down primary stayed open"
    );
    let metrics = s.gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"ssv_ha_sessions_cut_total{backend="a",pool="execution",reason="backend_down"}"#
        ),
        1.0,
        "the gateway cut it when it marked the primary down"
    );
    let mut next = connect(&s.pki, s.listen, "rpc-lb.test").await.unwrap();
    assert_eq!(peer_certificate(&next), s.backup.1.cert_der());
    assert_eq!(call(&mut next, "rpc-lb.test").await, "b");
}

#[tokio::test]
async fn an_unknown_name_or_no_tls_is_closed_without_reaching_a_backend() {
    let s = setup().await;
    let before = s.primary.0.client_requests() + s.backup.0.client_requests();
    let refused = connect(&s.pki, s.listen, "other.test").await;
    assert!(refused.is_err(), "a name without a route got a TLS session");
    // Plain HTTP on a passthrough listener: not a ClientHello.
    let mut plain = tokio::net::TcpStream::connect(s.listen).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: rpc-lb.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {answer:?}");
    let metrics = s.gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"ssv_ha_unrouted_requests_total{listener="tls"}"#
        ),
        1.0,
        "the unknown name"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ssv_ha_refused_requests_total{reason="no_client_hello"}"#
        ),
        1.0,
        "the plain HTTP request"
    );
    for backend in ["a", "b"] {
        let series = format!(
            r#"ssv_ha_passthrough_connections_total{{backend="{backend}",pool="execution"}}"#
        );
        assert_eq!(metric(&metrics, &series), 0.0, "{backend}");
    }
    assert_eq!(
        s.primary.0.client_requests() + s.backup.0.client_requests(),
        before
    );
}

#[tokio::test]
async fn a_websocket_subscription_goes_to_the_ws_url() {
    let s = setup().await;
    let tls = connect(&s.pki, s.listen, "ws-lb.test").await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://ws-lb.test/", tls)
        .await
        .unwrap();
    let subscribe = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    let reply = read_json(&mut ws).await;
    let id = reply["result"]
        .as_str()
        .expect("a subscription id")
        .to_string();
    let head = s.primary_ws.new_head();
    let note = read_json(&mut ws).await;
    assert_eq!(note["params"]["subscription"], id.as_str());
    let number = note["params"]["result"]["number"].as_str().unwrap();
    assert_eq!(u64::from_str_radix(&number[2..], 16).unwrap(), head);
    assert_eq!(s.primary.0.client_requests(), 0, "the url node got nothing");
}

async fn read_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a WebSocket message within 5 s")
            .expect("the WebSocket stayed open")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn a_slow_hello_and_an_idle_connection_are_closed() {
    let s = setup_with("timeouts: { websocket_idle: 1s }").await;
    // Three bytes of a TLS record header, then nothing: closed at the hello timeout (1 s).
    let mut slow = tokio::net::TcpStream::connect(s.listen).await.unwrap();
    slow.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the hello timeout"
    );

    // A routed connection with nothing crossing it: closed after websocket_idle (1 s).
    let mut idle = connect(&s.pki, s.listen, "rpc-lb.test").await.unwrap();
    assert_eq!(call(&mut idle, "rpc-lb.test").await, "a");
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle passthrough connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before it was idle 1 s"
    );
    assert_eq!(
        s.gateway.status().await["pools"][0]["backends"][0]["sessions"],
        0,
        "its place is given back"
    );
}

/// The first bytes rustls's client sends for `name`: its ClientHello records.
fn client_hello(pki: &Pki, name: &str) -> Vec<u8> {
    let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut connection = rustls::ClientConnection::new(tls_config(pki), name).unwrap();
    let mut out = Vec::new();
    connection.write_tls(&mut out).unwrap();
    out
}

/// A TCP connection to `listen` from the loopback address `source` (`127.0.0.x`).
async fn tcp_from(source: &str, listen: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(listen).await.unwrap()
}

/// Whether the gateway closed `stream` within `within` (what it sent first is read and dropped).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(within, stream.read_to_end(&mut rest)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

/// One address cannot take every place of a listener with idle connections: past its own cap
/// (`max_requests_per_client`, counted from accept) it is refused at once, and another address
/// still gets in.
#[tokio::test]
async fn one_address_cannot_take_every_place_with_idle_connections() {
    let s = setup_full(
        "",
        ", hello_timeout: 30s, max_requests: 3, max_requests_per_client: 2",
        None,
        None,
    )
    .await;
    let mut idle = [
        tcp_from("127.0.0.1", s.listen).await,
        tcp_from("127.0.0.1", s.listen).await,
        tcp_from("127.0.0.1", s.listen).await,
    ];
    // The gateway counts them in the order it gets to them: one of the three, whichever, is
    // closed at once, and the other two wait for their hello (30 s).
    let closed = futures::future::join_all(
        idle.iter_mut()
            .map(|c| closed_within(c, Duration::from_secs(5))),
    )
    .await;
    assert_eq!(
        closed.iter().filter(|c| **c).count(),
        1,
        "three idle connections from one address whose cap is 2: {closed:?} closed"
    );
    // Another address gets the listener's last place, and is served.
    let tcp = tcp_from("127.0.0.2", s.listen).await;
    let connector = tokio_rustls::TlsConnector::from(tls_config(&s.pki));
    let name = rustls_pki_types::ServerName::try_from("rpc-lb.test".to_string()).unwrap();
    let mut other = connector.connect(name, tcp).await.expect("a TLS session");
    assert_eq!(call(&mut other, "rpc-lb.test").await, "a");
    drop(idle);
}

/// The gateway's resident memory (KiB), from its `/proc` status.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Connections that send part of a large ClientHello and wait hold their bytes against the
/// listener's `max_held_bytes`: past it they are closed (counted as `held_bytes` refusals), and
/// the gateway's memory stays within a bound.
#[tokio::test]
async fn half_sent_client_hellos_are_held_within_the_listener_budget() {
    const CONNECTIONS: usize = 2000;
    const BUDGET: usize = 4 * 1024 * 1024;
    let s = setup_full(
        &format!("limits: {{ max_body_bytes: 1048576, max_held_bytes: {BUDGET} }}"),
        ", hello_timeout: 30s, max_requests_per_client: 5000",
        None,
        None,
    )
    .await;
    let pid = s.gateway.pid();
    let before = rss_kib(pid);
    // 8 KiB of one 16 KiB record whose ClientHello claims 16,380 bytes.
    let mut partial = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc];
    partial.resize(8 * 1024, 0);
    let mut open = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut c = tokio::net::TcpStream::connect(s.listen).await.unwrap();
        // A connection the gateway already closed may refuse the bytes: that is fine.
        let _ = c.write_all(&partial).await;
        open.push(c);
    }
    let series = |m: &str, name: &str| metric(m, name);
    let held = r#"ssv_ha_held_bytes{listener="tls"}"#;
    let refused = r#"ssv_ha_refused_requests_total{reason="held_bytes"}"#;
    // Every connection holds at least one 4 KiB read once it is read: past the budget's worth,
    // the rest are refused.
    let at_least_refused = (CONNECTIONS - BUDGET / 4096) as f64;
    let (held_now, refused_now) = common::wait_for(
        "the connections past the budget to be refused",
        Duration::from_secs(30),
        || async {
            let m = s.gateway.metrics().await;
            let (h, r) = (series(&m, held), series(&m, refused));
            (r >= at_least_refused).then_some((h, r))
        },
    )
    .await;
    let grown_kib = rss_kib(pid).saturating_sub(before);
    eprintln!(
        "{CONNECTIONS} half-sent hellos: {held_now} bytes held, {refused_now} refused, the gateway grew by {grown_kib} KiB"
    );
    assert!(
        held_now > 0.0 && held_now <= BUDGET as f64,
        "held {held_now}"
    );
    // The budget, and per connection kept open a few KiB of its own (task, socket, buffers).
    assert!(
        grown_kib < 24 * 1024,
        "the gateway grew by {grown_kib} KiB for {CONNECTIONS} half-sent hellos"
    );
    drop(open);
    common::wait_for(
        "the held bytes to be given back",
        Duration::from_secs(10),
        || async { (series(&s.gateway.metrics().await, held) == 0.0).then_some(()) },
    )
    .await;
}

/// A backend (the primary's `ws_url`) that answers, closes its half, and keeps reading; says
/// when its connection ended, after its half-close.
async fn answer_and_half_close() -> (SocketAddr, tokio::sync::oneshot::Receiver<Duration>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4096];
        let _ = stream.read(&mut buffer).await;
        stream.write_all(b"the answer").await.unwrap();
        stream.shutdown().await.unwrap();
        let closed = std::time::Instant::now();
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(closed.elapsed());
    });
    (addr, rx)
}

/// After the backend sent its answer and closed its half, a quiet client does not hold the
/// connection until the idle timeout (an hour): it ends within seconds.
#[tokio::test]
async fn a_backend_half_close_ends_the_connection_within_seconds() {
    let (backend, ended) = answer_and_half_close().await;
    let s = setup_full(
        "",
        ", hello_timeout: 5s",
        None,
        Some(format!("wss://localhost:{}", backend.port())),
    )
    .await;
    let mut client = tokio::net::TcpStream::connect(s.listen).await.unwrap();
    client
        .write_all(&client_hello(&s.pki, "ws-lb.test"))
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
        .await
        .expect("the answer and the backend's half-close within 5 s")
        .unwrap();
    assert_eq!(answer, b"the answer");
    // The client stays connected and says nothing.
    let after = tokio::time::timeout(Duration::from_secs(15), ended)
        .await
        .expect("the connection still open 15 s after the backend's half-close")
        .unwrap();
    eprintln!("ended {after:?} after the backend's half-close");
    assert_eq!(
        s.gateway.status().await["pools"][0]["backends"][0]["sessions"],
        0
    );
    drop(client);
}

/// A TCP relay to a node that the test can stop: then its accept queue (backlog 1) is filled,
/// so that a new connection to it waits (its SYN dropped, resent a second later) until the relay
/// goes on accepting.
struct Relay {
    addr: SocketAddr,
    target: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    accepting: tokio::sync::watch::Sender<bool>,
    fillers: Vec<tokio::net::TcpStream>,
}

impl Relay {
    async fn start() -> Relay {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let target: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        let (accepting, mut rx) = tokio::sync::watch::channel(true);
        let to = target.clone();
        tokio::spawn(async move {
            loop {
                if rx.wait_for(|on| *on).await.is_err() {
                    return;
                }
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let Some(target) = *to.lock().unwrap() else { continue };
                        tokio::spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                    _ = rx.changed() => {}
                }
            }
        });
        Relay {
            addr,
            target,
            accepting,
            fillers: Vec::new(),
        }
    }

    /// Stops accepting, and fills the accept queue.
    async fn stall(&mut self) {
        self.accepting.send_replace(false);
        for _ in 0..2 {
            self.fillers
                .push(tokio::net::TcpStream::connect(self.addr).await.unwrap());
        }
    }

    fn resume(&self) {
        self.accepting.send_replace(true);
    }
}

/// Whether a connection from this host to `port` waits for its SYN to be answered.
fn syn_sent_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"02")
    })
}

/// A connection the gateway opens to a backend just before that backend is marked down, and
/// that is registered after the cut, does not survive it: the gateway sees the mark-down and
/// takes the next backend.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_made_across_a_mark_down_does_not_outlive_the_cut() {
    let mut relay = Relay::start().await;
    let via_relay = |primary: &SimNode| {
        *relay.target.lock().unwrap() = Some(primary.addr());
        format!("https://localhost:{}", relay.addr.port())
    };
    let s = setup_full(
        "timeouts: { connect: 10s }",
        ", hello_timeout: 5s",
        Some(&via_relay),
        None,
    )
    .await;
    relay.stall().await;
    let (config, listen) = (tls_config(&s.pki), s.listen);
    let client = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(listen).await?;
        let name = rustls_pki_types::ServerName::try_from("rpc-lb.test".to_string()).unwrap();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    });
    // The gateway chose the primary (up) and waits for its connection.
    common::wait_for(
        "the gateway's connection to the primary to wait",
        Duration::from_secs(10),
        || async { syn_sent_to(relay.addr.port()).then_some(()) },
    )
    .await;
    s.primary.0.set(|n| n.syncing = true);
    s.gateway.wait_backend("execution", "a", false).await;
    // The cut is done; now the connection is made.
    relay.resume();
    let stream = tokio::time::timeout(Duration::from_secs(20), client)
        .await
        .expect("a TLS session within 20 s")
        .unwrap()
        .expect("a TLS session");
    assert_eq!(
        peer_certificate(&stream),
        s.backup.1.cert_der(),
        "the connection went on to the primary after it was marked down"
    );
}

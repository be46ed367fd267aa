//! The gateway's own exchange for requests whose body it holds (small JSON-RPC calls, bodyless
//! requests): kept-alive backend connections, the request in one write, answers relayed as they
//! arrive whatever their framing, and a connection the backend closed while idle never held
//! against it. The backends here are plain TCP servers, so every byte on the wire is the test's.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the backend does with a request that is not a health probe.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers with Content-Length and keeps the connection.
    KeepAlive,
    /// Answers the first request of a connection; closes the connection, unanswered, when a
    /// second one arrives (a backend's keep-alive timeout racing the gateway's next request).
    ClosesWhenReused,
    /// Answers chunked.
    Chunked,
    /// Answers without a length and closes the connection to end the body.
    CloseDelimited,
    /// Sends the header and half the body, then the rest once the test says so.
    Stalls,
}

const ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":"0x10"}"#;

/// Counts of what a test backend saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// Requests whose header and body did not arrive in the backend's first read.
    split: AtomicUsize,
}

struct Backend {
    addr: SocketAddr,
    seen: Arc<Seen>,
    release: Arc<tokio::sync::Notify>,
}

/// Reads one request (header and Content-Length body); `None` when the connection ended. Also
/// says whether the whole request came in the first read.
async fn read_request(s: &mut TcpStream) -> Option<(String, bool)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut reads = 0;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + length {
                return Some((String::from_utf8_lossy(&buf).into_owned(), reads == 1));
            }
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        reads += 1;
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn backend(mode: Mode) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let release = Arc::new(tokio::sync::Notify::new());
    let (counts, gate) = (seen.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (seen, release) = (counts.clone(), gate.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                while let Some((request, whole)) = read_request(&mut s).await {
                    if request.contains("ssv-ha-health") {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            HEALTHY_BATCH.len()
                        );
                        let _ = s
                            .write_all(format!("{head}{HEALTHY_BATCH}").as_bytes())
                            .await;
                        continue;
                    }
                    if answered == 0 {
                        seen.connections.fetch_add(1, Ordering::SeqCst);
                    }
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    if !whole {
                        seen.split.fetch_add(1, Ordering::SeqCst);
                    }
                    let reply = match mode {
                        Mode::ClosesWhenReused if answered > 0 => return,
                        Mode::KeepAlive | Mode::ClosesWhenReused => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ANSWER}",
                            ANSWER.len()
                        ),
                        Mode::Chunked => {
                            let (a, b) = ANSWER.split_at(10);
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                                a.len(),
                                b.len()
                            )
                        }
                        Mode::CloseDelimited => {
                            let _ = s
                                .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{ANSWER}").as_bytes())
                                .await;
                            return;
                        }
                        Mode::Stalls => {
                            let half = "x".repeat(10_000);
                            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n";
                            let _ = s.write_all(format!("{head}{half}").as_bytes()).await;
                            release.notified().await;
                            half
                        }
                    };
                    answered += 1;
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Backend {
        addr,
        seen,
        release,
    }
}

/// The gateway with one execution backend at `addr`, checked once (only live traffic after
/// that), taken down by a single failure: anything held against the backend shows.
async fn gateway(addr: SocketAddr) -> (Gateway, SocketAddr) {
    let (gw, listen) = start_on(&pools(addr), EC_ROUTE).await;
    gw.wait_backend("execution", "raw", true).await;
    (gw, listen)
}

fn pools(addr: SocketAddr) -> String {
    format!(
        "  execution:\n    kind: execution\n    min_peers: 0\n    max_head_age: off\n    health: {{ interval: 1h, timeout: 1s, rise: 1, fall: 1 }}\n    backends:\n      - {{ name: raw, url: \"http://{addr}\" }}\n"
    )
}

/// A raw POST of `body` to the execution route; `extra` holds more header lines, each ending in
/// CRLF. With `Expect: 100-continue` among them, the body is left for the caller to send.
fn raw_post(version: &str, body: &str, extra: &str) -> String {
    let mut request = format!(
        "POST / {version}\r\nHost: rpc.example.com\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    if !extra.contains("100-continue") {
        request.push_str(body);
    }
    request
}

async fn call(client: &reqwest::Client, listen: SocketAddr) -> (u16, String) {
    let response = client
        .post(format!("http://{listen}/"))
        .header("host", "rpc.example.com")
        .json(&rpc("eth_blockNumber", 1))
        .send()
        .await
        .expect("request through the gateway");
    let status = response.status().as_u16();
    (status, response.text().await.expect("whole body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_share_kept_alive_connections_and_go_out_in_one_write() {
    let backend = backend(Mode::KeepAlive).await;
    let (_gw, listen) = gateway(backend.addr).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        assert_eq!(call(&client, listen).await, (200, ANSWER.to_string()));
    }
    // A bodyless request takes the same way.
    let response = client
        .get(format!("http://{listen}/"))
        .header("host", "rpc.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = &backend.seen;
    assert_eq!(seen.requests.load(Ordering::SeqCst), 21);
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "one request after another needs one backend connection"
    );
    assert_eq!(
        seen.split.load(Ordering::SeqCst),
        0,
        "every request arrived whole in one read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closed_by_the_backend_while_idle_is_not_held_against_it() {
    let backend = backend(Mode::ClosesWhenReused).await;
    let (gw, listen) = gateway(backend.addr).await;
    let client = reqwest::Client::new();
    for i in 0..10 {
        assert_eq!(
            call(&client, listen).await,
            (200, ANSWER.to_string()),
            "request {i}"
        );
    }
    // With fall 1, a single failure counted against the backend would have taken it down.
    let status = gw.status().await;
    let raw = Gateway::backend_status(&status, "execution", "raw");
    assert_eq!(raw["healthy"], true, "{raw:#}");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "ssv_ha_retries_total{pool=\"execution\"}"),
        0.0,
        "a stale connection costs no retry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_and_close_delimited_answers_reach_the_client_whole() {
    for mode in [Mode::Chunked, Mode::CloseDelimited] {
        let backend = backend(mode).await;
        let (_gw, listen) = gateway(backend.addr).await;
        // Raw, on one client connection: both answers must be framed for it to stay usable.
        let mut s = TcpStream::connect(listen).await.unwrap();
        let body = serde_json::to_string(&rpc("eth_blockNumber", 1)).unwrap();
        let request = raw_post("HTTP/1.1", &body, "");
        for round in 0..2 {
            s.write_all(request.as_bytes()).await.unwrap();
            let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut s))
                .await
                .expect("an answer in time");
            assert_eq!(answer, ANSWER, "round {round}");
        }
    }
}

/// Reads one response with a Content-Length or chunked body and returns the decoded body.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let rest = &buf[end + 4..];
            if let Some(length) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
                let length: usize = length.trim().parse().unwrap();
                if rest.len() >= length {
                    return String::from_utf8_lossy(&rest[..length]).into_owned();
                }
            } else {
                assert!(head.contains("transfer-encoding: chunked"), "{head}");
                if let Some(body) = dechunk(rest) {
                    return body;
                }
            }
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed mid-answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A complete chunked body, decoded; `None` while incomplete.
fn dechunk(mut data: &[u8]) -> Option<String> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return data
                .starts_with(b"\r\n")
                .then(|| String::from_utf8_lossy(&body).into_owned());
        }
        if data.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_is_relayed_as_it_arrives_not_when_complete() {
    let backend = backend(Mode::Stalls).await;
    let (_gw, listen) = gateway(backend.addr).await;
    let request = reqwest::Client::new()
        .post(format!("http://{listen}/"))
        .header("host", "rpc.example.com")
        .json(&rpc("eth_getLogs", 1))
        .send();
    let mut response = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("the header comes while the backend holds the rest of the body")
        .unwrap();
    let mut received = 0;
    while received < 10_000 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("the first half arrives while the backend holds the rest")
            .unwrap()
            .expect("more body");
        received += chunk.len();
    }
    backend.release.notify_one();
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len();
    }
    assert_eq!(received, 20_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_leaving_mid_answer_is_neither_an_error_nor_the_backends_fault() {
    let backend = backend(Mode::Stalls).await;
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = config(admin, listen, &pools(backend.addr), EC_ROUTE);
    let (gw, log) = Gateway::start_logged(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "raw", true).await;
    let mut s = TcpStream::connect(listen).await.unwrap();
    let body = serde_json::to_string(&rpc("eth_getLogs", 1)).unwrap();
    let request = raw_post("HTTP/1.1", &body, "");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut first))
        .await
        .expect("the answer starts")
        .unwrap();
    assert!(n > 0);
    drop(s);
    // The rest goes out to a closed connection.
    backend.release.notify_one();
    wait_for(
        "the request to end at the gateway",
        Duration::from_secs(5),
        || {
            let gw = &gw;
            async move {
                let metrics = gw.metrics().await;
                (metric(
                    &metrics,
                    "ssv_ha_requests_total{backend=\"raw\",class=\"2xx\",pool=\"execution\"}",
                ) >= 1.0)
                    .then_some(())
            }
        },
    )
    .await;
    let errors: Vec<String> = log.try_iter().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let status = gw.status().await;
    assert_eq!(
        Gateway::backend_status(&status, "execution", "raw")["healthy"],
        true
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_expecting_100_continue_is_told_to_go_on() {
    let backend = backend(Mode::KeepAlive).await;
    let (_gw, listen) = gateway(backend.addr).await;
    let mut s = TcpStream::connect(listen).await.unwrap();
    let body = serde_json::to_string(&rpc("eth_blockNumber", 1)).unwrap();
    let head = raw_post("HTTP/1.1", &body, "Expect: 100-continue\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // The body is held back until the gateway says to go on, as curl does.
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .expect("a 100 Continue before the body is sent")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed: {:?}",
            String::from_utf8_lossy(&interim)
        );
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    s.write_all(body.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut s))
        .await
        .expect("the answer");
    assert_eq!(answer, ANSWER);
    let request = backend.seen.requests.load(Ordering::SeqCst);
    assert_eq!(request, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_1_0_client_gets_answers_it_can_read() {
    // Small bodies go the gateway's own way; one over 64 KiB streams through Pingora's.
    let large = serde_json::to_string(&serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": ["0".repeat(70_000)]
    }))
    .unwrap();
    let small = serde_json::to_string(&rpc("eth_blockNumber", 1)).unwrap();
    let modes = [Mode::Chunked, Mode::CloseDelimited, Mode::KeepAlive];
    for (mode, body) in modes.iter().flat_map(|m| [(*m, &small), (*m, &large)]) {
        let backend = backend(mode).await;
        let (_gw, listen) = gateway(backend.addr).await;
        let mut s = TcpStream::connect(listen).await.unwrap();
        let request = raw_post("HTTP/1.0", body, "");
        s.write_all(request.as_bytes()).await.unwrap();
        // HTTP/1.0 without keep-alive: the answer ends when the gateway closes the connection.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
            .await
            .expect("the gateway closes the connection after the answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
        assert!(
            !head.to_lowercase().contains("transfer-encoding"),
            "HTTP/1.0 has no chunked encoding: {head}"
        );
        assert_eq!(body, ANSWER, "{head}");
    }
}

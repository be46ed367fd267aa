//! Hostile clients and broken backends: smuggling attempts, bad chunking, slow clients, garbage
//! from a backend. Each is refused or answered correctly, nothing reaches a backend in a smuggled
//! form (checked at the simulated node), and the gateway keeps serving.

mod common;

use common::*;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (Pki, SimNode, Gateway, SocketAddr) {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&ec, false)],
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    (pki, ec, gw, listen)
}

/// Sends raw bytes and returns whatever comes back before the connection closes or goes quiet.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(700), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_attempts_do_not_reach_a_backend_smuggled() {
    let (_pki, ec, _gw, listen) = setup().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#;
    let attempts = [
        // Both lengths: the chunked body ends at once; what follows is a second, hidden request.
        "POST / HTTP/1.1\r\nHost: rpc.example.com\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: rpc.example.com\r\n\r\n".to_string(),
        // Two different lengths.
        format!("POST / HTTP/1.1\r\nHost: rpc.example.com\r\nContent-Length: {}\r\nContent-Length: 5\r\n\r\n{body}", body.len()),
        // A chunk size that is not hex.
        format!("POST / HTTP/1.1\r\nHost: rpc.example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{body}\r\n0\r\n\r\n"),
        // An obfuscated Transfer-Encoding.
        "POST / HTTP/1.1\r\nHost: rpc.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\nabcdGET /smuggled HTTP/1.1\r\nHost: rpc.example.com\r\n\r\n".to_string(),
    ];
    for attempt in &attempts {
        let response = raw(listen, attempt.as_bytes()).await;
        let line = status_line(&response);
        assert!(
            line.starts_with("HTTP/1.1 "),
            "no HTTP answer to {attempt:?}: {response:?}"
        );
    }
    let smuggled: Vec<_> = ec
        .seen()
        .into_iter()
        .filter(|r| r.uri.contains("smuggled"))
        .collect();
    assert!(
        smuggled.is_empty(),
        "a smuggled request reached the backend: {smuggled:?}"
    );
    for request in ec.seen().into_iter().filter(|r| !r.probe) {
        assert_eq!(
            (request.method.as_str(), request.uri.as_str()),
            ("POST", "/"),
            "{request:?}"
        );
    }
    // Still serving.
    assert_eq!(who_answers(&reqwest::Client::new(), listen).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_and_deep_nesting_are_answered_and_harmless() {
    let (_pki, _ec, _gw, listen) = setup().await;
    let client = reqwest::Client::new();
    let send = |body: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://{listen}/"))
                .header("host", "rpc.example.com")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Invalid UTF-8 inside a string, and nesting far deeper than any parser should follow.
    let mut invalid = br#"{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[""#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    invalid.extend_from_slice(br#""]}"#);
    assert!(matches!(send(invalid).await, 200 | 400), "answered");
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_call","params":{}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    assert!(matches!(send(deep.into_bytes()).await, 200 | 400 | 413));
    assert_eq!(
        who_answers(&client, listen).await.0,
        200,
        "the gateway is still up"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_do_not_starve_others() {
    let (_pki, _ec, _gw, listen) = setup().await;
    // Fifty clients that send half a request line and then nothing.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: rpc.exa")
            .await
            .unwrap();
        slow.push(s);
    }
    let client = reqwest::Client::new();
    for _ in 0..20 {
        assert_eq!(who_answers(&client, listen).await.0, 200);
    }
    drop(slow);
}

/// A backend that answers with garbage, stops mid-body, or hangs.
async fn broken_backend(mode: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                let healthy = HEALTHY_BATCH.as_bytes();
                let probe = String::from_utf8_lossy(&buf).contains("ssv-ha-health");
                if probe {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", healthy.len());
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(healthy).await;
                    return;
                }
                match mode {
                    "garbage" => {
                        let _ = s.write_all(b"\x00\x01NOT HTTP AT ALL\r\n\r\n").await;
                    }
                    "truncated" => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\":\"2.0\"").await;
                    }
                    _ => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_backends_give_clean_errors_and_leave_rotation() {
    let pki = Pki::new();
    let good = pki
        .node(NodeKind::Execution, "ec-good", NodeStatus::default())
        .await;
    for mode in ["garbage", "truncated", "hang"] {
        let broken = broken_backend(mode).await;
        let (admin, listen) = (free_addr(), free_addr());
        let pools = format!(
            "  execution:\n    kind: execution\n    min_peers: 0\n    max_head_age: off\n    ca: {}\n    health: {{ interval: 1h, timeout: 1s }}\n    backends:\n      - {{ name: broken, url: \"http://{broken}\" }}\n      - {{ name: ec-good, url: \"{}\", backup: true }}\n",
            pki.ca_file.display(),
            good.url()
        );
        let yaml = format!(
            "timeouts: {{ response: 500ms }}\n{}",
            config(admin, listen, &pools, EC_ROUTE)
        );
        let gw = Gateway::start(&yaml, admin, &[listen]).await;
        gw.wait_backend("execution", "broken", true).await;
        let client = reqwest::Client::new();
        // The client waits at most 5 s: a gateway that waited out the hanging backend (30 s)
        // would leave it hanging too.
        let sent = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .post(format!("http://{listen}/"))
                .header("host", "rpc.example.com")
                .json(&rpc("eth_chainId", 1))
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{mode}: no answer within 5 s"));
        match mode {
            // Nothing reached the client yet: retried on the backup, the first request too, and
            // for a hang as soon as the response timeout (500 ms) ran out.
            "garbage" | "hang" => {
                let first = response.unwrap_or_else(|e| panic!("{mode}: no HTTP answer: {e}"));
                let took = sent.elapsed();
                let (status, node, body) = (
                    first.status().as_u16(),
                    first
                        .headers()
                        .get("x-sim-node")
                        .map(|v| v.to_str().unwrap().to_string()),
                    first.text().await.unwrap(),
                );
                assert_eq!(
                    (status, node.as_deref()),
                    (200, Some("ec-good")),
                    "{mode}: the first request: {body}"
                );
                // (A wide margin over the 500 ms response timeout: what matters is that the
                // gateway did not wait out the hanging backend.)
                assert!(
                    took < Duration::from_millis(500) + Duration::from_secs(3),
                    "{mode}: answered after {took:?}, the response timeout is 500 ms"
                );
                let (status, node, body) = post(
                    &client,
                    &format!("http://{listen}/"),
                    "rpc.example.com",
                    // Not `eth_chainId` again: the answer cache would answer it.
                    &rpc("eth_blockNumber", 2),
                )
                .await;
                assert_eq!(
                    (status, node.as_deref()),
                    (200, Some("ec-good")),
                    "{mode}: {body}"
                );
            }
            // The response had started: the client sees a cut body, never a mangled success.
            _ => {
                let outcome = match response {
                    Ok(r) => r.bytes().await.map(|b| b.len()),
                    Err(e) => Err(e),
                };
                assert!(
                    outcome.is_err(),
                    "{mode}: a truncated body must not look complete: {outcome:?}"
                );
                // A second broken answer (fall 2) takes the backend out of rotation.
                let again = client
                    .post(format!("http://{listen}/"))
                    .header("host", "rpc.example.com")
                    .json(&rpc("eth_chainId", 3))
                    .send()
                    .await;
                let _ = match again {
                    Ok(r) => r.bytes().await.map(|b| b.len()),
                    Err(e) => Err(e),
                };
                let down = gw.wait_backend("execution", "broken", false).await;
                assert!(
                    down["reason"].as_str().unwrap().contains("broken response"),
                    "{down:#}"
                );
            }
        }
        if mode == "hang" {
            let down = gw.wait_backend("execution", "broken", false).await;
            assert!(
                down["reason"]
                    .as_str()
                    .unwrap()
                    .contains("response timeout"),
                "{down:#}"
            );
        }
        assert_eq!(
            who_answers(&client, listen).await.0,
            200,
            "{mode}: still serving"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_html_page_for_json_rpc_is_not_passed_off_as_an_answer() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    // Checks run once: only live traffic sees the HTML.
    let once = "    health: { interval: 1h, timeout: 1s }\n";
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        once,
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    a.set(|s| s.fail_status = Some(200));
    let client = reqwest::Client::new();
    let (status, node, body) = post(
        &client,
        &format!("http://{listen}/"),
        "rpc.example.com",
        &rpc("eth_chainId", 1),
    )
    .await;
    assert_eq!((status, node.as_deref()), (200, Some("ec-b")), "{body}");
    assert_eq!(body["result"], "0x1");
}

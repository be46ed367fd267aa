//! The attacks that once got past the gateway, each against a backend that records every byte of
//! client traffic it receives: a header that turned a JSON-RPC call into an "event stream", names
//! escaped or cut across the reads of a chunked body, a compressed WebSocket message, and a frame
//! declaring a huge length. Also: batch answers complete with notifications in them, provider keys
//! kept out of `/status`, and a probe reply without end.

mod common;

use common::recorder::{Received, Recorder};
use common::wire::{self, Framing};
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const HOST: &str = "rpc.example.com";

struct Setup {
    backend: Recorder,
    gw: Gateway,
    listen: SocketAddr,
}

async fn setup(top: &str) -> Setup {
    let backend = Recorder::start().await;
    let pools = format!(
        "  execution:\n    kind: execution\n    policy: first\n    health: {FAST_HEALTH}\n    max_batch: 3\n    backends:\n{}",
        backend.backend_yaml("ec-rec")
    );
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!("{top}{}", config(admin, listen, &pools, EC_ROUTE));
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-rec", true).await;
    Setup {
        backend,
        gw,
        listen,
    }
}

/// Every method name the backend received, from bodies and WebSocket messages.
fn methods(received: &[Received]) -> Vec<String> {
    let mut names = Vec::new();
    for r in received {
        let (Received::Body(b) | Received::Message(b)) = r else {
            continue;
        };
        let calls = match serde_json::from_slice::<Value>(b) {
            Ok(Value::Array(items)) => items,
            Ok(one) => vec![one],
            Err(_) => {
                names.push(format!("<not JSON: {}>", String::from_utf8_lossy(b)));
                continue;
            }
        };
        for call in calls {
            if let Some(object) = call.as_object() {
                for (k, v) in object {
                    if k.eq_ignore_ascii_case("method") {
                        names.push(v.as_str().unwrap_or("<not a string>").to_string());
                    }
                }
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn no_header_method_or_path_takes_a_call_past_the_method_policy() {
    let s = setup("").await;
    let call = br#"{"jsonrpc":"2.0","id":7,"method":"admin_nodeInfo","params":[]}"#;
    for (method, headers) in [
        ("POST", "accept: text/event-stream\r\n"),
        (
            "POST",
            "accept: text/event-stream\r\ncache-control: no-cache\r\n",
        ),
        // geth serves a GET with a body as JSON-RPC.
        ("GET", ""),
        ("GET", "accept: text/event-stream\r\n"),
        ("PATCH", ""),
    ] {
        let answer = wire::request(
            s.listen,
            method,
            HOST,
            headers,
            call,
            Framing::ContentLength,
        )
        .await;
        assert_eq!(wire::status(&answer), 200, "{method} {headers}: {answer}");
        let reply = wire::json_body(&answer);
        assert_eq!(reply["id"], 7, "{reply}");
        assert_eq!(
            reply["error"]["code"], -32601,
            "{method} {headers}: {reply}"
        );
    }
    // A body the policy could not read is not passed on either.
    let answer = wire::request(
        s.listen,
        "POST",
        HOST,
        "content-encoding: gzip\r\n",
        call,
        Framing::ContentLength,
    )
    .await;
    assert_eq!(wire::status(&answer), 415, "{answer}");
    assert_eq!(
        methods(&s.backend.take()),
        Vec::<String>::new(),
        "nothing reached the node"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_bodies_are_judged_whole_escapes_split_names_and_batch_limit_included() {
    let s = setup("").await;
    let padding = "x".repeat(70_000);
    let cases: Vec<(String, Framing)> = vec![
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"debug\u005fsetHead","params":["0x1"]}"#.into(),
            Framing::Chunked(&[0.5]),
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"\u006dethod":"admin_addPeer","params":[]}"#.into(),
            Framing::Chunked(&[0.3, 0.6]),
        ),
        // The name cut in two reads: `"admin_ad` + `dPeer"`.
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"admin_addPeer","params":[]}"#.into(),
            Framing::Chunked(&[0.52]),
        ),
        // Over 64 KiB, the denied name at the end, chunked and with a length.
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":4,"params":["{padding}"],"method":"personal_sign"}}"#
            ),
            Framing::Chunked(&[0.25, 0.5, 0.75]),
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":5,"params":["{padding}"],"METHOD":"miner_start"}}"#),
            Framing::ContentLength,
        ),
    ];
    for (body, framing) in &cases {
        let answer = wire::request(s.listen, "POST", HOST, "", body.as_bytes(), *framing).await;
        let reply = wire::json_body(&answer);
        assert_eq!(reply["error"]["code"], -32601, "{framing:?}: {reply}");
    }
    // max_batch (3) holds for a chunked batch too.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 4, "method": "eth_chainId"},
    ])
    .to_string();
    let answer = wire::request(
        s.listen,
        "POST",
        HOST,
        "",
        batch.as_bytes(),
        Framing::Chunked(&[0.5]),
    )
    .await;
    let reply = wire::json_body(&answer);
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 3"));
    assert_eq!(
        methods(&s.backend.take()),
        Vec::<String>::new(),
        "nothing reached the node"
    );

    // A permitted chunked body over 64 KiB arrives whole and unchanged.
    let body = format!(r#"{{"jsonrpc":"2.0","id":6,"method":"eth_call","params":["{padding}"]}}"#);
    let answer = wire::request(
        s.listen,
        "POST",
        HOST,
        "",
        body.as_bytes(),
        Framing::Chunked(&[0.3, 0.6]),
    )
    .await;
    assert_eq!(wire::json_body(&answer)["result"], "0x1");
    assert_eq!(s.backend.take(), [Received::Body(body.into_bytes())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_websocket_message_closes_the_session_and_never_reaches_the_node() {
    let s = setup("").await;
    let (mut socket, head) = wire::ws_handshake(
        s.listen,
        HOST,
        "sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "compression is not negotiated: {head}"
    );
    // The call, deflated as permessage-deflate sends it (RSV1 set, the tail 00 00 ff ff cut).
    let call = br#"{"jsonrpc":"2.0","id":1,"method":"admin_nodeInfo","params":[]}"#;
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut deflater, call).unwrap();
    let deflated = deflater.finish().unwrap();
    socket
        .write_all(&wire::client_frame(0x80 | 0x40 | 0x1, &deflated))
        .await
        .unwrap();
    let (code, _) = wire::read_until_close(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, Some(1002));
    let refused = r#"ssv_ha_refused_requests_total{reason="websocket_protocol"}"#;
    assert_eq!(
        metric(&s.gw.metrics().await, refused),
        1.0,
        "the gateway closed it"
    );
    let received = s.backend.take();
    assert!(
        received.iter().all(|r| matches!(r, Received::Upgrade(_))),
        "only the upgrade reached the node: {received:?}"
    );
    let Some(Received::Upgrade(headers)) = received.first() else {
        panic!("the upgrade reached the node: {received:?}")
    };
    assert!(
        headers.get("sec-websocket-extensions").is_none(),
        "the node was offered compression"
    );
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frame_declaring_a_huge_length_is_closed_before_it_grows_the_gateway() {
    const LIMIT: u64 = 4 * 1024 * 1024;
    let s = setup(&format!("limits: {{ max_body_bytes: {LIMIT} }}\n")).await;
    let pid = s.gw.pid();
    // Warm up: a few requests, so the baseline includes what serving costs anyway.
    let client = reqwest::Client::new();
    let url = format!("http://{}/", s.listen);
    for i in 0..20 {
        assert_eq!(
            post(&client, &url, HOST, &rpc("eth_chainId", i)).await.0,
            200
        );
    }
    let before = rss(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let attacking = Arc::new(AtomicBool::new(true));
    // Other clients are served meanwhile, and the gateway's memory is watched.
    let others = {
        let (attacking, peak) = (attacking.clone(), peak.clone());
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let mut served = 0;
            while attacking.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                let (status, _, _) = post(&client, &url, HOST, &rpc("eth_chainId", served)).await;
                assert_eq!(status, 200, "another client was refused during the attack");
                served += 1;
            }
            served
        })
    };
    let (mut socket, head) = wire::ws_handshake(s.listen, HOST, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A text frame declaring 2^40 bytes, then payload as fast as the gateway takes it.
    let mut header = vec![0x81];
    wire::client_header(&mut header, 1 << 40);
    header.extend_from_slice(&[1, 2, 3, 4]);
    socket.write_all(&header).await.unwrap();
    let payload = vec![b' '; 256 * 1024];
    let mut sent = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sent < 64 * LIMIT && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), socket.write_all(&payload)).await {
            Ok(Ok(())) => sent += payload.len() as u64,
            // Closed on us, or no longer read: either way the gateway stopped taking it.
            _ => break,
        }
    }
    let (code, _) = wire::read_until_close(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, Some(1009), "closed as too big");
    let refused = r#"ssv_ha_refused_requests_total{reason="websocket_message_too_large"}"#;
    assert_eq!(metric(&s.gw.metrics().await, refused), 1.0);
    attacking.store(false, Ordering::Relaxed);
    let served = others.await.unwrap();
    assert!(served > 0, "other clients were served");
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        growth < LIMIT,
        "the gateway grew by {growth} bytes (limit {LIMIT}) while the client sent {sent}"
    );
    assert!(
        sent < LIMIT,
        "the gateway took {sent} bytes of a frame it should have refused from its header"
    );
    assert!(
        !s.backend
            .take()
            .iter()
            .any(|r| matches!(r, Received::Message(_))),
        "no message reached the node"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_notifications_and_denied_calls_comes_back_complete_by_id() {
    let s = setup("").await;
    let batch = json!([
        {"jsonrpc": "2.0", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "method": "admin_peers"},
        {"jsonrpc": "2.0", "id": "b", "method": "debug_setHead", "params": ["0x1"]},
    ]);
    let client = reqwest::Client::new();
    let url = format!("http://{}/", s.listen);
    let (status, _, reply) = post(&client, &url, HOST, &batch).await;
    assert_eq!(status, 200);
    assert_eq!(reply.as_array().map(Vec::len), Some(1), "{reply}");
    assert_eq!(reply[0]["id"], "b");
    assert_eq!(reply[0]["error"]["code"], -32601);
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 2, "method": "admin_peers"},
    ]);
    let (_, _, reply) = post(&client, &url, HOST, &batch).await;
    let ids: Vec<&Value> = reply.as_array().unwrap().iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2)], "{reply}");
    assert_eq!(reply[0]["result"], "0x1");
    assert_eq!(
        methods(&s.backend.take()),
        ["eth_chainId", "eth_chainId", "eth_chainId"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_keys_in_backend_urls_never_show_in_status() {
    let backend = Recorder::start().await;
    let pools = format!(
        "  execution:\n    kind: execution\n    policy: first\n    health: {FAST_HEALTH}\n    backends:\n      - {{ name: provider, url: \"http://{0}/v3/KEYinPATH0123456789\", ws_url: \"ws://{0}/ws/KEYinWSPATH\" }}\n",
        backend.addr
    );
    let (gw, _) = start_on(&pools, EC_ROUTE).await;
    let entry = gw.wait_backend("execution", "provider", true).await;
    assert_eq!(entry["url"], format!("http://{}/…", backend.addr));
    assert_eq!(entry["ws_url"], format!("ws://{}/…", backend.addr));
    let status = reqwest::get(format!("http://{}/status", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page = reqwest::get(format!("http://{}/", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in ["KEYinPATH0123456789", "KEYinWSPATH"] {
        assert!(!status.contains(secret), "{secret} in /status");
        assert!(!page.contains(secret), "{secret} on the status page");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_reply_without_end_fails_the_check_at_a_bounded_cost() {
    // A node whose every answer is a JSON array that never ends.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let serving = stop.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let stop = serving.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1\r\n[\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 65536, " ".repeat(65536));
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                    if s.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let pools = format!(
        "  execution:\n    kind: execution\n    policy: first\n    health: {{ interval: 4s, timeout: 3s, rise: 1, fall: 1 }}\n    backends:\n      - {{ name: endless, url: \"http://{addr}/\" }}\n"
    );
    let (gw, _) = start_on(&pools, EC_ROUTE).await;
    let before = rss(gw.pid());
    let entry = gw.wait_backend("execution", "endless", false).await;
    let reason = entry["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("longer than 1024 KiB"), "{entry}");
    // A few more checks: the cost stays bounded, it does not add up.
    let mut peak = before;
    for _ in 0..20 {
        peak = peak.max(rss(gw.pid()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(
        peak.saturating_sub(before) < 32 * 1024 * 1024,
        "the gateway grew by {} bytes",
        peak - before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn many_large_bodies_at_once_meet_the_listener_limit_not_the_memory_limit() {
    const BODY: usize = 600 * 1024;
    // Room for two large bodies (beyond their free 64 KiB each), not three.
    let s = setup("limits: { max_body_bytes: 1048576, max_held_bytes: 1200000 }\n").await;
    let call = |id: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_call","params":["{}"]}}"#,
            "x".repeat(BODY)
        )
    };
    // Two clients send most of a large body and stop; the gateway holds what came.
    let mut holders = Vec::new();
    for id in 0..2 {
        let body = call(id);
        let mut c = tokio::net::TcpStream::connect(s.listen).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(&body.as_bytes()[..body.len() - 10])
            .await
            .unwrap();
        holders.push((c, body));
    }
    // Once the gateway has read them (it reads at its own pace)...
    let gauge = format!("ssv_ha_held_bytes{{listener=\"{}\"}}", s.listen);
    let held = 2.0 * (BODY - 10 - 64 * 1024) as f64;
    wait_for("both bodies held", Duration::from_secs(10), || async {
        (metric(&s.gw.metrics().await, &gauge) >= held).then_some(())
    })
    .await;
    // ... a third large body is refused with a clear answer...
    let refused = wait_for(
        "a refusal for the listener's limit",
        Duration::from_secs(10),
        || async {
            let answer = wire::request(
                s.listen,
                "POST",
                HOST,
                "",
                call(9).as_bytes(),
                Framing::ContentLength,
            )
            .await;
            (wire::status(&answer) == 503).then_some(answer)
        },
    )
    .await;
    assert!(refused.contains("holds its limit"), "{refused}");
    // ... while small calls go on being served.
    let client = reqwest::Client::new();
    let url = format!("http://{}/", s.listen);
    assert_eq!(
        post(&client, &url, HOST, &rpc("eth_chainId", 1)).await.0,
        200
    );
    // A WebSocket message that would take the listener over is closed with 1013.
    let (mut socket, _) = wire::ws_handshake(s.listen, HOST, "").await;
    let mut header = vec![0x81];
    wire::client_header(&mut header, BODY as u64);
    header.extend_from_slice(&[0, 0, 0, 0]);
    socket.write_all(&header).await.unwrap();
    socket.write_all(&vec![b' '; BODY / 2]).await.unwrap();
    let (code, _) = wire::read_until_close(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, Some(1013));
    // The held bodies finish and are served; their room is given back.
    for (c, body) in &mut holders {
        c.write_all(&body.as_bytes()[body.len() - 10..])
            .await
            .unwrap();
    }
    for (mut c, _) in holders {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("\"result\"") {
            let n = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::io::AsyncReadExt::read(&mut c, &mut buf),
            )
            .await
            .expect("the held body's answer")
            .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
    }
    let answer = wire::request(
        s.listen,
        "POST",
        HOST,
        "",
        call(10).as_bytes(),
        Framing::Chunked(&[0.5]),
    )
    .await;
    assert_eq!(wire::status(&answer), 200, "{answer}");
    let full = r#"ssv_ha_refused_requests_total{reason="held_bytes"}"#;
    assert!(metric(&s.gw.metrics().await, full) >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_are_not_ascii_are_judged_and_cost_no_place() {
    // Few places per client: a request that left its place taken would show at once.
    let s = setup("").await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/", s.listen);
    for i in 0..30 {
        for name in ["debugéx", "admin_é", "txpoolé_content"] {
            let (status, _, reply) = post(&client, &url, HOST, &rpc(name, i)).await;
            assert_eq!(status, 200, "{name}: {reply}");
            let denied = reply["error"]["code"] == -32601;
            assert_eq!(denied, name == "admin_é", "{name}: {reply}");
        }
    }
    assert_eq!(
        post(&client, &url, HOST, &rpc("eth_chainId", 1)).await.0,
        200
    );
    assert!(!methods(&s.backend.take()).iter().any(|m| m == "admin_é"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_millions_is_refused_without_the_gateway_growing_or_stalling() {
    let s = setup("").await;
    let pid = s.gw.pid();
    let before = rss(pid);
    // Just under 10 MiB (the body limit) of `[1,1,1,...]`: five million elements.
    let body = format!("[{}1]", "1,".repeat(5 * 1024 * 1024 - 2));
    let attack = {
        let listen = s.listen;
        tokio::spawn(async move {
            wire::request(
                listen,
                "POST",
                HOST,
                "",
                body.as_bytes(),
                Framing::ContentLength,
            )
            .await
        })
    };
    // Meanwhile another client's calls are answered promptly.
    let client = reqwest::Client::new();
    let url = format!("http://{}/", s.listen);
    let mut peak = before;
    while !attack.is_finished() {
        let started = std::time::Instant::now();
        assert_eq!(
            post(&client, &url, HOST, &rpc("eth_chainId", 1)).await.0,
            200
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a small call waited {:?} behind the batch",
            started.elapsed()
        );
        peak = peak.max(rss(pid));
    }
    let answer = attack.await.unwrap();
    let reply = wire::json_body(&answer);
    assert_eq!(reply["error"]["code"], -32600, "{answer}");
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("batch of 5242879 requests"));
    let growth = peak.max(rss(pid)).saturating_sub(before);
    assert!(
        growth < 48 * 1024 * 1024,
        "the gateway grew by {growth} bytes for a 10 MiB body"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trimmed_batch_is_answered_whole_for_a_client_that_accepts_gzip() {
    let s = setup("").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 2, "method": "admin_peers"},
    ])
    .to_string();
    let answer = wire::request(
        s.listen,
        "POST",
        HOST,
        "accept-encoding: gzip\r\n",
        batch.as_bytes(),
        Framing::ContentLength,
    )
    .await;
    let reply = wire::json_body(&answer);
    let ids: Vec<&Value> = reply.as_array().unwrap().iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2)], "{answer}");
    // The node was asked for a plain answer, which the gateway can merge.
    assert!(s.backend.take().iter().all(|r| match r {
        Received::Body(b) => !String::from_utf8_lossy(b).contains("admin"),
        _ => true,
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_drips_is_refused_at_the_body_timeout() {
    let s = setup("limits: { body_timeout: 1s }\n").await;
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#;
    let mut c = tokio::net::TcpStream::connect(s.listen).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&body[..10]).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut c, &mut answer),
    )
    .await
    .expect("answered")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(wire::status(&answer), 408, "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(s.backend.take().is_empty(), "nothing reached the node");
}

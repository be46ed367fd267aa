//! Attacks on seamless WebSocket sessions (issue 24, the second attack helper) as a hostile client
//! and as a hostile or broken node: each test either shows that an attack holds, or shows a
//! defect found (ignored while it is open, with the reason).

mod common;

use common::seamless::*;
use common::wire::{client_frame, read_until_close, ws_handshake_to};
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Times `backend` of pool `execution` was marked down, and the retries counted in all.
async fn marked_down_and_retries(gw: &Gateway, backend: &str) -> (f64, f64) {
    let metrics = gw.metrics().await;
    let down = metric(
        &metrics,
        &format!(
            r#"ssv_ha_backend_transitions_total{{backend="{backend}",pool="execution",to="down"}}"#
        ),
    );
    let retries: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ssv_ha_retries_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    (down, retries)
}

/// Health checks with time to answer on a loaded machine: these tests look at what clients and
/// nodes do to the gateway, and a probe that times out while tests run side by side would take a
/// node out on its own.
fn patient() -> String {
    format!("    health: {PATIENT_HEALTH}\n")
}

/// Holds that no node of [`Setup`] was marked down, and nothing retried.
async fn no_node_blamed(s: &Setup, what: &str) {
    // A live failure takes a node out at once; give the counters a moment all the same.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut retries = 0.0;
    for backend in ["ec-a", "ec-b"] {
        let (down, r) = marked_down_and_retries(&s.gw, backend).await;
        assert_eq!(down, 0.0, "{backend} was marked down by {what}");
        retries = r;
    }
    assert_eq!(retries, 0.0, "{what} was retried on another node");
}

/// Sends raw bytes after an upgrade and returns the socket.
async fn raw_session(s: &Setup) -> TcpStream {
    let (socket, head) = ws_handshake_to(s.listen, "/", "gateway.test", "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    socket
}

/// The server frames read from `socket` until `done` holds for them (opcode, payload), or
/// panics after 15 s.
async fn frames_until(
    socket: &mut TcpStream,
    done: impl Fn(&[(u8, Vec<u8>)]) -> bool,
) -> Vec<(u8, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(&frames) {
        while buf.len() >= 2 {
            let (len, header) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < header + len {
                break;
            }
            frames.push((buf[0] & 0x0f, buf[header..header + len].to_vec()));
            buf.drain(..header + len);
        }
        if done(&frames) {
            break;
        }
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout_at(deadline, socket.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => panic!("the connection ended; frames: {frames:?}"),
            Err(_) => panic!("not done within 15 s; frames: {frames:?}"),
        }
    }
    frames
}

/// An upgrade whose request target is not a path (`*`, as `OPTIONS *` has it): the gateway's
/// own upgrade request to the node cannot be made of it. That is the client's request, not the
/// node's failure: no node may be marked down for it, nor the upgrade tried on the others.
#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_to_a_target_that_is_no_path_takes_no_node_out() {
    let s = setup(&patient()).await;
    for target in ["*", "*", "*"] {
        let mut socket = TcpStream::connect(s.listen).await.unwrap();
        let head = format!(
            "GET {target} HTTP/1.1\r\nhost: gateway.test\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
            .await
            .expect("an answer")
            .unwrap_or(0);
        eprintln!(
            "{target}: {}",
            String::from_utf8_lossy(&answer[..n])
                .lines()
                .next()
                .unwrap_or("(closed)")
        );
    }
    no_node_blamed(&s, "an upgrade to `*`").await;
}

/// A message split into thousands of one-byte frames, with a ping between every few: each ping
/// is answered at once, the message reaches the node whole, and its answer comes back.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_in_one_byte_frames_with_pings_between_is_answered() {
    let s = setup(&patient()).await;
    let mut socket = raw_session(&s).await;
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":"frag","method":"eth_chainId","params":[],"pad":"{}"}}"#,
        "x".repeat(4000)
    );
    let bytes = call.as_bytes();
    let mut out = Vec::new();
    let mut pings = 0;
    for (i, byte) in bytes.iter().enumerate() {
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        let fin = if i + 1 == bytes.len() { 0x80 } else { 0 };
        out.extend(client_frame(fin | opcode, std::slice::from_ref(byte)));
        if i % 100 == 50 {
            out.extend(client_frame(0x89, format!("p{i}").as_bytes()));
            pings += 1;
        }
    }
    socket.write_all(&out).await.unwrap();
    let frames = frames_until(&mut socket, |f| f.iter().any(|(op, _)| *op == 1)).await;
    let pongs = frames.iter().filter(|(op, _)| *op == 0xA).count();
    assert_eq!(
        pongs, pings,
        "every ping answered before the message's answer"
    );
    let answer: Value = serde_json::from_slice(&frames.last().unwrap().1).unwrap();
    assert_eq!(answer["id"], "frag");
    assert_eq!(answer["result"], "0x1", "{answer}");
}

/// A client's close frame with a code no endpoint may send (1005, 1006 and 1015 are for APIs
/// only; below 1000 is unused) or a one-byte payload is a protocol error: the gateway does not
/// echo the bad code back as its own close.
#[tokio::test(flavor = "multi_thread")]
async fn a_close_with_a_code_no_one_may_send_is_not_echoed() {
    let s = setup(&patient()).await;
    for payload in [
        1005u16.to_be_bytes().to_vec(),
        1006u16.to_be_bytes().to_vec(),
        999u16.to_be_bytes().to_vec(),
        vec![0x03],
    ] {
        let mut socket = raw_session(&s).await;
        socket
            .write_all(&client_frame(0x88, &payload))
            .await
            .unwrap();
        let (code, _) = read_until_close(&mut socket, Duration::from_secs(10)).await;
        assert!(
            matches!(code, Some(1000..=1003 | 1007..=1014 | 3000..=4999) | None),
            "the close {payload:?} was answered with code {code:?}"
        );
    }
}

/// A client that asks for `permessage-deflate` gets a 101 without it, and a compressed frame
/// (RSV1 set) then closes the session with 1002; nothing is forwarded, no node is blamed.
#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_frame_closes_the_session_unforwarded() {
    let s = setup(&patient()).await;
    let (mut socket, head) = ws_handshake_to(
        s.listen,
        "/",
        "gateway.test",
        "sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
    let before = s.a.client_requests() + s.b.client_requests();
    // `{"id":1,"method":"admin_peers"}`, as a deflated message would carry it.
    socket
        .write_all(&client_frame(
            0xC1,
            br#"{"jsonrpc":"2.0","id":1,"method":"admin_peers"}"#,
        ))
        .await
        .unwrap();
    let (code, _) = read_until_close(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, Some(1002));
    assert_eq!(s.a.client_requests() + s.b.client_requests(), before);
    no_node_blamed(&s, "a compressed frame").await;
}

/// Requests with ids of every JSON type get their answer under the same id, byte for byte;
/// ids that JSON-RPC does not allow (objects, arrays) get the gateway's error under `null`.
#[tokio::test(flavor = "multi_thread")]
async fn ids_of_every_type_come_back_as_sent() {
    let s = setup(&patient()).await;
    let mut ws = s.connect().await;
    let big = format!("\"{}\"", "i".repeat(300_000));
    for id in [
        "0",
        "-1",
        "1.50",
        "1e400",
        "true",
        "false",
        "null",
        "\"\"",
        "\"\\u0041\"",
        "18446744073709551616",
        &big,
    ] {
        let request = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId"}}"#);
        ws.send(Message::Text(request.into())).await.unwrap();
        let answer = loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an answer")
                .unwrap()
                .unwrap()
            {
                Message::Text(t) => break t.to_string(),
                _ => continue,
            }
        };
        let expected = format!(r#""id":{id}"#);
        assert!(
            answer.contains(&expected),
            "id {}: {}",
            &id[..id.len().min(20)],
            &answer[..answer.len().min(200)]
        );
    }
}

/// A node (the hostile end of [`hostile_node`]) that answers `answer` for each request it reads.
type Answerer = fn(&Value) -> Vec<String>;

/// A WebSocket node on `127.0.0.1:0`: every connection is answered by `answer` (each text it
/// returns goes out as one message).
async fn hostile_node(answer: Answerer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(request) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    for out in answer(&request) {
                        if ws.send(Message::Text(out.into())).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A node that answers every request twice (a retransmission, a bug): the second answer is
/// under an id of the gateway's that no request of the client's holds any more. It must not
/// reach the client, where the gateway's number could be the id of another of its requests.
#[tokio::test(flavor = "multi_thread")]
async fn a_nodes_answer_under_an_id_the_gateway_did_not_send_is_not_passed_on() {
    let node = hostile_node(|request| {
        let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":"0x1"}).to_string();
        let stray = json!({"jsonrpc":"2.0","id":7,"result":"0xbad"}).to_string();
        vec![answer.clone(), answer, stray]
    })
    .await;
    let s = setup_with_ws_url(node, &patient()).await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    for id in 1..=3u64 {
        let answer = call(&mut ws, &mut got, id + 100, "eth_chainId", json!([])).await;
        assert_eq!(answer["result"], "0x1");
    }
    // A last call, then everything that came.
    let _ = call(&mut ws, &mut got, 200, "eth_chainId", json!([])).await;
    let stray: Vec<&Value> = got.answers.iter().collect();
    assert!(
        stray.is_empty(),
        "answers the client never asked for reached it: {stray:?}"
    );
}

/// A node that routes subscriptions as geth does (`rpc/handler.go`): any method ending in
/// `_subscribe` creates a subscription of the namespace before its first `_` (so
/// `eth_x_subscribe` is `eth_subscribe`), and any method ending in `_unsubscribe` ends the
/// subscription its first parameter names. Returns its address and the most subscriptions one
/// connection held at once.
async fn geth_routing_node() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let most = Arc::new(AtomicUsize::new(0));
    let held = most.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let most = held.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let mut subs: Vec<String> = Vec::new();
                let mut made = 0u64;
                while let Some(Ok(Message::Text(text))) = ws.next().await {
                    let Ok(request) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    let method = request["method"].as_str().unwrap_or_default();
                    let result = if method.ends_with("_subscribe")
                        && method.split('_').next() == Some("eth")
                    {
                        made += 1;
                        let id = format!("0x{made:x}");
                        subs.push(id.clone());
                        most.fetch_max(subs.len(), Ordering::SeqCst);
                        json!(id)
                    } else if method.ends_with("_unsubscribe") {
                        let before = subs.len();
                        subs.retain(|s| Some(s.as_str()) != request["params"][0].as_str());
                        json!(subs.len() < before)
                    } else if method.ends_with("_subscribe") {
                        json!(null)
                    } else {
                        json!("0x1")
                    };
                    let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":result});
                    if ws
                        .send(Message::Text(answer.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, most)
}

/// geth takes any method that ends in `_subscribe` for a subscription of its namespace: past
/// the session's 64 subscriptions, `eth_x_subscribe` (or `eth_get_subscribe`, ...) must not
/// make the node hold more, whatever its spelling.
#[tokio::test(flavor = "multi_thread")]
async fn the_subscription_cap_holds_in_every_spelling_geth_takes() {
    use std::sync::atomic::Ordering;
    let (node, most) = geth_routing_node().await;
    let s = setup_with_ws_url(node, &patient()).await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    for id in 0..64u64 {
        let answer = call(&mut ws, &mut got, id, "eth_subscribe", json!(["newHeads"])).await;
        assert!(answer["result"].is_string(), "{answer}");
    }
    for (i, spelling) in [
        "eth_x_subscribe",
        "eth_get_subscribe",
        "eth__subscribe",
        "eth_eth_subscribe",
    ]
    .iter()
    .enumerate()
    {
        let answer = call(
            &mut ws,
            &mut got,
            100 + i as u64,
            spelling,
            json!(["newHeads"]),
        )
        .await;
        eprintln!("{spelling}: {answer}");
    }
    assert!(
        most.load(Ordering::SeqCst) <= 64,
        "the node held {} subscriptions for one session",
        most.load(Ordering::SeqCst)
    );
}

/// Many upgrades at once from clients that go away before the 101 (the connection dropped right
/// after the request), ask for `100-continue`, or send a body with the upgrade: no node is
/// marked down or retried for any of it, every session counted open is counted closed again,
/// and a well-behaved client is served after.
#[tokio::test(flavor = "multi_thread")]
async fn upgrades_that_vanish_or_carry_odd_headers_blame_no_node_and_leave_no_session() {
    let s = setup(&patient()).await;
    let upgrade = |extra: &str, body: &str| {
        format!(
            "GET / HTTP/1.1\r\nhost: gateway.test\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n{extra}\r\n{body}"
        )
    };
    let mut tasks = Vec::new();
    for i in 0..90 {
        let request = match i % 3 {
            0 => upgrade("", ""),
            1 => upgrade("expect: 100-continue\r\n", ""),
            _ => upgrade("content-length: 5\r\n", "hello"),
        };
        let listen = s.listen;
        tasks.push(tokio::spawn(async move {
            let mut socket = TcpStream::connect(listen).await.unwrap();
            socket.write_all(request.as_bytes()).await.unwrap();
            if i % 3 == 0 {
                // Gone at once, before the gateway answers.
                drop(socket);
                return;
            }
            let mut answer = vec![0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer)).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    no_node_blamed(&s, "upgrades that vanished or had odd headers").await;
    for backend in ["ec-a", "ec-b"] {
        let series = open_series(backend);
        wait_for(
            &format!("no session open on {backend}"),
            Duration::from_secs(15),
            || async { (metric(&s.gw.metrics().await, &series) == 0.0).then_some(()) },
        )
        .await;
    }
    let mut ws = s.connect().await;
    let mut got = Received::default();
    let answer = call(&mut ws, &mut got, 1, "eth_chainId", json!([])).await;
    assert_eq!(answer["result"], "0x1");
}

/// A node that, with each answer, sends notifications for a subscription it never gave the
/// session, then one notification over the gateway's 16 MiB message limit: the client sees none
/// of them, stays connected (its session moves to the other node), the gateway does not hold the
/// oversized one, and no node is marked down.
#[tokio::test(flavor = "multi_thread")]
async fn foreign_and_oversized_notifications_reach_no_client_and_blame_no_node() {
    let node = hostile_node(|request| {
        let foreign = json!({"jsonrpc":"2.0","method":"eth_subscription",
            "params":{"subscription":"0xdead","result":{"number":"0x1","hash":"0x01"}}})
        .to_string();
        let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":"0x1"}).to_string();
        if request["method"] == "eth_blockNumber" {
            let huge = format!(
                r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"0xdead","result":"{}"}}}}"#,
                "f".repeat(17 << 20)
            );
            return vec![foreign, huge, answer];
        }
        vec![foreign.clone(), answer, foreign]
    })
    .await;
    let s = setup_with_ws_url(node, &patient()).await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    for id in 1..=3 {
        let answer = call(&mut ws, &mut got, id, "eth_chainId", json!([])).await;
        assert_eq!(answer["result"], "0x1");
    }
    // The oversized notification: the session leaves ec-a for ec-b, and the call is answered
    // there or with the gateway's error, under its id. Its 17 MiB are read and dropped, never
    // held: the gateway grows by less than one message the size of the limit.
    let rss = || common::chaos::process_stats(s.gw.pid()).1 * 1024;
    let before = rss();
    ws.send(Message::Text(
        json!({"jsonrpc":"2.0","id":9,"method":"eth_blockNumber"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    read_until(&mut ws, &mut got, "the answer to 9", |g| {
        g.answers.iter().any(|a| a["id"] == 9)
    })
    .await;
    open_on(&s.gw, "ec-b").await;
    let grown = rss().saturating_sub(before);
    eprintln!("grown by {} KiB", grown >> 10);
    assert!(
        grown < 16 << 20,
        "the gateway grew by {} MiB reading a notification over the limit",
        grown >> 20
    );
    let answer = call(&mut ws, &mut got, 10, "eth_chainId", json!([])).await;
    assert_eq!(answer["result"], "0x1", "served on ec-b");
    assert!(got.heads.is_empty() && got.ids.is_empty(), "{got:?}");
    no_node_blamed(&s, "a node's foreign and oversized notifications").await;
}

//! The method policy held against a full parse, on every path a body can take: generated and
//! mutated JSON-RPC bodies (single calls, batches with notifications, escaped keys and names,
//! duplicate keys, case tricks, bodies over 64 KiB), sent with a Content-Length, chunked and cut
//! across reads, under any HTTP method and `Accept` header, and as WebSocket messages in one
//! frame, in fragments with pings between them, as text or binary, and compressed. A recording backend keeps every
//! byte it receives; the oracle parses each in full with serde_json, every key seen (duplicates
//! too), and the test asserts that
//! - every body and message the backend received names only permitted methods;
//! - every request that is wholly permitted arrived unchanged, byte for byte;
//! - a compressed message closes its session (1002) and reaches nothing.
//!
//! The generator is seeded and the count bounded, so the run is the same every time and quick.

mod common;

use common::recorder::{Received, Recorder};
use common::wire::{self, Framing};
use common::*;
use futures::{SinkExt, StreamExt};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

const HOST: &str = "rpc.example.com";
const MAX_BATCH: usize = 4;
const HTTP_CASES: usize = 260;
const WS_CASES: usize = 200;

/// A JSON value as a full parse sees it, objects with every key in order (duplicates kept).
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    String(String),
    Other,
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    entries.push((k, v));
                }
                Ok(Json::Object(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Json>()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_string()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The oracle's own reading of the pool's policy (written apart from the gateway's matcher):
/// the default prefixes and the configured name, in any ASCII case.
fn permits(method: &str) -> bool {
    let lower = method.to_ascii_lowercase();
    let denied_prefix = [
        "admin_",
        "debug_",
        "personal_",
        "miner_",
        "engine_",
        "txpool_",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
    !denied_prefix && lower != "eth_sendrawtransaction"
}

/// The oracle: `body` is valid JSON, a request object or a non-empty batch of them (of at most
/// `max_batch`), and every key that spells `method` in any case holds a permitted name.
fn permitted(body: &[u8], max_batch: usize) -> bool {
    let call = |j: &Json| match j {
        Json::Object(entries) => entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("method"))
            .all(|(_, v)| matches!(v, Json::String(m) if permits(m))),
        _ => false,
    };
    // The issue's own oracle first: serde_json's Value parses it.
    if serde_json::from_slice::<serde_json::Value>(body).is_err() {
        return false;
    }
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Array(items)) => {
            !items.is_empty() && items.len() <= max_batch && items.iter().all(call)
        }
        Ok(single @ Json::Object(_)) => call(&single),
        _ => false,
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const PERMITTED: [&str; 6] = [
    "eth_call",
    "eth_chainId",
    "eth_getLogs",
    "net_version",
    "web3_clientVersion",
    "eth_subscribe",
];
/// Names that are not ASCII where a matcher cuts them (a prefix boundary inside a character).
const NOT_ASCII: [&str; 4] = ["debugéx", "admin_é", "é_admin_peers", "txpoolé_content"];
const DENIED: [&str; 8] = [
    "admin_peers",
    "debug_setHead",
    "personal_unlockAccount",
    "miner_start",
    "txpool_content",
    "engine_newPayloadV3",
    "eth_sendRawTransaction",
    "ADMIN_nodeInfo",
];
const KEYS: [&str; 6] = [
    "method",
    "METHOD",
    "Method",
    r"\u006dethod",
    r"m\u0065thod",
    r"\u006D\u0045THOD",
];

/// A method name as JSON string content, one character sometimes written as an escape.
fn name(rng: &mut Rng) -> String {
    let name = match rng.below(10) {
        0..=4 => rng.pick(&PERMITTED),
        5 => rng.pick(&NOT_ASCII),
        _ => rng.pick(&DENIED),
    };
    if !rng.chance(30) {
        return name.to_string();
    }
    // One character, escaped as JSON allows (`\u00e9` for `é`).
    let chars: Vec<char> = name.chars().collect();
    let at = rng.below(chars.len());
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == at {
                format!("\\u{:04x}", *c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn ws(rng: &mut Rng) -> &'static str {
    ["", " ", "\n", "\t ", ""][rng.below(5)]
}

/// One request object as JSON text.
fn call(rng: &mut Rng, id: Option<usize>, padding: usize) -> String {
    let key = if rng.chance(70) {
        "method"
    } else {
        rng.pick(&KEYS)
    };
    let mut fields = vec![
        format!("\"jsonrpc\":\"2.0\""),
        format!("\"{key}\"{}:{}\"{}\"", ws(rng), ws(rng), name(rng)),
        format!("\"params\":[\"{}\"]", "x".repeat(padding)),
    ];
    if let Some(id) = id {
        fields.push(format!("\"id\":{id}"));
    }
    if rng.chance(15) {
        // A duplicate method key, the other one first or last.
        fields.push(format!("\"{}\":\"{}\"", rng.pick(&KEYS), name(rng)));
    }
    if rng.chance(10) {
        // A method-looking string where it is not a key.
        fields.push("\"note\":\"\\\"method\\\":\\\"admin_peers\\\"\"".to_string());
    }
    for i in (1..fields.len()).rev() {
        let j = rng.below(i + 1);
        fields.swap(i, j);
    }
    format!("{{{}{}}}", ws(rng), fields.join(","))
}

/// A request body: a call or a batch, sometimes over 64 KiB, sometimes mutated.
fn body(rng: &mut Rng, case: usize) -> Vec<u8> {
    let padding = if rng.chance(8) { 70_000 } else { rng.below(40) };
    let text = if rng.chance(55) {
        let id = (!rng.chance(10)).then_some(case);
        call(rng, id, padding)
    } else {
        let n = 1 + rng.below(MAX_BATCH + 2);
        let calls: Vec<String> = (0..n)
            .map(|i| {
                let id = (!rng.chance(20)).then_some(case * 10 + i);
                call(rng, id, padding / n)
            })
            .collect();
        format!("[{}]", calls.join(","))
    };
    let mut bytes = text.into_bytes();
    if rng.chance(12) {
        // A mutation: a flipped, inserted or removed byte, or a cut.
        let at = rng.below(bytes.len());
        match rng.below(4) {
            0 => bytes[at] = b"{}[]\":,\\"[rng.below(8)],
            1 => bytes.insert(at, b"{}[]\":,\\"[rng.below(8)]),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

async fn start() -> (Recorder, Gateway, SocketAddr) {
    let backend = Recorder::start().await;
    // The answer cache is off: every permitted body must reach the backend, repeated ones too.
    let pools = format!(
        "  execution:\n    kind: execution\n    policy: first\n    health: {FAST_HEALTH}\n    methods: {{ deny: [eth_sendRawTransaction] }}\n    max_batch: {MAX_BATCH}\n    cache: off\n    backends:\n{}",
        backend.backend_yaml("ec-rec")
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-rec", true).await;
    (backend, gw, listen)
}

fn bodies(received: Vec<Received>) -> Vec<Vec<u8>> {
    received
        .into_iter()
        .filter_map(|r| match r {
            Received::Body(b) | Received::Message(b) => Some(b),
            Received::Upgrade(_) => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_every_forwarded_body_passes_a_full_parse_and_permitted_ones_arrive_unchanged() {
    let (backend, _gw, listen) = start().await;
    let mut rng = Rng(0x5eed_0013);
    let (mut forwarded_whole, mut refused) = (0, 0);
    for case in 0..HTTP_CASES {
        let body = body(&mut rng, case);
        let framing = match rng.below(4) {
            0 => Framing::ContentLength,
            1 => Framing::Chunked(&[0.5]),
            2 => Framing::Chunked(&[0.1, 0.37, 0.71]),
            _ => Framing::Chunked(&[0.02, 0.5, 0.98]),
        };
        let method = ["POST", "POST", "POST", "GET", "PUT"][rng.below(5)];
        let accept = if rng.chance(20) {
            "accept: text/event-stream\r\n"
        } else {
            ""
        };
        let answer = wire::request(listen, method, HOST, accept, &body, framing).await;
        assert_eq!(wire::status(&answer), 200, "case {case}: {answer}");
        // Every call that expects an answer got one, with its id, whatever became of the others
        // (forwarded, denied, or a notification beside them).
        let reply = wire::json_body(&answer);
        let answered: Vec<&Value> = match &reply {
            Value::Array(items) => items.iter().map(|a| &a["id"]).collect(),
            one => vec![&one["id"]],
        };
        for id in expected_ids(&body) {
            assert!(
                answered.contains(&&id),
                "case {case}: no answer for id {id}:\nsent   {}\nanswer {reply}",
                String::from_utf8_lossy(&body)
            );
        }
        let received = bodies(backend.take());
        for got in &received {
            assert!(
                permitted(got, MAX_BATCH),
                "case {case} ({method}, {framing:?}): the backend received a body a full parse refuses:\nsent     {}\nreceived {}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(got)
            );
        }
        if permitted(&body, MAX_BATCH) {
            assert_eq!(
                received,
                std::slice::from_ref(&body),
                "case {case} ({method}, {framing:?}): a permitted body did not arrive unchanged: {}",
                String::from_utf8_lossy(&body)
            );
            forwarded_whole += 1;
        } else if received.is_empty() {
            refused += 1;
        }
    }
    // The generator reached both sides of the policy.
    assert!(
        forwarded_whole > HTTP_CASES / 5,
        "{forwarded_whole} forwarded whole"
    );
    assert!(refused > HTTP_CASES / 5, "{refused} refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_websocket_every_forwarded_message_passes_a_full_parse_whatever_its_framing() {
    let (backend, _gw, listen) = start().await;
    let mut request = format!("ws://{listen}/").into_client_request().unwrap();
    request.headers_mut().insert("host", HOST.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request.clone())
        .await
        .unwrap();
    let mut rng = Rng(0x5eed_0014);
    let (mut forwarded_whole, mut compressed) = (0, 0);
    for case in 0..WS_CASES {
        let body = body(&mut rng, case);
        // Nodes read JSON-RPC from binary messages too.
        let opcode = if rng.chance(25) {
            Data::Binary
        } else {
            Data::Text
        };
        match rng.below(8) {
            // Compressed (RSV1 set, as permessage-deflate marks it): the session ends, 1002.
            0 => {
                let mut frame = Frame::message(body.clone(), OpCode::Data(Data::Text), true);
                frame.header_mut().rsv1 = true;
                socket.send(Message::Frame(frame)).await.unwrap();
                let code = loop {
                    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                        Ok(Some(Ok(Message::Close(close)))) => {
                            break close.map(|c| u16::from(c.code))
                        }
                        Ok(Some(Ok(_))) => continue,
                        other => panic!("case {case}: no close frame: {other:?}"),
                    }
                };
                assert_eq!(code, Some(1002), "case {case}");
                assert!(
                    bodies(backend.take()).is_empty(),
                    "case {case}: a compressed message reached the backend"
                );
                compressed += 1;
                socket = tokio_tungstenite::connect_async(request.clone())
                    .await
                    .unwrap()
                    .0;
                continue;
            }
            // In fragments, a ping between them.
            1..=3 => {
                let cut = rng.below(body.len() + 1);
                let first = Frame::message(body[..cut].to_vec(), OpCode::Data(opcode), false);
                let rest = Frame::message(body[cut..].to_vec(), OpCode::Data(Data::Continue), true);
                socket.send(Message::Frame(first)).await.unwrap();
                socket
                    .send(Message::Ping(b"between".to_vec().into()))
                    .await
                    .unwrap();
                socket.send(Message::Frame(rest)).await.unwrap();
            }
            _ => {
                // Raw frames: a mutated body need not be valid UTF-8.
                let frame = Frame::message(body.clone(), OpCode::Data(opcode), true);
                socket.send(Message::Frame(frame)).await.unwrap();
            }
        }
        // A sentinel call: once its answer is back, the backend has had everything before it.
        let sentinel =
            format!(r#"{{"jsonrpc":"2.0","id":"sentinel-{case}","method":"eth_chainId"}}"#);
        socket
            .send(Message::Text(sentinel.clone().into()))
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains(&format!("sentinel-{case}")) => break,
                Ok(Some(Ok(_))) => continue,
                other => panic!(
                    "case {case}: the session ended: {other:?} after {}",
                    String::from_utf8_lossy(&body)
                ),
            }
        }
        let mut received = bodies(backend.take());
        assert_eq!(
            received.pop().as_deref(),
            Some(sentinel.as_bytes()),
            "case {case}"
        );
        for got in &received {
            assert!(
                permitted_message(got),
                "case {case}: the backend received a message a full parse refuses:\nsent     {}\nreceived {}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(got)
            );
        }
        if permitted(&body, MAX_BATCH) {
            assert_eq!(
                received,
                std::slice::from_ref(&body),
                "case {case}: a permitted message was changed"
            );
            forwarded_whole += 1;
        }
    }
    assert!(
        forwarded_whole > WS_CASES / 5,
        "{forwarded_whole} forwarded whole"
    );
    assert!(compressed > 5, "{compressed} compressed");
}

/// The ids of the calls in `body` that expect an answer (none when the body is not JSON, or a
/// batch the gateway refuses whole).
fn expected_ids(body: &[u8]) -> Vec<Value> {
    let id = |call: &Value| call.as_object().and_then(|o| o.get("id")).cloned();
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_BATCH => {
            items.iter().filter_map(id).collect()
        }
        Ok(call @ Value::Object(_)) => id(&call).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Over WebSocket a denied call is replaced by the gateway's placeholder call (the backend
/// answers it with an error, keeping the order); the placeholder is the one name allowed beyond
/// the policy.
fn permitted_message(message: &[u8]) -> bool {
    let placeholder = ssv_ha::session::relay::DENIED_PLACEHOLDER;
    let text = String::from_utf8_lossy(message).replace(placeholder, "eth_chainId");
    permitted(text.as_bytes(), MAX_BATCH)
}

//! Chaos under seamless sessions: 20 WebSocket sessions (each subscribed to `newHeads` and
//! `logs`, with calls of their own) and 20 event streams through the gateway, while the nodes
//! behind them are killed, frozen, made to lag and brought back (so that sessions also fail
//! back), one at a time and at random (seeded: `SSV_HA_CHAOS_SEED` replays a run), for about
//! 40 s. Every session either stays open with its invariant holding, or closes with a code that
//! `docs/failover.md` documents (a WebSocket client whose session closed by the move limit opens
//! another, so that sessions live through all of the chaos). At the end the gateway's
//! descriptors and memory are back near where they started.
//!
//! The invariant, on one chain shared by every node (no reorg here; the reorg cases are the
//! property test's and `seamless_websocket.rs`'s): heads strictly increasing and contiguous;
//! every log of every block within the heads' window present exactly once; slots of an event
//! stream strictly increasing.

mod common;

use common::chaos::{process_stats, Rng};
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const SESSIONS: usize = 20;
const NODES: usize = 3;
/// Logs the simulated node writes in every block.
const LOGS_PER_BLOCK: u64 = 2;
/// Close codes a moving WebSocket session may end with (`docs/failover.md`, "WebSocket sessions"):
/// going away (idle), internal error (cannot be carried), service restart (no backend).
const DOCUMENTED_CLOSES: [u16; 3] = [1001, 1011, 1012];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Killed,
    Frozen,
    Lagging,
}

/// What one node of each pool is made to do. A frozen node answers nothing in time and reads
/// nothing of its WebSockets (its TCP window closes); a frozen or lagging node makes no new heads
/// (it catches up when restored).
fn apply(node: &SimNode, fault: Fault) {
    match fault {
        Fault::Killed => node.go_down(),
        Fault::Frozen => node.set(|s| {
            s.delay_ms = 3_000;
            s.ws_answer_delay_ms = 3_000;
            s.ws_frozen = true;
        }),
        Fault::Lagging => {}
    }
}

fn restore(node: &SimNode, fault: Fault) {
    match fault {
        Fault::Killed => node.come_back().expect("the node listens again"),
        Fault::Frozen => node.set(|s| {
            s.delay_ms = 0;
            s.ws_answer_delay_ms = 0;
            s.ws_frozen = false;
        }),
        Fault::Lagging => {}
    }
}

fn number(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0)
}

/// What a WebSocket client received, and how its session ended.
#[derive(Debug, Default)]
struct WsRecord {
    heads: Vec<u64>,
    /// Net count per (block, log index): +1 delivered, -1 taken back.
    logs: BTreeMap<(u64, u64), i64>,
    /// Answers to the client's own calls that were neither a result nor the documented error.
    bad_answers: Vec<Value>,
    answers: u64,
    closed: Option<Option<u16>>,
    /// The close frame's reason, if the gateway closed the session.
    reason: String,
}

impl WsRecord {
    /// The invariant over what was received (the whole session, or until it closed).
    fn check(&self) -> Result<(), String> {
        for pair in self.heads.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(format!(
                    "heads not contiguous: {} then {}",
                    pair[0], pair[1]
                ));
            }
        }
        if let (Some(first), Some(last)) = (self.heads.first(), self.heads.last()) {
            // Blocks after the first head and before the last: their logs are all there, once.
            for block in first + 1..*last {
                for index in 0..LOGS_PER_BLOCK {
                    let count = self.logs.get(&(block, index)).copied().unwrap_or(0);
                    if count != 1 {
                        return Err(format!(
                            "log {index} of block {block} present {count} times"
                        ));
                    }
                }
            }
        }
        if let Some((key, count)) = self.logs.iter().find(|(_, c)| !(0..=1).contains(*c)) {
            return Err(format!("log {key:?} present {count} times"));
        }
        if let Some(bad) = self.bad_answers.first() {
            return Err(format!("a call was answered wrongly: {bad}"));
        }
        match self.closed {
            None => Ok(()),
            Some(Some(code)) if DOCUMENTED_CLOSES.contains(&code) => Ok(()),
            Some(other) => Err(format!("closed with {other:?}")),
        }
    }
}

impl WsRecord {
    /// Closed by the move limit (1011, with its reason): documented, and this chaos's pace of a
    /// fault every few seconds reaches it.
    fn by_move_limit(&self) -> bool {
        self.closed == Some(Some(1011)) && self.reason.contains("times within")
    }
}

/// One WebSocket client for the whole run: a session closed by the move limit is opened again at
/// once (as a client would), so that sessions live through all of the chaos, not only until
/// they reach the limit; one record per session.
async fn ws_client(listen: SocketAddr, stop: Arc<AtomicBool>) -> Vec<WsRecord> {
    let mut sessions = Vec::new();
    loop {
        let record = ws_session(listen, stop.clone()).await;
        let again = record.by_move_limit() && !stop.load(Ordering::Relaxed);
        sessions.push(record);
        if !again {
            return sessions;
        }
    }
}

/// One WebSocket session: subscribes to heads and logs, calls `eth_blockNumber` now and then,
/// records everything until `stop` or its close.
async fn ws_session(listen: SocketAddr, stop: Arc<AtomicBool>) -> WsRecord {
    let mut record = WsRecord::default();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{listen}/"))
        .await
        .expect("a WebSocket through the gateway");
    for (id, params) in [(1, json!(["newHeads"])), (2, json!(["logs", {}]))] {
        let request = json!({"jsonrpc":"2.0","id":id,"method":"eth_subscribe","params":params});
        ws.send(Message::Text(request.to_string().into()))
            .await
            .expect("subscribe");
    }
    let mut next_id = 100;
    let mut tick = tokio::time::interval(Duration::from_millis(400));
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                next_id += 1;
                let call = json!({"jsonrpc":"2.0","id":next_id,"method":"eth_blockNumber","params":[]});
                if ws.send(Message::Text(call.to_string().into())).await.is_err() {
                    record.closed.get_or_insert(None);
                    break;
                }
            }
            message = ws.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        record.reason = frame.as_ref().map(|f| f.reason.to_string()).unwrap_or_default();
                        record.closed = Some(frame.map(|f| u16::from(f.code)));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    None | Some(Err(_)) => {
                        record.closed.get_or_insert(None);
                        break;
                    }
                };
                let Ok(message) = serde_json::from_str::<Value>(&text) else {
                    record.bad_answers.push(json!({"not JSON": text.to_string()}));
                    continue;
                };
                if message["method"] == "eth_subscription" {
                    let result = &message["params"]["result"];
                    if result.get("logIndex").is_some() {
                        let key = (number(&result["blockNumber"]), number(&result["logIndex"]));
                        let removed = result["removed"].as_bool().unwrap_or(false);
                        *record.logs.entry(key).or_default() += if removed { -1 } else { 1 };
                    } else {
                        record.heads.push(number(&result["number"]));
                    }
                } else {
                    record.answers += 1;
                    // Subscriptions answer with an id string; calls with a head, or the
                    // documented "not sent again" error of a move.
                    let fine = message["result"].is_string()
                        || message["error"]["code"] == -32003;
                    if !fine {
                        record.bad_answers.push(message);
                    }
                }
            }
        }
    }
    if record.closed.is_none() {
        let _ = ws.close(None).await;
    }
    record
}

/// What an event-stream client received: the slots of `head` events, and whether it ended.
#[derive(Debug, Default)]
struct SseRecord {
    slots: Vec<u64>,
    ended: bool,
}

async fn sse_client(listen: SocketAddr, stop: Arc<AtomicBool>) -> SseRecord {
    let mut record = SseRecord::default();
    let mut response = reqwest::Client::new()
        .get(format!("http://{listen}/eth/v1/events?topics=head"))
        .send()
        .await
        .expect("an event stream through the gateway");
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {}
            chunk = response.chunk() => {
                let Ok(Some(chunk)) = chunk else {
                    record.ended = true;
                    break;
                };
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let event: String = text.drain(..end + 2).collect();
                    let slot = event
                        .lines()
                        .find_map(|l| l.strip_prefix("data:"))
                        .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
                        .and_then(|d| d["slot"].as_str().and_then(|s| s.parse().ok()));
                    if let Some(slot) = slot {
                        record.slots.push(slot);
                    }
                }
            }
        }
    }
    record
}

/// Heads on every node that is not frozen or lagging; a node back from either catches up.
fn advance(nodes: &[Arc<SimNode>], faults: &[Option<Fault>], top: u64) {
    for (node, fault) in nodes.iter().zip(faults) {
        if matches!(fault, Some(Fault::Frozen | Fault::Lagging)) {
            continue;
        }
        while node.status().head < top {
            node.new_head();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seamless_sessions_hold_their_invariant_through_kills_freezes_lags_and_fail_backs() {
    let mut rng = Rng::seeded(0x5eed_5ea1);
    let pki = Pki::new();
    let mut ec = Vec::new();
    let mut cc = Vec::new();
    for i in 0..NODES {
        let status = NodeStatus::default();
        ec.push(Arc::new(
            pki.node(NodeKind::Execution, &format!("ec-{i}"), status.clone())
                .await,
        ));
        cc.push(Arc::new(
            pki.node(NodeKind::Consensus, &format!("cc-{i}"), status)
                .await,
        ));
    }
    let ec_refs: Vec<(&SimNode, bool)> = ec.iter().map(|n| (n.as_ref(), false)).collect();
    let cc_refs: Vec<(&SimNode, bool)> = cc.iter().map(|n| (n.as_ref(), false)).collect();
    // Health judged every 500 ms, a node down after two misses: forty sessions and six
    // nodes share this machine's cores with the gateway, and a frozen node answers in 3 s.
    let seamless = "    sessions: seamless\n    failback_delay: 500ms\n    health: { interval: 500ms, timeout: 450ms, rise: 1, fall: 2 }\n";
    let pools = format!(
        "{}{}",
        pool_yaml_with(
            "execution",
            "execution",
            "first",
            &pki.ca_file,
            &ec_refs,
            seamless
        ),
        pool_yaml_with(
            "consensus",
            "consensus",
            "first",
            &pki.ca_file,
            &cc_refs,
            seamless
        ),
    );
    let (admin, ec_listen, cc_listen) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\n\
         timeouts: {{ connect: 1s, response: 2s }}\n\
         listeners: [{{ address: \"{ec_listen}\" }}, {{ address: \"{cc_listen}\" }}]\n\
         pools:\n{pools}\
         routes:\n  - {{ listener: \"{ec_listen}\", pool: execution }}\n  - {{ listener: \"{cc_listen}\", pool: consensus }}\n"
    );
    let gw = Gateway::start(&yaml, admin, &[ec_listen, cc_listen]).await;
    for i in 0..NODES {
        gw.wait_backend("execution", &format!("ec-{i}"), true).await;
        gw.wait_backend("consensus", &format!("cc-{i}"), true).await;
    }
    let (fds_before, rss_before) = process_stats(gw.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let ws_clients: Vec<_> = (0..SESSIONS)
        .map(|_| tokio::spawn(ws_client(ec_listen, stop.clone())))
        .collect();
    let sse_clients: Vec<_> = (0..SESSIONS)
        .map(|_| tokio::spawn(sse_client(cc_listen, stop.clone())))
        .collect();

    // Heads every 250 ms; every 1.5 to 3 s one node of each pool is faulted or restored, never
    // more than one at a time (so that a healthy node is always there to move to).
    let mut top = ec[0].status().head.max(cc[0].status().head);
    let mut faults: Vec<Option<Fault>> = vec![None; NODES];
    let mut events = Vec::new();
    let started = Instant::now();
    let mut next_change = Instant::now() + Duration::from_secs(2);
    while started.elapsed() < Duration::from_secs(40) {
        top += 1;
        advance(&ec, &faults, top);
        advance(&cc, &faults, top);
        tokio::time::sleep(Duration::from_millis(250)).await;
        if Instant::now() < next_change {
            continue;
        }
        next_change = Instant::now() + Duration::from_millis(1_500 + rng.below(1_500));
        match faults.iter().position(Option::is_some) {
            Some(i) => {
                let fault = faults[i].take().expect("a fault");
                restore(&ec[i], fault);
                restore(&cc[i], fault);
                events.push(format!("restore {i} from {fault:?}"));
            }
            None => {
                // The primary (a fail-back follows its return) more often than the others.
                let i = [0, 0, 1, 2][rng.below(4) as usize];
                let fault = [Fault::Killed, Fault::Frozen, Fault::Lagging][rng.below(3) as usize];
                apply(&ec[i], fault);
                apply(&cc[i], fault);
                faults[i] = Some(fault);
                events.push(format!("{fault:?} {i}"));
            }
        }
    }
    for (i, fault) in faults.iter_mut().enumerate() {
        if let Some(fault) = fault.take() {
            restore(&ec[i], fault);
            restore(&cc[i], fault);
        }
    }
    // Calm: every node healthy again and heads flowing, so that the sessions settle.
    for _ in 0..12 {
        top += 1;
        advance(&ec, &faults, top);
        advance(&cc, &faults, top);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut ws_clients_records = Vec::new();
    for client in ws_clients {
        ws_clients_records.push(client.await.expect("a WebSocket client"));
    }
    let ws_records: Vec<&WsRecord> = ws_clients_records.iter().flatten().collect();
    let mut sse_records = Vec::new();
    for client in sse_clients {
        sse_records.push(client.await.expect("an event-stream client"));
    }
    let metrics = gw.metrics().await;
    let moved: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ssv_ha_sessions_moved_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let open_ws = ws_records.iter().filter(|r| r.closed.is_none()).count();
    let limited = ws_records.iter().filter(|r| r.by_move_limit()).count();
    let open_sse = sse_records.iter().filter(|r| !r.ended).count();
    eprintln!(
        "{} fault events {events:?}; {moved} moves; WebSocket sessions open at the end {open_ws}/{SESSIONS} ({limited} closed by the move limit and opened again), event streams {open_sse}/{SESSIONS}",
        events.len()
    );
    assert!(events.len() >= 10, "the chaos did happen: {events:?}");
    assert!(moved >= 10.0, "sessions moved: {moved}");
    for (i, record) in ws_records.iter().enumerate() {
        if let Err(e) = record.check() {
            panic!(
                "WebSocket session {i}: {e}; heads {:?}; events {events:?}",
                record.heads
            );
        }
    }
    for (i, sessions) in ws_clients_records.iter().enumerate() {
        let heads: usize = sessions.iter().map(|r| r.heads.len()).sum();
        let answers: u64 = sessions.iter().map(|r| r.answers).sum();
        assert!(
            heads > 100 && answers > 50,
            "WebSocket client {i} was served: {heads} heads, {answers} answers in {} sessions",
            sessions.len()
        );
    }
    for (i, record) in sse_records.iter().enumerate() {
        for pair in record.slots.windows(2) {
            assert!(
                pair[1] > pair[0],
                "event stream {i}: slot {} after {}; events {events:?}",
                pair[1],
                pair[0]
            );
        }
        assert!(
            record.slots.len() > 40,
            "event stream {i} was served: {:?}",
            record.slots
        );
    }
    // One node was healthy all along: a WebSocket session stays open, unless it moved more
    // often than a session may (`MAX_MOVES` in `MOVES_WINDOW`: this chaos faults a node every
    // few seconds, a pace no real pool has), which closes it (1011) with that reason; its client
    // opened another, so every client has one open at the end.
    for (i, record) in ws_records.iter().enumerate() {
        assert!(
            record.closed.is_none() || record.by_move_limit(),
            "WebSocket session {i} closed: {:?} {}",
            record.closed,
            record.reason
        );
    }
    assert_eq!(
        open_ws, SESSIONS,
        "every WebSocket client has a session open at the end"
    );
    // A healthy node was there all along: no event stream has a documented reason to end (a
    // quarter of them could end unnoticed before).
    assert_eq!(open_sse, SESSIONS, "{open_sse} event streams stayed open");

    // Every client is gone: the gateway's descriptors and memory come back. Heads keep coming
    // (a stream learns that its client left when it writes the next event).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (fds_after, rss_after) = loop {
        let (fds, rss) = process_stats(gw.pid());
        if fds <= fds_before + 16 {
            break (fds, rss);
        }
        assert!(
            Instant::now() < deadline,
            "the gateway's descriptors stay at {fds}, from {fds_before} before the sessions"
        );
        top += 1;
        advance(&ec, &faults, top);
        advance(&cc, &faults, top);
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} kB");
    // About 7 MB in a sound run; 48 MB let a leak of 100 KiB per move (32 MB in 321 moves) pass.
    assert!(
        rss_after <= rss_before + 20 * 1024,
        "memory grew from {rss_before} kB to {rss_after} kB"
    );
}

//! The I/O of `sessions: seamless` WebSocket sessions: no wait on a peer holds the session's
//! watch (a frozen node, a client that stops reading), an answer over the limit fails only its
//! request, a fail-back drain stops reading the client, and a session moves a bounded number of
//! times.

mod common;

use common::seamless::*;
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use ssv_ha::sim::{NodeStatus, SimNode};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const MOVED: &str = r#"ssv_ha_sessions_moved_total{kind="websocket",pool="execution",reason="#;

async fn moves(gw: &Gateway) -> f64 {
    let m = gw.metrics().await;
    ["backend_down", "failback", "backend_ended"]
        .iter()
        .map(|r| metric(&m, &format!("{MOVED}\"{r}\"}}")))
        .sum()
}

/// Sends SIGTERM to the gateway (it then waits its grace period, 30 s, before it exits).
fn terminate(gw: &Gateway) {
    std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
}

const SLOW_HEALTH: &str = "    health: { interval: 5s, timeout: 4s, rise: 1, fall: 3 }\n";

/// A client that sends `count` messages of about `size` bytes each (a call that is not repeated
/// on another node), as fast as the gateway takes them; it ends when its connection does.
fn flood(ws: Ws, count: u64, size: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        let data = format!("0x{}", "ab".repeat(size / 2));
        for id in 100..100 + count {
            let call =
                json!({"jsonrpc":"2.0","id":id,"method":"eth_sendRawTransaction","params":[data]});
            if sink
                .send(Message::Text(call.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        // The connection stays open until the test ends.
        let _ = reader.await;
        drop(sink);
    })
}

async fn oversized_answer(id_last: bool) {
    // Slow health checks: the simulated node (in this process) takes a while to build its answer.
    let s = setup(SLOW_HEALTH).await;
    let mut ws = s.subscribed_on("ec-a").await;
    s.a.set(|st| {
        st.logs_answer_bytes = Some(20 * 1024 * 1024);
        st.ws_id_last = id_last;
    });
    s.b.set(|st| st.logs_answer_bytes = Some(20 * 1024 * 1024));
    let mut got = Received::default();
    let answer = call(
        &mut ws,
        &mut got,
        5,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": "latest"}]),
    )
    .await;
    assert_eq!(answer["error"]["code"], -32005, "{answer:.300}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{answer:.300}"
    );
    // The session stayed on its node: its subscription flows, and the next call works.
    s.a.new_head();
    read_until(&mut ws, &mut got, "a head after the answer", |g| {
        !g.heads.is_empty()
    })
    .await;
    let chain = call(&mut ws, &mut got, 6, "eth_chainId", json!([])).await;
    assert_eq!(chain["result"], "0x1", "{chain}");
    assert_eq!(moves(&s.gw).await, 0.0, "the session moved");
    assert_eq!(
        s.b.rpc_methods()
            .iter()
            .filter(|m| *m == "eth_getLogs")
            .count(),
        0,
        "the call went to ec-b too"
    );
}

/// An answer over the gateway's limit (16 MiB; here 20 MiB, the `id` first as geth writes it)
/// is the request's failure: the client gets an error under its id, the session stays.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_the_limit_fails_its_request_only_id_first() {
    oversized_answer(false).await;
}

/// The same with the `id` as the answer's last key, as Nethermind writes it.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_the_limit_fails_its_request_only_id_last() {
    oversized_answer(true).await;
}

/// A node that stops reading its socket while the client keeps sending: the mark-down is seen
/// (the session moves at once, not after the send deadline).
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_backend_does_not_hide_its_mark_down() {
    let s = setup("").await;
    let ws = s.subscribed_on("ec-a").await;
    s.a.set(|st| st.ws_frozen = true);
    let sender = flood(ws, 400, 64 * 1024);
    // Long enough for every buffer between the gateway and the node to fill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let marked = Instant::now();
    s.a.set(|st| st.syncing = true);
    s.gw.wait_backend("execution", "ec-a", false).await;
    open_on(&s.gw, "ec-b").await;
    assert!(
        marked.elapsed() < Duration::from_secs(8),
        "moved {:?} after the mark-down",
        marked.elapsed()
    );
    sender.abort();
}

/// A node that stops reading, and is not marked down: the session leaves it once it took no
/// byte for the send deadline (10 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_backend_is_left_after_the_send_deadline() {
    // Slow health checks: only the send deadline moves the session here.
    let s = setup(SLOW_HEALTH).await;
    let ws = s.subscribed_on("ec-a").await;
    s.a.set(|st| st.ws_frozen = true);
    let sender = flood(ws, 400, 64 * 1024);
    wait_for("the session on ec-b", Duration::from_secs(25), || async {
        (metric(&s.gw.metrics().await, &open_series("ec-b")) == 1.0).then_some(())
    })
    .await;
    sender.abort();
}

/// At shutdown, a session whose node stopped reading ends at once: the gateway exits without
/// waiting for its grace period (30 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_backend_does_not_hold_shutdown() {
    let s = setup("").await;
    let ws = s.subscribed_on("ec-a").await;
    s.a.set(|st| st.ws_frozen = true);
    let sender = flood(ws, 400, 64 * 1024);
    tokio::time::sleep(Duration::from_secs(2)).await;
    terminate(&s.gw);
    // The client's connection ends (its reader in `flood` sees the close) well before the
    // grace period and any deadline.
    tokio::time::timeout(Duration::from_secs(5), sender)
        .await
        .expect("the session ended within 5 s of SIGTERM")
        .unwrap();
}

/// A client that stops reading: shutdown ends its session at once, not after the 30 s write
/// timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_does_not_hold_shutdown() {
    let s = setup(SLOW_HEALTH).await;
    s.a.set(|st| st.logs_answer_bytes = Some(1024 * 1024));
    let mut ws = s.connect().await;
    for id in 0..40 {
        let call = json!({"jsonrpc":"2.0","id":id,"method":"eth_getLogs","params":[{}]});
        ws.send(Message::Text(call.to_string().into()))
            .await
            .unwrap();
    }
    // The answers (40 MB) fill every buffer on the way to the client, which reads none.
    wait_for("the node answered", Duration::from_secs(15), || async {
        (s.a.rpc_methods()
            .iter()
            .filter(|m| *m == "eth_getLogs")
            .count()
            >= 3)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.a.ws_open(), 1);
    terminate(&s.gw);
    // The session ends (its backend connection closes) at once, not when the write gives up.
    wait_for(
        "the backend connection closed",
        Duration::from_secs(5),
        || async { (s.a.ws_open() == 0).then_some(()) },
    )
    .await;
    drop(ws);
}

/// A client that stops reading while its node sends (large answers, its `newHeads`): at the
/// node's mark-down the gateway lets go of its connection to the node at once, as an event
/// stream does, not when the write to the client gives up (30 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_lets_go_of_its_backend_at_a_mark_down() {
    let s = setup("    health: { interval: 1s, timeout: 900ms, rise: 1, fall: 1 }\n").await;
    s.a.set(|st| st.logs_answer_bytes = Some(1024 * 1024));
    let mut ws = s.subscribed_on("ec-a").await;
    for id in 10..50 {
        let call = json!({"jsonrpc":"2.0","id":id,"method":"eth_getLogs","params":[{}]});
        ws.send(Message::Text(call.to_string().into()))
            .await
            .unwrap();
    }
    wait_for("the node answered", Duration::from_secs(15), || async {
        (s.a.rpc_methods()
            .iter()
            .filter(|m| *m == "eth_getLogs")
            .count()
            >= 3)
            .then_some(())
    })
    .await;
    s.a.new_head();
    // The answers (40 MB) fill every buffer on the way to the client, which reads none.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.a.ws_open(), 1);
    s.a.set(|st| st.syncing = true);
    s.gw.wait_backend("execution", "ec-a", false).await;
    wait_for(
        "the connection to the marked-down node closed",
        Duration::from_secs(5),
        || async { (s.a.ws_open() == 0).then_some(()) },
    )
    .await;
    drop(ws);
}

/// SIGTERM while a session's move waits on a slow next backend (`slow` makes `ec-b` so, `asked`
/// says the move reached it): the session ends at once, not when the move's deadline (10 s)
/// passes.
async fn shutdown_during_a_move(slow: fn(&mut NodeStatus), asked: fn(&SimNode) -> bool) {
    let s = setup("").await;
    let mut ws = s.subscribed_on("ec-a").await;
    s.b.set(slow);
    s.a.set(|st| st.syncing = true);
    s.gw.wait_backend("execution", "ec-a", false).await;
    wait_for("the move to ask ec-b", Duration::from_secs(5), || async {
        asked(&s.b).then_some(())
    })
    .await;
    let since = Instant::now();
    terminate(&s.gw);
    let code = close_code(&mut ws, Duration::from_secs(4)).await;
    assert!(
        code.is_none() || code == Some(1012),
        "closed with {code:?} after {:?}",
        since.elapsed()
    );
}

/// ... while the next backend is slow to answer the upgrade.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_during_a_move_to_a_backend_slow_to_upgrade_ends_the_session() {
    shutdown_during_a_move(
        |st| st.client_delay_ms = 60_000,
        |b| b.client_requests() >= 1,
    )
    .await;
}

/// ... while the next backend is slow to answer the move's calls.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_during_a_move_to_a_backend_slow_to_answer_ends_the_session() {
    shutdown_during_a_move(
        |st| st.ws_answer_delay_ms = 60_000,
        |b| b.rpc_methods().iter().any(|m| m == "eth_subscribe"),
    )
    .await;
}

/// A fail-back under a client that always has a call outstanding: the drain stops reading the
/// client, so it ends when the answers in flight are in; no call gets the gateway's "not sent
/// again" error (-32003), and the session moves.
#[tokio::test(flavor = "multi_thread")]
async fn a_fail_back_drain_ends_under_a_busy_client() {
    let s = setup("    failback_delay: 200ms\n").await;
    s.a.set(|st| st.syncing = true);
    s.gw.wait_backend("execution", "ec-a", false).await;
    let ws = s.subscribed_on("ec-b").await;
    s.b.set(|st| st.ws_answer_delay_ms = 200);
    s.a.set(|st| st.ws_answer_delay_ms = 200);
    let (mut sink, mut stream) = ws.split();
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let kept = answers.clone();
    let client = tokio::spawn(async move {
        let send = |id: u64| {
            Message::Text(
                json!({"jsonrpc":"2.0","id":id,"method":"eth_sendRawTransaction","params":["0x00"]})
                    .to_string()
                    .into(),
            )
        };
        let mut next = 10;
        for _ in 0..2 {
            sink.send(send(next)).await.unwrap();
            next += 1;
        }
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v.get("id").is_some() {
                    kept.lock().unwrap().push(v);
                    // Another call for each answer: two are always outstanding.
                    if sink.send(send(next)).await.is_err() {
                        break;
                    }
                    next += 1;
                }
            }
        }
    });
    s.a.set(|st| st.syncing = false);
    s.gw.wait_backend("execution", "ec-a", true).await;
    open_on(&s.gw, "ec-a").await;
    // A few more round trips on ec-a, then the answers are looked at.
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.abort();
    let answers = answers.lock().unwrap().clone();
    assert!(answers.len() > 4, "{answers:?}");
    for answer in &answers {
        assert_ne!(answer["error"]["code"], -32003, "{answer}");
    }
    let repeated =
        s.a.rpc_methods()
            .iter()
            .filter(|m| *m == "eth_sendRawTransaction")
            .count();
    assert!(repeated > 0, "calls went to ec-a after the move");
    let failback = metric(&s.gw.metrics().await, &format!("{MOVED}\"failback\"}}"));
    assert_eq!(failback, 1.0, "one fail-back move");
}

/// Backends that keep failing under a session (each answers a little, then closes) do not make
/// it move without end: past MAX_MOVES (10) in its window it closes with 1011 and the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_keeps_moving_closes() {
    let s = setup(SLOW_HEALTH).await;
    s.a.set(|st| st.ws_close_after = Some(3));
    s.b.set(|st| st.ws_close_after = Some(3));
    let ws = s.connect().await;
    let (mut sink, mut stream) = ws.split();
    let sender = tokio::spawn(async move {
        for id in 0.. {
            let call = json!({"jsonrpc":"2.0","id":id,"method":"eth_chainId","params":[]});
            if sink
                .send(Message::Text(call.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let close = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Close(frame) = m {
                return frame;
            }
        }
        None
    })
    .await
    .expect("the session closed within 30 s")
    .expect("a close frame");
    sender.abort();
    assert_eq!(u16::from(close.code), 1011, "{close:?}");
    assert!(close.reason.contains("moved"), "{close:?}");
    let moved = moves(&s.gw).await;
    assert!((10.0..=11.0).contains(&moved), "moved {moved} times");
}

/// Resident memory of the gateway per idle seamless session, each subscribed to `newHeads` and
/// `logs` (a measurement, not a check: run it with `--ignored --nocapture`).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn memory_per_idle_session() {
    let s = setup(SLOW_HEALTH).await;
    let rss = |pid: u32| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    };
    // One session first, so that what every session shares is counted before.
    let mut sessions = vec![s.connect().await];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss(s.gw.pid());
    let count = 1000;
    for _ in 1..count {
        let mut ws = s.connect().await;
        for (id, params) in [(1, json!(["newHeads"])), (2, json!(["logs", {}]))] {
            let call = json!({"jsonrpc":"2.0","id":id,"method":"eth_subscribe","params":params});
            ws.send(Message::Text(call.to_string().into()))
                .await
                .unwrap();
            next_text(&mut ws).await;
        }
        sessions.push(ws);
    }
    // A few heads go to every session, then all is quiet.
    for _ in 0..3 {
        s.a.new_head();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for ws in sessions.iter_mut().skip(1) {
        while tokio::time::timeout(Duration::from_millis(1), ws.next())
            .await
            .is_ok()
        {}
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss(s.gw.pid());
    eprintln!(
        "gateway RSS: {before} kB with 1 session, {after} kB with {count}: {} kB per session",
        (after - before) / (count - 1)
    );
}

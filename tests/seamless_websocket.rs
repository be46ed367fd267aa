//! `sessions: seamless` on an execution pool: a WebSocket client's subscriptions survive a
//! failover with their ids, and every head and every matching log reaches it once, in order; the
//! gap is filled, reorgs across the switch are taken back, and a gap too long closes the session.

mod common;

use common::seamless::*;
use common::*;
use futures::StreamExt;
use serde_json::json;
use ssv_ha::sim::execution::{LOG_ADDRESS, LOG_TOPIC};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_move_with_their_ids_and_every_head_and_log_arrives_once_in_order() {
    let s = setup("").await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    let heads = call(&mut ws, &mut got, 1, "eth_subscribe", json!(["newHeads"])).await;
    let logs = call(
        &mut ws,
        &mut got,
        2,
        "eth_subscribe",
        json!(["logs", {"address": LOG_ADDRESS, "topics": [LOG_TOPIC]}]),
    )
    .await;
    let (heads, logs) = (
        heads["result"].as_str().unwrap().to_string(),
        logs["result"].as_str().unwrap().to_string(),
    );
    open_on(&s.gw, "ec-a").await;
    for _ in 0..3 {
        s.a.new_head();
        s.b.new_head();
    }
    read_until(&mut ws, &mut got, "blocks 1001-1003", |g| {
        g.heads.last() == Some(&1003) && g.logs.last() == Some(&(1003, false))
    })
    .await;

    // The primary stops following the chain; the backup goes on, two blocks the client has not
    // seen while its session is still on the primary.
    s.a.set(|st| st.syncing = true);
    s.b.new_head();
    s.b.new_head();
    s.gw.wait_backend("execution", "ec-a", false).await;
    open_on(&s.gw, "ec-b").await;
    for _ in 0..2 {
        s.b.new_head();
    }
    read_until(&mut ws, &mut got, "blocks up to 1007", |g| {
        g.heads.last() == Some(&1007) && g.logs.last() == Some(&(1007, false))
    })
    .await;
    assert_eq!(
        got.heads,
        (1001..=1007).collect::<Vec<_>>(),
        "every head once, in order"
    );
    assert_eq!(
        got.logs,
        (1001..=1007).map(|n| (n, false)).collect::<Vec<_>>(),
        "every matching log once, in order"
    );
    let mut ids = got.ids.clone();
    ids.sort();
    let mut want = vec![heads.clone(), logs.clone()];
    want.sort();
    assert_eq!(
        ids, want,
        "notifications keep the client's subscription ids"
    );
    let moved = metric(
        &s.gw.metrics().await,
        r#"ssv_ha_sessions_moved_total{kind="websocket",pool="execution",reason="backend_down"}"#,
    );
    assert_eq!(moved, 1.0);
    let status = s.gw.status().await;
    let events = status["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "session_moved"
            && e["reason"] == "websocket session moved from ec-a to ec-b: backend_down"),
        "the move is in the recent events: {events:#?}"
    );
    let page = reqwest::get(format!("http://{}/", s.gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("1 moved so far"), "{page}");

    // Requests go on, answered with the client's ids; the old id unsubscribes.
    let chain = call(&mut ws, &mut got, 7, "eth_chainId", json!([])).await;
    assert_eq!(chain["result"], "0x1");
    let done = call(&mut ws, &mut got, 8, "eth_unsubscribe", json!([heads])).await;
    assert_eq!(done["result"], true, "{done}");
    s.b.new_head();
    read_until(&mut ws, &mut got, "block 1008's log", |g| {
        g.logs.last() == Some(&(1008, false))
    })
    .await;
    assert_eq!(
        got.heads.last(),
        Some(&1007),
        "no head after eth_unsubscribe"
    );
}

/// The client has the logs of blocks 1001-1003 from ec-a; ec-b's chain differs from block 1003
/// on, and ec-b is level with ec-a or (`backup_behind`) one block behind, so that its 1003 comes
/// only after the switch. Either way the client's log of the old 1003 is taken back before the
/// new branch's is sent, and every other log comes once.
async fn logs_across_a_reorg_at_the_switch(backup_behind: bool) {
    let s = setup("").await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    call(
        &mut ws,
        &mut got,
        1,
        "eth_subscribe",
        json!(["logs", {"address": LOG_ADDRESS}]),
    )
    .await;
    open_on(&s.gw, "ec-a").await;
    for block in 1001..=1003 {
        s.a.new_head();
        if !(backup_behind && block == 1003) {
            s.b.new_head();
        }
    }
    read_until(&mut ws, &mut got, "logs of 1001-1003", |g| {
        g.logs.last() == Some(&(1003, false))
    })
    .await;
    s.b.set(|st| st.branch_from = Some(1003));
    s.a.go_down();
    s.gw.wait_backend("execution", "ec-a", false).await;
    open_on(&s.gw, "ec-b").await;
    if backup_behind {
        // Its own block 1003.
        s.b.new_head();
    }
    s.b.new_head();
    read_until(&mut ws, &mut got, "block 1004's log", |g| {
        g.logs.last() == Some(&(1004, false))
    })
    .await;
    assert_eq!(
        got.logs,
        vec![
            (1001, false),
            (1002, false),
            (1003, false),
            (1003, true),
            (1003, false),
            (1004, false)
        ],
        "the old branch's log of 1003 is taken back before the new branch's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_across_the_switch_takes_logs_back_and_sends_the_new_branch() {
    logs_across_a_reorg_at_the_switch(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_above_a_lagging_new_backends_head_takes_the_old_logs_back() {
    logs_across_a_reorg_at_the_switch(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_longer_than_the_limit_closes_the_session_with_the_reason() {
    let s = setup("    max_gap_blocks: 3\n").await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    call(&mut ws, &mut got, 1, "eth_subscribe", json!(["newHeads"])).await;
    open_on(&s.gw, "ec-a").await;
    s.a.new_head();
    s.b.new_head();
    read_until(&mut ws, &mut got, "block 1001", |g| {
        g.heads.last() == Some(&1001)
    })
    .await;
    s.b.set(|st| st.head = 1010);
    s.a.go_down();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the session closes within 15 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1011);
                assert!(frame.reason.contains("max_gap_blocks"), "{}", frame.reason);
                break;
            }
            Some(Ok(Message::Text(text))) => {
                got.take(serde_json::from_str(&text).unwrap());
            }
            other => panic!("expected a close frame with the reason, got {other:?}"),
        }
    }
    assert_eq!(got.heads, vec![1001], "nothing of the gap was sent");
}

/// A `logs` subscription whose filter matches rarely (an SSV contract's events), and no
/// `newHeads` of the client's: the gateway's own heads move its gap along, so a move long after
/// the subscription began fills a short gap instead of closing on the subscription's age.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_logs_subscription_survives_a_move_after_more_than_max_gap_blocks() {
    let s = setup("    max_gap_blocks: 3\n").await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    let quiet = "0x00000000000000000000000000000000000000cc";
    call(
        &mut ws,
        &mut got,
        1,
        "eth_subscribe",
        json!(["logs", {"address": quiet}]),
    )
    .await;
    open_on(&s.gw, "ec-a").await;
    // Let the gateway's eth_blockNumber be answered (resume point = 1000).
    call(&mut ws, &mut got, 2, "eth_chainId", json!([])).await;
    for _ in 0..10 {
        s.a.new_head();
        s.b.new_head();
    }
    // The session is quiet but healthy on ec-a, which then fails; the answer comes after the
    // heads made before it (the gateway has them).
    call(&mut ws, &mut got, 3, "eth_chainId", json!([])).await;
    s.a.go_down();
    s.gw.wait_backend("execution", "ec-a", false).await;
    open_on(&s.gw, "ec-b").await;
    s.b.new_head();
    let answer = call(&mut ws, &mut got, 4, "eth_chainId", json!([])).await;
    assert_eq!(
        answer["result"], "0x1",
        "the session goes on after the move"
    );
}

/// Issue 24, item 5: the client has the logs of blocks 1004 and 1005 from ec-a; ec-b, two
/// blocks behind, takes the session and then imports another block 1004, with no log for the
/// filter. When its head comes (the gateway's own `newHeads`), the logs of the old 1004 and of
/// the 1005 built on it go back, newest first.
#[tokio::test(flavor = "multi_thread")]
async fn logs_of_a_block_the_new_backend_replaces_later_go_back_when_its_head_comes() {
    let s = setup("").await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    call(
        &mut ws,
        &mut got,
        1,
        "eth_subscribe",
        json!(["logs", {"address": LOG_ADDRESS}]),
    )
    .await;
    open_on(&s.gw, "ec-a").await;
    // Let the gateway's own calls be answered before the blocks come.
    call(&mut ws, &mut got, 2, "eth_chainId", json!([])).await;
    for block in 1001..=1005 {
        s.a.new_head();
        if block < 1004 {
            s.b.new_head();
        }
    }
    read_until(&mut ws, &mut got, "logs of 1001-1005", |g| {
        g.logs.last() == Some(&(1005, false))
    })
    .await;
    s.b.set(|st| {
        st.branch_from = Some(1004);
        st.no_logs_from = Some(1004);
    });
    s.a.go_down();
    s.gw.wait_backend("execution", "ec-a", false).await;
    open_on(&s.gw, "ec-b").await;
    call(&mut ws, &mut got, 3, "eth_chainId", json!([])).await;
    assert_eq!(
        got.logs.last(),
        Some(&(1005, false)),
        "blocks 1004 and 1005 are above ec-b's head: nothing is decided yet"
    );
    s.b.new_head();
    read_until(&mut ws, &mut got, "block 1004's log taken back", |g| {
        g.logs.last() == Some(&(1004, true))
    })
    .await;
    assert_eq!(
        got.logs,
        vec![
            (1001, false),
            (1002, false),
            (1003, false),
            (1004, false),
            (1005, false),
            (1005, true),
            (1004, true)
        ]
    );
}

/// Issue 24, item 10: the new backend's `eth_blockNumber` during the move says 1010 while its
/// head is 1002. The gateway checks the claim (no block 1010) and takes the head from the
/// backend's latest block: the session stays, and the heads and logs that follow, from 1003
/// on, all reach the client, none held back by a floor or a resume point at 1010.
#[tokio::test(flavor = "multi_thread")]
async fn one_wrong_block_number_during_a_move_holds_nothing_back() {
    let s = setup("").await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    call(&mut ws, &mut got, 1, "eth_subscribe", json!(["newHeads"])).await;
    call(
        &mut ws,
        &mut got,
        2,
        "eth_subscribe",
        json!(["logs", {"address": LOG_ADDRESS}]),
    )
    .await;
    open_on(&s.gw, "ec-a").await;
    call(&mut ws, &mut got, 3, "eth_chainId", json!([])).await;
    for _ in 0..2 {
        s.a.new_head();
        s.b.new_head();
    }
    read_until(&mut ws, &mut got, "block 1002", |g| {
        g.heads.last() == Some(&1002) && g.logs.last() == Some(&(1002, false))
    })
    .await;
    s.b.set(|st| st.ws_wrong_block_number = Some(1010));
    s.a.go_down();
    s.gw.wait_backend("execution", "ec-a", false).await;
    open_on(&s.gw, "ec-b").await;
    for _ in 0..3 {
        s.b.new_head();
    }
    read_until(&mut ws, &mut got, "blocks up to 1005", |g| {
        g.heads.last() == Some(&1005) && g.logs.last() == Some(&(1005, false))
    })
    .await;
    assert_eq!(got.heads, (1001..=1005).collect::<Vec<_>>());
    assert_eq!(
        got.logs,
        (1001..=1005).map(|n| (n, false)).collect::<Vec<_>>()
    );
    assert_eq!(
        s.b.status().ws_wrong_block_number,
        None,
        "the wrong answer was given"
    );
}

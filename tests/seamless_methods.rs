//! The methods a `sessions: seamless` WebSocket session calls on its own are the ones the config
//! requires a seamless pool's policy to permit ([`SEAMLESS_MOVE_METHODS`]): a move with a gap,
//! for heads and logs, calls nothing else.

mod common;

use common::seamless::*;
use serde_json::json;
use ssv_ha::config::methods::SEAMLESS_MOVE_METHODS;
use ssv_ha::sim::execution::{LOG_ADDRESS, LOG_TOPIC};

#[tokio::test(flavor = "multi_thread")]
async fn a_move_calls_only_the_methods_a_seamless_pool_must_permit() {
    let s = setup("").await;
    let mut ws = s.connect().await;
    let mut got = Received::default();
    call(&mut ws, &mut got, 1, "eth_subscribe", json!(["newHeads"])).await;
    call(
        &mut ws,
        &mut got,
        2,
        "eth_subscribe",
        json!(["logs", {"address": LOG_ADDRESS, "topics": [LOG_TOPIC]}]),
    )
    .await;
    open_on(&s.gw, "ec-a").await;
    s.a.new_head();
    s.b.new_head();
    read_until(&mut ws, &mut got, "block 1001", |g| {
        g.heads.last() == Some(&1001) && g.logs.last() == Some(&(1001, false))
    })
    .await;
    // The backup gets two blocks ahead while the session is on the primary: the move fills a
    // gap of heads and logs.
    s.b.new_head();
    s.b.new_head();
    s.a.set(|st| st.syncing = true);
    s.gw.wait_backend("execution", "ec-a", false).await;
    open_on(&s.gw, "ec-b").await;
    read_until(&mut ws, &mut got, "blocks up to 1003", |g| {
        g.heads.last() == Some(&1003) && g.logs.last() == Some(&(1003, false))
    })
    .await;

    // The client called eth_subscribe twice, on ec-a; everything else is the gateway's own.
    let mut own = s.a.rpc_methods();
    for _ in 0..2 {
        let at = own.iter().position(|m| m == "eth_subscribe").unwrap();
        own.remove(at);
    }
    own.extend(s.b.rpc_methods());
    for method in &own {
        assert!(
            SEAMLESS_MOVE_METHODS.contains(&method.as_str()),
            "the gateway called {method}, which a seamless pool's policy need not permit: {own:?}"
        );
    }
    for needed in ["eth_getLogs", "eth_getBlockByNumber", "eth_blockNumber"] {
        assert!(
            own.iter().any(|m| m == needed),
            "the move called {needed}: {own:?}"
        );
    }
}

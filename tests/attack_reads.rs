//! Attacks on the answer cache: requests whose answer can change dressed up as ones that cannot,
//! and answers that are not the request's.

mod common;

use common::*;
use serde_json::Value;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::time::Duration;

/// POSTs `body` as written; the status and the body's text.
/// How many times the node was asked `method` by clients (not by health checks).
fn asked(node: &SimNode, method: &str) -> usize {
    node.rpc_methods().iter().filter(|m| *m == method).count()
}

/// A gateway over the one node `node`, checked once an hour (its last check stands while the
/// test changes what the node answers).
async fn one_node(pki: &Pki, node: &SimNode) -> (Gateway, std::net::SocketAddr) {
    let slow_checks = "    health: { interval: 1h, timeout: 2s, rise: 1, fall: 1 }\n";
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(node, false)],
        slow_checks,
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    wait_for(
        "the finalized block in /status",
        Duration::from_secs(10),
        || {
            let gw = &gw;
            async move {
                let b = Gateway::backend_status(&gw.status().await, "execution", "ec-a");
                (b["facts"]["finalized"] == 936).then_some(())
            }
        },
    )
    .await;
    (gw, listen)
}

fn log_count(text: &str) -> usize {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    v["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no logs: {text}"))
        .len()
}

/// `"blockHash": null` is no hash to a Go node: it answers the range, up to `latest` here. Every
/// log it has found so far is in a finalized block, so the answer looks final; the next logs
/// must still reach the client.
#[tokio::test(flavor = "multi_thread")]
async fn a_null_block_hash_does_not_make_a_range_to_latest_final() {
    let pki = Pki::new();
    let status = NodeStatus {
        no_logs_from: Some(900),
        ..NodeStatus::default()
    };
    let node = pki.node(NodeKind::Execution, "ec-a", status).await;
    let (_gw, listen) = one_node(&pki, &node).await;
    let client = reqwest::Client::new();
    let filters = [
        r#"[{"blockHash":null,"fromBlock":"0x380","toBlock":"latest"}]"#,
        r#"[{"fromBlock":"0x380","blockHash":null}]"#,
        r#"[{"fromBlock":"0x380","toBlock":"latest","BlockHash":null}]"#,
    ];
    for filter in filters {
        let (status, _, text) =
            post_text(&client, listen, call_text("1", "eth_getLogs", filter)).await;
        assert_eq!(status, 200, "{text}");
        // Blocks 896 to 899, two logs each, all at or below the finalized 936.
        assert_eq!(log_count(&text), 8, "{filter}: {text}");
    }
    // New logs (from block 900 on) come in.
    node.set(|st| st.no_logs_from = None);
    for filter in filters {
        let (status, _, text) =
            post_text(&client, listen, call_text("2", "eth_getLogs", filter)).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            log_count(&text) > 8,
            "{filter}: the gateway served a kept answer the node has since outgrown: {text}"
        );
    }
    assert_eq!(asked(&node, "eth_getLogs"), 6);
}

/// A node (or a connection out of step) that answers with another request's id: the answer
/// goes to the client as it came, but is not kept to be served to every later asker.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_with_another_id_is_not_kept() {
    let pki = Pki::new();
    let node = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let (_gw, listen) = one_node(&pki, &node).await;
    let client = reqwest::Client::new();
    let params = r#"["0x10",false]"#;
    let other = r#"{"jsonrpc":"2.0","id":99,"result":{"number":"0x10","hash":"0xbad"}}"#;
    node.set(|st| st.reply_override = Some(other.to_string()));
    let (status, _, text) = post_text(
        &client,
        listen,
        call_text("1", "eth_getBlockByNumber", params),
    )
    .await;
    assert_eq!((status, text.as_str()), (200, other));
    node.set(|st| st.reply_override = None);
    let (status, _, text) = post_text(
        &client,
        listen,
        call_text("1", "eth_getBlockByNumber", params),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("0xbad"),
        "another request's answer was kept: {text}"
    );
    assert_eq!(asked(&node, "eth_getBlockByNumber"), 1);
}

/// A batch answer merged with the gateway's own errors is held whole until its end: it counts in
/// the listener's held bytes, and one the listener cannot hold ends the request, counted, rather
/// than grow the gateway.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_answer_to_merge_counts_in_the_held_bytes() {
    let pki = Pki::new();
    let (_node, pools) = large_logs_node(&pki, 256 * 1024).await;
    // One call the policy denies (answered by the gateway), one large read: the two are merged.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x2"}]},{"jsonrpc":"2.0","id":2,"method":"admin_peers","params":[]}]"#;
    let client = reqwest::Client::new();
    for (limits, held) in [
        ("", true),
        (
            "limits: { max_body_bytes: 65536, max_held_bytes: 65536 }\n",
            false,
        ),
    ] {
        let (gw, listen) = start_with_limits(&pools, EC_ROUTE, limits).await;
        gw.wait_backend("execution", "ec-a", true).await;
        let answer = match client
            .post(format!("http://{listen}/"))
            .header("host", RPC_HOST)
            .header("content-type", "application/json")
            .body(batch)
            .send()
            .await
        {
            Ok(response) => response.text().await.ok(),
            Err(_) => None,
        };
        let merged = answer
            .as_deref()
            .and_then(|text| serde_json::from_str::<Vec<Value>>(text).ok());
        let refused = gw
            .metrics()
            .await
            .lines()
            .any(|l| l.contains("reason=\"held_bytes\"") && !l.ends_with(" 0"));
        if held {
            let merged = merged.expect("the merged batch answer");
            assert_eq!(merged.len(), 2);
            assert_eq!(merged[1]["error"]["code"], -32601);
            assert!(!refused);
        } else {
            assert!(merged.is_none(), "a merged answer past the held bytes");
            assert!(refused, "the refusal is counted");
        }
    }
}

//! A node's refusal of a WebSocket upgrade (403 for an `Origin` it does not list, as geth answers
//! when `--ws.origins` leaves it out; 200 or 404 for a path it does not serve WebSocket on) is its
//! answer to that client, under `sessions: seamless` as under `cut`: the client gets the node's
//! status, headers and body, no other node is tried, no node is blamed, and the sessions already
//! open on every node stay where they are.

mod common;

use common::seamless::*;
use common::wire::upgrade_refused;
use common::*;
use ssv_ha::sim::NodeStatus;
use std::time::Duration;

const GOOD_ORIGIN: &str = "https://good.example";
const WS_PATH: &str = "/ws";

/// gorilla/websocket's text for an origin geth does not list.
const ORIGIN_REFUSED: &[u8] = b"websocket: 'Origin' header value not allowed\n";

/// Nodes that serve WebSocket on [`WS_PATH`] to [`GOOD_ORIGIN`] (and to clients without an
/// `Origin`) only.
fn strict() -> NodeStatus {
    NodeStatus {
        ws_origins: Some(vec![GOOD_ORIGIN.into()]),
        ws_path: Some(WS_PATH.into()),
        ..NodeStatus::default()
    }
}

/// An upgrade a node refuses, and its answer.
struct Refused {
    path: &'static str,
    headers: &'static str,
    status: u16,
    body: &'static [u8],
}

const FOREIGN_ORIGIN: Refused = Refused {
    path: WS_PATH,
    headers: "origin: https://evil.example\r\n",
    status: 403,
    body: ORIGIN_REFUSED,
};

/// geth's HTTP side answers a GET without a body on `/` (for load balancers' checks).
const ROOT_PATH: Refused = Refused {
    path: "/",
    headers: "",
    status: 200,
    body: b"",
};

const UNKNOWN_PATH: Refused = Refused {
    path: "/nope",
    headers: "",
    status: 404,
    body: b"",
};

/// The sum of every series of `name` whose labels contain `having`.
fn total(metrics: &str, name: &str, having: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(having))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Opens a session subscribed to `newHeads` on each of three nodes, sends `count` upgrades the
/// nodes refuse (taking `kinds` in turn, all at once), and holds that every client got its
/// node's answer and nothing else changed.
async fn refusals_are_the_nodes_answer(sessions: &str, kinds: &[Refused], count: usize) {
    let t = setup_three(sessions, strict()).await;
    let mut open = Vec::new();
    for n in 1..=3 {
        open.push(t.subscribed(WS_PATH).await);
        wait_for("the session counted", Duration::from_secs(10), || async {
            let m = t.gw.metrics().await;
            (total(&m, "ssv_ha_sessions_open", r#"kind="websocket""#) == n as f64).then_some(())
        })
        .await;
    }
    let metrics = t.gw.metrics().await;
    for node in &t.nodes {
        assert_eq!(
            metric(&metrics, &open_series(node.name())),
            1.0,
            "one session on each node (round robin):\n{metrics}"
        );
    }

    let answers = futures::future::join_all((0..count).map(|i| {
        let kind = &kinds[i % kinds.len()];
        async move {
            (
                kind,
                upgrade_refused(t.listen, kind.path, kind.headers).await,
            )
        }
    }))
    .await;
    for (kind, (status, head, body)) in &answers {
        assert_eq!(*status, kind.status, "the node's status: {head}");
        assert_eq!(
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(kind.body),
            "the node's body"
        );
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("\r\nx-sim-node: ec-"),
            "the node's headers: {head}"
        );
        if kind.status == 403 {
            assert!(
                head.contains("\r\nsec-websocket-version: 13\r\n")
                    && head.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"),
                "the node's headers: {head}"
            );
        }
    }

    // Each refused upgrade went to one node only.
    let upgrades: usize = t
        .nodes
        .iter()
        .map(|n| {
            n.seen()
                .iter()
                .filter(|r| !r.probe && r.headers.contains_key("upgrade"))
                .count()
        })
        .sum();
    assert_eq!(
        upgrades,
        count + 3,
        "no refused upgrade was tried elsewhere"
    );

    let metrics = t.gw.metrics().await;
    for node in &t.nodes {
        let name = node.name();
        assert_eq!(
            metric(
                &metrics,
                &format!(
                    r#"ssv_ha_backend_transitions_total{{backend="{name}",pool="execution",to="down"}}"#
                )
            ),
            0.0,
            "{name} was never marked down:\n{metrics}"
        );
        assert_eq!(
            metric(&metrics, &open_series(name)),
            1.0,
            "{name} keeps its session"
        );
    }
    for (name, what) in [
        ("ssv_ha_retries_total", "no retries"),
        ("ssv_ha_sessions_moved_total", "no session moved"),
        ("ssv_ha_sessions_cut_total", "no session cut"),
    ] {
        assert_eq!(total(&metrics, name, ""), 0.0, "{what}:\n{metrics}");
    }
    let status = t.gw.status().await;
    for node in &t.nodes {
        let backend = Gateway::backend_status(&status, "execution", node.name());
        assert_eq!(backend["healthy"], true, "{backend:#}");
    }

    // Every session still gets its node's heads, under the id it was given.
    for node in &t.nodes {
        node.new_head();
    }
    for (ws, id) in &mut open {
        let note = next_text(ws).await;
        assert_eq!(note["params"]["subscription"], id.as_str(), "{note}");
        assert_eq!(note["params"]["result"]["number"], "0x3e9", "{note}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_origin_gets_the_nodes_403_and_takes_no_node_out() {
    refusals_are_the_nodes_answer("seamless", &[FOREIGN_ORIGIN], 100).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_the_node_refuses_gets_its_answer_and_takes_no_node_out() {
    refusals_are_the_nodes_answer("seamless", &[ROOT_PATH, UNKNOWN_PATH], 100).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_cut_a_foreign_origin_gets_the_nodes_403_too() {
    refusals_are_the_nodes_answer("cut", &[FOREIGN_ORIGIN], 100).await;
}

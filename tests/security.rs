//! Hostile and oversized requests: the method policy (single requests and batches), batch, body and
//! URL limits. Denied requests never reach a backend (the simulated node counts what it receives).

mod common;

use common::*;
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::net::SocketAddr;

struct Setup {
    _pki: Pki,
    a: SimNode,
    b: SimNode,
    gw: Gateway,
    url: String,
}

async fn setup(pool_extra: &str, top_extra: &str) -> Setup {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let (admin, listen): (SocketAddr, SocketAddr) = (free_addr(), free_addr());
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false), (&b, true)],
        pool_extra,
    );
    let yaml = format!("{top_extra}{}", config(admin, listen, &pools, EC_ROUTE));
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("execution", "ec-b", true).await;
    Setup {
        _pki: pki,
        a,
        b,
        gw,
        url: format!("http://{listen}/"),
    }
}

async fn send(url: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("host", "rpc.example.com")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_methods_never_reach_a_backend() {
    let s = setup("    methods: { deny: [eth_sendRawTransaction] }\n", "").await;
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"admin_addPeer","params":["enode://x"]}"#,
        r#"{"jsonrpc":"2.0","id":2,"METHOD":"debug_setHead","params":["0x1"]}"#,
        r#"{"jsonrpc":"2.0","id":3,"\u006dethod":"personal_unlockAccount"}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"eth_sendRawTransaction","params":["0x00"]}"#,
        r#"[{"jsonrpc":"2.0","id":5,"method":"engine_forkchoiceUpdatedV3"},{"jsonrpc":"2.0","id":6,"method":"miner_stop"}]"#,
    ] {
        let (status, reply) = send(&s.url, body).await;
        assert_eq!(status, 200, "{body}");
        let errors: Vec<&Value> = match &reply {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for e in errors {
            assert_eq!(e["error"]["code"], -32601, "{body}: {reply}");
        }
    }
    assert_eq!(
        s.a.client_requests() + s.b.client_requests(),
        0,
        "a denied method reached a backend"
    );
    assert!(s
        .gw
        .metrics()
        .await
        .contains("ssv_ha_denied_requests_total{pool=\"execution\"} 5"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_keeps_its_order_and_ids_with_denied_elements_answered_in_place() {
    let s = setup("", "").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": "first", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 2, "method": "admin_nodeInfo"},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber"},
        {"jsonrpc": "2.0", "id": 4, "method": "txpool_content"},
    ]);
    let (status, reply) = send(&s.url, &batch.to_string()).await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = reply
        .as_array()
        .expect("a batch answer")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!("first"), &json!(2), &json!(3), &json!(4)]);
    assert_eq!(reply[0]["result"], "0x1");
    assert_eq!(reply[1]["error"]["code"], -32601);
    assert_eq!(reply[2]["result"], "0x3e8");
    assert_eq!(reply[3]["error"]["code"], -32601);
    assert_eq!(
        s.a.rpc_methods(),
        ["eth_chainId", "eth_blockNumber"],
        "only the permitted elements reached the backend"
    );

    // The rewritten batch survives a retry on another backend.
    s.a.go_down();
    let (status, reply) = send(&s.url, &batch.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(reply[2]["result"], "0x3e8", "{reply}");
    assert_eq!(reply[1]["error"]["code"], -32601);
    assert_eq!(s.b.rpc_methods(), ["eth_chainId", "eth_blockNumber"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_list_admits_what_it_names() {
    let s = setup(
        "    methods: { allow: [eth_*, net_version, debug_traceTransaction] }\n",
        "",
    )
    .await;
    let (_, reply) = send(
        &s.url,
        r#"{"jsonrpc":"2.0","id":1,"method":"debug_traceTransaction","params":["0x1"]}"#,
    )
    .await;
    assert_eq!(
        reply["error"]["message"],
        "the method debug_traceTransaction does not exist/is not available",
        "answered by the node itself"
    );
    let (_, reply) = send(
        &s.url,
        r#"{"jsonrpc":"2.0","id":2,"method":"web3_clientVersion"}"#,
    )
    .await;
    assert_eq!(
        reply["error"]["message"],
        "the method web3_clientVersion is not available through this gateway"
    );
    assert_eq!(s.a.rpc_methods(), ["debug_traceTransaction"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_refuse_with_a_clear_status_and_the_gateway_keeps_serving() {
    let s = setup(
        "    max_batch: 3\n",
        "limits: { max_body_bytes: 100000, max_url_bytes: 64 }\n",
    )
    .await;
    // Batch too long: answered, not forwarded.
    let batch: Vec<Value> = (0..4).map(|i| rpc("eth_chainId", i)).collect();
    let (status, reply) = send(&s.url, &Value::Array(batch).to_string()).await;
    assert_eq!(status, 200);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3"),
        "{reply}"
    );
    // Body too large (declared).
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_call","params":["{}"]}}"#,
        "a".repeat(200_000)
    );
    let (status, reply) = send(&s.url, &big).await;
    assert_eq!(status, 413);
    assert_eq!(
        reply["jsonrpc"], "2.0",
        "an execution pool answers in JSON-RPC: {reply}"
    );
    // URL too long.
    let long = format!("{}{}", s.url, "x".repeat(100));
    let (status, _) = send(&long, r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).await;
    assert_eq!(status, 414);
    // Too many headers.
    let mut request = reqwest::Client::new()
        .post(&s.url)
        .header("host", "rpc.example.com");
    for i in 0..120 {
        request = request.header(format!("x-filler-{i}"), "1");
    }
    let response = request
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert_eq!(
        s.a.client_requests(),
        0,
        "nothing refused reached the backend"
    );
    // A large body that is allowed streams through (judged as it streams).
    let large = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"eth_call","params":["{}"]}}"#,
        "b".repeat(80_000)
    );
    let (status, reply) = send(&s.url, &large).await;
    assert_eq!((status, reply["id"].as_u64()), (200, Some(9)), "{reply}");
    // Meanwhile other clients are served.
    assert_eq!(
        who_answers(&reqwest::Client::new(), s.gw_listen()).await.0,
        200
    );
    let metrics = s.gw.metrics().await;
    assert!(
        metrics.contains("ssv_ha_refused_requests_total{reason=\"body_too_large\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ssv_ha_refused_requests_total{reason=\"url_too_long\"} 1"));
}

impl Setup {
    fn gw_listen(&self) -> SocketAddr {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_guard_the_gateway_and_the_admin_listener() {
    std::env::set_var("SSV_HA_TEST_GATEWAY_TOKEN", "t0ken-from-env");
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&ec, false)],
    );
    let yaml = format!(
        "admin: {{ address: \"{admin}\", auth: {{ basic: {{ user: ops, password: pw }} }} }}\nlisteners: [{{ address: \"{listen}\", auth: {{ bearer: \"${{SSV_HA_TEST_GATEWAY_TOKEN}}\" }} }}]\npools:\n{pools}routes:\n{EC_ROUTE}"
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    let client = reqwest::Client::new();
    let call = |token: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut request = client
                .post(format!("http://{listen}/"))
                .header("host", "rpc.example.com")
                .json(&rpc("eth_chainId", 1));
            if let Some(token) = token {
                request = request.header("authorization", token);
            }
            request.send().await.unwrap()
        }
    };
    let denied = call(None).await;
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.headers()["www-authenticate"], "Bearer");
    assert_eq!(call(Some("Bearer wrong")).await.status(), 401);
    wait_for(
        "ec-a to be checked",
        std::time::Duration::from_secs(10),
        || async {
            let r = client
                .get(format!("http://{admin}/status"))
                .basic_auth("ops", Some("pw"))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            (v["pools"][0]["backends"][0]["healthy"] == true).then_some(())
        },
    )
    .await;
    assert_eq!(call(Some("Bearer t0ken-from-env")).await.status(), 200);
    assert_eq!(
        ec.client_requests(),
        1,
        "only the authenticated request reached the backend"
    );
    let seen = ec.seen().into_iter().find(|r| !r.probe).unwrap();
    assert!(
        !seen.headers.contains_key("authorization"),
        "the gateway's credentials are not forwarded"
    );

    // The admin listener: /healthz and /readyz stay open for orchestrators, the rest needs the password.
    assert_eq!(
        client
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("http://{admin}/status"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(format!("http://{admin}/metrics"))
            .basic_auth("ops", Some("nope"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let status = client
        .get(format!("http://{admin}/status"))
        .basic_auth("ops", Some("pw"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !status.contains("t0ken-from-env"),
        "secrets never show in /status"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_limit_per_client() {
    let pki = Pki::new();
    let slow = pki
        .node(NodeKind::Execution, "ec-slow", NodeStatus::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    // One check at start: the slowness set below must not take the node down.
    let once = "    health: { interval: 1h, timeout: 1s }\n";
    let pools = pool_yaml_with(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&slow, false)],
        once,
    );
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\nlisteners: [{{ address: \"{listen}\", max_requests_per_client: 2 }}]\npools:\n{pools}routes:\n{EC_ROUTE}"
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    gw.wait_backend("execution", "ec-slow", true).await;
    slow.set(|s| s.delay_ms = 800);
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/");
    let slow_calls: Vec<_> = (0..2)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                post(&client, &url, "rpc.example.com", &rpc("eth_chainId", i))
                    .await
                    .0
            })
        })
        .collect();
    wait_for(
        "two requests in flight",
        std::time::Duration::from_secs(5),
        || async { (slow.client_requests() >= 2).then_some(()) },
    )
    .await;
    let (status, _, body) = post(&client, &url, "rpc.example.com", &rpc("eth_chainId", 9)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("more than 2 requests in flight from 127.0.0.1"));
    for call in slow_calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    slow.set(|s| s.delay_ms = 0);
    assert_eq!(
        post(&client, &url, "rpc.example.com", &rpc("eth_chainId", 10))
            .await
            .0,
        200,
        "slots are given back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_methods_over_websocket_never_reach_the_backend() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = setup("", "").await;
    let listen = s.gw_listen();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{listen}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("host", "rpc.example.com".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    for (request, denied) in [
        (
            json!({"jsonrpc": "2.0", "id": 1, "method": "admin_peers"}),
            vec![true],
        ),
        (
            json!([{"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"}, {"jsonrpc": "2.0", "id": 3, "method": "debug_setHead", "params": ["0x1"]}]),
            vec![false, true],
        ),
        (
            json!({"jsonrpc": "2.0", "id": 4, "method": "eth_blockNumber"}),
            vec![false],
        ),
    ] {
        ws.send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        let reply = loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => break serde_json::from_str::<Value>(&t).unwrap(),
                _ => continue,
            }
        };
        let answers: Vec<Value> = match reply {
            Value::Array(items) => items,
            one => vec![one],
        };
        assert_eq!(answers.len(), denied.len());
        let requests: Vec<Value> = match request {
            Value::Array(items) => items,
            one => vec![one],
        };
        for ((answer, request), denied) in answers.iter().zip(&requests).zip(denied) {
            assert_eq!(answer["id"], request["id"], "ids and order kept");
            assert_eq!(answer["error"].is_object(), denied, "{answer}");
        }
    }
    let methods = s.a.rpc_methods();
    assert_eq!(
        methods,
        [
            "ssv_ha_denied",
            "eth_chainId",
            "ssv_ha_denied",
            "eth_blockNumber"
        ],
        "only placeholders stood in for the denied methods"
    );
}

//! Routing and forwarding through the built gateway to simulated nodes over TLS.

mod common;

use common::*;
use serde_json::{json, Value};
use ssv_ha::sim::{NodeKind, NodeStatus};

/// Two pools behind one host-routed listener plus one listener bound to the consensus pool.
#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_and_by_listener_and_forwards_faithfully() {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let cc = pki
        .node(NodeKind::Consensus, "cc-a", NodeStatus::default())
        .await;
    let (public, beacon, admin) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners:
  - {{ name: public, address: "{public}" }}
  - {{ name: beacon, address: "{beacon}" }}
pools:
  execution:
    kind: execution
    ca: {ca}
    health: {FAST_HEALTH}
    backends:
      - {{ name: ec-a, url: "{ec_url}/rpc/key123" }}
  consensus:
    kind: consensus
    ca: {ca}
    health: {FAST_HEALTH}
    backends:
      - {{ name: cc-a, url: "{cc_url}" }}
routes:
  - {{ host: mainnet-lb.example.com, pool: execution }}
  - {{ host: mainnetcl-lb.example.com, pool: consensus }}
  - {{ listener: beacon, pool: consensus }}
"#,
        ca = pki.ca_file.display(),
        ec_url = ec.url(),
        cc_url = cc.url(),
    );
    let gw = Gateway::start(&yaml, admin, &[public, beacon]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    gw.wait_backend("consensus", "cc-a", true).await;
    let client = reqwest::Client::new();

    // A single JSON-RPC call, routed by host (any case, with a port).
    let (status, node, body) = post(
        &client,
        &format!("http://{public}/"),
        "MAINNET-LB.example.com:443",
        &rpc("eth_blockNumber", 7),
    )
    .await;
    assert_eq!((status, node.as_deref()), (200, Some("ec-a")));
    assert_eq!(body, json!({"jsonrpc": "2.0", "id": 7, "result": "0x3e8"}));

    // A batch keeps order and ids.
    let batch = json!([
        rpc("eth_chainId", 1),
        rpc("eth_blockNumber", 2),
        rpc("no_such_method", 3)
    ]);
    let (status, _, body) = post(
        &client,
        &format!("http://{public}/"),
        "mainnet-lb.example.com",
        &batch,
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = body
        .as_array()
        .expect("batch reply")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!(1), &json!(2), &json!(3)]);
    assert_eq!(body[0]["result"], "0x1");
    assert_eq!(body[2]["error"]["code"], -32601);

    // The backend saw its own name as Host, the path prefix, and the client in X-Forwarded-For.
    let seen: Vec<_> = ec.seen().into_iter().filter(|r| !r.probe).collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].host.as_deref(),
        Some(format!("localhost:{}", ec.addr().port()).as_str())
    );
    assert_eq!(seen[0].uri, "/rpc/key123/");
    assert_eq!(seen[0].forwarded_for.as_deref(), Some("127.0.0.1"));
    assert_eq!(seen[0].forwarded_proto.as_deref(), Some("http"));

    // Beacon API by host on the shared listener, with the query string untouched ...
    let (status, node, body) = get(
        &client,
        &format!("http://{public}/eth/v1/node/syncing?x=1&x=2"),
        "mainnetcl-lb.example.com",
    )
    .await;
    assert_eq!((status, node.as_deref()), (200, Some("cc-a")));
    assert_eq!(body["data"]["is_syncing"], false);
    let last = cc
        .seen()
        .into_iter()
        .rev()
        .find(|r| !r.probe)
        .expect("client request at cc-a");
    assert_eq!(last.uri, "/eth/v1/node/syncing?x=1&x=2");
    // ... and on the listener bound to the pool, whatever the host (no DNS alias needed).
    let (status, node, _) = get(
        &client,
        &format!("http://{beacon}/eth/v1/node/peer_count"),
        "ssv-ha:5052",
    )
    .await;
    assert_eq!((status, node.as_deref()), (200, Some("cc-a")));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_is_refused_and_never_forwarded() {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let (public, admin) = (free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners: [{{ address: "{public}" }}]
pools:
  execution:
    kind: execution
    ca: {ca}
    health: {FAST_HEALTH}
    backends: [{{ name: ec-a, url: "{url}" }}]
routes: [{{ host: rpc.example.com, pool: execution }}]
"#,
        ca = pki.ca_file.display(),
        url = ec.url(),
    );
    let gw = Gateway::start(&yaml, admin, &[public]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    let client = reqwest::Client::new();
    let (status, node, body) = post(
        &client,
        &format!("http://{public}/"),
        "evil.example.com",
        &rpc("eth_blockNumber", 1),
    )
    .await;
    assert_eq!(status, 421);
    assert_eq!(node, None);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("evil.example.com"),
        "{body}"
    );
    assert_eq!(
        ec.client_requests(),
        0,
        "nothing may reach a backend for an unknown host"
    );
    assert!(gw
        .metrics()
        .await
        .contains("ssv_ha_unrouted_requests_total{listener=\"127.0.0.1:"));
}

/// The gateway's own TLS listener, with a certificate from the test CA.
#[tokio::test(flavor = "multi_thread")]
async fn serves_tls_listeners() {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let leaf = pki.ca.leaf(&["rpc.example.com"]).unwrap();
    let (cert, key) = leaf.write(pki.dir.path(), "gateway").unwrap();
    let (public, admin) = (free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners:
  - address: "{public}"
    tls: {{ cert: {cert}, key: {key} }}
pools:
  execution:
    kind: execution
    ca: {ca}
    health: {FAST_HEALTH}
    backends: [{{ name: ec-a, url: "{url}" }}]
routes: [{{ host: rpc.example.com, pool: execution }}]
"#,
        cert = cert.display(),
        key = key.display(),
        ca = pki.ca_file.display(),
        url = ec.url(),
    );
    let gw = Gateway::start(&yaml, admin, &[public]).await;
    gw.wait_backend("execution", "ec-a", true).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.cert_pem().as_bytes()).unwrap())
        .resolve("rpc.example.com", public)
        .build()
        .unwrap();
    let response = client
        .post(format!("https://rpc.example.com:{}/", public.port()))
        .json(&rpc("eth_chainId", 5))
        .send()
        .await
        .expect("TLS request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"], "0x1");
    let seen = ec.seen().into_iter().rev().find(|r| !r.probe).unwrap();
    assert_eq!(seen.uri, "/");
    assert_eq!(seen.forwarded_proto.as_deref(), Some("https"));
    drop(gw);
}

/// Per-backend headers (a paid provider's key) reach the backend on requests and probes, and the
/// secret never shows in `/status` or metrics.
#[tokio::test(flavor = "multi_thread")]
async fn backend_headers_are_sent_and_kept_secret() {
    let pki = Pki::new();
    let ec = pki
        .node(NodeKind::Execution, "provider", NodeStatus::default())
        .await;
    let (public, admin) = (free_addr(), free_addr());
    let yaml = format!(
        r#"
admin: {{ address: "{admin}" }}
listeners: [{{ address: "{public}" }}]
pools:
  execution:
    kind: execution
    ca: {ca}
    health: {FAST_HEALTH}
    backends:
      - name: provider
        url: "{url}"
        headers: {{ x-api-key: "${{SSV_HA_TEST_PROVIDER_KEY}}", authorization: "Bearer s3cr3t-token" }}
routes: [{{ listener: "{public}", pool: execution }}]
"#,
        ca = pki.ca_file.display(),
        url = ec.url(),
    );
    // The variable is read by the gateway process, which inherits it from here.
    std::env::set_var("SSV_HA_TEST_PROVIDER_KEY", "key-from-env-42");
    let gw = Gateway::start(&yaml, admin, &[public]).await;
    gw.wait_backend("execution", "provider", true).await;
    let (status, _, _) = post(
        &reqwest::Client::new(),
        &format!("http://{public}/"),
        "x",
        &rpc("eth_chainId", 1),
    )
    .await;
    assert_eq!(status, 200);
    let seen = ec.seen();
    let client = seen.iter().find(|r| !r.probe).expect("the client request");
    let probe = seen.iter().find(|r| r.probe).expect("a probe");
    for r in [client, probe] {
        assert_eq!(r.headers["x-api-key"], "key-from-env-42");
        assert_eq!(r.headers["authorization"], "Bearer s3cr3t-token");
    }
    let status = reqwest::get(format!("http://{admin}/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        status.contains("\"x-api-key\"") && status.contains("\"authorization\""),
        "{status}"
    );
    for secret in ["key-from-env-42", "s3cr3t-token"] {
        assert!(!status.contains(secret), "/status shows a secret");
        assert!(
            !gw.metrics().await.contains(secret),
            "metrics show a secret"
        );
    }
}

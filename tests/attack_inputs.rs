//! Input paths meeting the answer cache: a `HEAD` with a JSON-RPC body sent to an execution pool
//! (served by geth as a call) gets no body in its answer, from a node or from the cache, and the
//! connection it came on stays usable for the next request.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;

/// Sends `HEAD` with `CALL` as its body, then a `POST` of `CALL`, on one kept-alive connection;
/// returns all the gateway wrote back until the `POST`'s answer came.
async fn head_then_post(listen: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(listen).await.expect("connect");
    let head = format!(
        "HEAD / HTTP/1.1\r\nhost: {RPC_HOST}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CALL}",
        CALL.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The HEAD's answer first, alone on the wire.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("the HEAD's answer")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let post = format!(
        "POST / HTTP/1.1\r\nhost: {RPC_HOST}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{CALL}",
        CALL.len()
    );
    // The gateway may have closed after the HEAD: then the POST finds no answer.
    let _ = s.write_all(post.as_bytes()).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_with_a_cacheable_call_gets_no_body_from_the_cache() {
    let s = ec_pair("").await;
    let client = reqwest::Client::new();
    // Kept: eth_chainId on the node's own chain.
    for _ in 0..2 {
        let url = format!("http://{}/", s.listen);
        let (status, _, body) = post(&client, &url, RPC_HOST, &rpc("eth_chainId", 1)).await;
        assert_eq!(status, 200, "{body}");
    }
    let metrics = s.gw.metrics().await;
    assert_eq!(
        metric(&metrics, r#"ssv_ha_cache_hits_total{pool="execution"}"#),
        1.0,
        "the call is answered from the cache"
    );
    let wire = head_then_post(s.listen).await;
    let answers = wire.matches("HTTP/1.1 ").count();
    assert_eq!(answers, 2, "two answers, the HEAD's without a body: {wire}");
    let head_answer = &wire[..wire.find("\r\n\r\n").unwrap() + 4];
    let rest = &wire[head_answer.len()..];
    assert!(
        rest.starts_with("HTTP/1.1 200"),
        "the HEAD's answer carries no body: {wire}"
    );
    assert!(rest.contains("\"result\""), "{wire}");
    let metrics = s.gw.metrics().await;
    assert_eq!(
        metric(&metrics, r#"ssv_ha_cache_hits_total{pool="execution"}"#),
        3.0,
        "the HEAD and the POST after it were answered from the cache"
    );
}

/// A request in flight across a reload that rebuilt its pool: its answer is not kept in the old
/// pool's cache, whose gauges (shared by name with the new pool's) would then tell the old
/// cache's contents, not what `/status` shows of the new one.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_kept_by_the_old_pool_after_a_reload_does_not_count_in_the_new_ones_gauges() {
    let s = ec_pair("").await;
    s.a.set(|st| st.client_delay_ms = 2500);
    let asked_before = s.a.client_requests();
    let url = format!("http://{}/", s.listen);
    let in_flight = tokio::spawn(async move {
        post(
            &reqwest::Client::new(),
            &url,
            RPC_HOST,
            &rpc("eth_chainId", 1),
        )
        .await
    });
    // The node counts a client's request when it arrives, before its delay.
    let a = &s.a;
    wait_for("the call to reach node a", Duration::from_secs(5), || {
        let arrived = a.client_requests() > asked_before;
        async move { arrived.then_some(()) }
    })
    .await;
    // Another setting of the pool: it is rebuilt, its cache new and empty.
    let yaml = std::fs::read_to_string(&s.gw.config_path).expect("config");
    let changed = yaml.replacen(
        "    policy: first\n",
        "    policy: first\n    min_peers: 5\n",
        1,
    );
    assert_ne!(yaml, changed);
    std::fs::write(&s.gw.config_path, changed).expect("write config");
    let reloaded = reqwest::Client::new()
        .post(format!("http://{}/reload", s.gw.admin))
        .send()
        .await
        .expect("reload");
    assert_eq!(reloaded.status().as_u16(), 200);
    let (status, _, body) = in_flight.await.expect("the call");
    assert_eq!(status, 200, "{body}");
    let status = s.gw.status().await;
    let pool = status["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "execution"))
        .cloned()
        .unwrap_or_else(|| panic!("{status}"));
    let held = pool["cache"]["entries"].as_f64().unwrap_or(-1.0);
    let metrics = s.gw.metrics().await;
    assert_eq!(
        metric(&metrics, r#"ssv_ha_cache_entries{pool="execution"}"#),
        held,
        "gauge and /status agree: {}",
        pool["cache"]
    );
    assert_eq!(
        metric(&metrics, r#"ssv_ha_cache_bytes{pool="execution"}"#),
        pool["cache"]["bytes"].as_f64().unwrap_or(-1.0),
    );
}

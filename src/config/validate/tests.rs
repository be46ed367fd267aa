//! Tests of whole configurations: the documented defaults, the top-level sections and limits, and
//! errors that span sections; also the fixtures ([`MINIMAL`], [`errors`]) the section tests share.

use super::*;
use crate::config::file::Policy;

pub(super) const MINIMAL: &str = r#"
listeners:
  - address: 127.0.0.1:8080
pools:
  execution:
    kind: execution
    backends:
      - { name: ec-a, url: "https://a.example.com/key/", ws_url: "wss://a-ws.example.com:8546" }
      - { name: ec-b, url: "http://10.0.0.2:8545", backup: true }
routes:
  - { host: RPC.example.com, pool: execution }
"#;

pub(super) fn errors(text: &str) -> Vec<ConfigError> {
    parse(text, Path::new(".")).expect_err("config should be rejected")
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = parse(MINIMAL, Path::new(".")).expect("valid");
    assert_eq!(c.admin.to_string(), DEFAULT_ADMIN_ADDRESS);
    assert_eq!(c.timeouts.connect, Duration::from_secs(5));
    assert_eq!(c.timeouts.response, Duration::from_secs(120));
    assert_eq!(c.timeouts.websocket_idle, Duration::from_secs(3600));
    assert_eq!(c.retries, 2);
    let pool = &c.pools[0];
    assert_eq!(pool.policy, Policy::First);
    assert_eq!(pool.min_peers, 10);
    assert_eq!(pool.max_lag, 5);
    assert_eq!(pool.network, ExpectedNetwork::default());
    let a = &pool.backends[0];
    assert_eq!(
        (a.http.host.as_str(), a.http.port, a.http.tls),
        ("a.example.com", 443, true)
    );
    assert_eq!(a.http.path_prefix, "/key");
    assert_eq!(
        (a.ws.host.as_str(), a.ws.port, a.ws.tls),
        ("a-ws.example.com", 8546, true)
    );
    assert_eq!(a.ws.host_header(), "a-ws.example.com:8546");
    assert_eq!(
        pool.backends[1].ws, pool.backends[1].http,
        "ws_url defaults to url"
    );
    assert_eq!(c.routes[0].host.as_deref(), Some("rpc.example.com"));
}

#[test]
fn every_error_is_reported_with_its_path() {
    let text = r#"
listeners:
  - address: "8080"
  - address: 127.0.0.1:9000
    colour: blue
pools:
  execution:
    kind: execution
    health: { interval: soon }
    backends:
      - { name: ec-a, url: "ftp://a.example.com" }
      - { name: ec-a, url: "https://b.example.com", wsurl: "wss://x" }
routes:
  - { host: rpc.example.com, pool: executoin }
  - { pool: execution }
timeouts: { connect: 0s }
"#;
    let errs = errors(text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "listeners[0].address",
        "listeners[1]",
        "pools.execution.health.interval",
        "pools.execution.backends[0].url",
        "pools.execution.backends[1]",
        "routes[0].pool",
        "routes[1]",
        "timeouts.connect",
    ] {
        assert!(
            paths.contains(&expected),
            "missing error at {expected}: {errs:#?}"
        );
    }
    let unknown = errs.iter().find(|e| e.path == "listeners[1]").unwrap();
    assert!(unknown.message.contains("colour"), "{unknown}");
    let pool = errs.iter().find(|e| e.path == "routes[0].pool").unwrap();
    assert_eq!(pool.hint.as_deref(), Some("pools: execution"));
}

#[test]
fn the_held_bytes_limit_must_hold_one_largest_body() {
    let errs = errors(&format!(
        "{MINIMAL}\nlimits: {{ max_body_bytes: 2000000, max_held_bytes: 1000000 }}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "limits.max_held_bytes");
    let c = parse(MINIMAL, Path::new(".")).expect("valid");
    assert_eq!(c.limits.max_held_bytes, DEFAULT_MAX_HELD_BYTES);
}

#[test]
fn unknown_top_level_section_and_empty_file_are_errors() {
    let errs = errors(&format!("{MINIMAL}\nlisteners_extra: 1\n"));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "listeners_extra");
    assert!(errors("").iter().any(|e| e.message.contains("empty")));
    assert!(errors("[1, 2")
        .iter()
        .any(|e| e.message.contains("not valid YAML")));
}

#[test]
fn duplicate_routes_and_names_are_rejected() {
    let text = MINIMAL.replace(
        "routes:\n",
        "routes:\n  - { host: rpc.example.com, pool: execution }\n",
    );
    assert!(errors(&text)
        .iter()
        .any(|e| e.message.contains("same host and listener")));
    let text = MINIMAL.replace("name: ec-b", "name: ec-a");
    assert!(errors(&text)
        .iter()
        .any(|e| e.message.contains("used twice")));
}

#[test]
fn all_backups_and_missing_files_are_rejected() {
    let text = MINIMAL.replace(
        "ws_url: \"wss://a-ws.example.com:8546\" }",
        "backup: true }",
    );
    assert!(errors(&text)
        .iter()
        .any(|e| e.message.contains("every backend is a backup")));
    let text = MINIMAL.replace(
        "  - address: 127.0.0.1:8080",
        "  - address: 127.0.0.1:8080\n    tls: { cert: /nonexistent.crt, key: /nonexistent.key }",
    );
    assert!(errors(&text)
        .iter()
        .any(|e| e.path == "listeners[0].tls" && e.message.contains("/nonexistent.crt")));
}

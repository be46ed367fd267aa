//! Tests of whole configurations: the documented defaults, the top-level sections and limits, and
//! errors that span sections; also the fixtures ([`MINIMAL`], [`errors`]) the section tests share.

use super::*;
use crate::config::file::Policy;
use serde::de::DeserializeOwned;
use std::time::Duration;

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

/// The keys of one section struct, as serde lists them when it refuses an unknown one (every
/// section denies unknown fields).
fn keys<T: DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
    let refused = serde_yaml::from_str::<T>("no_such_key: 1")
        .expect_err("an unknown key is refused")
        .to_string();
    let expected = refused.split_once("expected").map_or("", |(_, list)| list);
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every key of the file structs has a row in the configuration reference
/// (`docs/configuration.md`), and every row there names a key the code reads. Keys whose value is a small mapping (`tls`, `auth`,
/// `methods`) are documented by one row for the whole value.
#[test]
fn the_configuration_reference_documents_every_key_and_no_other() {
    use crate::config::file::*;
    let sections: [(&str, Vec<String>); 10] = [
        ("log", keys::<LogSection>()),
        ("server", keys::<ServerSection>()),
        ("admin", keys::<AdminSection>()),
        ("listeners[]", keys::<ListenerSection>()),
        ("timeouts", keys::<TimeoutSection>()),
        ("limits", keys::<LimitsSection>()),
        ("pools.NAME", keys::<PoolSection>()),
        ("pools.NAME.health", keys::<HealthSection>()),
        ("pools.NAME.backends[]", keys::<BackendSection>()),
        ("routes[]", keys::<RouteSection>()),
    ];
    let mut in_code: Vec<String> = sections
        .iter()
        .flat_map(|(section, keys)| keys.iter().map(move |key| format!("{section}.{key}")))
        // Mappings of their own, documented in their own rows.
        .filter(|key| key != "pools.NAME.health" && key != "pools.NAME.backends")
        .collect();
    // The only top-level key that is a value, not a section.
    in_code.push("retries".into());
    for section in ["log", "server", "admin", "timeouts", "limits"] {
        assert!(TOP_LEVEL_KEYS.contains(&section), "{section}");
    }
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let documented: Vec<String> = reference
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once("` |"))
        .map(|(key, _)| key.to_string())
        .filter(|key| {
            key == "retries"
                || sections
                    .iter()
                    .any(|(section, _)| key.starts_with(&format!("{section}.")))
        })
        .collect();
    for key in &in_code {
        assert!(
            documented.contains(key),
            "`{key}` is read from the config file but has no row in docs/configuration.md"
        );
    }
    for key in &documented {
        assert!(
            in_code.contains(key),
            "docs/configuration.md documents `{key}`, which the config file does not have"
        );
    }
}

#[test]
fn the_admin_listener_exposes_everything_unless_told_metrics() {
    let c = parse(MINIMAL, Path::new(".")).expect("valid");
    assert_eq!(c.admin_expose, AdminExpose::All);
    let text = format!("{MINIMAL}\nadmin: {{ address: 0.0.0.0:8405, expose: metrics }}\n");
    let c = parse(&text, Path::new(".")).expect("valid");
    assert_eq!(c.admin_expose, AdminExpose::Metrics);
    let errs = errors(&format!("{MINIMAL}\nadmin: {{ expose: status }}\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "admin.expose");
    assert!(errs[0].message.contains("`status`"), "{}", errs[0]);
    assert_eq!(errs[0].hint.as_deref(), Some("`all` or `metrics`"));
}

//! `ssv-ha import-haproxy` on a configuration in the original setup's style
//! (`tests/fixtures/haproxy-original.cfg`): the output passes `ssv-ha check` and routes the same
//! names to the same servers.

use ssv_ha::config::model::{Policy, PoolKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn import(extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .arg("import-haproxy")
        .arg(root().join("tests/fixtures/haproxy-original.cfg"))
        .args(extra)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(yaml: &str, dir: &Path) {
    let path = dir.join("imported.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the import fails ssv-ha check:\n{}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn imported_config_checks_and_routes_the_same_names_to_the_same_servers() {
    let (code, yaml, stderr) = import(&[]);
    assert_eq!(code, 0, "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    check(&yaml, dir.path());
    assert!(
        yaml.contains("haproxy passed TLS through here"),
        "the TLS change is explained:\n{yaml}"
    );

    let config = ssv_ha::config::parse(&yaml, dir.path()).unwrap();
    assert_eq!(
        config.admin.port(),
        8405,
        "the Prometheus frontend becomes the admin listener"
    );
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].address.port(), 443);
    assert_eq!(config.retries, 2);
    assert_eq!(config.timeouts.connect, Duration::from_secs(5));
    assert_eq!(config.timeouts.response, Duration::from_secs(120));
    assert_eq!(config.timeouts.websocket_idle, Duration::from_secs(3600));

    let table = ssv_ha::proxy::routing::RouteTable::for_listener(&config, 0);
    let pool_for = |host: &str| {
        &config.pools[table
            .lookup(Some(host))
            .unwrap_or_else(|| panic!("{host} is not routed"))]
    };
    // HTTPS and WSS names reach one execution pool: the same nodes, each with its two endpoints.
    let rpc = pool_for("goerli-lb.example.com");
    let ws = pool_for("goerliws-lb.example.com");
    assert_eq!(rpc.name, ws.name);
    assert_eq!(rpc.kind, PoolKind::Execution);
    assert_eq!(rpc.policy, Policy::First);
    assert_eq!(
        rpc.health.interval,
        Duration::from_secs(10),
        "haproxy's inter 10000"
    );
    let servers: Vec<(&str, &str, &str, bool)> = rpc
        .backends
        .iter()
        .map(|b| {
            (
                b.name.as_str(),
                b.http.host.as_str(),
                b.ws.host.as_str(),
                b.backup,
            )
        })
        .collect();
    assert_eq!(
        servers,
        [
            (
                "goerli-ec-a.example.com",
                "goerli-ec-a.example.com",
                "goerliws-a.example.com",
                false
            ),
            (
                "goerli-ec-b.example.com",
                "goerli-ec-b.example.com",
                "goerliws-b.example.com",
                true
            ),
        ]
    );
    assert!(rpc
        .backends
        .iter()
        .all(|b| b.http.tls && b.ws.tls && b.http.port == 443));
    let beacon = pool_for("goerlicl-lb.example.com");
    assert_eq!(beacon.kind, PoolKind::Consensus);
    let servers: Vec<(&str, bool)> = beacon
        .backends
        .iter()
        .map(|b| (b.http.host.as_str(), b.backup))
        .collect();
    assert_eq!(
        servers,
        [
            ("goerli-cl-a.example.com", false),
            ("goerli-cl-b.example.com", true)
        ]
    );
    assert_eq!(
        table.lookup(Some("other.example.com")),
        None,
        "no name is routed that haproxy did not route"
    );
}

#[test]
fn with_a_certificate_the_listener_terminates_tls() {
    let (code, yaml, stderr) = import(&[
        "--cert",
        "conf/tls/example.crt",
        "--key",
        "conf/tls/example.key",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        yaml.contains("tls: { cert: conf/tls/example.crt, key: conf/tls/example.key }"),
        "{yaml}"
    );
    let config = ssv_ha::config::parse(&yaml, &root()).unwrap();
    assert!(config.listeners[0].tls.is_some());
}

#[test]
fn unusable_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.cfg");
    std::fs::write(&path, "global\n    maxconn 100\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .arg("import-haproxy")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backend with servers found"));
}

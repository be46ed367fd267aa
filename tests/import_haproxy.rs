//! `ssv-ha import-haproxy` on a configuration in the original setup's style
//! (`tests/fixtures/haproxy-original.cfg`): the output passes `ssv-ha check` and routes the same
//! names to the same servers; run, its admin listener serves what haproxy's exporter served.

mod common;

use ssv_ha::config::model::{AdminExpose, ListenerMode, Policy, PoolKind, RouteEndpoint};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn import(extra: &[&str]) -> (i32, String, String) {
    import_file("haproxy-original.cfg", extra)
}

fn import_file(fixture: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .arg("import-haproxy")
        .arg(root().join("tests/fixtures").join(fixture))
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
        yaml.contains("mode: passthrough"),
        "without a certificate the listener passes TLS through, as haproxy did:\n{yaml}"
    );

    let config = ssv_ha::config::parse(&yaml, dir.path()).unwrap();
    assert_eq!(
        config.admin.port(),
        8405,
        "the Prometheus frontend becomes the admin listener"
    );
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].address.port(), 443);
    assert_eq!(config.listeners[0].mode, ListenerMode::Passthrough);
    assert_eq!(config.listeners[0].hello_timeout, Duration::from_secs(5));
    assert_eq!(config.retries, 2);
    assert_eq!(config.timeouts.connect, Duration::from_secs(5));
    assert_eq!(config.timeouts.response, Duration::from_secs(120));
    assert_eq!(config.timeouts.websocket_idle, Duration::from_secs(3600));

    let table = ssv_ha::upstream::routing::RouteTable::for_listener(&config, 0);
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

/// haproxy's exporter served `/metrics` on 0.0.0.0:8405 and nothing else: the imported admin
/// listener is there, serves metrics and health, and refuses the gateway's state and its reload.
#[tokio::test(flavor = "multi_thread")]
async fn the_imported_admin_listener_serves_metrics_where_the_exporter_was_and_nothing_else() {
    let (code, yaml, stderr) = import(&[]);
    assert_eq!(code, 0, "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let config = ssv_ha::config::parse(&yaml, dir.path()).unwrap();
    assert_eq!(config.admin.to_string(), "0.0.0.0:8405", "{yaml}");
    assert_eq!(config.admin_expose, AdminExpose::Metrics, "{yaml}");
    assert!(
        yaml.contains("POST /reload are not served here"),
        "the file says what the listener leaves out:\n{yaml}"
    );

    // Run as imported, on ports of the test's own (loopback, free), the rest unchanged.
    let admin = common::free_addr();
    let listen = common::free_addr();
    let run = yaml
        .replace("address: 0.0.0.0:8405", &format!("address: \"{admin}\""))
        .replace("address: 0.0.0.0:443", &format!("address: \"{listen}\""));
    assert!(
        !run.contains(":8405") && !run.contains(":443\n"),
        "every address replaced:\n{run}"
    );
    let gw = common::Gateway::start(&run, admin, &[]).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{admin}{path}");
    let metrics = client.get(url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("ssv_ha_build_info"));
    for path in ["/healthz", "/readyz"] {
        let answer = client.get(url(path)).send().await.unwrap();
        assert_ne!(answer.status(), 404, "{path} is served");
    }
    let reload = client.post(url("/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 404, "POST /reload is refused");
    assert!(!reload.text().await.unwrap().contains("reloaded"));
    for path in ["/status", "/"] {
        let answer = client.get(url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path} is refused");
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .filter(|l| l.starts_with("ssv_ha_config_reloads_total{"))
            .all(|l| l.ends_with(" 0")),
        "nothing was reloaded, nor tried:\n{metrics}"
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
    assert_eq!(config.listeners[0].mode, ListenerMode::Http);
    assert!(
        config
            .routes
            .iter()
            .all(|r| r.endpoint == RouteEndpoint::Url),
        "a TLS-terminating listener sends WebSocket upgrades to ws_url by itself"
    );
}

/// The lines under the output's "Not carried over" heading.
fn not_carried(yaml: &str) -> Vec<&str> {
    yaml.lines()
        .skip_while(|l| !l.starts_with("# Not carried over"))
        .skip(1)
        .take_while(|l| l.starts_with("# - "))
        .collect()
}

/// A file in the exact shape of the one the original repository publishes: sections by keyword
/// with `acl` and `use_backend` lines at the start of the line below the frontend's comments, one
/// `use_backend NAME ACL` without `if`, and the timeouts and retries in each backend.
#[test]
fn the_published_shape_imports_with_every_setting_ssv_ha_has() {
    let (code, yaml, stderr) = import_file("haproxy-published.cfg", &[]);
    assert_eq!(code, 0, "{stderr}\n{yaml}");
    let dir = tempfile::tempdir().unwrap();
    check(&yaml, dir.path());
    let config = ssv_ha::config::parse(&yaml, dir.path()).unwrap();

    assert_eq!(config.admin.port(), 8405);
    let listener = &config.listeners[0];
    assert_eq!(
        (
            listener.address.port(),
            listener.mode,
            listener.hello_timeout,
            listener.max_requests
        ),
        (
            443,
            ListenerMode::Passthrough,
            Duration::from_secs(5),
            20000
        )
    );
    assert_eq!(config.timeouts.connect, Duration::from_secs(5));
    assert_eq!(config.timeouts.response, Duration::from_secs(120));
    assert_eq!(config.timeouts.websocket_idle, Duration::from_secs(3600));
    assert_eq!(config.retries, 2);

    let table = ssv_ha::upstream::routing::RouteTable::for_listener(&config, 0);
    let target = |host: &str| {
        table
            .target(Some(host))
            .unwrap_or_else(|| panic!("{host} is not routed:\n{yaml}"))
    };
    let rpc = target("hoodi-lb.example.net");
    let ws = target("hoodiws-lb.example.net");
    let beacon = target("hoodicl-lb.example.net");
    assert_eq!(rpc.pool, ws.pool, "one execution pool for both names");
    assert_eq!(rpc.endpoint, RouteEndpoint::Url);
    assert_eq!(
        ws.endpoint,
        RouteEndpoint::WsUrl,
        "the WebSocket name reaches ws_url"
    );
    let execution = &config.pools[rpc.pool];
    assert_eq!(execution.kind, PoolKind::Execution);
    assert_eq!(execution.policy, Policy::First);
    assert_eq!(execution.health.interval, Duration::from_secs(10));
    let nodes: Vec<(&str, &str, bool)> = execution
        .backends
        .iter()
        .map(|b| (b.http.host.as_str(), b.ws.host.as_str(), b.backup))
        .collect();
    assert_eq!(
        nodes,
        [
            ("hoodi-1.example.net", "hoodiws-1.example.net", false),
            ("hoodi-2.example.net", "hoodiws-2.example.net", true)
        ]
    );
    let consensus = &config.pools[beacon.pool];
    assert_eq!(
        consensus.kind,
        PoolKind::Consensus,
        "the bare `use_backend` rule"
    );
    assert_eq!(consensus.backends.len(), 2);
    assert!(consensus.backends[1].backup);
    assert_eq!(table.lookup(Some("elsewhere.example.net")), None);

    // The notes name only what has no equivalent.
    let notes = not_carried(&yaml);
    for carried in [
        "timeout connect",
        "timeout server",
        "timeout tunnel",
        "retries",
        "inter",
        "backup",
        "balance",
        "resolvers",
        "maxconn",
        "use_backend",
        "inspect-delay",
        "prometheus",
    ] {
        assert!(
            notes.iter().all(|n| !n.contains(carried)),
            "`{carried}` is listed as not carried over: {notes:#?}"
        );
    }
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].contains("timeout client"), "{notes:#?}");
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

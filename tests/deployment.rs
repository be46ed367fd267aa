//! The deployment files work as shipped: every ssv-ha config in them passes `ssv-ha check`, what
//! the stacks and manifests reference exists and matches the gateway's config, the SSV node is
//! pointed at routes that exist, and the systemd unit's commands run as written.

mod common;

use common::*;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// Every document of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn check_config_text(text: &str, what: &str) -> ssv_ha::config::Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ssv-ha.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what} fails ssv-ha check:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ssv_ha::config::parse(text, dir.path()).unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

fn load(path: &Path) -> ssv_ha::config::Config {
    ssv_ha::config::load(path).unwrap_or_else(|e| panic!("{e}"))
}

/// The pool kind a URL the SSV node uses reaches in `config`, by its port (listener) and host.
fn pool_kind_for(config: &ssv_ha::config::Config, url: &str) -> ssv_ha::config::model::PoolKind {
    let url = url::Url::parse(url).unwrap_or_else(|e| panic!("`{url}`: {e}"));
    let port = url.port_or_known_default().unwrap();
    let listener = config
        .listeners
        .iter()
        .position(|l| l.address.port() == port)
        .unwrap_or_else(|| panic!("no ssv-ha listener on port {port} for {url}"));
    let table = ssv_ha::upstream::routing::RouteTable::for_listener(config, listener);
    let pool = table
        .lookup(url.host_str())
        .unwrap_or_else(|| panic!("no route for {url} on listener {listener}"));
    config.pools[pool].kind
}

fn assert_ssv_node_config_uses_routes(
    node_config: &Value,
    gateway: &ssv_ha::config::Config,
    what: &str,
) {
    use ssv_ha::config::model::PoolKind;
    let beacon = node_config["eth2"]["BeaconNodeAddr"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no eth2.BeaconNodeAddr"));
    let execution = node_config["eth1"]["ETH1Addr"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no eth1.ETH1Addr"));
    assert!(
        execution.starts_with("ws://") || execution.starts_with("wss://"),
        "{what}: the SSV node wants a WebSocket: {execution}"
    );
    assert_eq!(
        pool_kind_for(gateway, beacon),
        PoolKind::Consensus,
        "{what}: {beacon}"
    );
    assert_eq!(
        pool_kind_for(gateway, execution),
        PoolKind::Execution,
        "{what}: {execution}"
    );
}

/// Ports the ssv-ha config listens on (admin included).
fn gateway_ports(config: &ssv_ha::config::Config) -> BTreeSet<u16> {
    config
        .listeners
        .iter()
        .map(|l| l.address.port())
        .chain([config.admin.port()])
        .collect()
}

#[test]
fn swarm_stack_references_what_exists_and_matches_the_gateway() {
    let dir = root().join("docker");
    let stack = yaml(&dir.join("ssv.yml"));
    let configs = stack["configs"].as_mapping().expect("top-level configs");
    for (name, config) in configs {
        let file = config["file"]
            .as_str()
            .unwrap_or_else(|| panic!("config {name:?} has no file"));
        assert!(
            dir.join(file).is_file(),
            "config {name:?} points at missing {file}"
        );
    }
    let config_file = |name: &str| dir.join(stack["configs"][name]["file"].as_str().unwrap());
    let ha = &stack["services"]["ssv-ha"];
    let mounted = ha["configs"][0]["source"].as_str().unwrap();
    let gateway = load(&config_file(mounted));
    assert_eq!(ha["configs"][0]["target"], "/etc/ssv-ha/ssv-ha.yaml");
    assert!(
        ha["healthcheck"]["test"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v == "healthcheck"),
        "the health check uses ssv-ha itself"
    );
    assert_eq!(ha["deploy"]["replicas"], 2);
    assert_eq!(
        ha["deploy"]["update_config"]["parallelism"], 1,
        "never update both replicas at once"
    );
    assert_eq!(ha["deploy"]["update_config"]["order"], "start-first");
    assert!(
        !gateway.admin.ip().is_loopback(),
        "the admin listener must be reachable for the swarm's health checks and scraping"
    );

    let node = &stack["services"]["ssv-node"];
    let node_config = yaml(&config_file(node["configs"][0]["source"].as_str().unwrap()));
    assert_ssv_node_config_uses_routes(&node_config, &gateway, "docker/ssv.yml");
    for port in node["ports"].as_sequence().unwrap() {
        assert_eq!(port["mode"], "host", "P2P ports are published in host mode");
    }
    let p2p: BTreeSet<u64> = node["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["target"].as_u64().unwrap())
        .collect();
    let wanted: BTreeSet<u64> = [
        node_config["p2p"]["TcpPort"].as_u64().unwrap(),
        node_config["p2p"]["UdpPort"].as_u64().unwrap(),
    ]
    .into();
    assert_eq!(p2p, wanted, "published P2P ports match the SSV node config");
}

#[test]
fn compose_file_references_what_exists_and_matches_the_gateway() {
    let dir = root().join("docker");
    let compose = yaml(&dir.join("compose.yml"));
    let ha = &compose["services"]["ssv-ha"];
    assert_eq!(ha["build"]["dockerfile"], "docker/Dockerfile");
    assert!(dir
        .join(ha["build"]["context"].as_str().unwrap())
        .join("docker/Dockerfile")
        .is_file());
    let mut gateway = None;
    let mut node_config = None;
    for service in ["ssv-ha", "ssv-node"] {
        for volume in compose["services"][service]["volumes"]
            .as_sequence()
            .unwrap()
        {
            let spec = volume.as_str().unwrap();
            let (source, rest) = spec.split_once(':').unwrap();
            let target = rest.split(':').next().unwrap();
            if !source.starts_with('.') {
                continue; // a named volume
            }
            // Operator keys are the user's own and never committed.
            if source.starts_with("./secrets/") {
                continue;
            }
            let path = dir.join(source);
            assert!(path.is_file(), "{service} mounts missing {source}");
            match target {
                "/etc/ssv-ha/ssv-ha.yaml" => gateway = Some(load(&path)),
                "/config/config.yaml" => node_config = Some(yaml(&path)),
                _ => {}
            }
        }
    }
    let gateway = gateway.expect("ssv-ha gets its config");
    assert_ssv_node_config_uses_routes(
        &node_config.expect("the SSV node gets its config"),
        &gateway,
        "docker/compose.yml",
    );
    let published: Vec<u16> = ha["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    for port in published {
        assert!(
            gateway_ports(&gateway).contains(&port),
            "published port {port} is not one ssv-ha listens on"
        );
    }
}

#[test]
fn kubernetes_manifests_reference_what_exists_and_match_the_gateway() {
    let dir = root().join("docker/k8s");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            docs.extend(documents(&path));
        }
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in docker/k8s"))
            .clone()
    };
    let config_map = find("ConfigMap", "ssv-ha-config");
    let gateway = check_config_text(
        config_map["data"]["ssv-ha.yaml"].as_str().unwrap(),
        "the ssv-ha ConfigMap",
    );

    let deployment = find("Deployment", "ssv-ha");
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(
        spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_sequence()
    );
    let volume = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "ssv-ha-config");
    let container = &spec["containers"][0];
    let ports: Vec<(String, u16)> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    assert_eq!(
        ports.iter().map(|(_, p)| *p).collect::<BTreeSet<_>>(),
        gateway_ports(&gateway),
        "container ports are the ports ssv-ha listens on"
    );
    let admin_name = &ports
        .iter()
        .find(|(_, p)| *p == gateway.admin.port())
        .unwrap()
        .0;
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(
            container[probe]["httpGet"]["port"].as_str(),
            Some(admin_name.as_str())
        );
    }
    let service = find("Service", "ssv-ha");
    for port in service["spec"]["ports"].as_sequence().unwrap() {
        let target = port["targetPort"].as_str().unwrap();
        assert!(
            ports.iter().any(|(name, _)| name == target),
            "Service targets unknown port {target}"
        );
    }
    assert_eq!(
        find("PodDisruptionBudget", "ssv-ha")["spec"]["minAvailable"],
        1
    );

    let node_config_map = find("ConfigMap", "ssv-node-config");
    let node_config: Value =
        serde_yaml::from_str(node_config_map["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_ssv_node_config_uses_routes(&node_config, &gateway, "docker/k8s");
    let statefulset = find("StatefulSet", "ssv-node");
    let volumes = statefulset["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    assert!(volumes
        .iter()
        .any(|v| v["configMap"]["name"] == "ssv-node-config"));
}

/// The admin endpoints the deployment files probe are really served, and `ssv-ha healthcheck`
/// (the container health check) answers from the config.
#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_used_by_deployments_are_served() {
    let pki = Pki::new();
    let ec = pki
        .node(ssv_ha::sim::NodeKind::Execution, "ec-a", Default::default())
        .await;
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&ec, false)],
    );
    let (gw, _) = start_on(&pools, EC_ROUTE).await;
    let admin = gw.admin;
    gw.wait_backend("execution", "ec-a", true).await;
    for path in ["/healthz", "/readyz", "/metrics", "/status"] {
        let r = reqwest::get(format!("http://{admin}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // A copy outlives the gateway's temp dir, for the last check.
    let config_path = pki.dir.path().join("ssv-ha.yaml");
    std::fs::copy(&gw.config_path, &config_path).unwrap();
    let healthcheck = |ready: bool| {
        let config_path = config_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssv-ha"));
            cmd.args(["healthcheck", "-c"]).arg(&config_path);
            if ready {
                cmd.arg("--ready");
            }
            cmd.output().unwrap()
        })
    };
    assert!(healthcheck(false).await.unwrap().status.success());
    assert!(healthcheck(true).await.unwrap().status.success());
    ec.set(|s| s.syncing = true);
    gw.wait_backend("execution", "ec-a", false).await;
    let not_ready = healthcheck(true).await.unwrap();
    assert_eq!(not_ready.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_ready.stderr).contains("no healthy backend in: execution"));
    assert!(
        healthcheck(false).await.unwrap().status.success(),
        "alive even with no healthy backend"
    );
    drop(gw);
    let down = healthcheck(false).await.unwrap();
    assert_eq!(down.status.code(), Some(1), "nothing listens any more");
}

/// The unit's ExecStartPre, ExecStart and ExecReload lines, run as written (binary and config
/// paths swapped for this checkout's).
#[tokio::test(flavor = "multi_thread")]
async fn systemd_unit_commands_run_as_written() {
    let unit = std::fs::read_to_string(root().join("conf/systemd/ssv-ha.service")).unwrap();
    let line = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit has no {key}"))
            .to_string()
    };
    for hardening in [
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "User=ssv-ha",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "missing {hardening}");
    }
    let nofile: u64 = line("LimitNOFILE").parse().unwrap();
    assert!(
        nofile >= 2 * 2 * ssv_ha::config::model::DEFAULT_MAX_WEBSOCKETS as u64,
        "LimitNOFILE too low for the WebSocket cap"
    );

    let binary = env!("CARGO_BIN_EXE_ssv-ha");
    let argv = |command: &str, config: &Path| -> Vec<String> {
        let command = command
            .replace("/usr/local/bin/ssv-ha", binary)
            .replace("/etc/ssv-ha/ssv-ha.yaml", &config.display().to_string());
        command.split_whitespace().map(str::to_string).collect()
    };
    // ExecStartPre against the shipped example.
    let pre = argv(&line("ExecStartPre"), &root().join("conf/ssv-ha.yaml"));
    let out = Command::new(&pre[0]).args(&pre[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{pre:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ExecStart on a config with free ports, then ExecReload: the process must stay up.
    let pki = Pki::new();
    let ec = pki
        .node(ssv_ha::sim::NodeKind::Execution, "ec-a", Default::default())
        .await;
    let (admin, listen) = (free_addr(), free_addr());
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&ec, false)],
    );
    let config_path = pki.dir.path().join("ssv-ha.yaml");
    std::fs::write(&config_path, config(admin, listen, &pools, EC_ROUTE)).unwrap();
    let start = argv(&line("ExecStart"), &config_path);
    let mut child = Command::new(&start[0]).args(&start[1..]).spawn().unwrap();
    let client = reqwest::Client::new();
    let healthy = || {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://{admin}/healthz"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    };
    wait_for("ExecStart to serve", Duration::from_secs(10), healthy).await;
    let reload = line("ExecReload").replace("$MAINPID", &child.id().to_string());
    let reload: Vec<&str> = reload.split_whitespace().collect();
    assert!(Command::new(reload[0])
        .args(&reload[1..])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "ExecReload must not stop the process"
    );
    wait_for(
        "the gateway to serve after a reload",
        Duration::from_secs(5),
        healthy,
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
}

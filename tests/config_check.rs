//! `ssv-ha check` on every shipped configuration, and on broken ones.

use std::path::{Path, PathBuf};
use std::process::Command;

fn check(path: &Path) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssv-ha"));
    command.args(["check", "-c"]).arg(path);
    // Secrets a config takes from the environment (`${NAME}`) are set where it is deployed;
    // here any value will do.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for reference in text.split("${").skip(1) {
        if let Some((name, _)) = reference.split_once('}') {
            command.env(name, "placeholder");
        }
    }
    let out = command.output().expect("run ssv-ha check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every ssv-ha configuration shipped in the repository: `conf/*.yaml` and `docker/**/*.yaml`
/// files that look like one (they have `listeners:` and `pools:`).
fn shipped_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut dirs = vec![root.join("conf"), root.join("docker")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.lines().any(|l| l.starts_with("listeners:"))
                    && text.lines().any(|l| l.starts_with("pools:"))
                {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_shipped_config_passes_check() {
    let configs = shipped_configs();
    assert!(
        configs.len() >= 3,
        "expected the conf/ examples, found {configs:?}"
    );
    for path in configs {
        let (code, stdout, stderr) = check(&path);
        assert_eq!(code, 0, "{} fails ssv-ha check:\n{stderr}", path.display());
        assert!(stdout.contains("valid"), "{stdout}");
    }
}

#[test]
fn a_broken_config_lists_every_error_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        r#"
listeners:
  - address: 0.0.0.0:80
    tls: { cert: missing.crt, key: missing.key }
pools:
  execution:
    kind: execution
    policy: fastest
    backends: [{ name: ec-a, url: "https://a.example.com" }]
  consensus:
    kind: consensus
    health: { interval: 1s, timeout: 5s }
    backends: [{ name: "cc a", url: "tcp://b.example.com" }]
routes:
  - { host: rpc.example.com, pool: executoin }
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, 64, "stdout: {stdout}\nstderr: {stderr}");
    for expected in [
        "6 errors",
        "listeners[0].tls: cannot read",
        "pools.execution: unknown variant `fastest`",
        "pools.consensus.health.timeout",
        "pools.consensus.backends[0].name",
        "pools.consensus.backends[0].url: scheme `tcp` is not supported",
        "routes[0].pool: no pool named `executoin` (hint: pools: consensus)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn run_refuses_a_bad_config_before_binding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "listeners: []\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listeners: at least one listener"),
        "{stderr}"
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .args(["check", "-c", "/nonexistent/ssv-ha.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/ssv-ha.yaml")
    );
}

//! The benchmark harness in its smoke mode (a few seconds, small counts), so it cannot rot: it
//! starts the backends, ssv-ha (this build), haproxy and nginx, measures each in turns and prints
//! the comparison tables. The numbers of a debug build mean nothing; that the harness runs does.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The harness's WebSocket/SSE load tool, an example of this package: `cargo test --all-targets`
/// has built it beside the binary; a narrower `cargo test` run builds it here.
fn bench_load() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_ssv-ha"));
    let tool = bin.with_file_name("examples").join("bench-load");
    if !tool.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--example", "bench-load"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the bench-load example failed");
    }
    tool
}

#[test]
fn benchmark_harness_runs_end_to_end() {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/run"))
        .arg("--smoke")
        .env("SSV_HA_BIN", env!("CARGO_BIN_EXE_ssv-ha"))
        // This build as its own baseline: the same-turns comparison with a build before runs.
        .env("SSV_HA_BASELINE_BIN", env!("CARGO_BIN_EXE_ssv-ha"))
        .env("BENCH_LOAD_BIN", bench_load())
        .output()
        .expect("run benches/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "benches/run --smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The cost of health checking: one batch per 5 s interval is 0.2 requests/s to the backend.
    let checks: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ssv-ha health checks: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no health-check cost line in:\n{stdout}"));
    assert!(
        checks <= 0.5,
        "health checks cost {checks} requests/s, more than one per interval"
    );
    for row in [
        "| small-32 | ssv-ha |",
        "| small-32 | haproxy |",
        "| small-32 | nginx |",
        "| body-1MB | ssv-ha |",
        "| ws-1 | ssv-ha |",
        "| ws-100 | haproxy |",
        "| sse-1000 | nginx |",
        "| ws-idle | ssv-ha |",
        "| ws-100 | ssv-ha-seamless |",
        "| ws-subscribed | ssv-ha |",
        "| ws-subscribed | ssv-ha-seamless |",
        "| startup-32 | ssv-ha |",
        "| startup-32 | ssv-ha-nocache |",
        "| startup-32 | haproxy |",
        "| startup-32 | nginx |",
        "| hedge-32 | ssv-ha |",
        "| hedge-32 | ssv-ha-nohedge |",
        "| small-32 | ssv-ha-base |",
        "| ws-100 | ssv-ha-base-seamless |",
        "small-32: ssv-ha ",
        "ws-100: ssv-ha-seamless ",
        "ws-100: sessions: seamless ",
    ] {
        assert!(stdout.contains(row), "missing `{row}` in:\n{stdout}");
    }
    // Through ssv-ha, every stream scenario moved something: messages answered, events delivered
    // (a proxy that buffered SSE would deliver none in the window), memory read.
    for (scenario, target) in [
        ("ws-1", "ssv-ha"),
        ("ws-100", "ssv-ha"),
        ("sse-1000", "ssv-ha"),
        ("ws-idle", "ssv-ha"),
        ("ws-1", "ssv-ha-seamless"),
        ("ws-100", "ssv-ha-seamless"),
        ("ws-100", "ssv-ha-base-seamless"),
    ] {
        let prefix = format!("| {scenario} | {target} | ");
        let figure: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no figure for {scenario} in:\n{stdout}"));
        assert!(
            figure > 0.0,
            "{scenario} through {target} measured {figure}"
        );
    }
}

//! The status page, loaded in headless Chromium (Debian's `chromium`, installed by scripts/test):
//! it shows the healthy and the unhealthy backend with the unhealthy one's reason, and the failover
//! from one to the other in its recent events. The run leaves a screenshot in
//! `target/status-page.png`.

mod common;

use common::*;
use ssv_ha::sim::{NodeKind, NodeStatus};
use std::path::PathBuf;
use std::process::Command;

fn chromium() -> PathBuf {
    let path = PathBuf::from(
        std::env::var_os("SSV_HA_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()),
    );
    assert!(
        path.exists(),
        "CHROMIUM MISSING: {} not found; scripts/test installs Debian's chromium",
        path.display()
    );
    path
}

fn headless(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("run chromium")
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_shows_backends_and_reasons_in_a_browser() {
    let pki = Pki::new();
    let good = pki
        .node(NodeKind::Execution, "ec-good", NodeStatus::default())
        .await;
    // Healthy at first; it loses its peers once it carries the traffic.
    let lonely = pki
        .node(NodeKind::Execution, "ec-lonely", NodeStatus::default())
        .await;
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&lonely, false), (&good, true)],
    );
    let (gw, _) = start_on(&pools, EC_ROUTE).await;
    let admin = gw.admin;
    gw.wait_backend("execution", "ec-good", true).await;
    gw.wait_backend("execution", "ec-lonely", true).await;
    lonely.set(|s| s.peers = 2);
    gw.wait_backend("execution", "ec-lonely", false).await;
    wait_for(
        "the failover in /status events",
        std::time::Duration::from_secs(10),
        || async {
            let status = gw.status().await;
            status["events"]
                .as_array()?
                .iter()
                .any(|e| e["kind"] == "failover")
                .then_some(())
        },
    )
    .await;

    let url = format!("http://{admin}/");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || headless(&["--dump-dom".into(), url])
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("<title>ssv-ha status</title>"), "{dom}");
    let row = |name: &str| {
        let start = dom
            .find(&format!("id=\"backend-{name}\""))
            .unwrap_or_else(|| panic!("no row for {name} in {dom}"));
        let end = dom[start..].find("</tr>").unwrap() + start;
        dom[start..end].to_string()
    };
    let good_row = row("ec-good");
    assert!(
        good_row.contains(">up<") && good_row.contains(">active<"),
        "{good_row}"
    );
    let lonely_row = row("ec-lonely");
    assert!(
        lonely_row.contains(">down<") && lonely_row.contains("peers 2 &lt; 10"),
        "{lonely_row}"
    );
    assert!(dom.contains("Traffic goes to <b>ec-good</b>"), "{dom}");
    // Under the tables, the recent events, newest first: the failover with its reason, after
    // the transition that caused it.
    let events_at = dom
        .find("id=\"events\"")
        .unwrap_or_else(|| panic!("no recent events in {dom}"));
    assert!(
        events_at > dom.find("id=\"backend-ec-good\"").unwrap(),
        "{dom}"
    );
    let events = &dom[events_at..];
    let failover = events
        .find("<tr class=\"event failover\">")
        .unwrap_or_else(|| panic!("no failover listed in {events}"));
    let failover_row = &events[failover..failover + events[failover..].find("</tr>").unwrap()];
    assert!(
        failover_row.contains(">ec-good<")
            && failover_row.contains("ec-lonely -&gt; ec-good: ec-lonely is down (peers 2 &lt; 10"),
        "{failover_row}"
    );
    let down = events
        .find("<tr class=\"event backend_down\">")
        .unwrap_or_else(|| panic!("no backend_down listed in {events}"));
    assert!(failover < down, "newest first: {events}");

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    let _ = std::fs::remove_file(&shot);
    // `target/` is not there when the build went to another CARGO_TARGET_DIR.
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let out = tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            headless(&[
                format!("--screenshot={}", shot.display()),
                "--window-size=1400,700".into(),
                url,
            ])
        }
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
}

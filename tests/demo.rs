//! `ssv-ha demo`, driven the way the README tells a user to: start it, call through it, press `1`
//! to make the execution primary fail, watch the backup take over and the primary come back; its
//! first screen holds the instructions and none of Pingora's start-up lines; `scripts/demo`
//! installs what the build needs only when it is missing.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn answered_by(client: &reqwest::Client, url: &str, expected: &str) {
    wait_for(
        &format!("a JSON-RPC answer from {expected}"),
        Duration::from_secs(10),
        || async {
            let response = client
                .post(url)
                .json(&rpc("eth_blockNumber", 1))
                .send()
                .await
                .ok()?;
            let node = response
                .headers()
                .get("x-sim-node")?
                .to_str()
                .ok()?
                .to_string();
            (response.status() == 200 && node == expected).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_both_kinds_and_shows_a_failover() {
    let (ec, cc, admin) = (free_addr(), free_addr(), free_addr());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .arg("demo")
        .args([
            "--execution-listen",
            &ec.to_string(),
            "--consensus-listen",
            &cc.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ssv-ha demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut stdin = child.stdin.take().expect("stdin");
    let _demo = Demo(child);

    // The printed instructions name the gateway's addresses and end with a ready line.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = String::new();
    while !printed.contains("ssv-ha demo ready") {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the demo prints its instructions");
        printed.push_str(&line);
        printed.push('\n');
    }
    assert!(
        printed.contains(&format!("http://{ec}"))
            && printed.contains(&format!("http://{admin}/status")),
        "{printed}"
    );

    let client = reqwest::Client::new();
    let url = format!("http://{ec}/");
    answered_by(&client, &url, "ec-a").await;
    let beacon = client
        .get(format!("http://{cc}/eth/v1/node/syncing"))
        .send()
        .await
        .unwrap();
    assert_eq!(beacon.status(), 200);
    assert_eq!(beacon.headers()["x-sim-node"], "cc-a");

    writeln!(stdin, "1").unwrap();
    let said = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the demo answers the key");
    assert!(said.contains("ec-a now reports syncing"), "{said}");
    answered_by(&client, &url, "ec-b").await;
    let status: serde_json::Value = reqwest::get(format!("http://{admin}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ec_a = Gateway::backend_status(&status, "execution", "ec-a");
    assert!(
        ec_a["reason"].as_str().unwrap().starts_with("syncing"),
        "{ec_a:#}"
    );

    writeln!(stdin, "1").unwrap();
    answered_by(&client, &url, "ec-a").await;
}

/// Pingora's start-up lines at `info` (pingora-core 0.9: `Server::bootstrap`, `run_forever` and
/// each service's start), which pushed the demo's instructions off the screen.
const FRAMEWORK_START_UP: [&str; 6] = [
    "Bootstrap starting",
    "Bootstrap done",
    "Server starting",
    "Starting service",
    "will wait for dependencies",
    "waiting on dependencies",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_first_screen_shows_the_instructions_without_framework_start_up_lines() {
    let (ec, cc, admin) = (free_addr(), free_addr(), free_addr());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssv-ha"))
        .arg("demo")
        .args([
            "--execution-listen",
            &ec.to_string(),
            "--consensus-listen",
            &cc.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        // What a user's terminal gets by default.
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ssv-ha demo");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let _demo = Demo(child);
    for (stream, tx) in [
        (
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            tx.clone(),
        ),
        (Box::new(stderr), tx),
    ] {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut screen: Vec<String> = Vec::new();
    let next_line = |screen: &mut Vec<String>, waiting_for: &str| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no {waiting_for} within 15 s; the demo showed:\n{}",
                screen.join("\n")
            )
        });
        screen.push(line);
    };
    while !screen.iter().any(|l| l.contains("ssv-ha demo ready")) {
        next_line(&mut screen, "instructions");
    }
    // The gateway serves once every service has started: a request's access line comes after
    // whatever the start-up printed (stderr keeps its order).
    let client = reqwest::Client::new();
    answered_by(&client, &format!("http://{ec}/"), "ec-a").await;
    while !screen
        .iter()
        .any(|l| l.contains("access") && l.contains("eth_blockNumber"))
    {
        next_line(&mut screen, "access line of a request");
    }
    let shown = screen.join("\n");
    for instruction in [
        "Try, in another terminal:",
        &format!("curl -s http://{admin}/status"),
        "Make a primary fail here",
    ] {
        assert!(shown.contains(instruction), "{instruction:?} in:\n{shown}");
    }
    for framework in FRAMEWORK_START_UP {
        assert!(
            !shown.contains(framework),
            "Pingora's {framework:?} on the demo's screen:\n{shown}"
        );
    }
    assert!(
        shown.contains("backend up"),
        "health transitions are shown:\n{shown}"
    );
}

/// A directory for PATH holding only what `scripts/demo --check-only` / `--install-only` need,
/// plus `apt-get` and `sudo` stand-ins that record their arguments in `calls`; with `build_tools`,
/// `cmake` and `cc` too.
fn fake_path(build_tools: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let which = |tool: &str| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let path = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(!path.is_empty(), "{tool} is on this machine");
        path
    };
    let mut tools = vec!["bash", "dirname", "id"];
    if build_tools {
        tools.extend(["cmake", "cc"]);
    }
    for tool in tools {
        std::os::unix::fs::symlink(which(tool), dir.path().join(tool)).unwrap();
    }
    for stub in ["apt-get", "sudo"] {
        let path = dir.path().join(stub);
        std::fs::write(
            &path,
            format!(
                "#!{}\necho \"{stub} $*\" >> '{}'\n",
                which("bash"),
                calls.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (dir, calls)
}

fn run_demo_script(path: &std::path::Path, arg: &str) -> (Option<i32>, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo");
    let out = Command::new(script)
        .arg(arg)
        .env("PATH", path)
        .output()
        .expect("run scripts/demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_demo_script_installs_only_what_is_missing() {
    // Everything present: nothing is installed, and it says so.
    let (all, calls) = fake_path(true);
    for mode in ["--check-only", "--install-only"] {
        let (code, said) = run_demo_script(all.path(), mode);
        assert_eq!(code, Some(0), "{mode}: {said}");
        assert!(said.contains("nothing to install"), "{mode}: {said}");
    }
    assert!(!calls.exists(), "apt-get was run with nothing missing");

    // cmake and the C compiler missing: --check-only names them and installs nothing ...
    let (bare, calls) = fake_path(false);
    let (code, said) = run_demo_script(bare.path(), "--check-only");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("would install Debian packages: cmake gcc"),
        "{said}"
    );
    assert!(!calls.exists(), "--check-only ran apt-get");
    // ... and --install-only installs them (apt-get here records what it was asked).
    let (code, said) = run_demo_script(bare.path(), "--install-only");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("installing Debian packages: cmake gcc"),
        "{said}"
    );
    let asked = std::fs::read_to_string(&calls).expect("apt-get was run");
    assert!(asked.contains("install -y -qq cmake gcc"), "{asked}");
}

/// Not root: apt-get runs through sudo, and sudo resets the environment (`env_reset`, on by
/// default: `DEBIAN_FRONTEND=noninteractive sudo env` prints no DEBIAN_FRONTEND), so
/// `DEBIAN_FRONTEND=noninteractive $sudo apt-get ...` reaches apt-get without it and a package's
/// debconf question can wait, invisible behind `>/dev/null`. The stand-ins here: `id` says 1000,
/// `sudo` resets the environment as the real one does, `apt-get` records what it got.
#[test]
fn apt_get_through_sudo_is_noninteractive() {
    let (dir, calls) = fake_path(false);
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write("id", "echo 1000");
    write("sudo", "exec /usr/bin/env -i PATH=\"$PATH\" \"$@\"");
    write(
        "apt-get",
        &format!(
            "echo \"apt-get $* DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-unset}}\" >> '{}'",
            calls.display()
        ),
    );
    let (code, said) = run_demo_script(dir.path(), "--install-only");
    assert_eq!(code, Some(0), "{said}");
    let asked = std::fs::read_to_string(&calls).expect("apt-get was run");
    let install = asked
        .lines()
        .find(|l| l.contains(" install "))
        .unwrap_or_else(|| panic!("no install in {asked}"));
    assert!(
        install.contains("DEBIAN_FRONTEND=noninteractive"),
        "apt-get install ran without DEBIAN_FRONTEND=noninteractive: {install}"
    );
}

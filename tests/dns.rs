//! Backend names are resolved again on every check: a name that does not resolve is a down backend
//! with that reason (at start too, not a crash), and it comes back when the name resolves again.
//! The name is switched on and off in /etc/hosts, so this test needs to write there (CI runs as
//! root).

mod common;

use common::*;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

const HOSTS: &str = "/etc/hosts";

/// One line of /etc/hosts, appended for the test and switched on and off by overwriting it in
/// place with text of the same length (other tests resolve `localhost` meanwhile: the file never
/// shrinks or tears while they read it). Removed on drop.
struct HostsEntry {
    offset: u64,
    line: String,
}

impl HostsEntry {
    fn new(name: &str) -> HostsEntry {
        let mut file = OpenOptions::new().append(true).read(true).open(HOSTS).unwrap_or_else(|e| {
            panic!("this test switches a name in {HOSTS} and cannot write it ({e}); run it as root, as CI does")
        });
        let offset = file.seek(SeekFrom::End(0)).unwrap();
        let line = format!("127.0.0.1 {name}");
        let entry = HostsEntry { offset, line };
        file.write_all(entry.text(false).as_bytes()).unwrap();
        entry
    }

    fn text(&self, on: bool) -> String {
        if on {
            format!("{}\n", self.line)
        } else {
            format!("#{}\n", " ".repeat(self.line.len() - 1))
        }
    }

    fn set(&self, on: bool) {
        let file = OpenOptions::new().write(true).open(HOSTS).unwrap();
        file.write_all_at(self.text(on).as_bytes(), self.offset)
            .unwrap();
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(file) = OpenOptions::new().write(true).open(HOSTS) {
            let _ = file.set_len(self.offset);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_stops_resolving_is_down_and_comes_back() {
    let name = format!("ssv-ha-dns-{}.test", std::process::id());
    let entry = HostsEntry::new(&name);
    let node = SimNode::start(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await
        .unwrap();
    let url = format!("http://{name}:{}", node.addr().port());
    let (admin, listen) = (free_addr(), free_addr());
    let yaml = format!(
        "admin: {{ address: \"{admin}\" }}\nlisteners: [{{ address: \"{listen}\" }}]\npools:\n  execution:\n    kind: execution\n    health: {FAST_HEALTH}\n    backends: [{{ name: ec-a, url: \"{url}\" }}]\nroutes:\n{EC_ROUTE}"
    );
    // Not resolvable at start: the gateway starts anyway, with the backend down and why.
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    let down = gw.wait_backend("execution", "ec-a", false).await;
    assert!(
        down["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot resolve {name}")),
        "{down:#}"
    );
    let client = reqwest::Client::new();
    assert_eq!(who_answers(&client, listen).await.0, 503);

    entry.set(true);
    gw.wait_backend("execution", "ec-a", true).await;
    assert_eq!(
        who_answers(&client, listen).await,
        (200, Some("ec-a".to_string()))
    );
    let seen = node.seen().into_iter().find(|r| !r.probe).unwrap();
    assert_eq!(
        seen.host.as_deref(),
        Some(format!("{name}:{}", node.addr().port()).as_str()),
        "the backend's own name as Host"
    );

    entry.set(false);
    let gone = gw.wait_backend("execution", "ec-a", false).await;
    assert!(
        gone["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot resolve {name}")),
        "{gone:#}"
    );
    entry.set(true);
    gw.wait_backend("execution", "ec-a", true).await;
}

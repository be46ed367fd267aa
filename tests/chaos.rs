//! Chaos under load: steady traffic through the gateway to three simulated nodes while nodes are
//! killed, frozen, made to lag or to answer 502, and restored, at random (seeded: set
//! SSV_HA_CHAOS_SEED to replay a run). One node is always left alone, so every request must get a
//! correct answer; any 503 must be well-formed. No file descriptor or memory growth beyond a bound.

mod common;

use common::chaos::{process_stats, Rng};
use common::*;
use serde_json::Value;
use ssv_ha::sim::{NodeKind, NodeStatus, SimNode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Killed,
    Frozen,
    Lagging,
    Failing,
}

fn apply(node: &SimNode, fault: Fault) {
    match fault {
        Fault::Killed => node.go_down(),
        Fault::Frozen => node.set(|s| s.delay_ms = 3_000),
        Fault::Lagging => node.set(|s| s.head = s.head.saturating_sub(100)),
        Fault::Failing => node.set(|s| s.fail_status = Some(502)),
    }
}

fn restore(node: &SimNode, fault: Fault, head: u64) {
    match fault {
        Fault::Killed => node.come_back().expect("the node listens again"),
        Fault::Frozen => node.set(|s| s.delay_ms = 0),
        Fault::Lagging => node.set(|s| s.head = head),
        Fault::Failing => node.set(|s| s.fail_status = None),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_request_is_lost_while_one_node_is_healthy() {
    let mut rng = Rng::seeded(0x5eed_55a1);

    let pki = Pki::new();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Arc::new(
            pki.node(
                NodeKind::Execution,
                &format!("ec-{i}"),
                NodeStatus::default(),
            )
            .await,
        ));
    }
    let (admin, listen) = (free_addr(), free_addr());
    let refs: Vec<(&SimNode, bool)> = nodes.iter().map(|n| (n.as_ref(), false)).collect();
    let pools = pool_yaml("execution", "execution", "round_robin", &pki.ca_file, &refs);
    let yaml = format!(
        "timeouts: {{ connect: 1s, response: 1s }}\nretries: 2\n{}",
        config(admin, listen, &pools, EC_ROUTE)
    );
    let gw = Gateway::start(&yaml, admin, &[listen]).await;
    for i in 0..3 {
        gw.wait_backend("execution", &format!("ec-{i}"), true).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, unavailable) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (stop, ok, unavailable, failures) = (
                stop.clone(),
                ok.clone(),
                unavailable.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut id = c * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    let sent = client
                        .post(format!("http://{listen}/"))
                        .header("host", "rpc.example.com")
                        .json(&rpc("eth_blockNumber", id))
                        .send()
                        .await;
                    let verdict = match sent {
                        Err(e) => Err(format!("transport error: {e}")),
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            match status {
                                200 if body["id"] == id
                                    && body["result"]
                                        .as_str()
                                        .is_some_and(|h| h.starts_with("0x")) =>
                                {
                                    Ok(true)
                                }
                                503 if body["id"] == id && body["error"]["code"].is_i64() => {
                                    Ok(false)
                                }
                                _ => Err(format!("status {status}: {body}")),
                            }
                        }
                    };
                    match verdict {
                        Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(false) => unavailable.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            0
                        }
                    };
                }
            })
        })
        .collect();

    // Warm up, then take the baseline of the gateway's resources.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_before, rss_before) = process_stats(gw.pid());
    let head = nodes[0].status().head;
    let mut faults: Vec<Option<Fault>> = vec![None; 3];
    let started = Instant::now();
    let mut events = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let i = rng.below(3) as usize;
        match faults[i] {
            Some(fault) => {
                restore(&nodes[i], fault, head);
                faults[i] = None;
                events.push(format!("restore ec-{i} from {fault:?}"));
            }
            // Never touch the last node left alone.
            None if faults.iter().filter(|f| f.is_none()).count() > 1 => {
                let fault = [Fault::Killed, Fault::Frozen, Fault::Lagging, Fault::Failing]
                    [rng.below(4) as usize];
                apply(&nodes[i], fault);
                faults[i] = Some(fault);
                events.push(format!("{fault:?} ec-{i}"));
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(150 + rng.below(200))).await;
    }
    for (i, fault) in faults.iter().enumerate() {
        if let Some(fault) = fault {
            restore(&nodes[i], *fault, head);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    // Let the last sessions and pooled connections to killed nodes settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_after, rss_after) = process_stats(gw.pid());

    let failures = failures.lock().unwrap();
    let (ok, unavailable) = (
        ok.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed),
    );
    eprintln!("{} events; {ok} answered, {unavailable} well-formed 503, {} failures; fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} kB", events.len(), failures.len());
    assert!(events.len() >= 15, "the chaos did happen: {events:?}");
    assert!(ok > 500, "traffic flowed: {ok}");
    assert!(
        failures.is_empty(),
        "lost or mangled requests ({}), first: {:?}; events: {events:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(
        unavailable, 0,
        "one node was healthy all along, so nothing should be refused; events: {events:?}"
    );
    assert!(
        fds_after <= fds_before + 64,
        "file descriptors grew from {fds_before} to {fds_after}"
    );
    assert!(
        rss_after <= rss_before + 64 * 1024,
        "memory grew from {rss_before} kB to {rss_after} kB"
    );
}

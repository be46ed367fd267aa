//! Every metric in the metrics table of `docs/monitoring.md` is served by a running gateway, with the documented type
//! and labels; and the failover metrics move when traffic moves.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};

/// (name -> (type, labels)) from the metrics table of `docs/monitoring.md`.
fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/monitoring.md"))
        .unwrap();
    let mut metrics = BTreeMap::new();
    for line in page.lines().filter(|l| l.starts_with("| `ssv_ha_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let kind = cells[2].to_string();
        // Label names are the backticked words outside parentheses (which list their values).
        let mut outside = String::new();
        let mut depth = 0;
        for c in cells[3].chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                c if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        let labels = outside
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        metrics.insert(name, (kind, labels));
    }
    metrics
}

/// (name -> (type, label sets seen)) from a Prometheus text exposition.
fn served(text: &str) -> BTreeMap<String, (String, Vec<BTreeSet<String>>)> {
    let mut metrics: BTreeMap<String, (String, Vec<BTreeSet<String>>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            metrics.entry(name.to_string()).or_default().0 = kind.to_string();
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, _) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| metrics.contains_key(*b)))
                .unwrap_or(name);
            let labels: BTreeSet<String> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| l.split('=').next().unwrap().to_string())
                .filter(|l| l != "le")
                .collect();
            metrics.entry(base.to_string()).or_default().1.push(labels);
        }
    }
    metrics
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_metric_is_served_with_its_labels() {
    let EcPair {
        pki: _pki,
        a,
        b: _b,
        gw,
        listen,
    } = ec_pair("").await;
    let client = reqwest::Client::new();
    assert_eq!(
        who_answers(&client, listen).await.1.as_deref(),
        Some("ec-a")
    );

    let documented = documented();
    assert!(
        documented.len() >= 15,
        "the table in docs/monitoring.md lists the metrics: {documented:?}"
    );
    let text = gw.metrics().await;
    let served = served(&text);
    for (name, (kind, labels)) in &documented {
        let (served_kind, label_sets) = served
            .get(name)
            .unwrap_or_else(|| panic!("{name} is documented but not served:\n{text}"));
        assert_eq!(served_kind, kind, "{name}: type");
        assert!(
            label_sets.iter().all(|l| l == labels),
            "{name}: labels {label_sets:?}, documented {labels:?}"
        );
    }
    for name in served.keys() {
        assert!(
            documented.contains_key(name),
            "{name} is served but not in the table in docs/monitoring.md"
        );
    }

    // The primary fails: traffic moves, and the metrics say so.
    a.set(|s| s.syncing = true);
    gw.wait_backend("execution", "ec-a", false).await;
    assert_eq!(
        who_answers(&client, listen).await.1.as_deref(),
        Some("ec-b")
    );
    let text = gw.metrics().await;
    assert!(
        text.contains("ssv_ha_failovers_total{pool=\"execution\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ssv_ha_pool_active_backend{backend=\"ec-b\",pool=\"execution\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ssv_ha_pool_active_backend{backend=\"ec-a\",pool=\"execution\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("ssv_ha_requests_total{backend=\"ec-a\",class=\"2xx\",pool=\"execution\"} 1"),
        "{text}"
    );
}

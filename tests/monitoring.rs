//! The monitoring that ships with ssv-ha (`docker/monitoring/`: the Grafana dashboard, the
//! Prometheus alerting rules and scrape config, and their compose and Kubernetes wiring) names only
//! metrics and labels a running gateway serves, and is well formed: the rules pass `promtool check
//! rules` and their own `promtool test rules` cases, the dashboard's panels all query through its
//! data source variable, and the Kubernetes PrometheusRule holds the same rules as the file.

mod common;

use common::*;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use ssv_ha::sim::{NodeKind, NodeStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn monitoring(file: &str) -> PathBuf {
    root().join("docker/monitoring").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Yaml {
    serde_yaml::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn dashboard() -> Json {
    let path = monitoring("ssv-ha-dashboard.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn rules() -> Yaml {
    yaml(&monitoring("ssv-ha-alerts.yaml"))
}

/// Labels Prometheus adds to every series it scrapes (and `le`, a histogram bucket's bound).
const TARGET_LABELS: [&str; 3] = ["instance", "job", "le"];

/// Words of PromQL that are neither metrics nor functions called with `(` right after them:
/// aggregation operators (`sum by (pool) (...)`), modifiers and binary operators.
const KEYWORDS: [&str; 23] = [
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];

/// Keywords followed by a list of label names in parentheses.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// What a PromQL expression names.
#[derive(Debug, Default)]
struct Names {
    metrics: BTreeSet<String>,
    /// Label names in selectors' matchers (`{pool=~"$pool"}`).
    matched: BTreeSet<String>,
    /// Label names in `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` lists.
    grouped: BTreeSet<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A small PromQL tokenizer: identifiers outside strings, selectors' braces, range brackets and
/// label lists are metric names, unless a `(` follows (a function) or they are keywords. Grafana's
/// variables (`$pool`, `$__rate_interval`) are skipped.
fn names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Names::default();
    let mut i = 0;
    let next_non_space = |from: usize| {
        (from..chars.len())
            .map(|j| (j, chars[j]))
            .find(|(_, c)| !c.is_whitespace())
    };
    let skip_string = |from: usize| {
        let quote = chars[from];
        let mut j = from + 1;
        while j < chars.len() && chars[j] != quote {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    let ident_end = |from: usize| {
        let mut j = from;
        while j < chars.len() && is_ident(chars[j]) {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '{' {
            // Matchers: `label op "value"`, separated by commas.
            i += 1;
            while i < chars.len() && chars[i] != '}' {
                let c = chars[i];
                if c == '"' || c == '\'' || c == '`' {
                    i = skip_string(i);
                } else if is_ident_start(c) {
                    let end = ident_end(i);
                    names.matched.insert(chars[i..end].iter().collect());
                    i = end;
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                i = ident_end(i);
            }
        } else if c.is_ascii_digit() || c == '.' {
            // A number (0.99, 1e3) or a duration (5m).
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let end = ident_end(i);
            let word: String = chars[i..end].iter().collect();
            let next = next_non_space(end);
            i = end;
            if GROUPING.contains(&word.as_str()) {
                if let Some((open, '(')) = next {
                    let close = (open..chars.len())
                        .find(|&j| chars[j] == ')')
                        .unwrap_or(chars.len());
                    let list: String = chars[open + 1..close].iter().collect();
                    names.grouped.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_string),
                    );
                    i = close + 1;
                }
            } else if KEYWORDS.contains(&word.as_str()) || matches!(next, Some((_, '('))) {
                // An operator or a function.
            } else {
                names.metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Grafana's `label_values(selector, label)`: the selector's names, and the label.
fn variable_names(query: &str) -> Names {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("a variable query is label_values(metric, label): {query}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let mut names = names(selector);
    names.grouped.insert(label.trim().to_string());
    names
}

/// What a Prometheus text exposition serves: `# TYPE` per name, and the label names of each
/// base name's series.
struct Served {
    types: BTreeMap<String, String>,
    labels: BTreeMap<String, BTreeSet<String>>,
}

impl Served {
    fn parse(text: &str) -> Served {
        let mut types = BTreeMap::new();
        let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (series, _) = line.rsplit_once(' ').unwrap();
                let (name, set) = series.split_once('{').unwrap_or((series, "}"));
                let base = Self::base(&types, name).unwrap_or(name);
                let entry = labels.entry(base.to_string()).or_default();
                for pair in set.trim_end_matches('}').split(',') {
                    if let Some((label, _)) = pair.split_once('=') {
                        entry.insert(label.to_string());
                    }
                }
            }
        }
        Served { types, labels }
    }

    /// The metric family a series name belongs to: itself, or a histogram's `_bucket`, `_sum`
    /// and `_count`.
    fn base<'a>(types: &BTreeMap<String, String>, name: &'a str) -> Option<&'a str> {
        if types.contains_key(name) {
            return Some(name);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            name.strip_suffix(suffix)
                .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
        })
    }

    /// Checks one expression's names; returns what is wrong with them.
    fn check(&self, what: &str, names: &Names, shown: &[String]) -> Vec<String> {
        let mut errors = Vec::new();
        let mut allowed: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        allowed.insert("__name__".into());
        for metric in &names.metrics {
            match Self::base(&self.types, metric) {
                Some(base) => allowed.extend(self.labels[base].iter().cloned()),
                None => errors.push(format!("{what}: `{metric}` is not a metric ssv-ha serves")),
            }
        }
        if names.metrics.is_empty() {
            errors.push(format!("{what}: names no metric"));
        }
        let labels: BTreeSet<&String> = names
            .matched
            .iter()
            .chain(&names.grouped)
            .chain(shown)
            .collect();
        for label in labels {
            if !allowed.contains(label) {
                errors.push(format!(
                    "{what}: label `{label}` is on none of {:?}",
                    names.metrics
                ));
            }
        }
        errors
    }
}

/// The label names a Grafana legend (`{{pool}}/{{backend}}`) or an alert template
/// (`{{ $labels.pool }}`) shows.
fn shown_labels(template: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for part in template.split("{{").skip(1) {
        let inner = part.split("}}").next().unwrap_or("").trim();
        if let Some(label) = inner.strip_prefix("$labels.") {
            labels.push(label.split_whitespace().next().unwrap_or("").to_string());
        } else if inner.chars().all(is_ident) && !inner.is_empty() {
            labels.push(inner.to_string());
        }
    }
    labels
}

/// Every panel, those inside collapsed rows too.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (where, expression, labels its legend shows) for every query of the dashboard.
fn dashboard_queries(dashboard: &Json) -> Vec<(String, String, Vec<String>)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                format!("panel {:?} {}", panel["title"], target["refId"]),
                target["expr"].as_str().unwrap_or_default().to_string(),
                shown_labels(target["legendFormat"].as_str().unwrap_or_default()),
            ));
        }
    }
    queries
}

/// Every alerting rule of a `groups:` document.
fn alert_rules(rules: &Yaml) -> Vec<&Yaml> {
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .collect()
}

#[test]
fn the_tokenizer_finds_metrics_and_labels() {
    let n = names(
        r#"histogram_quantile(0.99, sum by (pool, le) (rate(ssv_ha_upstream_latency_seconds_bucket{pool=~"$pool", x="a}b"}[$__rate_interval])))"#,
    );
    assert_eq!(
        n.metrics,
        BTreeSet::from(["ssv_ha_upstream_latency_seconds_bucket".to_string()])
    );
    assert_eq!(
        n.matched,
        BTreeSet::from(["pool".to_string(), "x".to_string()])
    );
    assert_eq!(n.grouped, BTreeSet::from(["pool".into(), "le".into()]));
    let n = names("(a_lag > ignoring (backend) group_left b_max) and increase(c_total[5m]) > 0 unless max without(x) (d) offset 5m");
    assert_eq!(
        n.metrics,
        ["a_lag", "b_max", "c_total", "d"].map(String::from).into()
    );
    assert_eq!(n.grouped, ["backend", "x"].map(String::from).into());
    let v = variable_names(r#"label_values(ssv_ha_backend_healthy{instance=~"$instance"}, pool)"#);
    assert_eq!(
        v.metrics,
        BTreeSet::from(["ssv_ha_backend_healthy".to_string()])
    );
    assert!(v.grouped.contains("pool") && v.matched.contains("instance"));
    assert_eq!(
        shown_labels("{{pool}}/{{backend}} p99 {{ $labels.instance }}"),
        ["pool", "backend", "instance"]
    );
}

/// Every metric and label the dashboard and the rules name is served by a running gateway, after
/// traffic and a failover and back; and the metrics added for them say what they should.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_rules_name_only_served_metrics() {
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
    // The primary falls: the pool runs on its backup; then it comes back.
    a.set(|s| s.syncing = true);
    gw.wait_backend("execution", "ec-a", false).await;
    assert_eq!(
        who_answers(&client, listen).await.1.as_deref(),
        Some("ec-b")
    );
    let on_backup = gw.metrics().await;
    a.set(|s| s.syncing = false);
    gw.wait_backend("execution", "ec-a", true).await;
    let text = gw.metrics().await;

    // What the rules' added metrics say.
    for (series, value) in [
        (
            "ssv_ha_backend_backup{backend=\"ec-a\",pool=\"execution\"}",
            0.0,
        ),
        (
            "ssv_ha_backend_backup{backend=\"ec-b\",pool=\"execution\"}",
            1.0,
        ),
        (
            "ssv_ha_pool_active_backend{backend=\"ec-b\",pool=\"execution\"}",
            1.0,
        ),
    ] {
        assert_eq!(metric(&on_backup, series), value, "{series}\n{on_backup}");
    }
    for (series, value) in [
        (
            "ssv_ha_backend_transitions_total{backend=\"ec-a\",pool=\"execution\",to=\"down\"}",
            1.0,
        ),
        (
            "ssv_ha_backend_transitions_total{backend=\"ec-a\",pool=\"execution\",to=\"up\"}",
            1.0,
        ),
        // First checks are no transition.
        (
            "ssv_ha_backend_transitions_total{backend=\"ec-b\",pool=\"execution\",to=\"up\"}",
            0.0,
        ),
        ("ssv_ha_pool_max_lag{pool=\"execution\"}", 5.0),
        (
            "ssv_ha_pool_active_backend{backend=\"ec-b\",pool=\"execution\"}",
            0.0,
        ),
    ] {
        assert_eq!(metric(&text, series), value, "{series}\n{text}");
    }
    assert!(
        text.contains(
            "ssv_ha_backend_transitions_total{backend=\"ec-b\",pool=\"execution\",to=\"down\"} 0"
        ),
        "{text}"
    );

    let served = Served::parse(&text);
    let mut errors = Vec::new();
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    let mut used = BTreeSet::new();
    for (what, expr, shown) in &queries {
        let names = names(expr);
        used.extend(names.metrics.iter().cloned());
        errors.extend(served.check(what, &names, shown));
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .unwrap_or_else(|| panic!("variable {} has a query", variable["name"]));
            let what = format!("variable {}", variable["name"]);
            errors.extend(served.check(&what, &variable_names(query), &[]));
        }
    }
    let rules = rules();
    for rule in alert_rules(&rules) {
        let what = format!("alert {}", rule["alert"].as_str().unwrap_or("?"));
        let mut shown = Vec::new();
        for text in rule["annotations"].as_mapping().into_iter().flatten() {
            shown.extend(shown_labels(text.1.as_str().unwrap_or_default()));
        }
        let names = names(rule["expr"].as_str().unwrap_or_default());
        used.extend(names.metrics.iter().cloned());
        errors.extend(served.check(&what, &names, &shown));
    }
    assert!(
        errors.is_empty(),
        "{}\n\nserved:\n{text}",
        errors.join("\n")
    );

    // What an operator watches: the dashboard and rules cover it.
    for metric in [
        "ssv_ha_pool_active_backend",
        "ssv_ha_backend_healthy",
        "ssv_ha_requests_total",
        "ssv_ha_upstream_latency_seconds_bucket",
        "ssv_ha_failovers_total",
        "ssv_ha_sessions_open",
        "ssv_ha_sessions_cut_total",
        "ssv_ha_sessions_moved_total",
        "ssv_ha_backend_lag",
        "ssv_ha_backend_transitions_total",
        "ssv_ha_backend_backup",
        "ssv_ha_config_reloads_total",
    ] {
        assert!(
            used.contains(metric),
            "neither dashboard nor rules use {metric}"
        );
    }
}

#[test]
fn dashboard_is_importable_and_queries_through_its_variables() {
    let dashboard = dashboard();
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let ds = variable("DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let source = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let pool = variable("pool");
    assert_eq!(pool["type"], "query");
    assert_eq!(pool["datasource"], source);
    assert!(pool["query"]["query"]
        .as_str()
        .is_some_and(|q| q.starts_with("label_values(") && q.ends_with(", pool)")));

    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let title = &panel["title"];
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: id"));
        assert!(ids.insert(id), "panel id {id} is used twice ({title})");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: gridPos"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            title.as_str().is_some_and(|t| !t.is_empty()),
            "a panel has no title"
        );
        assert_eq!(panel["datasource"], source, "{title}: data source");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"], source, "{title}: target data source");
            assert!(refs.insert(target["refId"].as_str().expect("refId")));
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            // A pool's metric is filtered to the pools picked; per gateway too.
            let names = names(expr);
            let pooled = names
                .metrics
                .iter()
                .any(|m| m != "ssv_ha_config_reloads_total");
            if pooled {
                assert!(
                    expr.contains("pool=~\"$pool\""),
                    "{title}: not filtered by $pool: {expr}"
                );
            }
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: not filtered by $instance: {expr}"
            );
            queries += 1;
        }
    }
    assert!(queries >= 15, "{queries} queries");
}

/// Types of a rule file, as Prometheus reads it: `groups` of `name` and `rules`, each rule an
/// `alert` (or `record`) with `expr`, `for`, `labels` and `annotations`.
fn rule_file_errors(rules: &Yaml) -> Vec<String> {
    let mut errors = Vec::new();
    // A Prometheus duration: one or more number-unit pairs (`30s`, `1h30m`).
    let duration = |v: &Yaml| {
        let Some(mut rest) = v.as_str().filter(|s| !s.is_empty()) else {
            return false;
        };
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let after = &rest[digits..];
            let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
                .into_iter()
                .find(|u| after.starts_with(u))
            else {
                return false;
            };
            if digits == 0 {
                return false;
            }
            rest = &after[unit.len()..];
        }
        true
    };
    let Some(groups) = rules["groups"].as_sequence() else {
        return vec!["no `groups:` list".into()];
    };
    let mut alerts = BTreeSet::new();
    for (g, group) in groups.iter().enumerate() {
        if !group["name"].is_string() {
            errors.push(format!("groups[{g}].name is not a string"));
        }
        let Some(list) = group["rules"].as_sequence().filter(|l| !l.is_empty()) else {
            errors.push(format!("groups[{g}].rules is not a list of rules"));
            continue;
        };
        for (r, rule) in list.iter().enumerate() {
            let at = format!("groups[{g}].rules[{r}]");
            for (key, _) in rule.as_mapping().into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                if ![
                    "alert",
                    "record",
                    "expr",
                    "for",
                    "keep_firing_for",
                    "labels",
                    "annotations",
                ]
                .contains(&key)
                {
                    errors.push(format!("{at}: unknown key `{key}`"));
                }
            }
            let Some(alert) = rule["alert"].as_str() else {
                errors.push(format!("{at}: not an alerting rule"));
                continue;
            };
            if !alerts.insert(alert.to_string()) {
                errors.push(format!("{at}: alert {alert} twice"));
            }
            if rule["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                errors.push(format!("{at}: expr is not a string"));
            }
            if !rule["for"].is_null() && !duration(&rule["for"]) {
                errors.push(format!("{at}: `for` is not a duration"));
            }
            for map in ["labels", "annotations"] {
                let all_strings = rule[map]
                    .as_mapping()
                    .is_some_and(|m| m.iter().all(|(k, v)| k.is_string() && v.is_string()));
                if !all_strings {
                    errors.push(format!("{at}: {map} is not a map of strings"));
                }
            }
            if !["critical", "warning", "info"]
                .contains(&rule["labels"]["severity"].as_str().unwrap_or(""))
            {
                errors.push(format!("{at}: no severity label"));
            }
            for annotation in ["summary", "description"] {
                let text = rule["annotations"][annotation].as_str().unwrap_or("");
                // Each alert names what it is about: the pool (and backend), or the gateway.
                if !text.contains("$labels.pool") && !text.contains("$labels.instance") {
                    errors.push(format!("{at}: {annotation} names no pool or gateway"));
                }
            }
        }
    }
    errors
}

/// `promtool`, from Debian's `prometheus` package (scripts/test installs it). In CI its absence
/// is a failure; elsewhere the test says so and checks what it can without it.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing: scripts/test installs it (Debian package `prometheus`)"
        );
        eprintln!("promtool is missing (apt-get install prometheus): rules checked without it");
    }
    found
}

fn run(command: &mut Command) {
    let out = command.output().expect("run promtool");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alerting_rules_are_valid() {
    let rules = rules();
    let errors = rule_file_errors(&rules);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let alerts: BTreeSet<&str> = alert_rules(&rules)
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "SsvHaPoolNoHealthyBackend",
        "SsvHaPoolOnBackup",
        "SsvHaBackendFlapping",
        "SsvHaConfigReloadFailed",
        "SsvHaBackendLagging",
    ] {
        assert!(alerts.contains(alert), "no alert {alert}");
    }
    // The schema check is no rubber stamp.
    let broken: Yaml = serde_yaml::from_str(
        "groups: [{ name: g, rules: [{ alert: A, expr: 1, for: soon, labels: {}, annotations: {}, severity: x }] }]",
    )
    .unwrap();
    assert_eq!(
        rule_file_errors(&broken).len(),
        6,
        "{:?}",
        rule_file_errors(&broken)
    );

    let Some(promtool) = promtool() else {
        return;
    };
    let file = monitoring("ssv-ha-alerts.yaml");
    run(Command::new(&promtool).args(["check", "rules"]).arg(&file));
    // Each alert fires on the series it is about, and names them.
    run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(monitoring("ssv-ha-alerts.test.yaml")));
    // The compose file's Prometheus config, with its rule file where the container mounts it.
    let dir = tempfile::tempdir().unwrap();
    let config = read(&monitoring("prometheus.yml"))
        .replace("/etc/prometheus/", &format!("{}/", dir.path().display()));
    std::fs::copy(&file, dir.path().join("ssv-ha-alerts.yaml")).unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    run(Command::new(&promtool)
        .args(["check", "config"])
        .arg(dir.path().join("prometheus.yml")));
}

#[test]
fn kubernetes_and_compose_scrape_the_admin_listener_and_load_the_rules() {
    // Kubernetes: the PrometheusRule is the rule file; the ServiceMonitor and the pod annotations
    // point at the admin port.
    let k8s = root().join("docker/k8s");
    let mut docs: Vec<Yaml> = Vec::new();
    for file in ["ssv-ha.yaml", "monitoring/prometheus-operator.yaml"] {
        let text = read(&k8s.join(file));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc: Yaml = serde::Deserialize::deserialize(doc).unwrap();
            if !doc.is_null() {
                docs.push(doc);
            }
        }
    }
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == "ssv-ha")
            .unwrap_or_else(|| panic!("no {kind} ssv-ha in docker/k8s"))
    };
    assert_eq!(
        find("PrometheusRule")["spec"],
        rules(),
        "the PrometheusRule's spec is docker/monitoring/ssv-ha-alerts.yaml"
    );
    let admin_port = find("Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("an admin container port")["containerPort"]
        .as_u64()
        .unwrap();
    let annotations = &find("Deployment")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(admin_port.to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let monitor = find("ServiceMonitor");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        find("Service")["spec"]["selector"]
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert!(find("Service")["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| p["name"] == endpoint["port"] && p["targetPort"] == "admin"));

    // Compose: the monitoring profile mounts files that exist; Prometheus scrapes ssv-ha's admin
    // listener and loads the mounted rules; Grafana gets the dashboard where its provider looks.
    let docker = root().join("docker");
    let compose = yaml(&docker.join("compose.yml"));
    let mut mounts = BTreeMap::new();
    for service in ["prometheus", "grafana"] {
        let spec = &compose["services"][service];
        assert_eq!(spec["profiles"][0], "monitoring", "{service} is optional");
        for volume in spec["volumes"].as_sequence().unwrap() {
            let (source, rest) = volume.as_str().unwrap().split_once(':').unwrap();
            if let Some(file) = source.strip_prefix("./") {
                assert!(
                    docker.join(file).is_file(),
                    "{service} mounts missing {source}"
                );
                let target = rest.trim_end_matches(":ro").to_string();
                mounts.insert(target, file.to_string());
            }
        }
    }
    let prometheus = yaml(&monitoring("prometheus.yml"));
    assert_eq!(
        mounts["/etc/prometheus/prometheus.yml"],
        "monitoring/prometheus.yml"
    );
    for rule_file in prometheus["rule_files"].as_sequence().unwrap() {
        assert_eq!(
            mounts.get(rule_file.as_str().unwrap()).map(String::as_str),
            Some("monitoring/ssv-ha-alerts.yaml")
        );
    }
    let gateway_config = compose["services"]["ssv-ha"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str()?.strip_suffix(":/etc/ssv-ha/ssv-ha.yaml:ro"))
        .next()
        .expect("ssv-ha's config mount");
    let gateway = ssv_ha::config::load(&docker.join(gateway_config)).unwrap();
    let job = &prometheus["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/metrics");
    assert_eq!(
        job["static_configs"][0]["targets"][0].as_str(),
        Some(format!("ssv-ha:{}", gateway.admin.port()).as_str())
    );
    let provider = yaml(&monitoring("grafana-dashboards.yaml"));
    let dir = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert!(mounts
        .iter()
        .any(|(target, file)| target.starts_with(&format!("{dir}/"))
            && file == "monitoring/ssv-ha-dashboard.json"));
}

/// Values of `name`'s series for `pool`, by backend.
fn by_backend(text: &str, name: &str, pool: &str) -> BTreeMap<String, f64> {
    let pool = format!("pool=\"{pool}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&pool))
        .filter_map(|l| {
            let backend = l.split("backend=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((backend.to_string(), value))
        })
        .collect()
}

/// Waits until `want` alone shows active in the execution pool; returns every backend's value.
async fn active(gw: &Gateway, want: &str) -> BTreeMap<String, f64> {
    wait_for(
        &format!("{want} alone active"),
        std::time::Duration::from_secs(10),
        || async {
            let actives = by_backend(
                &gw.metrics().await,
                "ssv_ha_pool_active_backend",
                "execution",
            );
            let on: Vec<&String> = actives
                .iter()
                .filter(|(_, v)| **v == 1.0)
                .map(|(b, _)| b)
                .collect();
            (on == [want]).then_some(actives)
        },
    )
    .await
}

/// What the dashboard's active backend and `SsvHaPoolOnBackup` read stays true across reloads:
/// one backend of a pool shows active, never a removed one, nor the one a rebuilt pool moved from.
#[tokio::test(flavor = "multi_thread")]
async fn the_active_backend_gauge_follows_reloads() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let b = pki
        .node(NodeKind::Execution, "ec-b", NodeStatus::default())
        .await;
    let c = pki
        .node(NodeKind::Execution, "ec-c", NodeStatus::default())
        .await;
    let pools = |backends: &[(&ssv_ha::sim::SimNode, bool)]| {
        pool_yaml("execution", "execution", "first", &pki.ca_file, backends)
    };
    let (gw, listen) = start_on(&pools(&[(&a, false), (&b, true)]), EC_ROUTE).await;
    gw.wait_backend("execution", "ec-b", true).await;
    let reload = |backends: &[(&ssv_ha::sim::SimNode, bool)]| {
        std::fs::write(
            &gw.config_path,
            config(gw.admin, listen, &pools(backends), EC_ROUTE),
        )
        .unwrap();
        let url = format!("http://{}/reload", gw.admin);
        async move {
            let response = reqwest::Client::new().post(url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }
    };

    a.set(|s| s.syncing = true);
    gw.wait_backend("execution", "ec-a", false).await;
    active(&gw, "ec-b").await;
    // The backup in use is removed; ec-c is the backup now.
    reload(&[(&a, false), (&c, true)]).await;
    gw.wait_backend("execution", "ec-c", true).await;
    let actives = active(&gw, "ec-c").await;
    assert_eq!(
        actives.get("ec-b"),
        None,
        "a removed backend's series are gone: {actives:?}"
    );
    // The primary is back, then a reload makes it a backup: the rebuilt pool moves to ec-c.
    a.set(|s| s.syncing = false);
    gw.wait_backend("execution", "ec-a", true).await;
    active(&gw, "ec-a").await;
    reload(&[(&a, true), (&c, false)]).await;
    active(&gw, "ec-c").await;
}

/// A pool removed by a reload must not leave series that `SsvHaPoolNoHealthyBackend`
/// (`sum without (backend) (ssv_ha_backend_healthy) == 0`) reads as "no healthy backend": the
/// reload sets each removed backend's `ssv_ha_backend_healthy` to 0 and never drops the series, so
/// the critical alert fires for a pool that no longer exists until the gateway restarts.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_pool_does_not_look_like_a_pool_with_no_healthy_backend() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let s = pki
        .node(NodeKind::Execution, "spare-a", NodeStatus::default())
        .await;
    let two = format!(
        "{}{}",
        pool_yaml(
            "execution",
            "execution",
            "first",
            &pki.ca_file,
            &[(&a, false)]
        ),
        pool_yaml("spare", "execution", "first", &pki.ca_file, &[(&s, false)]),
    );
    let routes = format!("{EC_ROUTE}  - {{ host: spare.example.com, pool: spare }}\n");
    let (gw, listen) = start_on(&two, &routes).await;
    gw.wait_backend("spare", "spare-a", true).await;
    std::fs::write(
        &gw.config_path,
        config(
            gw.admin,
            listen,
            &pool_yaml(
                "execution",
                "execution",
                "first",
                &pki.ca_file,
                &[(&a, false)],
            ),
            EC_ROUTE,
        ),
    )
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{}/reload", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let healthy = by_backend(&gw.metrics().await, "ssv_ha_backend_healthy", "spare");
    assert!(
        healthy.is_empty() || healthy.values().sum::<f64>() > 0.0,
        "the removed pool `spare` reads as a pool with no healthy backend: {healthy:?}"
    );
}

/// The "Error ratio" panel ("Share of requests answered 5xx or not at all") divides
/// `ssv_ha_requests_total` by class, which is counted per backend only: a request answered 503
/// because the pool has no healthy backend reaches no backend and is counted in
/// `ssv_ha_unavailable_total` alone, so in a full outage the panel shows 0/0 (no data), not 100 %.
#[tokio::test(flavor = "multi_thread")]
async fn the_error_ratio_counts_requests_answered_503_for_no_healthy_backend() {
    let pki = Pki::new();
    let a = pki
        .node(NodeKind::Execution, "ec-a", NodeStatus::default())
        .await;
    let pools = pool_yaml(
        "execution",
        "execution",
        "first",
        &pki.ca_file,
        &[(&a, false)],
    );
    let (gw, listen) = start_on(&pools, EC_ROUTE).await;
    gw.wait_backend("execution", "ec-a", true).await;
    a.set(|s| s.syncing = true);
    gw.wait_backend("execution", "ec-a", false).await;
    let client = reqwest::Client::new();
    assert_eq!(who_answers(&client, listen).await.0, 503);
    let text = gw.metrics().await;
    assert!(
        metric(&text, "ssv_ha_unavailable_total{pool=\"execution\"}") >= 1.0,
        "{text}"
    );
    let counted_5xx: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("ssv_ha_requests_total{")
                && l.contains("pool=\"execution\"")
                && l.contains("class=\"5xx\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    let dashboard = dashboard();
    let ratio = panels(&dashboard)
        .into_iter()
        .find(|p| p["title"] == "Error ratio")
        .expect("an Error ratio panel")["targets"][0]["expr"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        counted_5xx >= 1.0 || ratio.contains("ssv_ha_unavailable_total"),
        "the 503 is in neither ssv_ha_requests_total nor the panel's query: {ratio}\n{text}"
    );
}

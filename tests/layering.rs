//! The crate's module graph, read from its `crate::` paths: no cycle between top-level modules,
//! and the layers `config` < `health` < `upstream` < `proxy` import nothing above them (the shared
//! leaves `tls` and `metrics` sit below all and import none of them). A new back-stair fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers in order; each may import only layers before it and the leaves.
const LAYERS: [&str; 4] = ["config", "health", "upstream", "proxy"];
/// Shared leaves: anyone may import them; they import no other module of the crate.
const LEAVES: [&str; 2] = ["tls", "metrics"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level module -> the top-level modules its code names through `crate::` paths. Comment
/// lines (doc links included) do not count.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut files = Vec::new();
    collect(src, &mut files);
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for target in crate_paths(&text) {
            if target != module {
                uses.insert(target);
            }
        }
    }
    graph
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The first segment after every `crate::` in code lines, including each name of a grouped
/// `crate::{a, b::c}`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let preceded = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            rest = &rest[at + "crate::".len()..];
            if preceded {
                // `ssv_ha_crate::` or the like: not this crate's root.
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = item.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() {
                        found.push(name.to_string());
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found
}

/// Every import that breaks the layer rules, as "from -> to".
fn back_stairs(graph: &Graph) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for (from, targets) in graph {
        for to in targets {
            let allowed = if LEAVES.contains(&from.as_str()) {
                false
            } else if let Some(r) = rank(from) {
                LEAVES.contains(&to.as_str()) || rank(to).is_some_and(|t| t < r)
            } else {
                true
            };
            if !allowed {
                wrong.push(format!("{from} -> {to}"));
            }
        }
    }
    wrong
}

/// A cycle among the modules, if there is one, as the path that closes it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_module_graph_has_no_back_stairs_and_no_cycle() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for layer in LAYERS.iter().chain(&LEAVES) {
        assert!(graph.contains_key(*layer), "no module `{layer}` in src/");
    }
    assert_eq!(
        back_stairs(&graph),
        Vec::<String>::new(),
        "imports from above"
    );
    assert_eq!(cycle(&graph), None, "module graph: {graph:?}");
}

#[test]
fn the_reader_sees_every_kind_of_crate_path_and_the_rules_catch_what_is_wrong() {
    let text = "use crate::config::model::Pool;\n\
                use crate::{tls, metrics::Metrics};\n\
                // [`crate::proxy`] in a comment does not count\n\
                let x = crate::upstream::Traffic::Plain; let y = other_crate::admin::X;\n";
    assert_eq!(
        crate_paths(text),
        ["config", "tls", "metrics", "upstream"].map(String::from)
    );
    let graph: Graph = [
        ("config", vec!["tls"]),
        ("health", vec!["config", "proxy"]),
        ("metrics", vec!["config"]),
        ("admin", vec!["proxy"]),
        ("proxy", vec!["admin"]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_string(), to.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        back_stairs(&graph),
        ["health -> proxy", "metrics -> config", "proxy -> admin"].map(String::from)
    );
    assert_eq!(
        cycle(&graph),
        Some(["admin", "proxy", "admin"].map(String::from).to_vec())
    );
}

//! The crate's module graph, read from its `crate::` paths: no cycle between top-level modules,
//! and the layers `config` < `jsonrpc` < `health` < `upstream` < `limits` < `passthrough` <
//! `session` < `proxy` import nothing above them (the shared leaves `tls` and `metrics` sit below
//! all and import none of them). A new back-stair fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers in order; each may import only layers before it and the leaves.
const LAYERS: [&str; 8] = [
    "config",
    "jsonrpc",
    "health",
    "upstream",
    "limits",
    "passthrough",
    "session",
    "proxy",
];
/// Shared leaves: anyone may import them; they import no other module of the crate.
const LEAVES: [&str; 2] = ["tls", "metrics"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level module -> the top-level modules its code names through `crate::` paths (and
/// `super::` chains that climb out of it). Comments (doc links included) do not count.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut files = Vec::new();
    collect(src, &mut files);
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        // The file's module path: src/health/mod.rs -> [health], src/health/check.rs -> [health, check].
        let mut path: Vec<String> = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if path.last().is_some_and(|l| l == "mod") {
            path.pop();
        }
        let Some(module) = path.first().cloned() else {
            continue;
        };
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for target in crate_paths(&text, &path) {
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

/// The text without its `//` comments.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named by the paths in `text`, a file at module path `path`: the first
/// segment after every `crate::`, each name of a `crate::{a, b::{c}}` group (over several lines
/// too), and the module a `super::super::x` chain lands in once it climbs out of the file's own
/// top-level module.
fn crate_paths(text: &str, path: &[String]) -> Vec<String> {
    let code = code(text);
    let mut found = Vec::new();
    let starts_path = |at: usize| {
        code[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
    };
    for (at, _) in code.match_indices("crate::") {
        if !starts_path(at) {
            continue;
        }
        found.extend(first_segments(&code[at + "crate::".len()..]));
    }
    for (at, _) in code.match_indices("super::") {
        if !starts_path(at) {
            continue;
        }
        let mut rest = &code[at..];
        let mut depth = path.len();
        while let Some(next) = rest.strip_prefix("super::") {
            depth = depth.saturating_sub(1);
            rest = next;
        }
        if depth == 0 {
            found.extend(first_segments(rest));
        }
    }
    found
}

/// The first segment of a path's remainder, or of each item of a `{...}` group.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        let name = ident(rest);
        return if name.is_empty() { vec![] } else { vec![name] };
    };
    // Items of the group at its own nesting level.
    let mut names = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if c.is_whitespace() => {}
            _ if item_start && depth == 0 => {
                item_start = false;
                let name = ident(&group[i..]);
                if !name.is_empty() && name != "self" {
                    names.push(name);
                }
            }
            _ => {}
        }
    }
    names
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
                use crate::{\n    proxy::Routing,\n    upstream::{Pool, Backend},\n};\n\
                // [`crate::admin`] in a comment does not count\n\
                use super::super::server::Built;\n\
                use super::verdict::Verdict;\n\
                let x = crate::sim::NodeKind::Execution; let y = other_crate::demo::X;\n";
    let path = ["health".to_string(), "record".to_string()];
    assert_eq!(
        crate_paths(text, &path),
        ["config", "tls", "metrics", "proxy", "upstream", "sim", "server"].map(String::from)
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

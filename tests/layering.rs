//! The crate's floors, read from the `crate::` and `super::` paths of its code (comments, doc
//! links included, do not count). Four rules, each with a test that breaks it on purpose below:
//!
//! 1. The floors import only floors below them: `config` < `jsonrpc` < `health` < `upstream` <
//!    `limits` < `session`, `passthrough` < `proxy`. `session` and `passthrough` stand side by
//!    side, so neither imports the other, and neither imports `proxy`. The shared leaves `tls`
//!    and `metrics` import no module of the crate. The rest (`admin`, `server`, `cli`, `import`,
//!    `sim`, `demo`) assemble or serve the floors and may import any of them.
//! 2. No file imports what the `mod.rs` of a folder it sits in defines: a folder's `mod.rs`
//!    declares and re-exports; what its files share lives in a file of its own.
//! 3. No cycle among the files of any one folder, nor among the top-level modules.
//! 4. Every path names a module that exists (so a move cannot leave the reader blind).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The floors in order, bottom first; floors in one slot stand side by side.
const FLOORS: [&[&str]; 7] = [
    &["config"],
    &["jsonrpc"],
    &["health"],
    &["upstream"],
    &["limits"],
    &["session", "passthrough"],
    &["proxy"],
];
/// Shared leaves: anyone may import them; they import no other module of the crate.
const LEAVES: [&str; 2] = ["tls", "metrics"];

/// A module path from the crate root: `["proxy", "admission"]`.
type ModPath = Vec<String>;

/// One source file: its module path, whether it is a folder's `mod.rs` (or the crate root), and
/// its code without comments.
struct File {
    module: ModPath,
    folder: bool,
    code: String,
    raw: String,
}

/// An import from one module to another, as the module paths of both ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    from: ModPath,
    to: ModPath,
    /// The first name past `to` (`Gateway` in `crate::proxy::Gateway`): an item of `to` itself.
    item: Option<String>,
}

fn files(src: &Path) -> Vec<File> {
    fn collect(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    collect(src, &mut paths);
    paths.sort();
    let all: Vec<File> = paths
        .into_iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(src).unwrap().with_extension("");
            let mut module: ModPath = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let folder = module.last().is_some_and(|l| l == "mod");
            if folder {
                module.pop();
            }
            // The binary's root is not part of the library's graph.
            if module == ["main"] {
                return None;
            }
            if module == ["lib"] {
                module.clear();
            }
            let code = without_tests(&code(&std::fs::read_to_string(&file).unwrap()));
            Some(File {
                folder: folder || module.is_empty(),
                module,
                code,
                raw: std::fs::read_to_string(&file).unwrap(),
            })
        })
        .collect();
    // Whole files of tests, declared `#[cfg(test)] mod name;` by their parent, are left out too.
    let test_files: Vec<ModPath> = all
        .iter()
        .flat_map(|parent| {
            parent
                .raw
                .match_indices("#[cfg(test)]")
                .filter_map(|(at, _)| {
                    let declared = parent.raw[at + "#[cfg(test)]".len()..].trim_start();
                    let name = declared.strip_prefix("mod ")?.split(';').next()?;
                    (!name.contains('{')).then(|| {
                        let mut module = parent.module.clone();
                        module.push(name.trim().to_string());
                        module
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    all.into_iter()
        .filter(|f| !test_files.contains(&f.module))
        .collect()
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

/// The code without its inline `#[cfg(test)] mod ... { ... }` blocks: the rules are about the
/// product's structure, and a test module's `super` means another module than its file's.
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let opens_module = after.trim_start().starts_with("mod ")
            && after
                .find('{')
                .is_some_and(|b| after.find(';').is_none_or(|s| b < s));
        if !opens_module {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        let body = after.find('{').unwrap_or(0);
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[body..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = body + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every path in `code` that starts with `crate::` or `super::`, its `{...}` groups expanded,
/// as its segments (`super` kept, to be resolved against the file's place).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        for (at, _) in code.match_indices(start) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            expand(&code[at..], Vec::new(), &mut found);
        }
    }
    found
}

/// Reads one path from the start of `rest` onto `prefix`, expanding a group into each of its items.
fn expand(rest: &str, mut prefix: Vec<String>, found: &mut Vec<Vec<String>>) {
    let mut rest = rest.trim_start();
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            if let Some(group) = rest.strip_prefix('{') {
                for item in group_items(group) {
                    expand(item, prefix.clone(), found);
                }
                return;
            }
            break;
        }
        if ident != "self" {
            prefix.push(ident.clone());
        }
        rest = rest[ident.len()..].trim_start();
        match rest.strip_prefix("::") {
            Some(next) => rest = next.trim_start(),
            None => break,
        }
    }
    if !prefix.is_empty() {
        found.push(prefix);
    }
}

/// The items of a `{...}` group (its text after the `{`), at the group's own nesting level.
fn group_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.into_iter().filter(|i| !i.trim().is_empty()).collect()
}

/// Every import of every file, each path resolved to the deepest module it names. A path that
/// names no module is returned in the second list.
fn imports(files: &[File]) -> (Vec<Import>, Vec<String>) {
    let modules: BTreeSet<&ModPath> = files.iter().map(|f| &f.module).collect();
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for file in files {
        // `super` from a folder's `mod.rs` climbs out of the folder; from a file, to its folder.
        let here: ModPath = file.module.clone();
        for path in paths(&file.code) {
            let mut segments = path.into_iter().peekable();
            let mut at: ModPath = match segments.peek().map(String::as_str) {
                Some("crate") => {
                    segments.next();
                    Vec::new()
                }
                _ => here.clone(),
            };
            while segments.peek().is_some_and(|s| s == "super") {
                segments.next();
                at.pop();
            }
            let rest: Vec<String> = segments.collect();
            if rest.is_empty() {
                continue;
            }
            let mut to = at.clone();
            for segment in &rest {
                let mut deeper = to.clone();
                deeper.push(segment.clone());
                if modules.contains(&deeper) {
                    to = deeper;
                } else {
                    break;
                }
            }
            if at.is_empty() && to.is_empty() {
                unknown.push(format!("{}: {}", file.module.join("::"), rest.join("::")));
                continue;
            }
            let item = rest.get(to.len() - at.len()).cloned();
            if to != here {
                found.push(Import {
                    from: here.clone(),
                    to,
                    item,
                });
            }
        }
    }
    found.sort();
    found.dedup();
    (found, unknown)
}

/// Rule 1: every import between top-level modules that goes up or sideways.
fn back_stairs(imports: &[Import]) -> Vec<String> {
    let floor = |m: &str| FLOORS.iter().position(|f| f.contains(&m));
    let mut wrong = BTreeSet::new();
    for import in imports {
        let (Some(from), Some(to)) = (import.from.first(), import.to.first()) else {
            continue;
        };
        if from == to {
            continue;
        }
        let allowed = if LEAVES.contains(&from.as_str()) {
            false
        } else if let Some(f) = floor(from) {
            LEAVES.contains(&to.as_str()) || floor(to).is_some_and(|t| t < f)
        } else {
            true
        };
        if !allowed {
            wrong.insert(format!("{from} -> {to}"));
        }
    }
    wrong.into_iter().collect()
}

/// The names a folder's `mod.rs` re-exports from its own files (`pub use key::{Key, same_key};`):
/// importing one of them through the folder is importing that file.
fn re_exports(folder: &File) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in folder.code.match_indices("pub use ") {
        let mut found = Vec::new();
        expand(
            &folder.code[at + "pub use ".len()..],
            Vec::new(),
            &mut found,
        );
        names.extend(
            found
                .into_iter()
                .filter(|path| path.len() > 1 && path[0] != "crate" && path[0] != "super")
                .filter_map(|path| path.last().cloned()),
        );
    }
    names
}

/// Rule 2: every file that imports an item defined in the `mod.rs` of a folder it sits in.
fn imports_from_own_mod(imports: &[Import], files: &[File]) -> Vec<String> {
    let folders: BTreeMap<&ModPath, BTreeSet<String>> = files
        .iter()
        .filter(|f| f.folder && !f.module.is_empty())
        .map(|f| (&f.module, re_exports(f)))
        .collect();
    let mut wrong: Vec<String> = imports
        .iter()
        .filter(|i| i.from.starts_with(&i.to))
        .filter_map(|i| {
            let name = i.item.as_ref()?;
            let exported = folders.get(&i.to)?;
            (!exported.contains(name))
                .then(|| format!("{} -> {}::{name}", i.from.join("::"), i.to.join("::")))
        })
        .collect();
    wrong.dedup();
    wrong
}

/// Rule 3: a cycle among the children of one folder (the crate root included), if there is one,
/// as the path that closes it. An import between two files counts as one between the children of
/// their closest common folder that hold them.
fn cycle(imports: &[Import]) -> Option<Vec<String>> {
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for import in imports {
        let common = import
            .from
            .iter()
            .zip(&import.to)
            .take_while(|(a, b)| a == b)
            .count();
        let (Some(a), Some(b)) = (import.from.get(common), import.to.get(common)) else {
            continue;
        };
        graphs
            .entry(import.from[..common].to_vec())
            .or_default()
            .entry(a.clone())
            .or_default()
            .insert(b.clone());
    }
    graphs.iter().find_map(|(folder, graph)| {
        find_cycle(graph).map(|c| {
            c.into_iter()
                .map(|m| {
                    folder
                        .iter()
                        .chain([&m])
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("::")
                })
                .collect()
        })
    })
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
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

fn crate_files() -> Vec<File> {
    files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn the_floors_import_only_floors_below_them() {
    let files = crate_files();
    for floor in FLOORS.iter().flat_map(|f| f.iter()).chain(&LEAVES) {
        assert!(
            files
                .iter()
                .any(|f| f.module.first().is_some_and(|m| m == floor)),
            "no module `{floor}` in src/"
        );
    }
    let (imports, unknown) = imports(&files);
    assert_eq!(unknown, Vec::<String>::new(), "paths that name no module");
    assert_eq!(
        back_stairs(&imports),
        Vec::<String>::new(),
        "imports from above"
    );
}

#[test]
fn no_file_imports_the_mod_rs_of_its_own_folder() {
    let files = crate_files();
    let (imports, _) = imports(&files);
    assert_eq!(
        imports_from_own_mod(&imports, &files),
        Vec::<String>::new(),
        "files that import their folder's mod.rs"
    );
}

#[test]
fn no_cycle_in_any_folder() {
    let (imports, _) = imports(&crate_files());
    assert_eq!(cycle(&imports), None);
}

/// A made-up crate that breaks each rule once: the reader sees every kind of path, and each rule
/// catches its own breaking.
#[test]
fn each_rule_catches_its_breaking() {
    let file = |module: &str, folder: bool, code: &str| File {
        module: module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        folder,
        code: self::code(code),
        raw: code.to_string(),
    };
    let files = [
        file(
            "",
            true,
            "pub mod config; pub mod metrics; pub mod proxy; pub mod session; pub mod tls;",
        ),
        file("config", true, "use crate::tls;\nuse self::model::Pool;"),
        file("config::model", false, "use super::methods::ALL;"),
        file("config::methods", false, "use super::model::Pool;"),
        file(
            "proxy",
            true,
            "use crate::{\n    config::model::{Pool, Listener},\n    tls,\n};\npub struct Gateway;",
        ),
        file(
            "proxy::admission",
            false,
            "// [`crate::session`] in a comment does not count\nuse super::Gateway;",
        ),
        file(
            "session",
            true,
            "use crate::proxy::Gateway;\nuse crate::nowhere::X;",
        ),
        file(
            "tls",
            false,
            "let x = crate::metrics::Metrics::new(); let y = other_crate::proxy::X;",
        ),
        file("metrics", false, ""),
    ];
    let (imports, unknown) = imports(&files);
    assert_eq!(unknown, ["session: nowhere::X"]);
    assert_eq!(
        back_stairs(&imports),
        ["session -> proxy", "tls -> metrics"].map(String::from)
    );
    assert_eq!(
        imports_from_own_mod(&imports, &files),
        ["proxy::admission -> proxy::Gateway"].map(String::from)
    );
    assert_eq!(
        cycle(&imports),
        Some(
            ["config::methods", "config::model", "config::methods"]
                .map(String::from)
                .to_vec()
        )
    );
}

//! The house rules on size, read from the crate's own sources with `syn`: no file under `src/`
//! has more than [`MAX_FILE_LINES`] lines outside its `#[cfg(test)]` modules, and no function,
//! declarative ones included, is longer than [`MAX_FN_LINES`] (from its `fn` to its closing
//! brace). Code past these sizes is where a reader loses the thread: split it into files that say
//! what they hold, and functions into named steps or tables.

use proc_macro2::Span;
use std::path::{Path, PathBuf};
use syn::visit::Visit;

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 100;

/// A source file, parsed.
struct Source {
    path: PathBuf,
    lines: usize,
    file: syn::File,
}

fn sources(src: &Path) -> Vec<Source> {
    fn collect(dir: &Path, found: &mut Vec<PathBuf>) {
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
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{}: does not parse: {e}", path.display()));
            Source {
                lines: text.lines().count(),
                path,
                file,
            }
        })
        .collect()
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}

fn lines_of(start: Span, end: Span) -> usize {
    end.end().line + 1 - start.start().line
}

/// The files that are whole test modules: declared `#[cfg(test)] mod name;` by their parent.
fn test_files(sources: &[Source]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for source in sources {
        let stem = source.path.file_stem().unwrap().to_string_lossy();
        let dir = source.path.parent().unwrap();
        // A `mod.rs` or `lib.rs` declares files beside it; `foo.rs` declares files in `foo/`.
        let dir = if stem == "mod" || stem == "lib" || stem == "main" {
            dir.to_path_buf()
        } else {
            dir.join(&*stem)
        };
        for item in &source.file.items {
            if let syn::Item::Mod(module) = item {
                if module.content.is_none() && is_cfg_test(&module.attrs) {
                    let name = module.ident.to_string();
                    found.push(dir.join(format!("{name}.rs")));
                    found.push(dir.join(name).join("mod.rs"));
                }
            }
        }
    }
    found
}

/// Lines of a file's inline `#[cfg(test)]` modules.
fn test_lines(file: &syn::File) -> usize {
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if is_cfg_test(&m.attrs) => m
                .content
                .as_ref()
                .map(|(brace, _)| lines_of(m.mod_token.span, brace.span.close())),
            _ => None,
        })
        .sum()
}

/// Every function with a body outside `#[cfg(test)]` modules: (name, first line, length).
#[derive(Default)]
struct Functions(Vec<(String, usize, usize)>);

impl Functions {
    fn add(&mut self, name: &syn::Ident, fn_token: Span, block: &syn::Block) {
        let length = lines_of(fn_token, block.brace_token.span.close());
        self.0
            .push((name.to_string(), fn_token.start().line, length));
    }
}

impl<'a> Visit<'a> for Functions {
    fn visit_item_mod(&mut self, module: &'a syn::ItemMod) {
        if !is_cfg_test(&module.attrs) {
            syn::visit::visit_item_mod(self, module);
        }
    }
    fn visit_item_fn(&mut self, f: &'a syn::ItemFn) {
        self.add(&f.sig.ident, f.sig.fn_token.span, &f.block);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
        self.add(&f.sig.ident, f.sig.fn_token.span, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }
    fn visit_trait_item_fn(&mut self, f: &'a syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.add(&f.sig.ident, f.sig.fn_token.span, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

/// What breaks the size rules in `sources`, one line each.
fn oversized(sources: &[Source]) -> Vec<String> {
    let tests = test_files(sources);
    let mut wrong = Vec::new();
    for source in sources.iter().filter(|s| !tests.contains(&s.path)) {
        let name = source
            .path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&source.path);
        let name = name.display();
        let code = source.lines - test_lines(&source.file);
        if code > MAX_FILE_LINES {
            wrong.push(format!("{name}: {code} lines outside its tests"));
        }
        let mut functions = Functions::default();
        functions.visit_file(&source.file);
        for (function, line, length) in functions.0 {
            if length > MAX_FN_LINES {
                wrong.push(format!("{name}:{line}: fn {function} is {length} lines"));
            }
        }
    }
    wrong
}

#[test]
fn no_file_or_function_is_too_big_to_read() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let wrong = oversized(&sources(&src));
    assert!(wrong.is_empty(), "too big to read:\n{}", wrong.join("\n"));
}

/// The rules themselves, on a file made to break each of them.
#[test]
fn the_rules_see_long_files_long_functions_and_leave_tests_alone() {
    let long_body = "    let _ = 1;\n".repeat(MAX_FN_LINES);
    let short_body = "    let _ = 1;\n".repeat(MAX_FN_LINES - 2);
    let filler = "const _: u8 = 0;\n".repeat(MAX_FILE_LINES);
    let text = format!(
        "fn long() {{\n{long_body}}}\nfn short() {{\n{short_body}}}\n\
         struct S;\nimpl S {{\n    fn method() {{\n{long_body}    }}\n}}\n\
         #[cfg(test)]\nmod tests {{\n    fn long_test() {{\n{long_body}    }}\n{filler}}}\n"
    );
    let source = |path: &str, text: &str| Source {
        path: PathBuf::from(path),
        lines: text.lines().count(),
        file: syn::parse_file(text).unwrap(),
    };
    let wrong = oversized(&[source("src/a.rs", &text)]);
    assert_eq!(
        wrong,
        [
            "src/a.rs:1: fn long is 102 lines",
            "src/a.rs:205: fn method is 102 lines"
        ]
    );
    let wrong = oversized(&[
        source("src/b.rs", &filler),
        source("src/c.rs", &format!("{filler}{filler}")),
    ]);
    assert_eq!(wrong, ["src/c.rs: 1200 lines outside its tests"]);
    // A whole file of tests, declared `#[cfg(test)] mod c;` by its parent, is left alone.
    let parent = source("src/lib.rs", "#[cfg(test)]\nmod c;\n");
    let wrong = oversized(&[parent, source("src/c.rs", &format!("{filler}{filler}"))]);
    assert!(wrong.is_empty(), "{wrong:?}");
}

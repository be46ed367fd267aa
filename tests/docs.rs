//! The README is the front door and `docs/` the rooms behind it. This holds them together:
//!
//! 1. every page under `docs/` is linked from the README, so none is out of a reader's reach;
//! 2. every relative link in the README and the pages names a file that exists, and where it
//!    names an anchor, a heading of that file makes it (GitHub's rule: lower case, punctuation
//!    dropped, spaces as hyphens, `-1`, `-2`... for repeats);
//! 3. the README has at most 300 lines;
//! 4. the README's minimal config passes validation, and its test command is the one CI runs.
//!
//! Rules 1 to 3 are plain functions of the texts; the last test breaks each of them on purpose.
//! Tables the code is held against (config keys, metrics) are checked elsewhere: the config-keys
//! unit test in `src/config/validate/tests.rs` and `tests/metrics.rs`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The most lines the README may have.
const README_MAX_LINES: usize = 300;

/// Markdown files by their path from the repository root (`README.md`, `docs/health.md`).
type Pages = BTreeMap<PathBuf, String>;

/// The README and every page under `docs/`, as they are in the repository.
fn repository_pages() -> Pages {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = Pages::new();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    pages.insert(PathBuf::from("README.md"), readme);
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("an entry of docs/").path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).expect("a page");
            let name = path.file_name().expect("a file name");
            pages.insert(Path::new("docs").join(name), text);
        }
    }
    pages
}

/// The text outside fenced code blocks, line by line (a `#` in a shell block is no heading, and
/// a `[x](y)` in a code sample is no link).
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// The text without its code spans, which may run over a line break.
fn without_code_spans(text: &str) -> String {
    text.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The targets of a page's inline links, `[text](target)`.
fn link_targets(text: &str) -> Vec<String> {
    let text = without_code_spans(&prose(text).join("\n"));
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')'))
        .map(|(target, _)| target.trim().to_string())
        .collect()
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a page's headings make, repeats numbered as GitHub numbers them.
fn anchors(text: &str) -> Vec<String> {
    let mut made: Vec<String> = Vec::new();
    for line in prose(text) {
        let level = line.chars().take_while(|c| *c == '#').count();
        if level == 0 || level > 6 || !line[level..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[level..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while made.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        made.push(anchor);
    }
    made
}

/// `base/target` with `.` and `..` worked out, or `None` when it climbs out of the repository.
fn resolve(base: &Path, target: &str) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    for part in base.join(target).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !path.pop() {
                    return None;
                }
            }
            other => path.push(other),
        }
    }
    Some(path)
}

/// Rule 1: the pages under `docs/` that the README does not link to.
fn unlinked_pages(pages: &Pages) -> Vec<PathBuf> {
    let linked: Vec<PathBuf> = pages
        .get(Path::new("README.md"))
        .map(|readme| link_targets(readme))
        .unwrap_or_default()
        .iter()
        .filter_map(|target| resolve(Path::new(""), target.split('#').next().unwrap_or("")))
        .collect();
    pages
        .keys()
        .filter(|page| page.starts_with("docs") && !linked.contains(page))
        .cloned()
        .collect()
}

/// Rule 2: every relative link that names no file, or an anchor its file does not make, as
/// `page: target (why)`. `exists` tells whether a file other than the pages is in the tree.
fn broken_links(pages: &Pages, exists: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut broken = Vec::new();
    for (page, text) in pages {
        for target in link_targets(text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let dir = page.parent().unwrap_or(Path::new(""));
            let path = if file.is_empty() {
                Some(page.clone())
            } else {
                resolve(dir, file)
            };
            let Some(path) = path else {
                broken.push(format!(
                    "{}: {target} (outside the repository)",
                    page.display()
                ));
                continue;
            };
            if !pages.contains_key(&path) && !exists(&path) {
                broken.push(format!("{}: {target} (no such file)", page.display()));
            } else if !anchor.is_empty() {
                match pages.get(&path) {
                    Some(linked) if anchors(linked).iter().any(|a| a == anchor) => {}
                    Some(_) => {
                        broken.push(format!("{}: {target} (no such heading)", page.display()))
                    }
                    None => broken.push(format!(
                        "{}: {target} (an anchor in a file that is not a page)",
                        page.display()
                    )),
                }
            }
        }
    }
    broken
}

/// Rule 3: the README's length when it is over the limit.
fn readme_too_long(pages: &Pages) -> Option<usize> {
    let lines = pages.get(Path::new("README.md"))?.lines().count();
    (lines > README_MAX_LINES).then_some(lines)
}

/// Whether a path from the repository root exists in the working tree.
fn in_tree(path: &Path) -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).exists()
}

#[test]
fn every_page_is_linked_from_the_readme() {
    let pages = repository_pages();
    assert!(
        pages.keys().any(|p| p.starts_with("docs")),
        "docs/ holds no page"
    );
    assert_eq!(
        unlinked_pages(&pages),
        Vec::<PathBuf>::new(),
        "pages the README does not link"
    );
}

#[test]
fn every_relative_link_reaches_a_file_and_its_heading() {
    let broken = broken_links(&repository_pages(), in_tree);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_door() {
    assert_eq!(
        readme_too_long(&repository_pages()),
        None,
        "the README is over {README_MAX_LINES} lines: move the details to a page under docs/"
    );
}

#[test]
fn the_readmes_minimal_config_is_valid_and_its_test_command_is_what_ci_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let (_, yaml) = readme
        .split_once("```yaml\n")
        .expect("the README shows a minimal config");
    let (yaml, _) = yaml.split_once("```").expect("the config block ends");
    if let Err(errors) = ssv_ha::config::parse(yaml, root) {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("the README's minimal config:\n{}", errors.join("\n"));
    }
    for command in ["scripts/demo", "scripts/test"] {
        assert!(
            readme.contains(&format!("```sh\n{command}\n```")),
            "the README shows `{command}` on its own"
        );
    }
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|line| line == "exec scripts/test"),
        "CI runs the README's test command"
    );
}

#[test]
fn each_rule_fails_when_broken_on_purpose() {
    let page = |path: &str, text: &str| (PathBuf::from(path), text.to_string());
    let good: Pages = [
        page(
            "README.md",
            "# ssv-ha\n\nSee [health](docs/health.md#passive-health) and [the code](src/lib.rs).\n",
        ),
        page(
            "docs/health.md",
            "# Health\n\n## Passive health\n\n```sh\n# not a heading\n```\n\n\
             Back to the [README](../README.md#ssv-ha); see [below](#passive-health).\n",
        ),
    ]
    .into();
    let only_src = |p: &Path| p == Path::new("src/lib.rs");
    assert_eq!(unlinked_pages(&good), Vec::<PathBuf>::new());
    assert_eq!(broken_links(&good, only_src), Vec::<String>::new());
    assert_eq!(readme_too_long(&good), None);

    // A page the README does not link.
    let mut unlinked = good.clone();
    unlinked.insert(PathBuf::from("docs/orphan.md"), "# Orphan\n".into());
    assert_eq!(
        unlinked_pages(&unlinked),
        vec![PathBuf::from("docs/orphan.md")]
    );

    // A link to a file that is not there, to a heading that is not there, to a heading that is
    // only a comment in a code block, and out of the repository.
    let mut broken = good.clone();
    broken.insert(
        PathBuf::from("docs/bad.md"),
        "# Bad\n\n[a](gone.md) [b](health.md#active-health) [c](health.md#not-a-heading) \
         [d](../../outside.md) `[e](in-code.md)`\n"
            .into(),
    );
    let found = broken_links(&broken, only_src);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].contains("gone.md (no such file)"), "{found:#?}");
    assert!(
        found[1].contains("#active-health (no such heading)"),
        "{found:#?}"
    );
    assert!(
        found[2].contains("#not-a-heading (no such heading)"),
        "{found:#?}"
    );
    assert!(found[3].contains("(outside the repository)"), "{found:#?}");

    // A README one line too long.
    let mut long = good.clone();
    long.insert(
        PathBuf::from("README.md"),
        "line\n".repeat(README_MAX_LINES + 1),
    );
    assert_eq!(readme_too_long(&long), Some(README_MAX_LINES + 1));

    // Headings make GitHub's anchors, repeats numbered.
    assert_eq!(
        anchors("# A `probe`: one!\n## Repeat\n## Repeat\n"),
        ["a-probe-one", "repeat", "repeat-1"]
    );
}

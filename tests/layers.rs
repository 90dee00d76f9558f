//! The house's layers, checked on the source: every `crate::` (and `super::`) path in `src/`
//! points to a lower layer, and no two modules import each other, even through others.
//!
//! The table below is the picture of docs/architecture.md ("Layers"); a change that needs an
//! upward import is a change of the architecture, to be made there first. Test modules
//! (`#[cfg(test)]`) and comments are not imports and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up; a module may use only those of lower rows.
const LAYERS: &[&[&str]] = &[
    // Calendar and durations: what the config reads and every layer uses.
    &["time"],
    // Pure data, no I/O: what every layer may use.
    &["model", "config", "metrics"],
    // Our XML models and the stanzas written as text.
    &["stanzas"],
    // Persistence: all SQL.
    &["store"],
    // Which instance runs each source's task (a lease in the store).
    &["lease"],
    // Who may see what; what healthy means.
    &["access", "health", "audit"],
    // Where data comes from.
    &["source"],
    // What every request handler shares (context, request, error mapping).
    &["request"],
    // Storing what sources send, publishing it with its notifications.
    &["publisher"],
    // The XEP handlers; sending the outbox.
    &["xep", "delivery"],
    // The ad-hoc commands (built on xep::adhoc).
    &["commands"],
    // The XMPP link and router; the web side.
    &["xmpp", "web"],
    // The configuration file as a whole.
    &["settings"],
    // Wiring.
    &["app", "admin"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/xmpp/router.rs` → `["xmpp", "router"]`; `src/xep/mod.rs` → `["xep"]`.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its test module and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal (URLs) is rare in paths we look for; cutting there
            // can only hide an import, never invent one.
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
}

/// The module paths a file's code names: `crate::a::b::Item`, `crate::a::{b, c::d}`,
/// `super::x`, as lists of lowercase segments.
fn referenced(module: &[String], is_mod_file: bool, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` it is also `a`.
            let mut b = module.to_vec();
            if !is_mod_file || !b.is_empty() {
                b.pop();
            }
            b
        }),
    ] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `xcrate::`, `my_super::`
            }
            let end = rest
                .find(|c: char| {
                    !(c.is_ascii_alphanumeric()
                        || c == '_'
                        || c == ':'
                        || c == '{'
                        || c == '}'
                        || c == ','
                        || c == ' '
                        || c == '\n'
                        || c == '*')
                })
                .unwrap_or(rest.len());
            let path = &rest[..end];
            let (head, group) = match path.find('{') {
                Some(j) => (
                    &path[..j],
                    Some(&path[j + 1..path.find('}').unwrap_or(path.len())]),
                ),
                None => (path.split([' ', ',', '\n', '}']).next().unwrap_or(""), None),
            };
            let head: Vec<String> = head
                .split("::")
                .filter(|s| is_ident(s.trim()))
                .map(|s| s.trim().to_owned())
                .collect();
            match group {
                Some(items) => {
                    for item in items.split(',') {
                        let mut p = base.clone();
                        p.extend(head.iter().cloned());
                        p.extend(
                            item.split("::")
                                .map(str::trim)
                                .filter(|s| is_ident(s))
                                .map(str::to_owned),
                        );
                        out.push(p);
                    }
                }
                None => {
                    let mut p = base.clone();
                    p.extend(head);
                    out.push(p);
                }
            }
        }
    }
    out
}

struct Graph {
    /// Every module of the crate (file level).
    modules: BTreeSet<Vec<String>>,
    /// Module → modules it uses (the longest known module prefix of each path).
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    // Test-only files (`mod tests;` in their own file) are not part of the build.
    files.retain(|f| f.file_name().is_some_and(|n| n != "tests.rs"));
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let from = module_of(file);
        if from.is_empty() {
            continue; // lib.rs, main.rs: the crate root declares and uses everything
        }
        let is_mod_file = file.file_name().is_some_and(|n| n == "mod.rs");
        for path in referenced(&from, is_mod_file, &code(file)) {
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(to) = target {
                // A module may use its own items and its submodules.
                if !to.starts_with(&from) && !from.starts_with(&to) {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    Graph { modules, edges }
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&top))
}

#[test]
fn the_table_names_every_top_level_module() {
    let g = graph();
    let tops: BTreeSet<&str> = g
        .modules
        .iter()
        .filter_map(|m| m.first().map(String::as_str))
        .collect();
    let unknown: Vec<&&str> = tops.iter().filter(|t| layer_of(t).is_none()).collect();
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS: {unknown:?}"
    );
    let listed: BTreeSet<&str> = LAYERS.iter().flat_map(|row| row.iter().copied()).collect();
    let gone: Vec<&&str> = listed.difference(&tops).collect();
    assert!(
        gone.is_empty(),
        "LAYERS lists modules that do not exist: {gone:?}"
    );
}

#[test]
fn every_import_points_down_the_layers() {
    let g = graph();
    let mut upward = Vec::new();
    for (from, tos) in &g.edges {
        for to in tos {
            let (a, b) = (&from[0], &to[0]);
            if a == b {
                continue; // within one top-level module: see the cycle test
            }
            match (layer_of(a), layer_of(b)) {
                (Some(la), Some(lb)) if lb < la => {}
                _ => upward.push(format!("{} -> {}", from.join("::"), to.join("::"))),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_module_cycles_at_any_level() {
    let g = graph();
    // Kahn's algorithm: what cannot be removed lies on a cycle.
    let mut indegree: BTreeMap<&Vec<String>, usize> = g.modules.iter().map(|m| (m, 0)).collect();
    for tos in g.edges.values() {
        for to in tos {
            *indegree.entry(to).or_default() += 1;
        }
    }
    let mut ready: Vec<&Vec<String>> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(m, _)| *m)
        .collect();
    let mut removed = 0;
    while let Some(m) = ready.pop() {
        removed += 1;
        for to in g.edges.get(m).into_iter().flatten() {
            let d = indegree.get_mut(to).unwrap();
            *d -= 1;
            if *d == 0 {
                ready.push(to);
            }
        }
    }
    let stuck: Vec<String> = indegree
        .iter()
        .filter(|(_, d)| **d > 0)
        .map(|(m, _)| m.join("::"))
        .collect();
    assert_eq!(
        removed,
        indegree.len(),
        "modules on a cycle (or fed by one): {stuck:?}"
    );
}

/// The checker itself sees what it must: a grouped import, a `super::` path, a nested group.
#[test]
fn the_path_reader_finds_grouped_and_relative_imports() {
    let module = vec!["xmpp".to_owned(), "router".to_owned()];
    let code = "use crate::request::{Answer, error::raw_iq_error};\nuse super::parse;\nlet x = crate::model::id::random_id();";
    let found = referenced(&module, false, code);
    let has = |p: &[&str]| {
        found
            .iter()
            .any(|f| f.iter().map(String::as_str).eq(p.iter().copied()))
    };
    assert!(has(&["request", "error", "raw_iq_error"]), "{found:?}");
    assert!(has(&["xmpp", "parse"]), "{found:?}");
    assert!(has(&["model", "id", "random_id"]), "{found:?}");
}

//! The node's top-level modules depend on each other without cycles.
//!
//! Every `crate::MODULE` path in `node/src` counts: `use` lines (grouped ones too) and paths
//! written inline, such as `crate::api::Api` in a field type or a call. Test modules and
//! comments do not count. A cycle makes a module impossible to understand, test or move on its
//! own; this test names each one it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read node/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`raft/network.rs` → `raft`, `node.rs` → `node`);
/// `None` for the crate roots, which declare modules rather than use them.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(stem) => Some(stem.to_string()),
        None => Some(first),
    }
}

/// The code of a file without comments and without its test modules.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|l| {
                let l = l.trim_start();
                l.starts_with("mod ")
                    || l.starts_with("pub mod ")
                    || l.starts_with("pub(crate) mod ")
            })
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" // ").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The top-level modules named by `crate::…` paths in `code`, including each head of a
/// grouped `crate::{a::x, b}`.
fn referenced(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        // `tessera_crate::` or similar would not be a path of this crate.
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut head = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => head = true,
                    c if head && (c.is_alphanumeric() || c == '_') => {
                        out.insert(ident(&group[i..]));
                        head = false;
                    }
                    c if !c.is_whitespace() => head = false,
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// A cycle through `start`, if there is one, as the modules in order.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn node_modules_depend_on_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        let deps = graph.entry(module.clone()).or_default();
        for dep in referenced(&code_of(&text)) {
            if dep != module {
                deps.insert(dep);
            }
        }
    }
    assert!(graph.len() > 10, "found too few modules: {graph:?}");
    let cycles: BTreeSet<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|mut c| {
            // One spelling per cycle: start it at its smallest module.
            let min = c
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| *m)
                .map(|(i, _)| i)
                .unwrap_or(0);
            c.rotate_left(min);
            c.push(c[0].clone());
            c.join(" -> ")
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between node modules:\n{}",
        cycles.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_checker_sees_inline_and_grouped_paths() {
    let code = code_of(
        "use crate::{api::Api, raft};\nstruct X { n: crate::signing::NonceStore }\n\
         // crate::cli::Ignored in a comment\nfn f() { tessera_crate::x(); }\n\
         #[cfg(test)]\nmod tests { use crate::metrics; }\n",
    );
    let found: Vec<String> = referenced(&code).into_iter().collect();
    assert_eq!(found, ["api", "raft", "signing"]);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(cycle_from(&graph, "a"), Some(vec!["a".into(), "b".into()]));
    assert_eq!(cycle_from(&graph, "c"), None);
}

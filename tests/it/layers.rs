//! The structure of `src/`, read from its own text: every `crate::…` and
//! `super::…` path a module names is an edge, and the edges must point one
//! way. Between the top-level modules they follow the layers of
//! docs/ARCHITECTURE.md (a module may only name modules of its own layer
//! or below, and the graph has no cycle); inside a folder, the files form
//! no cycle (its `mod.rs` is the folder's own interface and is left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// docs/ARCHITECTURE.md, "Which way dependencies point": lowest first.
const LAYERS: &[&[&str]] = &[
    &["point", "stats", "config"],
    &["host"],
    &["collect", "encode", "schedule"],
    &["deliver"],
    &["operate"],
    &["settings", "usage"],
    &["agent"],
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// (folder or "", file module) of a source file: `collect/cpu.rs` → ("collect", "cpu").
fn module_of(rel: &Path) -> (String, String) {
    let parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [file] => (String::new(), file.clone()),
        [folder, file] => (folder.clone(), file.clone()),
        _ => panic!("unexpected depth: {}", rel.display()),
    }
}

/// The identifiers that follow `prefix` in `text`, and those inside a
/// `prefix{…}` group.
fn names_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let ident = |s: &'a str| {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(inner.split(',').map(|s| ident(s.trim())));
        } else {
            out.push(ident(rest));
        }
    }
    out
}

fn sources(dir: &Path, base: &Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// (edges between top-level modules, edges between files of each folder).
fn graphs() -> (Graph, BTreeMap<String, Graph>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let mut top = Graph::new();
    let mut inner: BTreeMap<String, Graph> = BTreeMap::new();
    for (rel, text) in &files {
        let (folder, file) = module_of(rel);
        if matches!(file.as_str(), "main" | "lib") && folder.is_empty() {
            continue;
        }
        let me = if folder.is_empty() {
            file.clone()
        } else {
            folder.clone()
        };
        top.entry(me.clone()).or_default();
        let siblings: BTreeSet<String> = files
            .iter()
            .map(|(r, _)| module_of(r))
            .filter(|(f, m)| *f == folder && !folder.is_empty() && m != "mod")
            .map(|(_, m)| m)
            .collect();
        let mut link_sibling = |to: &str| {
            if file != "mod" && to != file && siblings.contains(to) {
                let g = inner.entry(folder.clone()).or_default();
                g.entry(file.clone()).or_default().insert(to.to_string());
            }
        };
        for name in names_after(text, "crate::") {
            if name == me {
                continue;
            }
            if top.contains_key(name) || LAYERS.iter().any(|l| l.contains(&name)) {
                top.get_mut(&me).unwrap().insert(name.to_string());
            }
        }
        for prefix in [format!("crate::{folder}::"), "super::".to_string()] {
            if folder.is_empty() {
                break;
            }
            for name in names_after(text, &prefix) {
                link_sibling(name);
            }
        }
    }
    (top, inner)
}

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("{module} is in no layer of LAYERS (docs/ARCHITECTURE.md)"))
}

fn assert_acyclic(what: &str, g: &Graph) {
    // Kahn: repeatedly remove nodes that name nothing left.
    let mut left: Graph = g.clone();
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, to)| to.iter().all(|t| !left.contains_key(t)))
            .map(|(n, _)| n.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for n in leaves {
            left.remove(&n);
        }
    }
    assert!(left.is_empty(), "{what}: a cycle among {left:?}");
}

#[test]
fn dependencies_point_one_way() {
    let (top, inner) = graphs();
    for (from, tos) in &top {
        for to in tos {
            assert!(
                layer(to) <= layer(from),
                "{from} (layer {}) names {to} (layer {}): dependencies point down",
                layer(from),
                layer(to)
            );
        }
    }
    assert_acyclic("src/", &top);
    for (folder, g) in &inner {
        assert_acyclic(&format!("src/{folder}/"), g);
    }
    // The picture is read, not assumed: known edges are seen.
    assert!(top["deliver"].contains("encode") && top["agent"].contains("settings"));
    assert!(inner["deliver"]["ship"].contains("queue"));
    assert!(inner["collect"]["cpu"].contains("stat"));
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    let r = std::panic::catch_unwind(|| assert_acyclic("test", &g));
    assert!(r.is_err());
}

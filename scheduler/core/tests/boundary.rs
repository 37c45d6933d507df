//! The core's two structural promises, checked on every `make test`:
//!
//! 1. **No I/O in the dependency tree.** `cargo tree -p sliceguard-core` (normal and build edges,
//!    the features this crate enables) names no async runtime, HTTP or TLS stack, Kubernetes client,
//!    logging framework or randomness source. A stray `tokio = ...` in `Cargo.toml` fails here with
//!    the crate and the path that brought it in.
//! 2. **No import cycle between the core's modules.** Every `crate::<module>` reference in code (not
//!    in comments) is an edge from the referring top-level module to the named one; the graph must
//!    be acyclic, and a failure prints one cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates the core must never depend on, directly or through another crate.
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "an async runtime"),
    ("async-std", "an async runtime"),
    ("async-io", "an async runtime"),
    ("smol", "an async runtime"),
    ("mio", "an event loop"),
    ("futures-executor", "an async executor"),
    ("hyper", "an HTTP stack"),
    ("h2", "an HTTP stack"),
    ("axum", "an HTTP server"),
    ("tower", "a service stack"),
    ("reqwest", "an HTTP client"),
    ("rustls", "a TLS stack"),
    ("openssl", "a TLS stack"),
    ("kube", "a Kubernetes client"),
    ("kube-client", "a Kubernetes client"),
    ("kube-runtime", "a Kubernetes controller runtime"),
    ("tracing", "a logging framework"),
    ("log", "a logging framework"),
    ("rand", "a randomness source"),
    ("getrandom", "a randomness source"),
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo tree -p sliceguard-core -e normal,build --offline <extra>`: its output, or why it failed.
fn cargo_tree(extra: &[&str]) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(manifest_dir())
        .args([
            "tree",
            "-p",
            "sliceguard-core",
            "-e",
            "normal,build",
            "--offline",
        ])
        .args(extra)
        .output()
        .map_err(|e| format!("cargo tree does not run: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `name version` of every package in the core's normal and build dependency tree.
fn dependency_tree() -> Vec<String> {
    cargo_tree(&["--prefix", "none", "--format", "{p}"])
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|l| l.trim_end_matches(" (*)").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The chain of packages through which `cargo tree -i` says `name` enters the core.
fn path_to(name: &str) -> String {
    cargo_tree(&["-i", name]).unwrap_or_else(|e| e)
}

#[test]
fn the_dependency_tree_holds_no_runtime_http_client_logger_or_randomness() {
    let tree = dependency_tree();
    assert!(
        tree.iter().any(|p| p.starts_with("serde_json ")),
        "the tree was read (it must list serde_json): {tree:?}"
    );
    let mut found = Vec::new();
    for package in &tree {
        let name = package.split_whitespace().next().unwrap_or_default();
        if let Some((_, what)) = FORBIDDEN.iter().find(|(f, _)| *f == name) {
            found.push(format!(
                "{package} ({what}), brought in by:\n{}",
                path_to(name)
            ));
        }
    }
    assert!(
        found.is_empty(),
        "sliceguard-core must stay sans-IO, but its dependency tree holds:\n{}",
        found.join("\n")
    );
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/fit.rs` and `src/codec/lock.rs` give
/// `fit` and `codec`; `src/lib.rs` gives none).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib").then(|| name.to_string())
}

/// The code of a file without its comments (line and doc comments; the core has no block comments
/// in code) and without its unit tests (from `#[cfg(test)]` at the start of a line on: a test may
/// drive the module through a higher one).
fn code_only(text: &str) -> String {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Edges `module -> module it names through crate::` (self-references dropped).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = manifest_dir().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        let code = code_only(&std::fs::read_to_string(&file).expect("source is readable"));
        let targets = graph.entry(from.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != from {
                targets.insert(name);
            }
        }
    }
    graph
}

/// One cycle of the graph, if it has any (depth-first search with colours).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, Colour>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(node.to_string(), Colour::Grey);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match colour.get(next.as_str()).copied().unwrap_or(Colour::White) {
                Colour::Grey => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Colour::White => {
                    if let Some(cycle) = visit(next, graph, colour, stack) {
                        return Some(cycle);
                    }
                }
                Colour::Black => {}
            }
        }
        stack.pop();
        colour.insert(node.to_string(), Colour::Black);
        None
    }
    let mut colour = BTreeMap::new();
    for node in graph.keys() {
        if colour.get(node.as_str()).copied().unwrap_or(Colour::White) == Colour::White
            && let Some(cycle) = visit(node, graph, &mut colour, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_core_modules_import_each_other_without_a_cycle() {
    let graph = import_graph();
    assert!(
        graph.contains_key("fit") && graph.contains_key("decision") && graph.len() >= 15,
        "the module graph was read: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = graph
            .iter()
            .map(|(m, to)| {
                format!(
                    "  {m} -> {}",
                    to.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        panic!(
            "import cycle between the core's modules: {}\nthe graph:\n{}",
            cycle.join(" -> "),
            edges.join("\n")
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle_and_accepts_a_dag() {
    let edges = |list: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in list {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let dag = edges(&[("decision", "fit"), ("fit", "model"), ("decision", "model")]);
    assert_eq!(find_cycle(&dag), None);
    let cyclic = edges(&[
        ("decision", "index"),
        ("index", "ledger"),
        ("ledger", "index"),
    ]);
    assert_eq!(
        find_cycle(&cyclic),
        Some(vec!["index".into(), "ledger".into(), "index".into()])
    );
}

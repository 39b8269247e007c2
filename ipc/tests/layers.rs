//! Keeps the layering of `ipc/src` true (ARCHITECTURE.md, "Layers").
//!
//! Reads the crate's sources and collects for each top-level module (a file
//! `src/m.rs` or a folder `src/m/`) the other top-level modules it names
//! through `crate::…` or `super::…` paths, also through names re-exported at
//! the crate root (`crate::Exchange`). Unit tests (`#[cfg(test)] mod tests`)
//! do not count. Every module must sit in one of [`LAYERS`] and use only
//! modules of lower layers (or of its own layer when that layer is one knot),
//! save the [`EXCEPTIONS`]; so dependencies run one way. It also fails on any
//! source file over 700 lines whose header (`//!` lines) has no line starting
//! with `Size:` that says why it is longer.
//!
//! `SHMEX_LAYERS_SRC=/path/to/ipc/src` checks another tree (an old commit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 700;

/// The layers of `ipc/src`, lowest first: (name, modules, whether its
/// modules may use each other).
const LAYERS: &[(&str, &[&str], bool)] = &[
    ("base", &["layout", "sys", "pattern", "submit"], false),
    ("routing keys", &["topic"], false),
    // An error names payload types; a descriptor's check is an `OpenError`.
    (
        "errors and payload types",
        &["error", "payload", "umbrella"],
        true,
    ),
    ("segments", &["segment"], false),
    ("namespace", &["namespace"], false),
    ("registry", &["registry"], false),
    // A port's loans and samples and their owned forms are one knot with
    // the exchange: ports hand out `Loan`s, owned values keep a `Keeper`.
    ("exchange core", &["exchange", "sample", "owned"], true),
    ("waiting", &["waitset"], false),
    (
        "patterns",
        &["rpc", "pubsub", "fanin", "tasks", "watch"],
        false,
    ),
    ("reclaim", &["reclaim"], false),
    ("node", &["node"], false),
    // Typed request-response and tasks reuse the typed views of `typed`.
    (
        "typed",
        &["typed", "typed_rpc", "typed_tasks", "serialized"],
        true,
    ),
    ("deprecated aliases", &["deprecated"], false),
];

/// Uses that go against the layers, each with its reason.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// Files allowed over [`MAX_LINES`] without a `Size:` line, with the reason.
const LONG_FILES: &[(&str, &str)] = &[];

fn src_dir() -> PathBuf {
    std::env::var_os("SHMEX_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src dir")
        .map(|e| e.expect("dir entry").path())
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

/// The module path of a source file: `a.rs` and `a/mod.rs` are `[a]`,
/// `a/b.rs` is `[a, b]`, `lib.rs` is `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The source without comments (line comments, doc comments and block
/// comments), so that doc links do not count as dependencies.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        if in_str {
            if b[i] == b'\\' {
                i += 2;
                continue;
            }
            if b[i] == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if b[i] == b'"' {
            in_str = true;
            i += 1;
            continue;
        }
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// The first names of the paths in a `{a::b, c, d::{e, f}}` group
/// (`s` starts after the `{`).
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && is_ident(c) => {
                heads.push(ident_at(&s[i..]).to_string());
                start = false;
            }
            _ => {}
        }
    }
    heads
}

/// Names re-exported at the crate root (`pub use m::{A, B}` in lib.rs),
/// mapped to their top-level module.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut rest = lib;
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + 8..];
        let module = ident_at(rest).to_string();
        let after = &rest[module.len()..];
        let stmt_end = after.find(';').unwrap_or(after.len());
        let stmt = &after[..stmt_end];
        for name in stmt.split(|c: char| !is_ident(c)).filter(|n| !n.is_empty()) {
            map.entry(name.to_string())
                .or_insert_with(|| module.clone());
        }
    }
    map
}

/// The top-level modules `file` (at `path`) names, other than its own.
fn dependencies(
    text: &str,
    path: &[String],
    modules: &BTreeSet<String>,
    exports: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let code = strip_comments(text);
    let code = match code.find("#[cfg(test)]\nmod tests") {
        Some(at) => code[..at].to_string(),
        None => code,
    };
    let mut heads = Vec::new();
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && (is_ident(bytes[at - 1] as char) || bytes[at - 1] == b'$') {
            continue;
        }
        heads.extend(path_heads(&code[at + 7..]));
    }
    for (at, _) in code.match_indices("super::") {
        if at > 0 && (is_ident(bytes[at - 1] as char) || bytes[at - 1] == b':') {
            continue;
        }
        let mut level = 1;
        let mut rest = &code[at + 7..];
        while let Some(r) = rest.strip_prefix("super::") {
            level += 1;
            rest = r;
        }
        // `super` from `path` names `path[..len - level]`; only paths that
        // reach the crate root name another top-level module.
        if level >= path.len() {
            heads.extend(path_heads(rest));
        }
    }
    let own = path.first().cloned().unwrap_or_default();
    heads
        .into_iter()
        .filter_map(|h| {
            if modules.contains(&h) {
                Some(h)
            } else {
                exports.get(&h).cloned()
            }
        })
        .filter(|m| *m != own)
        .collect()
}

fn path_heads(rest: &str) -> Vec<String> {
    if let Some(group) = rest.strip_prefix('{') {
        group_heads(group)
    } else {
        vec![ident_at(rest).to_string()]
    }
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.found.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn sources() -> Vec<(PathBuf, Vec<String>, String)> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("read source");
            (f.clone(), module_path(&src, &f), text)
        })
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|(_, p, _)| p.first().cloned())
        .collect();
    let lib = files
        .iter()
        .find(|(_, p, _)| p.is_empty())
        .map(|(_, _, t)| t.as_str())
        .expect("lib.rs");
    let exports = root_exports(lib);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, path, text) in &files {
        let Some(top) = path.first() else { continue };
        graph
            .entry(top.clone())
            .or_default()
            .extend(dependencies(text, path, &modules, &exports));
    }
    graph
}

fn layer_of(module: &str) -> Option<(usize, bool)> {
    LAYERS
        .iter()
        .position(|(_, ms, _)| ms.contains(&module))
        .map(|i| (i, LAYERS[i].2))
}

#[test]
fn modules_use_only_lower_layers() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (m, deps) in &graph {
        println!("{m} -> {deps:?}");
        let Some((layer, knot)) = layer_of(m) else {
            wrong.push(format!("{m} is in no layer (add it to LAYERS)"));
            continue;
        };
        for d in deps {
            let ok = match layer_of(d) {
                Some((l, _)) => l < layer || (l == layer && knot),
                None => false,
            };
            if !ok && !EXCEPTIONS.iter().any(|(f, t, _)| f == m && t == d) {
                let to = layer_of(d).map_or("no layer", |(l, _)| LAYERS[l].0);
                wrong.push(format!("{m} ({}) uses {d} ({to})", LAYERS[layer].0));
            }
        }
    }
    // The same, seen as cycles: between layers (exceptions left out), none.
    let mut layered: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in &graph {
        let name = |m: &str| layer_of(m).map_or(m.to_string(), |(l, _)| LAYERS[l].0.to_string());
        let from = layered.entry(name(m)).or_default();
        for d in deps {
            if name(d) != name(m) && !EXCEPTIONS.iter().any(|(f, t, _)| f == m && t == d) {
                from.insert(name(d));
            }
        }
    }
    let found = cycles(&layered);
    if !found.is_empty() {
        wrong.push(format!("layers in a circle: {found:?}"));
    }
    assert!(
        wrong.is_empty(),
        "uses against the layers of ipc/src:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn no_long_file_without_a_reason() {
    let mut long = Vec::new();
    for (file, _, text) in sources() {
        let lines = text.lines().count();
        let reason = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .any(|l| {
                l.trim_start_matches("//!")
                    .trim_start()
                    .starts_with("Size:")
            });
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let exempt = LONG_FILES
            .iter()
            .any(|(f, _)| name.as_deref() == Some(*f) && file.parent() == Some(&src_dir()));
        if lines > MAX_LINES && !reason && !exempt {
            long.push(format!("{} ({lines} lines)", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines without a `//! Size: …` header line: {long:?}"
    );
}

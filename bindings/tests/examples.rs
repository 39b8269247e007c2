//! Every C example, built with `cc` against `shmex.h` and `libshmex.a`,
//! runs once to a successful end (each forks its own peers), in a namespace
//! of its own that it leaves empty. Also the C test of error handling.

mod common;

use common::{run, valgrind, TestNs};

/// Runs example `name` in a fresh namespace with `args` after it.
fn example(name: &str, extra: &[&str]) -> Vec<String> {
    let ns = TestNs::new(name);
    let mut args = extra.to_vec();
    args.push(&ns.name);
    let lines = run(&format!("examples/{name}.c"), &args);
    ns.assert_clean();
    lines
}

#[test]
fn rpc() {
    let lines = example("rpc", &[]);
    assert!(
        lines.iter().any(|l| l == "2: re: what time is it? #2"),
        "{lines:?}"
    );
}

#[test]
fn stream() {
    let lines = example("stream", &[]);
    assert!(
        lines.iter().any(|l| l.starts_with("received 64 parts")),
        "{lines:?}"
    );
}

#[test]
fn dialogue() {
    let lines = example("dialogue", &[]);
    assert!(lines.iter().any(|l| l == "customer: done"), "{lines:?}");
}

#[test]
fn pubsub() {
    let lines = example("pubsub", &[]);
    assert!(
        lines.iter().any(|l| l.starts_with("home.garage.temp: #9")),
        "{lines:?}"
    );
}

#[test]
fn fanin() {
    let lines = example("fanin", &[]);
    assert_eq!(lines.len(), 40, "{lines:?}");
}

#[test]
fn tasks() {
    let lines = example("tasks", &[]);
    assert!(
        lines
            .iter()
            .any(|l| l == "dead letter: task 13 after 1 deliveries"),
        "{lines:?}"
    );
}

#[test]
fn watch() {
    let lines = example("watch", &[]);
    assert!(lines.iter().any(|l| l == "orders went down"), "{lines:?}");
}

#[test]
fn pingpong() {
    let rounds = if valgrind() { "200" } else { "2000" };
    for mode in ["rpc", "pubsub"] {
        let lines = example("pingpong", &[mode, rounds]);
        assert!(lines.iter().any(|l| l.contains("median_ns=")), "{lines:?}");
    }
}

/// The error paths of the C API (tests/c/errors.c): NULL arguments, stale,
/// forged and mistyped handles, busy ports, wrong lengths and every
/// pattern's error codes, checked from C.
#[test]
fn errors_from_c() {
    let ns = TestNs::new("errors");
    let lines = run("tests/c/errors.c", &[&ns.name]);
    assert!(lines.iter().any(|l| l.starts_with("ok:")), "{lines:?}");
    ns.assert_clean();
}

/// The handle contract, table-driven (tests/c/handle_table.c): every
/// function taking a handle, with NULL, released, forged and wrong-kind
/// handles in each handle parameter, returns the documented code, leaves
/// out-parameters and other handles alone and consumes the loans it takes.
/// The table covers every function of shmex.h that takes a handle.
#[test]
fn handle_table_from_c() {
    let ns = TestNs::new("handles");
    let lines = run("tests/c/handle_table.c", &[&ns.name]);
    assert!(lines.iter().any(|l| l.starts_with("ok:")), "{lines:?}");
    ns.assert_clean();
    let mut covered = std::collections::BTreeMap::<String, usize>::new();
    for row in lines.iter().filter_map(|l| l.strip_prefix("covered: ")) {
        let function = row.split(' ').next().unwrap_or(row);
        *covered.entry(function.to_string()).or_default() += 1;
    }
    let header = std::fs::read_to_string(common::crate_dir().join("include/shmex.h"))
        .expect("read include/shmex.h");
    let wanted = handle_functions(&header);
    for (f, handles) in [
        ("shmex_waitset_add", 2),
        ("shmex_client_answer_loan", 3),
        ("shmex_client_free", 1),
        ("shmex_limits_init", 0),
        ("shmex_waitset_create", 0),
    ] {
        assert_eq!(
            wanted.get(f).copied().unwrap_or(0),
            handles,
            "{f} in {wanted:?}"
        );
    }
    assert_eq!(
        covered, wanted,
        "tests/c/handle_table.c needs one row per handle parameter of shmex.h"
    );
}

/// The functions of `header` that take handles, and how many (deprecated
/// ones left out): parameters of
/// an opaque type (`typedef struct shmex_x shmex_x;`) passed by single
/// pointer, or `const void *port`.
fn handle_functions(header: &str) -> std::collections::BTreeMap<String, usize> {
    let opaque: Vec<&str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("typedef struct "))
        .filter_map(|l| l.strip_suffix(';'))
        .filter_map(|l| l.split_once(' ').map(|(a, _)| a))
        .collect();
    let mut code = String::new();
    let mut rest = header;
    while let Some((before, comment)) = rest.split_once("/*") {
        code.push_str(before);
        rest = comment.split_once("*/").map_or("", |(_, after)| after);
    }
    code.push_str(rest);
    let flat: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    let mut functions = std::collections::BTreeMap::new();
    for decl in flat.split(';') {
        // Deprecated names are one-line calls of their new functions, which
        // have rows of their own.
        if decl.contains("__attribute__((deprecated") {
            continue;
        }
        let Some((head, params)) = decl.trim().split_once('(') else {
            continue;
        };
        let Some(name) = head.rsplit(' ').next().map(|n| n.trim_start_matches('*')) else {
            continue;
        };
        if !name.starts_with("shmex_") || !params.ends_with(')') {
            continue;
        }
        let handles = params
            .trim_end_matches(')')
            .split(',')
            .filter(|p| {
                let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
                p == "const void *port"
                    || opaque
                        .iter()
                        .any(|t| p.starts_with(&format!("struct {t} *")) && !p.contains("**"))
            })
            .count();
        if handles > 0 {
            functions.insert(name.to_string(), handles);
        }
    }
    functions
}

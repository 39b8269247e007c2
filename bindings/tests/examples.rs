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

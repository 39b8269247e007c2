//! Creating an exchange that is alive in another process: `create_exchange`
//! must refuse with `AlreadyExists`, `open_or_create_exchange` with other
//! settings with `Mismatch`, and the same settings must open it.
//!
//! Each attempt runs in a probe process of its own, with a bounded wait: a
//! call that hangs (a deadlock in the library) fails the test instead of
//! hanging the test binary.

mod common;

use common::{child_node, env_str, report, ChildProc, TestNs};
use shmex::{Limits, Pattern};
use std::time::Duration;

/// Hang protection for a probe: any of its calls returns at once when the
/// library is right.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "probe" => probe(),
        other => panic!("unknown role {other}"),
    }
}

/// Tries OP on the live exchange "svc" and reports the outcome.
fn probe() {
    let op = env_str("OP");
    let node = child_node("probe");
    let outcome = match op.as_str() {
        "create" => node
            .create_exchange("svc", Pattern::FanIn, Limits::default())
            .map(|ex| ex.pattern()),
        "open_or_create_other_pattern" => node
            .open_or_create_exchange("svc", Pattern::PublishSubscribe, Limits::default())
            .map(|ex| ex.pattern()),
        "open_or_create_same" => node
            .open_or_create_exchange("svc", Pattern::FanIn, Limits::default())
            .map(|ex| ex.pattern()),
        other => panic!("unknown op {other}"),
    };
    report(format!("outcome {outcome:?}"));
}

#[test]
fn creating_a_live_exchange_again_is_refused() {
    let ns = TestNs::new("recreate");
    let node = ns.node("owner");
    let ex = node
        .create_exchange("svc", Pattern::FanIn, Limits::default())
        .expect("create");
    // One probe at a time: a probe stuck in the library holds the
    // namespace's control lock, which would stall the others too.
    let expected = [
        ("open_or_create_same", "Ok(FanIn)".to_string()),
        (
            "create",
            r#"Err(AlreadyExists { name: "svc" })"#.to_string(),
        ),
        (
            "open_or_create_other_pattern",
            r#"Err(Mismatch { name: "svc", what: "pattern", ours: "publish-subscribe", theirs: "fan-in" })"#
                .to_string(),
        ),
    ];
    let mut failures = Vec::new();
    for (op, want) in &expected {
        let probe = ChildProc::spawn(&ns, "probe", &[("OP", op.to_string())]);
        match probe.try_finish_within(PROBE_TIMEOUT) {
            Ok(r) if r.one("outcome") == *want => {}
            Ok(r) => failures.push(format!("{op}: got {}, expected {want}", r.one("outcome"))),
            Err(e) => failures.push(format!("{op}: expected {want}, but: {}", e)),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The refused attempts left the exchange as it was.
    assert_eq!(ex.ports(), 0);
    drop((ex, node));
    ns.assert_clean();
}

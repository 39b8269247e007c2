//! Heartbeats: a node's background thread keeps its registry slot fresh, and
//! `list_nodes` reports a live process whose heartbeat stopped as hung.

mod common;

use common::{child_ns, report, wait_parent_eof, ChildProc, TestNs};
use shmex::{list_nodes, Node, HUNG_AFTER};
use std::time::Duration;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let interval = match role.as_str() {
        "beating" => Duration::from_millis(20),
        "silent" => Duration::ZERO,
        other => panic!("unknown role {other}"),
    };
    let node = Node::builder(role.as_str())
        .namespace(child_ns())
        .root(common::ROOT)
        .heartbeat(interval)
        .create()
        .expect("join");
    report("ready");
    wait_parent_eof();
    drop(node);
}

#[test]
fn silent_node_is_hung_and_beating_node_alive() {
    let ns = TestNs::new("heartbeat");
    let mut beating = ChildProc::spawn(&ns, "beating", &[]);
    let mut silent = ChildProc::spawn(&ns, "silent", &[]);
    beating.wait_for("ready");
    silent.wait_for("ready");
    // Wait (not a speed bound) until the silent node's heartbeat is older
    // than the hang threshold; the beating one keeps refreshing meanwhile.
    std::thread::sleep(HUNG_AFTER + Duration::from_millis(300));
    let nodes = list_nodes(&ns.namespace()).expect("list nodes");
    let state = |name: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("node {name} listed: {nodes:?}"))
            .state
    };
    assert_eq!(state("silent"), "hung", "{nodes:?}");
    assert_eq!(state("beating"), "alive", "{nodes:?}");
    beating.close_stdin();
    silent.close_stdin();
    beating.finish();
    silent.finish();
    ns.assert_clean();
}

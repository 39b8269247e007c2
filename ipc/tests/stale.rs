//! Stale segments: exchanges left behind by processes that died (SIGKILL) or
//! exited without dropping anything are detected and replaced, never
//! reported as existing, and nothing is left in /dev/shm at the end.

mod common;

use common::{child_node, report, wait_parent_eof, ChildProc, TestNs};
use shmex::{list_nodes, Limits, OpenError, Pattern};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "creator" => creator(),
        "creator_exit" => creator_exit(),
        "recreator" => recreator(),
        other => panic!("unknown role {other}"),
    }
}

fn limits() -> Limits {
    Limits::default()
        .chunk_size(128)
        .chunk_count(8)
        .queue_depth(4)
        .max_ports(4)
}

/// Creates exchanges "svc" (with its consumer attached and a chunk loaned)
/// and "other", then blocks until killed.
fn creator() {
    let node = child_node("creator");
    let ex = node
        .create_exchange("svc", Pattern::FanIn, limits())
        .expect("create svc");
    let _other = node
        .create_exchange("other", Pattern::PublishSubscribe, limits())
        .expect("create other");
    let _consumer = ex.consumer().expect("consumer");
    let producer = ex.producer().expect("producer");
    let _loan = producer.loan(8).expect("loan");
    report("ready");
    wait_parent_eof();
    panic!("the parent was meant to kill this process");
}

#[test]
fn exchange_of_killed_process_is_replaced() {
    let ns = TestNs::new("killed");
    // The parent's node keeps the namespace alive throughout, so the
    // last-node-out cleanup cannot hide what create/open do with stale files.
    let node = ns.node("parent");
    let mut creator = ChildProc::spawn(&ns, "creator", &[]);
    creator.wait_for("ready");
    let creator_pid = creator.pid();

    // (That creating it again while its creator lives is refused is checked
    // by recreate.rs, in probe processes.)
    let svc_path = ns.exchange_path("svc");
    let old_inode = std::fs::metadata(&svc_path).expect("svc file").ino();

    let status = creator.kill_and_reap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    // Its files and its registry entry are still there, marked dead.
    assert!(svc_path.exists() && ns.exchange_path("other").exists());
    let nodes = list_nodes(&ns.namespace()).expect("list nodes");
    let dead: Vec<_> = nodes.iter().filter(|n| n.pid == creator_pid).collect();
    assert_eq!(dead.len(), 1, "{nodes:?}");
    assert_eq!((dead[0].name.as_str(), dead[0].state), ("creator", "dead"));

    // Opening a stale exchange finds nothing (and clears it away).
    assert!(matches!(
        node.open_exchange("other"),
        Err(OpenError::NotFound { .. })
    ));
    assert!(!ns.exchange_path("other").exists());

    // Creating one over a stale file replaces it with a fresh one.
    let ex = node
        .create_exchange("svc", Pattern::FanIn, limits())
        .expect("create over a stale exchange");
    assert_ne!(
        std::fs::metadata(&svc_path).expect("svc file").ino(),
        old_inode,
        "the stale file was reused"
    );
    assert_eq!(ex.ports(), 0, "ports of the dead process survived");
    assert_eq!(ex.chunks_free(), limits().chunk_count, "its loan survived");
    let consumer = ex.consumer().expect("the dead consumer is gone");
    ex.producer()
        .expect("producer")
        .send(1, b"fresh")
        .expect("send");
    assert_eq!(
        &consumer.try_receive().unwrap().expect("message")[..],
        b"fresh"
    );
    drop((consumer, ex, node));
    ns.assert_clean();
}

/// Creates exchange "svc" and leaves with `std::process::exit`: no
/// destructor runs, so the registry entry and the segment stay behind.
fn creator_exit() {
    let node = child_node("quitter");
    let ex = node
        .create_exchange("svc", Pattern::RequestResponse, limits())
        .expect("create");
    let _server = ex.server().expect("server");
    report("created");
    std::process::exit(0);
}

/// Creates exchange "svc" (which must succeed), uses it, and leaves cleanly.
fn recreator() {
    let node = child_node("recreator");
    let ex = match node.create_exchange("svc", Pattern::RequestResponse, limits()) {
        Ok(ex) => ex,
        Err(e) => {
            report(format!("create {e:?}"));
            return;
        }
    };
    report("create Ok");
    report(format!("ports {}", ex.ports()));
    let client = ex.client().expect("client");
    // The dead server's port must not count as a server.
    report(format!("request {:?}", client.send(1, b"anyone?")));
}

#[test]
fn exchange_of_process_that_exited_without_cleanup_is_replaced() {
    let ns = TestNs::new("exited");
    let quitter = ChildProc::spawn(&ns, "creator_exit", &[]).finish();
    assert_eq!(quitter.one("created"), "");
    // Nobody is left in the namespace, yet its files are: nothing dropped.
    let files = ns.files();
    assert!(
        files.contains(&ns.namespace().registry_path()) && files.contains(&ns.exchange_path("svc")),
        "{files:?}"
    );

    // Another process creates the same exchange: stale, so replaced.
    let recreator = ChildProc::spawn(&ns, "recreator", &[]).finish();
    assert_eq!(recreator.one("create"), "Ok");
    assert_eq!(recreator.num("ports"), 0);
    assert_eq!(recreator.one("request"), "Err(NoServer)");
    // The recreator was the last node out: it removed everything.
    ns.assert_clean();
}

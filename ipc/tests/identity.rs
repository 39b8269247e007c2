//! Node identity: liveness comes from a lock the kernel releases when a
//! process dies (an OFD lock on the node's registry slot), never from a pid
//! read from shared memory. So a node in another PID namespace (a container
//! sharing `/dev/shm`) is alive while it runs and dead once it died, and a
//! pid forged into a node's registry slot retires nothing.

mod common;

use common::{child_node, read_parent_line, report, ChildProc, TestNs, TIMEOUT};
use shmex::{list_nodes, Limits, Pattern};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "subscriber" => subscriber(),
        "late_server" => late_server(),
        other => panic!("unknown role {other}"),
    }
}

/// Subscribes to `news`, reports `ready PID` (its pid as it sees it), then
/// `got PAYLOAD` for each line `receive` from the parent, until stdin closes.
fn subscriber() {
    let node = child_node("sub");
    let ex = node.open_exchange("news").expect("open news");
    let sub = ex.subscriber("#", 1).expect("subscribe");
    report(format!("ready {}", std::process::id()));
    while let Some(line) = read_parent_line() {
        if line == "receive" {
            match sub.receive_timeout(TIMEOUT) {
                Ok(s) => report(format!("got {}", String::from_utf8_lossy(s.payload()))),
                Err(e) => report(format!("got error {e}")),
            }
        }
    }
}

/// Polls `done` (hang protection only).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// True when `unshare --pid --fork` works here (root, or unprivileged user
/// namespaces).
fn pid_namespaces_available() -> bool {
    std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Before: a node in a PID namespace of its own registered pid 1 (or 2) and
/// the start time of *this* namespace's process of that pid, so it looked
/// alive forever, even after its death, and was never reclaimed. Now its
/// liveness lock makes it alive while it runs (a reclaim pass leaves it, it
/// receives), and dead once it was killed (reclaimed, its port retired).
#[test]
fn node_in_another_pid_namespace_is_alive_then_reclaimed() {
    if !pid_namespaces_available() {
        eprintln!("SKIPPED: `unshare --pid --fork` is not available here");
        return;
    }
    let ns = TestNs::new("pidns");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("news", Pattern::PublishSubscribe, Limits::default())
        .expect("create");
    let publisher = ex.publisher().expect("publisher");
    let mut child = ChildProc::spawn_under(
        &["unshare", "--pid", "--fork", "--kill-child"],
        &ns.name,
        "subscriber",
        &[],
    );
    let seen_pid: u32 = child.wait_for("ready").parse().expect("pid");
    assert!(
        seen_pid <= 2,
        "not in a PID namespace of its own: pid {seen_pid}"
    );

    let r = node.reclaim_dead().expect("reclaim");
    assert!(
        r.nodes.is_empty() && r.ports == 0,
        "a live node reclaimed: {r:?}"
    );
    let nodes = list_nodes(&ns.namespace()).expect("list");
    let sub = nodes.iter().find(|n| n.name == "sub").expect("listed");
    assert_eq!(sub.state, "alive", "{nodes:?}");
    publisher.send("a.b", b"hello").expect("publish");
    child.send("receive");
    assert_eq!(child.wait_for("got"), "hello");

    child.kill(); // SIGKILL to unshare; --kill-child takes its child along
    let mut reclaimed = None;
    wait_until("the dead node to be reclaimed", || {
        let r = node.reclaim_dead().expect("reclaim");
        if let Some(n) = r.nodes.iter().find(|n| n.name == "sub") {
            reclaimed = Some((n.clone(), r.ports));
        }
        reclaimed.is_some()
            || list_nodes(&ns.namespace())
                .expect("list")
                .iter()
                .any(|n| n.name == "sub" && n.state == "reclaimed")
    });
    let _ = child.kill_and_reap();
    drop((publisher, ex, node));
    ns.assert_clean();
}

/// Offset of the `u32` in the registry file holding `pid` as a live node's
/// pid (slot layout: state, generation, pid, ...).
fn registry_pid_offset(bytes: &[u8], pid: u32) -> usize {
    let word = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
    (8..bytes.len() - 4)
        .step_by(4)
        .find(|&o| word(o) == pid && word(o - 8) == 1)
        .expect("the child's registry slot")
}

/// The namespace's registry file opened read-write, its bytes, and the
/// offset of the live node slot's pid word holding `pid`.
fn open_registry_at_pid(ns: &TestNs, pid: u32) -> (std::fs::File, Vec<u8>, usize) {
    let path = ns.namespace().registry_path();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open registry");
    let bytes = std::fs::read(&path).expect("read registry");
    let at = registry_pid_offset(&bytes, pid);
    (file, bytes, at)
}

/// Before: reclaim passes asked whether the pid in a node's registry slot
/// (and in its ports) still ran; a same-uid peer writing a dead pid and a
/// zero start time into a victim's slot got the victim's ports retired.
/// Now nothing retires a node whose liveness lock is held.
#[test]
fn forged_pid_in_the_registry_retires_nothing() {
    let ns = TestNs::new("forged");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("news", Pattern::PublishSubscribe, Limits::default())
        .expect("create");
    let publisher = ex.publisher().expect("publisher");
    let mut child = ChildProc::spawn(&ns, "subscriber", &[]);
    let pid: u32 = child.wait_for("ready").parse().expect("pid");

    let (file, _, at) = open_registry_at_pid(&ns, pid);
    // A pid that cannot exist, and start time 0 (as an unreadable /proc
    // used to register).
    file.write_all_at(&0x7fff_fff0u32.to_ne_bytes(), at as u64)
        .expect("forge pid");
    file.write_all_at(&0u64.to_ne_bytes(), at as u64 + 8)
        .expect("forge start time");

    let r = node.reclaim_dead().expect("reclaim");
    assert!(
        r.nodes.is_empty() && r.ports == 0,
        "a live node reclaimed: {r:?}"
    );
    let nodes = list_nodes(&ns.namespace()).expect("list");
    assert!(
        nodes.iter().any(|n| n.name == "sub" && n.state == "alive"),
        "{nodes:?}"
    );
    publisher.send("a.b", b"still here").expect("publish");
    child.send("receive");
    assert_eq!(child.wait_for("got"), "still here");
    drop(file);
    child.finish();
    drop((publisher, ex, node));
    ns.assert_clean();
}

/// A server (`server` role) that takes one request, reports `got`, and
/// responds `late` when the parent says `respond`.
fn late_server() {
    let node = child_node("srv");
    let ex = node.open_exchange("svc").expect("open svc");
    let server = ex.server().expect("server");
    report("ready");
    let request = server.receive_timeout(TIMEOUT).expect("a request");
    report("got");
    while let Some(line) = read_parent_line() {
        if line == "respond" {
            let outcome = request.respond(b"late");
            report(format!("responded {}", outcome.is_ok()));
            break;
        }
    }
    while read_parent_line().is_some() {}
}

/// A client reports a request failed when its server's node is found gone
/// (here: the server's registry slot names another registration, as a buggy
/// peer could leave it). If the server then responds after all, that
/// response must not become a second outcome of the same request. Before:
/// the client returned the late response as a sample, after the failure.
#[test]
fn a_request_reported_failed_gets_no_second_outcome() {
    let ns = TestNs::new("oneoutcome");
    let node = ns.node("client");
    let ex = node
        .create_exchange("svc", Pattern::RequestResponse, Limits::default())
        .expect("create");
    let client = ex.client().expect("client");
    let mut srv = ChildProc::spawn(&ns, "late_server", &[]);
    srv.wait_for("ready");
    let pid = srv.pid();
    client.send(5, b"question").expect("request");
    srv.wait_for("got");

    // Make the server's registration look replaced: bump its slot's
    // generation (slot layout: state, generation, pid, ...).
    let (file, bytes, at) = open_registry_at_pid(&ns, pid);
    let at = at - 4;
    let generation = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
    file.write_all_at(&(generation + 1).to_ne_bytes(), at as u64)
        .expect("forge generation");
    assert!(
        client.check_servers() >= 1,
        "the server's node still looks alive"
    );
    match client.try_receive() {
        Err(shmex::RecvError::RequestFailed { tag: 5, .. }) => {}
        other => panic!("expected the request failed, got {other:?}"),
    }
    file.write_all_at(&generation.to_ne_bytes(), at as u64)
        .expect("restore generation");
    srv.send("respond");
    srv.wait_for("responded");
    // Whatever the late response did, the client sees no second outcome.
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        if let Some(s) = client.try_receive().expect("try_receive") {
            panic!(
                "a second outcome for request {}: {:?}",
                s.tag(),
                s.payload()
            );
        }
    }
    drop(file);
    let _ = srv.kill_and_reap();
    drop((client, ex, node));
    ns.assert_clean();
}

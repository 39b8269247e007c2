//! A port's `busy` word (odd: inside an operation) forged while its owner
//! lives (issue 12 §7, the related gap).
//!
//! What it did: the owner's next `enter` read its own counter from shared
//! memory, took the odd value for "already inside an operation" and joined
//! it (`Nested`), so it never moved the counter again. Every reclaim pass on
//! the exchange then waited its full idle wait for that port and gave up,
//! for as long as the owner lived: dead ports were never retired, their
//! chunks never recounted, and each attempt held every other port of the
//! exchange paused for the idle wait. (A pass that had already started
//! could also run beside the owner's "nested" operations, which skip the
//! pause handshake.) Now a process keeps its own record of which of its
//! ports are inside an operation, and the owner's next operation puts the
//! forged word back: the effect lasts as long as a stopped owner's would,
//! until the owner's next operation.

mod common;

use common::{child_node, env_str, read_parent_line, report, ChildProc, TestNs};
use shmex::{word_offsets, Limits, Pattern};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "rounds" => rounds(),
        "doomed" => doomed(),
        other => panic!("unknown role {other}"),
    }
}

/// Timeout of each operation of a child (hang protection only).
const OP: Duration = Duration::from_secs(10);

fn limits() -> Limits {
    Limits::default()
        .chunk_size(64)
        .chunk_count(16)
        .queue_depth(4)
        .max_ports(8)
}

/// A client and a server in one process (ports 0 and 1): one request and
/// its response per "round" line from the parent.
fn rounds() {
    let node = child_node("rounds");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    let server = ex.server().expect("server");
    report("ready");
    let mut tag = 0u64;
    while let Some(line) = read_parent_line() {
        if line != "round" {
            continue;
        }
        tag += 1;
        let r = (|| -> Result<(), String> {
            client.send(tag, b"ping").map_err(|e| format!("{e:?}"))?;
            let req = server.receive_timeout(OP).map_err(|e| format!("{e:?}"))?;
            req.respond(b"pong").map_err(|e| format!("{e:?}"))?;
            let answer = client.receive_timeout(OP).map_err(|e| format!("{e:?}"))?;
            if answer.tag() != tag {
                return Err(format!("answer {} to request {tag}", answer.tag()));
            }
            Ok(())
        })();
        report(format!("round {}", r.err().unwrap_or_else(|| "ok".into())));
    }
}

/// Attaches a client and waits to be killed.
fn doomed() {
    let node = child_node("doomed");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let _client = ex.client().expect("client");
    report("ready");
    while read_parent_line().is_some() {}
}

fn write_u32(f: &File, at: usize, v: u32) {
    f.write_all_at(&v.to_le_bytes(), at as u64).expect("write");
}

/// An odd value forged into the busy words of a live process's ports: once
/// that process has run an operation, reclaim passes go through again and
/// retire a dead process's port. Before the fix every pass gave up (the
/// forged ports stayed "busy" however much their owner did), and the dead
/// port stayed attached.
#[test]
fn a_forged_busy_word_of_a_live_port_does_not_block_reclaim() {
    let ns = TestNs::new("busy-forged");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("ex", Pattern::RequestResponse, limits())
        .expect("create");
    let env = [("EXCHANGE", "ex".to_string())];
    let mut worker = ChildProc::spawn(&ns, "rounds", &env);
    worker.wait_for("ready");
    let o = word_offsets(Pattern::RequestResponse, &limits()).expect("offsets");
    let seg = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(ns.exchange_path("ex"))
        .expect("segment");
    // The worker's client and server are idle (waiting for "round").
    for port in 0..2 {
        write_u32(
            &seg,
            o.ports + port * o.port_stride + o.port_busy,
            0x1234_5677,
        );
    }
    worker.send("round");
    assert_eq!(worker.wait_for("round"), "ok");

    let mut doomed = ChildProc::spawn(&ns, "doomed", &env);
    doomed.wait_for("ready");
    assert_eq!(ex.ports(), 3);
    doomed.kill_and_reap();

    // The worker keeps working; passes (ours, and the heartbeats') retire
    // the dead client once no live port looks busy.
    let mut skipped = Vec::new();
    for _ in 0..5 {
        worker.send("round");
        assert_eq!(worker.wait_for("round"), "ok");
        let r = node.reclaim_dead().expect("reclaim");
        skipped.extend(r.busy);
        if ex.ports() == 2 {
            break;
        }
    }
    assert_eq!(
        ex.ports(),
        2,
        "the dead client's port is still attached; passes skipped the exchange as busy: {skipped:?}"
    );
    let report = worker.finish();
    assert!(report.all("round").iter().all(|r| r == "ok"));
    drop(ex);
    drop(node);
    ns.assert_clean();
}

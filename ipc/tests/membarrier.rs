//! The asymmetric barrier's fallback (issue 12 item 14): a process whose
//! `membarrier` registration fails (forced here with `SHMEX_MEMBARRIER=off`)
//! never relies on `membarrier`, whatever the namespace's shared flag says;
//! it switches the namespace to symmetric fences, and messages keep flowing
//! both ways with receivers asleep.

mod common;

use common::{child_node, env_str, read_parent_line, report, ChildProc, TestNs, TIMEOUT};
use shmex::{Limits, Pattern, REGISTRY_FENCE_FLAG_OFFSET};
use std::os::unix::fs::FileExt;
use std::time::Duration;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "echo" => echo(),
        other => panic!("unknown role {other}"),
    }
}

/// Reports its barrier mode whenever asked ("mode"), and on "serve N"
/// answers N requests (receiving with a timeout and retrying, so a lost
/// wake-up would show as a delay, not a hang).
fn echo() {
    let node = child_node("echo");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    report("ready");
    while let Some(line) = read_parent_line() {
        if line == "mode" {
            report(format!("mode {}", node.uses_membarrier()));
        } else if let Some(n) = line.strip_prefix("serve ") {
            let n: u32 = n.parse().expect("count");
            let mut served = 0;
            while served < n {
                match server.receive_timeout(Duration::from_secs(1)) {
                    Ok(req) => {
                        let echo = req.to_vec();
                        req.respond(&echo).expect("respond");
                        served += 1;
                    }
                    Err(shmex::RecvError::Timeout) => report("slow"),
                    Err(e) => panic!("receive: {e}"),
                }
            }
            report(format!("served {served}"));
        }
    }
}

#[test]
fn failed_registration_falls_back_to_fences() {
    let ns = TestNs::new("membar");
    let node = ns.node("parent");
    let kernel_has_it = node.uses_membarrier();
    let limits = Limits::default()
        .chunk_size(64)
        .chunk_count(16)
        .queue_depth(8)
        .max_ports(4);
    let ex = node
        .create_exchange("ex", Pattern::RequestResponse, limits)
        .expect("create");
    let client = ex.client().expect("client");
    let mut echo = ChildProc::spawn(
        &ns,
        "echo",
        &[
            ("EXCHANGE", "ex".to_string()),
            ("SHMEX_MEMBARRIER", "off".to_string()),
        ],
    );
    echo.wait_for("ready");
    echo.send("mode");
    assert_eq!(echo.wait_for("mode"), "false");
    // Its join switched the whole namespace to fences.
    assert!(!node.uses_membarrier());

    // The shared flag is only a hint: cleared behind everyone's back, it
    // may bring the registered parent back to membarrier, but never the
    // process that cannot issue it.
    let registry = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(ns.namespace().registry_path())
        .expect("registry file");
    registry
        .write_all_at(&0u32.to_le_bytes(), REGISTRY_FENCE_FLAG_OFFSET as u64)
        .expect("clear the flag");
    assert_eq!(node.uses_membarrier(), kernel_has_it);
    echo.send("mode");
    assert_eq!(echo.wait_for("mode"), "false");
    // Its first look at the flag put it back: everyone fences again.
    assert!(!node.uses_membarrier(), "the flag was put back");

    // Round trips with both sides sleeping in turn.
    let rounds = 200;
    echo.send(&format!("serve {rounds}"));
    for i in 0..rounds {
        client.send(i, &i.to_le_bytes()).expect("request");
        let resp = client.receive_timeout(TIMEOUT).expect("response");
        assert_eq!(resp.tag(), i);
        assert_eq!(&*resp, &i.to_le_bytes());
    }
    assert_eq!(echo.wait_for("served"), rounds.to_string());
    assert!(!node.uses_membarrier());
    echo.finish();
    drop((client, ex, node));
    ns.assert_clean();
}

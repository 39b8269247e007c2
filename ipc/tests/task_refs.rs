//! What a task delivery holds: nothing of its own while the task is
//! delivered (it reads under the ledger's reference), the ledger's reference
//! after an ack made while it lives. So a worker holding two deliveries of
//! one task (the first taken back by its ack timeout, the second the
//! redelivery) holds no reference its holdings bits would have to count
//! twice, and a reclaim pass meanwhile recounts exactly.
//!
//! Before (issue 12 items 4 and 5): each delivery retained the chunk after
//! claiming the task (a stall in between could resurrect a chunk freed
//! meanwhile) and recorded it with one holdings bit: two deliveries, two
//! references, one bit. A reclaim pass then set the count one too low, and
//! dropping both deliveries freed the chunk of a task still in the ledger.

mod common;

use common::{child_node, read_parent_line, report, ChildProc, TestNs, TIMEOUT};
use shmex::{list_exchanges, Limits, Pattern, Submit};
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "twice" => twice(),
        "bystander" => bystander(),
        other => panic!("unknown role {other}"),
    }
}

/// Takes the task, lets its ack deadline pass, takes it again (the
/// redelivery, same chunk), reports `twice DELIVERIES`, and drops both
/// deliveries on `drop` (no ack). Exits when stdin closes.
fn twice() {
    let node = child_node("w");
    let ex = node.open_exchange("work").expect("open");
    let worker = ex.worker(2).expect("worker");
    let first = worker.receive_timeout(TIMEOUT).expect("the task");
    assert_eq!(first.payload(), b"job");
    let start = Instant::now();
    let second = loop {
        if let Some(d) = worker.try_receive().expect("try_receive") {
            break d;
        }
        assert!(start.elapsed() < TIMEOUT, "never redelivered");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(second.tag(), first.tag());
    report(format!("twice {}", second.deliveries()));
    while let Some(line) = read_parent_line() {
        if line == "drop" {
            drop(first);
            drop(second);
            report("dropped");
            break;
        }
    }
    while read_parent_line().is_some() {}
}

/// A port on the exchange, then dies (killed by the parent).
fn bystander() {
    let node = child_node("b");
    let ex = node.open_exchange("work").expect("open");
    let _submitter = ex.submitter().expect("submitter");
    report("ready");
    std::thread::sleep(TIMEOUT);
}

fn chunks_free(ns: &TestNs) -> u32 {
    list_exchanges(&ns.namespace())
        .into_iter()
        .flatten()
        .find(|i| i.name == "work")
        .expect("listed")
        .chunks_free
}

#[test]
fn two_deliveries_of_one_task_survive_a_recount() {
    let ns = TestNs::new("twice");
    let node = ns.node("n");
    let limits = Limits::default()
        .chunk_size(64)
        .chunk_count(8)
        .queue_depth(8)
        .max_ports(4)
        .ack_timeout(Duration::from_millis(50))
        .max_deliveries(10);
    let ex = node
        .create_exchange("work", Pattern::Tasks, limits)
        .expect("create");
    let submitter = ex.submitter().expect("submitter");
    submitter
        .send(Submit::new().tag(9), b"job")
        .expect("submit");
    drop(submitter);
    let mut w = ChildProc::spawn(&ns, "twice", &[]);
    assert_eq!(w.wait_for("twice"), "2");

    // A death elsewhere: the pass recounts every chunk from the living.
    let mut b = ChildProc::spawn(&ns, "bystander", &[]);
    b.wait_for("ready");
    let _ = b.kill_and_reap();
    let start = Instant::now();
    while node.reclaim_dead().expect("reclaim").ports == 0 {
        assert!(
            start.elapsed() < TIMEOUT,
            "the bystander was never reclaimed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    w.send("drop");
    w.wait_for("dropped");
    // The task is still in the ledger (delivered to w, unacked): its chunk
    // is not free.
    assert_eq!(
        chunks_free(&ns),
        limits.chunk_count - 1,
        "the chunk of a live task was freed"
    );
    let _ = w.kill_and_reap();
    drop((ex, node));
    ns.assert_clean();
}

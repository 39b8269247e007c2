//! A nacked task goes to another worker when one has room (the documented
//! semantics of `Worker::nack`), and comes back to the worker that nacked
//! it when no other takes it within `PASS_OVER`.
//!
//! Before: with idle workers A and B (prefetch 1) and one task, A took it,
//! nacked it with requeue, and A's next take got the same task back at
//! once: the "pass it over once" step pushed it back and the same loop
//! popped it again.

mod common;

use common::{child_node, report, ChildProc, TestNs, TIMEOUT};
use shmex::{Limits, Pattern, Submit, Worker, PASS_OVER};
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "worker" => worker(),
        other => panic!("unknown role {other}"),
    }
}

/// A worker (prefetch 1) that reports `ready`, then `got TAG DELIVERIES` for
/// the first task it takes, and acks it.
fn worker() {
    let node = child_node("b");
    let ex = node.open_exchange("work").expect("open");
    let worker = ex.worker(1).expect("worker");
    report("ready");
    let d = worker.receive_timeout(TIMEOUT).expect("a task");
    report(format!("got {} {}", d.tag(), d.deliveries()));
    d.ack().expect("ack");
}

fn limits() -> Limits {
    Limits::default()
        .chunk_size(64)
        .chunk_count(16)
        .queue_depth(16)
        .max_ports(4)
}

/// Takes (A) the one submitted task and nacks it with requeue.
fn take_and_nack(a: &Worker) {
    let d = a.try_receive().expect("try_receive").expect("the task");
    assert_eq!((d.tag(), d.deliveries()), (7, 1));
    d.nack(true).expect("nack");
}

#[test]
fn nacked_task_goes_to_the_idle_worker_in_one_process() {
    let ns = TestNs::new("nack1");
    let node = ns.node("n");
    let ex = node
        .create_exchange("work", Pattern::Tasks, limits())
        .expect("create");
    let submitter = ex.submitter().expect("submitter");
    let a = ex.worker(1).expect("a");
    let b = ex.worker(1).expect("b");
    submitter
        .send(Submit::new().tag(7), b"job")
        .expect("submit");
    take_and_nack(&a);
    assert!(
        a.try_receive().expect("try_receive").is_none(),
        "the nacking worker took its task back although another had room"
    );
    let d = b
        .try_receive()
        .expect("try_receive")
        .expect("B gets the nacked task");
    assert_eq!((d.tag(), d.deliveries()), (7, 2));
    d.ack().expect("ack");
    drop((a, b, submitter, ex, node));
    ns.assert_clean();
}

#[test]
fn nacked_task_goes_to_the_idle_worker_across_processes() {
    let ns = TestNs::new("nack2");
    let node = ns.node("n");
    let ex = node
        .create_exchange("work", Pattern::Tasks, limits())
        .expect("create");
    let submitter = ex.submitter().expect("submitter");
    let a = ex.worker(1).expect("a");
    submitter
        .send(Submit::new().tag(7), b"job")
        .expect("submit");
    let d = a.try_receive().expect("try_receive").expect("the task");
    let mut b = ChildProc::spawn(&ns, "worker", &[]);
    b.wait_for("ready");
    d.nack(true).expect("nack");
    // A keeps asking (well within PASS_OVER of its first look) while B,
    // blocked in take, gets it.
    let start = Instant::now();
    while start.elapsed() < PASS_OVER / 2 {
        if let Some(d) = a.try_receive().expect("try_receive") {
            panic!(
                "A took back the task it nacked (delivery {})",
                d.deliveries()
            );
        }
    }
    assert_eq!(b.wait_for("got"), "7 2");
    b.finish();
    drop((a, submitter, ex, node));
    ns.assert_clean();
}

#[test]
fn nacked_task_comes_back_when_no_other_worker_takes_it() {
    let ns = TestNs::new("nack3");
    let node = ns.node("n");
    let ex = node
        .create_exchange("work", Pattern::Tasks, limits())
        .expect("create");
    let submitter = ex.submitter().expect("submitter");
    let a = ex.worker(1).expect("a");
    let _idle = ex.worker(1).expect("b, which never takes");
    submitter
        .send(Submit::new().tag(7), b"job")
        .expect("submit");
    take_and_nack(&a);
    let start = Instant::now();
    let d = loop {
        if let Some(d) = a.try_receive().expect("try_receive") {
            break d;
        }
        assert!(start.elapsed() < TIMEOUT, "the nacked task never came back");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(start.elapsed() >= PASS_OVER, "taken back before PASS_OVER");
    assert_eq!((d.tag(), d.deliveries()), (7, 2));
    d.ack().expect("ack");
    drop((a, _idle, submitter, ex, node));
    ns.assert_clean();
}

//! Ports whose process died while their exchange lives on (held by another
//! process): they must stop counting. A killed fan-in consumer must not block
//! its successor with `ConsumerExists`, and a killed server must not swallow
//! requests: a client that arrives afterwards gets `NoServer`.

mod common;

use common::{child_node, env_str, report, wait_parent_eof, ChildProc, TestNs, TIMEOUT};
use shmex::{Limits, Pattern};
use std::os::unix::process::ExitStatusExt;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "port_until_killed" => port_until_killed(),
        "consumer_probe" => consumer_probe(),
        "client_probe" => client_probe(),
        other => panic!("unknown role {other}"),
    }
}

/// Attaches the receiving port of the exchange (consumer or server) and
/// blocks until the parent kills the process.
fn port_until_killed() {
    let node = child_node("doomed");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let port: Box<dyn std::any::Any> = match ex.pattern() {
        Pattern::FanIn => Box::new(ex.consumer().expect("consumer")),
        Pattern::RequestResponse => Box::new(ex.server().expect("server")),
        Pattern::PublishSubscribe | Pattern::Tasks => unreachable!(),
    };
    report("ready");
    wait_parent_eof();
    drop(port);
    panic!("the parent was meant to kill this process");
}

/// Tries to become the consumer; if it can, receives one message.
fn consumer_probe() {
    let node = child_node("successor");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let consumer = ex.consumer();
    report(format!("consumer {:?}", consumer.as_ref().map(|_| ())));
    if let Ok(consumer) = consumer {
        let s = consumer.receive_timeout(TIMEOUT).expect("a message");
        report(format!("got {}", String::from_utf8_lossy(&s)));
    }
}

/// Sends one request and reports whether it was accepted.
fn client_probe() {
    let node = child_node("late-client");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    report(format!("request {:?}", client.send(1, b"anyone?")));
}

/// Starts a process that attaches the receiving port of `exchange`, waits
/// until it has, and kills it with SIGKILL.
fn kill_port_owner(ns: &TestNs, exchange: &str) {
    let mut doomed = ChildProc::spawn(
        ns,
        "port_until_killed",
        &[("EXCHANGE", exchange.to_string())],
    );
    doomed.wait_for("ready");
    assert_eq!(doomed.kill_and_reap().signal(), Some(9));
}

#[test]
fn consumer_of_killed_process_can_be_replaced() {
    let ns = TestNs::new("deadcons");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("jobs", Pattern::FanIn, Limits::default())
        .expect("create");
    let producer = ex.producer().expect("producer");
    kill_port_owner(&ns, "jobs");

    let mut successor =
        ChildProc::spawn(&ns, "consumer_probe", &[("EXCHANGE", "jobs".to_string())]);
    let attached = successor.wait_for("consumer");
    if attached == "Ok(())" {
        producer
            .send(1, b"after")
            .expect("send to the new consumer");
        assert_eq!(successor.finish().one("got"), "after");
    } else {
        drop(successor);
    }
    assert_eq!(
        attached, "Ok(())",
        "a new consumer is refused because of the dead one"
    );
    drop((producer, ex, node));
    ns.assert_clean();
}

#[test]
fn server_of_killed_process_does_not_count() {
    let ns = TestNs::new("deadsrv");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("svc", Pattern::RequestResponse, Limits::default())
        .expect("create");
    kill_port_owner(&ns, "svc");

    let probe = ChildProc::spawn(&ns, "client_probe", &[("EXCHANGE", "svc".to_string())]).finish();
    assert_eq!(
        probe.one("request"),
        "Err(NoServer)",
        "the request went to the dead server's inbox, where nobody will ever answer or fail it"
    );
    drop((ex, node));
    ns.assert_clean();
}

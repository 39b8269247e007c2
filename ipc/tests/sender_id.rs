//! `Sample::sender` names a sender for good (issue 17 §2).
//!
//! What it did: it returned the sending port's slot index, which the next
//! port to attach in that slot takes over: a consumer keying its state by
//! sender saw a new producer as the one that had left. Now it is a
//! [`shmex::SenderId`] (slot index and the slot's attach generation), which
//! differs between the two.
//!
//! Each test: the receiver lives in this process; a child attaches a sender
//! (the exchange has room for one sender port only, so both children use the
//! same slot), sends one message and exits; then a second child does the
//! same. The two messages' senders must differ.

mod common;

use common::{child_node, env_str, report, ChildProc, TestNs};
use shmex::{Limits, Pattern};
use std::time::Duration;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let node = child_node(&role);
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    match role.as_str() {
        "producer" => {
            let producer = ex.producer().expect("producer");
            producer.send(1, b"hello").expect("send");
            report(format!("sent {}", producer.id()));
        }
        "publisher" => {
            let publisher = ex.publisher().expect("publisher");
            publisher.send("a.b", b"hello").expect("publish");
            report("sent");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Hang protection only.
const WAIT: Duration = Duration::from_secs(10);

/// Room for the receiver's port and one sender port.
fn limits() -> Limits {
    Limits::default()
        .chunk_size(64)
        .chunk_count(8)
        .queue_depth(4)
        .max_ports(2)
}

/// Runs a child of `role` that sends once and exits.
fn send_once(ns: &TestNs, role: &str) {
    let child = ChildProc::spawn(ns, role, &[("EXCHANGE", "x".to_string())]);
    child.finish();
}

#[test]
fn fan_in_sender_differs_after_slot_reuse() {
    let ns = TestNs::new("sid-fanin");
    {
        let node = ns.node("consumer");
        let ex = node
            .create_exchange("x", Pattern::FanIn, limits())
            .expect("create");
        let consumer = ex.consumer().expect("consumer");
        send_once(&ns, "producer");
        let first = consumer.receive_timeout(WAIT).expect("first message");
        let first_sender = first.sender();
        drop(first);
        send_once(&ns, "producer");
        let second = consumer.receive_timeout(WAIT).expect("second message");
        assert_eq!(&second[..], b"hello");
        assert_ne!(
            first_sender,
            second.sender(),
            "two producers of one slot share a sender id"
        );
        let port = |s: Option<shmex::SenderId>| s.map(shmex::SenderId::port);
        assert_eq!(port(first_sender), port(second.sender()), "same slot");
    }
    ns.assert_clean();
}

#[test]
fn publish_subscribe_sender_differs_after_slot_reuse() {
    let ns = TestNs::new("sid-pubsub");
    {
        let node = ns.node("subscriber");
        let ex = node
            .create_exchange("x", Pattern::PublishSubscribe, limits())
            .expect("create");
        let sub = ex.subscriber("a.#", 0).expect("subscriber");
        send_once(&ns, "publisher");
        let first = sub.receive_timeout(WAIT).expect("first publication");
        let first_sender = first.sender();
        drop(first);
        send_once(&ns, "publisher");
        let second = sub.receive_timeout(WAIT).expect("second publication");
        assert_eq!(&second[..], b"hello");
        assert_ne!(
            first_sender,
            second.sender(),
            "two publishers of one slot share a sender id"
        );
        let port = |s: Option<shmex::SenderId>| s.map(shmex::SenderId::port);
        assert_eq!(port(first_sender), port(second.sender()), "same slot");
    }
    ns.assert_clean();
}

/// A request's sender is its client, whatever stream window it asked for
/// (the window shares the descriptor word with the client's address; it
/// used to leak into the reported sender).
#[test]
fn request_sender_ignores_stream_window() {
    let ns = TestNs::new("sid-rr");
    {
        let node = ns.node("both");
        let ex = node
            .create_exchange("x", Pattern::RequestResponse, Limits::default())
            .expect("create");
        let server = ex.server().expect("server");
        let client = ex.client().expect("client");
        client.send(1, b"plain").expect("request");
        client
            .request_stream(2, b"stream", 4)
            .expect("request_stream");
        let plain = server.receive_timeout(WAIT).expect("plain request");
        let stream = server.receive_timeout(WAIT).expect("stream request");
        assert!(plain.sender().is_some());
        assert_eq!(plain.sender(), stream.sender());
    }
    ns.assert_clean();
}

//! One thread of one process blocks on a wait set holding a server port of
//! one exchange and a subscriber of another; other processes send to each,
//! one after the other, and the waiter is woken for both.

mod common;

use common::{child_node, env_str, report, ChildProc, TestNs, TIMEOUT};
use shmex::{Limits, Pattern, WaitError, WaitSet};
use std::time::Duration;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "waiter" => waiter(),
        "client" => client(),
        "publisher" => publisher(),
        other => panic!("unknown role {other}"),
    }
}

/// Waits on a server port (exchange RR) and a subscriber (exchange PS) with
/// one wait set until it has handled one request and one publication.
fn waiter() {
    let node = child_node("waiter");
    let rr = node.open_exchange(&env_str("RR")).expect("open rr");
    let ps = node.open_exchange(&env_str("PS")).expect("open ps");
    let server = rr.server().expect("server");
    let sub = ps.subscriber("events.#", 5).expect("subscriber");
    let mut set = WaitSet::new();
    let s = set.add(&server).expect("add server");
    let p = set.add(&sub).expect("add subscriber");

    // Ports of another node cannot join the set (they use another wait word).
    let other_node = child_node("waiter-other");
    let other_ps = other_node.open_exchange(&env_str("PS")).expect("open ps");
    let foreign = other_ps.subscriber("nothing", 0).expect("subscriber");
    report(format!("foreign {:?}", set.add(&foreign).map(|_| ())));
    // Nothing has been sent yet: nothing is ready, a short wait times out.
    report(format!("ready_before {:?}", set.ready()));
    report(format!(
        "short_wait {:?}",
        set.wait(Some(Duration::from_millis(10)))
    ));
    report("ready");

    let (mut requests, mut publications) = (0, 0);
    while requests == 0 || publications == 0 {
        let ready = match set.wait(Some(TIMEOUT)) {
            Ok(r) => r,
            Err(WaitError::Timeout) => panic!("nothing arrived within {TIMEOUT:?}"),
            Err(e) => panic!("wait: {e}"),
        };
        let names: Vec<&str> = ready
            .iter()
            .map(|&i| match i {
                i if i == s => "server",
                i if i == p => "subscriber",
                _ => "unknown",
            })
            .collect();
        report(format!("woke {}", names.join(",")));
        for i in ready {
            if i == s {
                let req = server.try_receive().expect("receive").expect("a request");
                report(format!(
                    "request {} {}",
                    req.tag(),
                    String::from_utf8_lossy(&req)
                ));
                req.respond(b"ack").expect("respond");
                requests += 1;
            } else if i == p {
                let pb = sub.try_receive().expect("receive").expect("a publication");
                report(format!(
                    "publication {} {} {}",
                    pb.tag(),
                    pb.key().unwrap_or("?"),
                    String::from_utf8_lossy(&pb)
                ));
                publications += 1;
            }
        }
    }
    drop(foreign);
}

/// Sends one request and waits for its answer.
fn client() {
    let node = child_node("client");
    let rr = node.open_exchange(&env_str("RR")).expect("open rr");
    let client = rr.client().expect("client");
    client.send(7, b"hello").expect("request");
    let resp = client.receive_timeout(TIMEOUT).expect("response");
    report(format!(
        "response {} {}",
        resp.tag(),
        String::from_utf8_lossy(&resp)
    ));
}

/// Publishes one event.
fn publisher() {
    let node = child_node("publisher");
    let ps = node.open_exchange(&env_str("PS")).expect("open ps");
    let publisher = ps.publisher().expect("publisher");
    let r = publisher.send("events.door", b"open").expect("publish");
    report(format!("delivered {}", r.delivered));
}

#[test]
fn waitset_wakes_for_server_and_subscriber_of_two_exchanges() {
    let ns = TestNs::new("waitset");
    let node = ns.node("parent");
    let rr = node
        .create_exchange("rr", Pattern::RequestResponse, Limits::default())
        .expect("create rr");
    let ps = node
        .create_exchange("ps", Pattern::PublishSubscribe, Limits::default())
        .expect("create ps");
    let env = [("RR", "rr".to_string()), ("PS", "ps".to_string())];
    let mut waiter = ChildProc::spawn(&ns, "waiter", &env);
    assert_eq!(waiter.wait_for("foreign"), "Err(ForeignPort)");
    assert_eq!(waiter.wait_for("ready_before"), "[]");
    assert_eq!(waiter.wait_for("short_wait"), "Err(Timeout)");
    waiter.wait_for("ready");

    // First a request from one process (answered: the waiter woke for it)...
    let client = ChildProc::spawn(&ns, "client", &env).finish();
    assert_eq!(client.one("response"), "7 ack");
    assert_eq!(waiter.wait_for("woke"), "server");
    // ...then a publication from another.
    let publisher = ChildProc::spawn(&ns, "publisher", &env).finish();
    assert_eq!(publisher.num("delivered"), 1);

    let waiter = waiter.finish();
    assert_eq!(waiter.all("woke"), ["server", "subscriber"]);
    assert_eq!(waiter.one("request"), "7 hello");
    assert_eq!(waiter.one("publication"), "5 events.door open");
    assert_eq!(rr.chunks_free(), rr.limits().chunk_count, "chunks leaked");
    assert_eq!(ps.chunks_free(), ps.limits().chunk_count, "chunks leaked");
    drop((rr, ps, node));
    ns.assert_clean();
}

//! `chunk_count` is the number of payloads in flight at once, and
//! `PoolExhausted` means every chunk is in use: chunks released to one
//! port's caches (its return ring, spare or deferred slot) are reachable by
//! every other port when the pool runs dry.
//!
//! Before (issue 12 item 8): a port that loaned and dropped every chunk
//! kept them parked in its own return ring, and every other port's loan
//! failed with `PoolExhausted` with nothing in flight; a request-response
//! pair on a 3-chunk exchange failed its second round trip.

mod common;

use common::{child_node, read_parent_line, report, ChildProc, TestNs, TIMEOUT};
use shmex::{Limits, Loan, Pattern, SendError};

const CHUNKS: u32 = 4;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "hog" => hog(),
        "echo" => echo(),
        other => panic!("unknown role {other}"),
    }
}

/// Attaches a port of role `PORT` to exchange `x`, loans every chunk at
/// once, drops them all (they park in its caches), reports `parked`, and
/// keeps its port until stdin closes.
fn hog() {
    let node = child_node("hog");
    let ex = node.open_exchange("x").expect("open");
    let port = std::env::var("PORT").expect("PORT");
    macro_rules! park {
        ($p:expr) => {{
            let p = $p;
            let loans: Vec<Loan<'_>> = (0..CHUNKS).map(|_| p.loan(8).expect("loan")).collect();
            drop(loans);
            report("parked");
            while read_parent_line().is_some() {}
        }};
    }
    match port.as_str() {
        "publisher" => park!(ex.publisher().expect("port")),
        "producer" => park!(ex.producer().expect("port")),
        "submitter" => park!(ex.submitter().expect("port")),
        "client" => park!(ex.client().expect("port")),
        "server" => park!(ex.server().expect("port")),
        other => panic!("unknown port {other}"),
    }
}

/// A server answering every request with its payload, until stdin closes
/// (checked between requests).
fn echo() {
    let node = child_node("echo");
    let ex = node.open_exchange("x").expect("open");
    let server = ex.server().expect("server");
    report("ready");
    loop {
        match server.receive_timeout(std::time::Duration::from_millis(50)) {
            Ok(r) => {
                let payload = r.payload().to_vec();
                r.respond(&payload).expect("respond");
            }
            Err(shmex::RecvError::Timeout) => {}
            Err(e) => panic!("receive: {e}"),
        }
    }
}

fn limits() -> Limits {
    Limits::default()
        .chunk_size(64)
        .chunk_count(CHUNKS)
        .queue_depth(8)
        .max_ports(4)
}

/// With every chunk parked in a `hog` child's caches (port role `port`),
/// `loan` (on a port of this process) gets all `CHUNKS` at once, then
/// `PoolExhausted`.
fn all_chunks_reachable(pattern: Pattern, port: &str, loan: impl Fn(&shmex::Exchange) -> usize) {
    let ns = TestNs::new(&format!("caches-{port}"));
    let node = ns.node("n");
    let ex = node
        .create_exchange("x", pattern, limits())
        .expect("create");
    let mut hog = ChildProc::spawn(&ns, "hog", &[("PORT", port.to_string())]);
    hog.wait_for("parked");
    assert_eq!(
        loan(&ex),
        CHUNKS as usize,
        "{port}: payloads in flight at once"
    );
    hog.finish();
    drop((ex, node));
    ns.assert_clean();
}

/// Loans until the pool says exhausted; returns how many were in flight.
fn loan_all<'a>(mut next: impl FnMut() -> Result<Loan<'a>, SendError>) -> usize {
    let mut loans = Vec::new();
    loop {
        match next() {
            Ok(l) => loans.push(l),
            Err(SendError::PoolExhausted { chunks }) => {
                assert_eq!(chunks, CHUNKS);
                return loans.len();
            }
            Err(e) => panic!("loan: {e}"),
        }
        assert!(loans.len() <= CHUNKS as usize, "more loans than chunks");
    }
}

#[test]
fn publish_subscribe_reaches_chunks_parked_elsewhere() {
    all_chunks_reachable(Pattern::PublishSubscribe, "publisher", |ex| {
        let p = ex.publisher().expect("publisher");
        loan_all(|| p.loan(8))
    });
}

#[test]
fn fan_in_reaches_chunks_parked_elsewhere() {
    all_chunks_reachable(Pattern::FanIn, "producer", |ex| {
        let p = ex.producer().expect("producer");
        loan_all(|| p.loan(8))
    });
}

#[test]
fn tasks_reach_chunks_parked_elsewhere() {
    all_chunks_reachable(Pattern::Tasks, "submitter", |ex| {
        let s = ex.submitter().expect("submitter");
        loan_all(|| s.loan(8))
    });
}

#[test]
fn request_response_reaches_chunks_parked_elsewhere() {
    all_chunks_reachable(Pattern::RequestResponse, "server", |ex| {
        let c = ex.client().expect("client");
        loan_all(|| c.loan(8))
    });
    all_chunks_reachable(Pattern::RequestResponse, "client", |ex| {
        let s = ex.server().expect("server");
        loan_all(|| s.loan(8))
    });
}

/// The report from C: an exchange with 3 chunks, one client, one server,
/// sequential round trips; the second respond failed with POOL_EXHAUSTED.
#[test]
fn sequential_round_trips_on_three_chunks() {
    let ns = TestNs::new("three");
    let node = ns.node("n");
    let limits = limits().chunk_count(3);
    let ex = node
        .create_exchange("x", Pattern::RequestResponse, limits)
        .expect("create");
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "echo", &[]);
    server.wait_for("ready");
    for i in 0..50u64 {
        client.send(i, &i.to_le_bytes()).expect("request");
        let r = client.receive_timeout(TIMEOUT).expect("response");
        assert_eq!((r.tag(), r.payload()), (i, &i.to_le_bytes()[..]));
    }
    let _ = server.kill_and_reap();
    drop((client, ex, node));
    ns.assert_clean();
}

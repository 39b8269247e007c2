//! Request-response across processes: servers and clients each in their own
//! process, routing of every response to its own client, and the error
//! cases (no server, missing exchange, full queue).

mod common;

use common::{
    child_node, env_str, env_u64, finish_all, parent_eof_flag, payload, report, wait_parent, words,
    ChildProc, TestNs, TIMEOUT,
};
use shmex::{Limits, OpenError, Pattern, RecvError, SendError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

const SERVERS: u64 = 2;
const CLIENTS: u64 = 3;
const REQUESTS: u64 = 400;
/// Requests a client keeps in flight (well below the queue depth, so neither
/// the client budget nor a server inbox can fill up).
const WINDOW: usize = 8;

fn tag_of(client: u64, seq: u64) -> u64 {
    (client << 32) | seq
}

fn request_payload(client: u64, seq: u64) -> Vec<u8> {
    payload(&[client, seq, 0xC0FF_EE00 ^ seq])
}

/// What a server answers to `request_payload(client, seq)`.
fn response_payload(client: u64, seq: u64, server: u64) -> Vec<u8> {
    payload(&[!client, seq.wrapping_mul(3).wrapping_add(7), server])
}

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "server" => server(),
        "client" => client(),
        "probe" => probe(),
        "one_shot_server" => one_shot_server(),
        "idle_server" => idle_server(),
        "client_until_full" => client_until_full(),
        "taking_server" => taking_server(),
        other => panic!("unknown role {other}"),
    }
}

/// Answers requests until the parent closes stdin, then reports how many it
/// handled from each client.
fn server() {
    let id = env_u64("ID");
    let node = child_node(&format!("server-{id}"));
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server port");
    let stop = parent_eof_flag();
    report("ready");
    let mut per_client: BTreeMap<u64, u64> = BTreeMap::new();
    while !stop.load(Ordering::Acquire) {
        let req = match server.receive_timeout(Duration::from_millis(20)) {
            Ok(r) => r,
            Err(RecvError::Timeout) => continue,
            Err(e) => panic!("server {id}: receive failed: {e}"),
        };
        let w = words(&req);
        assert_eq!(w.len(), 3, "request payload of {} bytes", req.len());
        let (client, seq) = (w[0], w[1]);
        assert_eq!(w[2], 0xC0FF_EE00 ^ seq, "request payload garbled");
        assert_eq!(req.tag(), tag_of(client, seq), "request tag vs payload");
        *per_client.entry(client).or_default() += 1;
        req.respond(&response_payload(client, seq, id))
            .expect("respond");
    }
    for (client, n) in &per_client {
        report(format!("from {client} {n}"));
    }
    report(format!("handled {}", per_client.values().sum::<u64>()));
}

/// Sends REQUESTS requests with a window of WINDOW, checks every response
/// against its own request and counts which server answered.
fn client() {
    let id = env_u64("ID");
    let node = child_node(&format!("client-{id}"));
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client port");
    let mut outstanding: HashMap<u64, u64> = HashMap::new();
    let mut served = [0u64; SERVERS as usize];
    let mut next = 0u64;
    let mut answered = 0u64;
    while answered < REQUESTS {
        while next < REQUESTS && outstanding.len() < WINDOW {
            client
                .send(tag_of(id, next), &request_payload(id, next))
                .unwrap_or_else(|e| panic!("client {id}: request {next} refused: {e}"));
            outstanding.insert(tag_of(id, next), next);
            next += 1;
        }
        let resp = client
            .receive_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("client {id}: no response: {e}"));
        let seq = outstanding
            .remove(&resp.tag())
            .unwrap_or_else(|| panic!("client {id}: response with foreign tag {:#x}", resp.tag()));
        let w = words(&resp);
        assert_eq!(w.len(), 3, "response payload of {} bytes", resp.len());
        let server = w[2];
        assert!(server < SERVERS, "unknown server id {server}");
        assert_eq!(
            &resp[..],
            &response_payload(id, seq, server)[..],
            "client {id}: response to request {seq} does not match it"
        );
        served[server as usize] += 1;
        answered += 1;
    }
    assert!(outstanding.is_empty());
    assert_eq!(client.outstanding(), 0);
    assert!(
        client.try_receive().expect("try_receive").is_none(),
        "a response nobody asked for"
    );
    for (s, n) in served.iter().enumerate() {
        report(format!("served {s} {n}"));
    }
    report(format!("done {answered}"));
}

#[test]
fn rpc_two_servers_three_clients() {
    let ns = TestNs::new("rpc");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("calc", Pattern::RequestResponse, Limits::default())
        .expect("create");
    let env = |id: u64| vec![("ID", id.to_string()), ("EXCHANGE", "calc".to_string())];
    let mut servers: Vec<ChildProc> = (0..SERVERS)
        .map(|s| ChildProc::spawn(&ns, "server", &env(s)))
        .collect();
    for s in &mut servers {
        s.wait_for("ready");
    }
    assert_eq!(ex.ports(), SERVERS as u32);
    let clients: Vec<ChildProc> = (0..CLIENTS)
        .map(|c| ChildProc::spawn(&ns, "client", &env(c)))
        .collect();
    let client_reports = finish_all(clients);
    let server_reports = finish_all(servers);

    // served[c][s]: responses client c got from server s.
    let mut by_server = [0u64; SERVERS as usize];
    for (c, r) in client_reports.iter().enumerate() {
        assert_eq!(r.num("done"), REQUESTS, "client {c}");
        let mut total = 0;
        for line in r.all("served") {
            let v: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            by_server[v[0] as usize] += v[1];
            total += v[1];
            // The server's own count of this client's requests agrees.
            let from = server_reports[v[0] as usize]
                .all("from")
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{c} ")).map(|n| n.parse().unwrap()))
                .unwrap_or(0u64);
            assert_eq!(from, v[1], "server {} vs client {c}", v[0]);
        }
        assert_eq!(total, REQUESTS, "client {c}");
    }
    for (s, r) in server_reports.iter().enumerate() {
        let handled = r.num("handled");
        assert_eq!(handled, by_server[s], "server {s}");
        assert!(handled > 0, "server {s} got no work: {by_server:?}");
    }
    assert_eq!(by_server.iter().sum::<u64>(), CLIENTS * REQUESTS);
    assert_eq!(ex.ports(), 0);
    assert_eq!(ex.chunks_free(), ex.limits().chunk_count, "chunks leaked");
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// Opens a missing exchange and requests on one without a server.
fn probe() {
    let node = child_node("probe");
    match node.open_exchange("missing") {
        Err(e) => report(format!("open_missing {e:?}")),
        Ok(_) => report("open_missing Ok"),
    }
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    report(format!("request {:?}", client.send(1, b"anyone?")));
    report(format!("outstanding {}", client.outstanding()));
}

/// Serves exactly one request, then leaves.
fn one_shot_server() {
    let node = child_node("one-shot");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    report("ready");
    let req = server.receive_timeout(TIMEOUT).expect("a request");
    let mut answer = req.to_vec();
    answer.reverse();
    req.respond(&answer).expect("respond");
}

#[test]
fn rpc_not_found_and_no_server() {
    let ns = TestNs::new("rpcerr");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("svc", Pattern::RequestResponse, Limits::default())
        .expect("create");
    let env = [("EXCHANGE", "svc".to_string())];

    let probe = ChildProc::spawn(&ns, "probe", &env).finish();
    assert_eq!(probe.one("open_missing"), r#"NotFound { name: "missing" }"#);
    assert_eq!(probe.one("request"), "Err(NoServer)");
    assert_eq!(probe.num("outstanding"), 0);

    // A server in another process answers; once it has left, NoServer again.
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "one_shot_server", &env);
    server.wait_for("ready");
    client.send(42, b"ping").expect("request with a server");
    let resp = client.receive_timeout(TIMEOUT).expect("response");
    assert_eq!((resp.tag(), &resp[..]), (42, &b"gnip"[..]));
    drop(resp);
    server.finish();
    assert!(matches!(client.send(43, b"ping"), Err(SendError::NoServer)));
    assert!(matches!(
        node.open_exchange("missing"),
        Err(OpenError::NotFound { .. })
    ));
    assert_eq!(ex.chunks_free(), ex.limits().chunk_count, "chunks leaked");
    drop((client, ex, node));
    ns.assert_clean();
}

/// A server that reads nothing until the parent says "go", then takes every
/// queued request, answers it and reports how many there were.
fn idle_server() {
    let node = child_node("idle-server");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    report("ready");
    wait_parent("go");
    let mut received = 0u64;
    while let Some(req) = server.try_receive().expect("try_receive") {
        let answer = req.to_vec();
        req.respond(&answer).expect("respond");
        received += 1;
    }
    report(format!("received {received}"));
}

/// Sends requests until one is refused; reports how many were accepted and
/// why the first refusal happened, then collects every answer.
fn client_until_full() {
    let id = env_u64("ID");
    let node = child_node(&format!("client-{id}"));
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    let mut sent = Vec::new();
    let error = loop {
        let seq = sent.len() as u64;
        assert!(seq < 10_000, "the queue never filled up");
        match client.send(tag_of(id, seq), &payload(&[id, seq])) {
            Ok(()) => sent.push(tag_of(id, seq)),
            Err(e) => break e,
        }
    };
    report(format!("accepted {}", sent.len()));
    report(format!("refused {error:?}"));
    let mut answered = 0;
    for _ in 0..sent.len() {
        let resp = client.receive_timeout(TIMEOUT).expect("an answer");
        let pos = sent
            .iter()
            .position(|&t| t == resp.tag())
            .expect("answer to one of our requests");
        sent.swap_remove(pos);
        let w = words(&resp);
        assert_eq!((w[0], tag_of(w[0], w[1])), (id, resp.tag()));
        answered += 1;
    }
    report(format!("answered {answered}"));
}

#[test]
fn rpc_queue_full_drops_nothing() {
    const DEPTH: u32 = 8;
    let ns = TestNs::new("rpcfull");
    let node = ns.node("parent");
    let limits = Limits::default().queue_depth(DEPTH).max_ports(4);
    let ex = node
        .create_exchange("slow", Pattern::RequestResponse, limits)
        .expect("create");
    let env = |id: u64| vec![("ID", id.to_string()), ("EXCHANGE", "slow".to_string())];
    let mut server = ChildProc::spawn(&ns, "idle_server", &env(0));
    server.wait_for("ready");

    // First client: fills the server's inbox (its own budget is the same size).
    let mut c1 = ChildProc::spawn(&ns, "client_until_full", &env(1));
    let accepted1: u64 = c1.wait_for("accepted").parse().unwrap();
    assert_eq!(c1.wait_for("refused"), "QueueFull");
    // Second client, fresh budget: refused because the server inbox is full.
    let mut c2 = ChildProc::spawn(&ns, "client_until_full", &env(2));
    let accepted2: u64 = c2.wait_for("accepted").parse().unwrap();
    assert_eq!(c2.wait_for("refused"), "QueueFull");
    assert_eq!(accepted1, u64::from(DEPTH));
    assert_eq!(accepted2, 0);

    // The server now reads: exactly the accepted requests, each answered.
    server.send("go");
    let server = server.finish();
    assert_eq!(server.num("received"), accepted1 + accepted2);
    let c1 = c1.finish();
    let c2 = c2.finish();
    assert_eq!(c1.num("answered"), accepted1);
    assert_eq!(c2.num("answered"), accepted2);
    assert_eq!(ex.chunks_free(), limits.chunk_count, "chunks leaked");
    drop((ex, node));
    ns.assert_clean();
}

/// Takes one request and holds it without answering until killed.
fn taking_server() {
    let node = child_node("taker");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    report("ready");
    let _held = server.receive_timeout(TIMEOUT).expect("a request");
    report("took");
    common::wait_parent_eof();
    panic!("the parent was meant to kill this process");
}

/// A server killed with one request taken and one queued: the client gets a
/// failure event for each (ServerGone), never a hang.
#[test]
fn server_killed_mid_request_fails_its_requests() {
    let ns = TestNs::new("killed-server");
    let node = ns.node("client");
    let ex = node
        .create_exchange("svc", Pattern::RequestResponse, Limits::default())
        .expect("create");
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "taking_server", &[("EXCHANGE", "svc".into())]);
    server.wait_for("ready");
    client.send(7, b"taken").expect("request 7");
    server.wait_for("took");
    client.send(8, b"queued").expect("request 8");
    server.kill();
    let mut failed = Vec::new();
    for _ in 0..2 {
        // The timeout only guards against a hang; the failure comes from the
        // client noticing the dead server.
        match client.receive_timeout(TIMEOUT) {
            Err(RecvError::RequestFailed { tag, reason }) => {
                assert_eq!(reason, shmex::FailReason::ServerGone, "request {tag}");
                failed.push(tag);
            }
            other => panic!("expected a failure event, got {other:?}"),
        }
    }
    failed.sort();
    assert_eq!(failed, vec![7, 8]);
    assert_eq!(client.outstanding(), 0);
    assert!(matches!(client.try_receive(), Ok(None)));
    assert!(matches!(client.send(9, b"x"), Err(SendError::NoServer)));
    drop((client, ex, node));
    ns.assert_clean();
}

//! Invalid values written into the shared words of a *live* exchange, while
//! other processes use it (issue 12, items 10, 11, 12 and its §6). Every
//! live process must get a typed error or carry on: no panic, no crash, no
//! hang past its own timeouts. Children run every operation with a timeout;
//! the parent's waits on them are hang protection only ([`common::TIMEOUT`]),
//! never a speed bound.
//!
//! The parent writes into the segment file (`pwrite` on the tmpfs file is
//! the same memory the children map) at offsets from
//! [`shmex::word_offsets`].

mod common;

use common::{child_node, env_str, read_parent_line, report, ChildProc, TestNs, TIMEOUT};
use shmex::{word_offsets, Limits, Pattern, Submit, WordOffsets};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "rpc_loop" => rpc_loop(),
        "task_loop" => task_loop(),
        "stream_loop" => stream_loop(),
        "attach_only" => attach_only(),
        "stream_server" => stream_server(),
        "taker" => taker(),
        other => panic!("unknown role {other}"),
    }
}

/// Timeout of every operation a child runs on a corrupted exchange.
const OP: Duration = Duration::from_millis(50);
/// Rounds a loop child runs after the parent's corruption.
const ROUNDS: u32 = 20;

fn limits() -> Limits {
    Limits::default()
        .chunk_size(64)
        .chunk_count(16)
        .queue_depth(4)
        .max_ports(8)
        .ack_timeout(Duration::from_millis(200))
}

/// Why a round failed: the error's variant name (its `Debug` up to the
/// first non-identifier character).
struct Fail(String);

impl<T: std::fmt::Debug> From<T> for Fail {
    fn from(e: T) -> Self {
        let s = format!("{e:?}");
        let end = s
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .unwrap_or(s.len());
        Fail(s[..end].to_string())
    }
}

/// The outcome of one round, as a short word for the report.
fn outcome<E: Into<Fail>>(r: Result<(), E>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.into().0,
    }
}

/// Waits for the parent's "go", then runs `round` [`ROUNDS`] times,
/// reporting each outcome. Before "go" it runs three rounds so rings, pool
/// and ledger are in use when the parent writes.
fn run_rounds(mut round: impl FnMut() -> String) {
    for _ in 0..3 {
        let _ = round();
    }
    report("ready");
    while let Some(line) = read_parent_line() {
        if line == "go" {
            break;
        }
    }
    for _ in 0..ROUNDS {
        report(format!("round {}", round()));
    }
    report("done");
}

/// Client and server of one RPC exchange in one thread: request, receive the
/// request, respond, receive the response, each with a timeout.
fn rpc_loop() {
    let node = child_node("rpc");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    let server = ex.server().expect("server");
    let mut tag = 0u64;
    run_rounds(|| {
        tag += 1;
        outcome((|| {
            client.send(tag, b"ping")?;
            let req = server.receive_timeout(OP)?;
            req.respond(b"pong")?;
            client.receive_timeout(OP)?;
            Ok::<(), Fail>(())
        })())
    });
}

/// Submitter and worker of one task exchange in one thread.
fn task_loop() {
    let node = child_node("tasks");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let submitter = ex.submitter().expect("submitter");
    let worker = ex.worker(2).expect("worker");
    let mut tag = 0u64;
    run_rounds(|| {
        tag += 1;
        outcome((|| {
            submitter.send_timeout(Submit::new().tag(tag), b"task", OP)?;
            let d = worker.receive_timeout(OP)?;
            d.ack()?;
            Ok::<(), Fail>(())
        })())
    });
}

/// A chunked response in one thread: the client asks, the server streams
/// three parts and the end, the client reads them.
fn stream_loop() {
    let node = child_node("streams");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    let server = ex.server().expect("server");
    let mut tag = 0u64;
    run_rounds(|| {
        tag += 1;
        outcome((|| {
            client.request_stream(tag, b"list", 2)?;
            let req = server.receive_timeout(OP)?;
            let mut stream = req.respond_stream()?;
            for _ in 0..3 {
                stream.send(b"part")?;
                client.receive_timeout(OP)?;
            }
            stream.end()?;
            client.receive_timeout(OP)?;
            Ok::<(), Fail>(())
        })())
    });
}

/// Opens the exchange, attaches a port (a submitter on a task exchange, a
/// client on the others) and waits to be killed.
fn attach_only() {
    let node = child_node("doomed");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let _port: Box<dyn std::any::Any> = if ex.pattern() == Pattern::Tasks {
        Box::new(ex.submitter().expect("submitter"))
    } else {
        Box::new(ex.client().expect("client"))
    };
    report("ready");
    while read_parent_line().is_some() {}
}

/// Serves one stream request and sends one part when told, with no timeout.
fn stream_server() {
    let node = child_node("streamer");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    report("ready");
    let req = server.receive_timeout(TIMEOUT).expect("request");
    let mut stream = req.respond_stream().expect("stream");
    report("streaming");
    while let Some(line) = read_parent_line() {
        if line == "send" {
            break;
        }
    }
    report(format!("sent {}", outcome(stream.send(b"part"))));
    report(format!("ended {}", outcome(stream.end())));
}

/// A worker that takes with a timeout when told.
fn taker() {
    let node = child_node("taker");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let worker = ex.worker(1).expect("worker");
    report("ready");
    while let Some(line) = read_parent_line() {
        if line == "take" {
            let r = worker.receive_timeout(Duration::from_millis(300));
            report(format!("took {}", outcome(r.map(|_| ()))));
        }
    }
}

// ---------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------

fn offsets(pattern: Pattern) -> WordOffsets {
    word_offsets(pattern, &limits()).expect("offsets")
}

fn segment(ns: &TestNs, name: &str) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(ns.exchange_path(name))
        .expect("open the segment file")
}

fn write_u32(f: &File, at: usize, v: u32) {
    f.write_all_at(&v.to_le_bytes(), at as u64).expect("write");
}

fn write_u64(f: &File, at: usize, v: u64) {
    f.write_all_at(&v.to_le_bytes(), at as u64).expect("write");
}

fn read_u32(f: &File, at: usize) -> u32 {
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, at as u64).expect("read");
    u32::from_le_bytes(b)
}

fn inbox(o: &WordOffsets, port: usize) -> usize {
    o.ring_controls + port * o.ring_control_stride
}

/// Starts two loop children of `role` on exchange `name`, lets `corrupt`
/// write into the segment while they are live, then checks each finished
/// its rounds (typed errors or normal operation) and exited cleanly.
/// Returns the round outcomes.
fn live_corruption(
    ns: &TestNs,
    name: &str,
    role: &str,
    corrupt: impl FnOnce(&File),
) -> Vec<String> {
    let env = [("EXCHANGE", name.to_string())];
    let mut children: Vec<ChildProc> = (0..2).map(|_| ChildProc::spawn(ns, role, &env)).collect();
    for c in &mut children {
        c.wait_for("ready");
    }
    corrupt(&segment(ns, name));
    for c in &mut children {
        c.send("go");
    }
    let mut rounds = Vec::new();
    for c in children {
        let report = c.finish_within(TIMEOUT);
        let r = report.all("round");
        assert_eq!(r.len(), ROUNDS as usize, "every round reported: {r:?}");
        rounds.extend(r);
    }
    rounds
}

fn corrupt_test(
    test: &str,
    pattern: Pattern,
    role: &str,
    corrupt: impl FnOnce(&File),
) -> Vec<String> {
    let ns = TestNs::new(test);
    let node = ns.node("parent");
    let ex = node
        .create_exchange("ex", pattern, limits())
        .expect("create");
    let rounds = live_corruption(&ns, "ex", role, corrupt);
    drop(ex);
    drop(node);
    ns.assert_clean();
    rounds
}

/// Item 12(a): an unknown bit in the exchange's state word. Before the fix
/// every operation answered `Paused` forever and the children hung. Now the
/// first operation to see it reports `Corrupt` and takes the exchange down,
/// so every later one fails at once.
#[test]
fn exchange_state_unknown_bit_ends_in_errors() {
    let o = offsets(Pattern::RequestResponse);
    let rounds = corrupt_test("st-bit", Pattern::RequestResponse, "rpc_loop", |f| {
        write_u32(f, o.exchange_state, 4);
    });
    assert!(
        rounds.iter().all(|r| r == "Corrupt" || r == "ExchangeDown"),
        "{rounds:?}"
    );
}

/// The port state word of every port.
#[test]
fn port_state_words_garbage() {
    let o = offsets(Pattern::RequestResponse);
    corrupt_test("port-st", Pattern::RequestResponse, "rpc_loop", |f| {
        for i in 0..4 {
            write_u32(f, o.ports + i * o.port_stride + o.port_state, 0xDEAD_BEEF);
        }
    });
}

/// The busy counter of every port (odd: "inside an operation").
#[test]
fn port_busy_words_garbage() {
    let o = offsets(Pattern::RequestResponse);
    corrupt_test("port-busy", Pattern::RequestResponse, "rpc_loop", |f| {
        for i in 0..4 {
            write_u32(f, o.ports + i * o.port_stride + o.port_busy, 0x1234_5677);
        }
    });
}

/// Inbox ring head and tail of every port.
#[test]
fn ring_head_tail_garbage() {
    let o = offsets(Pattern::RequestResponse);
    corrupt_test("ring", Pattern::RequestResponse, "rpc_loop", |f| {
        for i in 0..4 {
            let c = inbox(&o, i);
            write_u32(f, c + o.ring_tail, 0x5555_1234 + i as u32);
            write_u32(f, c + o.ring_head, 0xAAAA_0000);
        }
    });
}

/// The pool's free-list head.
#[test]
fn pool_free_head_garbage() {
    let o = offsets(Pattern::RequestResponse);
    corrupt_test("pool", Pattern::RequestResponse, "rpc_loop", |f| {
        write_u64(f, o.pool_head, 0xFFFF_FFF0_0000_0007);
    });
}

/// Every task entry's state word, and the ready queues' positions.
#[test]
fn task_entries_garbage() {
    let o = offsets(Pattern::Tasks);
    corrupt_test("task", Pattern::Tasks, "task_loop", |f| {
        for i in 0..4 {
            write_u64(
                f,
                o.task_entries + i * o.task_entry_stride,
                0xDEAD_BEEF_DEAD_BEEF,
            );
        }
        // The dead-letter queue and the ready queues.
        for q in 1..6 {
            write_u32(f, o.task_controls + q * o.task_control_stride, 0x7777_0003);
        }
    });
}

/// Every stream slot of every port.
#[test]
fn stream_slots_garbage() {
    let o = offsets(Pattern::RequestResponse);
    corrupt_test("stream", Pattern::RequestResponse, "stream_loop", |f| {
        for i in 0..4 * shmex::STREAM_SLOTS as usize {
            let at = o.streams + i * o.stream_slot_stride;
            write_u32(f, at, 0x77);
            write_u32(f, at + 4, 0xFFFF_FFFF);
            write_u32(f, at + 8, 0x8000_0000);
        }
    });
}

/// Item 10: a submitter that claimed a ready-queue slot and died before
/// publishing it (here: the parent moves the queue's tail on by one) leaves
/// the queue looking non-empty for good. Before the fix `receive_timeout`
/// never returned (its wait said "ready", so the deadline was not checked).
/// Now it times out, and once the dead process's port is found, reclaim
/// rebuilds the queue and tasks flow again.
#[test]
fn worker_wait_on_unpublished_queue_slot_is_bounded_and_recovers() {
    let ns = TestNs::new("unpub");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("ex", Pattern::Tasks, limits())
        .expect("create");
    let submitter = ex.submitter().expect("submitter");
    let env = [("EXCHANGE", "ex".to_string())];
    let mut taker = ChildProc::spawn(&ns, "taker", &env);
    taker.wait_for("ready");
    let o = offsets(Pattern::Tasks);
    let f = segment(&ns, "ex");
    // Ready queue of priority 0 (queue 2, after the free and dead-letter
    // queues): claim a position, never publish.
    let tail = o.task_controls + 2 * o.task_control_stride;
    write_u32(&f, tail, read_u32(&f, tail).wrapping_add(1));
    taker.send("take");
    assert_eq!(taker.wait_for("took"), "Timeout");
    // Recovery: the claim belongs to a process that dies.
    let mut doomed = ChildProc::spawn(&ns, "attach_only", &env);
    doomed.wait_for("ready");
    doomed.kill_and_reap();
    node.reclaim_dead().expect("reclaim");
    submitter
        .send(Submit::new().tag(7), b"after")
        .expect("submit");
    taker.send("take");
    assert_eq!(taker.wait_for("took"), "ok");
    taker.finish();
    drop((submitter, ex, node));
    ns.assert_clean();
}

/// Item 11: a stream whose client's inbox is full (every slot claimed by a
/// producer that died before publishing) makes `send` (no timeout) wait.
/// Before the fix it waited inside its operation, so no reclaim pass could
/// ever void the dead producer's slots: the server hung for good. Now it
/// waits outside, the pass runs, and the part goes through.
#[test]
fn stream_send_into_full_inbox_lets_reclaim_run() {
    let ns = TestNs::new("strfull");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("ex", Pattern::RequestResponse, limits())
        .expect("create");
    let client = ex.client().expect("client");
    let env = [("EXCHANGE", "ex".to_string())];
    let mut server = ChildProc::spawn(&ns, "stream_server", &env);
    server.wait_for("ready");
    client.request_stream(1, b"list", 2).expect("request");
    server.wait_for("streaming");
    // The client is port 0. Its inbox: every slot claimed, none published.
    let o = offsets(Pattern::RequestResponse);
    let f = segment(&ns, "ex");
    let c = inbox(&o, 0);
    let head = read_u32(&f, c + o.ring_head);
    write_u32(&f, c + o.ring_tail, head.wrapping_add(limits().queue_depth));
    // Whose claims: a process that dies (the heartbeats' reclaim finds it).
    let mut doomed = ChildProc::spawn(&ns, "attach_only", &env);
    doomed.wait_for("ready");
    doomed.kill_and_reap();
    server.send("send");
    // The voided slots drain as the client receives.
    let part = client.receive_timeout(TIMEOUT).expect("the part");
    assert_eq!(&*part, b"part");
    drop(part);
    assert_eq!(server.wait_for("sent"), "ok");
    server.finish();
    drop((client, ex, node));
    ns.assert_clean();
}

/// A small deterministic generator (xorshift), seeded per run so a failure
/// names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// §6: random bytes into a live segment, a third of them into the header's
/// page, 50 runs in a row; every run ends in errors or normal operation,
/// never a hang or a crash.
#[test]
fn random_bytes_into_live_segments() {
    let seed = std::env::var("SHMEX_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) * 0x9E37_79B9 + 1);
    let mut rng = Rng(seed | 1);
    for run in 0..50 {
        let run_seed = rng.next();
        let mut r = Rng(run_seed | 1);
        let (pattern, role) = if run % 2 == 0 {
            (Pattern::RequestResponse, "rpc_loop")
        } else {
            (Pattern::Tasks, "task_loop")
        };
        let size = limits().segment_size(pattern).expect("size");
        let ns = TestNs::new("rand");
        let node = ns.node("parent");
        let ex = node
            .create_exchange("ex", pattern, limits())
            .expect("create");
        let env = [("EXCHANGE", "ex".to_string())];
        let mut child = ChildProc::spawn(&ns, role, &env);
        child.wait_for("ready");
        let f = segment(&ns, "ex");
        for i in 0..512 {
            let at = if i % 3 == 0 {
                r.next() as usize % 4096
            } else {
                r.next() as usize % size
            };
            f.write_all_at(&[r.next() as u8], at as u64).expect("write");
        }
        child.send("go");
        if let Err(failure) = child.try_finish_within(TIMEOUT) {
            panic!("run {run} (seed {run_seed}): {failure}");
        }
        drop(ex);
        drop(node);
        // The segment may be down and unlinked, or corrupt and left: remove
        // what is left of this run.
        for p in ns.files() {
            let _ = std::fs::remove_file(p);
        }
        ns.assert_clean();
    }
}

//! Crash loop: 200 child processes, each SIGKILLed at a random moment while
//! traffic runs on a publish-subscribe and a request-response exchange.
//!
//! The children play random roles (subscriber that holds samples, publisher
//! that publishes as fast as it can and keeps a few loans, client, server
//! that sometimes sits on requests) and die at random: most 0–20 ms after
//! they reported ready, some while still starting up (joining the namespace,
//! opening, attaching). Meanwhile the parent's own publisher/subscriber pair
//! and client/server pair keep working, and nothing they send is lost
//! silently: every publication is received or counted as a gap, every
//! request is answered or failed. At the end every chunk is back in both
//! pools and the namespace leaves nothing behind.
//!
//! The seed of the random choices is printed; set `CRASHLOOP_SEED` to
//! replay one (process scheduling still differs from run to run).

mod common;

use common::{
    child_node, env_u64, parent_eof_flag, payload, report, words, ChildProc, TestNs, TIMEOUT,
};
use shmex::{Exchange, Limits, Pattern, RecvError, SendError};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Children started (and killed) in all.
const CHILDREN: usize = 200;
/// Children alive at a time (one per spawning thread).
const CONCURRENT: usize = 3;
/// Publisher key of the parent's own pair.
const PARENT_KEY: &str = "parent.tick";

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let mut rng = Rng(env_u64("SEED"));
    match role.as_str() {
        "sub" => subscriber(&mut rng),
        "pub" => publisher(&mut rng),
        "client" => client(),
        "server" => server(&mut rng),
        other => panic!("unknown role {other}"),
    }
}

/// splitmix64: tiny, good enough to pick roles and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn limits() -> Limits {
    Limits::default()
        .chunk_size(64)
        .chunk_count(64)
        .queue_depth(16)
        .max_ports(32)
}

// ---------------------------------------------------------------------------
// Child roles: each runs until it is killed (or, as a safety net, until the
// parent closes its stdin). An unexpected error panics, so the child exits
// on its own and the parent sees it was not killed.
// ---------------------------------------------------------------------------

/// Checks a publication's payload, `[seq, !seq]` (every publisher writes
/// that), and returns `seq`.
fn check_publication(s: &shmex::Sample<'_>) -> u64 {
    let w = words(s);
    assert!(
        w.len() == 2 && w[1] == !w[0],
        "corrupt publication {w:x?} under {:?}",
        s.key()
    );
    w[0]
}

/// Subscribes to everything and keeps the last 0–8 samples it received;
/// checks each one again when it lets go of it (a chunk handed out again
/// while still held would show there).
fn subscriber(rng: &mut Rng) {
    let node = child_node("c-sub");
    let ex = node.open_exchange("ps").expect("open ps");
    let sub = ex.subscriber("#", 9).expect("subscribe");
    let keep = rng.below(9) as usize;
    let eof = parent_eof_flag();
    report("ready");
    let mut held = std::collections::VecDeque::new();
    while !eof.load(Ordering::Acquire) {
        match sub.receive_timeout(Duration::from_millis(50)) {
            Ok(s) => {
                let seq = check_publication(&s);
                held.push_back((seq, s));
                if held.len() > keep {
                    let (seq, s) = held.pop_front().expect("held");
                    assert_eq!(check_publication(&s), seq, "a held sample changed");
                }
            }
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("subscriber: {e:?}"),
        }
    }
}

/// Keeps 0–2 loans unsent, then publishes as fast as it can.
fn publisher(rng: &mut Rng) {
    let node = child_node("c-pub");
    let ex = node.open_exchange("ps").expect("open ps");
    let publisher = ex.publisher().expect("publisher");
    let mut kept = Vec::new();
    for i in 0..rng.below(3) {
        match publisher.loan(8) {
            Ok(mut l) => {
                l.fill(0xa0 + i as u8);
                kept.push(l);
            }
            Err(SendError::PoolExhausted { .. }) => {}
            Err(e) => panic!("loan: {e:?}"),
        }
    }
    let eof = parent_eof_flag();
    report("ready");
    let mut seq = 0u64;
    while !eof.load(Ordering::Acquire) {
        if seq.is_multiple_of(64) {
            for (i, l) in kept.iter().enumerate() {
                assert!(
                    l.iter().all(|&b| b == 0xa0 + i as u8),
                    "a kept loan changed"
                );
            }
        }
        match publisher.loan(16) {
            Ok(mut loan) => {
                loan.copy_from_slice(&payload(&[seq, !seq]));
                match publisher.send_loan("child.flood", loan) {
                    Ok(_) => seq += 1,
                    Err(e) => panic!("publish: {e:?}"),
                }
            }
            Err(SendError::PoolExhausted { .. }) => std::thread::yield_now(),
            Err(e) => panic!("loan: {e:?}"),
        }
    }
    drop(kept);
}

/// Sends requests one at a time and waits for each outcome.
fn client() {
    let node = child_node("c-client");
    let ex = node.open_exchange("rr").expect("open rr");
    let client = ex.client().expect("client");
    let eof = parent_eof_flag();
    report("ready");
    let mut tag = 0u64;
    while !eof.load(Ordering::Acquire) {
        tag += 1;
        match client.send(tag, &payload(&[tag])) {
            Ok(()) => {}
            Err(SendError::QueueFull | SendError::PoolExhausted { .. }) => {
                std::thread::yield_now();
                continue;
            }
            Err(e) => panic!("request: {e:?}"),
        }
        match client.receive_timeout(TIMEOUT) {
            Ok(s) => assert_eq!((s.tag(), words(&s)), (tag, vec![tag]), "response"),
            Err(RecvError::RequestFailed { tag: t, .. }) => assert_eq!(t, tag),
            Err(e) => panic!("receive: {e:?}"),
        }
    }
}

/// Echoes requests; one server in four sits on up to two of them.
fn server(rng: &mut Rng) {
    let node = child_node("c-server");
    let ex = node.open_exchange("rr").expect("open rr");
    let server = ex.server().expect("server");
    let sit = rng.below(4) == 0;
    let eof = parent_eof_flag();
    report("ready");
    let mut held = Vec::new();
    while !eof.load(Ordering::Acquire) {
        match server.receive_timeout(Duration::from_millis(50)) {
            Ok(req) if sit && held.len() < 2 => held.push(req),
            Ok(req) => {
                let echo = req.payload().to_vec();
                // The client may be dead, the pool may be empty: the client
                // then gets a failure notice.
                let _ = req.respond(&echo);
            }
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("server: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------

/// Counters the parent's threads publish as they go.
#[derive(Default)]
struct Progress {
    published: AtomicU64,
    received: AtomicU64,
    responses: AtomicU64,
    failures: AtomicU64,
}

/// Publishes `[seq, !seq]` under [`PARENT_KEY`] until `stop`; returns how
/// many publishes succeeded.
fn parent_publisher(ex: Exchange, stop: Arc<AtomicBool>, progress: Arc<Progress>) -> u64 {
    let publisher = ex.publisher().expect("publisher");
    let mut seq = 0u64;
    while !stop.load(Ordering::Acquire) {
        match publisher.send(PARENT_KEY, &payload(&[seq, !seq])) {
            Ok(_) => {
                seq += 1;
                progress.published.store(seq, Ordering::Release);
                std::thread::sleep(Duration::from_micros(100));
            }
            // Children may hold every chunk until they are reclaimed.
            Err(SendError::PoolExhausted { .. }) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => panic!("parent publish: {e:?}"),
        }
    }
    seq
}

/// Receives the parent's publications until `stop` and the inbox is empty;
/// checks their order and contents. Returns (received, gaps).
fn parent_subscriber(ex: Exchange, stop: Arc<AtomicBool>, progress: Arc<Progress>) -> (u64, u64) {
    let sub = ex.subscriber("parent.#", 1).expect("subscribe");
    let mut next = 0u64;
    let mut received = 0u64;
    // The last few samples stay held, and are checked again on release.
    let mut held = std::collections::VecDeque::new();
    loop {
        match sub.receive_timeout(Duration::from_millis(20)) {
            Ok(s) => {
                let seq = check_publication(&s);
                assert!(seq >= next, "publication {seq} after {next}: out of order");
                assert_eq!(s.key(), Some(PARENT_KEY));
                next = seq + 1;
                received += 1;
                progress.received.store(received, Ordering::Release);
                held.push_back((seq, s));
                if held.len() > 4 {
                    let (seq, s) = held.pop_front().expect("held");
                    assert_eq!(check_publication(&s), seq, "a held sample changed");
                }
            }
            Err(RecvError::Timeout) => {
                if stop.load(Ordering::Acquire) {
                    break;
                }
            }
            Err(e) => panic!("parent receive: {e:?}"),
        }
    }
    for (seq, s) in held {
        assert_eq!(check_publication(&s), seq, "a held sample changed");
    }
    (received, sub.gaps())
}

/// Echoes requests until `stop`.
fn parent_server(ex: Exchange, stop: Arc<AtomicBool>) {
    let server = ex.server().expect("server");
    while !stop.load(Ordering::Acquire) {
        match server.receive_timeout(Duration::from_millis(20)) {
            Ok(req) => {
                let echo = req.payload().to_vec();
                let _ = req.respond(&echo);
            }
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("parent server: {e:?}"),
        }
    }
}

/// Sends requests one at a time until `stop`; every one must be answered
/// (with its own payload) or failed, never lost.
fn parent_client(ex: Exchange, stop: Arc<AtomicBool>, progress: Arc<Progress>) {
    let client = ex.client().expect("client");
    let mut tag = 0u64;
    while !stop.load(Ordering::Acquire) {
        tag += 1;
        match client.send(tag, &payload(&[tag])) {
            Ok(()) => {}
            Err(SendError::QueueFull | SendError::PoolExhausted { .. }) => {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            Err(e) => panic!("parent request: {e:?}"),
        }
        match client.receive_timeout(TIMEOUT) {
            Ok(s) => {
                assert_eq!((s.tag(), words(&s)), (tag, vec![tag]), "response");
                progress.responses.fetch_add(1, Ordering::AcqRel);
            }
            Err(RecvError::RequestFailed { tag: t, .. }) => {
                assert_eq!(t, tag, "failure notice for another request");
                progress.failures.fetch_add(1, Ordering::AcqRel);
            }
            Err(RecvError::Timeout) => panic!("request {tag} was neither answered nor failed"),
            Err(e) => panic!("parent receive: {e:?}"),
        }
    }
    assert_eq!(client.outstanding(), 0);
}

/// What one spawning thread did.
#[derive(Default, Debug)]
struct Spawned {
    by_role: [u32; 4],
    before_ready: u32,
}

const ROLES: [&str; 4] = ["sub", "pub", "client", "server"];

/// Starts `count` children one after another, each killed at a random
/// moment.
fn spawn_and_kill(ns: &TestNs, seed: u64, count: usize) -> Spawned {
    let mut rng = Rng(seed);
    let mut out = Spawned::default();
    for _ in 0..count {
        let r = rng.below(ROLES.len() as u64) as usize;
        out.by_role[r] += 1;
        let mut child = ChildProc::spawn(ns, ROLES[r], &[("SEED", rng.next().to_string())]);
        if rng.below(8) == 0 {
            // Somewhere in start-up: exec, join, open, attach.
            out.before_ready += 1;
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        } else {
            child.wait_for("ready");
            std::thread::sleep(Duration::from_micros(rng.below(20_001)));
        }
        let (status, output) = child.kill_and_reap_verbose();
        assert_eq!(
            status.signal(),
            Some(9),
            "child {} ended before it was killed\n{output}",
            ROLES[r]
        );
    }
    out
}

/// Polls `done` until it holds, at most [`TIMEOUT`] (hang protection).
fn poll_until<S: std::fmt::Debug>(what: &str, mut state: impl FnMut() -> (bool, S)) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (done, s) = state();
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still not {what} after {TIMEOUT:?}; last state: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn crash_loop_200_kills_while_traffic_runs() {
    let started = Instant::now();
    let seed = std::env::var("CRASHLOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("crash loop seed {seed} (replay with CRASHLOOP_SEED={seed})");

    let ns = TestNs::new("crashloop");
    let node = ns.node("parent");
    let ps = node
        .create_exchange("ps", Pattern::PublishSubscribe, limits())
        .expect("create ps");
    let rr = node
        .create_exchange("rr", Pattern::RequestResponse, limits())
        .expect("create rr");

    let progress = Arc::new(Progress::default());
    let stop_pub = Arc::new(AtomicBool::new(false));
    let stop_sub = Arc::new(AtomicBool::new(false));
    let stop_client = Arc::new(AtomicBool::new(false));
    let stop_server = Arc::new(AtomicBool::new(false));
    let sub_thread = {
        let (ex, stop, p) = (ps.clone(), stop_sub.clone(), progress.clone());
        std::thread::spawn(move || parent_subscriber(ex, stop, p))
    };
    let server_thread = {
        let (ex, stop) = (rr.clone(), stop_server.clone());
        std::thread::spawn(move || parent_server(ex, stop))
    };
    // Let the receivers attach before anything is sent to them.
    poll_until("the parent's receivers attached", || {
        let ports = (ps.ports(), rr.ports());
        (ports == (1, 1), ports)
    });
    let pub_thread = {
        let (ex, stop, p) = (ps.clone(), stop_pub.clone(), progress.clone());
        std::thread::spawn(move || parent_publisher(ex, stop, p))
    };
    let client_thread = {
        let (ex, stop, p) = (rr.clone(), stop_client.clone(), progress.clone());
        std::thread::spawn(move || parent_client(ex, stop, p))
    };

    // The crash loop.
    let spawned: Vec<Spawned> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CONCURRENT)
            .map(|i| {
                let ns = &ns;
                let count = CHILDREN / CONCURRENT + usize::from(i < CHILDREN % CONCURRENT);
                let seed = seed ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
                s.spawn(move || spawn_and_kill(ns, seed, count))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let loop_time = started.elapsed();
    let mut by_role = [0u32; 4];
    for s in &spawned {
        for (a, b) in by_role.iter_mut().zip(s.by_role) {
            *a += b;
        }
    }
    let before_ready: u32 = spawned.iter().map(|s| s.before_ready).sum();
    assert_eq!(by_role.iter().sum::<u32>() as usize, CHILDREN);

    // Every child is reaped. The parent's pairs still work: they make
    // progress after the last kill.
    let received = progress.received.load(Ordering::Acquire);
    let responses = progress.responses.load(Ordering::Acquire);
    poll_until(
        "the parent's pairs progressing after the crash loop",
        || {
            let now = (
                progress.received.load(Ordering::Acquire),
                progress.responses.load(Ordering::Acquire),
            );
            (now.0 >= received + 100 && now.1 >= responses + 20, now)
        },
    );

    stop_pub.store(true, Ordering::Release);
    let published = pub_thread.join().expect("parent publisher");
    stop_sub.store(true, Ordering::Release);
    let (received, gaps) = sub_thread.join().expect("parent subscriber");
    stop_client.store(true, Ordering::Release);
    client_thread.join().expect("parent client");
    stop_server.store(true, Ordering::Release);
    server_thread.join().expect("parent server");
    let responses = progress.responses.load(Ordering::Acquire);
    let failures = progress.failures.load(Ordering::Acquire);
    println!(
        "crash loop: {CHILDREN} children killed (sub/pub/client/server {by_role:?}, \
         {before_ready} before ready) in {loop_time:?}; parent pub-sub: {published} published, \
         {received} received, {gaps} missed; parent rpc: {responses} answered, {failures} failed"
    );
    assert_eq!(
        received + gaps,
        published,
        "every publication of the parent is received or counted as missed"
    );
    assert!(received > 0 && responses > 0);

    // Everything the dead held comes back; the parent's ports are gone too.
    let r = node.reclaim_dead().expect("reclaim");
    assert!(r.busy.is_empty(), "{r:?}");
    for ex in [&ps, &rr] {
        let total = ex.limits().chunk_count;
        poll_until(&format!("all chunks of {} free", ex.name()), || {
            let state = (ex.chunks_free(), ex.ports());
            (state == (total, 0), state)
        });
    }
    drop((ps, rr, node));
    ns.assert_clean();
    println!("crash loop test took {:?}", started.elapsed());
}

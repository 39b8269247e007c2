//! Chunked responses and dialogues across processes: a stream far larger
//! than the pool, flow control that lets a server serve others while a slow
//! client holds its window, either side of a stream or of a dialogue killed
//! half way, cancellation and aborts. The last four tests ("edges") guard
//! bugs found while writing this file (each assertion message says what
//! went wrong).
//!
//! No wall-clock assertion: every wait is bounded by [`TIMEOUT`], which only
//! protects against hangs. Orderings are established through the children's
//! reports and the parent's messages to them.

mod common;

use common::{
    child_node, env_str, env_u64, parent_eof_flag, payload, report, wait_parent, wait_parent_eof,
    words, ChildProc, TestNs, TIMEOUT,
};
use shmex::{
    Client, Exchange, FailReason, Limits, Pattern, RecvError, Request, ResponseStream, Server,
    WaitError, WaitSet,
};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "streamer" => streamer(),
        "mux_server" => mux_server(),
        "slow_client" => slow_client(),
        "stream_client" => stream_client(),
        "stream_holder" => stream_holder(),
        "dialogue_server" => dialogue_server(),
        "dialogue_client" => dialogue_client(),
        "ask_and_leave" => ask_and_leave(),
        other => panic!("unknown role {other}"),
    }
}

// ---------------------------------------------------------------------------
// Payload patterns
// ---------------------------------------------------------------------------

/// Chunk size of the big stream: 256 KiB.
const BULK_LEN: usize = 256 * 1024;
/// Chunks of the big stream: 4096 × 256 KiB = 1 GiB in release builds
/// (64 MiB in debug builds, where checking 1 GiB word by word takes long).
const BULK_CHUNKS: u64 = if cfg!(debug_assertions) { 256 } else { 4096 };

/// First word of chunk `chunk` of the stream answering request `tag`; word
/// `j` of the chunk is `base ^ j`.
fn pattern_base(tag: u64, chunk: u64) -> u64 {
    (tag << 48) ^ chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Writes chunk `chunk` of stream `tag` (little-endian `u64` words, in place).
fn fill(bytes: &mut [u8], tag: u64, chunk: u64) {
    let words: &mut [u64] = bytemuck::try_cast_slice_mut(bytes).expect("a payload of u64 words");
    let base = pattern_base(tag, chunk);
    for (j, w) in words.iter_mut().enumerate() {
        *w = base ^ j as u64;
    }
}

/// Checks chunk `chunk` of stream `tag` in place.
fn check(bytes: &[u8], tag: u64, chunk: u64) -> Result<(), String> {
    let words: &[u64] = bytemuck::try_cast_slice(bytes)
        .map_err(|e| format!("a payload of {} bytes is no u64 words: {e}", bytes.len()))?;
    let base = pattern_base(tag, chunk);
    // Branch-free over the whole chunk (vectorizes); look for the culprit
    // only when something is wrong.
    let diff = words
        .iter()
        .enumerate()
        .fold(0u64, |acc, (j, &w)| acc | (w ^ base ^ j as u64));
    if diff == 0 {
        return Ok(());
    }
    let j = words
        .iter()
        .enumerate()
        .position(|(j, &w)| w != base ^ j as u64)
        .unwrap_or(0);
    Err(format!(
        "stream {tag} chunk {chunk}: word {j} is {:#018x}, expected {:#018x}",
        words[j],
        base ^ j as u64
    ))
}

/// A stream request's payload: what the streamer is to do.
fn stream_order(mode: &str, count: u64, len: usize) -> Vec<u8> {
    format!("{mode} {count} {len}").into_bytes()
}

fn parse_order(req: &[u8]) -> (String, u64, usize) {
    let text = std::str::from_utf8(req).expect("an order in UTF-8");
    let mut it = text.split(' ');
    let mode = it.next().expect("mode").to_string();
    let count = it.next().and_then(|n| n.parse().ok()).expect("count");
    let len = it.next().and_then(|n| n.parse().ok()).expect("len");
    (mode, count, len)
}

/// Plain request `seq` of the second client of the slow-client test, and
/// the response it expects.
fn plain_request(seq: u64) -> Vec<u8> {
    payload(&[seq, 0x5EED_0000 ^ seq])
}

fn plain_response(seq: u64) -> Vec<u8> {
    payload(&[!seq, seq.wrapping_mul(3)])
}

/// A dialogue's answer to question `turn` of conversation `tag`.
fn answer_payload(tag: u64, turn: u64) -> Vec<u8> {
    payload(&[tag, turn, tag.rotate_left(17) ^ turn.wrapping_mul(0x51)])
}

/// The plain response that ends a conversation of `turns` turns.
fn closing_payload(tag: u64, turns: u64) -> Vec<u8> {
    payload(&[tag, turns, 0xD0_4E00_D04E])
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Polls `state` until it says done; fails the test after [`TIMEOUT`] (hang
/// protection only).
fn poll_until<S: std::fmt::Debug>(what: &str, mut state: impl FnMut() -> (bool, S)) -> S {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (done, s) = state();
        if done {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "still not {what} after {TIMEOUT:?}; last state: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the pool of `ex` is full again.
fn poll_pool_full(ex: &Exchange) {
    let total = ex.limits().chunk_count;
    poll_until(&format!("all {total} chunks free on {}", ex.name()), || {
        let free = ex.chunks_free();
        (free == total, free)
    });
}

/// Kills `child` with SIGKILL, reaps it and checks it died of the signal
/// (it did not fail before).
fn kill9(child: ChildProc) {
    let label = child.label.clone();
    let (status, diag) = child.kill_and_reap_verbose();
    assert_eq!(
        status.signal(),
        Some(9),
        "child {label} was expected to be alive until killed: {status:?}\n{diag}"
    );
}

/// A port moved into a thread that blocks on it (`f`), so that a kill in
/// the main thread happens while it waits. Hang protection: [`TIMEOUT`].
struct Blocked<T, R> {
    rx: mpsc::Receiver<(T, R)>,
    handle: JoinHandle<()>,
}

fn block_in_thread<T, R>(port: T, f: impl FnOnce(&T) -> R + Send + 'static) -> Blocked<T, R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = started_tx.send(());
        let r = f(&port);
        let _ = tx.send((port, r));
    });
    started_rx
        .recv_timeout(TIMEOUT)
        .expect("the waiting thread started");
    // Let it reach its blocking call. Not a bound: the outcome is the same
    // if it gets there after the kill.
    std::thread::sleep(Duration::from_millis(50));
    Blocked { rx, handle }
}

impl<T, R> Blocked<T, R> {
    fn outcome(self, what: &str) -> (T, R) {
        let r = self
            .rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{what}: no outcome within {TIMEOUT:?}"));
        self.handle.join().expect("the waiting thread");
        r
    }
}

fn limits(chunk_size: usize, chunk_count: u32, queue_depth: u32) -> Limits {
    Limits::default()
        .chunk_size(chunk_size)
        .chunk_count(chunk_count)
        .queue_depth(queue_depth)
        .max_ports(8)
}

/// Receives a stream's chunks on `client` until something else comes:
/// checks every chunk's tag and pattern, returns how many came and what
/// ended it.
fn receive_chunks(client: &Client, tag: u64) -> (u64, Result<shmex::Sample<'_>, RecvError>) {
    let mut n = 0;
    loop {
        match client.receive_timeout(TIMEOUT) {
            Ok(s) if s.is_stream_chunk() => {
                assert_eq!(s.tag(), tag, "a chunk of another stream");
                check(&s, tag, n).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
            other => return (n, other),
        }
    }
}

// ---------------------------------------------------------------------------
// Child roles
// ---------------------------------------------------------------------------

/// Serves requests on EXCHANGE until the parent closes stdin. Each request's
/// payload is an order "MODE COUNT LEN": answer with a stream of COUNT
/// chunks of LEN bytes in the pattern of `fill`, then `end` it (MODE
/// "end"), `abort` it ("abort") or drop it ("drop"); MODE "plain" answers
/// with a plain response. Reports `window TAG W` per request, `stream TAG
/// opened` (or `respond_stream`'s error), `blocked TAG SENT` the first time
/// a stream's window is full before a send, and `result TAG R SENT` (R:
/// "ok", or the send's error).
fn streamer() {
    let node = child_node("streamer");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    let stop = parent_eof_flag();
    report("ready");
    while !stop.load(Ordering::Acquire) {
        let req = match server.receive_timeout(Duration::from_millis(20)) {
            Ok(r) => r,
            Err(RecvError::Timeout) => continue,
            Err(e) => panic!("streamer: receive failed: {e}"),
        };
        let tag = req.tag();
        let (mode, count, len) = parse_order(&req);
        report(format!("window {tag} {}", req.stream_window()));
        if mode == "plain" {
            req.respond(b"plain").expect("respond");
            report(format!("result {tag} ok 0"));
            continue;
        }
        let mut stream = match req.respond_stream() {
            Ok(s) => s,
            Err(e) => {
                report(format!("stream {tag} {e:?}"));
                continue;
            }
        };
        report(format!("stream {tag} opened"));
        let mut result = "ok".to_string();
        let mut told_blocked = false;
        for c in 0..count {
            if !told_blocked && !stream.is_ready() {
                told_blocked = true;
                report(format!("blocked {tag} {}", stream.sent()));
            }
            let mut loan = stream.loan(len).expect("loan");
            fill(&mut loan, tag, c);
            if let Err(e) = stream.send_loan(loan) {
                result = format!("{e:?}");
                break;
            }
        }
        let sent = stream.sent();
        if result == "ok" {
            match mode.as_str() {
                "end" => {
                    if let Err(e) = stream.end() {
                        result = format!("end: {e:?}");
                    }
                }
                "abort" => stream.abort(),
                "drop" => drop(stream),
                other => panic!("unknown mode {other}"),
            }
        }
        report(format!("result {tag} {result} {sent}"));
    }
}

/// Serves EXCHANGE with one thread and a WaitSet over its server port and
/// every open stream: a request with a stream window gets a stream (order
/// "end COUNT LEN"), fed only when the stream `is_ready`; a plain request
/// gets `plain_response`. Leaves when the parent closed stdin and no stream
/// is open; reports `done TAG SENT` per stream and `plain N`.
fn mux_server() {
    let node = child_node("mux");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    let stop = parent_eof_flag();
    report("ready");
    let mut streams: Vec<(ResponseStream<'_>, u64, usize)> = Vec::new();
    let mut plain = 0u64;
    loop {
        if streams.is_empty() && stop.load(Ordering::Acquire) {
            break;
        }
        let ready = {
            let mut set = WaitSet::new();
            set.add(&server).expect("add the server");
            for (s, _, _) in &streams {
                set.add(s).expect("add a stream");
            }
            match set.wait(Some(Duration::from_millis(20))) {
                Ok(r) => r,
                Err(WaitError::Timeout) => continue,
                Err(e) => panic!("mux: wait failed: {e}"),
            }
        };
        if ready.contains(&0) {
            while let Some(req) = server.try_receive().expect("try_receive") {
                serve_mux_request(req, &mut streams, &mut plain);
            }
        }
        let mut i = 0;
        while i < streams.len() {
            let (s, count, len) = &mut streams[i];
            while s.sent() < *count && s.is_ready() {
                let mut loan = s.loan(*len).expect("loan");
                fill(&mut loan, s.tag(), s.sent());
                s.send_loan(loan).expect("a send to a ready stream");
            }
            if s.sent() == *count {
                let (s, _, _) = streams.swap_remove(i);
                let (tag, sent) = (s.tag(), s.sent());
                s.end().expect("end");
                report(format!("done {tag} {sent}"));
            } else {
                i += 1;
            }
        }
    }
    report(format!("plain {plain}"));
}

fn serve_mux_request<'a>(
    req: Request<'a>,
    streams: &mut Vec<(ResponseStream<'a>, u64, usize)>,
    plain: &mut u64,
) {
    if req.stream_window() > 0 {
        let (mode, count, len) = parse_order(&req);
        assert_eq!(mode, "end");
        let tag = req.tag();
        let s = req.respond_stream().expect("respond_stream");
        report(format!("open {tag}"));
        streams.push((s, count, len));
    } else {
        let w = words(&req);
        assert_eq!(w.len(), 2, "plain request of {} bytes", req.len());
        assert_eq!(w[1], 0x5EED_0000 ^ w[0], "plain request garbled");
        assert_eq!(req.tag(), w[0], "plain request tag vs payload");
        req.respond(&plain_response(w[0])).expect("respond");
        *plain += 1;
    }
}

/// Requests stream TAG ("end COUNT LEN", window WINDOW) on EXCHANGE and
/// reads it slowly: it sleeps 1 ms before releasing each chunk. At chunk
/// HOLD it reports `holding HOLD` and keeps the chunk until the parent says
/// "go". Reports `done N` after the end marker.
fn slow_client() {
    let node = child_node("slow");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    let tag = env_u64("TAG");
    let count = env_u64("COUNT");
    let hold = env_u64("HOLD");
    client
        .request_stream(
            tag,
            &stream_order("end", count, 4096),
            env_u64("WINDOW") as u32,
        )
        .expect("request_stream");
    let mut n = 0;
    loop {
        let s = client.receive_timeout(TIMEOUT).expect("a chunk or the end");
        assert_eq!(s.tag(), tag);
        if s.is_stream_end() {
            break;
        }
        assert!(s.is_stream_chunk());
        check(&s, tag, n).unwrap_or_else(|e| panic!("{e}"));
        if n == 0 {
            report("streaming");
        }
        if n == hold {
            report(format!("holding {n}"));
            wait_parent("go");
        }
        std::thread::sleep(Duration::from_millis(1));
        drop(s);
        n += 1;
    }
    assert_eq!(client.outstanding(), 0);
    report(format!("done {n}"));
}

/// Requests stream TAG ("end 1000000 4096", window 4) on EXCHANGE. With
/// HOLD=1 it receives 3 chunks, then holds the 4th and reports `holding`;
/// with HOLD=0 it receives and releases at full speed and reports
/// `streaming` after 16 chunks. Either way it waits to be killed.
fn stream_client() {
    let node = child_node("stream-client");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    let tag = env_u64("TAG");
    client
        .request_stream(tag, &stream_order("end", 1_000_000, 4096), 4)
        .expect("request_stream");
    let mut n = 0;
    if env_u64("HOLD") == 1 {
        let mut held = Vec::new();
        while n < 4 {
            let s = client.receive_timeout(TIMEOUT).expect("a chunk");
            assert!(s.is_stream_chunk());
            check(&s, tag, n).unwrap_or_else(|e| panic!("{e}"));
            if n == 3 {
                held.push(s);
            }
            n += 1;
        }
        report("holding");
        wait_parent_eof();
        drop(held);
    } else {
        loop {
            let s = client.receive_timeout(TIMEOUT).expect("a chunk");
            assert!(s.is_stream_chunk());
            check(&s, tag, n).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
            if n == 16 {
                report("streaming");
            }
        }
    }
    panic!("the parent was meant to kill this process");
}

/// Receives COUNT requests on EXCHANGE and opens a stream for each, sending
/// nothing: reports `stream TAG opened` or `respond_stream`'s error. Keeps
/// the streams open until the parent closes stdin, then drops them.
fn stream_holder() {
    let node = child_node("holder");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    report("ready");
    let mut open = Vec::new();
    for _ in 0..env_u64("COUNT") {
        let req = server.receive_timeout(TIMEOUT).expect("a request");
        let tag = req.tag();
        match req.respond_stream() {
            Ok(s) => {
                report(format!("stream {tag} opened"));
                open.push(s);
            }
            Err(e) => report(format!("stream {tag} {e:?}")),
        }
    }
    wait_parent_eof();
    drop(open);
}

/// Holds dialogues on EXCHANGE until the parent closes stdin. A new
/// request's payload is `[TURNS]`: the server asks questions `[tag, turn]`
/// for turns 0..TURNS, each answered with `answer_payload`, then responds
/// `closing_payload`. At turn STALL_AT it holds the answer and reports
/// `stalled TAG TURN` instead. Reports `finished TAG TURNS` and `asked N`.
fn dialogue_server() {
    let node = child_node("dialogue-server");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    let stall_at = env_u64("STALL_AT");
    let stop = parent_eof_flag();
    report("ready");
    // Per conversation: its turns and the turn last asked.
    let mut conversations: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut held = Vec::new();
    let mut asked = 0u64;
    while !stop.load(Ordering::Acquire) {
        let req = match server.receive_timeout(Duration::from_millis(20)) {
            Ok(r) => r,
            Err(RecvError::Timeout) => continue,
            Err(e) => panic!("dialogue server: receive failed: {e}"),
        };
        let tag = req.tag();
        let w = words(&req);
        let turn = if req.is_answer() {
            let &(_, last) = conversations
                .get(&tag)
                .unwrap_or_else(|| panic!("an answer in unknown conversation {tag}"));
            assert_eq!(
                w,
                words(&answer_payload(tag, last)),
                "conversation {tag}: wrong answer to question {last}"
            );
            last + 1
        } else {
            assert_eq!(w.len(), 1, "a new conversation's payload");
            assert!(
                conversations.insert(tag, (w[0], 0)).is_none(),
                "conversation {tag} started twice"
            );
            0
        };
        let turns = conversations[&tag].0;
        if turn == stall_at {
            report(format!("stalled {tag} {turn}"));
            held.push(req);
        } else if turn < turns {
            conversations.insert(tag, (turns, turn));
            req.ask(&payload(&[tag, turn])).expect("ask");
            asked += 1;
        } else {
            conversations.remove(&tag);
            req.respond(&closing_payload(tag, turns)).expect("respond");
            report(format!("finished {tag} {turns}"));
        }
    }
    report(format!("asked {asked}"));
}

/// Starts conversation TAG on EXCHANGE and answers every question until
/// question STALL_AT: then it reports `stalling TURN` and waits, silent,
/// to be killed.
fn dialogue_client() {
    let node = child_node(&format!("dialogue-client-{}", env_u64("TAG")));
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let client = ex.client().expect("client");
    let tag = env_u64("TAG");
    let stall_at = env_u64("STALL_AT");
    client
        .send(tag, &payload(&[1000]))
        .expect("start the dialogue");
    for turn in 0.. {
        let q = client.receive_timeout(TIMEOUT).expect("a question");
        assert!(q.is_question(), "turn {turn}: not a question");
        assert_eq!(q.tag(), tag);
        assert_eq!(words(&q), [tag, turn]);
        if turn == stall_at {
            report(format!("stalling {turn}"));
            wait_parent_eof();
            break;
        }
        client
            .answer(&q, &answer_payload(tag, turn))
            .expect("answer");
    }
    panic!("the parent was meant to kill this process");
}

/// Receives one request on EXCHANGE, asks a question, then closes its
/// server port (the process stays alive) and reports `closed`.
fn ask_and_leave() {
    let node = child_node("ask-and-leave");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let server = ex.server().expect("server");
    report("ready");
    let req = server.receive_timeout(TIMEOUT).expect("a request");
    let tag = req.tag();
    req.ask(&payload(&[tag, 0])).expect("ask");
    drop(server);
    report("closed");
    wait_parent_eof();
}

// ---------------------------------------------------------------------------
// Tests: chunked responses
// ---------------------------------------------------------------------------

/// 1 GiB as 4096 chunks of 256 KiB through a pool of 16 chunks (4 MiB):
/// the window (8) keeps the server from running the pool dry, every byte
/// arrives in order and intact, the end marker follows the last chunk and
/// the pool is full again after.
#[test]
fn one_gib_through_a_4_mib_pool() {
    let ns = TestNs::new("gib");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("bulk", Pattern::RequestResponse, limits(BULK_LEN, 16, 16))
        .expect("create");
    let total = ex.limits().chunk_count;
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "streamer", &[("EXCHANGE", "bulk".into())]);
    server.wait_for("ready");

    let tag = 0x1_6B;
    let start = Instant::now();
    client
        .request_stream(tag, &stream_order("end", BULK_CHUNKS, BULK_LEN), 8)
        .expect("request_stream");
    assert_eq!(client.outstanding(), 9, "the window and the end marker");
    let mut n = 0u64;
    loop {
        let s = client.receive_timeout(TIMEOUT).expect("a chunk or the end");
        assert_eq!(s.tag(), tag);
        if s.is_stream_end() {
            assert!(s.is_empty() && !s.is_stream_chunk());
            break;
        }
        assert!(s.is_stream_chunk() && !s.is_question());
        assert_eq!(s.len(), BULK_LEN, "chunk {n}");
        check(&s, tag, n).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    let elapsed = start.elapsed();
    assert_eq!(n, BULK_CHUNKS);
    assert_eq!(client.outstanding(), 0);
    assert_eq!(ex.chunks_free(), total, "the pool is full again");
    assert!(client.try_receive().expect("try_receive").is_none());

    let r = server.finish();
    assert_eq!(r.one("window"), format!("{tag} 8"));
    assert_eq!(r.one("result"), format!("{tag} ok {BULK_CHUNKS}"));
    let bytes = BULK_CHUNKS * BULK_LEN as u64;
    eprintln!(
        "streams: {} MiB in {elapsed:?}: {:.2} GiB/s",
        bytes >> 20,
        bytes as f64 / (1u64 << 30) as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(ex.chunks_free(), total);
    drop((client, ex, node));
    ns.assert_clean();
}

/// One server thread with a WaitSet streams to slow client A and answers
/// plain requests of client B. A holds its window full (it sleeps between
/// releases, then stops at chunk HOLD until told to go on): B gets every
/// response meanwhile, so A's stream was still open when B was done.
#[test]
fn slow_client_does_not_stall_another() {
    const COUNT: u64 = 200;
    const HOLD: u64 = 40;
    const PLAIN: u64 = 300;
    let ns = TestNs::new("slow");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("mux", Pattern::RequestResponse, limits(4096, 64, 16))
        .expect("create");
    let mut server = ChildProc::spawn(&ns, "mux_server", &[("EXCHANGE", "mux".into())]);
    server.wait_for("ready");
    let a_tag = 0xA;
    let mut slow = ChildProc::spawn(
        &ns,
        "slow_client",
        &[
            ("EXCHANGE", "mux".into()),
            ("TAG", a_tag.to_string()),
            ("COUNT", COUNT.to_string()),
            ("HOLD", HOLD.to_string()),
            ("WINDOW", "4".into()),
        ],
    );
    assert_eq!(server.wait_for("open"), a_tag.to_string());
    slow.wait_for("streaming");
    assert_eq!(slow.wait_for("holding"), HOLD.to_string());

    // Client B (this process): plain requests, up to 8 in flight, while A
    // holds its stream's window full and waits for "go".
    let b = ex.client().expect("client B");
    let mut next = 0u64;
    let mut answered = 0u64;
    let mut in_flight = std::collections::BTreeSet::new();
    while answered < PLAIN {
        while next < PLAIN && in_flight.len() < 8 {
            b.send(next, &plain_request(next)).expect("request");
            in_flight.insert(next);
            next += 1;
        }
        let r = b
            .receive_timeout(TIMEOUT)
            .expect("B gets its response while A's stream is open");
        assert!(!r.is_stream_chunk() && !r.is_stream_end() && !r.is_question());
        assert!(in_flight.remove(&r.tag()), "unexpected tag {}", r.tag());
        assert_eq!(&r[..], &plain_response(r.tag())[..]);
        answered += 1;
    }
    assert_eq!(b.outstanding(), 0);

    // Only now may A go on: its stream cannot have ended before.
    slow.send("go");
    let a = slow.finish();
    assert_eq!(a.one("done"), COUNT.to_string());
    let r = server.finish();
    assert_eq!(r.one("done"), format!("{a_tag} {COUNT}"));
    assert_eq!(r.one("plain"), PLAIN.to_string());
    poll_pool_full(&ex);
    drop((b, ex, node));
    ns.assert_clean();
}

/// The server is SIGKILLed while its send waits for the window (the client
/// holds the 4 chunks it got): the client, blocked in `receive()`, got the
/// 4 chunks, then `RequestFailed { ServerGone }`; the pool is full again.
#[test]
fn server_killed_mid_stream() {
    let ns = TestNs::new("srvkill");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("s", Pattern::RequestResponse, limits(4096, 32, 16))
        .expect("create");
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "streamer", &[("EXCHANGE", "s".into())]);
    server.wait_for("ready");
    let tag = 3;
    client
        .request_stream(tag, &stream_order("end", 1_000_000, 4096), 4)
        .expect("request_stream");
    assert_eq!(server.wait_for("blocked"), format!("{tag} 4"));

    let waiter = block_in_thread(client, move |client: &Client| {
        let mut held = Vec::new();
        let end = loop {
            match client.receive() {
                Ok(s) if s.is_stream_chunk() => held.push(s),
                other => break other.map(|s| format!("{s:?}")),
            }
        };
        let chunks: Vec<Result<(), String>> = held
            .iter()
            .enumerate()
            .map(|(i, s)| check(s, tag, i as u64))
            .collect();
        (chunks, end)
    });
    kill9(server);
    let (client, (chunks, end)) =
        waiter.outcome("the blocked client never learnt that its server died");
    assert_eq!(chunks, vec![Ok(()); 4], "the 4 chunks queued before");
    match end {
        Err(RecvError::RequestFailed { tag: t, reason }) => {
            assert_eq!((t, reason), (tag, FailReason::ServerGone))
        }
        other => panic!("expected RequestFailed(ServerGone), got {other:?}"),
    }
    assert_eq!(client.outstanding(), 0);
    poll_pool_full(&ex);
    assert!(client.try_receive().expect("try_receive").is_none());
    drop((client, ex, node));
    ns.assert_clean();
}

/// The same while the stream runs at full speed (the client releases every
/// chunk at once, so the server is pushing when it dies): every chunk that
/// arrives is whole and in order, then `ServerGone`.
#[test]
fn server_killed_while_streaming_fast() {
    let ns = TestNs::new("srvkillfast");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("s", Pattern::RequestResponse, limits(4096, 32, 16))
        .expect("create");
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "streamer", &[("EXCHANGE", "s".into())]);
    server.wait_for("ready");
    let tag = 33;
    client
        .request_stream(tag, &stream_order("end", 1_000_000_000, 4096), 4)
        .expect("request_stream");
    assert_eq!(server.wait_for("window"), format!("{tag} 4"));
    let waiter = block_in_thread(client, move |client: &Client| {
        let (n, end) = receive_chunks(client, tag);
        (n, end.map(|s| format!("{s:?}")))
    });
    kill9(server);
    let (client, (n, end)) = waiter.outcome("the streaming client never learnt");
    match end {
        Err(RecvError::RequestFailed { tag: t, reason }) => {
            assert_eq!(
                (t, reason),
                (tag, FailReason::ServerGone),
                "after {n} chunks"
            )
        }
        other => panic!("expected RequestFailed(ServerGone) after {n} chunks, got {other:?}"),
    }
    assert!(n >= 4, "the stream was running: {n} chunks");
    assert_eq!(client.outstanding(), 0);
    poll_pool_full(&ex);
    drop((client, ex, node));
    ns.assert_clean();
}

fn client_killed_mid_stream(hold: bool) {
    let ns = TestNs::new(if hold { "clikill" } else { "clikillfast" });
    let node = ns.node("parent");
    let ex = node
        .create_exchange("s", Pattern::RequestResponse, limits(4096, 32, 16))
        .expect("create");
    let mut server = ChildProc::spawn(&ns, "streamer", &[("EXCHANGE", "s".into())]);
    server.wait_for("ready");
    let tag = 4;
    let mut client = ChildProc::spawn(
        &ns,
        "stream_client",
        &[
            ("EXCHANGE", "s".into()),
            ("TAG", tag.to_string()),
            ("HOLD", u64::from(hold).to_string()),
        ],
    );
    assert_eq!(server.wait_for("window"), format!("{tag} 4"));
    client.wait_for(if hold { "holding" } else { "streaming" });
    kill9(client);
    let result = server.wait_for("result");
    let mut it = result.split(' ');
    assert_eq!(it.next(), Some(tag.to_string().as_str()), "{result}");
    assert_eq!(it.next(), Some("ClientGone"), "the server's send: {result}");
    let sent: u64 = it.next().and_then(|s| s.parse().ok()).expect("sent");
    if hold {
        // At least the 4 received; at most 3 released + a window of 4.
        assert!((4..=7).contains(&sent), "{result}");
    } else {
        assert!(sent >= 16, "{result}");
    }
    poll_pool_full(&ex);
    server.finish();
    poll_pool_full(&ex);
    drop((ex, node));
    ns.assert_clean();
}

/// The client is SIGKILLed while it holds a chunk and the server waits for
/// the window: the server's send fails with `ClientGone`; the pool fills up.
#[test]
fn client_killed_mid_stream_holding() {
    client_killed_mid_stream(true);
}

/// The client is SIGKILLed while it receives at full speed.
#[test]
fn client_killed_mid_stream_fast() {
    client_killed_mid_stream(false);
}

/// The client cancels after 3 chunks: the server's send fails with
/// `Cancelled` and it stops; the client drains what was queued without an
/// event and its `outstanding()` returns to 0; a new stream then works.
#[test]
fn client_cancels_early() {
    let ns = TestNs::new("cancel");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("s", Pattern::RequestResponse, limits(4096, 32, 16))
        .expect("create");
    let total = ex.limits().chunk_count;
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "streamer", &[("EXCHANGE", "s".into())]);
    server.wait_for("ready");
    let tag = 5;
    client
        .request_stream(tag, &stream_order("end", 1_000_000, 4096), 4)
        .expect("request_stream");
    for i in 0..3 {
        let s = client.receive_timeout(TIMEOUT).expect("a chunk");
        assert!(s.is_stream_chunk());
        assert_eq!(s.tag(), tag);
        check(&s, tag, i).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(!client.cancel(tag + 1), "no stream of that tag");
    assert!(client.cancel(tag), "the stream is open");
    let result = server.wait_for("result");
    let sent = result
        .strip_prefix(&format!("{tag} Cancelled "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the server's send must fail with Cancelled: {result}"));
    // At least the 3 received; at most 3 released + a window of 4.
    assert!((3..=7).contains(&sent), "{result}");
    // Drain: what was queued is released unread, then the abort marker
    // settles the request without an event.
    let events = poll_until("the cancelled stream settled", || {
        let mut events = Vec::new();
        while let Some(s) = client.try_receive().expect("try_receive") {
            events.push(format!("{s:?}"));
        }
        (client.outstanding() == 0, events)
    });
    assert!(
        events.is_empty(),
        "a cancelled stream ends without an event: {events:?}"
    );
    assert!(!client.cancel(tag), "nothing left to cancel");
    poll_pool_full(&ex);

    // The slot is free again: another stream goes through.
    let tag2 = 6;
    client
        .request_stream(tag2, &stream_order("end", 10, 4096), 4)
        .expect("request_stream");
    let (n, end) = receive_chunks(&client, tag2);
    let end = end.expect("the end marker");
    assert!(end.is_stream_end() && end.tag() == tag2);
    drop(end);
    assert_eq!(n, 10);
    assert_eq!(client.outstanding(), 0);
    assert_eq!(server.wait_for("result"), format!("{tag2} ok 10"));
    assert_eq!(ex.chunks_free(), total);
    server.finish();
    drop((client, ex, node));
    ns.assert_clean();
}

/// The server aborts its stream (after 3 chunks, and before any) or drops
/// it unfinished (after 2): the client gets the chunks sent, then
/// `RequestFailed { Aborted }`.
#[test]
fn server_aborts_or_drops_its_stream() {
    let ns = TestNs::new("abort");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("s", Pattern::RequestResponse, limits(4096, 32, 16))
        .expect("create");
    let total = ex.limits().chunk_count;
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "streamer", &[("EXCHANGE", "s".into())]);
    server.wait_for("ready");
    for (tag, mode, count) in [(81, "abort", 3), (82, "drop", 2), (83, "abort", 0)] {
        client
            .request_stream(tag, &stream_order(mode, count, 4096), 4)
            .expect("request_stream");
        let (n, end) = receive_chunks(&client, tag);
        match end {
            Err(RecvError::RequestFailed { tag: t, reason }) => {
                assert_eq!((t, reason), (tag, FailReason::Aborted), "{mode} {count}")
            }
            other => panic!("{mode} {count}: expected RequestFailed(Aborted), got {other:?}"),
        }
        assert_eq!(n, count, "{mode}: the chunks sent come first");
        assert_eq!(client.outstanding(), 0);
        assert_eq!(server.wait_for("result"), format!("{tag} ok {count}"));
    }
    assert!(client.try_receive().expect("try_receive").is_none());
    assert_eq!(ex.chunks_free(), total);
    server.finish();
    drop((client, ex, node));
    ns.assert_clean();
}

// ---------------------------------------------------------------------------
// Tests: dialogues
// ---------------------------------------------------------------------------

/// Two conversations of 1000 turns each with a server child, interleaved:
/// every question carries its conversation's tag and turn, every answer
/// goes back under that tag, and each ends with a plain response.
#[test]
fn dialogue_of_1000_turns() {
    const TURNS: u64 = 1000;
    let ns = TestNs::new("dialogue");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("talk", Pattern::RequestResponse, limits(256, 32, 16))
        .expect("create");
    let total = ex.limits().chunk_count;
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(
        &ns,
        "dialogue_server",
        &[
            ("EXCHANGE", "talk".into()),
            ("STALL_AT", u64::MAX.to_string()),
        ],
    );
    server.wait_for("ready");
    let tags = [0xA11CE, 0xB0B];
    for t in tags {
        client.send(t, &payload(&[TURNS])).expect("start");
    }
    assert_eq!(client.outstanding(), 2);
    // Next question expected per conversation; None once it ended.
    let mut next: BTreeMap<u64, Option<u64>> = tags.iter().map(|&t| (t, Some(0))).collect();
    let mut both_open = 0u64;
    while next.values().any(Option::is_some) {
        let s = client
            .receive_timeout(TIMEOUT)
            .expect("a question or a response");
        let tag = s.tag();
        let turn = next
            .get(&tag)
            .copied()
            .unwrap_or_else(|| panic!("a message of unknown tag {tag:#x}"))
            .unwrap_or_else(|| panic!("conversation {tag:#x} got a message after its end"));
        assert!(!s.is_stream_chunk() && !s.is_stream_end());
        if s.is_question() {
            assert_eq!(words(&s), [tag, turn], "conversation {tag:#x}");
            client
                .answer(&s, &answer_payload(tag, turn))
                .expect("answer");
            next.insert(tag, Some(turn + 1));
            if next.values().all(|t| t.is_some_and(|t| t > 0)) {
                both_open += 1;
            }
        } else {
            assert_eq!(turn, TURNS, "conversation {tag:#x} ended early");
            assert_eq!(&s[..], &closing_payload(tag, TURNS)[..]);
            next.insert(tag, None);
        }
    }
    assert!(
        both_open > 0,
        "both conversations were under way at the same time"
    );
    assert_eq!(client.outstanding(), 0);
    assert!(client.try_receive().expect("try_receive").is_none());
    let r = server.finish();
    let mut finished = r.all("finished");
    finished.sort();
    let mut want: Vec<String> = tags.iter().map(|t| format!("{t} {TURNS}")).collect();
    want.sort();
    assert_eq!(finished, want);
    assert_eq!(r.one("asked"), (2 * TURNS).to_string());
    assert_eq!(ex.chunks_free(), total);
    drop((client, ex, node));
    ns.assert_clean();
}

/// The dialogue's server is SIGKILLed while it holds the client's answer:
/// the client, blocked in `receive()` for the next question, gets
/// `RequestFailed { ServerGone }`.
#[test]
fn dialogue_server_killed() {
    const STALL_AT: u64 = 5;
    let ns = TestNs::new("dlgsrvkill");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("talk", Pattern::RequestResponse, limits(256, 32, 16))
        .expect("create");
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(
        &ns,
        "dialogue_server",
        &[
            ("EXCHANGE", "talk".into()),
            ("STALL_AT", STALL_AT.to_string()),
        ],
    );
    server.wait_for("ready");
    let tag = 71;
    client.send(tag, &payload(&[1000])).expect("start");
    for turn in 0..STALL_AT {
        let q = client.receive_timeout(TIMEOUT).expect("a question");
        assert!(q.is_question());
        assert_eq!(words(&q), [tag, turn]);
        client
            .answer(&q, &answer_payload(tag, turn))
            .expect("answer");
    }
    let waiter = block_in_thread(client, |client: &Client| {
        client.receive().map(|s| format!("{s:?}"))
    });
    assert_eq!(server.wait_for("stalled"), format!("{tag} {STALL_AT}"));
    kill9(server);
    let (client, outcome) = waiter.outcome("the client never learnt that its server died");
    match outcome {
        Err(RecvError::RequestFailed { tag: t, reason }) => {
            assert_eq!((t, reason), (tag, FailReason::ServerGone))
        }
        other => panic!("expected RequestFailed(ServerGone), got {other:?}"),
    }
    assert_eq!(client.outstanding(), 0);
    poll_pool_full(&ex);
    assert!(client.try_receive().expect("try_receive").is_none());
    drop((client, ex, node));
    ns.assert_clean();
}

/// Two dialogue clients are SIGKILLed while this process, their server,
/// waits for their answers: the blocked `receive()` returns
/// `RequestFailed { ClientGone }` for one conversation, `check_clients()`
/// names the other.
#[test]
fn dialogue_client_killed() {
    let ns = TestNs::new("dlgclikill");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("talk", Pattern::RequestResponse, limits(256, 32, 16))
        .expect("create");
    let server = ex.server().expect("server");
    let stalls = [(91u64, 5u64), (92, 3)];
    let mut clients: Vec<ChildProc> = stalls
        .iter()
        .map(|(tag, stall)| {
            ChildProc::spawn(
                &ns,
                "dialogue_client",
                &[
                    ("EXCHANGE", "talk".into()),
                    ("TAG", tag.to_string()),
                    ("STALL_AT", stall.to_string()),
                ],
            )
        })
        .collect();

    // Serve until both are stalled: ask turn after turn.
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut questions = 0;
    while questions < stalls.iter().map(|(_, s)| s + 1).sum::<u64>() {
        let req = server.receive_timeout(TIMEOUT).expect("a request");
        let tag = req.tag();
        let turn = if req.is_answer() {
            let t = last[&tag];
            assert_eq!(words(&req), words(&answer_payload(tag, t)));
            t + 1
        } else {
            assert_eq!(words(&req), [1000]);
            0
        };
        last.insert(tag, turn);
        req.ask(&payload(&[tag, turn])).expect("ask");
        questions += 1;
    }
    for (c, (_, stall)) in clients.iter_mut().zip(stalls) {
        assert_eq!(c.wait_for("stalling"), stall.to_string());
    }

    let waiter = block_in_thread(server, |server: &Server| {
        server.receive().map(|r| format!("{:?}", *r))
    });
    for c in clients {
        kill9(c);
    }
    let (server, outcome) = waiter.outcome("the server never learnt that its client died");
    let first = match outcome {
        Err(RecvError::RequestFailed { tag, reason }) => {
            assert_eq!(reason, FailReason::ClientGone, "conversation {tag}");
            tag
        }
        other => panic!("expected RequestFailed(ClientGone), got {other:?}"),
    };
    let mut gone = server.check_clients();
    gone.push(first);
    gone.sort_unstable();
    assert_eq!(gone, [91, 92], "each dead conversation reported once");
    assert!(server.check_clients().is_empty());
    assert!(server.try_receive().expect("try_receive").is_none());
    poll_pool_full(&ex);
    drop((server, ex, node));
    ns.assert_clean();
}

// ---------------------------------------------------------------------------
// Tests: edges (each guards a bug found while writing this file; see the
// assertion messages)
// ---------------------------------------------------------------------------

/// A plain request reserves one slot of its client's inbox: room for one
/// response, not for a stream (a chunk and an end marker). `respond_stream`
/// refuses it (`NotAStreamRequest`), and the client hears about it
/// (`RequestFailed` with `Unanswered`) instead of waiting forever.
#[test]
fn stream_answer_to_a_plain_request_is_refused_and_reported() {
    let ns = TestNs::new("plainstream");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("s", Pattern::RequestResponse, limits(4096, 16, 2))
        .expect("create");
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "streamer", &[("EXCHANGE", "s".into())]);
    server.wait_for("ready");
    client
        .send(2, &stream_order("end", 1, 64))
        .expect("request 2 (plain, answered with a stream)");
    assert_eq!(server.wait_for("window"), "2 0", "a plain request");
    assert_eq!(server.wait_for("stream"), "2 NotAStreamRequest");
    match client.receive_timeout(TIMEOUT) {
        Err(RecvError::RequestFailed { tag, reason }) => {
            assert_eq!((tag, reason), (2, FailReason::Unanswered));
        }
        other => panic!("expected RequestFailed(Unanswered), got {other:?}"),
    }
    assert_eq!(client.outstanding(), 0);
    server.finish();
    poll_pool_full(&ex);
    drop((client, ex, node));
    ns.assert_clean();
}

/// A client already receiving `STREAM_SLOTS` streams asks for one more:
/// `respond_stream` fails with `TooManyStreams` and consumes the request.
/// The client must hear about it (`RequestFailed`), not wait forever.
#[test]
fn refused_stream_fails_the_request() {
    let slots = u64::from(shmex::STREAM_SLOTS);
    let ns = TestNs::new("refused");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("s", Pattern::RequestResponse, limits(256, 64, 32))
        .expect("create");
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(
        &ns,
        "stream_holder",
        &[("EXCHANGE", "s".into()), ("COUNT", (slots + 1).to_string())],
    );
    server.wait_for("ready");
    for tag in 0..=slots {
        client
            .request_stream(tag, b"hold", 1)
            .expect("request_stream");
    }
    for tag in 0..slots {
        assert_eq!(server.wait_for("stream"), format!("{tag} opened"));
    }
    assert_eq!(server.wait_for("stream"), format!("{slots} TooManyStreams"));
    // The refused request was dropped by then: its notice is queued.
    let mut events = Vec::new();
    loop {
        match client.try_receive() {
            Ok(Some(s)) => events.push(format!("{s:?}")),
            Ok(None) => break,
            Err(e) => events.push(format!("{e:?}")),
        }
    }
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("RequestFailed {{ tag: {slots},"))),
        "respond_stream failed with TooManyStreams, which consumed request {slots} \
         (it sets `answered` before it can fail), and the client was never told: \
         it would wait for it forever. Received: {events:?}"
    );
    // The open streams end with the server: aborted.
    server.finish();
    let mut aborted = 0;
    while client.outstanding() > 0 {
        match client.receive_timeout(TIMEOUT) {
            Err(RecvError::RequestFailed { reason, .. }) => {
                assert_eq!(reason, FailReason::Aborted);
                aborted += 1;
            }
            other => panic!("expected an aborted stream, got {other:?}"),
        }
    }
    assert_eq!(aborted, slots);
    poll_pool_full(&ex);
    drop((client, ex, node));
    ns.assert_clean();
}

/// Clients attached one after the other at the same port slot each start a
/// stream and close their port half way (cleanly: no process dies, so no
/// reclaim). The server's send fails with `ClientGone` each time, and the
/// stream slot must be free again for the next client of that port slot.
#[test]
fn closed_client_port_frees_its_stream_slot() {
    let rounds = u64::from(shmex::STREAM_SLOTS) + 2;
    let ns = TestNs::new("slotleak");
    let node = ns.node("parent");
    // Two ports: the server's and one client's, so every client takes the
    // same slot.
    let ex = node
        .create_exchange(
            "s",
            Pattern::RequestResponse,
            limits(256, 16, 8).max_ports(2),
        )
        .expect("create");
    let mut server = ChildProc::spawn(&ns, "streamer", &[("EXCHANGE", "s".into())]);
    server.wait_for("ready");
    for tag in 0..rounds {
        let client = ex.client().expect("client");
        client
            .request_stream(tag, &stream_order("end", 1_000_000, 64), 1)
            .expect("request_stream");
        assert_eq!(server.wait_for("window"), format!("{tag} 1"));
        let opened = server.wait_for("stream");
        assert_eq!(
            opened,
            format!("{tag} opened"),
            "round {tag}: earlier clients of this port slot closed their ports \
             mid-stream; their stream slots stay open (a port's close does not \
             free them, only reclaim of a dead process does), so after \
             STREAM_SLOTS rounds every stream to this port slot is refused"
        );
        let s = client.receive_timeout(TIMEOUT).expect("a chunk");
        assert!(s.is_stream_chunk());
        check(&s, tag, 0).unwrap_or_else(|e| panic!("{e}"));
        // Close the port half way, the chunk in hand.
        drop(s);
        drop(client);
        let result = server.wait_for("result");
        assert!(
            result.starts_with(&format!("{tag} ClientGone ")),
            "round {tag}: {result}"
        );
    }
    server.finish();
    poll_pool_full(&ex);
    drop((ex, node));
    ns.assert_clean();
}

/// A dialogue's server port closes (cleanly, its process lives on) after
/// asking a question: the client's answer fails with `NoServer`, and the
/// conversation must then come back as `RequestFailed` ("its port closed",
/// `Client::try_receive`) instead of staying outstanding forever.
#[test]
fn dialogue_server_port_closed() {
    let ns = TestNs::new("dlgsrvclose");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("talk", Pattern::RequestResponse, limits(256, 16, 8))
        .expect("create");
    let client = ex.client().expect("client");
    let mut server = ChildProc::spawn(&ns, "ask_and_leave", &[("EXCHANGE", "talk".into())]);
    server.wait_for("ready");
    let tag = 61;
    client.send(tag, &payload(&[1])).expect("start");
    let q = client.receive_timeout(TIMEOUT).expect("a question");
    assert!(q.is_question());
    server.wait_for("closed");
    assert!(matches!(
        client.answer(&q, &answer_payload(tag, 0)),
        Err(shmex::SendError::NoServer)
    ));
    drop(q);
    let mut events = Vec::new();
    while client.outstanding() > 0 {
        match client.try_receive() {
            Ok(Some(s)) => events.push(format!("{s:?}")),
            Ok(None) => break,
            Err(e) => events.push(format!("{e:?}")),
        }
    }
    assert_eq!(
        client.outstanding(),
        0,
        "the server port that asked is gone (answer: NoServer), yet conversation \
         {tag} stays pending: no failure notice, and the server process being \
         alive, check_servers never dooms it; receive() would wait forever and \
         the slot of the client's budget is lost. Received: {events:?}"
    );
    server.finish();
    poll_pool_full(&ex);
    drop((client, ex, node));
    ns.assert_clean();
}

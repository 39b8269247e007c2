//! C and Rust processes on the same exchanges: a C publisher to Rust
//! subscribers, a Rust client to a C server, a C server streaming a chunked
//! response to a Rust client, and a C worker among Rust workers, killed
//! mid-task, whose task is redelivered. The C side is the examples'
//! single-role modes (`rpc server`, `stream server`, `pubsub publisher`,
//! `tasks worker`). Every test has its own namespace and leaves it empty.

mod common;

use common::{compile, compile_with, CProc, TestNs};
use shmex_rs::{Limits, Pattern, RecvError, Submit};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn c_publisher_to_rust_subscribers() {
    let ns = TestNs::new("pub");
    let node = ns.node("rust-subscribers");
    let ex = node
        .create_exchange("sensors", Pattern::PublishSubscribe, Limits::default())
        .unwrap();
    let kitchen = ex.subscriber("home.kitchen.*", 1).unwrap();
    let all = ex.subscriber("home.#", 2).unwrap();
    let none = ex.subscriber("office.#", 3).unwrap();

    let mut publisher = CProc::spawn(
        &compile("examples/pubsub.c"),
        &["publisher", &ns.name, "10"],
    );
    publisher.finish();

    // The C side writes `struct reading { uint32_t seq; float celsius; }`.
    let reading = |bytes: &[u8]| {
        assert_eq!(bytes.len(), 8);
        let seq = u32::from_ne_bytes(bytes[..4].try_into().unwrap());
        let celsius = f32::from_ne_bytes(bytes[4..].try_into().unwrap());
        (seq, celsius)
    };
    for i in 0..10u32 {
        let s = all.receive_timeout(WAIT).unwrap();
        let key = if i % 2 == 0 {
            "home.kitchen.temp"
        } else {
            "home.garage.temp"
        };
        assert_eq!((s.key(), s.tag()), (Some(key), 2));
        assert_eq!(reading(&s), (i, 20.0 + i as f32 / 2.0));
    }
    for i in (0..10u32).step_by(2) {
        let s = kitchen.receive_timeout(WAIT).unwrap();
        assert_eq!((s.key(), s.tag()), (Some("home.kitchen.temp"), 1));
        assert_eq!(reading(&s).0, i);
    }
    assert!(all.try_receive().unwrap().is_none());
    assert!(kitchen.try_receive().unwrap().is_none());
    assert!(none.try_receive().unwrap().is_none());
    assert_eq!(all.gaps() + kitchen.gaps(), 0);
    drop((kitchen, all, none, ex, node));
    ns.assert_clean();
}

#[test]
fn rust_client_to_c_server() {
    let ns = TestNs::new("rpc");
    let node = ns.node("rust-client");
    let ex = node
        .create_exchange("time", Pattern::RequestResponse, Limits::default())
        .unwrap();
    let client = ex.client().unwrap();
    let mut server = CProc::spawn(&compile("examples/rpc.c"), &["server", &ns.name, "5"]);
    server.wait_line("ready");
    for i in 0..5u64 {
        let question = format!("hello {i}");
        client.send(i, question.as_bytes()).unwrap();
        let answer = client.receive_timeout(WAIT).unwrap();
        assert_eq!(answer.tag(), i);
        assert_eq!(&answer[..], format!("re: {question}").as_bytes());
    }
    server.finish();
    drop((client, ex, node));
    ns.assert_clean();
}

#[test]
fn c_server_streams_to_rust_client() {
    let ns = TestNs::new("stream");
    let node = ns.node("rust-client");
    let ex = node
        .create_exchange("files", Pattern::RequestResponse, Limits::default())
        .unwrap();
    let client = ex.client().unwrap();
    let mut server = CProc::spawn(&compile("examples/stream.c"), &["server", &ns.name]);
    server.wait_line("ready");
    client.request_stream(1, b"40", 4).unwrap();

    // Flow control across the boundary: with 4 parts held, the C server
    // cannot send a fifth.
    let held: Vec<_> = (0..4)
        .map(|_| client.receive_timeout(WAIT).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    assert!(client.try_receive().unwrap().is_none(), "window overrun");
    for (i, part) in held.iter().enumerate() {
        check_part(part, i as u32, 40);
    }
    drop(held); // room for four more
    let mut n = 4;
    loop {
        let part = client.receive_timeout(WAIT).unwrap();
        if part.is_stream_end() {
            break;
        }
        assert!(part.is_stream_chunk());
        check_part(&part, n, 40);
        n += 1;
    }
    assert_eq!(n, 40);
    server.finish();
    drop((client, ex, node));
    ns.assert_clean();
}

/// A C server's stream waits in a C wait set for window room
/// (tests/c/stream_waitset.c) while this process, the client, holds a full
/// window until the server says it waits, then releases it: the wait set
/// wakes the server for each release, every part arrives in order, and the
/// server's waits allocate nothing after the first two.
#[test]
fn c_stream_waits_in_a_waitset_for_rust_releases() {
    const PARTS: u32 = 40;
    const WINDOW: u32 = 2;
    let ns = TestNs::new("stream-waitset");
    let node = ns.node("rust-client");
    let ex = node
        .create_exchange("files", Pattern::RequestResponse, Limits::default())
        .unwrap();
    let client = ex.client().unwrap();
    let exe = compile_with(
        "tests/c/stream_waitset.c",
        &["-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign,--wrap=aligned_alloc"],
    );
    let mut server = CProc::spawn(&exe, &[&ns.name]);
    server.wait_line("ready");
    client
        .request_stream(1, PARTS.to_string().as_bytes(), WINDOW)
        .unwrap();
    let mut held = Vec::new();
    let mut n = 0;
    loop {
        let part = client.receive_timeout(WAIT).unwrap();
        if part.is_stream_end() {
            break;
        }
        assert!(part.is_stream_chunk());
        assert_eq!(&part[..], format!("part {n} of {PARTS}").as_bytes());
        n += 1;
        held.push(part);
        if held.len() == WINDOW as usize && n < PARTS {
            // The server cannot send more: it says so, then waits in its
            // wait set until these are released.
            server.wait_line("waiting");
            held.clear();
        }
    }
    assert_eq!(n, PARTS);
    drop(held);
    server.finish();
    let waited: u32 = server
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("waited "))
        .and_then(|w| w.parse().ok())
        .expect("a waited line");
    assert!(waited > 2, "{:?}", server.seen);
    // The waits after the first two allocated nothing.
    assert!(
        server.seen.iter().any(|l| l == "allocations 0"),
        "{:?}",
        server.seen
    );
    drop((client, ex, node));
    ns.assert_clean();
}

/// Part `i` of `n` as `examples/stream.c` writes it.
fn check_part(part: &[u8], i: u32, n: u32) {
    let head = format!("part {i} of {n}");
    let filler = (i % 251) as usize;
    assert_eq!(part.len(), head.len() + filler, "part {i}");
    assert_eq!(&part[..head.len()], head.as_bytes());
    let fill = b'a' + (i % 26) as u8;
    assert!(part[head.len()..].iter().all(|&b| b == fill), "part {i}");
}

#[test]
fn c_worker_killed_mid_task_is_redelivered() {
    let ns = TestNs::new("tasks");
    let node = ns.node("rust-workers");
    let limits = Limits::default()
        .queue_depth(64)
        // Long: the redelivery below comes from the kill, not a timeout.
        .ack_timeout(Duration::from_secs(60));
    let ex = node
        .create_exchange("jobs", Pattern::Tasks, limits)
        .unwrap();
    let submitter = ex.submitter().unwrap();
    let rust_workers = [ex.worker(1).unwrap(), ex.worker(1).unwrap()];

    let mut c_worker = CProc::spawn(&compile("examples/tasks.c"), &["worker", &ns.name, "1000"]);
    c_worker.wait_line("ready");
    // The C worker takes part: the Rust workers wait meanwhile.
    for tag in 0..5 {
        submitter
            .send(Submit::new().priority(1).tag(tag), b"job")
            .unwrap();
        c_worker.wait_line(&format!("acked {tag}"));
    }
    submitter
        .send(Submit::new().priority(1).tag(1000), b"job")
        .unwrap();
    c_worker.wait_line("hanging 1000");
    for tag in 5..20 {
        submitter
            .send(Submit::new().priority(1).tag(tag), b"job")
            .unwrap();
    }
    c_worker.kill(); // SIGKILL, holding task 1000

    let mut done = Vec::new();
    let deadline = Instant::now() + WAIT;
    while done.len() < 16 {
        assert!(Instant::now() < deadline, "tasks done: {done:?}");
        for w in &rust_workers {
            match w.try_receive() {
                Ok(Some(task)) => {
                    if task.tag() == 1000 {
                        assert!(task.redelivered(), "task 1000 came back redelivered");
                        assert_eq!(task.deliveries(), 2);
                    } else {
                        assert!(!task.redelivered());
                    }
                    done.push(task.tag());
                    task.ack().unwrap();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(e @ RecvError::PrefetchLimit { .. }) => panic!("{e}"),
                Err(e) => panic!("take: {e}"),
            }
        }
    }
    done.sort_unstable();
    let expected: Vec<u64> = (5..20).chain([1000]).collect();
    assert_eq!(done, expected);
    let stats = ex.task_stats().unwrap();
    assert_eq!((stats.acked, stats.queued, stats.in_flight), (21, 0, 0));
    assert_eq!(stats.redelivered, 1);
    drop((rust_workers, submitter, ex, node));
    ns.assert_clean();
}

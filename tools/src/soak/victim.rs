//! The soak's victims: `shmex __soak-victim ROLE SEED ID`, run until the
//! soak SIGKILLs them.
//!
//! A victim joins the namespace named by `SHMEX_NAMESPACE` / `SHMEX_ROOT`
//! (set by the soak), opens the exchange of its pattern, prints `ready` and
//! then works as fast as it can, reporting on stdout (one line each, written
//! before the next step): `s TAG` after a submit returned `Ok`, `d TAG` after
//! a task was taken, `a TAG` after its ack returned `Ok`, `n TAG` after a
//! nack with requeue returned `Ok`. Any error the protocol does not allow
//! makes it exit with status 1 (the soak counts a victim that was not
//! killed as a failure). It exits when its stdin closes, so it never
//! outlives the soak.

use super::{tick, Rng, FANIN, PS, RR, STREAM_CHUNKS, STREAM_WINDOW, TASKS};
use shmex::{Node, RecvError, SendError, StreamError, Submit, TaskError};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How long a victim's blocking calls wait before looking again.
const SLICE: Duration = Duration::from_millis(20);

/// Runs the victim command with the arguments after it.
pub fn run(args: Vec<String>) -> ExitCode {
    let [role, seed, id] = args.as_slice() else {
        eprintln!("shmex {}: expects ROLE SEED ID", super::VICTIM_COMMAND);
        return ExitCode::from(2);
    };
    let (Ok(seed), Ok(id)) = (seed.parse::<u64>(), id.parse::<u64>()) else {
        eprintln!("shmex {}: SEED and ID are numbers", super::VICTIM_COMMAND);
        return ExitCode::from(2);
    };
    // Never outlive the soak: it holds our stdin open until it kills us.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(3);
    });
    let mut rng = Rng(seed);
    let result = match role.as_str() {
        "sub" => subscriber(&mut rng),
        "pub" => publisher(&mut rng),
        "client" => client(&mut rng, id),
        "server" => server(&mut rng),
        "producer" => producer(id),
        "submitter" => submitter(id),
        "worker" => worker(&mut rng),
        other => Err(format!("unknown role {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[victim {role} {id}] error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), String>;

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// One line on stdout, flushed before the victim goes on.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn node(name: &str) -> Result<Node, String> {
    Node::builder(name).create().map_err(|e| err("join", e))
}

/// Subscribes to everything and keeps the last 0–8 samples it received.
fn subscriber(rng: &mut Rng) -> Res {
    let node = node("v-sub")?;
    let ex = node.open_exchange(PS).map_err(|e| err("open", e))?;
    let sub = ex.subscriber("#", 7).map_err(|e| err("subscribe", e))?;
    let keep = rng.below(9) as usize;
    say(format_args!("ready"));
    let mut held = std::collections::VecDeque::new();
    loop {
        match sub.receive_timeout(SLICE) {
            Ok(s) => {
                if tick(s.payload()).is_none() {
                    return Err(format!("corrupt publication {:?}", s.payload()));
                }
                held.push_back(s);
                if held.len() > keep {
                    held.pop_front();
                }
            }
            Err(RecvError::Timeout) => {}
            Err(e) => return Err(err("receive", e)),
        }
    }
}

/// Keeps 0–2 loans unsent, then publishes as fast as it can.
fn publisher(rng: &mut Rng) -> Res {
    let node = node("v-pub")?;
    let ex = node.open_exchange(PS).map_err(|e| err("open", e))?;
    let publisher = ex.publisher().map_err(|e| err("publisher", e))?;
    let mut kept = Vec::new();
    for _ in 0..rng.below(3) {
        match publisher.loan(8) {
            Ok(l) => kept.push(l),
            Err(SendError::PoolExhausted { .. }) => {}
            Err(e) => return Err(err("loan", e)),
        }
    }
    say(format_args!("ready"));
    let mut seq = 0u64;
    loop {
        match publisher.send("victim.flood", &super::tick_bytes(seq)) {
            Ok(_) => seq += 1,
            Err(SendError::PoolExhausted { .. }) => std::thread::yield_now(),
            Err(e) => return Err(err("publish", e)),
        }
    }
}

/// Sends plain and stream requests one at a time; holds the response of
/// some for a while.
fn client(rng: &mut Rng, id: u64) -> Res {
    let node = node("v-client")?;
    let ex = node.open_exchange(RR).map_err(|e| err("open", e))?;
    let client = ex.client().map_err(|e| err("client", e))?;
    say(format_args!("ready"));
    let mut tag = id << 32;
    let mut held = Vec::new();
    loop {
        tag += 1;
        let stream = rng.below(3) == 0;
        let sent = if stream {
            client.request_stream(tag, &tag.to_le_bytes(), STREAM_WINDOW)
        } else {
            client.send(tag, &tag.to_le_bytes())
        };
        match sent {
            Ok(()) => {}
            Err(SendError::QueueFull | SendError::PoolExhausted { .. } | SendError::NoServer) => {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            Err(e) => return Err(err("request", e)),
        }
        loop {
            match client.receive_timeout(SLICE) {
                Ok(s) if s.tag() != tag => return Err(format!("response {} to {tag}", s.tag())),
                Ok(s) if s.is_stream_chunk() => {
                    if held.len() < 2 && rng.below(4) == 0 {
                        held.push(s);
                    }
                }
                Ok(_) => break,
                Err(RecvError::RequestFailed { tag: t, .. }) if t == tag => break,
                Err(RecvError::Timeout) => {}
                Err(e) => return Err(err("receive", e)),
            }
        }
        if held.len() == 2 {
            held.clear();
        }
    }
}

/// Echoes requests, answers stream requests with a stream; one server in
/// four sits on up to two requests.
fn server(rng: &mut Rng) -> Res {
    let node = node("v-server")?;
    let ex = node.open_exchange(RR).map_err(|e| err("open", e))?;
    let server = ex.server().map_err(|e| err("server", e))?;
    let sit = rng.below(4) == 0;
    say(format_args!("ready"));
    let mut held = Vec::new();
    loop {
        let req = match server.receive_timeout(SLICE) {
            Ok(req) => req,
            Err(RecvError::Timeout) => continue,
            Err(e) => return Err(err("receive", e)),
        };
        if sit && held.len() < 2 {
            held.push(req);
            continue;
        }
        if req.stream_window() == 0 {
            let echo = req.payload().to_vec();
            let _ = req.respond(&echo);
            continue;
        }
        let tag = req.tag();
        let mut stream = match req.respond_stream() {
            Ok(s) => s,
            Err(StreamError::ClientGone) => continue,
            Err(e) => return Err(err("respond_stream", e)),
        };
        for i in 0..STREAM_CHUNKS {
            match stream.send(&super::tick_bytes(tag ^ i)) {
                Ok(()) => {}
                Err(StreamError::ClientGone | StreamError::Cancelled) => break,
                Err(StreamError::Send(SendError::PoolExhausted { .. })) => break,
                Err(e) => return Err(err("stream send", e)),
            }
        }
        let _ = stream.end();
    }
}

/// Sends to the consumer as fast as it can.
fn producer(id: u64) -> Res {
    let node = node("v-producer")?;
    let ex = node.open_exchange(FANIN).map_err(|e| err("open", e))?;
    let producer = ex.producer().map_err(|e| err("producer", e))?;
    say(format_args!("ready"));
    let mut seq = 0u64;
    loop {
        match producer.send(id << 32 | seq, b"v") {
            Ok(()) => seq += 1,
            Err(SendError::QueueFull | SendError::PoolExhausted { .. }) => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => return Err(err("send", e)),
        }
    }
}

/// Submits tasks tagged `VICTIM_TASK | id << 24 | seq`, reporting each one
/// accepted.
fn submitter(id: u64) -> Res {
    let node = node("v-submitter")?;
    let ex = node.open_exchange(TASKS).map_err(|e| err("open", e))?;
    let submitter = ex.submitter().map_err(|e| err("submitter", e))?;
    say(format_args!("ready"));
    let mut seq = 0u64;
    loop {
        let tag = super::VICTIM_TASK | id << 24 | seq;
        match submitter.send(
            Submit::new().priority((seq % 2) as u8).tag(tag),
            &tag.to_le_bytes(),
        ) {
            Ok(()) => {
                say(format_args!("s {tag}"));
                seq += 1;
            }
            Err(SendError::QueueFull | SendError::PoolExhausted { .. }) => {
                std::thread::sleep(Duration::from_micros(500));
            }
            Err(e) => return Err(err("submit", e)),
        }
    }
}

/// Takes tasks; acks most of them after a short random pause, nacks some
/// with requeue, and sometimes just sits on one.
fn worker(rng: &mut Rng) -> Res {
    let node = node("v-worker")?;
    let ex = node.open_exchange(TASKS).map_err(|e| err("open", e))?;
    let worker = ex
        .worker(1 + rng.below(3) as u32)
        .map_err(|e| err("worker", e))?;
    say(format_args!("ready"));
    let mut held = Vec::new();
    loop {
        let d = match worker.receive_timeout(SLICE) {
            Ok(d) => d,
            Err(RecvError::Timeout) => continue,
            Err(RecvError::PrefetchLimit { .. }) => {
                // Sitting on tasks until the soak kills us.
                std::thread::sleep(SLICE);
                continue;
            }
            Err(e) => return Err(err("take", e)),
        };
        let tag = d.tag();
        say(format_args!("d {tag}"));
        if d.payload() != tag.to_le_bytes() {
            return Err(format!("task {tag} carries {:?}", d.payload()));
        }
        match rng.below(16) {
            0 => held.push(d),
            1 => match d.nack(true) {
                Ok(()) => say(format_args!("n {tag}")),
                Err(TaskError::NotHeld { .. }) => {}
                Err(e) => return Err(err("nack", e)),
            },
            _ => {
                std::thread::sleep(Duration::from_micros(rng.below(2_000)));
                match d.ack() {
                    Ok(()) => say(format_args!("a {tag}")),
                    Err(TaskError::NotHeld { .. }) => {}
                    Err(e) => return Err(err("ack", e)),
                }
            }
        }
    }
}

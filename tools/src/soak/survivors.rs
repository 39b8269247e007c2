//! The soak's survivors: threads of the soak process, one port each, that
//! keep every pattern's traffic running while victims die around them.
//!
//! Each survivor waits only with timeouts and checks how long each wait
//! took: a call that returns later than its timeout plus [`MARGIN`] counts as
//! *blocked*, and so does a request neither answered nor failed within
//! [`REQUEST_TIMEOUT`]. What the survivors send to each other is checked end
//! to end: every publication received or counted as a gap, every fan-in
//! message received in order, every request answered (with its own payload)
//! or failed.

use super::{tick, tick_bytes, Tasks, Who, STREAM_WINDOW};
use shmex::{Exchange, RecvError, SendError, SenderId, StreamError, Submit, TaskError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The timeout of the survivors' polling receives.
pub const SLICE: Duration = Duration::from_millis(50);
/// How long a survivor client waits for a response (or failure notice).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Lateness beyond a call's timeout that counts as blocked: generous, since
/// two busy cores can deschedule a thread for a while.
pub const MARGIN: Duration = Duration::from_secs(1);
/// Key of the survivor publisher.
const TICK_KEY: &str = "soak.tick";

/// What one survivor saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Operations that completed.
    pub ops: u64,
    /// Calls that returned past their timeout + [`MARGIN`], or requests
    /// neither answered nor failed in time.
    pub blocked: u64,
    /// Messages between survivors that went missing (sent with `Ok`,
    /// neither received nor counted as a gap/failure).
    pub lost: u64,
    /// Protocol violations (wrong payload, order, tag) and unexpected
    /// errors, with a description of the first.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    /// Counts the call as blocked when it took past `timeout` + [`MARGIN`].
    fn timed(&mut self, started: Instant, timeout: Duration) {
        if started.elapsed() > timeout + MARGIN {
            self.blocked += 1;
        }
    }

    pub fn add(&mut self, other: &Tally) {
        self.ops += other.ops;
        self.blocked += other.blocked;
        self.lost += other.lost;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

type Stop = Arc<AtomicBool>;

fn stopped(stop: &Stop) -> bool {
    stop.load(Ordering::Acquire)
}

/// Publishes ticks until `stop`; returns (tally, published).
pub fn publisher(ex: Exchange, stop: Stop) -> (Tally, u64) {
    let mut t = Tally::default();
    let publisher = match ex.publisher() {
        Ok(p) => p,
        Err(e) => {
            t.error(format!("publisher: {e}"));
            return (t, 0);
        }
    };
    let mut seq = 0u64;
    while !stopped(&stop) {
        let started = Instant::now();
        match publisher.send(TICK_KEY, &tick_bytes(seq)) {
            Ok(_) => {
                seq += 1;
                t.ops += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            // Victims may hold every chunk until they are reclaimed.
            Err(SendError::PoolExhausted { .. }) => std::thread::sleep(Duration::from_micros(500)),
            Err(e) => {
                t.error(format!("publish: {e}"));
                std::thread::sleep(SLICE);
            }
        }
        t.timed(started, Duration::ZERO);
    }
    (t, seq)
}

/// Receives the survivor publisher's ticks until `stop` and a quiet slice;
/// returns (tally, received, gaps).
pub fn subscriber(ex: Exchange, stop: Stop) -> (Tally, u64, u64) {
    let mut t = Tally::default();
    let sub = match ex.subscriber("soak.#", 1) {
        Ok(s) => s,
        Err(e) => {
            t.error(format!("subscribe: {e}"));
            return (t, 0, 0);
        }
    };
    let (mut next, mut received) = (0u64, 0u64);
    loop {
        let started = Instant::now();
        let r = sub.receive_timeout(SLICE);
        t.timed(started, SLICE);
        match r {
            Ok(s) => match tick(s.payload()) {
                Some(seq) if seq >= next && s.key() == Some(TICK_KEY) => {
                    next = seq + 1;
                    received += 1;
                    t.ops += 1;
                }
                other => t.error(format!("publication {other:?} after {next}")),
            },
            Err(RecvError::Timeout) if stopped(&stop) => break,
            Err(RecvError::Timeout) => {}
            Err(e) => {
                t.error(format!("receive: {e}"));
                std::thread::sleep(SLICE);
            }
        }
    }
    let gaps = sub.gaps();
    (t, received, gaps)
}

/// Echoes requests and answers stream requests with a stream, until `stop`.
pub fn server(ex: Exchange, stop: Stop) -> Tally {
    let mut t = Tally::default();
    let server = match ex.server() {
        Ok(s) => s,
        Err(e) => {
            t.error(format!("server: {e}"));
            return t;
        }
    };
    while !stopped(&stop) {
        let started = Instant::now();
        let r = server.receive_timeout(SLICE);
        t.timed(started, SLICE);
        let req = match r {
            Ok(req) => req,
            Err(RecvError::Timeout) => continue,
            Err(e) => {
                t.error(format!("server receive: {e}"));
                std::thread::sleep(SLICE);
                continue;
            }
        };
        t.ops += 1;
        if req.stream_window() == 0 {
            let echo = req.payload().to_vec();
            // The client may be dead, the pool may be empty: the client then
            // gets a failure notice.
            let _ = req.respond(&echo);
            continue;
        }
        let tag = req.tag();
        let Ok(mut stream) = req.respond_stream() else {
            continue;
        };
        let mut ended = true;
        for i in 0..super::STREAM_CHUNKS {
            let started = Instant::now();
            let r = match stream.loan(16) {
                Ok(mut loan) => {
                    loan.copy_from_slice(&tick_bytes(tag ^ i));
                    stream.send_loan_timeout(loan, REQUEST_TIMEOUT)
                }
                Err(e) => Err(StreamError::Send(e)),
            };
            t.timed(started, REQUEST_TIMEOUT);
            match r {
                Ok(()) => {}
                Err(StreamError::ClientGone | StreamError::Cancelled) => {
                    ended = false;
                    break;
                }
                Err(StreamError::Timeout) => {
                    t.blocked += 1;
                    ended = false;
                    break;
                }
                Err(e) => {
                    t.error(format!("stream {tag}: {e}"));
                    ended = false;
                    break;
                }
            }
        }
        if ended {
            let _ = stream.end();
        } else {
            stream.abort();
        }
    }
    t
}

/// Sends plain and (every third) stream requests one at a time until
/// `stop`; each must be answered with its own payload, or failed.
pub fn client(ex: Exchange, stop: Stop) -> Tally {
    let mut t = Tally::default();
    let client = match ex.client() {
        Ok(c) => c,
        Err(e) => {
            t.error(format!("client: {e}"));
            return t;
        }
    };
    let mut tag = 0u64;
    while !stopped(&stop) {
        tag += 1;
        let stream = tag.is_multiple_of(3);
        let sent = if stream {
            client.request_stream(tag, &tag.to_le_bytes(), STREAM_WINDOW)
        } else {
            client.send(tag, &tag.to_le_bytes())
        };
        match sent {
            Ok(()) => {}
            Err(SendError::QueueFull | SendError::PoolExhausted { .. } | SendError::NoServer) => {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            Err(e) => {
                t.error(format!("request {tag}: {e}"));
                std::thread::sleep(SLICE);
                continue;
            }
        }
        let mut chunk = 0u64;
        loop {
            let started = Instant::now();
            let r = client.receive_timeout(REQUEST_TIMEOUT);
            t.timed(started, REQUEST_TIMEOUT);
            match r {
                Ok(s) if s.tag() != tag => {
                    t.error(format!("response of tag {} to request {tag}", s.tag()));
                    break;
                }
                Ok(s) if s.is_stream_chunk() => {
                    if tick(s.payload()) != Some(tag ^ chunk) {
                        t.error(format!("stream {tag} chunk {chunk}: {:?}", s.payload()));
                    }
                    chunk += 1;
                }
                Ok(s) if s.is_stream_end() => {
                    if chunk != super::STREAM_CHUNKS {
                        t.error(format!("stream {tag} ended after {chunk} chunks"));
                    }
                    t.ops += 1;
                    break;
                }
                Ok(s) => {
                    if stream || s.payload() != tag.to_le_bytes() {
                        t.error(format!("response to {tag}: {:?}", s.payload()));
                    }
                    t.ops += 1;
                    break;
                }
                Err(RecvError::RequestFailed { tag: f, .. }) => {
                    if f != tag {
                        t.error(format!("failure notice for {f} while waiting for {tag}"));
                    }
                    t.ops += 1;
                    break;
                }
                Err(RecvError::Timeout) => {
                    // Neither answered nor failed in time.
                    t.blocked += 1;
                    t.lost += 1;
                    t.error(format!("request {tag} neither answered nor failed"));
                    client.cancel(tag);
                    break;
                }
                Err(e) => {
                    t.error(format!("receive {tag}: {e}"));
                    break;
                }
            }
        }
    }
    t
}

/// Sends `[seq]` tagged `seq` until `stop`; returns (tally, sent).
pub fn producer(ex: Exchange, stop: Stop, port: Arc<Mutex<Option<SenderId>>>) -> (Tally, u64) {
    let mut t = Tally::default();
    let producer = match ex.producer() {
        Ok(p) => {
            if let Ok(mut port) = port.lock() {
                *port = Some(p.id());
            }
            p
        }
        Err(e) => {
            t.error(format!("producer: {e}"));
            return (t, 0);
        }
    };
    let mut seq = 0u64;
    while !stopped(&stop) {
        let started = Instant::now();
        match producer.send(seq, b"s") {
            Ok(()) => {
                seq += 1;
                t.ops += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(SendError::QueueFull | SendError::PoolExhausted { .. }) => {
                std::thread::sleep(Duration::from_micros(500));
            }
            Err(e) => {
                t.error(format!("send: {e}"));
                std::thread::sleep(SLICE);
            }
        }
        t.timed(started, Duration::ZERO);
    }
    (t, seq)
}

/// Receives everything until `stop` and a quiet slice; checks the
/// survivor producer's messages (from `port`, once known) arrive in order.
/// Returns (tally, received from the survivor producer).
pub fn consumer(ex: Exchange, stop: Stop, port: Arc<Mutex<Option<SenderId>>>) -> (Tally, u64) {
    let mut t = Tally::default();
    let consumer = match ex.consumer() {
        Ok(c) => c,
        Err(e) => {
            t.error(format!("consumer: {e}"));
            return (t, 0);
        }
    };
    let mut next = 0u64;
    loop {
        let started = Instant::now();
        let r = consumer.receive_timeout(SLICE);
        t.timed(started, SLICE);
        match r {
            Ok(s) => {
                t.ops += 1;
                match s.payload() {
                    b"v" => {}
                    b"s" => {
                        let known = port.lock().ok().and_then(|p| *p);
                        if known.is_some() && known != s.sender() {
                            t.error(format!("survivor message from sender {:?}", s.sender()));
                        } else if s.tag() != next {
                            t.error(format!("survivor message {} after {next}", s.tag()));
                            next = s.tag() + 1;
                        } else {
                            next += 1;
                        }
                    }
                    other => t.error(format!("fan-in payload {other:?}")),
                }
            }
            Err(RecvError::Timeout) if stopped(&stop) => break,
            Err(RecvError::Timeout) => {}
            Err(e) => {
                t.error(format!("consume: {e}"));
                std::thread::sleep(SLICE);
            }
        }
    }
    (t, next)
}

/// Submits tasks tagged `seq` (victims' tags have [`super::VICTIM_TASK`]
/// set) until `stop`, recording each accepted one.
pub fn submitter(ex: Exchange, stop: Stop, tasks: Arc<Mutex<Tasks>>) -> Tally {
    let mut t = Tally::default();
    let submitter = match ex.submitter() {
        Ok(s) => s,
        Err(e) => {
            t.error(format!("submitter: {e}"));
            return t;
        }
    };
    let mut seq = 0u64;
    while !stopped(&stop) {
        let started = Instant::now();
        match submitter.send(
            Submit::new().priority((seq % 3) as u8).tag(seq),
            &seq.to_le_bytes(),
        ) {
            Ok(()) => {
                if let Ok(mut tasks) = tasks.lock() {
                    tasks.submitted(seq);
                }
                seq += 1;
                t.ops += 1;
                std::thread::sleep(Duration::from_micros(300));
            }
            Err(SendError::QueueFull | SendError::PoolExhausted { .. }) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => {
                t.error(format!("submit: {e}"));
                std::thread::sleep(SLICE);
            }
        }
        t.timed(started, Duration::ZERO);
    }
    t
}

/// Takes and acks tasks until `stop`, then drains: keeps going until the
/// exchange holds no queued or delivered task (or `drain_for` passed), then
/// takes every dead letter. Records each delivery, ack and dead letter.
pub fn worker(
    ex: Exchange,
    stop: Stop,
    tasks: Arc<Mutex<Tasks>>,
    reclaim: impl Fn(),
    drain_for: Duration,
) -> Tally {
    let mut t = Tally::default();
    let worker = match ex.worker(4) {
        Ok(w) => w,
        Err(e) => {
            t.error(format!("worker: {e}"));
            return t;
        }
    };
    let record = |f: &mut dyn FnMut(&mut Tasks)| {
        if let Ok(mut tasks) = tasks.lock() {
            f(&mut tasks);
        }
    };
    let mut drain_deadline = None;
    loop {
        if stopped(&stop) && drain_deadline.is_none() {
            drain_deadline = Some(Instant::now() + drain_for);
        }
        let started = Instant::now();
        let r = worker.receive_timeout(SLICE);
        t.timed(started, SLICE);
        match r {
            Ok(d) => {
                let tag = d.tag();
                record(&mut |k| k.event(tag, Who::Survivor, 'd'));
                if d.payload() != tag.to_le_bytes() {
                    t.error(format!("task {tag} carries {:?}", d.payload()));
                }
                match d.ack() {
                    Ok(()) => {
                        record(&mut |k| k.event(tag, Who::Survivor, 'a'));
                        t.ops += 1;
                    }
                    // Taken back past the ack timeout: it will come again.
                    Err(TaskError::NotHeld { .. }) => {}
                    Err(e) => t.error(format!("ack {tag}: {e}")),
                }
            }
            Err(RecvError::Timeout) => {
                if let Some(deadline) = drain_deadline {
                    reclaim();
                    let idle = ex
                        .task_stats()
                        .is_some_and(|s| s.queued == 0 && s.in_flight == 0);
                    if idle || Instant::now() >= deadline {
                        break;
                    }
                }
            }
            Err(e) => {
                t.error(format!("take: {e}"));
                std::thread::sleep(SLICE);
            }
        }
    }
    loop {
        match worker.try_receive_dead_letter() {
            Ok(Some(dl)) => {
                let (tag, deliveries) = (dl.tag(), dl.deliveries());
                record(&mut |k| k.dead_letter(tag, deliveries));
            }
            Ok(None) => break,
            Err(e) => {
                t.error(format!("dead letter: {e}"));
                break;
            }
        }
    }
    t
}

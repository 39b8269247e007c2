//! The demo's child processes: `shmex __child SPIN_US TIMEOUT_MS ROLE ...`.
//!
//! Each child joins the namespace named by `SHMEX_NAMESPACE` / `SHMEX_ROOT`
//! (set by the parent) as its own node, opens the exchanges the parent
//! created, plays one [`Role`] and prints every step as `[role] ...`. A child
//! checks what it receives against what the protocol promises (tags, payloads,
//! routing, order) and exits with status 1 on the first discrepancy, error or
//! wait longer than its timeout.
//!
//! Latency loops keep one message in flight and time each round trip; the
//! receivers' nodes spin for `--spin-us` before sleeping ("spin mode"), so a
//! round trip measures the data path, not futex wake-ups. A loop stops early
//! after a time budget so a loaded machine slows the demo down only so much.

use super::stats::{format_ns, format_rate, Latencies};
use super::tasks::{POISON, PREFETCH, SHOWN_ACKS, WORK};
use super::{
    ChildArgs, Role, CONTROL, FANIN_MESSAGES, GO, LOGS, PING, PONG, PRODUCERS, READINGS, RECEIPTS,
    RPC, SENSORS, SUBSCRIPTIONS, TASKS,
};
use shmex::{
    Delivery, Exchange, Node, Producer, RecvError, SendError, SenderId, TaskError, WaitError,
    WaitSet,
};
use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub(super) type Res = Result<(), Box<dyn Error>>;

/// Requests with tags up to this one are printed; later ones are measured.
const SHOWN: u64 = 3;
/// Round trips run before measuring, to warm caches and branch predictors.
const WARMUP: u64 = 1_000;
/// Longest time a latency loop measures (less when the child's timeout is
/// short, see [`Ctx::budget`]).
const BUDGET: Duration = Duration::from_secs(3);
/// Tag of the last request, answered by the server before it exits.
pub(super) const GOODBYE: u64 = u64::MAX;
/// Tag of a producer's last message.
const DONE: u64 = u64::MAX;
/// Payload of the last ping.
const BYE: &[u8] = b"bye";

/// Runs the child command with the arguments after it.
pub fn run(args: Vec<String>) -> ExitCode {
    let args = match ChildArgs::parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shmex {}: {e}", super::CHILD_COMMAND);
            return ExitCode::from(2);
        }
    };
    let ctx = Ctx {
        label: args.role.label(),
        args,
    };
    let result = match ctx.args.role.clone() {
        Role::Server => ctx.server(),
        Role::Client { requests } => ctx.client(requests.into()),
        Role::Subscriber { index, echo } => ctx.subscriber(index, echo),
        Role::Publisher { round_trips } => ctx.publisher(round_trips.into()),
        Role::Consumer => ctx.consumer(),
        Role::Producer { index } => ctx.producer(index),
        Role::Worker { index: 1 } => ctx.doomed_worker(),
        Role::Worker { index } => ctx.worker(index),
        Role::StreamServer => ctx.stream_server(),
        Role::StreamClient { mib } => ctx.stream_client(mib),
        Role::DialogueServer => ctx.dialogue_server(),
        Role::DialogueClient => ctx.dialogue_client(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[{}] error: {e}", ctx.label);
            ExitCode::FAILURE
        }
    }
}

/// A child's identity and settings. Its lines are printed with `say!`
/// (prefixed with the role's label).
pub(super) struct Ctx {
    pub(super) label: String,
    pub(super) args: ChildArgs,
}

/// The payload as text, for printing.
pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(super) fn fail(msg: String) -> Res {
    Err(msg.into())
}

/// Says what was being done when an error happened.
pub(super) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Box<dyn Error>>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Box<dyn Error>> {
        self.map_err(|e| format!("{}: {e}", what()).into())
    }
}

impl Ctx {
    /// Joins the namespace as node `name`.
    pub(super) fn node(&self, name: &str) -> Result<Node, Box<dyn Error>> {
        Ok(Node::builder(name).spin(self.args.spin).create()?)
    }

    pub(super) fn timeout(&self) -> Duration {
        self.args.timeout
    }

    /// Time a latency loop may take: [`BUDGET`], or a third of the timeout.
    fn budget(&self) -> Duration {
        BUDGET.min(self.args.timeout / 3)
    }

    /// Prints the figure line the parent collects for its summary.
    pub(super) fn result(&self, figure: String) {
        say!(self, "{}{figure}", super::RESULT_PREFIX);
    }

    /// Prints the figures as one JSON object, for the parent's `--json`
    /// (the relay keeps the line rather than printing it).
    pub(super) fn json(&self, object: &str) {
        say!(self, "{}{object}", super::JSON_PREFIX);
    }

    /// Prints a latency figure.
    fn latency_result(&self, what: &str, unit: &str, lat: Latencies) -> Res {
        let Some(s) = lat.summary() else {
            return fail("no round trip measured".into());
        };
        self.result(format!(
            "{what}: round trip median {} (p99 {}, min {}) over {} {unit}, {}",
            format_ns(s.median),
            format_ns(s.p99),
            format_ns(s.min),
            s.count,
            if self.args.spin.is_zero() {
                "sleep mode (no spinning)"
            } else {
                "spin mode"
            }
        ));
        Ok(())
    }

    fn server(&self) -> Res {
        let node = self.node("server")?;
        let server = node.open_exchange(RPC)?.server()?;
        say!(self, "serving exchange {RPC}");
        let mut answered = 0u64;
        loop {
            let request = server
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for request {}", answered + 1))?;
            let tag = request.tag();
            if tag == GOODBYE {
                say!(self, "got goodbye: {}", text(&request));
                request.respond(b"bye")?;
                break;
            }
            if tag <= SHOWN {
                let question = text(&request);
                say!(self, "got request {tag}: {question}");
                let answer = format!("pong {tag} ({} bytes received)", question.len());
                say!(self, "sending response {tag}: {answer}");
                request.respond(answer.as_bytes())?;
            } else {
                // Echo, written in place in a loaned chunk (zero-copy send).
                let mut loan = server.loan(request.len())?;
                loan.copy_from_slice(&request);
                request.respond_loan(loan)?;
            }
            answered += 1;
        }
        say!(self, "answered {answered} requests");
        Ok(())
    }

    fn client(&self, requests: u64) -> Res {
        let node = self.node("client")?;
        let client = node.open_exchange(RPC)?.client()?;
        for (tag, question) in (1..=SHOWN).zip(["ping", "what time is it?", "still there?"]) {
            say!(self, "sent request {tag}: {question}");
            client.send(tag, question.as_bytes())?;
            let answer = client
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for response {tag}"))?;
            say!(self, "got response {}: {}", answer.tag(), text(&answer));
            if answer.tag() != tag {
                return fail(format!("response tag {} to request {tag}", answer.tag()));
            }
        }
        say!(self, "measuring {requests} round trips...");
        let mut lat = Latencies::with_capacity(requests as usize);
        for i in 0..WARMUP + requests {
            let tag = SHOWN + 1 + i;
            let start = Instant::now();
            let mut loan = client.loan(8)?;
            loan.copy_from_slice(&tag.to_le_bytes());
            client.send_loan(tag, loan)?;
            let answer = client
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for response {tag}"))?;
            let elapsed = start.elapsed();
            if answer.tag() != tag || answer[..] != tag.to_le_bytes() {
                return fail(format!("request {tag} answered by {:?}", answer));
            }
            if i >= WARMUP {
                lat.push(elapsed);
                if lat.over_budget(self.budget()) {
                    say!(self, "time budget reached, stopping early");
                    break;
                }
            }
        }
        client.send(GOODBYE, b"goodbye")?;
        let bye = client
            .receive_timeout(self.timeout())
            .context(|| "waiting for the answer to goodbye".into())?;
        say!(self, "server said {}", text(&bye));
        self.latency_result("request-response", "requests", lat)
    }

    fn subscriber(&self, index: usize, echo: bool) -> Res {
        let pattern = SUBSCRIPTIONS[index];
        let node = self.node(&format!("sub-{index}"))?;
        let echo_ports = if echo {
            let pings = node.open_exchange(PING)?.subscriber("ping", 0)?;
            let pongs = node.open_exchange(PONG)?.publisher()?;
            Some((pings, pongs))
        } else {
            None
        };
        let sub = node
            .open_exchange(SENSORS)?
            .subscriber(pattern, index as u64)?;
        say!(self, "subscribed to {pattern} on {SENSORS}");
        let expected: Vec<_> = READINGS.iter().filter(|r| r.2[index]).collect();
        for (key, value, _) in &expected {
            let sample = sub
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for {key}"))?;
            let got_key = sample.key().unwrap_or("");
            let payload = text(&sample);
            say!(self, "got {got_key}: {payload}");
            if got_key != *key || payload != *value || sample.tag() != index as u64 {
                return fail(format!("expected {key}: {value} with tag {index}"));
            }
        }
        say!(
            self,
            "received all {} readings {pattern} matches, in order",
            expected.len()
        );
        let Some((pings, pongs)) = echo_ports else {
            return Ok(());
        };
        say!(self, "echoing {PING} back on {PONG}");
        let mut echoed = 0u64;
        loop {
            let ping = pings
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for ping {}", echoed + 1))?;
            let last = ping[..] == *BYE;
            let mut loan = pongs.loan(ping.len())?;
            loan.copy_from_slice(&ping);
            drop(ping);
            let sent = pongs.send_loan("pong", loan)?;
            if sent.delivered != 1 {
                return fail(format!("pong reached {} subscribers", sent.delivered));
            }
            if last {
                break;
            }
            echoed += 1;
        }
        say!(self, "echoed {echoed} pings");
        Ok(())
    }

    fn publisher(&self, round_trips: u64) -> Res {
        let node = self.node("publisher")?;
        let publisher = node.open_exchange(SENSORS)?.publisher()?;
        for (key, value, matches) in READINGS {
            let sent = publisher.send(key, value.as_bytes())?;
            let want = matches.iter().filter(|&&m| m).count() as u32;
            let subscribers = match sent.delivered {
                1 => "subscriber",
                _ => "subscribers",
            };
            say!(
                self,
                "published {key}: {value} -> {} {subscribers}",
                sent.delivered
            );
            if sent.delivered != want || sent.missed != 0 {
                return fail(format!(
                    "{key} should reach {want} subscribers, reached {} (missed {})",
                    sent.delivered, sent.missed
                ));
            }
        }
        let pings = node.open_exchange(PING)?.publisher()?;
        let pongs = node.open_exchange(PONG)?.subscriber("pong", 0)?;
        say!(
            self,
            "measuring {round_trips} ping-pong round trips over {PING} and {PONG}..."
        );
        let mut lat = Latencies::with_capacity(round_trips as usize);
        for i in 0..WARMUP + round_trips {
            let start = Instant::now();
            let mut loan = pings.loan(8)?;
            loan.copy_from_slice(&i.to_le_bytes());
            let sent = pings.send_loan("ping", loan)?;
            if sent.delivered != 1 {
                return fail(format!("ping reached {} subscribers", sent.delivered));
            }
            let pong = pongs
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for pong {i}"))?;
            let elapsed = start.elapsed();
            if pong[..] != i.to_le_bytes() || pong.key() != Some("pong") {
                return fail(format!("ping {i} answered by {pong:?}"));
            }
            if i >= WARMUP {
                lat.push(elapsed);
                if lat.over_budget(self.budget()) {
                    say!(self, "time budget reached, stopping early");
                    break;
                }
            }
        }
        pings.send("ping", BYE)?;
        let bye = pongs
            .receive_timeout(self.timeout())
            .context(|| "waiting for the last pong".into())?;
        say!(self, "echo said {}", text(&bye));
        self.latency_result("publish-subscribe", "ping-pongs", lat)
    }

    fn consumer(&self) -> Res {
        /// What the consumer knows of one producer.
        struct Stream {
            name: String,
            next: u64,
            done: bool,
        }
        let node = self.node("consumer")?;
        let consumer = node.open_exchange(LOGS)?.consumer()?;
        say!(self, "consuming {LOGS}");
        let mut streams: BTreeMap<SenderId, Stream> = BTreeMap::new();
        let mut done = 0;
        let mut first = None;
        while done < PRODUCERS {
            let sample = consumer
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for messages ({done} producers done)"))?;
            first.get_or_insert_with(Instant::now);
            let name = text(&sample);
            let Some(port) = sample.sender() else {
                return fail(format!("message without a sender: {sample:?}"));
            };
            let s = streams.entry(port).or_insert_with(|| Stream {
                name: name.clone(),
                next: 0,
                done: false,
            });
            if name != s.name || s.done {
                return fail(format!("sender {port}: unexpected message {sample:?}"));
            }
            if sample.tag() == DONE {
                say!(self, "{name} is done");
                s.done = true;
                done += 1;
                continue;
            }
            if sample.tag() != s.next {
                return fail(format!(
                    "out of order: message {} from {name}, expected {}",
                    sample.tag(),
                    s.next
                ));
            }
            if s.next < 2 {
                say!(self, "got message {} from {name} (sender {port})", s.next);
            }
            s.next += 1;
        }
        let elapsed = first.map_or(Duration::ZERO, |t| t.elapsed());
        let mut total = 0;
        let mut by_name: Vec<&Stream> = streams.values().collect();
        by_name.sort_by(|a, b| a.name.cmp(&b.name));
        for s in by_name {
            say!(self, "{}: {} messages, all in order", s.name, s.next);
            if s.next != FANIN_MESSAGES {
                return fail(format!(
                    "{} sent {} messages, expected {FANIN_MESSAGES}",
                    s.name, s.next
                ));
            }
            total += s.next;
        }
        let secs = elapsed.as_secs_f64().max(1e-9);
        self.result(format!(
            "fan-in: {total} messages from {} producers in {}: {} msg/s ({} per message), per-producer order checked",
            streams.len(),
            format_ns(elapsed.as_nanos() as u64),
            format_rate(total as f64 / secs),
            format_ns((elapsed.as_nanos() / u128::from(total.max(1))) as u64),
        ));
        Ok(())
    }

    fn producer(&self, index: u32) -> Res {
        let name = format!("producer-{index}");
        let node = self.node(&name)?;
        let go = node.open_exchange(GO)?.subscriber("go", 0)?;
        let logs: Exchange = node.open_exchange(LOGS)?;
        let producer = logs.producer()?;
        say!(self, "attached as sender {}, waiting for go", producer.id());
        go.receive_timeout(self.timeout())
            .context(|| "waiting for go".into())?;
        let deadline = Instant::now() + self.timeout();
        let mut retries = 0u64;
        for seq in 0..FANIN_MESSAGES {
            send(&producer, seq, name.as_bytes(), deadline, &mut retries)?;
            if seq < 2 {
                say!(self, "sent message {seq}");
            }
        }
        send(&producer, DONE, name.as_bytes(), deadline, &mut retries)?;
        say!(
            self,
            "sent {FANIN_MESSAGES} messages and done ({retries} retries on a full queue)"
        );
        Ok(())
    }
}

/// What one worker did, for its closing line.
#[derive(Default)]
struct WorkerTally {
    acked: u64,
    redelivered: u64,
    nacked: u64,
    dead_lettered: u64,
    taken_back: u64,
    receipt_retries: u64,
}

impl Ctx {
    /// Worker 1: takes one task and "crashes" before acking it: it waits
    /// for the parent's SIGKILL. Once it has said which task it holds, it
    /// attaches a subscriber on [`CONTROL`]: the parent's cue that it may
    /// kill it (the line is in the pipe by then).
    fn doomed_worker(&self) -> Res {
        let node = self.node("worker-1")?;
        let tasks = node.open_exchange(TASKS)?;
        let worker = tasks.worker(PREFETCH)?;
        say!(self, "attached (prefetch limit {PREFETCH})");
        let task = worker
            .receive_timeout(self.timeout())
            .context(|| "waiting for a task".into())?;
        say!(
            self,
            "took task {} ({}); crashing before acking it",
            task.tag(),
            text(&task)
        );
        let _cue = node.open_exchange(CONTROL)?.subscriber("w1.*", 1)?;
        std::thread::sleep(self.timeout());
        fail("was meant to be killed by now".into())
    }

    /// Workers 2 and 3: wait for `w<index>.go` on [`CONTROL`], then take
    /// tasks up to the prefetch limit, "work" on each ([`WORK`]) and ack it,
    /// sending a receipt (the task's tag) to the parent on [`RECEIPTS`],
    /// until `w<index>.stop`. Worker 3 nacks its first task with requeue; a
    /// [`POISON`] task is nacked without requeue (a dead letter).
    fn worker(&self, index: u32) -> Res {
        let node = self.node(&format!("worker-{index}"))?;
        let tasks = node.open_exchange(TASKS)?;
        let worker = tasks.worker(PREFETCH)?;
        let control = node
            .open_exchange(CONTROL)?
            .subscriber(&format!("w{index}.*"), u64::from(index))?;
        let receipts_ex = node.open_exchange(RECEIPTS)?;
        let receipts = receipts_ex.producer()?;
        say!(self, "attached (prefetch limit {PREFETCH}), waiting for go");
        let go = control
            .receive_timeout(self.timeout())
            .context(|| "waiting for go".into())?;
        if go.key() != Some(&format!("w{index}.go")) {
            return fail(format!("expected go, got {go:?}"));
        }
        drop(go);
        let mut set = WaitSet::new();
        set.add(&worker)?;
        set.add(&control)?;
        let mut tally = WorkerTally::default();
        let mut nack_first = index == 3;
        let mut showed_limit = false;
        let mut held: Vec<Delivery<'_>> = Vec::new();
        let mut idle_since = Instant::now();
        loop {
            if let Some(msg) = control.try_receive()? {
                if msg.key() == Some(&format!("w{index}.stop")) {
                    break;
                }
                return fail(format!("unexpected control message {msg:?}"));
            }
            // Take what is ready, up to the prefetch limit.
            while let Some(d) = worker.try_receive()? {
                held.push(d);
            }
            if held.is_empty() {
                if idle_since.elapsed() >= self.timeout() {
                    return fail("no task and no stop for too long".into());
                }
                // Wake on a task or a control message; the short slice
                // lets `try_receive` sweep deliveries past their ack timeout.
                match set.wait(Some(Duration::from_millis(50))) {
                    Ok(_) | Err(WaitError::Timeout) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if !showed_limit && held.len() as u32 >= PREFETCH {
                showed_limit = true;
                match worker.receive_timeout(Duration::ZERO) {
                    Err(RecvError::PrefetchLimit { limit }) => say!(
                        self,
                        "holding {} unacked tasks: at the prefetch limit, receive() refuses (limit {limit})",
                        held.len()
                    ),
                    Ok(d) => {
                        return fail(format!(
                            "took task {} beyond the prefetch limit ({} held)",
                            d.tag(),
                            held.len()
                        ))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let deadline = Instant::now() + self.timeout();
            for d in held.drain(..) {
                self.work(index, d, &receipts, deadline, &mut nack_first, &mut tally)?;
            }
            idle_since = Instant::now();
        }
        say!(
            self,
            "stopping: acked {} tasks ({} of them redelivered), nacked {} with requeue, {} to the dead letters, {} taken back after the ack timeout",
            tally.acked,
            tally.redelivered,
            tally.nacked,
            tally.dead_lettered,
            tally.taken_back
        );
        if tally.receipt_retries > 0 {
            say!(
                self,
                "{} receipt retries on a full queue",
                tally.receipt_retries
            );
        }
        Ok(())
    }

    /// Handles one delivery: nack (poison, or worker 3's first), or work and
    /// ack, then send its receipt. A delivery whose ack timeout passed
    /// meanwhile is refused ([`TaskError::NotHeld`]): it will be redelivered,
    /// so it is neither counted nor receipted here.
    fn work(
        &self,
        index: u32,
        d: Delivery<'_>,
        receipts: &Producer,
        deadline: Instant,
        nack_first: &mut bool,
        tally: &mut WorkerTally,
    ) -> Res {
        let (tag, what, deliveries) = (d.tag(), text(&d), d.deliveries());
        let again = if d.redelivered() {
            format!(", redelivered: delivery {deliveries}")
        } else {
            String::new()
        };
        let outcome = if d[..] == *POISON {
            let r = d.nack(false);
            if r.is_ok() {
                tally.dead_lettered += 1;
                say!(
                    self,
                    "task {tag} ({what}) is poison: nacked without requeue -> dead letter"
                );
            }
            r
        } else if *nack_first {
            *nack_first = false;
            let r = d.nack(true);
            if r.is_ok() {
                tally.nacked += 1;
                say!(
                    self,
                    "nacked task {tag} ({what}{again}) with requeue: giving it back"
                );
            }
            r
        } else {
            std::thread::sleep(WORK);
            let r = d.ack();
            if r.is_ok() {
                tally.acked += 1;
                if !again.is_empty() {
                    tally.redelivered += 1;
                }
                if tally.acked <= SHOWN_ACKS || !again.is_empty() {
                    say!(self, "acked task {tag} ({what}{again})");
                }
                send(
                    receipts,
                    tag,
                    &index.to_le_bytes(),
                    deadline,
                    &mut tally.receipt_retries,
                )?;
            }
            r
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(TaskError::NotHeld { task }) => {
                tally.taken_back += 1;
                say!(
                    self,
                    "task {tag} ({task}): its ack timeout passed, taken back for redelivery"
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Sends, retrying while the consumer's queue (or the pool) is full: fan-in
/// reports back-pressure to the producer instead of dropping. The retries
/// back off from spinning to yielding to short sleeps, so that producers
/// outnumbering the CPUs leave the consumer time to drain its queue.
fn send(
    producer: &Producer,
    tag: u64,
    payload: &[u8],
    deadline: Instant,
    retries: &mut u64,
) -> Res {
    let mut attempt = 0u32;
    loop {
        match producer.send(tag, payload) {
            Ok(()) => return Ok(()),
            Err(SendError::QueueFull | SendError::PoolExhausted { .. }) => {
                *retries += 1;
                attempt += 1;
                if Instant::now() >= deadline {
                    return fail(format!("consumer queue still full at message {tag}"));
                }
                match attempt {
                    0..=15 => std::hint::spin_loop(),
                    16..=31 => std::thread::yield_now(),
                    _ => std::thread::sleep(Duration::from_micros(50)),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

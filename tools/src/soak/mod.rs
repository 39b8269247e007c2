//! `shmex soak`: the kill soak of issue 12 §6.
//!
//! The soak process creates one exchange per pattern family in a namespace
//! of its own (publish-subscribe, request-response with chunked response
//! streams, fan-in, task distribution) and runs survivors on each
//! ([`survivors`]: threads of this process, one port each). Three spawning
//! threads start victims ([`victim`]: this binary re-executed with the
//! hidden `__soak-victim` command) of every role — subscriber, publisher,
//! client, server, producer, submitter, worker — and SIGKILL each at a
//! random moment: one in eight while it starts up, the others 0–40 ms after
//! it reported ready, while traffic runs. `--kills N` victims die in all.
//!
//! Then the survivors stop, the task worker drains the task exchange, a
//! reclaim pass runs, and the soak reports:
//!
//! - **chunks leaked**: `chunks_total - chunks_free` summed over the
//!   exchanges ([`shmex::list_exchanges`]) once nothing is in flight;
//! - **acked tasks lost**: tasks whose `send` returned `Ok` that were
//!   neither acked (an `ack` that returned `Ok`) nor dead-lettered by the
//!   end, after the drain. A victim killed between its `ack` returning `Ok`
//!   and its report of it leaves a task *in doubt* (its last record is that
//!   victim taking it); in-doubt tasks are explained by acks the exchange
//!   counted ([`shmex::TaskStats::acked`]) that nobody reported, and only the
//!   rest count as lost. Tasks acked twice (two `ack`s returned `Ok`: an ack
//!   that did not stick) are reported and fail the soak too;
//! - **tasks delivered to no one**: submitted tasks no worker ever took
//!   (nor reached the dead letters after a delivery);
//! - **survivors blocked**: survivor calls that returned later than their
//!   timeout plus a second, requests neither answered nor failed within
//!   5 s, and survivors still running 60 s after they were told to stop.
//!
//! Besides: messages between survivors lost (pub-sub, fan-in, rpc), protocol
//! errors the survivors saw, victims that exited before they were killed,
//! and files left in the namespace's folder. Any non-zero figure makes the
//! exit status 1.

mod survivors;
pub mod victim;

use crate::args::{Args, NamespaceArgs, UsageError};
use crate::json::Json;
use shmex::{Limits, Namespace, Node, Pattern};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use survivors::Tally;

/// The hidden command a victim runs.
pub const VICTIM_COMMAND: &str = "__soak-victim";

pub(crate) const PS: &str = "soak-ps";
pub(crate) const RR: &str = "soak-rr";
pub(crate) const FANIN: &str = "soak-fanin";
pub(crate) const TASKS: &str = "soak-tasks";
/// Window of every stream request.
pub(crate) const STREAM_WINDOW: u32 = 4;
/// Chunks of every chunked response.
pub(crate) const STREAM_CHUNKS: u64 = 8;
/// Bit set in the tags of tasks victims submit.
pub(crate) const VICTIM_TASK: u64 = 1 << 63;
/// Victims alive at a time (one per spawning thread).
const CONCURRENT: u64 = 3;
/// How long the task worker drains at most.
const DRAIN: Duration = Duration::from_secs(30);
/// How long survivors may take to stop before the soak gives up on them.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// `shmex soak --help`.
pub const HELP: &str = "\
shmex soak: SIGKILL peers of every pattern at random moments while traffic
runs, then check nothing leaked, was lost or blocked

Usage:
  shmex soak [--kills N] [--seed S] [--json] [--namespace NS] [--root DIR]

Victims (this binary re-executed) play subscriber, publisher, client, server
(plain and chunked responses), fan-in producer, task submitter and task
worker, and are killed one after another, three alive at a time, while the
soak's own survivors keep every exchange busy. Afterwards the task exchange
is drained, a reclaim pass runs, and the figures are printed: chunks leaked,
acked tasks lost, tasks delivered to no one, survivors blocked past their
timeout (and messages lost between survivors, survivor errors, victims that
died on their own, files left behind). Exit status 1 when any is non-zero.

Options:
  --kills N        victims to kill (default 1000)
  --seed S         seed of the random choices (default: from the clock;
                   printed, for a replay of the same choices)
  --json           print the figures as one JSON object on stdout
  --namespace NS   namespace to use (default: soak-PID, which must be empty)
  --root DIR       folder of the segment files (default: $SHMEX_ROOT, else /dev/shm)
";

struct Options {
    namespace: Namespace,
    kills: u64,
    seed: u64,
    json: bool,
}

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut ns = NamespaceArgs::default();
    let (mut kills, mut seed, mut json) = (1000, None, false);
    while let Some(opt) = args.next_opt()? {
        if ns.accept(&mut args, &opt)? {
            continue;
        }
        match opt.name.as_str() {
            "--kills" => kills = args.number(&opt, 1, 10_000_000)?,
            "--seed" => seed = Some(args.number(&opt, 0, u64::MAX)?),
            "--json" => {
                opt.flag()?;
                json = true;
            }
            "--help" | "-h" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    ns.name = Some(
        ns.name
            .unwrap_or_else(|| format!("soak-{}", std::process::id())),
    );
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    Ok(Some(Options {
        namespace: ns.resolve()?,
        kills,
        seed,
        json,
    }))
}

/// splitmix64: small, good enough to pick roles and delays.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A tick payload: `seq`, `!seq`.
pub(crate) fn tick_bytes(seq: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b[8..].copy_from_slice(&(!seq).to_le_bytes());
    b
}

/// The `seq` of a well-formed tick payload.
pub(crate) fn tick(payload: &[u8]) -> Option<u64> {
    let a = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let b = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    (payload.len() == 16 && b == !a).then_some(a)
}

/// Who recorded a task event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    Survivor,
    Victim(u64),
}

/// Everything known about the tasks, from the survivors and the victims'
/// reports.
#[derive(Default)]
pub(crate) struct Tasks {
    /// Tags whose submit returned `Ok` (and, for victims, was reported).
    submitted: HashSet<u64>,
    /// Per tag, in the order recorded: `d` taken, `a` acked, `n` nacked.
    events: HashMap<u64, Vec<(Who, char)>>,
    /// Dead letters drained at the end: tag, deliveries.
    dead: HashMap<u64, u32>,
}

impl Tasks {
    pub(crate) fn submitted(&mut self, tag: u64) {
        self.submitted.insert(tag);
    }

    pub(crate) fn event(&mut self, tag: u64, who: Who, kind: char) {
        self.events.entry(tag).or_default().push((who, kind));
    }

    pub(crate) fn dead_letter(&mut self, tag: u64, deliveries: u32) {
        self.dead.insert(tag, deliveries);
    }
}

/// The task figures, computed at the end.
#[derive(Debug, Default)]
struct TaskFigures {
    submitted: u64,
    acked: u64,
    dead_lettered: u64,
    lost: u64,
    in_doubt: u64,
    unreported_acks: u64,
    acked_twice: u64,
    delivered_to_no_one: u64,
    redelivered: u64,
    left_after_drain: u64,
    lost_examples: Vec<u64>,
}

impl Tasks {
    fn figures(&self, exchange_acked: u64, left_after_drain: u64) -> TaskFigures {
        let mut f = TaskFigures {
            submitted: self.submitted.len() as u64,
            left_after_drain,
            ..TaskFigures::default()
        };
        let mut reported_acks = 0u64;
        for events in self.events.values() {
            let acks = events.iter().filter(|e| e.1 == 'a').count() as u64;
            reported_acks += acks;
            if acks > 1 {
                f.acked_twice += 1;
            }
            if events.iter().filter(|e| e.1 == 'd').count() > 1 {
                f.redelivered += 1;
            }
        }
        f.unreported_acks = exchange_acked.saturating_sub(reported_acks);
        let mut definitely_lost = 0u64;
        for &tag in &self.submitted {
            let events = self.events.get(&tag).map_or(&[][..], Vec::as_slice);
            let acked = events.iter().any(|e| e.1 == 'a');
            let dead = self.dead.get(&tag);
            if acked {
                f.acked += 1;
            }
            if dead.is_some() {
                f.dead_lettered += 1;
            }
            let delivered = events.iter().any(|e| e.1 == 'd') || dead.is_some_and(|&d| d > 0);
            if !delivered {
                f.delivered_to_no_one += 1;
            }
            if acked || dead.is_some() {
                continue;
            }
            match events.last() {
                Some((Who::Victim(_), 'd')) => f.in_doubt += 1,
                _ => {
                    definitely_lost += 1;
                    if f.lost_examples.len() < 5 {
                        f.lost_examples.push(tag);
                    }
                }
            }
        }
        f.lost = definitely_lost + f.in_doubt.saturating_sub(f.unreported_acks);
        f
    }
}

/// The roles of the victims, with their pattern.
const ROLES: [(&str, &str); 7] = [
    ("sub", "publish-subscribe"),
    ("pub", "publish-subscribe"),
    ("client", "request-response"),
    ("server", "request-response"),
    ("producer", "fan-in"),
    ("submitter", "tasks"),
    ("worker", "tasks"),
];

/// What one spawning thread did.
#[derive(Default)]
struct Spawned {
    by_role: [u64; ROLES.len()],
    before_ready: u64,
    failures: Vec<String>,
}

/// Starts and kills `count` victims one after another.
fn spawn_and_kill(
    ns: &Namespace,
    seed: u64,
    first_id: u64,
    count: u64,
    tasks: &Arc<Mutex<Tasks>>,
) -> Spawned {
    let mut rng = Rng(seed);
    let mut out = Spawned::default();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            out.failures.push(format!("cannot find this binary: {e}"));
            return out;
        }
    };
    for n in 0..count {
        let id = first_id + n;
        let r = rng.below(ROLES.len() as u64) as usize;
        let role = ROLES[r].0;
        out.by_role[r] += 1;
        let spawned = Command::new(&exe)
            .args([
                VICTIM_COMMAND,
                role,
                &rng.next().to_string(),
                &id.to_string(),
            ])
            .env("SHMEX_NAMESPACE", &ns.name)
            .env("SHMEX_ROOT", &ns.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                out.failures
                    .push(format!("spawning victim {id} ({role}): {e}"));
                continue;
            }
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().map(|o| {
            let tasks = tasks.clone();
            std::thread::spawn(move || read_reports(o, id, &tasks, &ready_tx))
        });
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        if rng.below(8) == 0 {
            // Somewhere in start-up: exec, join, open, attach.
            out.before_ready += 1;
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        } else {
            if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
                out.failures
                    .push(format!("victim {id} ({role}) never reported ready"));
            }
            std::thread::sleep(Duration::from_micros(rng.below(40_001)));
        }
        let _ = child.kill();
        let status = child.wait();
        if let Some(t) = stdout {
            let _ = t.join();
        }
        let err = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        match status {
            Ok(s) if s.signal() == Some(9) => {}
            Ok(s) => out.failures.push(format!(
                "victim {id} ({role}) ended before it was killed ({s}): {}",
                err.trim()
            )),
            Err(e) => out.failures.push(format!("waiting for victim {id}: {e}")),
        }
    }
    out
}

/// Reads a victim's report lines until it dies.
fn read_reports(
    out: std::process::ChildStdout,
    id: u64,
    tasks: &Mutex<Tasks>,
    ready: &mpsc::Sender<()>,
) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if line == "ready" {
            let _ = ready.send(());
            continue;
        }
        let Some((kind, tag)) = line.split_once(' ') else {
            continue;
        };
        let (Ok(tag), Ok(mut tasks)) = (tag.parse::<u64>(), tasks.lock()) else {
            continue;
        };
        match kind {
            "s" => tasks.submitted(tag),
            "d" => tasks.event(tag, Who::Victim(id), 'd'),
            "a" => tasks.event(tag, Who::Victim(id), 'a'),
            "n" => tasks.event(tag, Who::Victim(id), 'n'),
            _ => {}
        }
    }
}

fn limits() -> Limits {
    Limits::default()
        .chunk_size(64)
        .chunk_count(64)
        .queue_depth(16)
        .max_ports(16)
}

fn task_limits() -> Limits {
    limits()
        .queue_depth(64)
        .ack_timeout(Duration::from_secs(2))
        .max_deliveries(8)
}

/// Prints to stderr under `--json` (stdout then holds only the JSON line).
fn say(json: bool, line: std::fmt::Arguments<'_>) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Runs `shmex soak` with the arguments after `soak`.
pub fn run(args: Vec<String>) -> ExitCode {
    let opts = match crate::args::parse_or_exit("soak", HELP, args, parse) {
        Ok(o) => o,
        Err(status) => return status,
    };
    let ns = opts.namespace.clone();
    if !ns.segment_files().is_empty() {
        eprintln!(
            "[soak] error: namespace {} is in use in {}; pick another with --namespace",
            ns.name,
            ns.root.display()
        );
        return ExitCode::FAILURE;
    }
    let json = opts.json;
    say(
        json,
        format_args!(
            "[soak] namespace {} in {}, {} kills, seed {} (replay with --seed {})",
            ns.name,
            ns.root.display(),
            opts.kills,
            opts.seed,
            opts.seed
        ),
    );
    let result = soak(&opts);
    // Everything goes: the node and exchanges were dropped by `soak`.
    let left = ns.segment_files();
    for path in &left {
        eprintln!("[soak] left behind: {}", path.display());
        let _ = std::fs::remove_file(path);
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("[soak] error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let files_left = left.len() as u64;
    report.print(json, files_left);
    if report.failed() || files_left > 0 {
        eprintln!("[soak] FAILED");
        ExitCode::FAILURE
    } else {
        say(json, format_args!("[soak] ok"));
        ExitCode::SUCCESS
    }
}

/// The soak's results.
struct Report {
    kills: u64,
    by_role: [u64; ROLES.len()],
    before_ready: u64,
    seconds: f64,
    chunks_leaked: u64,
    leaks: Vec<String>,
    tasks: TaskFigures,
    survivors: Tally,
    victim_failures: Vec<String>,
    published: u64,
    received: u64,
    gaps: u64,
    fanin_sent: u64,
    fanin_received: u64,
}

impl Report {
    fn messages_lost(&self) -> u64 {
        self.published.saturating_sub(self.received + self.gaps)
            + self.fanin_sent.saturating_sub(self.fanin_received)
            + self.survivors.lost
    }

    fn failed(&self) -> bool {
        self.chunks_leaked > 0
            || !self.leaks.is_empty()
            || self.tasks.lost > 0
            || self.tasks.acked_twice > 0
            || self.tasks.delivered_to_no_one > 0
            || self.survivors.blocked > 0
            || self.survivors.errors > 0
            || self.messages_lost() > 0
            || !self.victim_failures.is_empty()
    }

    fn print(&self, json: bool, files_left: u64) {
        let t = &self.tasks;
        let roles: Vec<String> = ROLES
            .iter()
            .zip(self.by_role)
            .map(|((r, _), n)| format!("{r} {n}"))
            .collect();
        let lines = [
            format!(
                "victims killed                {} in {:.1} s ({}; {} before ready)",
                self.kills,
                self.seconds,
                roles.join(", "),
                self.before_ready
            ),
            format!("chunks leaked                 {}", self.chunks_leaked),
            format!(
                "acked tasks lost              {} (of {} submitted: {} acked, {} dead-lettered, {} in doubt, {} acks unreported)",
                t.lost, t.submitted, t.acked, t.dead_lettered, t.in_doubt, t.unreported_acks
            ),
            format!("tasks acked twice             {}", t.acked_twice),
            format!("tasks delivered to no one     {}", t.delivered_to_no_one),
            format!("survivors blocked past timeout {}", self.survivors.blocked),
            format!(
                "messages lost (survivors)     {} (pub-sub {} sent / {} received / {} gaps; fan-in {} sent / {} received)",
                self.messages_lost(),
                self.published,
                self.received,
                self.gaps,
                self.fanin_sent,
                self.fanin_received
            ),
            format!("survivor errors               {}", self.survivors.errors),
            format!("victims that died on their own {}", self.victim_failures.len()),
            format!("files left behind             {files_left}"),
            format!(
                "(info) tasks redelivered {}, left after drain {}, survivor operations {}",
                t.redelivered, t.left_after_drain, self.survivors.ops
            ),
        ];
        for line in &lines {
            say(json, format_args!("{line}"));
        }
        for leak in &self.leaks {
            say(json, format_args!("  leak: {leak}"));
        }
        if !t.lost_examples.is_empty() {
            say(
                json,
                format_args!("  lost task tags, e.g.: {:?}", t.lost_examples),
            );
        }
        if let Some(e) = &self.survivors.first_error {
            say(json, format_args!("  first survivor error: {e}"));
        }
        for f in self.victim_failures.iter().take(5) {
            say(json, format_args!("  victim: {f}"));
        }
        if json {
            let n = Json::Num;
            let object = Json::Object(vec![
                ("kills", n(self.kills)),
                ("seconds", n(self.seconds as u64)),
                ("chunks_leaked", n(self.chunks_leaked)),
                ("acked_tasks_lost", n(t.lost)),
                ("tasks_acked_twice", n(t.acked_twice)),
                ("tasks_delivered_to_no_one", n(t.delivered_to_no_one)),
                ("survivors_blocked", n(self.survivors.blocked)),
                ("messages_lost", n(self.messages_lost())),
                ("survivor_errors", n(self.survivors.errors)),
                ("victim_failures", n(self.victim_failures.len() as u64)),
                ("files_left", n(files_left)),
                ("tasks_submitted", n(t.submitted)),
                ("tasks_acked", n(t.acked)),
                ("tasks_dead_lettered", n(t.dead_lettered)),
                ("tasks_in_doubt", n(t.in_doubt)),
                ("tasks_redelivered", n(t.redelivered)),
                (
                    "kills_by_role",
                    Json::Object(
                        ROLES
                            .iter()
                            .zip(self.by_role)
                            .map(|((r, _), k)| (*r, n(k)))
                            .collect(),
                    ),
                ),
                ("ok", Json::Bool(!self.failed() && files_left == 0)),
            ]);
            println!("{object}");
        }
    }
}

/// Gives up on survivors that do not stop: exits after removing the
/// namespace's files.
fn watchdog(ns: Namespace, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if done.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "[soak] FAILED: survivors blocked: still running {STOP_WAIT:?} after they were told to stop"
        );
        for path in ns.segment_files() {
            let _ = std::fs::remove_file(path);
        }
        std::process::exit(1);
    });
}

fn soak(opts: &Options) -> Result<Report, String> {
    let ns = &opts.namespace;
    let node = Node::builder("soak")
        .namespace(&ns.name)
        .root(&ns.root)
        .create()
        .map_err(|e| format!("joining namespace {}: {e}", ns.name))?;
    let create = |name: &str, pattern: Pattern, limits: Limits| {
        node.create_exchange(name, pattern, limits)
            .map_err(|e| format!("creating {name}: {e}"))
    };
    let ps = create(PS, Pattern::PublishSubscribe, limits())?;
    let rr = create(RR, Pattern::RequestResponse, limits())?;
    let fi = create(FANIN, Pattern::FanIn, limits())?;
    let tk = create(TASKS, Pattern::Tasks, task_limits())?;

    let tasks = Arc::new(Mutex::new(Tasks::default()));
    let stop_senders = Arc::new(AtomicBool::new(false));
    let stop_receivers = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    // Receivers first, so that nothing the survivors send finds nobody.
    let sub = {
        let (ex, stop) = (ps.clone(), stop_receivers.clone());
        std::thread::spawn(move || survivors::subscriber(ex, stop))
    };
    let server = {
        let (ex, stop) = (rr.clone(), stop_receivers.clone());
        std::thread::spawn(move || survivors::server(ex, stop))
    };
    let producer_port = Arc::new(Mutex::new(None));
    let consumer = {
        let (ex, stop, port) = (fi.clone(), stop_receivers.clone(), producer_port.clone());
        std::thread::spawn(move || survivors::consumer(ex, stop, port))
    };
    let worker = {
        let (ex, stop, tasks) = (tk.clone(), stop_senders.clone(), tasks.clone());
        let reclaimer = Node::builder("soak-drain")
            .namespace(&ns.name)
            .root(&ns.root)
            .create()
            .map_err(|e| format!("joining namespace {}: {e}", ns.name))?;
        std::thread::spawn(move || {
            let reclaim = || {
                let _ = reclaimer.reclaim_dead();
            };
            survivors::worker(ex, stop, tasks, reclaim, DRAIN)
        })
    };
    let attach_deadline = Instant::now() + Duration::from_secs(10);
    while (ps.ports(), rr.ports(), fi.ports(), tk.ports()) != (1, 1, 1, 1) {
        if Instant::now() >= attach_deadline {
            return Err("the survivors' receivers did not attach".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let publisher = {
        let (ex, stop) = (ps.clone(), stop_senders.clone());
        std::thread::spawn(move || survivors::publisher(ex, stop))
    };
    let client = {
        let (ex, stop) = (rr.clone(), stop_senders.clone());
        std::thread::spawn(move || survivors::client(ex, stop))
    };
    let producer = {
        let (ex, stop, port) = (fi.clone(), stop_senders.clone(), producer_port.clone());
        std::thread::spawn(move || survivors::producer(ex, stop, port))
    };
    let submitter = {
        let (ex, stop, tasks) = (tk.clone(), stop_senders.clone(), tasks.clone());
        std::thread::spawn(move || survivors::submitter(ex, stop, tasks))
    };

    // The kills.
    let spawned: Vec<Spawned> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..CONCURRENT)
            .map(|i| {
                let count = opts.kills / CONCURRENT + u64::from(i < opts.kills % CONCURRENT);
                let seed = opts.seed ^ (i + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
                let first_id = 1 + i * opts.kills;
                let tasks = &tasks;
                s.spawn(move || spawn_and_kill(ns, seed, first_id, count, tasks))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();

    let done = Arc::new(AtomicBool::new(false));
    watchdog(ns.clone(), done.clone());
    let mut tally = Tally::default();
    stop_senders.store(true, Ordering::Release);
    let (t, published) = publisher.join().map_err(|_| "publisher panicked")?;
    tally.add(&t);
    tally.add(&client.join().map_err(|_| "client panicked")?);
    let (t, fanin_sent) = producer.join().map_err(|_| "producer panicked")?;
    tally.add(&t);
    tally.add(&submitter.join().map_err(|_| "submitter panicked")?);
    // The worker drains the task exchange before it returns.
    tally.add(&worker.join().map_err(|_| "worker panicked")?);
    stop_receivers.store(true, Ordering::Release);
    let (t, received, gaps) = sub.join().map_err(|_| "subscriber panicked")?;
    tally.add(&t);
    tally.add(&server.join().map_err(|_| "server panicked")?);
    let (t, fanin_received) = consumer.join().map_err(|_| "consumer panicked")?;
    tally.add(&t);
    done.store(true, Ordering::Release);

    // Every victim is dead and every survivor port closed: reclaim, then
    // every chunk must be free.
    let _ = node.reclaim_dead();
    let stats = tk.task_stats().unwrap_or_default();
    let left_after_drain = u64::from(stats.queued + stats.in_flight);
    let settle = Instant::now() + Duration::from_secs(5);
    let (chunks_leaked, leaks) = loop {
        let mut leaked = 0u64;
        let mut leaks = Vec::new();
        for info in shmex::list_exchanges(ns) {
            match info {
                Ok(i) => {
                    let l = u64::from(i.chunks_total.saturating_sub(i.chunks_free));
                    if l > 0 || i.ports > 0 {
                        leaks.push(format!(
                            "{}: {} of {} chunks not free, {} ports attached",
                            i.name, l, i.chunks_total, i.ports
                        ));
                    }
                    leaked += l;
                }
                Err(e) => leaks.push(format!("unreadable exchange: {e}")),
            }
        }
        if leaks.is_empty() || Instant::now() >= settle {
            break (leaked, leaks);
        }
        std::thread::sleep(Duration::from_millis(50));
        let _ = node.reclaim_dead();
    };
    let figures = tasks
        .lock()
        .map_err(|_| "task records poisoned")?
        .figures(stats.acked, left_after_drain);
    drop((ps, rr, fi, tk, node));

    let mut report = Report {
        kills: 0,
        by_role: [0; ROLES.len()],
        before_ready: 0,
        seconds,
        chunks_leaked,
        leaks,
        tasks: figures,
        survivors: tally,
        victim_failures: Vec::new(),
        published,
        received,
        gaps,
        fanin_sent,
        fanin_received,
    };
    for s in spawned {
        for (a, b) in report.by_role.iter_mut().zip(s.by_role) {
            *a += b;
        }
        report.before_ready += s.before_ready;
        report.victim_failures.extend(s.failures);
    }
    report.kills = report.by_role.iter().sum();
    Ok(report)
}

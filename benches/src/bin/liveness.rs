//! How fast shmex notices crashed and hung processes and gives back what they
//! held, measured with real processes.
//!
//! ```text
//! cargo build --release --workspace      # liveness starts the real `shmex supervisor`
//! cargo run --release -p shmex-benches --bin liveness -- [--runs N] [--quick] [--json]
//! ```
//!
//! Four measurements, each over fresh victim processes (this binary re-run
//! with the hidden `--child victim` role: a node with the default heartbeat
//! that holds a loan, a received sample and a queued publication on a
//! persistent exchange, then sleeps):
//!
//! 1. **crash, with the supervisor**: `shmex supervisor --json --tick-ms 50`
//!    runs; once it holds a pidfd on the victim, SIGKILL, then poll
//!    `shmex::list_nodes` (read-only: this process is no node then) until the
//!    victim's slot reads "reclaimed". Also the supervisor's own `reclaim_us`
//!    and `detect_us` from its `reclaimed` event.
//! 2. **crash, no supervisor**: one bystander node (default heartbeat,
//!    100 ms) sleeps in the namespace; SIGKILL at a random point of its beat,
//!    poll until "reclaimed".
//! 3. **hang, with the supervisor** (`--hung-after-ms 1000`): SIGSTOP, time
//!    until the supervisor prints `hung` for the victim; then SIGCONT, wait
//!    for `alive`, SIGKILL.
//! 4. **reclaim pass vs pool size**: a victim holds half the loans of a
//!    256- or 65536-chunk pool and is killed and reaped; this process, a node
//!    with no heartbeat thread (so nobody else reclaims), times its own
//!    `Node::reclaim_dead()`.
//!
//! No timing is asserted: this is a measurement.

use shmex::{list_nodes, Limits, Namespace, Node, NodeInfo, Pattern};
use shmex_benches::json::Json;
use shmex_benches::machine::{load_average, shmex_commit, Machine};
use shmex_benches::{err, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

/// The supervisor's rescan interval (`--tick-ms`).
const TICK_MS: u64 = 50;
/// The supervisor's hang limit (`--hung-after-ms`).
const HUNG_AFTER_MS: u64 = 1000;
/// Pool sizes of measurement 4 (chunks of [`POOL_CHUNK_SIZE`] bytes).
const POOL_SIZES: [u32; 2] = [256, 65536];
const POOL_CHUNK_SIZE: usize = 64;
/// The exchange the victims of measurements 1–3 use.
const BENCH_EXCHANGE: &str = "bench";
/// Longest wait for any one step (a victim reclaimed, an event printed).
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// The watchdog gives up after this long without progress.
const WATCHDOG: Duration = Duration::from_secs(30);

static STOP: AtomicBool = AtomicBool::new(false);
/// Milliseconds since the start at the last step of progress (watchdog).
static LAST_PROGRESS_MS: AtomicU64 = AtomicU64::new(0);
/// Pid of the running supervisor, 0 when none (watchdog).
static SUPERVISOR_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_sigint(_: nix::libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

const USAGE: &str = "usage: liveness [--runs N] [--quick] [--json]

  --runs N   crash runs with and without the supervisor (default 30, quick 5)
  --quick    5 crash runs, 3 hang runs, 3 runs per pool size (under 30 s)
  --json     print one JSON object with every figure (progress goes to stderr)

Needs the shmex binary next to this one: cargo build --release --workspace";

struct Options {
    runs: usize,
    hang_runs: usize,
    pool_runs: usize,
    quick: bool,
    json: bool,
}

fn parse_args(args: &[String]) -> std::result::Result<Options, String> {
    let mut quick = false;
    let mut json = false;
    let mut runs = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--runs" => {
                let v = it.next().ok_or("--runs needs a value")?;
                runs = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("--runs needs a positive number")?,
                );
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        runs: runs.unwrap_or(if quick { 5 } else { 30 }),
        hang_runs: if quick { 3 } else { 5 },
        pool_runs: if quick { 3 } else { 10 },
        quick,
        json,
    })
}

// ---------------------------------------------------------------------------
// Child roles (this binary re-run with `--child ROLE ...`).

fn child_main(args: &[String]) -> Result<()> {
    match args {
        [role, ns, root, exchange, loans, publish] if role == "victim" => victim(
            ns,
            root,
            exchange,
            loans.parse().map_err(|_| err("bad loan count"))?,
            publish == "1",
        ),
        [role, ns, root] if role == "bystander" => {
            let _node = Node::builder("bystander")
                .namespace(ns.as_str())
                .root(root)
                .create()?;
            ready_then_sleep()
        }
        _ => Err(err(format!("unknown child role {args:?}"))),
    }
}

/// A node with the default heartbeat that holds `loans` loaned chunks and,
/// with `send`, a received sample and a queued publication; then sleeps
/// until killed (or until its stdin closes).
fn victim(ns: &str, root: &str, exchange: &str, loans: usize, publish: bool) -> Result<()> {
    let node = Node::builder("victim").namespace(ns).root(root).create()?;
    let ex = node.open_exchange(exchange)?;
    let publisher = ex.publisher()?;
    let subscriber = if publish {
        Some(ex.subscriber("#", 1)?)
    } else {
        None
    };
    let mut held = Vec::with_capacity(loans);
    for _ in 0..loans {
        held.push(publisher.loan(8)?);
    }
    let mut samples = Vec::new();
    if let Some(sub) = &subscriber {
        for seq in 0..2u64 {
            publisher.send("liveness.victim", &seq.to_le_bytes())?;
        }
        // One sample in hand, one left queued in the inbox.
        if let Some(s) = sub.try_receive()? {
            samples.push(s);
        }
    }
    ready_then_sleep()?;
    drop(samples);
    drop(held);
    Ok(())
}

fn ready_then_sleep() -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes.

/// A child process of this run: a victim or the bystander. Killed (SIGKILL)
/// and reaped on drop unless reaped before.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: i32,
    reaped: bool,
}

/// `cmd` in its own process group (Ctrl-C reaches only this process, which
/// then cleans up) and sent `deathsig` when this process dies.
fn detached(mut cmd: Command, deathsig: Signal) -> Command {
    cmd.process_group(0);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is a single async-signal-safe system
    // call; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(deathsig).map_err(std::io::Error::from)
        });
    }
    cmd
}

impl Proc {
    /// Starts this binary with `--child ARGS` and waits for its `ready`.
    fn spawn(exe: &Path, args: &[String]) -> Result<Proc> {
        let mut cmd = Command::new(exe);
        cmd.arg("--child")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = detached(cmd, Signal::SIGKILL)
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", exe.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| err("no child stdout"))?;
        let mut p = Proc {
            pid: child.id() as i32,
            stdin: child.stdin.take(),
            child,
            reaped: false,
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim_end() != "ready" {
            // A child that exited keeps its exit status; one that did not is
            // killed rather than waited for.
            let _ = p.child.kill();
            let status = p.child.wait()?;
            p.reaped = true;
            return Err(err(format!(
                "child {} said {:?} instead of ready ({status})",
                args.first().map_or("", String::as_str),
                line.trim_end()
            )));
        }
        Ok(p)
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig)
            .map_err(|e| err(format!("cannot send {sig} to pid {}: {e}", self.pid)))
    }

    /// Waits for the process to end (after a kill) and collects it.
    fn reap(mut self) -> Result<()> {
        self.child.wait()?;
        self.reaped = true;
        Ok(())
    }

    /// Closes its stdin (it then leaves the namespace and exits), waits up
    /// to 5 s, kills it otherwise.
    fn stop_gracefully(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STEP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.reaped = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        eprintln!(
            "liveness: child {} did not exit on end of input; killing it",
            self.pid
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One line of the supervisor's `--json` output, with the fields used here.
#[derive(Debug, Clone)]
struct Event {
    /// When this process read the line.
    at: Instant,
    name: String,
    pid: Option<u64>,
    by: Option<String>,
    reclaim_us: Option<u64>,
    detect_us: Option<u64>,
    heartbeat_age_ms: Option<u64>,
    unix_ms: Option<u64>,
    line: String,
}

/// The raw value of `"key":` in a flat JSON line (numbers and plain strings).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    if let Some(s) = rest.strip_prefix('"') {
        return s.find('"').map(|end| &s[..end]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

impl Event {
    fn parse(line: String, at: Instant) -> Event {
        let num = |k: &str| field(&line, k).and_then(|v| v.parse::<u64>().ok());
        Event {
            at,
            name: field(&line, "event").unwrap_or_default().to_string(),
            pid: num("pid"),
            by: field(&line, "by").map(str::to_string),
            reclaim_us: num("reclaim_us"),
            detect_us: num("detect_us"),
            heartbeat_age_ms: num("heartbeat_age_ms"),
            unix_ms: num("unix_ms"),
            line,
        }
    }
}

/// The real `shmex supervisor --json`, its stdout read line by line by a
/// thread. SIGTERM and reaped on drop.
struct Supervisor {
    child: Child,
    pid: i32,
    events: Receiver<Event>,
    pidfd: bool,
}

impl Supervisor {
    fn start(bin: &Path, ns: &Namespace) -> Result<Supervisor> {
        let mut cmd = Command::new(bin);
        cmd.arg("supervisor")
            .arg("--json")
            .arg("--namespace")
            .arg(&ns.name)
            .arg("--root")
            .arg(&ns.root)
            .arg("--tick-ms")
            .arg(TICK_MS.to_string())
            .arg("--hung-after-ms")
            .arg(HUNG_AFTER_MS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = detached(cmd, Signal::SIGTERM)
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", bin.display())))?;
        let pid = child.id() as i32;
        SUPERVISOR_PID.store(pid, Ordering::Relaxed);
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| err("no supervisor stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                if tx.send(Event::parse(line, at)).is_err() {
                    break;
                }
            }
        });
        let mut sup = Supervisor {
            child,
            pid,
            events: rx,
            pidfd: true,
        };
        let start = sup.wait_event(STEP_TIMEOUT, |e| e.name == "start")?;
        sup.pidfd = field(&start.line, "pidfd") != Some("false");
        Ok(sup)
    }

    /// Throws away the events printed so far.
    fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// The next event matching `want`, skipping others; `error` events are
    /// echoed to stderr.
    fn wait_event(&mut self, timeout: Duration, want: impl Fn(&Event) -> bool) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            check_stop()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(err("timed out waiting for a supervisor event"));
            }
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(e) if want(&e) => return Ok(e),
                Ok(e) => {
                    if e.name == "error" {
                        eprintln!("liveness: supervisor: {}", e.line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    return Err(err(format!("the supervisor exited ({status})")));
                }
            }
        }
    }

    /// Waits (at most 2 s) until the supervisor holds a pidfd on `pid`, i.e.
    /// its rescan has picked the node up and an exit is seen at once. Without
    /// pidfds or /proc access: waits three ticks.
    fn wait_watching(&self, pid: i32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        if self.pidfd {
            loop {
                check_stop()?;
                match holds_pidfd(self.pid, pid) {
                    Some(true) => return Ok(()),
                    Some(false) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Some(false) => {
                        return Err(err(format!("the supervisor never watched pid {pid}")))
                    }
                    None => break,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(3 * TICK_MS));
        Ok(())
    }

    /// SIGTERM, then waits for it to exit (SIGKILL after 5 s).
    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        SUPERVISOR_PID.store(0, Ordering::Relaxed);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), Signal::SIGTERM);
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                _ => break,
            }
        }
        eprintln!("liveness: the supervisor ignored SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Whether process `holder` has a pidfd open on process `target` (from
/// /proc/HOLDER/fdinfo); `None` when that cannot be read.
fn holds_pidfd(holder: i32, target: i32) -> Option<bool> {
    let dir = std::fs::read_dir(format!("/proc/{holder}/fd")).ok()?;
    let want = target.to_string();
    for entry in dir.flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !link.to_string_lossy().contains("pidfd") {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{holder}/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .ok()?;
        let found = info
            .lines()
            .filter_map(|l| l.strip_prefix("Pid:"))
            .any(|p| p.trim() == want);
        if found {
            return Some(true);
        }
    }
    Some(false)
}

// ---------------------------------------------------------------------------
// Measurement helpers.

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::Relaxed) {
        return Err(err("interrupted"));
    }
    Ok(())
}

fn progress(started: Instant) {
    LAST_PROGRESS_MS.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
}

/// A small xorshift generator for the random kill delays.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Everything the measurements share.
struct Ctx {
    ns: Namespace,
    exe: PathBuf,
    started: Instant,
    /// `list_nodes` calls made while polling, and the time they took.
    polls: u64,
    poll_time: Duration,
}

/// The registry slot of a victim: slot, pid and process start time.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u32,
    pid: u32,
    start_time: u64,
}

impl Slot {
    fn is(&self, n: &NodeInfo) -> bool {
        n.id == self.id && n.pid == self.pid && n.start_time == self.start_time
    }
}

impl Ctx {
    fn victim(&self, exchange: &str, loans: u32, publish: bool) -> Result<(Proc, Slot)> {
        check_stop()?;
        let args = [
            "victim".to_string(),
            self.ns.name.clone(),
            self.ns.root.display().to_string(),
            exchange.to_string(),
            loans.to_string(),
            if publish { "1" } else { "0" }.to_string(),
        ];
        let p = Proc::spawn(&self.exe, &args)?;
        let slot = list_nodes(&self.ns)?
            .iter()
            .find(|n| n.pid == p.pid as u32 && n.state == "alive")
            .map(|n| Slot {
                id: n.id,
                pid: n.pid,
                start_time: n.start_time,
            })
            .ok_or_else(|| err(format!("victim {} is not in the registry", p.pid)))?;
        Ok((p, slot))
    }

    /// Polls `list_nodes` (read-only) until `slot` reads "reclaimed";
    /// returns when it first read "dead" (if it did) and when it read
    /// "reclaimed".
    fn poll_reclaimed(
        &mut self,
        slot: &Slot,
        since: Instant,
    ) -> Result<(Option<Instant>, Instant)> {
        let mut dead = None;
        loop {
            let t = Instant::now();
            let nodes = list_nodes(&self.ns)?;
            let now = Instant::now();
            self.polls += 1;
            self.poll_time += now - t;
            match nodes.iter().find(|n| slot.is(n)).map(|n| n.state) {
                Some("reclaimed") => return Ok((dead, now)),
                Some("dead") => {
                    dead.get_or_insert(now);
                }
                Some(_) => {}
                None => {
                    return Err(err(format!(
                        "the slot of victim {} vanished before it read reclaimed",
                        slot.pid
                    )))
                }
            }
            if now - since > STEP_TIMEOUT {
                return Err(err(format!(
                    "victim {} was not reclaimed within {} s",
                    slot.pid,
                    STEP_TIMEOUT.as_secs()
                )));
            }
            check_stop()?;
            std::thread::yield_now();
        }
    }
}

/// Microseconds of a duration, as a float.
fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Results of measurement 1.
#[derive(Default)]
struct CrashSup {
    latency_us: Vec<f64>,
    /// SIGKILL until the slot first read "dead" (the process is gone), in
    /// the runs where a poll caught that state.
    gone_us: Vec<f64>,
    reclaim_us: Vec<f64>,
    detect_us: Vec<f64>,
    by_supervisor: usize,
    by_other: usize,
    no_event: usize,
}

fn crash_with_supervisor(ctx: &mut Ctx, sup: &mut Supervisor, runs: usize) -> Result<CrashSup> {
    let mut out = CrashSup::default();
    let mut rng = Rng::new();
    for _ in 0..runs {
        let (victim, slot) = ctx.victim(BENCH_EXCHANGE, 1, true)?;
        sup.wait_watching(victim.pid)?;
        // Land the kill at a random point of the supervisor's tick.
        std::thread::sleep(Duration::from_micros(rng.below(TICK_MS * 1000)));
        sup.drain();
        let t0 = Instant::now();
        victim.signal(Signal::SIGKILL)?;
        let (dead, t1) = ctx.poll_reclaimed(&slot, t0)?;
        out.latency_us.push(us(t1 - t0));
        if let Some(d) = dead {
            out.gone_us.push(us(d - t0));
        }
        let pid = u64::from(slot.pid);
        match sup.wait_event(Duration::from_secs(2), |e| {
            e.name == "reclaimed" && e.pid == Some(pid)
        }) {
            Ok(e) if e.by.as_deref() == Some("supervisor") => {
                out.by_supervisor += 1;
                if let Some(v) = e.reclaim_us {
                    out.reclaim_us.push(v as f64);
                }
                if let Some(v) = e.detect_us {
                    out.detect_us.push(v as f64);
                }
            }
            Ok(_) => out.by_other += 1,
            Err(_) => out.no_event += 1,
        }
        victim.reap()?;
        progress(ctx.started);
    }
    Ok(out)
}

/// Results of measurement 3.
#[derive(Default)]
struct Hang {
    latency_us: Vec<f64>,
    /// The supervisor's `unix_ms` minus the wall-clock time of the SIGSTOP.
    wall_ms: Vec<f64>,
    heartbeat_age_ms: Vec<f64>,
}

fn hang_with_supervisor(ctx: &mut Ctx, sup: &mut Supervisor, runs: usize) -> Result<Hang> {
    let mut out = Hang::default();
    let mut rng = Rng::new();
    let heartbeat = shmex::DEFAULT_HEARTBEAT.as_micros() as u64;
    for _ in 0..runs {
        let (victim, slot) = ctx.victim(BENCH_EXCHANGE, 1, true)?;
        sup.wait_watching(victim.pid)?;
        // Stop it at a random point of its heartbeat and of the tick.
        std::thread::sleep(Duration::from_micros(rng.below(heartbeat)));
        sup.drain();
        let pid = u64::from(slot.pid);
        let t0_wall = SystemTime::now();
        let t0 = Instant::now();
        victim.signal(Signal::SIGSTOP)?;
        let hung = sup.wait_event(Duration::from_millis(HUNG_AFTER_MS) + STEP_TIMEOUT, |e| {
            e.name == "hung" && e.pid == Some(pid)
        })?;
        out.latency_us.push(us(hung.at - t0));
        if let (Some(ms), Ok(t0_ms)) = (hung.unix_ms, t0_wall.duration_since(UNIX_EPOCH)) {
            out.wall_ms.push(ms as f64 - t0_ms.as_secs_f64() * 1e3);
        }
        if let Some(age) = hung.heartbeat_age_ms {
            out.heartbeat_age_ms.push(age as f64);
        }
        victim.signal(Signal::SIGCONT)?;
        sup.wait_event(STEP_TIMEOUT, |e| e.name == "alive" && e.pid == Some(pid))?;
        let t = Instant::now();
        victim.signal(Signal::SIGKILL)?;
        ctx.poll_reclaimed(&slot, t)?;
        victim.reap()?;
        progress(ctx.started);
    }
    Ok(out)
}

fn crash_embedded(ctx: &mut Ctx, runs: usize) -> Result<Vec<f64>> {
    let bystander = Proc::spawn(
        &ctx.exe,
        &[
            "bystander".to_string(),
            ctx.ns.name.clone(),
            ctx.ns.root.display().to_string(),
        ],
    )?;
    let mut rng = Rng::new();
    let mut out = Vec::new();
    let heartbeat = shmex::DEFAULT_HEARTBEAT.as_micros() as u64;
    for _ in 0..runs {
        let (victim, slot) = ctx.victim(BENCH_EXCHANGE, 1, true)?;
        // Land the kill at a random point of the bystander's beat.
        std::thread::sleep(Duration::from_micros(rng.below(heartbeat)));
        let t0 = Instant::now();
        victim.signal(Signal::SIGKILL)?;
        let (_, t1) = ctx.poll_reclaimed(&slot, t0)?;
        out.push(us(t1 - t0));
        victim.reap()?;
        progress(ctx.started);
    }
    bystander.stop_gracefully();
    Ok(out)
}

/// Results of measurement 4 for one pool size.
struct Pool {
    chunk_count: u32,
    held: u32,
    reclaim_us: Vec<f64>,
    chunks_reclaimed: Vec<f64>,
    /// Runs after which the pool was not whole again.
    not_whole: usize,
}

fn reclaim_vs_pool(ctx: &mut Ctx, runs: usize) -> Result<Vec<Pool>> {
    // A node without a heartbeat thread: only the explicit call reclaims.
    let node = Node::builder("liveness")
        .namespace(ctx.ns.name.as_str())
        .root(&ctx.ns.root)
        .heartbeat(Duration::ZERO)
        .create()?;
    let mut out = Vec::new();
    for chunk_count in POOL_SIZES {
        let name = format!("pool-{chunk_count}");
        let limits = Limits::default()
            .chunk_size(POOL_CHUNK_SIZE)
            .chunk_count(chunk_count)
            .persistent(true);
        let ex = node.create_exchange(&name, Pattern::PublishSubscribe, limits)?;
        let held = chunk_count / 2;
        let mut pool = Pool {
            chunk_count,
            held,
            reclaim_us: Vec::new(),
            chunks_reclaimed: Vec::new(),
            not_whole: 0,
        };
        let result = (|| -> Result<()> {
            for _ in 0..runs {
                let (victim, slot) = ctx.victim(&name, held, false)?;
                victim.signal(Signal::SIGKILL)?;
                victim.reap()?;
                let t = Instant::now();
                let r = node.reclaim_dead()?;
                let took = t.elapsed();
                if !r.nodes.iter().any(|n| n.pid == slot.pid) {
                    return Err(err(format!(
                        "the reclaim pass did not find victim {} dead",
                        slot.pid
                    )));
                }
                pool.reclaim_us.push(us(took));
                pool.chunks_reclaimed.push(f64::from(r.chunks));
                if ex.chunks_free() != chunk_count {
                    pool.not_whole += 1;
                }
                progress(ctx.started);
            }
            Ok(())
        })();
        drop(ex);
        let removed = node.remove_exchange(&name);
        result?;
        removed?;
        out.push(pool);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Set-up and clean-up.

/// Creates the persistent exchange of measurements 1–3 through a short-lived
/// node, so that no victim's death takes it down.
fn create_bench_exchange(ns: &Namespace) -> Result<()> {
    let node = Node::builder("liveness-setup")
        .namespace(ns.name.as_str())
        .root(&ns.root)
        .heartbeat(Duration::ZERO)
        .create()?;
    let limits = Limits::default().persistent(true);
    node.create_exchange(BENCH_EXCHANGE, Pattern::PublishSubscribe, limits)?;
    Ok(())
}

/// Removes the persistent exchanges (through a short-lived node, the last
/// one out, which also removes the registry).
fn remove_exchanges(ns: &Namespace) -> Result<()> {
    let node = Node::builder("liveness-cleanup")
        .namespace(ns.name.as_str())
        .root(&ns.root)
        .heartbeat(Duration::ZERO)
        .create()?;
    let mut names = vec![BENCH_EXCHANGE.to_string()];
    names.extend(POOL_SIZES.iter().map(|n| format!("pool-{n}")));
    for name in names {
        if ns.exchange_path(&name).exists() {
            node.remove_exchange(&name)?;
        }
    }
    Ok(())
}

/// Every file of namespace `ns` under its root.
fn namespace_files(ns: &Namespace) -> Vec<PathBuf> {
    let prefix = format!("shmex.{}.", ns.name);
    let mut out: Vec<PathBuf> = std::fs::read_dir(ns.dir())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Removes the files of earlier `liveness` runs whose process is gone.
fn sweep_stale(root: &Path) {
    let Ok(dir) = std::fs::read_dir(root) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("shmex.liveness-") else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let gone = pid > 0
            && matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            );
        if gone {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Ends the process when nothing progresses for [`WATCHDOG`]: stops the
/// supervisor, removes the namespace's files; victims and the bystander die
/// with this process (parent-death signal).
fn start_watchdog(ns: Namespace, started: Instant) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = started.elapsed().as_millis() as u64;
        if now.saturating_sub(LAST_PROGRESS_MS.load(Ordering::Relaxed))
            <= WATCHDOG.as_millis() as u64
        {
            continue;
        }
        eprintln!(
            "liveness: no progress for {} s; giving up",
            WATCHDOG.as_secs()
        );
        let sup = SUPERVISOR_PID.load(Ordering::Relaxed);
        if sup > 0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup), Signal::SIGTERM);
            std::thread::sleep(Duration::from_millis(500));
        }
        for p in namespace_files(&ns) {
            let _ = std::fs::remove_file(p);
        }
        std::process::exit(3);
    });
}

// ---------------------------------------------------------------------------
// Report.

/// Median, p90 (nearest rank), max and count.
#[derive(Debug, Clone, Copy)]
struct Summary {
    median: f64,
    p90: f64,
    max: f64,
    n: usize,
}

fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Summary {
        median: rank(0.5),
        p90: rank(0.9),
        max: v[v.len() - 1],
        n: v.len(),
    })
}

/// A time in microseconds, for humans.
fn fmt_us(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.0} µs")
    } else if v < 1e4 {
        format!("{:.2} ms", v / 1e3)
    } else if v < 1e6 {
        format!("{:.1} ms", v / 1e3)
    } else {
        format!("{:.3} s", v / 1e6)
    }
}

/// One row of the table: label and values in microseconds.
struct Row {
    key: &'static str,
    label: String,
    values_us: Vec<f64>,
}

fn summary_json(values_us: &[f64]) -> Json {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    match summarize(values_us) {
        None => Json::obj([("runs", Json::Num(0.0))]),
        Some(s) => Json::obj([
            ("median_us", Json::Num(round(s.median))),
            ("p90_us", Json::Num(round(s.p90))),
            ("max_us", Json::Num(round(s.max))),
            ("runs", Json::Num(s.n as f64)),
            (
                "values_us",
                Json::Arr(values_us.iter().map(|&v| Json::Num(round(v))).collect()),
            ),
        ]),
    }
}

fn table(rows: &[Row]) -> String {
    let mut out =
        String::from("| measurement | median | p90 | max | runs |\n|---|---:|---:|---:|---:|\n");
    for r in rows {
        match summarize(&r.values_us) {
            Some(s) => out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.label,
                fmt_us(s.median),
                fmt_us(s.p90),
                fmt_us(s.max),
                s.n
            )),
            None => out.push_str(&format!("| {} | - | - | - | 0 |\n", r.label)),
        }
    }
    out
}

// ---------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        if let Err(e) = child_main(&args[1..]) {
            eprintln!("liveness child {}: {e}", args[1..].join(" "));
            std::process::exit(1);
        }
        return;
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("liveness: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("liveness: cannot find its own executable: {e}");
            std::process::exit(1);
        }
    };
    let shmex_bin = exe
        .parent()
        .map(|d| d.join("shmex"))
        .unwrap_or_else(|| PathBuf::from("shmex"));
    if !shmex_bin.is_file() {
        eprintln!(
            "liveness: the shmex binary is not at {} (it runs the real `shmex supervisor`); \
             build it first: cargo build --release --workspace",
            shmex_bin.display()
        );
        std::process::exit(1);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let _ = nix::sys::signal::signal(
            Signal::SIGINT,
            nix::sys::signal::SigHandler::Handler(on_sigint),
        );
    }

    let started = Instant::now();
    let machine = Machine::read();
    let load_start = load_average();
    let ns = Namespace::new(
        Namespace::from_env().map_or_else(|_| shmex::DEFAULT_ROOT.into(), |n| n.root),
        format!("liveness-{}", std::process::id()),
    );
    sweep_stale(&ns.dir());
    start_watchdog(ns.clone(), started);
    let say = |s: String| {
        if opts.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    say(format!(
        "machine: {} · {} cores · kernel {} · load {:.2} · shmex {}",
        machine.cpu_model,
        machine.cores,
        machine.kernel,
        load_start,
        shmex_commit()
    ));
    say(format!(
        "namespace {} in {} · supervisor {} (--tick-ms {TICK_MS} --hung-after-ms {HUNG_AFTER_MS}) · \
         crash runs {}, hang runs {}, pool runs {}",
        ns.name,
        ns.root.display(),
        shmex_bin.display(),
        opts.runs,
        opts.hang_runs,
        opts.pool_runs
    ));

    let mut ctx = Ctx {
        ns: ns.clone(),
        exe,
        started,
        polls: 0,
        poll_time: Duration::ZERO,
    };
    let mut errors: Vec<String> = Vec::new();
    let mut note = |what: &str, e: shmex_benches::Error| {
        let msg = format!("{what}: {e}");
        eprintln!("liveness: {msg}");
        errors.push(msg);
    };

    let mut crash_sup = CrashSup::default();
    let mut hang = Hang::default();
    let mut embedded = Vec::new();
    let mut pools = Vec::new();
    match create_bench_exchange(&ns) {
        Err(e) => note("set-up", e),
        Ok(()) => {
            // 1 and 3: with the supervisor.
            eprintln!("liveness: starting the supervisor");
            match Supervisor::start(&shmex_bin, &ns) {
                Err(e) => note("supervisor", e),
                Ok(mut sup) => {
                    progress(started);
                    eprintln!(
                        "liveness: 1/4 crash detection with the supervisor ({} runs)",
                        opts.runs
                    );
                    match crash_with_supervisor(&mut ctx, &mut sup, opts.runs) {
                        Ok(r) => crash_sup = r,
                        Err(e) => note("crash with the supervisor", e),
                    }
                    if !STOP.load(Ordering::Relaxed) {
                        eprintln!(
                            "liveness: 2/4 hang detection with the supervisor ({} runs, ≥ 1 s each)",
                            opts.hang_runs
                        );
                        match hang_with_supervisor(&mut ctx, &mut sup, opts.hang_runs) {
                            Ok(r) => hang = r,
                            Err(e) => note("hang with the supervisor", e),
                        }
                    }
                    sup.stop();
                }
            }
            // 2: without.
            if !STOP.load(Ordering::Relaxed) {
                eprintln!(
                    "liveness: 3/4 crash detection without supervisor ({} runs)",
                    opts.runs
                );
                match crash_embedded(&mut ctx, opts.runs) {
                    Ok(r) => embedded = r,
                    Err(e) => note("crash without supervisor", e),
                }
            }
            // 4: reclaim pass vs pool size.
            if !STOP.load(Ordering::Relaxed) {
                eprintln!(
                    "liveness: 4/4 reclaim pass vs pool size ({} runs per size)",
                    opts.pool_runs
                );
                match reclaim_vs_pool(&mut ctx, opts.pool_runs) {
                    Ok(r) => pools = r,
                    Err(e) => note("reclaim vs pool size", e),
                }
            }
        }
    }
    progress(started);
    if let Err(e) = remove_exchanges(&ns) {
        note("clean-up", e);
    }
    let leftovers = namespace_files(&ns);
    for p in &leftovers {
        eprintln!(
            "liveness: warning: {} was left behind; removing it",
            p.display()
        );
        let _ = std::fs::remove_file(p);
    }
    let remaining = namespace_files(&ns);
    let interrupted = STOP.load(Ordering::Relaxed);

    let heartbeat_ms = shmex::DEFAULT_HEARTBEAT.as_millis();
    let mut rows = vec![
        Row {
            key: "crash_supervisor",
            label: "crash → reclaimed, with supervisor (SIGKILL → slot reads \"reclaimed\")".into(),
            values_us: crash_sup.latency_us.clone(),
        },
        Row {
            key: "crash_supervisor_gone",
            label: "  SIGKILL → process gone (slot reads \"dead\", when a poll caught it)".into(),
            values_us: crash_sup.gone_us.clone(),
        },
        Row {
            key: "crash_supervisor_detect",
            label: "  supervisor: exit seen (pidfd) → reclaimed (`detect_us`)".into(),
            values_us: crash_sup.detect_us.clone(),
        },
        Row {
            key: "crash_supervisor_reclaim",
            label: "  supervisor: its reclaim pass (`reclaim_us`)".into(),
            values_us: crash_sup.reclaim_us.clone(),
        },
        Row {
            key: "crash_embedded",
            label: format!(
                "crash → reclaimed, no supervisor (a peer's {heartbeat_ms} ms heartbeat)"
            ),
            values_us: embedded.clone(),
        },
        Row {
            key: "hang_supervisor",
            label: format!(
                "hang → `hung` printed, with supervisor (SIGSTOP, --hung-after-ms {HUNG_AFTER_MS})"
            ),
            values_us: hang.latency_us.clone(),
        },
    ];
    for p in &pools {
        rows.push(Row {
            key: "reclaim_pool",
            label: format!(
                "`reclaim_dead()`, {} chunks of {POOL_CHUNK_SIZE} B, {} loaned by the dead",
                p.chunk_count, p.held
            ),
            values_us: p.reclaim_us.clone(),
        });
    }
    let mean_poll_us = (ctx.polls > 0).then(|| us(ctx.poll_time) / ctx.polls as f64);

    if opts.json {
        let mut results: Vec<(String, Json)> = rows
            .iter()
            .filter(|r| r.key != "reclaim_pool")
            .map(|r| (r.key.to_string(), summary_json(&r.values_us)))
            .collect();
        results.push((
            "crash_supervisor_by".into(),
            Json::obj([
                ("supervisor", Json::Num(crash_sup.by_supervisor as f64)),
                ("other", Json::Num(crash_sup.by_other as f64)),
                ("no_event", Json::Num(crash_sup.no_event as f64)),
            ]),
        ));
        if let Some(s) = summarize(&hang.wall_ms) {
            results.push((
                "hang_supervisor_unix_ms".into(),
                Json::obj([
                    ("median_ms", Json::Num(s.median.round())),
                    ("p90_ms", Json::Num(s.p90.round())),
                    ("max_ms", Json::Num(s.max.round())),
                    ("runs", Json::Num(s.n as f64)),
                ]),
            ));
        }
        results.push((
            "hang_heartbeat_age_ms".into(),
            Json::Arr(
                hang.heartbeat_age_ms
                    .iter()
                    .map(|&v| Json::Num(v))
                    .collect(),
            ),
        ));
        results.push((
            "reclaim_pool".into(),
            Json::Arr(
                pools
                    .iter()
                    .map(|p| {
                        let mut o = vec![
                            (
                                "chunk_count".to_string(),
                                Json::Num(f64::from(p.chunk_count)),
                            ),
                            ("chunk_size".to_string(), Json::Num(POOL_CHUNK_SIZE as f64)),
                            ("held".to_string(), Json::Num(f64::from(p.held))),
                            (
                                "chunks_reclaimed".to_string(),
                                Json::Arr(
                                    p.chunks_reclaimed.iter().map(|&c| Json::Num(c)).collect(),
                                ),
                            ),
                            (
                                "runs_pool_not_whole".to_string(),
                                Json::Num(p.not_whole as f64),
                            ),
                        ];
                        if let Json::Obj(s) = summary_json(&p.reclaim_us) {
                            o.extend(s);
                        }
                        Json::Obj(o)
                    })
                    .collect(),
            ),
        ));
        let doc = Json::obj([
            (
                "machine",
                Json::obj([
                    ("cpu_model", Json::str(machine.cpu_model.clone())),
                    ("cores", Json::Num(machine.cores as f64)),
                    ("kernel", Json::str(machine.kernel.clone())),
                    ("virtualised", Json::Bool(machine.virtualised)),
                    ("load_start", Json::Num(load_start)),
                    ("load_end", Json::Num(load_average())),
                ]),
            ),
            (
                "settings",
                Json::obj([
                    ("shmex_commit", Json::str(shmex_commit())),
                    ("quick", Json::Bool(opts.quick)),
                    ("runs", Json::Num(opts.runs as f64)),
                    ("hang_runs", Json::Num(opts.hang_runs as f64)),
                    ("pool_runs", Json::Num(opts.pool_runs as f64)),
                    ("tick_ms", Json::Num(TICK_MS as f64)),
                    ("hung_after_ms", Json::Num(HUNG_AFTER_MS as f64)),
                    ("heartbeat_ms", Json::Num(heartbeat_ms as f64)),
                    ("namespace", Json::str(ns.name.clone())),
                    ("interrupted", Json::Bool(interrupted)),
                ]),
            ),
            ("results", Json::Obj(results)),
            (
                "mean_poll_us",
                Json::opt(mean_poll_us.map(|v| (v * 10.0).round() / 10.0)),
            ),
            (
                "errors",
                Json::Arr(errors.iter().map(|e| Json::str(e.clone())).collect()),
            ),
            (
                "leftovers_removed",
                Json::Arr(
                    leftovers
                        .iter()
                        .map(|p| Json::str(p.display().to_string()))
                        .collect(),
                ),
            ),
            (
                "remaining",
                Json::Arr(
                    remaining
                        .iter()
                        .map(|p| Json::str(p.display().to_string()))
                        .collect(),
                ),
            ),
            (
                "seconds",
                Json::Num((started.elapsed().as_secs_f64() * 10.0).round() / 10.0),
            ),
        ]);
        print!("{}", doc.pretty());
    } else {
        println!();
        print!("{}", table(&rows));
        println!();
        println!(
            "median and p90 by nearest rank. Crash rows: from the SIGKILL until `list_nodes` \
             (polled in a loop{}) reads the slot \"reclaimed\".",
            mean_poll_us.map_or(String::new(), |p| format!(", {p:.0} µs a call"))
        );
        println!(
            "with supervisor: {} of {} reclaimed by the supervisor's own pass, {} by another \
             (a heartbeat thread), {} without its event.",
            crash_sup.by_supervisor,
            crash_sup.latency_us.len(),
            crash_sup.by_other,
            crash_sup.no_event
        );
        if let Some(s) = summarize(&hang.wall_ms) {
            println!(
                "hang: by the supervisor's own `unix_ms`, median {:.0} ms after the SIGSTOP \
                 (heartbeat age when reported: {} ms).",
                s.median,
                hang.heartbeat_age_ms
                    .iter()
                    .map(|v| format!("{v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for p in &pools {
            let chunks = summarize(&p.chunks_reclaimed).map_or(0.0, |s| s.median);
            println!(
                "pool {}: median {:.0} chunks given back per pass{}.",
                p.chunk_count,
                chunks,
                if p.not_whole > 0 {
                    format!("; pool not whole after {} run(s)", p.not_whole)
                } else {
                    "; pool whole after every pass".to_string()
                }
            );
        }
        for e in &errors {
            println!("error: {e}");
        }
        println!(
            "clean-up: {} leftover file(s) removed, {} remain; took {:.0} s{}",
            leftovers.len(),
            remaining.len(),
            started.elapsed().as_secs_f64(),
            if interrupted { " (interrupted)" } else { "" }
        );
    }
    if interrupted {
        std::process::exit(130);
    }
    if !errors.is_empty() {
        std::process::exit(1);
    }
}

//! The task-distribution scenario: a task queue and three worker processes.
//!
//! The parent creates a task exchange ([`TASKS`]: prefetch limit
//! [`PREFETCH`] per worker, ack timeout [`ACK_TIMEOUT`], dead letter after
//! [`MAX_DELIVERIES`] deliveries), submits `--tasks` tasks (plus a
//! [`POISON`] one with `--dead-letter`), then:
//!
//! 1. starts worker-1, which takes one task and waits; once the exchange
//!    shows it holding that delivery, the parent kills it with SIGKILL and
//!    reclaims its node: the task goes back to the queue, delivered once;
//! 2. starts workers 2 and 3 and releases worker-3 first (`w3.go` on
//!    [`CONTROL`]): it nacks its first task with requeue; then worker-2;
//! 3. waits until every task is acked (or dead-lettered), snapshots
//!    [`Exchange::task_stats`] while the workers are still attached (their
//!    counters leave with their ports), and stops them.
//!
//! Besides the library's counters, every ack is receipted: a worker that
//! acked a task sends its tag to the parent over a fan-in exchange
//! ([`RECEIPTS`]), and the parent checks that each task was acked exactly
//! once, by the worker the exchange's counters say. Then that the
//! redelivered tasks were counted, that no worker held more than its
//! prefetch limit, that the dead letter (if any) sits on the dead-letter
//! queue, and that every chunk and port came back.

use super::{check_idle, create, Demo, Role, CONTROL, RECEIPTS, TASKS};
use crate::json::Json;
use shmex::{Consumer, Exchange, Limits, Node, Pattern, Submit, TaskStats, WorkerStats};
use std::time::Duration;

/// Each worker's prefetch limit.
pub const PREFETCH: u32 = 2;
/// How long a worker may hold a task unacknowledged.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(400);
/// Deliveries after which a task goes to the dead letters.
pub const MAX_DELIVERIES: u32 = 5;
/// The simulated work per task (spreads the tasks over both workers; far
/// below [`ACK_TIMEOUT`]).
pub const WORK: Duration = Duration::from_millis(5);
/// Payload of the poison task (`--dead-letter`).
pub const POISON: &[u8] = b"poison";
/// Acks each worker prints (redelivered tasks are always printed).
pub const SHOWN_ACKS: u64 = 3;
/// The workers, in order.
const WORKERS: u32 = 3;

/// The figures `shmex demo tasks --json` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    /// Tasks submitted (the exchange's counter).
    pub submitted: u64,
    /// Tasks acked (the exchange's counter).
    pub acked: u64,
    /// Acks per worker, worker-1 first.
    pub per_worker: Vec<u64>,
    /// Deliveries of tasks delivered before.
    pub redelivered: u64,
    /// Tasks moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Each worker's prefetch limit.
    pub prefetch_limit: u32,
    /// The most unacknowledged deliveries any worker held at once
    /// (`WorkerStats::max_held`).
    pub max_in_flight_seen: u32,
}

impl TaskReport {
    /// The JSON object, keys in the documented order.
    pub fn json(&self) -> Json {
        Json::Object(vec![
            ("submitted", Json::Num(self.submitted)),
            ("acked", Json::Num(self.acked)),
            (
                "per_worker",
                Json::Array(self.per_worker.iter().map(|&n| Json::Num(n)).collect()),
            ),
            ("redelivered", Json::Num(self.redelivered)),
            ("dead_lettered", Json::Num(self.dead_lettered)),
            ("prefetch_limit", Json::Num(u64::from(self.prefetch_limit))),
            (
                "max_in_flight_seen",
                Json::Num(u64::from(self.max_in_flight_seen)),
            ),
        ])
    }
}

/// The exchange's limits for `total` tasks: a ledger (power of two) that
/// holds them all, and a chunk for each plus a few for the loans in flight.
fn limits(total: u32) -> Limits {
    let depth = total.next_power_of_two().max(64);
    Limits::default()
        .chunk_size(64)
        .chunk_count(depth + 16)
        .queue_depth(depth)
        .max_ports(8)
        .ack_timeout(ACK_TIMEOUT)
        .max_deliveries(MAX_DELIVERIES)
}

fn stats(ex: &Exchange) -> TaskStats {
    ex.task_stats().unwrap_or_default()
}

fn of_pid(s: &TaskStats, pid: u32) -> Option<&WorkerStats> {
    s.workers.iter().find(|w| w.pid == pid)
}

/// Receipts: per task tag (1-based), which workers acked it.
struct Receipts {
    consumer: Consumer,
    acks: Vec<Vec<u32>>,
    errors: Vec<String>,
}

impl Receipts {
    /// Takes every receipt waiting.
    fn drain(&mut self) {
        loop {
            match self.consumer.try_receive() {
                Ok(Some(s)) => {
                    let worker = <[u8; 4]>::try_from(&s[..]).map(u32::from_le_bytes);
                    let slot = usize::try_from(s.tag())
                        .ok()
                        .and_then(|t| t.checked_sub(1))
                        .and_then(|t| self.acks.get_mut(t));
                    match (worker, slot) {
                        (Ok(w), Some(slot)) => slot.push(w),
                        _ => self.errors.push(format!("bad receipt {s:?}")),
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.errors.push(format!("receiving receipts: {e}"));
                    return;
                }
            }
        }
    }
}

/// The scenario (see the module doc).
pub(super) fn scenario(demo: &Demo, node: &Node) -> Result<(), String> {
    let n = demo.opts.tasks;
    let poison = demo.opts.dead_letter;
    let total = n + u32::from(poison);
    let tasks = node
        .create_exchange(TASKS, Pattern::Tasks, limits(total))
        .map_err(|e| format!("cannot create exchange {TASKS}: {e}"))?;
    let control = create(node, CONTROL, Pattern::PublishSubscribe)?;
    let receipts_ex = create(node, RECEIPTS, Pattern::FanIn)?;
    let mut receipts = Receipts {
        consumer: receipts_ex.consumer().map_err(|e| e.to_string())?,
        acks: vec![Vec::new(); n as usize],
        errors: Vec::new(),
    };
    {
        let submitter = tasks.submitter().map_err(|e| e.to_string())?;
        for tag in 1..=u64::from(n) {
            let payload = format!("task {tag}");
            submitter
                .send(Submit::new().tag(tag), payload.as_bytes())
                .map_err(|e| format!("submitting task {tag}: {e}"))?;
        }
        if poison {
            submitter
                .send(Submit::new().tag(u64::from(n) + 1), POISON)
                .map_err(|e| format!("submitting the poison task: {e}"))?;
        }
    }
    report!(
        "[demo] submitted {n} tasks{} to {TASKS} (prefetch limit {PREFETCH}, ack timeout {} ms, dead letter after {MAX_DELIVERIES} deliveries)",
        if poison { " + 1 poison task" } else { "" },
        ACK_TIMEOUT.as_millis()
    );

    let mut kids = demo.children();
    // 1. worker-1 takes a task and is killed before acking it.
    let w1 = kids.spawn(&demo.child(Role::Worker { index: 1 }))?;
    let mut w1_stats = WorkerStats::default();
    kids.wait_for("worker-1 to hold a task", || {
        let s = stats(&tasks);
        match of_pid(&s, w1) {
            Some(w) if w.held == 1 && control.ports() >= 1 => {
                w1_stats = w.clone();
                true
            }
            _ => false,
        }
    })?;
    let status = kids.kill(w1)?;
    report!("[demo] SIGKILL worker-1 (pid {w1}) holding 1 unacked task: {status}");
    match node.reclaim_dead() {
        Ok(r) => report!(
            "[demo] reclaimed {} dead node(s): {} port(s) detached, {} chunk(s) returned",
            r.nodes.len(),
            r.ports,
            r.chunks
        ),
        // The heartbeat thread may do it instead; the wait below tells.
        Err(e) => report!("[demo] reclaim_dead: {e}"),
    }
    kids.wait_for("worker-1's task to be requeued", || {
        let s = stats(&tasks);
        s.in_flight == 0 && s.queued == total && of_pid(&s, w1).is_none() && control.ports() == 0
    })?;
    report!("[demo] worker-1's task is back in the queue: {total} queued, 0 in flight");

    // 2. workers 2 and 3; worker-3 first, so that it surely gets a task to
    // nack.
    let w2 = kids.spawn(&demo.child(Role::Worker { index: 2 }))?;
    let w3 = kids.spawn(&demo.child(Role::Worker { index: 3 }))?;
    kids.wait_for("workers 2 and 3 to attach", || {
        tasks.ports() >= 2 && control.ports() >= 2 && receipts_ex.ports() >= 3
    })?;
    let publisher = control.publisher().map_err(|e| e.to_string())?;
    let signal = |key: &str| -> Result<(), String> {
        let sent = publisher.send(key, b"").map_err(|e| e.to_string())?;
        if sent.delivered != 1 {
            return Err(format!("{key} reached {} workers", sent.delivered));
        }
        Ok(())
    };
    signal("w3.go")?;
    kids.wait_for("worker-3 to take a task", || {
        of_pid(&stats(&tasks), w3).is_some_and(|w| w.delivered >= 1)
    })?;
    signal("w2.go")?;

    // 3. every task acked (or dead-lettered): snapshot, then stop.
    let mut done = TaskStats::default();
    kids.wait_for("every task to be acked", || {
        receipts.drain();
        done = stats(&tasks);
        done.acked + done.dead_lettered >= u64::from(total)
            && done.queued == 0
            && done.in_flight == 0
    })?;
    let workers = [
        w1_stats,
        of_pid(&done, w2).cloned().unwrap_or_default(),
        of_pid(&done, w3).cloned().unwrap_or_default(),
    ];
    signal("w2.stop")?;
    signal("w3.stop")?;
    kids.finish()?;
    drop(publisher);
    receipts.drain();

    let report = TaskReport {
        submitted: done.submitted,
        acked: done.acked,
        per_worker: workers.iter().map(|w| w.acked).collect(),
        redelivered: done.redelivered,
        dead_lettered: done.dead_lettered,
        prefetch_limit: PREFETCH,
        max_in_flight_seen: workers.iter().map(|w| w.max_held).max().unwrap_or(0),
    };
    if let Ok(mut slot) = demo.tasks.lock() {
        *slot = Some(report.clone());
    }
    for (i, (w, pid)) in workers.iter().zip([w1, w2, w3]).enumerate() {
        report!(
            "[demo] worker-{} (pid {pid}): {} delivered, {} acked, at most {} held (limit {}){}",
            i + 1,
            w.delivered,
            w.acked,
            w.max_held,
            w.prefetch,
            if i == 0 { ", killed" } else { "" }
        );
    }
    let mut errors = std::mem::take(&mut receipts.errors);
    check(
        &report,
        &done,
        &workers,
        &receipts.acks,
        n,
        poison,
        &mut errors,
    );
    drop(receipts);
    if poison {
        drain_dead_letter(&tasks, n, &mut errors);
    }
    let line = format!(
        "tasks: {} submitted, {} acked (each exactly once, receipts checked), per worker {:?}, {} redelivered, {} dead-lettered, at most {} in flight per worker (prefetch limit {})",
        report.submitted,
        report.acked,
        report.per_worker,
        report.redelivered,
        report.dead_lettered,
        report.max_in_flight_seen,
        report.prefetch_limit
    );
    report!("[demo] {line}");
    if let Ok(mut r) = demo.results.lock() {
        r.push(line);
    }
    for ex in [&tasks, &control, &receipts_ex] {
        if let Err(e) = check_idle(ex) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The scenario's invariants; appends what does not hold to `errors`.
fn check(
    r: &TaskReport,
    s: &TaskStats,
    workers: &[WorkerStats; WORKERS as usize],
    receipts: &[Vec<u32>],
    n: u32,
    poison: bool,
    errors: &mut Vec<String>,
) {
    let mut fail = |msg: String| errors.push(msg);
    let total = u64::from(n) + u64::from(poison);
    let dead = u64::from(poison);
    if r.submitted != total {
        fail(format!("{} tasks submitted, expected {total}", r.submitted));
    }
    if r.acked != u64::from(n) || r.dead_lettered != dead {
        fail(format!(
            "{} acked and {} dead-lettered, expected {n} and {dead}",
            r.acked, r.dead_lettered
        ));
    }
    if r.acked + r.dead_lettered != r.submitted {
        fail(format!(
            "submitted {} != acked {} + dead-lettered {}",
            r.submitted, r.acked, r.dead_lettered
        ));
    }
    if u64::from(s.dead_letters) != dead {
        fail(format!("{} tasks on the dead-letter queue", s.dead_letters));
    }
    // Worker-1's task (its death) and worker-3's nack, at least.
    if r.redelivered < 2 {
        fail(format!(
            "{} redeliveries, expected at least 2",
            r.redelivered
        ));
    }
    if r.max_in_flight_seen > r.prefetch_limit {
        fail(format!(
            "a worker held {} tasks at once, above the prefetch limit {}",
            r.max_in_flight_seen, r.prefetch_limit
        ));
    }
    if workers[0].acked != 0 || workers[0].max_held != 1 {
        fail(format!(
            "worker-1 should hold 1 task and ack none: {:?}",
            workers[0]
        ));
    }
    if r.per_worker.iter().sum::<u64>() != r.acked {
        fail(format!(
            "per-worker acks {:?} do not add up to {}",
            r.per_worker, r.acked
        ));
    }
    // Receipts: each task acked exactly once, by the worker the exchange
    // counted it for.
    let mut by_worker = [0u64; WORKERS as usize];
    for (i, acks) in receipts.iter().enumerate() {
        match acks.as_slice() {
            [w] if (1..=WORKERS).contains(w) => by_worker[*w as usize - 1] += 1,
            [] => fail(format!("task {} was never acked", i + 1)),
            more => fail(format!(
                "task {} acked {} times: by {more:?}",
                i + 1,
                more.len()
            )),
        }
    }
    if by_worker[..] != r.per_worker[..] {
        fail(format!(
            "receipts per worker {by_worker:?} differ from the exchange's {:?}",
            r.per_worker
        ));
    }
}

/// `--dead-letter`: takes the poison task off the dead-letter queue (with a
/// worker port of the parent's, the children being gone) and checks it.
fn drain_dead_letter(tasks: &Exchange, n: u32, errors: &mut Vec<String>) {
    let worker = match tasks.worker(1) {
        Ok(w) => w,
        Err(e) => return errors.push(format!("cannot attach a worker: {e}")),
    };
    match worker.try_receive_dead_letter() {
        Ok(Some(dl)) => {
            report!(
                "[demo] dead letter: task {} ({}), delivered {} time(s)",
                dl.tag(),
                String::from_utf8_lossy(&dl),
                dl.deliveries()
            );
            if dl.tag() != u64::from(n) + 1 || dl[..] != *POISON {
                errors.push(format!(
                    "the dead letter is task {}, not the poison",
                    dl.tag()
                ));
            }
        }
        Ok(None) => errors.push("no dead letter to take".into()),
        Err(e) => errors.push(format!("taking the dead letter: {e}")),
    }
    let second = worker
        .try_receive_dead_letter()
        .ok()
        .flatten()
        .map(|dl| dl.tag());
    if let Some(tag) = second {
        errors.push(format!("a second dead letter: task {tag}"));
    }
}

//! Task distribution: a work queue with priorities, a prefetch limit per
//! worker, ack/nack, ack timeouts and dead letters (RabbitMQ's work-queue
//! semantics, without a broker).
//!
//! A task exchange holds, besides the chunk pool, a *ledger* of
//! `queue_depth` task entries (the queue's bound) and queues of entry indices:
//! free entries, one ready queue per priority, dead letters
//! ([`shmex_core::ledger`], [`shmex_core::mpmc`]). A task's life:
//!
//! 1. A [`Submitter`] takes a free entry, writes the task's chunk into it and
//!    publishes it on the ready queue of its priority; sleeping workers are
//!    woken.
//! 2. A [`Worker`] with room under its prefetch limit pops the highest
//!    priority ready entry and claims it (a CAS on the entry's state word):
//!    the task is now *delivered* to that worker, with an ack deadline.
//! 3. The worker acks it (the entry is freed, the chunk released) or nacks
//!    it: back to the ready queue, or to the dead-letter queue when nacked
//!    without requeue or delivered `max_deliveries` times.
//! 4. A delivery not acked by its deadline is taken back by whichever worker
//!    sweeps first and requeued ([`Delivery::redelivered`] tells the next
//!    worker). A dead worker's deliveries are requeued by the reclaim pass
//!    that retires it.
//!
//! Exactly one of the worker's ack, its nack, an expiry or a reclaim wins
//! each delivery: they are all CAS transitions on the entry's state word,
//! whose generation moves on every transition.
//!
//! Guarantees:
//! - **At least once, until acked.** A submitted task stays in the ledger
//!   until a worker acks it or it is dead-lettered; a crash of any process
//!   never loses it (reclaim rebuilds the queues from the ledger).
//! - **Ordering.** Higher priority first; within a priority, tasks are
//!   delivered in submission order, except that a redelivered task goes to
//!   the back of its priority's queue (a reclaim pass, which rebuilds the
//!   queues, puts every queued task back in submission order).
//! - **Prefetch.** A worker never holds more than its prefetch limit of
//!   unacknowledged deliveries (`WorkerStats::max_held` shows the most it
//!   ever held).
//! - **What survives which crash.** A dead submitter: tasks it submitted
//!   stay; one it was halfway through submitting is dropped (its submit
//!   never returned `Ok`). A dead worker: every task it held is requeued
//!   and counts a delivery; so are the tasks a worker still held when it
//!   was dropped. The exchange itself follows the exchange rules
//!   (a transient one goes down with its creator, tasks included).

use crate::error::{RecvError, SendError, TaskError};
use crate::exchange::{Exchange, ExchangeInner, PortCore, Role, Targets};
use crate::layout::{TaskHeader, DEAD_QUEUE, FREE_QUEUE, PORT_ACTIVE, READY_QUEUE};
use crate::owned::{Keeper, Release};
use crate::sample::Loan;
use crate::waitset::{deadline, wait_until, WaitNode, Waitable};
use shmex_core::ledger::{Ledger, Returned, TaskBody, TaskEntry, TaskState, TaskWord};
use shmex_core::mpmc::{Mpmc, PushError as MpmcPushError};
use shmex_core::Corrupt;
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use shmex_core::ledger::PRIORITIES;

/// Identifies one delivery of a task: its ledger entry and the entry's
/// generation when it was delivered. Acking or nacking it a second time,
/// after the delivery was taken back, or from another worker fails with
/// [`TaskError::NotHeld`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskId(u64);

impl TaskId {
    fn new(entry: u32, generation: u32) -> TaskId {
        TaskId(u64::from(entry) | u64::from(generation) << 32)
    }
    pub(crate) fn entry(self) -> u32 {
        self.0 as u32
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The id as one number (for logs and the C API).
    pub fn to_raw(self) -> u64 {
        self.0
    }
    /// An id from [`to_raw`](Self::to_raw).
    pub fn from_raw(raw: u64) -> TaskId {
        TaskId(raw)
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.entry(), self.generation())
    }
}

impl ExchangeInner {
    /// The task region's header (task exchanges only).
    pub(crate) fn task_header(&self) -> Option<&TaskHeader> {
        if !self.limits.tasks {
            return None;
        }
        self.seg.get(self.layout.task_header)
    }

    /// Task entry `index`.
    pub(crate) fn task_entry(&self, index: u32) -> Option<&TaskEntry> {
        if !self.limits.tasks || index >= self.limits.queue_depth {
            return None;
        }
        self.seg
            .get(self.layout.task_entries + index as usize * std::mem::size_of::<TaskEntry>())
    }

    /// Task queue `q` ([`FREE_QUEUE`], [`DEAD_QUEUE`], `READY_QUEUE + p`).
    pub(crate) fn task_queue(&self, q: usize) -> Option<Mpmc<'_>> {
        use shmex_core::mpmc::{MpmcControl, MpmcSlot};
        if !self.limits.tasks || q >= crate::layout::TASK_QUEUES {
            return None;
        }
        let depth = self.limits.queue_depth as usize;
        let control: &MpmcControl = self
            .seg
            .get(self.layout.task_controls + q * std::mem::size_of::<MpmcControl>())?;
        let slots: &[MpmcSlot] = self.seg.slice(
            self.layout.task_slots + q * depth * std::mem::size_of::<MpmcSlot>(),
            depth,
        )?;
        Mpmc::new(control, slots)
    }

    /// Fills a new task exchange's region: every entry free, on the free
    /// queue. Under the control lock, before the exchange is published.
    pub(crate) fn initialise_tasks(&self, ack_timeout: Duration, max_deliveries: u32) {
        let Some(h) = self.task_header() else { return };
        h.ack_timeout_ms.store(
            u64::try_from(ack_timeout.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        h.max_deliveries.store(max_deliveries, Ordering::Relaxed);
        for i in 0..self.limits.queue_depth {
            if let Some(e) = self.task_entry(i) {
                e.init();
            }
        }
        for q in 0..crate::layout::TASK_QUEUES {
            if let Some(queue) = self.task_queue(q) {
                queue.init();
            }
        }
        if let Some(free) = self.task_queue(FREE_QUEUE) {
            let _ = free.rebuild(0..self.limits.queue_depth);
        }
    }

    fn max_deliveries(&self) -> u8 {
        self.task_header().map_or(5, |h| {
            u8::try_from(h.max_deliveries.load(Ordering::Relaxed)).unwrap_or(u8::MAX)
        })
    }

    fn ack_timeout_ms(&self) -> u64 {
        self.task_header()
            .map_or(30_000, |h| h.ack_timeout_ms.load(Ordering::Relaxed))
    }

    /// Acks delivery `id` held by worker port `port` and returns its chunk,
    /// whose reference (the ledger's) the caller now owns. The caller then
    /// puts the entry back on the free queue ([`free_entry`](Self::free_entry)).
    /// Inside an operation on `port`.
    pub(crate) fn ack_task(&self, port: u32, id: TaskId) -> Result<u32, TaskError> {
        let entry = self
            .task_entry(id.entry())
            .ok_or(TaskError::NotHeld { task: id })?;
        let chunk = entry.read_body().chunk;
        entry
            .ack(port as u16, id.generation())
            .map_err(|_| TaskError::NotHeld { task: id })?;
        if let Some(p) = self.port(port) {
            p.tasks.acked.fetch_add(1, Ordering::Relaxed);
        }
        self.worker_lost_one(port);
        if let Some(h) = self.task_header() {
            h.acked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(chunk)
    }

    /// Puts ledger entry `index`, just acked, back on the free queue.
    pub(crate) fn free_entry(&self, index: u32) -> Result<(), Corrupt> {
        self.push_committed(FREE_QUEUE, index)
    }

    /// Puts entry `index` on task queue `queue`, where a ledger transition
    /// that already committed put it. A push that stalls behind a stopped
    /// consumer cannot undo that transition, so it is not an error: the
    /// entry is parked in this process and pushed at a later operation
    /// ([`retry_parked`](Self::retry_parked)), unless a reclaim pass rebuilt
    /// the queues from the ledger meanwhile (that put it in place). Inside
    /// an operation, or under the control lock.
    pub(crate) fn push_committed(&self, queue: usize, index: u32) -> Result<(), Corrupt> {
        let q = self
            .task_queue(queue)
            .ok_or(Corrupt("task queue out of range"))?;
        match push_index(&q, index) {
            Err(PushFailed::Stalled) => {
                let rebuilds = self.task_rebuilds();
                if let Ok(mut parked) = self.parked.lock() {
                    parked.push(Parked {
                        queue,
                        index,
                        rebuilds,
                    });
                    self.has_parked.store(true, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(PushFailed::Corrupt(c)) => Err(c),
            Ok(()) => Ok(()),
        }
    }

    /// Pushes the parked entries again, one attempt each, so an operation
    /// does not wait for the stopped consumer (see
    /// [`push_committed`](Self::push_committed)); those a rebuild placed
    /// since are dropped, those still stalled stay. Inside an operation.
    #[cold]
    pub(crate) fn retry_parked(&self) {
        let Ok(mut parked) = self.parked.lock() else {
            return;
        };
        let rebuilds = self.task_rebuilds();
        parked.retain(|p| {
            p.rebuilds == rebuilds
                && self
                    .task_queue(p.queue)
                    .is_some_and(|q| q.push(p.index) == Err(MpmcPushError::Stalled))
        });
        self.has_parked.store(!parked.is_empty(), Ordering::Relaxed);
    }

    /// How many times reclaim rebuilt the task queues (0 without a task
    /// region).
    fn task_rebuilds(&self) -> u64 {
        self.task_header()
            .map_or(0, |h| h.rebuilds.load(Ordering::Relaxed))
    }

    /// Nacks delivery `id` held by worker port `port` ([`Worker::nack`]).
    /// Inside an operation on `port`.
    pub(crate) fn nack_task(&self, port: u32, id: TaskId, requeue: bool) -> Result<(), TaskError> {
        let entry = self
            .task_entry(id.entry())
            .ok_or(TaskError::NotHeld { task: id })?;
        let returned = entry
            .nack(port as u16, id.generation(), requeue, self.max_deliveries())
            .map_err(|_| TaskError::NotHeld { task: id })?;
        self.worker_lost_one(port);
        self.route_returned(id.entry(), returned)?;
        if matches!(returned, Returned::Requeued(_)) {
            self.wake_workers();
        }
        Ok(())
    }

    /// Puts an entry that left a delivery back where its new state says.
    fn route_returned(&self, index: u32, returned: Returned) -> Result<(), Corrupt> {
        let queue = match returned {
            Returned::Requeued(w) => READY_QUEUE + usize::from(w.priority),
            Returned::DeadLettered(_) => {
                if let Some(h) = self.task_header() {
                    h.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
                DEAD_QUEUE
            }
        };
        self.push_committed(queue, index)
    }

    /// Takes back every delivery whose ack deadline passed, at most every
    /// few milliseconds across all workers (the sweeper wins a CAS on the
    /// header's last-sweep time). Inside an operation.
    fn sweep_expired(&self, now: u64) {
        let Some(h) = self.task_header() else { return };
        let interval = (self.ack_timeout_ms() / 8).clamp(1, 100);
        let last = h.last_sweep_ms.load(Ordering::Relaxed);
        if now < last.saturating_add(interval)
            || h.last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let max = self.max_deliveries();
        let mut requeued = false;
        for i in 0..self.limits.queue_depth {
            let Some(e) = self.task_entry(i) else { break };
            let Ok(before) = e.load() else { continue };
            if before.state != TaskState::Delivered {
                continue;
            }
            if let Ok(Some(returned)) = e.expire(now, max) {
                // The holder the expiry took it from (the word it replaced),
                // not the one read before: another delivery may have come
                // in between.
                self.worker_lost_one(u32::from(returned.word().holder));
                requeued |= matches!(returned, Returned::Requeued(_));
                let _ = self.route_returned(i, returned);
            }
        }
        if requeued {
            self.wake_workers();
        }
    }

    /// A delivery of worker port `port` ended without its ack (taken back
    /// or nacked): one less held.
    fn worker_lost_one(&self, port: u32) {
        if let Some(p) = self.port(port) {
            let _ = p
                .tasks
                .held
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |h| h.checked_sub(1));
        }
    }

    /// Wakes the node of every worker (a no-op for those not asleep).
    fn wake_workers(&self) {
        for i in 0..self.limits.max_ports {
            if let Some(p) = self.port(i) {
                if p.state.load(Ordering::Acquire) == PORT_ACTIVE
                    && p.role.load(Ordering::Relaxed) == Role::Worker as u32
                {
                    self.node.wake(p.node.load(Ordering::Relaxed));
                }
            }
        }
    }

    /// True when a worker other than `me` could take a task now.
    fn another_worker_has_room(&self, me: u32) -> bool {
        (0..self.limits.max_ports).any(|i| {
            i != me
                && self.port(i).is_some_and(|p| {
                    p.state.load(Ordering::Acquire) == PORT_ACTIVE
                        && p.role.load(Ordering::Relaxed) == Role::Worker as u32
                        && p.tasks.held.load(Ordering::Relaxed)
                            < p.tasks.prefetch.load(Ordering::Relaxed)
                })
        })
    }

    /// Reclaim's part for the task region (the exchange is paused): cancels
    /// reservations of dead submitters, requeues the deliveries of dead
    /// workers, counts one chunk reference per live task in `counts`,
    /// rebuilds every queue from the ledger and recounts what each live
    /// worker holds.
    pub(crate) fn reclaim_tasks(&self, live: &[bool], counts: &mut [u32]) {
        if !self.limits.tasks {
            return;
        }
        let max = self.max_deliveries();
        let alive = |port: u16| live.get(usize::from(port)).copied().unwrap_or(false);
        let mut held = vec![0u32; live.len()];
        for i in 0..self.limits.queue_depth {
            let Some(e) = self.task_entry(i) else { break };
            if e.resolve_dead(alive, max).is_err() {
                e.init();
                continue;
            }
            let Ok(w) = e.load() else { continue };
            if w.state == TaskState::Free {
                continue;
            }
            if w.state == TaskState::Delivered {
                if let Some(h) = held.get_mut(usize::from(w.holder)) {
                    *h += 1;
                }
            }
            if let Some(c) = counts.get_mut(e.read_body().chunk as usize) {
                *c += 1;
            }
        }
        let queues = (
            self.task_queue(FREE_QUEUE),
            self.task_queue(READY_QUEUE),
            self.task_queue(READY_QUEUE + 1),
            self.task_queue(READY_QUEUE + 2),
            self.task_queue(READY_QUEUE + 3),
            self.task_queue(DEAD_QUEUE),
        );
        let entries = self
            .seg
            .slice::<TaskEntry>(self.layout.task_entries, self.limits.queue_depth as usize);
        if let (Some(free), Some(r0), Some(r1), Some(r2), Some(r3), Some(dead)) = queues {
            if let Some(ledger) = entries.and_then(Ledger::new) {
                let _ = ledger.rebuild_queues(&free, &[r0, r1, r2, r3], &dead);
                if let Some(h) = self.task_header() {
                    h.rebuilds.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for (i, h) in held.into_iter().enumerate() {
            if let Some(p) = self.port(i as u32) {
                p.tasks.held.store(h, Ordering::Relaxed);
            }
        }
    }
}

/// The clock of ack deadlines: [`sys::monotonic_ms`](crate::sys::monotonic_ms)
/// (the coarse monotonic clock: a few ns per read, a few ms of resolution,
/// far below any ack timeout; a wall-clock jump moves no deadline).
fn now_ms() -> u64 {
    crate::sys::monotonic_ms()
}

/// How many times [`push_index`] retries a push that stalls behind a
/// stopped consumer before it reports the stall.
const PUSH_STALL_RETRIES: u32 = 100_000;

/// Pushes a ledger index on a task queue. A queue never fills (it has a slot
/// per entry), but a push can stall behind a consumer paused between taking
/// a slot and handing it back: retry for a while. A consumer that died there
/// stalls it for good: then the push fails with [`Corrupt`] ("task queue
/// stalled"), never `Ok` with the index dropped, so the caller reports it.
/// The entry's state word still says where it belongs, and the reclaim pass
/// that retires the dead consumer rebuilds the queues from the ledger.
fn push_index(queue: &Mpmc<'_>, index: u32) -> Result<(), PushFailed> {
    for i in 0..PUSH_STALL_RETRIES {
        match queue.push(index) {
            Ok(()) => return Ok(()),
            Err(MpmcPushError::Stalled) => {
                if i < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            Err(MpmcPushError::Full) => {
                return Err(PushFailed::Corrupt(Corrupt(
                    "task queue full beyond its entries",
                )))
            }
            Err(MpmcPushError::Corrupt(c)) => return Err(PushFailed::Corrupt(c)),
        }
    }
    Err(PushFailed::Stalled)
}

/// Why [`push_index`] failed.
#[derive(Debug)]
enum PushFailed {
    /// Still stalled after [`PUSH_STALL_RETRIES`]: a consumer stopped
    /// between taking a slot and releasing it (dead: the next reclaim pass
    /// rebuilds the queue; stopped: it resumes).
    Stalled,
    /// The queue's words are corrupt.
    Corrupt(Corrupt),
}

impl From<PushFailed> for Corrupt {
    fn from(e: PushFailed) -> Corrupt {
        match e {
            PushFailed::Stalled => Corrupt(
                "task queue stalled: a consumer stopped between taking a slot and releasing it",
            ),
            PushFailed::Corrupt(c) => c,
        }
    }
}

/// A task entry parked by [`ExchangeInner::push_committed`].
#[derive(Debug)]
pub(crate) struct Parked {
    queue: usize,
    index: u32,
    /// The task header's `rebuilds` when it was parked.
    rebuilds: u64,
}

impl Exchange {
    /// Attaches a submitter (task exchanges).
    pub fn submitter(&self) -> Result<Submitter, crate::PortError> {
        let core = self.inner.attach(Role::Submitter, 0, b"")?;
        Ok(Submitter {
            core,
            workers: RefCell::new(Targets::default()),
        })
    }

    /// Attaches a worker that holds at most `prefetch_limit` unacknowledged
    /// tasks (at least 1: 0 fails with
    /// [`PortError::InvalidPrefetch`](crate::PortError::InvalidPrefetch)).
    pub fn worker(&self, prefetch_limit: u32) -> Result<Worker, crate::PortError> {
        if prefetch_limit == 0 {
            return Err(crate::PortError::InvalidPrefetch);
        }
        let prefetch = prefetch_limit;
        let core = self.inner.attach(Role::Worker, 0, b"")?;
        if let Some(p) = self.inner.port(core.index) {
            p.tasks.prefetch.store(prefetch, Ordering::Relaxed);
        }
        Ok(Worker {
            core,
            prefetch,
            passed_over: std::cell::Cell::new(None),
            live: RefCell::new(Vec::new()),
        })
    }

    /// A snapshot of a task exchange's queue and workers (`None` for other
    /// patterns). Counts come from the exchange itself, so they include every
    /// process's work.
    pub fn task_stats(&self) -> Option<TaskStats> {
        let ex = &self.inner;
        let h = ex.task_header()?;
        let mut stats = TaskStats {
            capacity: ex.limits.queue_depth,
            submitted: h.submitted.load(Ordering::Relaxed),
            acked: h.acked.load(Ordering::Relaxed),
            redelivered: h.redelivered.load(Ordering::Relaxed),
            dead_lettered: h.dead_lettered.load(Ordering::Relaxed),
            ..TaskStats::default()
        };
        for i in 0..ex.limits.queue_depth {
            match ex
                .task_entry(i)
                .and_then(|e| e.load().ok())
                .map(|w| w.state)
            {
                Some(TaskState::Queued) => stats.queued += 1,
                Some(TaskState::Delivered) => stats.in_flight += 1,
                Some(TaskState::DeadLetter) => stats.dead_letters += 1,
                _ => {}
            }
        }
        for i in 0..ex.limits.max_ports {
            let Some(p) = ex.port(i) else { break };
            if p.state.load(Ordering::Acquire) == PORT_ACTIVE
                && p.role.load(Ordering::Relaxed) == Role::Worker as u32
            {
                stats.workers.push(WorkerStats {
                    port: i,
                    pid: p.pid.load(Ordering::Relaxed),
                    prefetch: p.tasks.prefetch.load(Ordering::Relaxed),
                    held: p.tasks.held.load(Ordering::Relaxed),
                    max_held: p.tasks.max_held.load(Ordering::Relaxed),
                    delivered: p.tasks.delivered.load(Ordering::Relaxed),
                    acked: p.tasks.acked.load(Ordering::Relaxed),
                });
            }
        }
        Some(stats)
    }
}

/// A task exchange's state, as [`Exchange::task_stats`] reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// Tasks the ledger holds at most (`queue_depth`): queued, in flight and
    /// dead letters together.
    pub capacity: u32,
    /// Tasks waiting for a worker.
    pub queued: u32,
    /// Tasks delivered and not yet acked.
    pub in_flight: u32,
    /// Tasks on the dead-letter queue.
    pub dead_letters: u32,
    /// Tasks submitted since the exchange was created.
    pub submitted: u64,
    /// Tasks acked.
    pub acked: u64,
    /// Deliveries of tasks delivered before.
    pub redelivered: u64,
    /// Tasks moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// The attached workers.
    pub workers: Vec<WorkerStats>,
}

/// One worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Its port index.
    pub port: u32,
    /// Its process.
    pub pid: u32,
    /// Its prefetch limit.
    pub prefetch: u32,
    /// Deliveries it holds now.
    pub held: u32,
    /// The most it ever held at once (never above `prefetch`).
    pub max_held: u32,
    /// Deliveries to it.
    pub delivered: u64,
    /// Its acks.
    pub acked: u64,
}

/// The submitting side of a task exchange.
pub struct Submitter {
    core: PortCore,
    workers: RefCell<Targets>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug_struct(f, "Submitter").finish()
    }
}

impl Submitter {
    /// Loans a chunk for a task of `len` bytes, to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        self.core.loan(len)
    }

    /// Submits a copy of `payload` with the priority (0 ..
    /// [`PRIORITIES`], higher first) and tag set in `task`. [`SendError::QueueFull`]
    /// when the ledger is full.
    pub fn send(&self, task: crate::Submit, payload: &[u8]) -> Result<(), SendError> {
        let loan = self.core.loan_copy(payload)?;
        self.send_loan(task, loan)
    }

    /// Like [`send`](Self::send), but while the queue is full it waits
    /// (backing off up to 1 ms between attempts) for at most `timeout`.
    pub fn send_timeout(
        &self,
        task: crate::Submit,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), SendError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut pause = Duration::from_micros(10);
        loop {
            match self.send(task, payload) {
                Err(SendError::QueueFull) => {}
                other => return other,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(SendError::QueueFull);
            }
            if let Ok(_op) = self.core.enter() {
                self.core.ex.sweep_expired(now_ms());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// Submits a loaned chunk (zero-copy) with the priority and tag set in
    /// `task`. On error the chunk returns to the pool.
    ///
    /// [`SendError::Corrupt`] also when the ready queue stays stalled behind
    /// a worker that stopped between taking a queue slot and releasing it
    /// (it died there): the task is then recorded in the ledger but on no
    /// queue until the reclaim pass that retires the dead worker rebuilds
    /// the queues, so it may still be delivered (at least once).
    pub fn send_loan(&self, task: crate::Submit, loan: Loan<'_>) -> Result<(), SendError> {
        let crate::Submit { priority, tag } = task;
        loan.check_owner(&self.core.ex)?;
        if priority >= PRIORITIES {
            return Err(SendError::InvalidPriority { priority });
        }
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter()?;
        let corrupt = |what| SendError::Corrupt(Corrupt(what));
        let free = ex.task_queue(FREE_QUEUE).ok_or(corrupt("no task region"))?;
        let Some(index) = free.pop()? else {
            return Err(SendError::QueueFull);
        };
        let entry = ex
            .task_entry(index)
            .ok_or(corrupt("free task index out of range"))?;
        let me = self.core.index as u16;
        let reserved = entry
            .reserve(me)
            .map_err(|_| corrupt("a free-queue entry was not free"))?;
        let h = ex.task_header().ok_or(corrupt("no task region"))?;
        let seq = h.next_seq.fetch_add(1, Ordering::Relaxed);
        let (chunk, len, _owner) = loan.into_raw();
        entry.write_body(&TaskBody {
            chunk,
            len,
            tag,
            seq,
        });
        entry
            .publish(reserved, priority)
            .map_err(|_| corrupt("a reserved task entry moved"))?;
        // Published: from here the task is submitted, whatever the push.
        ex.push_committed(READY_QUEUE + usize::from(priority), index)?;
        h.submitted.fetch_add(1, Ordering::Relaxed);
        let mut workers = self.workers.borrow_mut();
        workers.refresh(ex, Role::Worker);
        for w in &workers.list {
            ex.node.wake(w.node);
        }
        self.core.after_send();
        Ok(())
    }
}

/// The working side of a task exchange. Takes tasks within its prefetch
/// limit; acks or nacks each.
pub struct Worker {
    core: PortCore,
    prefetch: u32,
    /// The task this worker nacked and last passed over to the others
    /// (ledger index), and since when: after [`PASS_OVER`] it takes it back.
    passed_over: std::cell::Cell<Option<(u32, Instant)>>,
    /// The deliveries alive in this process, and whether each owns the
    /// chunk's reference (acked through [`Worker::ack`] while it lived).
    live: RefCell<Vec<LiveDelivery>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core
            .debug_struct(f, "Worker")
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

/// A [`Delivery`] not yet dropped.
struct LiveDelivery {
    id: TaskId,
    chunk: u32,
    /// The ledger's reference passed to the delivery at its ack (recorded in
    /// the worker's holdings); released when the delivery drops.
    owned: bool,
}

/// How long a worker leaves a task it nacked to other workers with room
/// before it takes the task back itself.
pub const PASS_OVER: Duration = Duration::from_millis(50);

impl Worker {
    /// Its prefetch limit.
    pub fn prefetch_limit(&self) -> u32 {
        self.prefetch
    }

    /// Deliveries it holds now (not acked, nacked or taken back).
    pub fn held(&self) -> u32 {
        self.core
            .ex
            .port(self.core.index)
            .map_or(0, |p| p.tasks.held.load(Ordering::Relaxed))
    }

    /// The next task if one is ready and this worker is under its prefetch
    /// limit (never blocks). Also takes back deliveries (of any worker) whose
    /// ack deadline passed.
    pub fn try_receive(&self) -> Result<Option<Delivery<'_>>, RecvError> {
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter()?;
        let now = now_ms();
        ex.sweep_expired(now);
        let me = self.core.index;
        let line = &ex
            .port(me)
            .ok_or(Corrupt("worker port out of range"))?
            .tasks;
        if line.held.load(Ordering::Acquire) >= self.prefetch {
            return Ok(None);
        }
        let deadline = now.saturating_add(ex.ack_timeout_ms());
        for p in (0..PRIORITIES).rev() {
            let Some(queue) = ex.task_queue(READY_QUEUE + usize::from(p)) else {
                continue;
            };
            // At most one pass over the queue: a task passed over comes
            // back at its end.
            let mut passed = None;
            while let Some(index) = queue.pop()? {
                let Some(entry) = ex.task_entry(index) else {
                    continue;
                };
                let Ok(word) = entry.load() else { continue };
                if word.state != TaskState::Queued {
                    continue;
                }
                // (A push that fails falls through: the task is claimed
                // here rather than left out of its queue.)
                if passed == Some(index) && push_index(&queue, index).is_ok() {
                    break; // round the queue: leave it queued
                }
                if passed.is_none()
                    && word.holder == me as u16
                    && word.deliveries > 0
                    && self.pass_over(index)
                    && ex.another_worker_has_room(me)
                    && push_index(&queue, index).is_ok()
                {
                    passed = Some(index);
                    continue;
                }
                // A body that does not fit the pool is never delivered (it
                // stays queued for `shmex ls` to show; reclaim recounts it).
                let body = entry.read_body();
                if ex.payload_ptr(body.chunk, body.len as usize).is_err() {
                    continue;
                }
                let Ok(delivered) = entry.claim(word, me as u16, deadline) else {
                    continue;
                };
                if self.passed_over.get().is_some_and(|(i, _)| i == index) {
                    self.passed_over.set(None);
                }
                return Ok(Some(self.deliver(index, body, delivered)?));
            }
        }
        Ok(None)
    }

    /// Whether to leave task `index`, which this worker nacked, to the other
    /// workers: yes for [`PASS_OVER`] after this worker first met it queued
    /// again, then no (nobody else took it: this worker may).
    fn pass_over(&self, index: u32) -> bool {
        let now = Instant::now();
        match self.passed_over.get() {
            Some((i, since)) if i == index => now.duration_since(since) < PASS_OVER,
            _ => {
                self.passed_over.set(Some((index, now)));
                true
            }
        }
    }

    /// Builds the delivery of a task just claimed (its body checked). Inside
    /// the operation.
    ///
    /// The delivery takes no reference of its own: it reads the chunk under
    /// the ledger's reference while the task is delivered to this worker
    /// (`claim` and reading the body happen under one entry generation, so
    /// no stall between them can make it retain a chunk freed meanwhile).
    fn deliver(
        &self,
        index: u32,
        body: TaskBody,
        word: TaskWord,
    ) -> Result<Delivery<'_>, RecvError> {
        let ex: &ExchangeInner = &self.core.ex;
        let line = &ex
            .port(self.core.index)
            .ok_or(Corrupt("worker port out of range"))?
            .tasks;
        let held = line.held.fetch_add(1, Ordering::AcqRel) + 1;
        line.max_held.fetch_max(held, Ordering::Relaxed);
        line.delivered.fetch_add(1, Ordering::Relaxed);
        if word.deliveries > 1 {
            if let Some(h) = ex.task_header() {
                h.redelivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        let id = TaskId::new(index, word.generation);
        self.live.borrow_mut().push(LiveDelivery {
            id,
            chunk: body.chunk,
            owned: false,
        });
        Ok(Delivery {
            worker: self,
            chunk: body.chunk,
            len: body.len as usize,
            tag: body.tag,
            id,
            priority: word.priority,
            deliveries: u32::from(word.deliveries),
        })
    }

    /// True when [`try_receive`](Self::try_receive) may find a task (or the
    /// exchange went down).
    fn ready(&self) -> bool {
        let ex = &self.core.ex;
        ex.is_down()
            || self.core.releases_pending()
            || (self.held() < self.prefetch
                && (0..PRIORITIES).any(|p| {
                    ex.task_queue(READY_QUEUE + usize::from(p))
                        .is_some_and(|q| q.len_hint() > 0)
                }))
    }

    fn take_until(&self, timeout: Option<Duration>) -> Result<Delivery<'_>, RecvError> {
        let deadline = timeout.and_then(deadline);
        let forever = timeout.is_none() || deadline.is_none();
        let sweep = Duration::from_millis((self.core.ex.ack_timeout_ms() / 4).clamp(1, 100));
        let mut phantom = crate::waitset::Phantom::default();
        loop {
            if let Some(d) = self.try_receive()? {
                return Ok(d);
            }
            if self.held() >= self.prefetch {
                return Err(RecvError::PrefetchLimit {
                    limit: self.prefetch,
                });
            }
            let until = crate::waitset::until_next_check(deadline, sweep);
            let woke = wait_until(&self.core.ex.node, until, || self.ready());
            // `ready` reads queue positions other processes write: a
            // submitter that died between claiming a queue slot and
            // publishing it leaves the queue looking non-empty for good. So
            // the deadline is checked whether or not the wait said ready,
            // and a readiness that `try_receive` keeps not confirming backs off
            // and starts a reclaim pass (which rebuilds the queues).
            if !forever && crate::waitset::expired(deadline) {
                return Err(RecvError::Timeout);
            }
            if woke && phantom.step(deadline) {
                self.core.ex.reclaim_now();
            }
        }
    }

    /// Blocks until a task is ready. Fails at once with
    /// [`RecvError::PrefetchLimit`] when the worker already holds its limit.
    pub fn receive(&self) -> Result<Delivery<'_>, RecvError> {
        self.take_until(None)
    }

    /// Blocks at most `timeout`; [`RecvError::Timeout`] after, whatever the
    /// task queues' shared words say: a queue can look non-empty for good
    /// when a submitter died between claiming a slot and publishing it. A
    /// wait that keeps finding such phantom tasks backs off (sleeps up to
    /// 1 ms per round) and starts a reclaim pass every 100 ms, which rebuilds
    /// the queues once the dead submitter is found.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Delivery<'_>, RecvError> {
        self.take_until(Some(timeout))
    }

    /// Completes task `id`: frees its ledger entry and its chunk (once its
    /// [`Delivery`] is dropped too). [`TaskError::NotHeld`] when this worker
    /// does not hold that delivery (acked or nacked already, taken back
    /// after its ack timeout, another worker's).
    pub fn ack(&self, id: TaskId) -> Result<(), TaskError> {
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter().map_err(|_| TaskError::ExchangeDown)?;
        let chunk = ex.ack_task(self.core.index, id)?;
        // The ledger's reference passes to the delivery if it still lives
        // (its payload stays readable until it drops), else goes.
        let mut live = self.live.borrow_mut();
        match live.iter_mut().find(|d| d.id == id && !d.owned) {
            Some(d) => {
                d.owned = true;
                d.chunk = chunk;
                ex.hold(self.core.index, chunk);
            }
            None => ex.release_ref(chunk),
        }
        drop(live);
        Ok(ex.free_entry(id.entry())?)
    }

    /// Hands task `id` back: to the ready queue when `requeue`, unless it
    /// was delivered `max_deliveries` times; else to the dead-letter queue.
    /// A requeued task goes to another worker when one has room: this
    /// worker's takes pass it over for [`PASS_OVER`] while another worker is
    /// under its prefetch limit, then take it back if nobody did. Errors as
    /// for [`ack`](Self::ack).
    pub fn nack(&self, id: TaskId, requeue: bool) -> Result<(), TaskError> {
        let _op = self.core.enter().map_err(|_| TaskError::ExchangeDown)?;
        self.core.ex.nack_task(self.core.index, id, requeue)
    }

    /// Takes the oldest dead letter off the dead-letter queue, if any: its
    /// payload, tag and delivery count. Dropping it frees it.
    pub fn try_receive_dead_letter(&self) -> Result<Option<DeadLetter<'_>>, RecvError> {
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter()?;
        let dead = ex.task_queue(DEAD_QUEUE).ok_or(Corrupt("no task region"))?;
        while let Some(index) = dead.pop()? {
            let Some(entry) = ex.task_entry(index) else {
                continue;
            };
            let Ok(word) = entry.load() else { continue };
            if word.state != TaskState::DeadLetter {
                continue;
            }
            let body = entry.read_body();
            if entry.release_dead_letter(word.generation).is_err() {
                continue;
            }
            ex.push_committed(FREE_QUEUE, index)?;
            // The ledger's reference passes to the dead letter.
            ex.hold(self.core.index, body.chunk);
            ex.payload_ptr(body.chunk, body.len as usize)?;
            return Ok(Some(DeadLetter {
                worker: self,
                chunk: body.chunk,
                len: body.len as usize,
                tag: body.tag,
                deliveries: u32::from(word.deliveries),
                priority: word.priority,
            }));
        }
        Ok(None)
    }
}

impl Drop for Worker {
    /// A worker that leaves gives back the tasks it still holds: they are
    /// requeued at once (a dead worker's are requeued by reclaim), and never
    /// charged to the next port in its slot.
    fn drop(&mut self) {
        let ex: &ExchangeInner = &self.core.ex;
        let Ok(_op) = self.core.enter() else { return };
        let me = self.core.index as u16;
        let max = ex.max_deliveries();
        let mut requeued = false;
        for i in 0..ex.limits.queue_depth {
            let Some(e) = ex.task_entry(i) else { break };
            let Ok(w) = e.load() else { continue };
            if w.state == TaskState::Delivered && w.holder == me {
                if let Ok(returned) = e.requeue_from(me, max) {
                    requeued |= matches!(returned, Returned::Requeued(_));
                    let _ = ex.route_returned(i, returned);
                }
            }
        }
        if let Some(p) = ex.port(self.core.index) {
            p.tasks.held.store(0, Ordering::Relaxed);
        }
        if requeued {
            ex.wake_workers();
        }
    }
}

impl Waitable for Worker {
    fn has_pending(&self) -> bool {
        self.ready()
    }
    fn wait_node(&self) -> WaitNode {
        WaitNode(self.core.ex.node.clone())
    }
}

/// A task delivered to a worker, read in place. Ack or nack it through
/// [`ack`](Self::ack) / [`nack`](Self::nack) (or the worker's, with
/// [`id`](Self::id)); dropping it without either leaves the task delivered
/// until its ack timeout, when it is taken back and redelivered.
///
/// Not `Send` (it borrows its worker, which one thread uses at a time);
/// [`into_owned`](Self::into_owned) makes a `Send` one:
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// fn try_it(worker: &shmex::Worker) {
///     let delivery = worker.receive().unwrap();
///     needs_send(delivery); // error: `Worker` cannot be shared between threads
/// }
/// ```
pub struct Delivery<'a> {
    worker: &'a Worker,
    chunk: u32,
    len: usize,
    tag: u64,
    id: TaskId,
    priority: u8,
    deliveries: u32,
}

impl Delivery<'_> {
    /// The delivery's id, for [`Worker::ack`] / [`Worker::nack`].
    pub fn id(&self) -> TaskId {
        self.id
    }
    /// The submitter's tag.
    pub fn tag(&self) -> u64 {
        self.tag
    }
    /// Its priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }
    /// How many times the task has been delivered, this time included.
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }
    /// True when the task was delivered before (nacked, timed out, or its
    /// worker died).
    pub fn redelivered(&self) -> bool {
        self.deliveries > 1
    }
    /// The payload bytes, in place. They stay the task's while this worker
    /// holds the task, and after an ack for as long as this delivery lives.
    /// Once the task was taken back (ack timeout) or nacked, another
    /// delivery of it may end and its chunk be reused: the bytes read then
    /// may belong to a later payload.
    pub fn payload(&self) -> &[u8] {
        self
    }
    /// Acks it ([`Worker::ack`]).
    pub fn ack(self) -> Result<(), TaskError> {
        self.worker.ack(self.id)
    }
    /// Nacks it ([`Worker::nack`]).
    pub fn nack(self, requeue: bool) -> Result<(), TaskError> {
        self.worker.nack(self.id, requeue)
    }

    /// Turns it into an [`OwnedDelivery`]: `Send + Sync`, `'static`, acked,
    /// nacked or dropped on any thread. [`Worker::ack`] with its id still
    /// works, but then the payload may be reused at once: ack it through
    /// [`OwnedDelivery::ack`] instead.
    pub fn into_owned(self) -> OwnedDelivery {
        let d = std::mem::ManuallyDrop::new(self);
        // It leaves the worker's list of live deliveries: the owned value
        // does its own bookkeeping through the keeper.
        let held = {
            let mut live = d.worker.live.borrow_mut();
            match live.iter().position(|l| l.id == d.id) {
                Some(i) => {
                    let l = live.swap_remove(i);
                    l.owned.then_some(l.chunk)
                }
                None => None,
            }
        };
        OwnedDelivery {
            keeper: d.worker.core.keeper().register(),
            chunk: held.unwrap_or(d.chunk),
            len: d.len,
            tag: d.tag,
            id: d.id,
            priority: d.priority,
            deliveries: d.deliveries,
            on_drop: held.map(|chunk| Release::Held { chunk }),
        }
    }
}

/// A task delivery that is `Send + Sync` and `'static`: made by
/// [`Delivery::into_owned`], read in place, then acked, nacked or dropped on
/// any thread.
///
/// **Ack and nack are carried out by the worker**, on its thread, at its next
/// operation (any call on the worker: a blocked `receive` wakes up for them) or
/// when the worker is dropped (before it requeues what it still holds). So
/// [`ack`](Self::ack) and [`nack`](Self::nack) return nothing: an ack that
/// reaches the worker after the task's ack deadline finds it taken back (and
/// redelivered), as [`Worker::ack`] would report with `TaskError::NotHeld`.
/// Keep ack timeouts well above the worker's operation interval.
///
/// Dropped without an ack or nack, the task stays delivered until its ack
/// timeout, as for a [`Delivery`]. After its worker was dropped, the task
/// was requeued already: ack and nack do nothing, the payload stays
/// readable (the bytes may belong to a later payload, as for a `Delivery`
/// taken back).
///
/// On a crash of the process, reclaim requeues the task (if not acked) and
/// frees the chunk exactly once, as for any delivery.
pub struct OwnedDelivery {
    keeper: std::sync::Arc<Keeper>,
    chunk: u32,
    len: usize,
    tag: u64,
    id: TaskId,
    priority: u8,
    deliveries: u32,
    /// What its drop leaves to the worker: the reference it holds after an
    /// ack through [`Worker::ack`], or its own ack or nack.
    on_drop: Option<Release>,
}

impl OwnedDelivery {
    /// The delivery's id ([`Delivery::id`]).
    pub fn id(&self) -> TaskId {
        self.id
    }
    /// The submitter's tag.
    pub fn tag(&self) -> u64 {
        self.tag
    }
    /// Its priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }
    /// How many times the task has been delivered, this time included.
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }
    /// True when the task was delivered before.
    pub fn redelivered(&self) -> bool {
        self.deliveries > 1
    }
    /// The payload bytes, in place ([`Delivery::payload`]).
    pub fn payload(&self) -> &[u8] {
        self
    }
    /// Acks it: the worker carries the ack out at its next operation (see
    /// the type's docs).
    pub fn ack(mut self) {
        if self.on_drop.is_none() {
            self.on_drop = Some(Release::Ack { id: self.id });
        }
    }
    /// Nacks it (requeued when `requeue`, else dead-lettered): the worker
    /// carries it out at its next operation (see the type's docs).
    pub fn nack(mut self, requeue: bool) {
        if self.on_drop.is_none() {
            self.on_drop = Some(Release::Nack {
                id: self.id,
                requeue,
            });
        }
    }
}

impl std::ops::Deref for OwnedDelivery {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        payload(self.keeper.ex(), self.chunk, self.len)
    }
}

impl std::fmt::Debug for OwnedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedDelivery")
            .field("id", &self.id)
            .field("tag", &self.tag)
            .field("priority", &self.priority)
            .field("deliveries", &self.deliveries)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for OwnedDelivery {
    fn drop(&mut self) {
        self.keeper.release(self.on_drop.take());
    }
}

fn payload(ex: &ExchangeInner, chunk: u32, len: usize) -> &[u8] {
    match ex.payload_ptr(chunk, len) {
        // SAFETY: payload_ptr checked that chunk and len lie inside the
        // mapping, which lives as long as `ex`. A reference on the chunk
        // (the ledger's while the task is ours, then the one passed to us)
        // keeps the pool from handing it out; after an expiry or a nack the
        // bytes may be reused, under the payload model of `Sample`: bytes
        // in shared memory may change under the reader, who never derives
        // an index or length from them unchecked.
        Ok(p) => unsafe { std::slice::from_raw_parts(p, len) },
        Err(_) => &[],
    }
}

impl std::ops::Deref for Delivery<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        payload(&self.worker.core.ex, self.chunk, self.len)
    }
}

impl std::fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("tag", &self.tag)
            .field("priority", &self.priority)
            .field("deliveries", &self.deliveries)
            .field("len", &self.len)
            .finish()
    }
}

/// Drops the holder's reference to a task's chunk.
fn release_held(worker: &Worker, chunk: u32) {
    let core = &worker.core;
    if let Ok(_op) = core.enter() {
        Release::Held { chunk }.run(&core.ex, core.index, false);
    }
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        let owned = {
            let mut live = self.worker.live.borrow_mut();
            match live.iter().position(|d| d.id == self.id) {
                Some(i) => {
                    let d = live.swap_remove(i);
                    d.owned.then_some(d.chunk)
                }
                None => None,
            }
        };
        if let Some(chunk) = owned {
            release_held(self.worker, chunk);
        }
    }
}

/// A task taken off the dead-letter queue: delivered `max_deliveries` times
/// without an ack, or nacked without requeue. Dropping it frees it.
pub struct DeadLetter<'a> {
    worker: &'a Worker,
    chunk: u32,
    len: usize,
    tag: u64,
    deliveries: u32,
    priority: u8,
}

impl std::fmt::Debug for DeadLetter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("tag", &self.tag)
            .field("priority", &self.priority)
            .field("deliveries", &self.deliveries)
            .field("len", &self.len)
            .finish()
    }
}

impl DeadLetter<'_> {
    /// The submitter's tag.
    pub fn tag(&self) -> u64 {
        self.tag
    }
    /// How many times it was delivered.
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }
    /// Its priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }
}

impl std::ops::Deref for DeadLetter<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        payload(&self.worker.core.ex, self.chunk, self.len)
    }
}

impl Drop for DeadLetter<'_> {
    fn drop(&mut self) {
        release_held(self.worker, self.chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmex_core::mpmc::{MpmcControl, MpmcSlot};

    /// Issue 12 item 9: a push that stays stalled behind a consumer that
    /// took a slot and never released it (it died there) is an error, never
    /// `Ok` with the index dropped.
    #[test]
    fn push_index_reports_a_stall_instead_of_dropping_the_index() {
        let control = MpmcControl::new();
        // Capacity 2. Position 0 was published (seq 1) and its consumer
        // claimed it (head 1) but never released the slot (seq 2 would);
        // position 1 is published. The next push, at position 2, needs slot
        // 0 back.
        let slots = [MpmcSlot::new(1), MpmcSlot::new(2)];
        control.head.store(1, Ordering::Relaxed);
        control.tail.store(2, Ordering::Relaxed);
        let queue = Mpmc::new(&control, &slots).expect("queue");
        assert_eq!(queue.push(9), Err(MpmcPushError::Stalled));
        assert!(push_index(&queue, 9).is_err());
        // Nothing was pushed.
        assert_eq!(control.tail.load(Ordering::Relaxed), 2);
    }

    /// Found by `shmex soak`: an ack whose free-queue push stalled behind a
    /// submitter stopped in the middle of its pop reported `Corrupt`,
    /// although the ack had committed in the ledger (the soak counted the
    /// task lost), and the entry left the free queue for good. The ack is
    /// `Ok`; the entry is parked and pushed by a later operation.
    #[test]
    fn an_ack_behind_a_stalled_free_queue_is_ok_and_its_entry_comes_back() {
        use crate::{Limits, Node, Pattern};
        let ns = format!("unit-ackstall-{}", std::process::id());
        let node = Node::builder("t").namespace(&ns).create().expect("node");
        let limits = Limits {
            chunk_size: 64,
            chunk_count: 8,
            queue_depth: 2,
            max_ports: 2,
            ..Limits::default()
        };
        let ex = node
            .create_exchange("x", Pattern::Tasks, limits)
            .expect("create");
        let submitter = ex.submitter().expect("submitter");
        let worker = ex.worker(1).expect("worker");
        submitter
            .send(crate::Submit::new().tag(1), b"a")
            .expect("submit");
        let id = worker.try_receive().expect("take").expect("a task").id();
        // The free queue's slot 0 (first of the task slots): the submit popped
        // position 0; make it look as if that consumer stopped before
        // releasing the slot (sequence 1: published, not yet read).
        let inner = &ex.inner;
        let seq: &shmex_core::mpmc::MpmcSlot =
            inner.seg.get(inner.layout.task_slots).expect("slot 0");
        let seq: &std::sync::atomic::AtomicU32 =
            // SAFETY: `MpmcSlot` is `repr(C)` and starts with its sequence word.
            unsafe { &*(seq as *const shmex_core::mpmc::MpmcSlot).cast() };
        seq.store(1, Ordering::Relaxed);
        assert!(worker.ack(id).is_ok(), "the ack committed");
        // The stopped consumer resumes and releases its slot.
        seq.store(2, Ordering::Relaxed);
        // Both entries serve again: the parked one was pushed back.
        submitter
            .send(crate::Submit::new().tag(2), b"b")
            .expect("second submit");
        submitter
            .send(crate::Submit::new().tag(3), b"c")
            .expect("third submit: the acked entry is back");
        drop((submitter, worker, ex, node));
        let left = crate::Namespace::new(crate::DEFAULT_ROOT, ns).segment_files();
        assert!(left.is_empty(), "{left:?}");
    }
}

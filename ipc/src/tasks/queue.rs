//! The task queue inside the exchange: submitting into the ledger, taking,
//! acking, nacking and expiring deliveries, rebuilding the queues.

use super::*;

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

    pub(super) fn max_deliveries(&self) -> u8 {
        self.task_header().map_or(5, |h| {
            u8::try_from(h.max_deliveries.load(Ordering::Relaxed)).unwrap_or(u8::MAX)
        })
    }

    pub(super) fn ack_timeout_ms(&self) -> u64 {
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
    pub(super) fn task_rebuilds(&self) -> u64 {
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
    pub(super) fn route_returned(&self, index: u32, returned: Returned) -> Result<(), Corrupt> {
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
    pub(super) fn sweep_expired(&self, now: u64) {
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
    pub(super) fn worker_lost_one(&self, port: u32) {
        if let Some(p) = self.port(port) {
            let _ = p
                .tasks
                .held
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |h| h.checked_sub(1));
        }
    }

    /// Wakes the node of every worker (a no-op for those not asleep).
    pub(super) fn wake_workers(&self) {
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
    pub(super) fn another_worker_has_room(&self, me: u32) -> bool {
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
pub(super) fn now_ms() -> u64 {
    crate::sys::monotonic_ms()
}

/// How many times [`push_index`] retries a push that stalls behind a
/// stopped consumer before it reports the stall.
pub(super) const PUSH_STALL_RETRIES: u32 = 100_000;

/// Pushes a ledger index on a task queue. A queue never fills (it has a slot
/// per entry), but a push can stall behind a consumer paused between taking
/// a slot and handing it back: retry for a while. A consumer that died there
/// stalls it for good: then the push fails with [`Corrupt`] ("task queue
/// stalled"), never `Ok` with the index dropped, so the caller reports it.
/// The entry's state word still says where it belongs, and the reclaim pass
/// that retires the dead consumer rebuilds the queues from the ledger.
pub(super) fn push_index(queue: &Mpmc<'_>, index: u32) -> Result<(), PushFailed> {
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
pub(super) enum PushFailed {
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

/// The [`PatternReclaim`](crate::exchange::PatternReclaim) of task
/// exchanges: [`ExchangeInner::reclaim_tasks`].
pub(crate) struct TasksReclaim;

impl crate::exchange::PatternReclaim for TasksReclaim {
    fn count(&self, ex: &ExchangeInner, live: &[bool], counts: &mut [u32]) {
        ex.reclaim_tasks(live, counts);
    }
}

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
use crate::exchange::{Exchange, ExchangeInner, Parked, PortCore, Role, Targets};
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

pub use crate::layout::TaskId;

mod delivery;
mod queue;
mod submitter;
mod worker;

pub use delivery::{DeadLetter, Delivery, OwnedDelivery};
pub(crate) use queue::TasksReclaim;
use queue::{now_ms, push_index};
pub use submitter::Submitter;
pub use worker::{Worker, PASS_OVER};

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
#[non_exhaustive]
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
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use super::queue::push_index;
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

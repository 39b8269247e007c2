//! Task ledger: the entries of a task exchange and their state machine.
//!
//! Each [`TaskEntry`] holds one task (which chunk, how long, the submitter's
//! tag, its submission order) and a **state word**, a packed [`TaskWord`]
//! whose `generation` moves on with every transition. Every transition is a
//! single CAS of the state word from the exact word the caller expects, so of
//! several threads that start from the same word exactly one wins and the
//! others learn why they lost ([`TaskError`]). The 32-bit generation is the
//! ABA guard: a word seen before cannot come back until 2^32 transitions later.
//!
//! | transition | from | to |
//! |---|---|---|
//! | [`reserve`] | `Free` | `Reserved{submitter}` |
//! | [`cancel_reservation`] | `Reserved{submitter}` | `Free` |
//! | [`publish`] | `Reserved` (the exact word) | `Queued{priority}` |
//! | [`claim`] | `Queued` (the exact word) | `Delivered{worker}`, `deliveries + 1` |
//! | [`ack`] | `Delivered{worker}` at the caller's generation | `Free` |
//! | [`nack`] | `Delivered{worker}` at the caller's generation | `Queued` or `DeadLetter` |
//! | [`expire`] | `Delivered` with a due deadline of this delivery | `Queued` or `DeadLetter` |
//! | [`requeue_from`] | `Delivered{worker}` (dead worker) | `Queued` or `DeadLetter` |
//! | [`release_dead_letter`] | `DeadLetter` at the caller's generation | `Free` |
//!
//! A task returned without an ack goes to `DeadLetter` instead of `Queued`
//! once it has been delivered `max_deliveries` times (see
//! [`limit_reached`]), or when nacked without requeue.
//!
//! The task exchange keeps, beside the ledger, queues of entry indices
//! ([`crate::mpmc`]): free entries, queued entries per priority, dead
//! letters. A thread pushes an index only after winning the transition into
//! the matching state, and pops it before attempting the transition out of
//! it. The state words are the truth: after a crash, while every live user is
//! paused, the queues are rebuilt from them ([`Ledger::rebuild_queues`]).
//!
//! Guarantees, for callers that follow the protocol:
//! - **One outcome per delivery.** A delivery (a successful [`claim`]) ends
//!   by exactly one of: the worker's [`ack`], its [`nack`], an [`expire`] of
//!   its ack deadline, or a [`requeue_from`] of its dead worker. All of them
//!   start from the same word, and the first CAS changes its generation.
//! - **One holder at a time.** A task is delivered to at most one worker at a
//!   time: only a `Queued` entry can be claimed, and a claim leaves it
//!   `Delivered`.
//! - **Deliveries are counted.** Every claim increments `deliveries`
//!   (saturating at 255); requeueing never resets it, so a task that keeps
//!   failing reaches the delivery limit and is dead-lettered.
//! - **Deadlines belong to one delivery.** The ack deadline is stamped with
//!   the low 16 bits of the delivery's generation; a deadline stamped for
//!   another generation (an older delivery's, or none yet because the
//!   claimer has not stored it) never expires the entry. A claimer that dies
//!   between its claim and its stamp therefore leaves a delivery that does
//!   not time out: reclaim of the dead worker ([`requeue_from`]) returns it.
//!   (A stale stamp could match again only after 2^16 generations without a
//!   single stamped delivery, i.e. 32768 claimers in a row dying in that
//!   window.)
//!
//! Shared memory is untrusted: a state word no transition can produce
//! (unknown state, reserved bits set) unpacks to [`Corrupt`]; indices are
//! checked by [`Ledger::entry`].
//!
//! [`reserve`]: TaskEntry::reserve
//! [`cancel_reservation`]: TaskEntry::cancel_reservation
//! [`publish`]: TaskEntry::publish
//! [`release_dead_letter`]: TaskEntry::release_dead_letter
//! [`claim`]: TaskEntry::claim
//! [`ack`]: TaskEntry::ack
//! [`nack`]: TaskEntry::nack
//! [`expire`]: TaskEntry::expire
//! [`requeue_from`]: TaskEntry::requeue_from
//!
//! ```
//! use shmex_core::ledger::{Returned, TaskBody, TaskEntry, TaskState};
//! let e = TaskEntry::new();
//! let w = e.reserve(1).unwrap(); // submitter port 1
//! e.write_body(&TaskBody { chunk: 3, len: 10, tag: 42, seq: 0 });
//! let w = e.publish(w, 0).unwrap();
//! let d = e.claim(w, 7, 1_000).unwrap(); // worker port 7, deadline at 1000 ms
//! assert_eq!(e.read_body().tag, 42);
//! assert_eq!(e.expire(999, 5), Ok(None)); // not yet due
//! let q = e.expire(1_000, 5).unwrap().unwrap(); // due: back to the queue
//! assert!(matches!(q, Returned::Requeued(_)));
//! assert!(e.ack(7, d.generation).is_err()); // too late
//! assert_eq!(e.load().unwrap().state, TaskState::Queued);
//! ```

use crate::mpmc::{Mpmc, PushError};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::Corrupt;

/// Number of priorities (`0..PRIORITIES`); which one is served first is the
/// caller's policy.
pub const PRIORITIES: u8 = 4;

/// `holder` value meaning "no port".
pub const NO_HOLDER: u16 = 0xFFFF;

/// `max_deliveries` value meaning "never dead-letter because of the number of
/// deliveries".
pub const UNLIMITED_DELIVERIES: u8 = 0;

/// Deadline meaning "never expires" (the largest 48-bit value).
pub const NO_DEADLINE: u64 = (1 << 48) - 1;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum TaskState {
    /// Unused; its index is on the free queue.
    Free = 0,
    /// Taken by a submitter (`holder`) that is filling it in; in no queue.
    Reserved = 1,
    /// Waiting for a worker; its index is on the ready queue of its priority.
    Queued = 2,
    /// Held by the worker `holder` until it acks, nacks, or the deadline passes.
    Delivered = 3,
    /// Given up on; its index is on the dead-letter queue.
    DeadLetter = 4,
}

impl TaskState {
    fn from_bits(bits: u64) -> Option<Self> {
        Some(match bits {
            0 => TaskState::Free,
            1 => TaskState::Reserved,
            2 => TaskState::Queued,
            3 => TaskState::Delivered,
            4 => TaskState::DeadLetter,
            _ => return None,
        })
    }
}

/// The unpacked state word of a [`TaskEntry`].
///
/// Packed layout (`u64`, least significant bit first): `generation` bits
/// 0–31, `holder` 32–47, `deliveries` 48–55, `state` 56–58, `priority`
/// 59–60; bits 61–63 are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskWord {
    /// Incremented (wrapping) by every transition: the ABA guard.
    pub generation: u32,
    /// The state.
    pub state: TaskState,
    /// The submitter port while `Reserved`, the worker port while
    /// `Delivered`, the last worker otherwise; [`NO_HOLDER`] if none.
    pub holder: u16,
    /// How many times the task has been claimed (saturating).
    pub deliveries: u8,
    /// Priority, `0..PRIORITIES` (set by [`TaskEntry::publish`]).
    pub priority: u8,
}

const STATE_SHIFT: u32 = 56;
const PRIORITY_SHIFT: u32 = 59;
const RESERVED_MASK: u64 = !((1 << 61) - 1);

impl TaskWord {
    /// The word of a never-used entry: `Free`, generation 0, no holder.
    pub const FREE: TaskWord = TaskWord {
        generation: 0,
        state: TaskState::Free,
        holder: NO_HOLDER,
        deliveries: 0,
        priority: 0,
    };

    /// Packs the word. Only the low 2 bits of `priority` are kept (callers
    /// validate it; [`TaskEntry::publish`] does).
    pub fn pack(&self) -> u64 {
        u64::from(self.generation)
            | u64::from(self.holder) << 32
            | u64::from(self.deliveries) << 48
            | (self.state as u64) << STATE_SHIFT
            | u64::from(self.priority & 3) << PRIORITY_SHIFT
    }

    /// Unpacks a word read from shared memory: `Corrupt` for a state no
    /// transition produces or set reserved bits.
    pub fn unpack(word: u64) -> Result<Self, Corrupt> {
        if word & RESERVED_MASK != 0 {
            return Err(Corrupt("task state word has reserved bits set"));
        }
        let state = TaskState::from_bits((word >> STATE_SHIFT) & 7)
            .ok_or(Corrupt("task state word names no state"))?;
        Ok(TaskWord {
            generation: word as u32,
            state,
            holder: (word >> 32) as u16,
            deliveries: (word >> 48) as u8,
            priority: ((word >> PRIORITY_SHIFT) & 3) as u8,
        })
    }

    /// This word moved to `state` by one transition (next generation).
    fn next(self, state: TaskState, holder: u16) -> TaskWord {
        TaskWord {
            generation: self.generation.wrapping_add(1),
            state,
            holder,
            ..self
        }
    }
}

/// A task's ack deadline as stored: `(gen16 << 48) | ms`, where `gen16` is
/// the low 16 bits of the generation of the delivery it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Low 16 bits of the generation of the `Delivered` word it belongs to.
    pub generation16: u16,
    /// The deadline in the caller's milliseconds ([`NO_DEADLINE`]: never).
    pub ms: u64,
}

impl Deadline {
    /// The deadline of the delivery at `generation`, due at `ms` (clamped to
    /// [`NO_DEADLINE`]).
    pub fn new(generation: u32, ms: u64) -> Self {
        Deadline {
            generation16: generation as u16,
            ms: ms.min(NO_DEADLINE),
        }
    }

    /// Packs the deadline word.
    pub fn pack(&self) -> u64 {
        u64::from(self.generation16) << 48 | self.ms.min(NO_DEADLINE)
    }

    /// Unpacks a deadline word (every bit pattern is some deadline).
    pub fn unpack(word: u64) -> Self {
        Deadline {
            generation16: (word >> 48) as u16,
            ms: word & NO_DEADLINE,
        }
    }

    /// True when this deadline belongs to the delivery `word` and has passed
    /// at `now_ms`.
    pub fn expired_for(&self, word: &TaskWord, now_ms: u64) -> bool {
        word.state == TaskState::Delivered
            && self.generation16 == word.generation as u16
            && self.ms != NO_DEADLINE
            && self.ms <= now_ms
    }
}

/// The task itself, written by the submitter between [`TaskEntry::reserve`]
/// and [`TaskEntry::publish`] and read by the worker after
/// [`TaskEntry::claim`] (the state word's CAS carries the hand-over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskBody {
    /// Chunk index of the payload in the exchange's pool.
    pub chunk: u32,
    /// Payload length in bytes.
    pub len: u32,
    /// The submitter's tag.
    pub tag: u64,
    /// Submission order (FIFO within a priority; orders a rebuild).
    pub seq: u64,
}

/// One task: one cache line.
#[repr(C, align(64))]
pub struct TaskEntry {
    /// The packed [`TaskWord`]; changed only by the transitions' CAS.
    pub state: AtomicU64,
    /// [`TaskBody::chunk`].
    pub chunk: AtomicU32,
    /// [`TaskBody::len`].
    pub len: AtomicU32,
    /// [`TaskBody::tag`].
    pub tag: AtomicU64,
    /// [`TaskBody::seq`].
    pub seq: AtomicU64,
    /// The packed [`Deadline`] of the current (or last) delivery.
    pub deadline: AtomicU64,
}

/// Why a transition did not happen. The state word is unchanged by this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskError {
    /// The entry's generation is not the caller's: another transition came
    /// first (the task was acked already, taken back by its deadline, nacked,
    /// reclaimed, claimed by another worker...). Carries the current word.
    Stale(TaskWord),
    /// The entry is not in the state this transition starts from (at the
    /// caller's generation, if it gave one). Carries the current word.
    WrongState(TaskWord),
    /// The entry is in that state but held by another port. Carries the
    /// current word.
    NotHolder(TaskWord),
    /// The caller passed a value no entry may hold (a priority out of range,
    /// [`NO_HOLDER`] as a port).
    InvalidArgument(&'static str),
    /// The state word is garbage.
    Corrupt(Corrupt),
}

impl TaskError {
    /// The entry's word when the transition lost, if one was read.
    pub fn current(&self) -> Option<TaskWord> {
        match self {
            TaskError::Stale(w) | TaskError::WrongState(w) | TaskError::NotHolder(w) => Some(*w),
            _ => None,
        }
    }
}

impl core::fmt::Display for TaskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TaskError::Stale(w) => write!(f, "task moved on (now {w:?})"),
            TaskError::WrongState(w) => write!(f, "task in the wrong state ({w:?})"),
            TaskError::NotHolder(w) => write!(f, "task held by another port ({w:?})"),
            TaskError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            TaskError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for TaskError {}

impl From<Corrupt> for TaskError {
    fn from(c: Corrupt) -> Self {
        TaskError::Corrupt(c)
    }
}

/// Where a delivery that was not acked went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Back to `Queued`: push the index on the ready queue of `priority`.
    Requeued(TaskWord),
    /// To `DeadLetter` (delivery limit reached, or nacked without requeue):
    /// push the index on the dead-letter queue.
    DeadLettered(TaskWord),
}

impl Returned {
    /// The entry's new word.
    pub fn word(&self) -> TaskWord {
        match self {
            Returned::Requeued(w) | Returned::DeadLettered(w) => *w,
        }
    }
}

/// True when a task delivered `deliveries` times must not be requeued under
/// a limit of `max_deliveries` (a task is delivered at most that many times;
/// [`UNLIMITED_DELIVERIES`], 0: no limit).
pub fn limit_reached(deliveries: u8, max_deliveries: u8) -> bool {
    max_deliveries != UNLIMITED_DELIVERIES && deliveries >= max_deliveries
}

impl Default for TaskEntry {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskEntry {
    /// A free entry ([`TaskWord::FREE`], zero body; used to build ledgers on
    /// the heap).
    pub fn new() -> Self {
        TaskEntry {
            state: AtomicU64::new(TaskWord::FREE.pack()),
            chunk: AtomicU32::new(0),
            len: AtomicU32::new(0),
            tag: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            deadline: AtomicU64::new(Deadline::new(0, NO_DEADLINE).pack()),
        }
    }

    /// Resets the entry to [`TaskEntry::new`]'s content (single-threaded,
    /// before sharing).
    pub fn init(&self) {
        self.state.store(TaskWord::FREE.pack(), Ordering::Relaxed);
        self.write_body(&TaskBody::default());
        self.deadline
            .store(Deadline::new(0, NO_DEADLINE).pack(), Ordering::Relaxed);
    }

    /// The current state word.
    pub fn load(&self) -> Result<TaskWord, Corrupt> {
        TaskWord::unpack(self.state.load(Ordering::Acquire))
    }

    /// Writes the task (by the submitter, while it holds the entry `Reserved`).
    pub fn write_body(&self, body: &TaskBody) {
        self.chunk.store(body.chunk, Ordering::Relaxed);
        self.len.store(body.len, Ordering::Relaxed);
        self.tag.store(body.tag, Ordering::Relaxed);
        self.seq.store(body.seq, Ordering::Relaxed);
    }

    /// Reads the task (by the worker after its claim, or by anyone who won a
    /// transition out of `Queued`/`DeadLetter`). Values are unchecked: the
    /// caller validates the chunk index and length.
    pub fn read_body(&self) -> TaskBody {
        TaskBody {
            chunk: self.chunk.load(Ordering::Relaxed),
            len: self.len.load(Ordering::Relaxed),
            tag: self.tag.load(Ordering::Relaxed),
            seq: self.seq.load(Ordering::Relaxed),
        }
    }

    /// The deadline word as stored.
    pub fn deadline(&self) -> Deadline {
        Deadline::unpack(self.deadline.load(Ordering::Acquire))
    }

    /// CAS of the state word from `from` to `to`. On failure: `Stale` when
    /// the generation moved on, `WrongState` when the caller's `from` was
    /// never the word at that generation.
    fn cas(&self, from: TaskWord, to: TaskWord) -> Result<TaskWord, TaskError> {
        match self.state.compare_exchange(
            from.pack(),
            to.pack(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(to),
            Err(actual) => {
                let actual = TaskWord::unpack(actual)?;
                Err(if actual.generation != from.generation {
                    TaskError::Stale(actual)
                } else {
                    TaskError::WrongState(actual)
                })
            }
        }
    }

    /// Loads the word and checks that it is `state` at `generation` (if
    /// given) held by `holder` (if given).
    fn expect(
        &self,
        generation: Option<u32>,
        state: TaskState,
        holder: Option<u16>,
    ) -> Result<TaskWord, TaskError> {
        let w = self.load()?;
        if generation.is_some_and(|g| g != w.generation) {
            return Err(TaskError::Stale(w));
        }
        if w.state != state {
            return Err(TaskError::WrongState(w));
        }
        if holder.is_some_and(|h| h != w.holder) {
            return Err(TaskError::NotHolder(w));
        }
        Ok(w)
    }

    /// `Free` → `Reserved{submitter}`, deliveries 0. The caller (which popped
    /// the index from the free queue) then writes the body and publishes.
    pub fn reserve(&self, submitter: u16) -> Result<TaskWord, TaskError> {
        check_port(submitter)?;
        let w = self.expect(None, TaskState::Free, None)?;
        let to = TaskWord {
            deliveries: 0,
            priority: 0,
            ..w.next(TaskState::Reserved, submitter)
        };
        self.cas(w, to)
    }

    /// `Reserved{submitter}` → `Free`: the submitter gives the entry back
    /// unpublished, or reclaim does it for a dead submitter. The caller then
    /// pushes the index on the free queue.
    pub fn cancel_reservation(&self, submitter: u16) -> Result<TaskWord, TaskError> {
        let w = self.expect(None, TaskState::Reserved, Some(submitter))?;
        self.cas(w, w.next(TaskState::Free, NO_HOLDER))
    }

    /// `Reserved` (exactly `reserved`, as [`reserve`](Self::reserve)
    /// returned it) → `Queued` at `priority`, no holder. Releases the body
    /// written before. The caller then pushes the index on the ready queue
    /// of `priority`.
    pub fn publish(&self, reserved: TaskWord, priority: u8) -> Result<TaskWord, TaskError> {
        if priority >= PRIORITIES {
            return Err(TaskError::InvalidArgument("task priority out of range"));
        }
        if reserved.state != TaskState::Reserved {
            return Err(TaskError::WrongState(reserved));
        }
        let to = TaskWord {
            priority,
            ..reserved.next(TaskState::Queued, NO_HOLDER)
        };
        self.cas(reserved, to)
    }

    /// `Queued` (exactly `queued`, as loaded after popping the index from a
    /// ready queue) → `Delivered{worker}` with `deliveries + 1`, then stamps
    /// the ack deadline `deadline_ms` ([`NO_DEADLINE`]: none) with the new
    /// generation. Returns the `Delivered` word, whose generation the worker
    /// passes to [`ack`](Self::ack) / [`nack`](Self::nack). Acquires the
    /// body: read it with [`read_body`](Self::read_body) afterwards.
    pub fn claim(
        &self,
        queued: TaskWord,
        worker: u16,
        deadline_ms: u64,
    ) -> Result<TaskWord, TaskError> {
        check_port(worker)?;
        if queued.state != TaskState::Queued {
            return Err(TaskError::WrongState(queued));
        }
        let to = TaskWord {
            deliveries: queued.deliveries.saturating_add(1),
            ..queued.next(TaskState::Delivered, worker)
        };
        let w = self.cas(queued, to)?;
        self.deadline.store(
            Deadline::new(w.generation, deadline_ms).pack(),
            Ordering::Release,
        );
        Ok(w)
    }

    /// `Delivered{worker}` at `generation` → `Free`. The caller then releases
    /// the chunk and pushes the index on the free queue. Fails with `Stale`
    /// when that delivery is over (acked already, taken back by its
    /// deadline, reclaimed), `WrongState` / `NotHolder` when the entry was
    /// never delivered to `worker` at `generation`.
    pub fn ack(&self, worker: u16, generation: u32) -> Result<TaskWord, TaskError> {
        let w = self.expect(Some(generation), TaskState::Delivered, Some(worker))?;
        self.cas(w, w.next(TaskState::Free, worker))
    }

    /// `Delivered{worker}` at `generation` → `Queued` when `requeue` and the
    /// delivery limit is not reached (see [`limit_reached`]), else
    /// `DeadLetter`. Errors as for [`ack`](Self::ack).
    pub fn nack(
        &self,
        worker: u16,
        generation: u32,
        requeue: bool,
        max_deliveries: u8,
    ) -> Result<Returned, TaskError> {
        let w = self.expect(Some(generation), TaskState::Delivered, Some(worker))?;
        self.give_back(w, requeue, max_deliveries)
    }

    /// Takes the task back from a worker that missed its ack deadline: if the
    /// entry is `Delivered`, its deadline is stamped with that delivery's
    /// generation and `deadline.ms <= now_ms`, moves it to `Queued` (or
    /// `DeadLetter` when the delivery limit is reached). `Ok(None)` when not
    /// due, not delivered, stamped for another delivery, or when the worker's
    /// ack (or anything else) won the race.
    pub fn expire(&self, now_ms: u64, max_deliveries: u8) -> Result<Option<Returned>, Corrupt> {
        let w = self.load()?;
        if w.state != TaskState::Delivered || !self.deadline().expired_for(&w, now_ms) {
            return Ok(None);
        }
        match self.give_back(w, true, max_deliveries) {
            Ok(r) => Ok(Some(r)),
            Err(TaskError::Corrupt(c)) => Err(c),
            Err(_) => Ok(None),
        }
    }

    /// Takes the task back from `worker`, which is dead (reclaim):
    /// `Delivered{worker}` → `Queued` (or `DeadLetter` when the delivery
    /// limit is reached), whatever the deadline.
    pub fn requeue_from(&self, worker: u16, max_deliveries: u8) -> Result<Returned, TaskError> {
        let w = self.expect(None, TaskState::Delivered, Some(worker))?;
        self.give_back(w, true, max_deliveries)
    }

    /// Reclaim's part for one entry, while every live user is paused and
    /// before [`Ledger::rebuild_queues`]: cancels a reservation (no live
    /// submitter is inside a submit, so its submitter died) and requeues a
    /// delivery to a worker `alive` says is dead ([`requeue_from`]).
    /// Entries in any other state are left alone. `Corrupt` when the state
    /// word is garbage.
    ///
    /// [`requeue_from`]: TaskEntry::requeue_from
    pub fn resolve_dead(
        &self,
        alive: impl Fn(u16) -> bool,
        max_deliveries: u8,
    ) -> Result<(), Corrupt> {
        let w = self.load()?;
        match w.state {
            TaskState::Reserved => {
                let _ = self.cancel_reservation(w.holder);
            }
            TaskState::Delivered if !alive(w.holder) => {
                let _ = self.requeue_from(w.holder, max_deliveries);
            }
            _ => {}
        }
        Ok(())
    }

    fn give_back(
        &self,
        w: TaskWord,
        requeue: bool,
        max_deliveries: u8,
    ) -> Result<Returned, TaskError> {
        if requeue && !limit_reached(w.deliveries, max_deliveries) {
            self.cas(w, w.next(TaskState::Queued, w.holder))
                .map(Returned::Requeued)
        } else {
            self.cas(w, w.next(TaskState::DeadLetter, w.holder))
                .map(Returned::DeadLettered)
        }
    }

    /// `DeadLetter` at `generation` → `Free` (by whoever popped the index
    /// from the dead-letter queue, once done with the body). The caller then
    /// releases the chunk and pushes the index on the free queue.
    pub fn release_dead_letter(&self, generation: u32) -> Result<TaskWord, TaskError> {
        let w = self.expect(Some(generation), TaskState::DeadLetter, None)?;
        self.cas(w, w.next(TaskState::Free, w.holder))
    }
}

fn check_port(port: u16) -> Result<(), TaskError> {
    if port == NO_HOLDER {
        return Err(TaskError::InvalidArgument("port id is NO_HOLDER"));
    }
    Ok(())
}

/// How many entries a rebuild put on each queue, and how many it left out
/// because a live user holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Entries on the free queue.
    pub free: u32,
    /// Entries on each priority's ready queue.
    pub ready: [u32; PRIORITIES as usize],
    /// Entries on the dead-letter queue.
    pub dead_letter: u32,
    /// `Reserved` entries (in no queue).
    pub reserved: u32,
    /// `Delivered` entries (in no queue).
    pub delivered: u32,
}

/// A view of a task ledger: its entries, wherever they live.
#[derive(Clone, Copy)]
pub struct Ledger<'a> {
    entries: &'a [TaskEntry],
}

impl<'a> Ledger<'a> {
    /// Views `entries` as a ledger (`None` when there are `u32::MAX` or more:
    /// indices are `u32`).
    pub fn new(entries: &'a [TaskEntry]) -> Option<Self> {
        if entries.len() >= u32::MAX as usize {
            return None;
        }
        Some(Ledger { entries })
    }

    /// Every entry free (single-threaded, before sharing).
    pub fn init(&self) {
        for e in self.entries {
            e.init();
        }
    }

    /// Number of entries.
    pub fn capacity(&self) -> u32 {
        self.entries.len() as u32
    }

    /// Entry `index`, checked (an index popped from a queue is untrusted).
    pub fn entry(&self, index: u32) -> Result<&'a TaskEntry, Corrupt> {
        self.entries
            .get(index as usize)
            .ok_or(Corrupt("task entry index out of range"))
    }

    /// Refills the queues from the state words: every `Free` entry on `free`
    /// (in index order), every `Queued` entry on the ready queue of its
    /// priority and every `DeadLetter` entry on `dead_letter` (both in
    /// submission order, `seq`, then index). `Reserved` and `Delivered`
    /// entries belong to live users and stay out; resolve the dead users'
    /// ones first ([`TaskEntry::cancel_reservation`],
    /// [`TaskEntry::requeue_from`]). Only while no other thread uses the
    /// ledger or the queues. Fails with `Corrupt` on a garbage state word
    /// (queues untouched) and `Full` when a queue is smaller than what it
    /// must hold (that queue holds the first ones; the layout is wrong).
    pub fn rebuild_queues(
        &self,
        free: &Mpmc<'_>,
        ready: &[Mpmc<'_>; PRIORITIES as usize],
        dead_letter: &Mpmc<'_>,
    ) -> Result<QueueCounts, PushError> {
        let mut counts = QueueCounts::default();
        let mut free_list = Vec::new();
        let mut ready_lists: [Vec<(u64, u32)>; PRIORITIES as usize] = Default::default();
        let mut dead_list = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let i = i as u32;
            let w = e.load()?;
            match w.state {
                TaskState::Free => free_list.push(i),
                TaskState::Queued => {
                    ready_lists[usize::from(w.priority)].push((e.seq.load(Ordering::Relaxed), i))
                }
                TaskState::DeadLetter => dead_list.push((e.seq.load(Ordering::Relaxed), i)),
                TaskState::Reserved => counts.reserved += 1,
                TaskState::Delivered => counts.delivered += 1,
            }
        }
        counts.free = free.rebuild(free_list)?;
        for (p, (q, mut list)) in ready.iter().zip(ready_lists).enumerate() {
            list.sort_unstable();
            counts.ready[p] = q.rebuild(list.into_iter().map(|(_, i)| i))?;
        }
        dead_list.sort_unstable();
        counts.dead_letter = dead_letter.rebuild(dead_list.into_iter().map(|(_, i)| i))?;
        Ok(counts)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::mpmc::{MpmcControl, MpmcSlot};

    const SUB: u16 = 1;
    const W1: u16 = 7;
    const W2: u16 = 8;

    /// A queued entry at priority 2 (reserved by `SUB`, body tag 42).
    fn queued() -> (TaskEntry, TaskWord) {
        let e = TaskEntry::new();
        let r = e.reserve(SUB).unwrap();
        e.write_body(&TaskBody {
            chunk: 3,
            len: 10,
            tag: 42,
            seq: 5,
        });
        let q = e.publish(r, 2).unwrap();
        (e, q)
    }

    #[test]
    fn pack_round_trip() {
        let states = [
            TaskState::Free,
            TaskState::Reserved,
            TaskState::Queued,
            TaskState::Delivered,
            TaskState::DeadLetter,
        ];
        for state in states {
            for generation in [0, 1, 0xdead_beef, u32::MAX] {
                for holder in [0, 5, NO_HOLDER - 1, NO_HOLDER] {
                    for deliveries in [0, 1, 255] {
                        for priority in 0..PRIORITIES {
                            let w = TaskWord {
                                generation,
                                state,
                                holder,
                                deliveries,
                                priority,
                            };
                            assert_eq!(TaskWord::unpack(w.pack()), Ok(w));
                        }
                    }
                }
            }
        }
        assert_eq!(TaskWord::unpack(0).unwrap().state, TaskState::Free);
        assert_eq!(TaskWord::unpack(TaskWord::FREE.pack()), Ok(TaskWord::FREE));
    }

    #[test]
    fn garbage_words_are_corrupt() {
        for state in 5u64..8 {
            assert!(TaskWord::unpack(state << STATE_SHIFT).is_err());
        }
        for bit in 61..64 {
            assert!(TaskWord::unpack(1 << bit).is_err());
        }
        assert!(TaskWord::unpack(u64::MAX).is_err());
        let e = TaskEntry::new();
        e.state.store(u64::MAX, Ordering::Relaxed);
        assert!(e.load().is_err());
        assert!(matches!(e.reserve(SUB), Err(TaskError::Corrupt(_))));
        assert!(matches!(e.ack(W1, 0), Err(TaskError::Corrupt(_))));
        assert!(e.expire(u64::MAX, 0).is_err());
        // Every bit pattern of the deadline word is some deadline.
        assert_eq!(Deadline::unpack(u64::MAX).ms, NO_DEADLINE);
        // Random words: unpack never panics and round-trips when it succeeds.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let rounds = if cfg!(miri) { 1_000 } else { 100_000 };
        for _ in 0..rounds {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if let Ok(w) = TaskWord::unpack(x) {
                assert_eq!(w.pack(), x);
            }
        }
    }

    #[test]
    fn full_life_cycle_ack() {
        let (e, q) = queued();
        assert_eq!(q.state, TaskState::Queued);
        assert_eq!((q.priority, q.holder, q.deliveries), (2, NO_HOLDER, 0));
        assert_eq!(q.generation, 2);
        let d = e.claim(q, W1, 100).unwrap();
        assert_eq!(
            (d.state, d.holder, d.deliveries),
            (TaskState::Delivered, W1, 1)
        );
        assert_eq!(d.generation, 3);
        assert_eq!(e.deadline(), Deadline::new(3, 100));
        assert_eq!(e.read_body().tag, 42);
        assert!(matches!(
            e.ack(W2, d.generation),
            Err(TaskError::NotHolder(_))
        ));
        let f = e.ack(W1, d.generation).unwrap();
        assert_eq!((f.state, f.holder, f.generation), (TaskState::Free, W1, 4));
        // Acked twice.
        assert!(matches!(e.ack(W1, d.generation), Err(TaskError::Stale(_))));
        // Reusable.
        let r = e.reserve(SUB).unwrap();
        assert_eq!((r.deliveries, r.holder), (0, SUB));
    }

    #[test]
    fn wrong_states_are_refused() {
        let e = TaskEntry::new();
        let free = e.load().unwrap();
        assert!(matches!(
            e.claim(free, W1, 0),
            Err(TaskError::WrongState(_))
        ));
        assert!(matches!(e.publish(free, 0), Err(TaskError::WrongState(_))));
        assert!(matches!(e.ack(W1, 0), Err(TaskError::WrongState(_))));
        assert!(matches!(
            e.requeue_from(W1, 0),
            Err(TaskError::WrongState(_))
        ));
        assert!(matches!(
            e.release_dead_letter(0),
            Err(TaskError::WrongState(_))
        ));
        assert!(matches!(
            e.cancel_reservation(SUB),
            Err(TaskError::WrongState(_))
        ));
        assert_eq!(e.expire(u64::MAX - 1, 0), Ok(None));
        assert!(matches!(
            e.reserve(NO_HOLDER),
            Err(TaskError::InvalidArgument(_))
        ));
        let r = e.reserve(SUB).unwrap();
        assert!(matches!(e.reserve(SUB), Err(TaskError::WrongState(_))));
        assert!(matches!(
            e.publish(r, PRIORITIES),
            Err(TaskError::InvalidArgument(_))
        ));
        // A forged Reserved word at the right generation but another holder.
        let forged = TaskWord { holder: 99, ..r };
        assert!(matches!(
            e.publish(forged, 0),
            Err(TaskError::WrongState(_))
        ));
        assert!(matches!(
            e.cancel_reservation(99),
            Err(TaskError::NotHolder(_))
        ));
        let f = e.cancel_reservation(SUB).unwrap();
        assert_eq!(f.state, TaskState::Free);
        // The reservation's word is stale now.
        assert!(matches!(e.publish(r, 0), Err(TaskError::Stale(_))));
        // Claim from a stale queued word.
        let (e, q) = queued();
        e.claim(q, W1, 0).unwrap();
        assert!(matches!(e.claim(q, W2, 0), Err(TaskError::Stale(_))));
        assert!(matches!(
            e.claim(q, NO_HOLDER, 0),
            Err(TaskError::InvalidArgument(_))
        ));
    }

    #[test]
    fn nack_requeues_until_the_limit() {
        let (e, mut q) = queued();
        for n in 1..=3u8 {
            let d = e.claim(q, W1, 0).unwrap();
            assert_eq!(d.deliveries, n);
            match e.nack(W1, d.generation, true, 3).unwrap() {
                Returned::Requeued(w) if n < 3 => {
                    assert_eq!(
                        (w.state, w.holder, w.deliveries, w.priority),
                        (TaskState::Queued, W1, n, 2)
                    );
                    q = w;
                }
                Returned::DeadLettered(w) if n == 3 => {
                    assert_eq!(w.state, TaskState::DeadLetter);
                    assert!(matches!(
                        e.nack(W1, d.generation, true, 3),
                        Err(TaskError::Stale(_))
                    ));
                    assert!(matches!(
                        e.release_dead_letter(d.generation),
                        Err(TaskError::Stale(_))
                    ));
                    let f = e.release_dead_letter(w.generation).unwrap();
                    assert_eq!(f.state, TaskState::Free);
                }
                other => panic!("delivery {n}: {other:?}"),
            }
        }
        // Without requeue: dead-lettered at once, whatever the limit.
        let (e, q) = queued();
        let d = e.claim(q, W1, 0).unwrap();
        let r = e
            .nack(W1, d.generation, false, UNLIMITED_DELIVERIES)
            .unwrap();
        assert!(matches!(r, Returned::DeadLettered(_)));
        // Unlimited: deliveries saturate, the task is always requeued.
        let (e, mut q) = queued();
        for _ in 0..300 {
            let d = e.claim(q, W1, 0).unwrap();
            q = e
                .nack(W1, d.generation, true, UNLIMITED_DELIVERIES)
                .unwrap()
                .word();
            assert_eq!(q.state, TaskState::Queued);
        }
        assert_eq!(q.deliveries, 255);
        assert!(limit_reached(255, 255));
        assert!(!limit_reached(254, 255));
        assert!(!limit_reached(255, UNLIMITED_DELIVERIES));
    }

    #[test]
    fn expiry_needs_a_due_deadline_of_this_delivery() {
        let (e, q) = queued();
        let d = e.claim(q, W1, 100).unwrap();
        assert_eq!(e.expire(99, 0), Ok(None));
        let r = e.expire(100, 0).unwrap().unwrap();
        let w = r.word();
        assert!(matches!(r, Returned::Requeued(_)));
        assert_eq!(
            (w.state, w.holder, w.deliveries),
            (TaskState::Queued, W1, 1)
        );
        assert!(matches!(e.ack(W1, d.generation), Err(TaskError::Stale(_))));
        // A second claim with no deadline: never expires.
        let d2 = e.claim(w, W2, NO_DEADLINE).unwrap();
        assert_eq!(e.expire(u64::MAX, 0), Ok(None));
        // A stale stamp (the previous delivery's, long due) does not expire
        // a delivery whose claimer has not stamped yet.
        e.deadline
            .store(Deadline::new(d.generation, 0).pack(), Ordering::Relaxed);
        assert_eq!(e.expire(u64::MAX, 0), Ok(None));
        e.ack(W2, d2.generation).unwrap();
        // The delivery limit turns an expiry into a dead letter.
        let (e, q) = queued();
        e.claim(q, W1, 0).unwrap();
        let r = e.expire(0, 1).unwrap().unwrap();
        assert!(matches!(r, Returned::DeadLettered(_)));
    }

    #[test]
    fn requeue_from_a_dead_worker() {
        let (e, q) = queued();
        let d = e.claim(q, W1, NO_DEADLINE).unwrap();
        assert!(matches!(
            e.requeue_from(W2, 0),
            Err(TaskError::NotHolder(_))
        ));
        let r = e.requeue_from(W1, 0).unwrap();
        assert_eq!(r.word().state, TaskState::Queued);
        assert!(matches!(e.ack(W1, d.generation), Err(TaskError::Stale(_))));
        let d = e.claim(r.word(), W2, 0).unwrap();
        assert!(matches!(
            e.requeue_from(W2, 2),
            Ok(Returned::DeadLettered(_))
        ));
        assert!(matches!(e.ack(W2, d.generation), Err(TaskError::Stale(_))));
    }

    #[test]
    fn generation_wraps() {
        let e = TaskEntry::new();
        let near = TaskWord {
            generation: u32::MAX - 1,
            ..TaskWord::FREE
        };
        e.state.store(near.pack(), Ordering::Relaxed);
        let r = e.reserve(SUB).unwrap();
        assert_eq!(r.generation, u32::MAX);
        let q = e.publish(r, 1).unwrap();
        assert_eq!(q.generation, 0);
        let d = e.claim(q, W1, 10).unwrap();
        assert_eq!(d.generation, 1);
        assert_eq!(e.deadline().generation16, 1);
        assert!(e.expire(10, 0).unwrap().is_some());
        assert!(matches!(e.ack(W1, 1), Err(TaskError::Stale(_))));
        // The deadline stamp compares the low 16 bits only.
        let w = TaskWord {
            generation: 0x1_0005,
            state: TaskState::Delivered,
            holder: W1,
            deliveries: 1,
            priority: 0,
        };
        assert!(Deadline::new(5, 0).expired_for(&w, 0));
        assert!(!Deadline::new(6, 0).expired_for(&w, 0));
        assert_eq!(Deadline::new(5, u64::MAX).ms, NO_DEADLINE);
    }

    struct Queue {
        control: MpmcControl,
        slots: Vec<MpmcSlot>,
    }

    impl Queue {
        fn new(n: u32) -> Self {
            Queue {
                control: MpmcControl::new(),
                slots: (0..n).map(MpmcSlot::new).collect(),
            }
        }
        fn q(&self) -> Mpmc<'_> {
            Mpmc::new(&self.control, &self.slots).unwrap()
        }
    }

    fn drain(q: &Mpmc<'_>) -> Vec<u32> {
        std::iter::from_fn(|| q.pop().unwrap()).collect()
    }

    #[test]
    fn rebuild_queues_from_the_states() {
        let entries: Vec<TaskEntry> = (0..8).map(|_| TaskEntry::new()).collect();
        let ledger = Ledger::new(&entries).unwrap();
        ledger.init();
        assert_eq!(ledger.capacity(), 8);
        assert!(ledger.entry(8).is_err());
        // Entry i: submitted with seq 10 - i, so later indices come first.
        let submit = |i: u32, priority: u8| {
            let e = ledger.entry(i).unwrap();
            let r = e.reserve(SUB).unwrap();
            e.write_body(&TaskBody {
                seq: u64::from(10 - i),
                ..TaskBody::default()
            });
            e.publish(r, priority).unwrap()
        };
        submit(1, 0);
        submit(2, 3);
        submit(3, 3);
        let q = submit(4, 1);
        ledger.entry(4).unwrap().claim(q, W1, 0).unwrap();
        ledger.entry(5).unwrap().reserve(SUB).unwrap();
        let q = submit(6, 0);
        let d = ledger.entry(6).unwrap().claim(q, W1, 0).unwrap();
        ledger
            .entry(6)
            .unwrap()
            .nack(W1, d.generation, false, 0)
            .unwrap();
        let q = submit(7, 0);
        let d = ledger.entry(7).unwrap().claim(q, W1, 0).unwrap();
        ledger
            .entry(7)
            .unwrap()
            .nack(W1, d.generation, false, 0)
            .unwrap();

        let free = Queue::new(8);
        let ready: Vec<Queue> = (0..PRIORITIES).map(|_| Queue::new(8)).collect();
        let dead = Queue::new(8);
        free.q().push(3).unwrap(); // stale content is discarded
        let ready_q = [ready[0].q(), ready[1].q(), ready[2].q(), ready[3].q()];
        let counts = ledger
            .rebuild_queues(&free.q(), &ready_q, &dead.q())
            .unwrap();
        assert_eq!(
            counts,
            QueueCounts {
                free: 1,
                ready: [1, 0, 0, 2],
                dead_letter: 2,
                reserved: 1,
                delivered: 1,
            }
        );
        assert_eq!(drain(&free.q()), vec![0]);
        assert_eq!(drain(&ready_q[0]), vec![1]);
        assert_eq!(drain(&ready_q[3]), vec![3, 2]);
        assert_eq!(drain(&dead.q()), vec![7, 6]);

        // Too small a queue, garbage state word.
        let small = Queue::new(2);
        for e in &entries[..3] {
            e.init(); // 3 free entries
        }
        assert_eq!(
            ledger.rebuild_queues(&small.q(), &ready_q, &dead.q()),
            Err(PushError::Full)
        );
        entries[0].state.store(u64::MAX, Ordering::Relaxed);
        assert!(matches!(
            ledger.rebuild_queues(&free.q(), &ready_q, &dead.q()),
            Err(PushError::Corrupt(_))
        ));
    }

    #[test]
    fn entry_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<TaskEntry>(), 64);
        assert_eq!(core::mem::align_of::<TaskEntry>(), 64);
    }
}

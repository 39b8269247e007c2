//! What a worker holds: `Delivery`, `OwnedDelivery`, and `DeadLetter`.

use super::*;

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
    pub(super) worker: &'a Worker,
    pub(super) chunk: u32,
    pub(super) len: usize,
    pub(super) tag: u64,
    pub(super) id: TaskId,
    pub(super) priority: u8,
    pub(super) deliveries: u32,
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
    pub(super) keeper: std::sync::Arc<Keeper>,
    pub(super) chunk: u32,
    pub(super) len: usize,
    pub(super) tag: u64,
    pub(super) id: TaskId,
    pub(super) priority: u8,
    pub(super) deliveries: u32,
    /// What its drop leaves to the worker: the reference it holds after an
    /// ack through [`Worker::ack`], or its own ack or nack.
    pub(super) on_drop: Option<Release>,
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

pub(super) fn payload(ex: &ExchangeInner, chunk: u32, len: usize) -> &[u8] {
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
pub(super) fn release_held(worker: &Worker, chunk: u32) {
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
    pub(super) worker: &'a Worker,
    pub(super) chunk: u32,
    pub(super) len: usize,
    pub(super) tag: u64,
    pub(super) deliveries: u32,
    pub(super) priority: u8,
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

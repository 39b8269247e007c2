//! Owned values: [`OwnedSample`], [`OwnedLoan`] (and the task exchange's
//! [`OwnedDelivery`](crate::OwnedDelivery)): payload handles that are `Send`, `'static`, and may be
//! dropped on any thread, also after their port was dropped.
//!
//! A [`Sample`](crate::Sample) or [`Loan`](crate::Loan) borrows its port and
//! its drop writes the port's records (busy counter, holdings bits, deferred
//! slot) with plain stores: only the port's thread may run it. An owned value
//! instead holds an `Arc` of its port's [`Keeper`], a small in-process record
//! the port creates on the first `into_owned`:
//!
//! - **While the port lives**, an owned value's drop (any thread) only pushes
//!   its release onto the keeper's pending list. The port carries the list
//!   out at the start of its next operation (a receive, send, loan, ack...:
//!   any call that enters the port), on its own thread, where its records
//!   are written as for a `Sample`. The first pending release wakes the
//!   port's node and makes the port look ready (`PortCore::has_pending`), so
//!   a receive blocked on it (alone or in a `WaitSet`) calls the port once.
//!   A port that never runs another operation carries the list out when it
//!   is dropped. Until then the chunk stays recorded in the port's holdings,
//!   exactly like a sample in hand.
//! - **When the port is dropped** with owned values outstanding, its slot is
//!   not freed: it goes to `PORT_CLOSING` (inbox drained, caches returned,
//!   nobody routes to it or attaches to it) and keeps its holdings bits. The
//!   keeper's lock now makes the thread holding it the slot's single writer:
//!   each owned value's drop releases its chunk at once under the lock (an
//!   operation on the closed slot, which a reclaim pass waits for), and the
//!   last one frees the slot. So payloads stay readable after the port is
//!   gone, and the reference is never handed to anyone else.
//! - **On a crash** nothing changes: the holdings bits of the (attached or
//!   closing) slot are the record, a reclaim pass retires the slot of the
//!   dead process and recounts every chunk from the living, so each chunk is
//!   freed exactly once whichever instruction the process died at.
//!
//! Why not let an owned value write the port's records itself under a lock
//! shared with the port? The port's hot path (every receive and release)
//! would take that lock. Here the port's only extra cost is one check of an
//! `Option` that stays `None` until `into_owned` is first called, and one
//! relaxed load of the pending flag once it is `Some`.

use crate::error::{PodError, SendError};
use crate::exchange::{Detach, ExchangeInner, PortCore};
use crate::sample::{release_loan, release_sample, Loan, SenderId};
use crate::tasks::TaskId;
use shmex_core::ring::Descriptor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One port's record of its owned values (see the module docs).
pub(crate) struct Keeper {
    ex: Arc<ExchangeInner>,
    port: u32,
    generation: u32,
    /// Set while `pending` may be non-empty: what the port's operations
    /// check (a hint: a stale `false` only delays a release to the next
    /// operation).
    pending_hint: AtomicBool,
    state: Mutex<KeeperState>,
}

struct KeeperState {
    /// The port still exists (it carries out the releases).
    open: bool,
    /// Owned values alive.
    outstanding: usize,
    /// Releases of owned values dropped while the port is open.
    pending: Vec<Release>,
}

/// What an owned value's drop leaves to do on its port.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Release {
    /// A received chunk ([`release_sample`]).
    Sample {
        chunk: u32,
        flags: u32,
        stream: Option<(u32, u32)>,
    },
    /// An unsent loan's chunk ([`release_loan`]).
    Loan { chunk: u32 },
    /// A task chunk whose reference the port holds (an acked delivery).
    Held { chunk: u32 },
    /// An owned delivery's ack ([`ExchangeInner::ack_task`]).
    Ack { id: TaskId },
    /// An owned delivery's nack ([`ExchangeInner::nack_task`]).
    Nack { id: TaskId, requeue: bool },
}

impl Release {
    /// Inside an operation on `port`, by its single writer. `defer`: a sole
    /// chunk may park in the port's deferred slot (the port lives on).
    pub(crate) fn run(self, ex: &ExchangeInner, port: u32, defer: bool) {
        match self {
            Release::Sample {
                chunk,
                flags,
                stream,
            } => release_sample(ex, port, chunk, flags, stream, defer),
            Release::Loan { chunk } => release_loan(ex, port, chunk),
            Release::Held { chunk } => {
                ex.unhold(port, chunk);
                ex.release_ref(chunk);
            }
            // A delivery taken back meanwhile is not the worker's to end
            // (the ack or nack lost to the ack timeout).
            Release::Ack { id } => {
                if let Ok(chunk) = ex.ack_task(port, id) {
                    ex.release_ref(chunk);
                    // A stalled free queue loses the entry until the next
                    // reclaim pass rebuilds the queues (as for `Worker::ack`,
                    // which reports it).
                    let _ = ex.free_entry(id.entry());
                }
            }
            Release::Nack { id, requeue } => {
                let _ = ex.nack_task(port, id, requeue);
            }
        }
    }
}

impl Keeper {
    pub(crate) fn new(ex: Arc<ExchangeInner>, port: u32, generation: u32) -> Arc<Keeper> {
        Arc::new(Keeper {
            ex,
            port,
            generation,
            pending_hint: AtomicBool::new(false),
            state: Mutex::new(KeeperState {
                open: true,
                outstanding: 0,
                pending: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, KeeperState> {
        // A panic while holding the lock (none in this module) leaves the
        // state consistent: every change is a single assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new owned value of this port (on the port's thread).
    pub(crate) fn register(self: &Arc<Self>) -> Arc<Keeper> {
        self.lock().outstanding += 1;
        self.clone()
    }

    /// An owned value is gone (any thread), leaving `release` to do.
    pub(crate) fn release(&self, release: Option<Release>) {
        let mut state = self.lock();
        state.outstanding = state.outstanding.saturating_sub(1);
        if state.open {
            if let Some(r) = release {
                state.pending.push(r);
                if state.pending.len() == 1 {
                    self.pending_hint.store(true, Ordering::Relaxed);
                    // A port blocked in a receive wakes up to carry it out
                    // (`PortCore::has_pending`): else a dry pool could wait
                    // for a receive that waits for a publication.
                    self.ex.node.wake(self.ex.node.index);
                }
            }
            return;
        }
        // The port is gone: the lock makes this thread its slot's single
        // writer. A down exchange is never used again: nothing to give back.
        if let Some(r) = release {
            if let Ok(_op) = self.ex.enter(self.port) {
                r.run(&self.ex, self.port, false);
            }
        }
        if state.outstanding == 0 {
            self.ex.detach(self.port, self.generation, Detach::Finish);
        }
    }

    /// True when releases wait for the port (a hint, see `pending_hint`).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending_hint.load(Ordering::Relaxed)
    }

    /// Carries out the releases of owned values dropped since the last call.
    /// On the port's thread, inside an outermost operation on the port.
    pub(crate) fn drain(&self) {
        if !self.pending_hint.load(Ordering::Relaxed) {
            return;
        }
        let pending = {
            let mut state = self.lock();
            self.pending_hint.store(false, Ordering::Relaxed);
            std::mem::take(&mut state.pending)
        };
        for r in pending {
            r.run(&self.ex, self.port, true);
        }
    }

    /// The port is dropped (on its thread): pending releases are carried
    /// out, then the port detaches, fully when no owned value is left, else
    /// to [`Detach::Close`] (the last owned value finishes it).
    pub(crate) fn port_dropped(&self) {
        let mut state = self.lock();
        if let Ok(_op) = self.ex.enter(self.port) {
            for r in std::mem::take(&mut state.pending) {
                r.run(&self.ex, self.port, true);
            }
        }
        self.pending_hint.store(false, Ordering::Relaxed);
        state.open = false;
        let how = if state.outstanding == 0 {
            Detach::Full
        } else {
            Detach::Close
        };
        self.ex.detach(self.port, self.generation, how);
    }

    /// The exchange it belongs to.
    pub(crate) fn ex(&self) -> &ExchangeInner {
        &self.ex
    }

    /// The payload of `chunk` (`len` bytes) in place; empty when out of the
    /// mapping.
    fn payload(&self, chunk: u32, len: usize) -> &[u8] {
        match self.ex.payload_ptr(chunk, len) {
            // SAFETY: payload_ptr checked that chunk and len lie inside the
            // mapping, which lives as long as `self.ex`. The owned value's
            // reference (recorded in its port's holdings) keeps the pool
            // from handing the chunk out until the value's release runs.
            // Bytes in shared memory may change under the reader (the
            // payload model of `Sample`).
            Ok(p) => unsafe { std::slice::from_raw_parts(p, len) },
            Err(_) => &[],
        }
    }
}

/// The fields of a [`Sample`](crate::Sample) an [`OwnedSample`] keeps.
pub(crate) struct SampleParts {
    pub chunk: u32,
    pub len: usize,
    pub tag: u64,
    pub flags: u32,
    pub stream: Option<(u32, u32)>,
    pub key: Option<Box<str>>,
    pub sender: Option<SenderId>,
}

/// A received payload that is `Send + Sync` and `'static`: made by
/// [`Sample::into_owned`](crate::Sample::into_owned), read in place like a
/// `Sample`, dropped on any thread.
///
/// **When the chunk goes back to the pool.** Dropped while its port lives,
/// the release waits for the port's next operation (any call on the port:
/// receive, send, loan...) or the port's drop, and runs there on the port's
/// thread. Dropped after its port was dropped, it releases at once. A port
/// blocked in a receive wakes up to carry the releases out (a `WaitSet`
/// reports the port ready once: call it). A port that sits idle, neither
/// called nor blocked, holds the chunks until its next call.
///
/// **After its port is gone** the payload stays readable and intact: the
/// port's slot stays reserved (closing: nobody routes to it) until the last
/// owned value of the port drops.
///
/// **On a crash** of the process the chunk is recorded in the port's
/// holdings, like a sample in hand: a reclaim pass frees it exactly once.
pub struct OwnedSample {
    keeper: Arc<Keeper>,
    parts: SampleParts,
}

impl OwnedSample {
    pub(crate) fn new(keeper: &Arc<Keeper>, parts: SampleParts) -> OwnedSample {
        OwnedSample {
            keeper: keeper.register(),
            parts,
        }
    }

    /// Name of the exchange it came through.
    pub fn exchange(&self) -> &str {
        &self.keeper.ex().name
    }

    /// The tag (as [`Sample::tag`](crate::Sample::tag)).
    pub fn tag(&self) -> u64 {
        self.parts.tag
    }

    /// The routing key it was published under (publish-subscribe only;
    /// `None` otherwise, or when the key bytes were invalid).
    pub fn key(&self) -> Option<&str> {
        self.parts.key.as_deref()
    }

    /// Who sent it (as [`Sample::sender`](crate::Sample::sender)).
    pub fn sender(&self) -> Option<SenderId> {
        self.parts.sender
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.parts.len
    }

    /// True for a zero-length payload.
    pub fn is_empty(&self) -> bool {
        self.parts.len == 0
    }

    /// The payload bytes, in place.
    pub fn payload(&self) -> &[u8] {
        self
    }

    /// The payload as a `T` (length and alignment must fit `T`).
    pub fn as_pod<T: bytemuck::Pod>(&self) -> Result<&T, PodError> {
        bytemuck::try_from_bytes(self).map_err(|e| PodError::new::<T>(self.parts.len, e))
    }
}

impl std::ops::Deref for OwnedSample {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.keeper.payload(self.parts.chunk, self.parts.len)
    }
}

impl std::fmt::Debug for OwnedSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedSample")
            .field("exchange", &self.exchange())
            .field("tag", &self.parts.tag)
            .field("key", &self.key())
            .field("len", &self.parts.len)
            .finish()
    }
}

impl Drop for OwnedSample {
    fn drop(&mut self) {
        let p = &self.parts;
        let release = (p.chunk != Descriptor::NO_CHUNK).then_some(Release::Sample {
            chunk: p.chunk,
            flags: p.flags,
            stream: p.stream,
        });
        self.keeper.release(release);
    }
}

/// A loaned chunk that is `Send` and `'static`: made by
/// [`Loan::into_owned`](crate::Loan::into_owned), written on any thread, then
/// sent through the port it came from
/// ([`Publisher::send_owned`](crate::Publisher::send_owned)) on that
/// port's thread. Dropping it unsent returns the chunk to the pool, when and
/// as an [`OwnedSample`]'s drop does (also after the port is gone, and on a
/// crash).
pub struct OwnedLoan {
    keeper: Arc<Keeper>,
    chunk: u32,
    len: usize,
}

impl OwnedLoan {
    pub(crate) fn new(keeper: &Arc<Keeper>, chunk: u32, len: usize) -> OwnedLoan {
        OwnedLoan {
            keeper: keeper.register(),
            chunk,
            len,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length payload.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens or grows the payload within the chunk size.
    pub fn set_len(&mut self, len: usize) -> Result<(), SendError> {
        let max = self.keeper.ex().limits.chunk_size as usize;
        if len > max {
            return Err(SendError::PayloadTooLarge { len, max });
        }
        self.len = len;
        Ok(())
    }

    /// The payload as a `T` (length and alignment must fit `T`).
    pub fn as_pod_mut<T: bytemuck::Pod>(&mut self) -> Result<&mut T, PodError> {
        let len = self.len;
        bytemuck::try_from_bytes_mut(self).map_err(|e| PodError::new::<T>(len, e))
    }

    /// Back into a [`Loan`] of `core`, its port ([`SendError::ForeignLoan`]
    /// for another port's; the owned loan is then dropped).
    pub(crate) fn into_loan(mut self, core: &PortCore) -> Result<Loan<'_>, SendError> {
        if !Arc::ptr_eq(core.keeper(), &self.keeper) {
            return Err(SendError::ForeignLoan);
        }
        let chunk = std::mem::replace(&mut self.chunk, Descriptor::NO_CHUNK);
        Ok(Loan::new(core, chunk, self.len))
    }
}

impl std::ops::Deref for OwnedLoan {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.keeper.payload(self.chunk, self.len)
    }
}

impl std::ops::DerefMut for OwnedLoan {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self.keeper.ex().payload_ptr(self.chunk, self.len) {
            // SAFETY: as in `Keeper::payload`; nobody else holds a reference
            // to an unsent chunk and `&mut self` is exclusive, so the mutable
            // view is exclusive in this process.
            Ok(p) => unsafe { std::slice::from_raw_parts_mut(p, self.len) },
            Err(_) => &mut [],
        }
    }
}

impl std::fmt::Debug for OwnedLoan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedLoan")
            .field("exchange", &self.keeper.ex().name)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for OwnedLoan {
    fn drop(&mut self) {
        let release =
            (self.chunk != Descriptor::NO_CHUNK).then_some(Release::Loan { chunk: self.chunk });
        self.keeper.release(release);
    }
}

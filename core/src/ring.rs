//! Bounded many-producer single-consumer descriptor ring.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue reduced to one consumer:
//! every slot carries its own sequence number, producers claim a position with a
//! CAS on `tail`, write the descriptor and publish it by storing `pos + 1` into
//! the slot's sequence; the consumer reads slots in order and advances `head`.
//! Producers learn that a slot is free from `head` rather than from the slot
//! (Lamport-style cached head, see [`Ring::push_cached`]), so slot lines are
//! written only by producers and the head line travels only when a producer's
//! cached head runs out.
//!
//! Guarantees:
//! - messages of one producer are consumed in the order that producer pushed them;
//! - nothing is lost or duplicated: a push either returns `Ok` and the
//!   descriptor is consumed exactly once, or returns [`PushError::Full`];
//! - producers never wait for each other beyond a CAS retry; a full ring is an
//!   error, never a block.
//!
//! A producer that dies between its CAS and its publish leaves one slot
//! unpublished; the consumer stops there until a survivor repairs it (the
//! liveness layer's job, not this module's).

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{Corrupt, MAX_RETRIES};
use crossbeam_utils::CachePadded;

/// What travels through a ring: which chunk, how many bytes, and two words
/// whose meaning belongs to the pattern (tag, reply address, sender, flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// Chunk index in the exchange's pool, or [`Descriptor::NO_CHUNK`].
    pub chunk: u32,
    /// Payload length in bytes.
    pub len: u32,
    /// Pattern-defined flags.
    pub flags: u32,
    /// Caller's tag (request tag, subscription tag, ...).
    pub tag: u64,
    /// Pattern-defined word (reply address, sender id, ...).
    pub meta: u64,
}

impl Descriptor {
    /// Chunk index meaning "this descriptor carries no payload".
    pub const NO_CHUNK: u32 = u32::MAX;
}

/// Producer and consumer positions. `tail` is written by producers, `head` only
/// by the consumer; each sits on its own cache line.
#[repr(C)]
pub struct RingControl {
    /// Next position a producer will claim (wrapping).
    pub tail: CachePadded<AtomicU32>,
    /// Next position the consumer will read (wrapping).
    pub head: CachePadded<AtomicU32>,
}

impl RingControl {
    /// Positions at zero (used to build rings on the heap).
    pub fn new() -> Self {
        RingControl {
            tail: CachePadded::new(AtomicU32::new(0)),
            head: CachePadded::new(AtomicU32::new(0)),
        }
    }
}

impl Default for RingControl {
    fn default() -> Self {
        Self::new()
    }
}

/// One ring slot: 32 bytes, two per cache line.
#[repr(C)]
pub struct Slot {
    /// `pos + 1` once the descriptor for position `pos` is published (left
    /// as is after consumption; `head` says which slots are free).
    pub seq: AtomicU32,
    chunk: AtomicU32,
    len: AtomicU32,
    flags: AtomicU32,
    tag: AtomicU64,
    meta: AtomicU64,
}

impl Slot {
    /// A slot initialised for position `pos` (used to build rings on the heap).
    pub fn new(pos: u32) -> Self {
        Slot {
            seq: AtomicU32::new(pos),
            chunk: AtomicU32::new(0),
            len: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            tag: AtomicU64::new(0),
            meta: AtomicU64::new(0),
        }
    }
}

/// Why a push did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Every slot holds an unconsumed descriptor.
    Full,
    /// The ring's words are inconsistent.
    Corrupt(Corrupt),
}

/// A view of one ring: its control words and its slots, wherever they live.
#[derive(Clone, Copy)]
pub struct Ring<'a> {
    control: &'a RingControl,
    slots: &'a [Slot],
    mask: u32,
}

impl<'a> Ring<'a> {
    /// Views `slots` as a ring. The slot count must be a power of two
    /// (`None` otherwise); the caller has validated it against the layout.
    pub fn new(control: &'a RingControl, slots: &'a [Slot]) -> Option<Self> {
        let n = slots.len();
        if n < 2 || !n.is_power_of_two() || n > (1 << 30) {
            return None;
        }
        Some(Ring {
            control,
            slots,
            mask: (n - 1) as u32,
        })
    }

    /// Initialises an all-zero ring in place (single-threaded, before sharing).
    pub fn init(&self) {
        for (i, s) in self.slots.iter().enumerate() {
            s.seq.store(i as u32, Ordering::Relaxed);
        }
        self.control.tail.store(0, Ordering::Relaxed);
        self.control.head.store(0, Ordering::Relaxed);
    }

    /// Number of slots.
    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    /// Pushes `d`. Lock-free; any number of producers. Reads the consumer's
    /// position afresh; see [`push_cached`](Self::push_cached).
    pub fn push(&self, d: &Descriptor) -> Result<(), PushError> {
        let mut head = self.control.head.load(Ordering::Acquire);
        self.push_cached(d, &mut head)
    }

    /// The consumer's position now (to seed a producer's head cache).
    pub fn head(&self) -> u32 {
        self.control.head.load(Ordering::Acquire)
    }

    /// Pushes `d` using `head_cache`, this producer's last reading of the
    /// consumer's position (seed it with [`head`](Self::head); it must never
    /// run ahead of the real head). A slot is known free when
    /// `pos - head < capacity`; the head line is only re-read when the cached
    /// value says the ring may be full, so a producer does not pull a line the
    /// consumer writes on every message.
    pub fn push_cached(&self, d: &Descriptor, head_cache: &mut u32) -> Result<(), PushError> {
        let capacity = self.mask + 1;
        let mut pos = self.control.tail.load(Ordering::Relaxed);
        for _ in 0..MAX_RETRIES {
            if pos.wrapping_sub(*head_cache) >= capacity {
                *head_cache = self.control.head.load(Ordering::Acquire);
                let used = pos.wrapping_sub(*head_cache);
                if used == capacity {
                    return Err(PushError::Full);
                }
                if used > capacity {
                    // Our `pos` is older than the consumer's head: catch up.
                    pos = self.control.tail.load(Ordering::Relaxed);
                    crate::sync::spin_hint();
                    continue;
                }
            }
            match self.control.tail.compare_exchange_weak(
                pos,
                pos.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // `pos - head < capacity` for a head we acquired: the
                    // consumer has finished with this slot's previous lap.
                    let slot = &self.slots[(pos & self.mask) as usize];
                    slot.chunk.store(d.chunk, Ordering::Relaxed);
                    slot.len.store(d.len, Ordering::Relaxed);
                    slot.flags.store(d.flags, Ordering::Relaxed);
                    slot.tag.store(d.tag, Ordering::Relaxed);
                    slot.meta.store(d.meta, Ordering::Relaxed);
                    slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                    return Ok(());
                }
                Err(actual) => pos = actual,
            }
            crate::sync::spin_hint();
        }
        Err(PushError::Corrupt(Corrupt("ring tail never settles")))
    }

    /// Pops the oldest descriptor, or `None` when nothing is published at the
    /// head. Only the ring's single consumer may call this.
    pub fn pop(&self) -> Option<Descriptor> {
        let pos = self.control.head.load(Ordering::Relaxed);
        let slot = &self.slots[(pos & self.mask) as usize];
        if slot.seq.load(Ordering::Acquire) != pos.wrapping_add(1) {
            return None;
        }
        let d = Descriptor {
            chunk: slot.chunk.load(Ordering::Relaxed),
            len: slot.len.load(Ordering::Relaxed),
            flags: slot.flags.load(Ordering::Relaxed),
            tag: slot.tag.load(Ordering::Relaxed),
            meta: slot.meta.load(Ordering::Relaxed),
        };
        // No write-back to the slot: producers learn that it is free from
        // `head`, and the stale sequence (`pos + 1`) can never equal the next
        // lap's `pos + capacity + 1`, so the slot line is written only by
        // producers. Release: a producer that reads this head may reuse it.
        self.control
            .head
            .store(pos.wrapping_add(1), Ordering::Release);
        Some(d)
    }

    /// True when a descriptor is published at the head (what a waiter checks).
    pub fn has_pending(&self) -> bool {
        let pos = self.control.head.load(Ordering::Relaxed);
        let slot = &self.slots[(pos & self.mask) as usize];
        slot.seq.load(Ordering::Acquire) == pos.wrapping_add(1)
    }

    /// Publishes `filler` in every slot between the consumer and the tail
    /// that a producer claimed but never published (it died between its CAS
    /// and its publish), so the consumer can pass them. Returns how many.
    /// Only while no producer is inside a push (reclaim runs it with every
    /// live user paused): a claimed slot is then a dead producer's.
    pub fn void_unpublished(&self, filler: &Descriptor) -> u32 {
        let head = self.control.head.load(Ordering::Acquire);
        let tail = self.control.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(self.capacity());
        let mut voided = 0;
        for i in 0..n {
            let pos = head.wrapping_add(i);
            let slot = &self.slots[(pos & self.mask) as usize];
            if slot.seq.load(Ordering::Acquire) != pos.wrapping_add(1) {
                slot.chunk.store(filler.chunk, Ordering::Relaxed);
                slot.len.store(filler.len, Ordering::Relaxed);
                slot.flags.store(filler.flags, Ordering::Relaxed);
                slot.tag.store(filler.tag, Ordering::Relaxed);
                slot.meta.store(filler.meta, Ordering::Relaxed);
                slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                voided += 1;
            }
        }
        if tail.wrapping_sub(head) > self.capacity() {
            // A tail beyond a full lap is corrupt: pull it back.
            self.control
                .tail
                .store(head.wrapping_add(self.capacity()), Ordering::Release);
        }
        voided
    }

    /// Calls `f` with every published descriptor between the consumer and
    /// the tail, without consuming them (reclaim counts references with it).
    pub fn for_each_queued(&self, mut f: impl FnMut(&Descriptor)) {
        let head = self.control.head.load(Ordering::Acquire);
        let tail = self.control.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(self.capacity());
        for i in 0..n {
            let pos = head.wrapping_add(i);
            let slot = &self.slots[(pos & self.mask) as usize];
            if slot.seq.load(Ordering::Acquire) == pos.wrapping_add(1) {
                f(&Descriptor {
                    chunk: slot.chunk.load(Ordering::Relaxed),
                    len: slot.len.load(Ordering::Relaxed),
                    flags: slot.flags.load(Ordering::Relaxed),
                    tag: slot.tag.load(Ordering::Relaxed),
                    meta: slot.meta.load(Ordering::Relaxed),
                });
            }
        }
    }

    /// Approximate number of queued descriptors (for inspection only).
    pub fn len_hint(&self) -> u32 {
        let tail = self.control.tail.load(Ordering::Relaxed);
        let head = self.control.head.load(Ordering::Relaxed);
        tail.wrapping_sub(head).min(self.capacity())
    }
}

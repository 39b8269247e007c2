//! Bounded many-producer many-consumer queue of `u32` values.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>):
//! every slot carries a sequence number that says which lap of which side may
//! use it next. A producer claims position `pos` with a CAS on `tail` once the
//! slot's sequence reads `pos` (released by the consumer of the previous lap),
//! writes the value and publishes it by storing `pos + 1`; a consumer claims
//! `pos` with a CAS on `head` once the sequence reads `pos + 1`, reads the
//! value and hands the slot to the next lap by storing `pos + capacity`.
//!
//! The task exchange uses it for entry indices: the free list of the task
//! ledger, one ready queue per priority and the dead-letter queue
//! ([`crate::ledger`]).
//!
//! Guarantees, among threads that follow the protocol:
//! - **No loss, no duplication.** A push that returns `Ok` puts its value at
//!   one position; exactly one pop returns it. A push that returns an error
//!   changed nothing.
//! - **Order.** Positions are popped in the order they were pushed (claimed):
//!   one consumer sees each producer's values in that producer's push order;
//!   with several consumers, values are *claimed* in position order.
//! - **Never waits.** No call blocks or spins on another thread: a CAS that
//!   loses is retried at most [`MAX_RETRIES`] times, and every other
//!   obstacle is reported. The price (inherent to Vyukov's queue) is that a
//!   thread stopped between its claim and its release holds up that one
//!   position for the others: a producer stopped before publishing makes
//!   pops return `None` for everything behind it (even values whose pushes
//!   have returned), and a consumer stopped before releasing its slot makes
//!   the push that laps it return [`PushError::Stalled`]. Both clear as soon
//!   as the stopped thread runs again; a thread that *died* there is repaired
//!   by [`Mpmc::rebuild`] (which the task exchange runs from its ledger while
//!   every live user is paused). So pushes and pops are linearizable except
//!   that a pop may answer `None` while an earlier-claimed push is in flight.
//! - **Never `Full` when the values are tokens.** If at most `capacity`
//!   distinct values circulate, and a value is only pushed by a thread that
//!   happens-after the pop that last returned it (or that owned it from the
//!   start), a push never returns [`PushError::Full`]: the entry indices of a
//!   ledger in queues of at least the ledger's size always fit.
//!   ([`PushError::Stalled`] can still happen, see above.)
//!
//! Shared memory is untrusted: a sequence number no legal schedule can
//! produce is reported as [`Corrupt`] where it is recognised, and at worst
//! makes the queue answer `Full` or `None`; it never causes a panic, an
//! out-of-range access or an endless loop. Values are opaque here: the caller
//! checks the values it pops (an entry index against the ledger's size).
//!
//! ```
//! use shmex_core::mpmc::{Mpmc, MpmcControl, MpmcSlot};
//! let control = MpmcControl::new();
//! let slots: Vec<MpmcSlot> = (0..4).map(MpmcSlot::new).collect();
//! let q = Mpmc::new(&control, &slots).unwrap();
//! q.push(7).unwrap();
//! q.push(9).unwrap();
//! assert_eq!(q.pop(), Ok(Some(7)));
//! assert_eq!(q.pop(), Ok(Some(9)));
//! assert_eq!(q.pop(), Ok(None));
//! ```

use crate::sync::{AtomicU32, Ordering};
use crate::{Corrupt, MAX_RETRIES};

/// Producer and consumer positions, each on its own cache line: the same
/// control words as the MPSC ring's. Here both are only ever advanced by CAS
/// (`AcqRel`), so each forms one release sequence: a thread that reads a
/// position has seen every slot hand-over made before the claims that
/// produced it (the [`Corrupt`] checks rely on it).
pub type MpmcControl = crate::ring::RingControl;

/// One queue slot: 8 bytes.
#[repr(C)]
pub struct MpmcSlot {
    /// For the slot's next position `p` (`p & mask` is this slot): `p` while
    /// free for the producer of `p`, `p + 1` once that producer published,
    /// then `p + capacity` once the consumer of `p` has read the value.
    seq: AtomicU32,
    /// The value published at the slot's current position.
    value: AtomicU32,
}

impl MpmcSlot {
    /// A slot free for position `pos` (used to build queues on the heap; the
    /// slot at index `i` of an empty queue whose positions start at `s` is
    /// free for the first `pos >= s` with `pos & mask == i`).
    pub fn new(pos: u32) -> Self {
        MpmcSlot {
            seq: AtomicU32::new(pos),
            value: AtomicU32::new(0),
        }
    }
}

/// Why a push did not happen. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds `capacity` values (as far as this thread can tell).
    Full,
    /// The queue has room, but the slot the push needs is still being read by
    /// the consumer that claimed it one lap earlier. Clears when that
    /// consumer resumes; persists only if it died there (a
    /// [`rebuild`](Mpmc::rebuild) clears it). Retry.
    Stalled,
    /// The queue's words are inconsistent.
    Corrupt(Corrupt),
}

impl core::fmt::Display for PushError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PushError::Full => f.write_str("queue full"),
            PushError::Stalled => f.write_str("queue slot still held by a stalled consumer"),
            PushError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for PushError {}

impl From<Corrupt> for PushError {
    fn from(c: Corrupt) -> Self {
        PushError::Corrupt(c)
    }
}

/// A view of one queue: its control words and its slots, wherever they live.
#[derive(Clone, Copy)]
pub struct Mpmc<'a> {
    control: &'a MpmcControl,
    slots: &'a [MpmcSlot],
    mask: u32,
}

impl<'a> Mpmc<'a> {
    /// Views `slots` as a queue. The slot count must be a power of two between
    /// 2 and 2^30 (`None` otherwise); the caller has validated it against the
    /// layout.
    pub fn new(control: &'a MpmcControl, slots: &'a [MpmcSlot]) -> Option<Self> {
        let n = slots.len();
        if n < 2 || !n.is_power_of_two() || n > (1 << 30) {
            return None;
        }
        Some(Mpmc {
            control,
            slots,
            mask: (n - 1) as u32,
        })
    }

    /// Makes the queue empty at position 0 (single-threaded, before sharing;
    /// any prior content, even garbage, is discarded).
    pub fn init(&self) {
        for (i, s) in self.slots.iter().enumerate() {
            s.seq.store(i as u32, Ordering::Relaxed);
            s.value.store(0, Ordering::Relaxed);
        }
        self.control.tail.store(0, Ordering::Release);
        self.control.head.store(0, Ordering::Release);
    }

    /// Number of slots.
    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    fn slot(&self, pos: u32) -> &MpmcSlot {
        &self.slots[(pos & self.mask) as usize]
    }

    /// Appends `value`. Any number of producers and consumers.
    pub fn push(&self, value: u32) -> Result<(), PushError> {
        let capacity = self.capacity();
        let mut pos = self.control.tail.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let slot = self.slot(pos);
            let seq = slot.seq.load(Ordering::Acquire);
            // Capacity <= 2^30, so every legal difference fits an i32.
            let dif = seq.wrapping_sub(pos) as i32;
            if dif == 0 {
                match self.control.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        slot.value.store(value, Ordering::Relaxed);
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(actual) => pos = actual,
                }
            } else if dif < 0 {
                // The slot still belongs to position `pos - capacity`
                // (`seq` is `pos - capacity` or `pos - capacity + 1`: the
                // tail we acquired carries the release of that position's
                // slot by its previous consumer, so nothing older is
                // visible). Anything below is not a legal sequence.
                if dif < -(capacity as i32) {
                    return Err(
                        Corrupt("queue slot sequence behind the tail by more than a lap").into(),
                    );
                }
                let head = self.control.head.load(Ordering::Acquire);
                let used = pos.wrapping_sub(head) as i32;
                if used < 0 {
                    // Consumers have passed `pos` since we read the tail:
                    // the slot's previous lap is long gone, `pos` is old.
                    pos = self.control.tail.load(Ordering::Acquire);
                    crate::sync::spin_hint();
                    continue;
                }
                return Err(if used >= capacity as i32 {
                    PushError::Full
                } else {
                    PushError::Stalled
                });
            } else {
                // Another producer claimed `pos` and published (or a consumer
                // released it): its claim moved the tail on, and we acquired
                // a store made after that claim.
                let tail = self.control.tail.load(Ordering::Acquire);
                if tail == pos {
                    return Err(Corrupt("queue slot sequence ahead of the tail").into());
                }
                pos = tail;
            }
            crate::sync::spin_hint();
        }
        Err(Corrupt("queue tail never settles").into())
    }

    /// Takes the oldest value: `Ok(None)` when the queue is empty, or when
    /// the push that claimed the oldest position has not published yet. Any
    /// number of producers and consumers.
    pub fn pop(&self) -> Result<Option<u32>, Corrupt> {
        let capacity = self.capacity();
        let mut pos = self.control.head.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let slot = self.slot(pos);
            let seq = slot.seq.load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos.wrapping_add(1)) as i32;
            if dif == 0 {
                match self.control.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let value = slot.value.load(Ordering::Relaxed);
                        slot.seq
                            .store(pos.wrapping_add(capacity), Ordering::Release);
                        return Ok(Some(value));
                    }
                    Err(actual) => pos = actual,
                }
            } else if dif < 0 {
                // `seq` is `pos` (free, not yet published) or
                // `pos - capacity + 1` (the previous lap's consumer has not
                // released it yet: the queue is empty at `pos` either way).
                if dif < -(capacity as i32) {
                    return Err(Corrupt(
                        "queue slot sequence behind the head by more than a lap",
                    ));
                }
                return Ok(None);
            } else {
                // Another consumer took `pos`; its claim moved the head on.
                let head = self.control.head.load(Ordering::Acquire);
                if head == pos {
                    return Err(Corrupt("queue slot sequence ahead of the head"));
                }
                pos = head;
            }
            crate::sync::spin_hint();
        }
        Err(Corrupt("queue head never settles"))
    }

    /// Approximate number of queued values (for inspection only).
    pub fn len_hint(&self) -> u32 {
        let tail = self.control.tail.load(Ordering::Relaxed);
        let head = self.control.head.load(Ordering::Relaxed);
        tail.wrapping_sub(head).min(self.capacity())
    }

    /// Empties the queue and fills it with `values`, in order, at positions
    /// from 0 on. Returns how many it holds, or [`PushError::Full`] (after
    /// storing the first `capacity`) when there are more. Only while no other
    /// thread uses the queue (the task exchange runs it with every live user
    /// paused); whatever dead users left half-done is discarded.
    pub fn rebuild(&self, values: impl IntoIterator<Item = u32>) -> Result<u32, PushError> {
        let capacity = self.capacity();
        let mut n = 0u32;
        let mut overflow = false;
        for v in values {
            if n == capacity {
                overflow = true;
                break;
            }
            let slot = &self.slots[n as usize];
            slot.value.store(v, Ordering::Relaxed);
            slot.seq.store(n.wrapping_add(1), Ordering::Relaxed);
            n += 1;
        }
        for i in n..capacity {
            let slot = &self.slots[i as usize];
            slot.value.store(0, Ordering::Relaxed);
            slot.seq.store(i, Ordering::Relaxed);
        }
        self.control.head.store(0, Ordering::Release);
        self.control.tail.store(n, Ordering::Release);
        if overflow {
            return Err(PushError::Full);
        }
        Ok(n)
    }

    /// Calls `f` with every published value between the head and the tail, in
    /// order, without consuming them (inspection). Exact only while no other
    /// thread uses the queue.
    pub fn for_each_queued(&self, mut f: impl FnMut(u32)) {
        let head = self.control.head.load(Ordering::Acquire);
        let tail = self.control.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(self.capacity());
        for i in 0..n {
            let pos = head.wrapping_add(i);
            let slot = self.slot(pos);
            if slot.seq.load(Ordering::Acquire) == pos.wrapping_add(1) {
                f(slot.value.load(Ordering::Relaxed));
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct Heap {
        control: MpmcControl,
        slots: Vec<MpmcSlot>,
    }

    impl Heap {
        fn new(capacity: u32) -> Self {
            Self::starting_at(capacity, 0)
        }

        fn starting_at(capacity: u32, start: u32) -> Self {
            let mask = capacity - 1;
            let slots = (0..capacity)
                .map(|i| MpmcSlot::new(start.wrapping_add(i.wrapping_sub(start) & mask)))
                .collect();
            let control = MpmcControl::new();
            control.tail.store(start, Ordering::Relaxed);
            control.head.store(start, Ordering::Relaxed);
            Heap { control, slots }
        }

        fn q(&self) -> Mpmc<'_> {
            Mpmc::new(&self.control, &self.slots).unwrap()
        }
    }

    fn drain(q: &Mpmc<'_>) -> Vec<u32> {
        std::iter::from_fn(|| q.pop().unwrap()).collect()
    }

    #[test]
    fn rejects_bad_sizes() {
        let c = MpmcControl::new();
        for n in [0u32, 1, 3, 6] {
            let slots: Vec<MpmcSlot> = (0..n).map(MpmcSlot::new).collect();
            assert!(Mpmc::new(&c, &slots).is_none(), "size {n}");
        }
        let slots: Vec<MpmcSlot> = (0..2).map(MpmcSlot::new).collect();
        assert_eq!(Mpmc::new(&c, &slots).unwrap().capacity(), 2);
    }

    #[test]
    fn fifo_full_empty() {
        let h = Heap::new(4);
        let q = h.q();
        assert_eq!(q.pop(), Ok(None));
        for v in 10..14 {
            q.push(v).unwrap();
        }
        assert_eq!(q.len_hint(), 4);
        assert_eq!(q.push(99), Err(PushError::Full));
        assert_eq!(q.pop(), Ok(Some(10)));
        q.push(14).unwrap();
        assert_eq!(drain(&q), vec![11, 12, 13, 14]);
        assert_eq!(q.len_hint(), 0);
    }

    #[test]
    fn positions_wrap() {
        let h = Heap::starting_at(2, u32::MAX - 2);
        let q = h.q();
        for round in 0..5u32 {
            q.push(round).unwrap();
            q.push(round + 100).unwrap();
            assert_eq!(q.push(7), Err(PushError::Full));
            assert_eq!(drain(&q), vec![round, round + 100]);
        }
        assert_eq!(h.control.tail.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn stalled_consumer_blocks_only_the_lapping_push() {
        let h = Heap::new(2);
        let q = h.q();
        q.push(1).unwrap();
        q.push(2).unwrap();
        // A consumer claims position 0 and stops before releasing the slot.
        h.control.head.store(1, Ordering::Relaxed);
        assert_eq!(q.pop(), Ok(Some(2)));
        assert_eq!(q.push(2), Err(PushError::Stalled));
        // It resumes.
        h.slots[0].seq.store(2, Ordering::Relaxed);
        q.push(2).unwrap();
        assert_eq!(drain(&q), vec![2]);
    }

    #[test]
    fn unpublished_push_hides_later_ones() {
        let h = Heap::new(4);
        let q = h.q();
        // A producer claims position 0 and stops before publishing.
        h.control.tail.store(1, Ordering::Relaxed);
        q.push(5).unwrap();
        assert_eq!(q.pop(), Ok(None));
        assert_eq!(q.len_hint(), 2);
        let mut seen = vec![];
        q.for_each_queued(|v| seen.push(v));
        assert_eq!(seen, vec![5]);
        // Rebuild (quiescent) from the truth.
        assert_eq!(q.rebuild([3, 5]), Ok(2));
        assert_eq!(drain(&q), vec![3, 5]);
    }

    #[test]
    fn rebuild_fills_and_overflows() {
        let h = Heap::new(2);
        let q = h.q();
        q.push(1).unwrap();
        assert_eq!(q.rebuild([]), Ok(0));
        assert_eq!(q.pop(), Ok(None));
        assert_eq!(q.rebuild([4, 5, 6]), Err(PushError::Full));
        assert_eq!(drain(&q), vec![4, 5]);
        assert_eq!(q.rebuild([8]), Ok(1));
        q.push(9).unwrap();
        assert_eq!(q.push(10), Err(PushError::Full));
        assert_eq!(drain(&q), vec![8, 9]);
    }

    #[test]
    fn garbage_words_error_or_empty_never_hang() {
        let h = Heap::new(4);
        let q = h.q();
        // Sequence ahead of tail/head with tail/head not moving.
        h.slots[0].seq.store(1000, Ordering::Relaxed);
        assert!(matches!(q.push(1), Err(PushError::Corrupt(_))));
        assert!(q.pop().is_err());
        // Sequence far behind.
        h.slots[0]
            .seq
            .store(0u32.wrapping_sub(1000), Ordering::Relaxed);
        assert!(matches!(q.push(1), Err(PushError::Corrupt(_))));
        assert!(q.pop().is_err());
        // Arbitrary patterns: any answer, but no panic and no hang.
        let mut x = 0x9e37_79b9u32;
        for _ in 0..2000 {
            for s in &h.slots {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                s.seq.store(x, Ordering::Relaxed);
            }
            h.control.head.store(x.rotate_left(7), Ordering::Relaxed);
            h.control.tail.store(x.rotate_left(3), Ordering::Relaxed);
            let _ = q.push(1);
            let _ = q.pop();
            let _ = q.len_hint();
            q.for_each_queued(|_| {});
        }
        q.init();
        q.push(3).unwrap();
        assert_eq!(drain(&q), vec![3]);
    }

    #[test]
    fn threads_move_tokens_without_loss() {
        // 64 tokens circulate through a queue of 64 slots: Full must never
        // happen; Stalled may, and is retried.
        let h = Heap::new(64);
        let q = h.q();
        assert_eq!(q.rebuild(0..64), Ok(64));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let q = h.q();
                    for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
                        let v = loop {
                            if let Some(v) = q.pop().unwrap() {
                                break v;
                            }
                            std::thread::yield_now();
                        };
                        loop {
                            match q.push(v) {
                                Ok(()) => break,
                                Err(PushError::Stalled) => std::thread::yield_now(),
                                Err(e) => panic!("push: {e:?}"),
                            }
                        }
                    }
                });
            }
        });
        let mut all = drain(&q);
        all.sort_unstable();
        assert_eq!(all, (0..64).collect::<Vec<_>>());
    }
}

//! Loom models of `shmex_core::ring::Ring`, the MPSC descriptor ring.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use shmex_core::ring::{Descriptor, PushError};
use shmex_loom::{desc, model, tag_of, HeapRing};

const PRODUCERS: u64 = 2;
const PER_PRODUCER: u64 = 2;

/// Tag of the `seq`-th descriptor pushed by `producer`.
fn tag(producer: u64, seq: u64) -> u64 {
    (producer << 8) | seq
}

/// How a full ring makes a producer wait for the consumer.
///
/// The obvious loop "on `Full`, `yield_now()` and retry" cannot be model
/// checked when the consumer spins too: with one producer preempted between
/// claiming a slot and publishing it, the ring is full for the other producer
/// and empty for the consumer, and loom (which has no fairness) explores the
/// schedule where those two spin forever and the first producer never runs
/// again, hitting "Model exceeded maximum number of branches". So a producer
/// that gets `Full` yields once, retries, and only then blocks until the
/// consumer has popped something since the producer's snapshot taken before
/// the push; only the consumer ever spins.
///
/// The `consumed` counter is released by the consumer after each pop and
/// acquired by the producer before each push. That adds a consumer →
/// producer happens-before edge, which the ring's own `head`
/// `Release`/`Acquire` also provides (and whose absence loom could not show
/// anyway: the slot fields are atomics and loom does not model load
/// buffering). The producer → consumer publication edge that carries
/// descriptors is left to the ring alone.
struct Backpressure {
    consumed: AtomicU64,
    lock: Mutex<()>,
    popped: Condvar,
}

impl Backpressure {
    fn new() -> Self {
        Backpressure {
            consumed: AtomicU64::new(0),
            lock: Mutex::new(()),
            popped: Condvar::new(),
        }
    }

    /// Consumer side: one more descriptor has been popped.
    fn pop_done(&self) {
        self.consumed.fetch_add(1, Ordering::Release);
        let _guard = self.lock.lock().unwrap();
        self.popped.notify_all();
    }

    /// Producer side: pushes `d` with `push`, waiting for the consumer while
    /// the ring is full.
    fn push(&self, d: &Descriptor, mut push: impl FnMut(&Descriptor) -> Result<(), PushError>) {
        loop {
            let seen = self.consumed.load(Ordering::Acquire);
            match push(d) {
                Ok(()) => return,
                Err(PushError::Full) => {}
                Err(e) => panic!("push failed: {e:?}"),
            }
            thread::yield_now();
            match push(d) {
                Ok(()) => return,
                Err(PushError::Full) => {}
                Err(e) => panic!("push failed: {e:?}"),
            }
            // `Full` means `pos - head == capacity` for a head read after the
            // snapshot `seen`: positions from that head on are claimed and
            // unconsumed, so the consumer will pop at least one more and the
            // wait ends.
            let mut guard = self.lock.lock().unwrap();
            while self.consumed.load(Ordering::Relaxed) == seen {
                guard = self.popped.wait(guard).unwrap();
            }
        }
    }
}

/// Which producer entry point a model drives.
#[derive(Clone, Copy)]
enum Producer {
    /// `Ring::push`: reads the consumer's head afresh on every push.
    Fresh,
    /// `Ring::push_cached` with one head cache per producer, seeded by
    /// `Ring::head` and kept across pushes, so pushes run on a stale head.
    Cached,
}

/// Two producers push two descriptors each while the (only) consumer pops
/// until it has four. Checks: every pushed descriptor is consumed exactly once
/// (nothing lost, nothing duplicated), each producer's descriptors arrive in
/// the order it pushed them, no descriptor is torn, and the ring is empty
/// afterwards. A producer that finds the ring full retries (see
/// [`Backpressure`]); every push eventually succeeds.
fn mpsc(capacity: u32, start: u32, producer: Producer) {
    model(move || {
        let heap = Arc::new(HeapRing::starting_at(capacity, start));
        let bp = Arc::new(Backpressure::new());
        let finished = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let heap = heap.clone();
                let bp = bp.clone();
                let finished = finished.clone();
                thread::spawn(move || {
                    let ring = heap.ring();
                    let mut head_cache = ring.head();
                    for s in 0..PER_PRODUCER {
                        bp.push(&desc(tag(p, s)), |d| match producer {
                            Producer::Fresh => ring.push(d),
                            Producer::Cached => ring.push_cached(d, &mut head_cache),
                        });
                    }
                    finished.fetch_add(1, Ordering::Release);
                })
            })
            .collect();

        let ring = heap.ring();
        let mut next = [0u64; PRODUCERS as usize];
        let mut got = 0;
        while got < PRODUCERS * PER_PRODUCER {
            match ring.pop() {
                Some(d) => {
                    bp.pop_done();
                    let t = tag_of(&d);
                    let (p, s) = ((t >> 8) as usize, t & 0xff);
                    assert!(p < next.len(), "unknown producer in tag {t:#x}");
                    // Per-producer sequence numbers must come 0, 1, ... with
                    // no gap (loss/reorder) and no repeat (duplicate).
                    assert_eq!(s, next[p], "producer {p}: out of order or duplicated");
                    next[p] += 1;
                    got += 1;
                }
                None => {
                    // Every push has returned `Ok` and happens-before this
                    // point, yet the head slot is not published: a
                    // descriptor was lost (reported here rather than as a
                    // consumer spinning forever).
                    if finished.load(Ordering::Acquire) == PRODUCERS as usize {
                        assert!(
                            ring.has_pending(),
                            "descriptor lost: got {got} of {}",
                            PRODUCERS * PER_PRODUCER
                        );
                    }
                    thread::yield_now();
                }
            }
        }
        for h in producers {
            h.join().unwrap();
        }
        assert_eq!(next, [PER_PRODUCER; PRODUCERS as usize]);
        assert!(ring.pop().is_none(), "more descriptors than were pushed");
        assert!(!ring.has_pending());
        assert_eq!(ring.len_hint(), 0);
    });
}

/// [`mpsc`] on a ring of capacity 2 with `Ring::push`: producers hit
/// `Full` and retry.
#[test]
fn mpsc_capacity_2() {
    mpsc(2, 0, Producer::Fresh);
}

/// [`mpsc`] on a ring of capacity 2 with `Ring::push_cached` (each producer
/// keeps a stale head cache across pushes and must refresh it on `Full`),
/// with positions starting just below `u32::MAX` so they wrap during the run.
#[test]
fn mpsc_capacity_2_cached_head_wrapping() {
    mpsc(2, u32::MAX - 1, Producer::Cached);
}

/// [`mpsc`] on a ring of capacity 4 with `Ring::push`: all four pushes
/// fit, so this explores the producers racing for `tail` and the consumer
/// reaching a slot a producer has claimed but not yet published.
#[test]
fn mpsc_capacity_4() {
    mpsc(4, 0, Producer::Fresh);
}

/// Three producers push one descriptor each into a ring of capacity 2 with no
/// consumer. Checks: exactly two pushes succeed and one returns
/// `PushError::Full`; the ring then yields exactly the two accepted
/// descriptors, intact (the rejected push overwrote nothing), and is empty.
#[test]
fn push_to_full_ring_is_rejected() {
    model(|| {
        let heap = Arc::new(HeapRing::new(2));
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let heap = heap.clone();
                thread::spawn(move || match heap.ring().push(&desc(tag(p, 0))) {
                    Ok(()) => Some(tag(p, 0)),
                    Err(PushError::Full) => None,
                    Err(e) => panic!("push failed: {e:?}"),
                })
            })
            .collect();
        let mut accepted: Vec<u64> = producers
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(accepted.len(), 2, "a capacity-2 ring must take exactly 2");

        let ring = heap.ring();
        let mut popped: Vec<u64> = std::iter::from_fn(|| ring.pop().map(|d| tag_of(&d))).collect();
        accepted.sort_unstable();
        popped.sort_unstable();
        assert_eq!(popped, accepted);
    });
}

/// A ring of capacity 2 starts full (tags 1, 2); one producer pushes tag 3
/// while the consumer pops once. Checks: the consumer gets 1; the push either
/// succeeds into the freed slot or returns `Full`, never overwriting 2; what
/// is left is exactly 2 followed by 3 iff the push succeeded.
#[test]
fn push_racing_pop_on_full_ring() {
    model(|| {
        let heap = Arc::new(HeapRing::new(2));
        {
            let ring = heap.ring();
            ring.push(&desc(1)).unwrap();
            ring.push(&desc(2)).unwrap();
            assert_eq!(ring.push(&desc(99)), Err(PushError::Full));
        }
        let producer = {
            let heap = heap.clone();
            thread::spawn(move || match heap.ring().push(&desc(3)) {
                Ok(()) => true,
                Err(PushError::Full) => false,
                Err(e) => panic!("push failed: {e:?}"),
            })
        };
        let ring = heap.ring();
        assert_eq!(ring.pop().map(|d| tag_of(&d)), Some(1), "oldest first");
        let pushed = producer.join().unwrap();

        assert_eq!(ring.pop().map(|d| tag_of(&d)), Some(2), "2 overwritten");
        let expected_third = if pushed { Some(3) } else { None };
        assert_eq!(
            ring.pop().map(|d| tag_of(&d)),
            expected_third,
            "accepted push lost, or rejected push visible (pushed = {pushed})"
        );
        assert_eq!(ring.pop(), None, "more descriptors than were pushed");
    });
}

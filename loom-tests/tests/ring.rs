//! Loom models of `shmex_core::ring::Ring`, the MPSC descriptor ring.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmex_core::ring::{Descriptor, PushError, Ring};
use shmex_loom::{desc, model, tag_of, HeapRing};

const PRODUCERS: u64 = 2;
const PER_PRODUCER: u64 = 2;

/// Tag of the `seq`-th descriptor pushed by `producer`.
fn tag(producer: u64, seq: u64) -> u64 {
    (producer << 8) | seq
}

/// Pushes `d`, yielding to the consumer while the ring is full.
fn push_retrying(ring: &Ring<'_>, d: &Descriptor) {
    let mut n = 0;
    loop {
        match ring.push(d) {
            Ok(()) => return,
            Err(PushError::Full) => { n += 1; if n > 40 { panic!("producer spin; len_hint {}", ring.len_hint()) } thread::yield_now() },
            Err(e) => panic!("push failed: {e:?}"),
        }
    }
}


/// Two producers push two descriptors each while the (only) consumer pops
/// until it has four. Checks: every pushed descriptor is consumed exactly once
/// (nothing lost, nothing duplicated), each producer's descriptors arrive in
/// the order it pushed them, no descriptor is torn, and the ring is empty
/// afterwards.
fn mpsc(capacity: u32, start: u32) {
    model(move || {
        let heap = Arc::new(HeapRing::starting_at(capacity, start));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let heap = heap.clone();
                thread::spawn(move || {
                    let ring = heap.ring();
                    for s in 0..PER_PRODUCER {
                        push_retrying(&ring, &desc(tag(p, s)));
                    }
                })
            })
            .collect();

        let ring = heap.ring();
        let mut next = [0u64; PRODUCERS as usize];
        let mut got = 0; let mut spins = 0;
        while got < PRODUCERS * PER_PRODUCER {
            match ring.pop() {
                Some(d) => {
                    let t = tag_of(&d);
                    let (p, s) = ((t >> 8) as usize, t & 0xff);
                    assert!(p < next.len(), "unknown producer in tag {t:#x}");
                    // Per-producer sequence numbers must come 0, 1, ... with
                    // no gap (loss/reorder) and no repeat (duplicate).
                    assert_eq!(s, next[p], "producer {p}: out of order or duplicated");
                    next[p] += 1;
                    got += 1;
                }
                None => { spins += 1; if spins > 40 { panic!("consumer spin got {got} next {next:?} len {}", ring.len_hint()) } thread::yield_now() },
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

/// [`mpsc`] on a ring of capacity 2, so producers hit `Full` and retry, with
/// positions starting just below `u32::MAX` so they wrap during the run.
#[test]
fn mpsc_capacity_2_full_and_wrapping() {
    mpsc(2, 0);
}

/// [`mpsc`] on a ring of capacity 4: all four pushes fit, so this explores
/// the producers racing for `tail` and the consumer overtaking a producer
/// that has claimed a slot but not yet published it.
#[test]
fn mpsc_capacity_4() {
    mpsc(4, 0);
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
        assert_eq!(ring.pop().map(|d| tag_of(&d)), Some(1));
        let pushed = producer.join().unwrap();

        assert_eq!(ring.pop().map(|d| tag_of(&d)), Some(2));
        let expected_third = if pushed { Some(3) } else { None };
        assert_eq!(ring.pop().map(|d| tag_of(&d)), expected_third);
        assert_eq!(ring.pop(), None);
    });
}

//! Loom model of issue 12 §5 "voiding an unpublished slot": a producer died
//! between its tail CAS and its publish (position 0 claimed, never
//! published). Reclaim voids it with `Ring::void_unpublished` while live
//! users are paused (here: the live producer's push is joined first), then
//! the consumer drains concurrently with another live push. Property: the
//! consumer gets exactly one filler, then every live descriptor in order,
//! none torn, none lost.
//!
//! The `#[should_panic]` twin breaks the protocol in the model (core is
//! unchanged): reclaim resumes without voiding, so the consumer stays stuck
//! behind the dead claim and no live push is delivered. (A twin that voids
//! while a live push is in flight was tried and did not fail within the
//! preemption bound, so it is not claimed here.) Actors run in spawned threads; `explore` checks
//! that the consumer both overtook and trailed the second push.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmex_core::ring::{Ring, RingControl, Slot};
use shmex_core::sync::Ordering;
use shmex_loom::{assert_explored, desc, explore};

const FILLER: u64 = 0xdead;
const TORN: u64 = u64::MAX;

struct R {
    control: RingControl,
    slots: Vec<Slot>,
}

impl R {
    fn ring(&self) -> Ring<'_> {
        Ring::new(&self.control, &self.slots).unwrap()
    }
}

/// A 4-slot ring at 0 whose position 0 was claimed by a producer that died.
fn ring_with_dead_claim() -> R {
    let r = R {
        control: RingControl::new(),
        slots: (0..4).map(Slot::new).collect(),
    };
    r.control.tail.store(1, Ordering::Relaxed);
    r
}

fn classify(d: &shmex_core::ring::Descriptor) -> u64 {
    if *d == desc(d.tag) {
        d.tag
    } else {
        TORN
    }
}

fn run(void: bool) {
    let seen = explore(move || {
        let r = Arc::new(ring_with_dead_claim());
        let r1 = r.clone();
        // Pause: no live producer is inside a push while reclaim voids.
        thread::spawn(move || r1.ring().push(&desc(1)).unwrap())
            .join()
            .unwrap();
        // Reclaim (the main thread, while users are paused) voids, then resumes.
        let voided = if void {
            r.ring().void_unpublished(&desc(FILLER))
        } else {
            0
        };
        let rc = r.clone();
        let consumer = thread::spawn(move || {
            let ring = rc.ring();
            let mut got = Vec::new();
            for _ in 0..3 {
                if let Some(d) = ring.pop() {
                    got.push(classify(&d));
                }
            }
            got
        });
        let r2 = r.clone();
        let p2 = thread::spawn(move || r2.ring().push(&desc(2)).unwrap());
        p2.join().unwrap();
        let mut got = consumer.join().unwrap();
        let popped_live = got.len();
        while let Some(d) = r.ring().pop() {
            got.push(classify(&d));
        }
        let live: Vec<u64> = got.iter().copied().filter(|&t| t != FILLER).collect();
        let fillers = got.len() - live.len();
        assert_eq!(
            (fillers, live),
            (1, vec![1, 2]),
            "a live push was lost, torn or voided (voided {voided}, got {got:?})"
        );
        popped_live
    });
    if void {
        assert_explored(&seen, &[2, 3]);
    }
}

#[test]
fn void_unpublished_passes_a_dead_claim_and_loses_no_live_push() {
    run(true);
}

#[test]
#[should_panic(expected = "a live push was lost")]
fn reclaim_without_void_strands_every_live_push() {
    run(false);
}

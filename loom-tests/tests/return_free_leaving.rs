//! Loom model of issue 12 §5 "`return_free` racing a port leaving": two
//! ports each release the last reference to a chunk that a third port
//! loaned, inside a gate operation, with `shmex_core::recycle::recycle`
//! (what `ExchangeInner::return_free` runs): into the owner's return ring
//! while the owner is attached, else onto the free list. Meanwhile the owner
//! leaves as `PortCore::drop` does: marks itself free, waits out a grace
//! period (`gate::grace_fence`, `op_in_progress`, `op_ended`, as
//! `ExchangeInner::grace_period`) and drains its return ring into the free
//! list (as `drain_returns`). Property: each chunk ends on the free list
//! exactly once, never stranded in the departed port's ring and never freed
//! twice. Actors run in spawned threads; `explore` checks that every mix of
//! returns into the ring and fall-backs to the free list happened.
//!
//! The `#[should_panic]` twin leaves without waiting for the operation in
//! progress (a wrong protocol in the model; core unchanged): a returner
//! that read the owner attached pushes after the final drain and its chunk
//! is stranded.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmex_core::gate::{self, Enter};
use shmex_core::recycle::{recycle, Owner, Recycled, UNKNOWN_HEAD};
use shmex_core::sync::{AtomicU32, Ordering};
use shmex_loom::{assert_explored, explore, HeapPool, HeapRing};

const FREE: u32 = 0;
const ATTACHED: u32 = 1;

/// Ports releasing a chunk of the owner's concurrently.
const RETURNERS: usize = 2;

struct Shared {
    pool: HeapPool,
    /// The owner's return ring.
    ring: HeapRing,
    /// The owner's state word.
    owner: AtomicU32,
    /// Each returner's head cache for the owner's ring.
    head_cache: [AtomicU32; RETURNERS],
    /// The exchange's gate state word.
    gate: AtomicU32,
    /// Each returner's busy counter.
    busy: [AtomicU32; RETURNERS],
}

fn run(grace: bool) {
    let seen = explore(move || {
        let s = Arc::new(Shared {
            pool: HeapPool::new(RETURNERS as u32),
            ring: HeapRing::new(2),
            owner: AtomicU32::new(ATTACHED),
            head_cache: [AtomicU32::new(UNKNOWN_HEAD), AtomicU32::new(UNKNOWN_HEAD)],
            gate: AtomicU32::new(0),
            busy: [AtomicU32::new(0), AtomicU32::new(0)],
        });
        // The owner loaned the chunks and sent them; returner `i` holds
        // chunk `i` alone.
        let mut chunks: Vec<u32> = (0..RETURNERS)
            .map(|_| s.pool.pool().alloc().unwrap().unwrap())
            .collect();
        let returners: Vec<_> = (0..RETURNERS)
            .map(|i| {
                let r = s.clone();
                let chunk = chunks[i];
                thread::spawn(move || {
                    assert_eq!(gate::enter(&r.busy[i], &r.gate, false), Enter::Entered);
                    let owner = Owner {
                        state: &r.owner,
                        attached: ATTACHED,
                        ring: r.ring.ring(),
                        head_cache: &r.head_cache[i],
                    };
                    let went = recycle(&r.pool.pool(), chunk, Some(owner), true).unwrap();
                    gate::exit(&r.busy[i]);
                    went
                })
            })
            .collect();
        let l = s.clone();
        let leaver = thread::spawn(move || {
            l.owner.store(FREE, Ordering::Release);
            gate::grace_fence();
            if grace {
                for busy in &l.busy {
                    if let Some(seen) = gate::op_in_progress(busy) {
                        while !gate::op_ended(busy, seen) {
                            thread::yield_now();
                        }
                    }
                }
            }
            let pool = l.pool.pool();
            while let Some(d) = l.ring.ring().pop() {
                pool.set_refcount(d.chunk, 0).unwrap();
                pool.free(d.chunk).unwrap();
            }
        });
        let went: Vec<Recycled> = returners.into_iter().map(|h| h.join().unwrap()).collect();
        leaver.join().unwrap();
        let stranded: Vec<u32> = std::iter::from_fn(|| s.ring.ring().pop())
            .map(|d| d.chunk)
            .collect();
        let mut free = s.pool.pool().free_list().unwrap();
        free.sort_unstable();
        chunks.sort_unstable();
        assert!(
            stranded.is_empty() && free == chunks,
            "chunk stranded or freed twice: ring {stranded:?}, free list {free:?} ({went:?})"
        );
        assert_eq!(s.pool.pool().free_count(), RETURNERS as u32);
        (went[0], went[1])
    });
    use Recycled::{Freed, Returned};
    assert_explored(
        &seen,
        &[
            (Returned, Returned),
            (Returned, Freed),
            (Freed, Returned),
            (Freed, Freed),
        ],
    );
}

#[test]
fn return_free_racing_owner_leaving_frees_chunk_exactly_once() {
    run(true);
}

#[test]
#[should_panic(expected = "chunk stranded or freed twice")]
fn leaving_without_grace_period_strands_a_returned_chunk() {
    run(false);
}

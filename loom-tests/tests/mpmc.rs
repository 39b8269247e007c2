//! Loom models of `shmex_core::mpmc::Mpmc`, the bounded MPMC queue of `u32`
//! values (Vyukov).
//!
//! No thread in these models waits for another: a push that fails is
//! recorded (the value is then not expected), a consumer pops a fixed number
//! of times, and whatever is left is drained after every thread has been
//! joined. That keeps loom away from spin loops (see the README) and still
//! checks the property that matters: every accepted value comes out exactly
//! once, in position order. Every model also fails on any `Corrupt`, which
//! checks that the queue's "impossible sequence" tests never fire on a legal
//! (weak-memory) schedule.
//!
//! Every model also checks that loom explored the schedules it is about
//! (`explore` collects an outcome per execution; `assert_explored` demands
//! the interesting ones). This is not paranoia: loom 0.7's DPOR only races an
//! access against the *last* access to the same object, so a thread that
//! loads a word and then stores it hides other threads' earlier accesses
//! from the race detection, and whole orders are never tried
//! (tokio-rs/loom#392: a spawned thread whose first access is a load is
//! never run before the main thread's access). The models therefore run
//! every actor in a spawned thread and let the main thread only join.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use shmex_core::mpmc::{Mpmc, MpmcControl, MpmcSlot, PushError};
use shmex_core::sync::Ordering;
use shmex_loom::{assert_explored, explore};
use std::collections::BTreeSet;
use std::fmt::Debug;

/// A queue built on the heap.
struct HeapMpmc {
    control: MpmcControl,
    slots: Vec<MpmcSlot>,
}

impl HeapMpmc {
    /// An empty queue of `capacity` slots whose positions start at `start`
    /// (e.g. just below `u32::MAX`, to make them wrap during the run).
    fn starting_at(capacity: u32, start: u32) -> Self {
        let mask = capacity - 1;
        let slots = (0..capacity)
            .map(|i| MpmcSlot::new(start.wrapping_add(i.wrapping_sub(start) & mask)))
            .collect();
        let control = MpmcControl::new();
        control.tail.store(start, Ordering::Relaxed);
        control.head.store(start, Ordering::Relaxed);
        HeapMpmc { control, slots }
    }

    fn new(capacity: u32) -> Self {
        Self::starting_at(capacity, 0)
    }

    fn q(&self) -> Mpmc<'_> {
        Mpmc::new(&self.control, &self.slots).expect("capacity is a power of two >= 2")
    }

    /// Pops everything left (after every thread has been joined).
    fn drain(&self) -> Vec<u32> {
        let q = self.q();
        let out: Vec<u32> = std::iter::from_fn(|| q.pop().expect("queue corrupt")).collect();
        assert_eq!(q.len_hint(), 0, "values left that cannot be popped");
        out
    }
}

/// Value `seq` of `producer`.
fn value(producer: u32, seq: u32) -> u32 {
    (producer << 8) | seq
}

/// What one execution of [`mpmc`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    /// Some push returned `Full`.
    full: bool,
    /// Some push returned `Stalled`.
    stalled: bool,
    /// Some pop returned `None` although the drain found values afterwards.
    empty_early: bool,
}

/// `producers` threads push `per_producer` values each (once; `Full` or
/// `Stalled` drops the value) while `consumers` threads pop `pops` times each
/// without waiting; the rest is drained afterwards. Checks: the accepted
/// values are exactly the popped ones (nothing lost, nothing duplicated, no
/// value invented); every consumer sees each producer's values in push
/// order, and so does the sequence "first consumer's pops, then the drain"
/// when there is one consumer; no push fails when all the values fit.
fn mpmc(
    capacity: u32,
    start: u32,
    producers: u32,
    per_producer: u32,
    consumers: u32,
    pops: u32,
) -> BTreeSet<Seen> {
    explore(move || {
        let heap = Arc::new(HeapMpmc::starting_at(capacity, start));
        let producer_threads: Vec<_> = (0..producers)
            .map(|p| {
                let heap = heap.clone();
                thread::spawn(move || {
                    let q = heap.q();
                    let mut accepted = Vec::new();
                    let (mut full, mut stalled) = (false, false);
                    for s in 0..per_producer {
                        match q.push(value(p, s)) {
                            Ok(()) => accepted.push(value(p, s)),
                            Err(PushError::Full) => full = true,
                            Err(PushError::Stalled) => stalled = true,
                            Err(e) => panic!("push failed: {e:?}"),
                        }
                    }
                    assert!(
                        !(full || stalled) || producers * per_producer > capacity,
                        "no push can fail when every value fits"
                    );
                    (accepted, full, stalled)
                })
            })
            .collect();
        let consumer_threads: Vec<_> = (0..consumers)
            .map(|_| {
                let heap = heap.clone();
                thread::spawn(move || {
                    let q = heap.q();
                    let popped: Vec<Option<u32>> =
                        (0..pops).map(|_| q.pop().expect("queue corrupt")).collect();
                    popped
                })
            })
            .collect();

        let mut seen = Seen {
            full: false,
            stalled: false,
            empty_early: false,
        };
        let mut accepted = Vec::new();
        for h in producer_threads {
            let (a, full, stalled) = h.join().unwrap();
            accepted.extend(a);
            seen.full |= full;
            seen.stalled |= stalled;
        }
        let results: Vec<Vec<Option<u32>>> = consumer_threads
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let rest = heap.drain();
        seen.empty_early = !rest.is_empty() && results.iter().flatten().any(|r| r.is_none());
        let per_consumer: Vec<Vec<u32>> = results
            .into_iter()
            .map(|r| r.into_iter().flatten().collect())
            .collect();

        let in_order = |seen: &[u32]| {
            for p in 0..producers {
                let mine: Vec<u32> = seen.iter().copied().filter(|v| v >> 8 == p).collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "producer {p}'s values out of order: {seen:?}"
                );
            }
        };
        for c in &per_consumer {
            in_order(c);
        }
        in_order(&rest);
        if consumers == 1 {
            let all: Vec<u32> = per_consumer[0].iter().chain(&rest).copied().collect();
            in_order(&all);
        }
        let mut popped: Vec<u32> = per_consumer.into_iter().flatten().chain(rest).collect();
        accepted.sort_unstable();
        popped.sort_unstable();
        assert_eq!(popped, accepted, "popped values differ from accepted ones");
        seen
    })
}

const NOTHING: Seen = Seen {
    full: false,
    stalled: false,
    empty_early: false,
};

/// 2 producers × 2 values, 1 consumer popping twice, capacity 2, positions
/// wrapping past `u32::MAX`: pushes meet a full queue and a slot whose
/// consumer has not released it yet (`Stalled`); the consumer meets a
/// claimed but unpublished slot.
#[test]
fn mpmc_2p_1c_capacity_2_wrapping() {
    let seen = mpmc(2, u32::MAX - 1, 2, 2, 1, 2);
    assert!(seen.contains(&NOTHING), "{seen:?}");
    assert!(seen.iter().any(|s| s.full), "{seen:?}");
    assert!(seen.iter().any(|s| s.stalled), "{seen:?}");
    assert!(seen.iter().any(|s| s.empty_early), "{seen:?}");
}

/// 2 producers × 1 value, 2 consumers popping once, capacity 2: producers
/// race for `tail`, consumers for `head`, a consumer meets a claimed but
/// unpublished slot.
#[test]
fn mpmc_2p_2c_capacity_2() {
    let seen = mpmc(2, 0, 2, 1, 2, 1);
    assert_explored(
        &seen,
        &[
            NOTHING,
            Seen {
                empty_early: true,
                ..NOTHING
            },
        ],
    );
}

/// 2 producers × 2 values, 1 consumer popping twice, capacity 4: nothing can
/// fail, so every schedule of producers racing for `tail` against a consumer
/// meeting claimed-but-unpublished slots is explored with all four values.
#[test]
fn mpmc_2p_1c_capacity_4() {
    let seen = mpmc(4, 0, 2, 2, 1, 2);
    assert_explored(
        &seen,
        &[
            NOTHING,
            Seen {
                empty_early: true,
                ..NOTHING
            },
        ],
    );
}

/// 1 producer × 2 values, 2 consumers popping twice, capacity 2: one consumer
/// can take both values and leave the other to read the head after a full
/// lap, where only the release carried by `head` tells it that the slot is
/// at least published (otherwise it would see the slot's initial sequence
/// and report `Corrupt`).
#[test]
fn mpmc_1p_2c_capacity_2_lap() {
    let seen = mpmc(2, 0, 1, 2, 2, 2);
    assert_explored(
        &seen,
        &[
            NOTHING,
            Seen {
                empty_early: true,
                ..NOTHING
            },
        ],
    );
}

/// Three producers push one value each into a queue of capacity 2 with no
/// consumer. Checks: exactly two pushes succeed and the third returns
/// `Full` (not `Stalled`: no consumer exists); the queue then yields exactly
/// the two accepted values; each producer is the rejected one in some
/// execution.
#[test]
fn push_to_full_queue_is_rejected() {
    let seen = explore(|| {
        let heap = Arc::new(HeapMpmc::new(2));
        let producers: Vec<_> = (0..3u32)
            .map(|p| {
                let heap = heap.clone();
                thread::spawn(move || match heap.q().push(p) {
                    Ok(()) => Some(p),
                    Err(PushError::Full) => None,
                    Err(e) => panic!("push failed: {e:?}"),
                })
            })
            .collect();
        let results: Vec<Option<u32>> = producers.into_iter().map(|h| h.join().unwrap()).collect();
        let mut accepted: Vec<u32> = results.iter().flatten().copied().collect();
        assert_eq!(accepted.len(), 2, "a capacity-2 queue must take exactly 2");
        let mut popped = heap.drain();
        accepted.sort_unstable();
        popped.sort_unstable();
        assert_eq!(popped, accepted);
        results.iter().position(Option::is_none).unwrap()
    });
    assert_explored(&seen, &[0, 1, 2]);
}

/// The queue holds value 1; a producer pushes 2 while two consumers pop once
/// each. Checks: one consumer gets 1 (the loser of the race for it moves on
/// to the next position and finds 2 or nothing, never 1 again), and each
/// value comes out exactly once (from a consumer or the drain).
#[test]
fn consumers_race_for_one_value() {
    let seen = explore(|| {
        let heap = Arc::new(HeapMpmc::new(2));
        heap.q().push(1).unwrap();
        let producer = {
            let heap = heap.clone();
            thread::spawn(move || heap.q().push(2).expect("push failed"))
        };
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let heap = heap.clone();
                thread::spawn(move || heap.q().pop().expect("queue corrupt"))
            })
            .collect();
        producer.join().unwrap();
        let got: Vec<Option<u32>> = consumers.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            got.contains(&Some(1)),
            "nobody got the queued value: {got:?}"
        );
        let mut all: Vec<u32> = got.iter().flatten().copied().chain(heap.drain()).collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2]);
        got
    });
    assert_explored(
        &seen,
        &[
            vec![Some(1), None],
            vec![None, Some(1)],
            vec![Some(1), Some(2)],
            vec![Some(2), Some(1)],
        ],
    );
}

/// The free-list use: tokens 0 and 1 circulate through a queue of capacity
/// 2; two threads each pop a token, write to the token's cell (loom reports
/// a data race if two threads hold a token at once, or if the queue hands a
/// token over without a happens-before edge) and push it back, twice.
/// Checks: a push never returns `Full` (at most `capacity` tokens); a push
/// that meets a consumer between its claim and its release gets `Stalled`
/// (seen in some execution), and the thread keeps the token (pushed back
/// after the join); at the end both tokens are in the queue exactly once.
#[test]
fn tokens_circulate_never_full() {
    let seen = explore(|| {
        let heap = Arc::new(HeapMpmc::new(2));
        assert_eq!(heap.q().rebuild([0, 1]), Ok(2));
        let cells: Arc<Vec<UnsafeCell<u32>>> =
            Arc::new((0..2).map(|_| UnsafeCell::new(0)).collect());
        let threads: Vec<_> = (1..=2u32)
            .map(|me| {
                let heap = heap.clone();
                let cells = cells.clone();
                thread::spawn(move || {
                    let q = heap.q();
                    for _ in 0..2 {
                        let Some(t) = q.pop().expect("queue corrupt") else {
                            continue;
                        };
                        assert!(t < 2, "invented token {t}");
                        cells[t as usize].with_mut(|c| unsafe { *c = me });
                        match q.push(t) {
                            Ok(()) => {}
                            Err(PushError::Stalled) => return Some(t),
                            Err(e) => panic!("token push failed: {e:?}"),
                        }
                    }
                    None
                })
            })
            .collect();
        let kept: Vec<u32> = threads
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        let q = heap.q();
        for &t in &kept {
            q.push(t).expect("push after join");
        }
        let mut all = heap.drain();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1]);
        !kept.is_empty()
    });
    assert_explored(&seen, &[false, true]);
}

/// `rebuild` after a producer died between its claim and its publish (the
/// head slot stays unpublished, so a pop sees nothing), with live users
/// quiescent: the queue is usable again by a producer racing a consumer.
#[test]
fn rebuild_clears_a_dead_push() {
    let seen = explore(|| {
        let heap = Arc::new(HeapMpmc::new(2));
        {
            let q = heap.q();
            // Dead producer: claimed position 0, never published.
            heap.control.tail.store(1, Ordering::Relaxed);
            q.push(5).unwrap();
            assert_eq!(q.pop(), Ok(None));
            assert_eq!(q.rebuild([5]), Ok(1));
        }
        let producer = {
            let heap = heap.clone();
            thread::spawn(move || heap.q().push(6).expect("push failed"))
        };
        let consumer = {
            let heap = heap.clone();
            thread::spawn(move || {
                let q = heap.q();
                [
                    q.pop().expect("queue corrupt"),
                    q.pop().expect("queue corrupt"),
                ]
            })
        };
        producer.join().unwrap();
        let got = consumer.join().unwrap();
        assert_eq!(got[0], Some(5));
        let rest = heap.drain();
        assert_eq!(got[1].into_iter().chain(rest).collect::<Vec<_>>(), vec![6]);
        got[1].is_some()
    });
    assert_explored(&seen, &[false, true]);
}

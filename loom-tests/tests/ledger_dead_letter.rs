//! Loom model of issue 12 §5 "dead-lettering": a due delivery at its
//! delivery limit is nacked (with requeue) by its worker while the sweeper
//! expires it: exactly one of them moves it, and it goes to `DeadLetter`
//! (never back to `Queued`). Then two consumers of the dead-letter queue race
//! `release_dead_letter` at that generation: exactly one frees the entry
//! (one chunk release, one push on the free queue). Actors run in spawned
//! threads; `explore` checks both the nack and the expiry won in some run.
//! The `#[should_panic]` twin releases with a blind store (no CAS), in the
//! model only (core unchanged), and frees the entry twice.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmex_core::ledger::{Deadline, Returned, TaskEntry, TaskState, TaskWord};
use shmex_core::sync::Ordering;
use shmex_loom::{assert_explored, explore};

const W1: u16 = 7;
const NOW: u64 = 100;
const MAX: u8 = 2;

fn delivered_at_limit() -> TaskEntry {
    let e = TaskEntry::new();
    let d = TaskWord {
        generation: 6,
        state: TaskState::Delivered,
        holder: W1,
        deliveries: MAX,
        priority: 0,
    };
    e.state.store(d.pack(), Ordering::Relaxed);
    e.deadline
        .store(Deadline::new(6, NOW).pack(), Ordering::Relaxed);
    e
}

fn blind_release(e: &TaskEntry, generation: u32) -> bool {
    let w = TaskWord::unpack(e.state.load(Ordering::Acquire)).unwrap();
    if w.generation != generation || w.state != TaskState::DeadLetter {
        return false;
    }
    let to = TaskWord {
        generation: generation.wrapping_add(1),
        state: TaskState::Free,
        ..w
    };
    e.state.store(to.pack(), Ordering::Release);
    true
}

fn run(broken: bool) {
    let seen = explore(move || {
        let e = Arc::new(delivered_at_limit());
        let (a, b) = (e.clone(), e.clone());
        let nack = thread::spawn(move || a.nack(W1, 6, true, MAX).ok());
        let exp = thread::spawn(move || b.expire(NOW, MAX).unwrap());
        let (n, x) = (nack.join().unwrap(), exp.join().unwrap());
        let (dl, who) = match (n, x) {
            (Some(Returned::DeadLettered(w)), None) => (w, 0),
            (None, Some(Returned::DeadLettered(w))) => (w, 1),
            other => panic!("exactly one dead-lettering expected, got {other:?}"),
        };
        assert_eq!(dl.generation, 7);
        assert!(e.release_dead_letter(6).is_err(), "stale release");
        let (c, d) = (e.clone(), e.clone());
        let g = dl.generation;
        let r1 = thread::spawn(move || {
            if broken {
                blind_release(&c, g)
            } else {
                c.release_dead_letter(g).is_ok()
            }
        });
        let r2 = thread::spawn(move || {
            if broken {
                blind_release(&d, g)
            } else {
                d.release_dead_letter(g).is_ok()
            }
        });
        let frees = [r1.join().unwrap(), r2.join().unwrap()];
        assert_eq!(
            frees.iter().filter(|&&f| f).count(),
            1,
            "a dead letter must be freed exactly once, got {frees:?}"
        );
        let w = TaskWord::unpack(e.state.load(Ordering::Acquire)).unwrap();
        assert_eq!((w.state, w.generation), (TaskState::Free, 8));
        who
    });
    assert_explored(&seen, &[0, 1]);
}

#[test]
fn nack_vs_expiry_at_limit_dead_letters_once_and_frees_once() {
    run(false);
}

#[test]
#[should_panic(expected = "a dead letter must be freed exactly once")]
fn blind_store_release_frees_a_dead_letter_twice() {
    run(true);
}

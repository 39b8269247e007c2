//! Loom model of issue 12 §5 "requeue vs ack vs expiry of the same task":
//! an entry `Delivered` to `W1` and due; the worker acks, the sweeper expires
//! it and reclaim (`requeue_from`, the worker's death) takes it back, all at
//! once, in spawned threads. Property: exactly one of the three transitions
//! wins. The `#[should_panic]` twin uses a broken expirer in the model (core
//! unchanged) that stores its result blindly instead of CAS-ing it, so it can
//! win alongside another transition.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmex_core::ledger::{Deadline, TaskEntry, TaskState, TaskWord};
use shmex_core::sync::Ordering;
use shmex_loom::{assert_explored, explore};

const W1: u16 = 7;
const NOW: u64 = 100;
const MAX: u8 = 10;

fn delivered_due() -> TaskEntry {
    let e = TaskEntry::new();
    let d = TaskWord {
        generation: 6,
        state: TaskState::Delivered,
        holder: W1,
        deliveries: 1,
        priority: 0,
    };
    e.state.store(d.pack(), Ordering::Relaxed);
    e.deadline
        .store(Deadline::new(6, NOW).pack(), Ordering::Relaxed);
    e
}

/// Broken: checks then stores without a CAS.
fn blind_expire(e: &TaskEntry) -> bool {
    let w = TaskWord::unpack(e.state.load(Ordering::Acquire)).unwrap();
    if w.state != TaskState::Delivered {
        return false;
    }
    let to = TaskWord {
        generation: w.generation.wrapping_add(1),
        state: TaskState::Queued,
        ..w
    };
    e.state.store(to.pack(), Ordering::Release);
    true
}

fn run(broken: bool) {
    let seen = explore(move || {
        let e = Arc::new(delivered_due());
        let (a, b, c) = (e.clone(), e.clone(), e.clone());
        let ack = thread::spawn(move || a.ack(W1, 6).is_ok());
        let exp = thread::spawn(move || {
            if broken {
                blind_expire(&b)
            } else {
                b.expire(NOW, MAX).unwrap().is_some()
            }
        });
        let req = thread::spawn(move || c.requeue_from(W1, MAX).is_ok());
        let wins = [
            ack.join().unwrap(),
            exp.join().unwrap(),
            req.join().unwrap(),
        ];
        let n = wins.iter().filter(|&&w| w).count();
        assert_eq!(n, 1, "exactly one transition must win, got {wins:?}");
        let w = TaskWord::unpack(e.state.load(Ordering::Acquire)).unwrap();
        assert_eq!(w.generation, 7);
        wins.iter().position(|&w| w).unwrap()
    });
    assert_explored(&seen, &[0, 1, 2]);
}

#[test]
fn ack_expire_requeue_exactly_one_wins() {
    run(false);
}

#[test]
#[should_panic(expected = "exactly one transition must win")]
fn blind_store_expiry_can_win_twice() {
    run(true);
}

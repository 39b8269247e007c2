//! Loom model of issue 12 §5 "ledger generation wrap-around" and the stale-id
//! half of "claim vs expiry" (item 5): an entry `Delivered` to `W1` at
//! generation `u32::MAX` (due) races its own expiry; the expirer then lets
//! `W1` claim the task again, so the new delivery's generation has wrapped
//! past zero and its holder is the same worker. The stale ack (generation
//! `u32::MAX`) must never end that new delivery.
//!
//! Actors run in spawned threads; `explore`/`assert_explored` check that
//! both outcomes (ack won, expiry won) were reached.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmex_core::ledger::{Deadline, Returned, TaskEntry, TaskError, TaskState, TaskWord};
use shmex_core::sync::Ordering;
use shmex_loom::{assert_explored, explore};

const W1: u16 = 7;
const NOW: u64 = 100;
const MAX_DELIVERIES: u8 = 10;

fn delivered_at_max() -> TaskEntry {
    let e = TaskEntry::new();
    let d = TaskWord {
        generation: u32::MAX,
        state: TaskState::Delivered,
        holder: W1,
        deliveries: 1,
        priority: 0,
    };
    e.state.store(d.pack(), Ordering::Relaxed);
    e.deadline
        .store(Deadline::new(d.generation, NOW).pack(), Ordering::Relaxed);
    e
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    AckWon,
    ExpiryWonStaleAckRejected,
}

/// A deliberately broken ack: checks state and holder but not the
/// generation (the bug the generation guards against).
fn ack_ignoring_generation(e: &TaskEntry, worker: u16) -> Result<(), ()> {
    let w = TaskWord::unpack(e.state.load(Ordering::Acquire)).unwrap();
    if w.state != TaskState::Delivered || w.holder != worker {
        return Err(());
    }
    let to = TaskWord {
        generation: w.generation.wrapping_add(1),
        state: TaskState::Free,
        ..w
    };
    e.state
        .compare_exchange(w.pack(), to.pack(), Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
        .map_err(|_| ())
}

fn run(broken: bool) {
    let seen = explore(move || {
        let e = Arc::new(delivered_at_max());
        let e2 = e.clone();
        // Expirer: takes the task back, then W1 claims it again (wrapped gen).
        let expirer = thread::spawn(move || match e2.expire(NOW, MAX_DELIVERIES).unwrap() {
            Some(Returned::Requeued(q)) => {
                assert_eq!(q.generation, 0, "generation wraps to 0");
                let d = e2.claim(q, W1, NOW + 1000).unwrap();
                assert_eq!(d.generation, 1);
                Some(d)
            }
            Some(r) => panic!("unexpected {r:?}"),
            None => None,
        });
        let e3 = e.clone();
        let acker = thread::spawn(move || {
            if broken {
                ack_ignoring_generation(&e3, W1).is_ok()
            } else {
                match e3.ack(W1, u32::MAX) {
                    Ok(_) => true,
                    Err(TaskError::Stale(_)) | Err(TaskError::WrongState(_)) => false,
                    Err(err) => panic!("unexpected {err:?}"),
                }
            }
        });
        let redelivery = expirer.join().unwrap();
        let acked = acker.join().unwrap();
        let w = TaskWord::unpack(e.state.load(Ordering::Acquire)).unwrap();
        match redelivery {
            // Expiry won: the stale ack must not have ended the new delivery.
            Some(d) => {
                assert!(
                    !acked,
                    "stale ack (gen u32::MAX) ended the wrapped delivery"
                );
                assert_eq!(w, d, "the new delivery is intact");
                // A stale nack must fail too.
                assert!(e.nack(W1, u32::MAX, true, MAX_DELIVERIES).is_err());
                Outcome::ExpiryWonStaleAckRejected
            }
            None => {
                assert!(acked, "neither the ack nor the expiry won");
                assert_eq!(w.state, TaskState::Free);
                assert_eq!(w.generation, 0, "ack at u32::MAX wraps to 0");
                Outcome::AckWon
            }
        }
    });
    assert_explored(
        &seen,
        &[Outcome::AckWon, Outcome::ExpiryWonStaleAckRejected],
    );
}

#[test]
fn stale_ack_after_generation_wrap_is_rejected() {
    run(false);
}

#[test]
#[should_panic(expected = "stale ack")]
fn broken_ack_without_generation_check_ends_wrapped_delivery() {
    run(true);
}

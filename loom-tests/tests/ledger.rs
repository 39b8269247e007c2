//! Loom models of `shmex_core::ledger`, the task entries' state machine:
//! claims, acks, nacks and ack-deadline expiries racing each other, and the
//! hand-over of a task from submitter to worker.
//!
//! As in `tests/mpmc.rs`, every actor runs in a spawned thread, and each
//! model checks that loom explored the outcomes it is about (loom 0.7's DPOR
//! skips some orders of a load-then-CAS thread against another thread's
//! earlier access; see that file's doc).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmex_core::ledger::{
    Deadline, Returned, TaskBody, TaskEntry, TaskError, TaskState, TaskWord, NO_DEADLINE, NO_HOLDER,
};
use shmex_core::mpmc::{Mpmc, MpmcControl, MpmcSlot};
use shmex_core::sync::Ordering;
use shmex_loom::{assert_explored, explore};
use std::collections::BTreeSet;
use std::fmt::Debug;

const SUBMITTER: u16 = 1;
const W1: u16 = 7;
const W2: u16 = 8;
/// "Now" for every expirer; deadlines at or below it are due.
const NOW: u64 = 100;

fn body() -> TaskBody {
    TaskBody {
        chunk: 3,
        len: 11,
        tag: 0xfeed,
        seq: 9,
    }
}

/// An entry `Queued` at generation 5 with one earlier delivery (by `W1`),
/// whose deadline word still carries that delivery's stamp (generation 3),
/// long due.
fn queued_after_one_delivery() -> (TaskEntry, TaskWord) {
    let e = TaskEntry::new();
    e.write_body(&body());
    let q = TaskWord {
        generation: 5,
        state: TaskState::Queued,
        holder: W1,
        deliveries: 1,
        priority: 0,
    };
    e.state.store(q.pack(), Ordering::Relaxed);
    e.deadline
        .store(Deadline::new(3, 0).pack(), Ordering::Relaxed);
    (e, q)
}

/// An entry `Delivered` to `W1` at generation 6 with a deadline of that
/// delivery, due at `NOW`.
fn delivered_to_w1_due() -> (TaskEntry, TaskWord) {
    let e = TaskEntry::new();
    e.write_body(&body());
    let d = TaskWord {
        generation: 6,
        state: TaskState::Delivered,
        holder: W1,
        deliveries: 1,
        priority: 0,
    };
    e.state.store(d.pack(), Ordering::Relaxed);
    e.deadline
        .store(Deadline::new(d.generation, NOW).pack(), Ordering::Relaxed);
    (e, d)
}

/// How a race between a worker's ack and an expiry ended, and whether the
/// expirer looked at the entry between the claim and its deadline stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AckVsExpiry {
    acked: bool,
    expired: bool,
    /// The expirer read `Delivered` with the previous delivery's stamp.
    saw_unstamped_claim: bool,
}

/// (a) A worker claims a queued task (deadline `deadline_ms`) and acks it
/// while an expirer whose clock reads `NOW` runs `expire`. The deadline word
/// starts with the previous delivery's stamp, already due. Checks: never
/// both the ack and the expiry succeed, and one of them always does; an
/// expiry can only have used the claim's own stamp, so with the claim's
/// deadline in the future (`deadline_ms > NOW`) nothing ever expires (the
/// stale, due stamp is ignored, also when the expirer looks between the
/// claim and its stamp); afterwards the entry is `Free` (acked) or `Queued`
/// with both deliveries counted (expired), one generation after the delivery.
fn claim_races_expiry(deadline_ms: u64) -> BTreeSet<AckVsExpiry> {
    explore(move || {
        let (e, q) = queued_after_one_delivery();
        let e = Arc::new(e);
        let worker = {
            let e = e.clone();
            thread::spawn(move || {
                let d = e.claim(q, W1, deadline_ms).expect("claim of a queued task");
                assert_eq!(d.deliveries, 2);
                assert_eq!(e.read_body(), body(), "body not visible to the claimer");
                (d, e.ack(W1, d.generation))
            })
        };
        let expirer = {
            let e = e.clone();
            thread::spawn(move || {
                // What the expirer is about to see (an observation for the
                // coverage check; `expire` reads both words again).
                let w = e.load().unwrap();
                let stamp = e.deadline();
                let unstamped =
                    w.state == TaskState::Delivered && stamp.generation16 != w.generation as u16;
                (e.expire(NOW, 0).expect("ledger corrupt"), unstamped)
            })
        };
        let (d, acked) = worker.join().unwrap();
        let (expired, saw_unstamped_claim) = expirer.join().unwrap();
        let end = e.load().unwrap();
        assert_eq!(end.generation, d.generation.wrapping_add(1));
        match (acked, expired) {
            (Ok(f), None) => {
                assert_eq!(f, end);
                assert_eq!((end.state, end.holder), (TaskState::Free, W1));
            }
            (Err(TaskError::Stale(_)), Some(Returned::Requeued(w))) => {
                assert!(
                    deadline_ms <= NOW,
                    "a deadline not due (or a stale stamp) expired"
                );
                assert_eq!(w, end);
                assert_eq!((end.state, end.deliveries), (TaskState::Queued, 2));
            }
            (a, x) => panic!("ack {a:?} with expiry {x:?}"),
        }
        AckVsExpiry {
            acked: acked.is_ok(),
            expired: expired.is_some(),
            saw_unstamped_claim,
        }
    })
}

/// [`claim_races_expiry`] with the claim's deadline due: the worker's ack
/// and the expiry race; each wins in some execution.
#[test]
fn claim_and_ack_race_due_expiry() {
    let seen = claim_races_expiry(NOW);
    assert!(seen.iter().any(|s| s.acked), "{seen:?}");
    assert!(seen.iter().any(|s| s.expired), "{seen:?}");
}

/// [`claim_races_expiry`] with the claim's deadline in the future: only the
/// stale stamp of the previous delivery is due, and it must never count,
/// including in the executions where the expirer looks between the claim
/// and its stamp.
#[test]
fn stale_deadline_stamp_never_expires_a_fresh_claim() {
    let seen = claim_races_expiry(NOW + 1);
    assert_explored(
        &seen,
        &[
            AckVsExpiry {
                acked: true,
                expired: false,
                saw_unstamped_claim: false,
            },
            AckVsExpiry {
                acked: true,
                expired: false,
                saw_unstamped_claim: true,
            },
        ],
    );
}

/// (b) `W1` holds a task whose deadline is due and acks it, while another
/// thread expires it and, if that worked, hands it to `W2` (claim, then
/// ack). Checks: exactly one of `W1`'s ack and the expiry succeeds; when the
/// task was redelivered, `W1`'s ack fails as `Stale` whether it runs before
/// or after `W2`'s claim (both explored), `W2`'s claim counts a second
/// delivery and `W2`'s ack succeeds; either way the task ends `Free`.
#[test]
fn ack_races_redelivery() {
    // `None`: W1's ack won; else the state W1's failed ack found.
    let seen = explore(|| {
        let (e, d1) = delivered_to_w1_due();
        let e = Arc::new(e);
        let w1 = {
            let e = e.clone();
            thread::spawn(move || e.ack(W1, d1.generation))
        };
        let redeliver = {
            let e = e.clone();
            thread::spawn(move || match e.expire(NOW, 0).expect("ledger corrupt") {
                None => false,
                Some(Returned::Requeued(q)) => {
                    let d2 = e.claim(q, W2, NO_DEADLINE).expect("claim after expiry");
                    assert_eq!((d2.holder, d2.deliveries), (W2, 2));
                    let f = e.ack(W2, d2.generation).expect("second worker's ack");
                    assert_eq!(f.state, TaskState::Free);
                    true
                }
                Some(r) => panic!("unexpected {r:?}"),
            })
        };
        let acked = w1.join().unwrap();
        let redelivered = redeliver.join().unwrap();
        let outcome = match (acked, redelivered) {
            (Ok(_), false) => None,
            (Err(TaskError::Stale(now)), true) => Some((now.state, now.holder)),
            (a, r) => panic!("W1's ack {a:?}, redelivered {r}"),
        };
        assert_eq!(e.load().unwrap().state, TaskState::Free);
        // However it went, W1's delivery is over.
        assert!(matches!(e.ack(W1, d1.generation), Err(TaskError::Stale(_))));
        outcome
    });
    assert_explored(
        &seen,
        &[
            None,
            Some((TaskState::Queued, W1)), // W1 acked between expiry and claim
            Some((TaskState::Delivered, W2)), // ... while W2 held it
            Some((TaskState::Free, W2)),   // ... after W2's ack
        ],
    );
}

/// (b') `W1` nacks (requeue) a task whose deadline is due while an expirer
/// runs. Checks: exactly one of them wins (each in some execution); the
/// loser's view is `Stale` / `None`; the task is `Queued` once, one
/// generation on.
#[test]
fn nack_races_expiry() {
    let seen = explore(|| {
        let (e, d1) = delivered_to_w1_due();
        let e = Arc::new(e);
        let w1 = {
            let e = e.clone();
            thread::spawn(move || e.nack(W1, d1.generation, true, 0))
        };
        let expirer = {
            let e = e.clone();
            thread::spawn(move || e.expire(NOW, 0).expect("ledger corrupt"))
        };
        let nacked = w1.join().unwrap();
        let expired = expirer.join().unwrap();
        let nack_won = match (&nacked, &expired) {
            (Ok(Returned::Requeued(_)), None) => true,
            (Err(TaskError::Stale(_)), Some(Returned::Requeued(_))) => false,
            (n, x) => panic!("nack {n:?} with expiry {x:?}"),
        };
        let end = e.load().unwrap();
        assert_eq!(end.state, TaskState::Queued);
        assert_eq!(end.generation, d1.generation + 1);
        nack_won
    });
    assert_explored(&seen, &[false, true]);
}

/// (c) Two workers load the entry's word and claim it. Checks: exactly one
/// claim succeeds; the other is `Stale` (it loaded `Queued` but lost the
/// CAS) or `WrongState` (it loaded the winner's `Delivered` word), naming
/// the winner's word either way (both explored); the winner reads the body.
#[test]
fn two_workers_race_to_claim() {
    let seen = explore(|| {
        let (e, _) = queued_after_one_delivery();
        let e = Arc::new(e);
        let workers: Vec<_> = [W1, W2]
            .into_iter()
            .map(|w| {
                let e = e.clone();
                thread::spawn(move || {
                    let q = e.load().expect("ledger corrupt");
                    let r = e.claim(q, w, NO_DEADLINE);
                    if r.is_ok() {
                        assert_eq!(e.read_body(), body());
                    }
                    r
                })
            })
            .collect();
        let results: Vec<_> = workers.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<TaskWord> = results.iter().filter_map(|r| r.ok()).collect();
        assert_eq!(winners.len(), 1, "claims: {results:?}");
        let loser = results.iter().find_map(|r| r.err()).unwrap();
        let lost_cas = match loser {
            TaskError::Stale(w) if w == winners[0] => true,
            TaskError::WrongState(w) if w == winners[0] => false,
            other => panic!("loser: {other:?}"),
        };
        assert_eq!(e.load().unwrap(), winners[0]);
        (winners[0].holder, lost_cas)
    });
    assert_explored(&seen, &[(W1, true), (W1, false), (W2, true), (W2, false)]);
}

/// Submitter → worker hand-over through the state word alone: the submitter
/// reserves, writes the body and publishes while a worker loads the word
/// and, if it is `Queued`, claims it. Checks: the claim then succeeds and the
/// worker sees the body (the fields are relaxed atomics: only the publish
/// and claim CASes order them); both "too early" and "claimed" are explored.
#[test]
fn publish_hands_body_to_claimer() {
    let seen = explore(|| {
        let e = Arc::new(TaskEntry::new());
        let submitter = {
            let e = e.clone();
            thread::spawn(move || {
                let r = e.reserve(SUBMITTER).expect("reserve a free entry");
                e.write_body(&body());
                e.publish(r, 0).expect("publish");
            })
        };
        let worker = {
            let e = e.clone();
            thread::spawn(move || {
                let q = e.load().unwrap();
                if q.state != TaskState::Queued {
                    return false;
                }
                e.claim(q, W1, NO_DEADLINE).expect("claim");
                assert_eq!(e.read_body(), body(), "body not handed over");
                true
            })
        };
        submitter.join().unwrap();
        worker.join().unwrap()
    });
    assert_explored(&seen, &[false, true]);
}

/// Submitter → worker hand-over through a ready queue, as the task exchange
/// does it: the submitter reserves, writes the body, publishes and pushes
/// the index; the worker pops the index (once, no waiting), loads the word
/// and claims. Checks: a worker that got the index always finds the entry
/// `Queued`, wins the claim and sees the body; both outcomes are explored.
#[test]
fn submit_then_claim_through_ready_queue() {
    struct Exchange {
        entry: TaskEntry,
        control: MpmcControl,
        slots: Vec<MpmcSlot>,
    }
    impl Exchange {
        fn ready(&self) -> Mpmc<'_> {
            Mpmc::new(&self.control, &self.slots).unwrap()
        }
    }
    let seen = explore(|| {
        let x = Arc::new(Exchange {
            entry: TaskEntry::new(),
            control: MpmcControl::new(),
            slots: (0..2).map(MpmcSlot::new).collect(),
        });
        let submitter = {
            let x = x.clone();
            thread::spawn(move || {
                let r = x.entry.reserve(SUBMITTER).expect("reserve a free entry");
                x.entry.write_body(&body());
                let q = x.entry.publish(r, 1).expect("publish");
                assert_eq!((q.holder, q.priority), (NO_HOLDER, 1));
                x.ready().push(0).expect("push index");
            })
        };
        let worker = {
            let x = x.clone();
            thread::spawn(move || {
                let Some(i) = x.ready().pop().expect("queue corrupt") else {
                    return false;
                };
                assert_eq!(i, 0);
                let q = x.entry.load().unwrap();
                assert_eq!(
                    q.state,
                    TaskState::Queued,
                    "index visible before the publish"
                );
                let d = x.entry.claim(q, W1, NO_DEADLINE).expect("claim");
                assert_eq!(d.deliveries, 1);
                assert_eq!(x.entry.read_body(), body(), "body not handed over");
                true
            })
        };
        submitter.join().unwrap();
        worker.join().unwrap()
    });
    assert_explored(&seen, &[false, true]);
}

//! Loom models of `shmex_core::gate`, the pause / grace-period handshake
//! between a port's data-path operations and a reclaimer.
//!
//! Records that only their current owner may touch (the port inside an
//! operation, or the reclaimer while every port is idle) are loom
//! `UnsafeCell`s: loom reports any access not ordered by happens-before with
//! the previous one, so a reclaimer that reads a port's records while the
//! port is inside an operation (or without having synchronised with its end)
//! fails the model, as does a port that enters while paused.
//!
//! As in the runtime, a reclaim pass runs under a control lock and a port
//! refused with `Paused` waits by taking that lock (the runtime spins a
//! little first). Waiting by spinning on the state word cannot be checked
//! once two threads spin: loom, having no fairness, lets them hand the CPU
//! to each other forever ("Model exceeded maximum number of branches").
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicBool;
use loom::sync::{Arc, Mutex};
use loom::thread;
use shmex_core::gate::{self, Enter};
use shmex_core::sync::{spin_hint, AtomicU32, Ordering};
use shmex_loom::model;

/// One port: its busy counter and a record pair that each operation and each
/// reclaim pass rewrites as two separate plain writes (so a reader racing a
/// writer could see a torn pair).
struct Port {
    busy: AtomicU32,
    record: [UnsafeCell<u32>; 2],
    /// Set by the port right after entering, cleared right before exiting;
    /// a reclaimer that sees it set met the port mid-operation.
    inside: AtomicBool,
}

impl Port {
    /// Reads the record pair and checks that both halves come from the same
    /// writer. The caller must own the records.
    fn read_record(&self) -> u32 {
        let a = self.record[0].with(|p| unsafe { *p });
        let b = self.record[1].with(|p| unsafe { *p });
        assert_eq!(a, b, "torn record");
        a
    }

    /// Writes `v` into both halves, one at a time. The caller must own the
    /// records.
    fn write_record(&self, v: u32) {
        self.record[0].with_mut(|p| unsafe { *p = v });
        self.record[1].with_mut(|p| unsafe { *p = v });
    }
}

/// One exchange: the state word, the control lock passes run under, and the
/// ports.
struct Exchange {
    state: AtomicU32,
    control: Mutex<()>,
    ports: Vec<Port>,
}

impl Exchange {
    fn new(ports: usize) -> Arc<Self> {
        Arc::new(Exchange {
            state: AtomicU32::new(0),
            control: Mutex::new(()),
            ports: (0..ports)
                .map(|_| Port {
                    busy: AtomicU32::new(0),
                    record: [UnsafeCell::new(0), UnsafeCell::new(0)],
                    inside: AtomicBool::new(false),
                })
                .collect(),
        })
    }

    /// Port `i`'s owner: one operation that bumps the port's record by 1,
    /// retrying after the pass when paused. Returns `false` when the exchange
    /// is down.
    fn op(&self, i: usize) -> bool {
        let port = &self.ports[i];
        loop {
            match gate::enter(&port.busy, &self.state, false) {
                Enter::Entered => {
                    port.inside.store(true, Ordering::Relaxed);
                    let v = port.read_record();
                    port.write_record(v + 1);
                    port.inside.store(false, Ordering::Relaxed);
                    gate::exit(&port.busy);
                    return true;
                }
                // The pass holds the control lock until after `resume`.
                Enter::Paused => drop(self.control.lock().unwrap()),
                Enter::Down => return false,
                Enter::Nested => panic!("not inside an operation"),
                Enter::Corrupt => panic!("state word corrupt"),
            }
        }
    }

    /// Waits until every port is idle (after `pause`).
    fn wait_idle(&self) {
        for port in &self.ports {
            while !gate::is_idle(&port.busy) {
                spin_hint();
            }
        }
    }

    /// The reclaimer's work on the records of every port: checks that no
    /// port is mid-operation and the records are whole, bumps them by 10.
    fn reclaim(&self) {
        for port in &self.ports {
            assert!(
                !port.inside.load(Ordering::Relaxed),
                "port inside an operation while paused and idle"
            );
            let v = port.read_record();
            port.write_record(v + 10);
        }
    }

    /// A whole reclaim pass: under the control lock, pause, wait until every
    /// port is idle, `reclaim`, run `before_resume`, resume.
    fn pass(&self, before_resume: impl FnOnce()) {
        let _control = self.control.lock().unwrap();
        gate::pause(&self.state);
        self.wait_idle();
        self.reclaim();
        before_resume();
        gate::resume(&self.state);
    }
}

/// Spawns a thread that owns port `i` of `ex` and runs `ops` operations on it.
fn spawn_port(ex: &Arc<Exchange>, i: usize, ops: usize) -> thread::JoinHandle<()> {
    let ex = ex.clone();
    thread::spawn(move || {
        for _ in 0..ops {
            assert!(ex.op(i));
        }
    })
}

/// One port doing two operations, one reclaim pass. Checks: the reclaimer
/// never meets the port mid-operation, every record access is ordered with
/// the previous one (loom's `UnsafeCell` check: no entry while paused,
/// hand-over synchronised both ways), no torn pair, no update lost.
#[test]
fn pause_excludes_operations() {
    model(|| {
        let ex = Exchange::new(1);
        let port = spawn_port(&ex, 0, 2);
        ex.pass(|| {});
        port.join().unwrap();
        assert_eq!(ex.ports[0].read_record(), 12);
        assert!(gate::is_idle(&ex.ports[0].busy));
        assert_eq!(ex.state.load(Ordering::Relaxed), 0);
    });
}

/// Same with two ports doing two operations each, so the reclaimer's scan
/// meets one port entering while it waits for the other.
#[test]
fn pause_excludes_operations_two_ports() {
    model(|| {
        let ex = Exchange::new(2);
        let ports = [spawn_port(&ex, 0, 2), spawn_port(&ex, 1, 2)];
        ex.pass(|| {});
        for p in ports {
            p.join().unwrap();
        }
        assert_eq!(ex.ports[0].read_record(), 12);
        assert_eq!(ex.ports[1].read_record(), 12);
    });
}

/// One port doing two operations, two reclaim passes back to back, so a
/// port refused by the first pass may retry into the second. Same checks.
#[test]
fn pause_excludes_operations_two_passes() {
    model(|| {
        let ex = Exchange::new(1);
        let port = spawn_port(&ex, 0, 2);
        ex.pass(|| {});
        ex.pass(|| {});
        port.join().unwrap();
        assert_eq!(ex.ports[0].read_record(), 22);
    });
}

/// An operation that starts after `pause` returned. Checks: its first
/// `enter` returns `Paused` and leaves the port idle; after `resume` the
/// retried operation enters and sees the reclaimer's writes (synchronised,
/// not torn).
#[test]
fn entry_after_pause_waits_for_resume() {
    model(|| {
        let ex = Exchange::new(1);
        let tried = Arc::new(AtomicBool::new(false));
        let control = ex.control.lock().unwrap();
        gate::pause(&ex.state);
        // Spawned after the pause: the port's first attempt happens after it.
        let port = {
            let (ex, tried) = (ex.clone(), tried.clone());
            thread::spawn(move || {
                let busy = &ex.ports[0].busy;
                assert_eq!(gate::enter(busy, &ex.state, false), Enter::Paused);
                assert!(gate::is_idle(busy));
                tried.store(true, Ordering::Relaxed);
                assert!(ex.op(0));
            })
        };
        ex.wait_idle();
        ex.reclaim();
        // Keep the pause until the first attempt was made (otherwise the
        // whole pass may end before the port starts, and it enters at once).
        while !tried.load(Ordering::Relaxed) {
            spin_hint();
        }
        gate::resume(&ex.state);
        drop(control);
        port.join().unwrap();
        assert_eq!(ex.ports[0].read_record(), 11);
    });
}

/// One port doing two operations while a pass takes the exchange down.
/// Checks: every operation either runs outside the pass (excluded from it as
/// above) or returns `Down`; once one returned `Down` all later ones do; an
/// operation started after `take_down` (known through a flag) returns
/// `Down`; a refused entry leaves the port idle; `resume` leaves the exchange
/// down.
#[test]
fn down_refuses_entry() {
    model(|| {
        let ex = Exchange::new(1);
        let downed = Arc::new(AtomicBool::new(false));
        let port = {
            let (ex, downed) = (ex.clone(), downed.clone());
            thread::spawn(move || {
                let mut ran = 0;
                let mut refused = false;
                for _ in 0..2 {
                    let after_down = downed.load(Ordering::Acquire);
                    if ex.op(0) {
                        assert!(!refused && !after_down, "entered a down exchange");
                        ran += 1;
                    } else {
                        refused = true;
                    }
                    assert!(gate::is_idle(&ex.ports[0].busy));
                }
                ran
            })
        };
        ex.pass(|| {
            gate::take_down(&ex.state);
            downed.store(true, Ordering::Release);
        });
        let ran = port.join().unwrap();
        let port = &ex.ports[0];
        assert_eq!(port.read_record(), 10 + ran);
        assert!(gate::is_down(&ex.state) && !gate::is_paused(&ex.state));
        // This thread owns the port now.
        assert_eq!(gate::enter(&port.busy, &ex.state, false), Enter::Down);
        assert!(gate::is_idle(&port.busy));
    });
}

/// A leaving port and `senders` sender ports doing `ops` operations each.
/// Every operation checks, inside the operation, whether the leaver is marked
/// free and pushes into its inbox only if not (a plain counter per sender,
/// standing for that sender's slots of the inbox). The leaver marks itself
/// free, calls `grace_fence`, waits out each operation it saw in progress,
/// then drains. Checks: the drain is ordered after every push (loom's
/// `UnsafeCell` check), and nothing is pushed after the drain.
fn grace_period(senders: usize, ops: usize) {
    model(move || {
        let state = Arc::new(AtomicU32::new(0));
        let busy: Arc<Vec<AtomicU32>> = Arc::new((0..senders).map(|_| AtomicU32::new(0)).collect());
        let free = Arc::new(AtomicU32::new(0));
        let inbox: Arc<Vec<UnsafeCell<u32>>> =
            Arc::new((0..senders).map(|_| UnsafeCell::new(0)).collect());
        let threads: Vec<_> = (0..senders)
            .map(|i| {
                let (state, busy, free, inbox) =
                    (state.clone(), busy.clone(), free.clone(), inbox.clone());
                thread::spawn(move || {
                    for _ in 0..ops {
                        assert_eq!(gate::enter(&busy[i], &state, false), Enter::Entered);
                        // Relaxed: the fence in `enter` orders it after the busy mark.
                        if free.load(Ordering::Relaxed) == 0 {
                            inbox[i].with_mut(|p| unsafe { *p += 1 });
                        }
                        gate::exit(&busy[i]);
                    }
                })
            })
            .collect();
        // Relaxed: `grace_fence` orders it before the busy snapshots.
        free.store(1, Ordering::Relaxed);
        gate::grace_fence();
        let seen: Vec<_> = busy.iter().map(gate::op_in_progress).collect();
        for (b, seen) in busy.iter().zip(seen) {
            if let Some(seen) = seen {
                while !gate::op_ended(b, seen) {
                    spin_hint();
                }
            }
        }
        let drained: Vec<u32> = inbox.iter().map(|c| c.with(|p| unsafe { *p })).collect();
        for t in threads {
            t.join().unwrap();
        }
        for (c, drained) in inbox.iter().zip(drained) {
            assert_eq!(c.with(|p| unsafe { *p }), drained, "pushed after drain");
        }
    });
}

/// `grace_period` with one sender doing two operations: the leaver may see
/// the first in progress and the second already begun when it looks again.
#[test]
fn grace_period_one_sender_two_ops() {
    grace_period(1, 2);
}

/// `grace_period` with two senders doing two operations each.
#[test]
fn grace_period_two_senders() {
    grace_period(2, 2);
}

/// A port entering while another process overwrites the state word with a
/// bit no pauser sets (random bytes in a live segment). Every entry answers
/// `Entered` (it came first) or `Corrupt`, never `Paused` (which would make
/// the port wait for a pass nobody will end), and every refused entry leaves
/// the port idle. `classify` stands for `gate::enter`; the twin below plugs
/// in the old classification to show the model catches it.
fn corrupt_state_word(classify: fn(&AtomicU32, &AtomicU32) -> Enter) {
    model(move || {
        let state = Arc::new(AtomicU32::new(0));
        let busy = Arc::new(AtomicU32::new(0));
        let writer = {
            let state = state.clone();
            thread::spawn(move || state.fetch_or(4, Ordering::SeqCst))
        };
        let port = {
            let (state, busy) = (state.clone(), busy.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    match classify(&busy, &state) {
                        Enter::Entered => gate::exit(&busy),
                        Enter::Corrupt => {}
                        other => panic!("entry answered {other:?}"),
                    }
                    assert!(gate::is_idle(&busy));
                }
            })
        };
        writer.join().unwrap();
        port.join().unwrap();
        assert!(gate::is_corrupt(&state));
        assert_eq!(gate::enter(&busy, &state, false), Enter::Corrupt);
    });
}

#[test]
fn corrupt_state_word_is_reported() {
    corrupt_state_word(|busy, state| gate::enter(busy, state, false));
}

/// The bug of issue 12 item 12(a): unknown bits read as a pause.
#[test]
#[should_panic(expected = "entry answered Paused")]
fn corrupt_state_word_twin_unknown_bits_as_pause() {
    corrupt_state_word(|busy, state| match gate::enter(busy, state, false) {
        Enter::Corrupt => Enter::Paused,
        other => other,
    });
}

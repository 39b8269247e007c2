//! Loom models of `shmex_core::wait::WaitWord`, the user-space half of the
//! futex sleep/wake protocol, driving a real `Ring` as the receiver's queue.
#![cfg(loom)]

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use shmex_core::sync::Ordering;
use shmex_core::wait::WaitWord;
use shmex_loom::{desc, model, tag_of, HeapRing};

/// One receiver's node: its queue, its wait word, and a futex emulation.
///
/// The futex is a loom `Mutex` + `Condvar`: `futex_wait(token)` sleeps while
/// `seq == token` (checked under the lock, like the kernel checks the word
/// atomically with queueing the waiter); `futex_wake()` takes the lock and
/// wakes everyone. A sender bumps `seq` (in `notify`) before `futex_wake`, so
/// the emulation itself cannot lose a wake-up: if the protocol does, the
/// receiver sleeps forever and loom reports a deadlock.
struct Node {
    queue: HeapRing,
    word: WaitWord,
    futex: Mutex<()>,
    woken: Condvar,
}

impl Node {
    fn new() -> Self {
        Node {
            queue: HeapRing::new(2),
            word: WaitWord::new(),
            futex: Mutex::new(()),
            woken: Condvar::new(),
        }
    }

    fn futex_wait(&self, token: u32) {
        let mut guard = self.futex.lock().unwrap();
        while self.word.seq.load(Ordering::Relaxed) == token {
            guard = self.woken.wait(guard).unwrap();
        }
    }

    fn futex_wake(&self) {
        let _guard = self.futex.lock().unwrap();
        self.woken.notify_all();
    }

    /// Sender: publish, then wake the receiver if `notify` says it may sleep.
    /// Uses the symmetric form (`notify(false)`: the sender fences itself);
    /// the asymmetric form relies on the receiver's `membarrier`, which loom
    /// cannot express.
    fn send(&self, tag: u64) {
        self.queue.ring().push(&desc(tag)).expect("queue has room");
        if self.word.notify(false) {
            self.futex_wake();
        }
    }

    /// Receiver: pops until it has `n` descriptors, sleeping with the
    /// documented protocol whenever the queue is empty: check the queue;
    /// `prepare()`; check again; if still empty sleep until `seq != token`;
    /// `finish()`.
    fn receive(&self, n: usize) -> Vec<u64> {
        let ring = self.queue.ring();
        let mut got = Vec::new();
        loop {
            while let Some(d) = ring.pop() {
                got.push(tag_of(&d));
            }
            if got.len() == n {
                return got;
            }
            let token = self.word.prepare();
            if ring.has_pending() {
                self.word.finish();
                continue;
            }
            self.futex_wait(token);
            self.word.finish();
        }
    }
}

/// One receiver, one sender sending one message. Checks: no lost wake-up —
/// the receiver always gets the message instead of sleeping forever (loom
/// reports a deadlock otherwise); and the sleeper count is back to 0.
#[test]
fn no_lost_wakeup_one_sender() {
    model(|| {
        let node = Arc::new(Node::new());
        let sender = {
            let node = node.clone();
            thread::spawn(move || node.send(1))
        };
        assert_eq!(node.receive(1), [1]);
        sender.join().unwrap();
        assert_eq!(node.word.sleepers.load(Ordering::Relaxed), 0);
    });
}

/// One receiver, two senders sending one message each, so the receiver may
/// sleep twice and a notify may see a sleeper that is already leaving.
/// Checks: no lost wake-up (the receiver gets both messages, no deadlock),
/// nothing duplicated, and the sleeper count is back to 0.
#[test]
fn no_lost_wakeup_two_senders() {
    model(|| {
        let node = Arc::new(Node::new());
        let senders: Vec<_> = [1, 2]
            .into_iter()
            .map(|tag| {
                let node = node.clone();
                thread::spawn(move || node.send(tag))
            })
            .collect();
        let mut got = node.receive(2);
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(node.word.sleepers.load(Ordering::Relaxed), 0);
    });
}

//! Wait word: the user-space half of a futex-based sleep/wake protocol.
//!
//! A receiver that found nothing spins for a while, then announces itself with
//! [`WaitWord::prepare`], checks its queues once more and, if still empty,
//! sleeps on [`WaitWord::seq`] until the value changes (the runtime's futex
//! call; this crate makes no system call). A sender, after publishing,
//! calls [`WaitWord::notify`]: it returns `true` only when someone is asleep,
//! so a sender pays the wake-up system call only then.
//!
//! No lost wake-up: both sides put a sequentially consistent fence between
//! their write (sender: the message; receiver: the sleeper count) and their
//! read (sender: the sleeper count; receiver: the queues), so at least one of
//! them sees the other's write (Dekker). The runtime makes the sender's side
//! free where it can: the receiver, about to sleep anyway, adds a heavy
//! barrier that forces a fence on every running sender (`membarrier`), and
//! senders then pass `asymmetric = true` to [`WaitWord::notify`]. A receiver that sleeps has announced
//! itself before its last check; a sender that saw no sleeper published before
//! that check. A sleeper woken by `seq` changing re-checks, so spurious wakes
//! are harmless.

use crate::sync::{fence, AtomicU32, Ordering};

/// One wait word, shared by every port of a node: one thread can sleep on
/// all the queues of all the exchanges it uses.
#[repr(C)]
pub struct WaitWord {
    /// Bumped by a notifier that saw a sleeper; the futex word.
    pub seq: AtomicU32,
    /// Number of receivers between `prepare` and `finish`.
    pub sleepers: AtomicU32,
}

impl WaitWord {
    /// A word nobody waits on (used to build it on the heap).
    pub fn new() -> Self {
        WaitWord {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Announces a sleeper and returns the value to sleep on. The caller must
    /// check its queues after this and call [`finish`](Self::finish) when done
    /// waiting, whether it slept or not.
    pub fn prepare(&self) -> u32 {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.seq.load(Ordering::SeqCst)
    }

    /// Withdraws the announcement made by [`prepare`](Self::prepare).
    pub fn finish(&self) {
        // A dead sleeper may have left the count high; never wrap below zero.
        let _ = self
            .sleepers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Called by a sender after publishing. Returns `true` when a receiver may
    /// be asleep; the caller must then wake the futex at [`seq`](Self::seq).
    ///
    /// `asymmetric`: the receivers of this word issue a process-wide heavy
    /// barrier (Linux `membarrier`) after [`prepare`](Self::prepare), which
    /// stands in for the sender's fence; the sender then only has to keep the
    /// compiler from reordering its publish and its sleeper check. The loom
    /// models check the symmetric form (`false`), which the heavy barrier
    /// refines.
    pub fn notify(&self, asymmetric: bool) -> bool {
        if asymmetric {
            core::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
        if self.sleepers.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.seq.fetch_add(1, Ordering::SeqCst);
        true
    }
}

impl Default for WaitWord {
    fn default() -> Self {
        Self::new()
    }
}

//! The barrier mode of a namespace: whether the light sides of the Dekker
//! handshakes ([`gate::enter`](crate::gate::enter),
//! [`WaitWord::notify`](crate::wait::WaitWord::notify)) may keep only a
//! compiler fence because every heavy side issues a process-wide barrier
//! (Linux `membarrier`), or must fence themselves.
//!
//! The mode is one word in shared memory: [`ASYMMETRIC`] until a node that
//! cannot issue or receive the heavy barrier switches it to [`FENCED`]
//! ([`fall_back`]), for good. The word is only a hint (shared memory is
//! untrusted): a process that is not registered for the heavy barrier fences
//! whatever the word says and puts the word back to fenced
//! ([`light_side`]), and a heavy side whose barrier fails falls back
//! ([`heavy_side`]).
//!
//! The switch is not instantaneous: a light side that read [`ASYMMETRIC`]
//! just before the switch may still be in an operation without its fence
//! while a heavy side that read [`FENCED`] just after it skips the heavy
//! barrier (see the loom model `membarrier_switch`).

use crate::sync::{fence, AtomicU32, Ordering};

/// Mode word value: the heavy sides issue the heavy barrier; registered
/// light sides keep only a compiler fence.
pub const ASYMMETRIC: u32 = 0;

/// Mode word value (any value but [`ASYMMETRIC`] counts): every light side
/// fences.
pub const FENCED: u32 = 1;

/// True when the word says [`ASYMMETRIC`]. Acquire: pairs with the word's
/// initialisation.
pub fn says_asymmetric(mode: &AtomicU32) -> bool {
    mode.load(Ordering::Acquire) == ASYMMETRIC
}

/// Switches the namespace to [`FENCED`] for good, then fences.
pub fn fall_back(mode: &AtomicU32) {
    mode.store(FENCED, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// The light side's `asymmetric` argument. `registered`: this process
/// receives the heavy sides' barriers (and can issue its own). An
/// unregistered process always fences, and switches a word that says
/// [`ASYMMETRIC`] (overwritten, or read before it joined) back to fenced,
/// so that registered heavy sides keep fencing for it.
pub fn light_side(mode: &AtomicU32, registered: bool) -> bool {
    if registered {
        return says_asymmetric(mode);
    }
    if says_asymmetric(mode) {
        fall_back(mode);
    }
    false
}

/// The heavy side's mode check, after its own full fence: issues the heavy
/// barrier (`membarrier`, which returns whether it succeeded) when the word
/// says [`ASYMMETRIC`], and falls back when it fails.
pub fn heavy_side(mode: &AtomicU32, membarrier: impl FnOnce() -> bool) {
    if says_asymmetric(mode) && !membarrier() {
        fall_back(mode);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn registered_light_side_follows_the_word() {
        let mode = AtomicU32::new(ASYMMETRIC);
        assert!(light_side(&mode, true));
        fall_back(&mode);
        assert!(!light_side(&mode, true));
        // Any value but ASYMMETRIC counts as fenced.
        mode.store(7, Ordering::Relaxed);
        assert!(!light_side(&mode, true));
    }

    #[test]
    fn unregistered_light_side_fences_and_puts_the_word_back() {
        let mode = AtomicU32::new(ASYMMETRIC);
        assert!(!light_side(&mode, false));
        assert_eq!(mode.load(Ordering::Relaxed), FENCED);
    }

    #[test]
    fn heavy_side_issues_the_barrier_only_when_asymmetric() {
        let mode = AtomicU32::new(ASYMMETRIC);
        let mut calls = 0;
        heavy_side(&mode, || {
            calls += 1;
            true
        });
        assert_eq!((calls, says_asymmetric(&mode)), (1, true));
        heavy_side(&mode, || {
            calls += 1;
            false
        });
        assert_eq!((calls, says_asymmetric(&mode)), (2, false));
        heavy_side(&mode, || {
            calls += 1;
            true
        });
        assert_eq!(calls, 2);
    }
}

//! The barrier mode of a namespace: whether the light sides of the Dekker
//! handshakes ([`gate::enter`](crate::gate::enter),
//! [`WaitWord::notify`](crate::wait::WaitWord::notify)) may keep only a
//! compiler fence because every heavy side issues a process-wide barrier
//! (Linux `membarrier`), or must fence themselves.
//!
//! The mode is one word in shared memory, moving one way only:
//! [`ASYMMETRIC`] → [`SWITCHING`] → [`FENCED`].
//!
//! - A node that cannot issue or receive the heavy barrier starts the switch
//!   ([`fall_back`]); from then on every light side that reads the word
//!   fences.
//! - A light side reads the word *after* its own store (the busy mark, the
//!   published message), so one that read [`ASYMMETRIC`] has that store
//!   drained by any heavy barrier issued after the switch began.
//! - While the word says [`SWITCHING`], light sides that read
//!   [`ASYMMETRIC`] just before the switch may still be in an operation
//!   without their fence: every heavy side issues a barrier (`membarrier`
//!   if its process is registered, else the slow global one, which needs no
//!   registration), then completes the switch ([`FENCED`]).
//! - Only [`FENCED`] lets a heavy side skip the barrier: it is written after
//!   a barrier that followed the switch's start, which covered every light
//!   side still trusting the old word (loom model `membarrier_switch`).
//!
//! The word is only a hint (shared memory is untrusted): a process that is
//! not registered for the heavy barrier fences whatever the word says and
//! restarts the switch if the word says [`ASYMMETRIC`] ([`light_side`]);
//! any value other than the three is treated as [`SWITCHING`].

use crate::sync::{fence, AtomicU32, Ordering};

/// Mode word value: the heavy sides issue the heavy barrier; registered
/// light sides keep only a compiler fence.
pub const ASYMMETRIC: u32 = 0;

/// Mode word value: a node fell back; light sides fence, heavy sides still
/// issue a barrier until one of them completes the switch. (Any value that
/// is none of the three counts as this one.)
pub const SWITCHING: u32 = 1;

/// Mode word value: the switch is complete; every light side fences and the
/// heavy sides rely on that.
pub const FENCED: u32 = 2;

/// True when the word says [`ASYMMETRIC`]. Acquire: pairs with the word's
/// initialisation and with [`FENCED`]'s release.
#[inline]
pub fn says_asymmetric(mode: &AtomicU32) -> bool {
    mode.load(Ordering::Acquire) == ASYMMETRIC
}

/// Starts the switch to fenced mode (if the word still says
/// [`ASYMMETRIC`]), then fences. The switch completes at the next heavy
/// side ([`heavy_side`]).
pub fn fall_back(mode: &AtomicU32) {
    let _ = mode.compare_exchange(ASYMMETRIC, SWITCHING, Ordering::SeqCst, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// The light side's `asymmetric` answer, read after the light side's own
/// store. `registered`: this process receives the heavy sides' barriers
/// (and can issue its own). An unregistered process always fences, and
/// restarts the switch when the word says [`ASYMMETRIC`] (overwritten, or
/// read before it joined), so that heavy sides keep covering it.
#[inline]
pub fn light_side(mode: &AtomicU32, registered: bool) -> bool {
    if registered {
        return says_asymmetric(mode);
    }
    if says_asymmetric(mode) {
        fall_back(mode);
    }
    false
}

/// The heavy side's mode check, after its own full fence. `membarrier`
/// issues the expedited heavy barrier (false when this process is not
/// registered or the call failed); `slow_barrier` the one that needs no
/// registration (false where the kernel lacks it).
///
/// - [`ASYMMETRIC`]: issues `membarrier`; if it fails, starts the switch
///   and goes on as for [`SWITCHING`].
/// - [`SWITCHING`] (or garbage): issues `membarrier`, else `slow_barrier`;
///   if either succeeded, completes the switch ([`FENCED`]).
/// - [`FENCED`]: nothing; every light side fences.
pub fn heavy_side(
    mode: &AtomicU32,
    membarrier: impl FnOnce() -> bool,
    slow_barrier: impl FnOnce() -> bool,
) {
    let mut membarrier = Some(membarrier);
    let mut seen = mode.load(Ordering::Acquire);
    if seen == FENCED {
        return;
    }
    if seen == ASYMMETRIC {
        if membarrier.take().is_some_and(|m| m()) {
            return;
        }
        fall_back(mode);
        seen = mode.load(Ordering::Acquire);
        if seen == FENCED {
            return;
        }
    }
    let barrier_done = membarrier.take().is_some_and(|m| m()) || slow_barrier();
    if barrier_done {
        // Release: a heavy side that reads FENCED (acquire) comes after this
        // barrier, which covered the light sides trusting the old word.
        let _ = mode.compare_exchange(seen, FENCED, Ordering::AcqRel, Ordering::Acquire);
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
        assert_eq!(mode.load(Ordering::Relaxed), SWITCHING);
        assert!(!light_side(&mode, true));
        // Any value but ASYMMETRIC counts as fenced.
        mode.store(7, Ordering::Relaxed);
        assert!(!light_side(&mode, true));
    }

    #[test]
    fn unregistered_light_side_fences_and_puts_the_word_back() {
        let mode = AtomicU32::new(ASYMMETRIC);
        assert!(!light_side(&mode, false));
        assert_eq!(mode.load(Ordering::Relaxed), SWITCHING);
    }

    /// Calls `heavy_side` with barriers answering `expedited` and `slow`;
    /// returns which were issued and the word afterwards.
    fn heavy(mode: &AtomicU32, expedited: bool, slow: bool) -> (bool, bool, u32) {
        let (mut e, mut s) = (false, false);
        heavy_side(
            mode,
            || {
                e = true;
                expedited
            },
            || {
                s = true;
                slow
            },
        );
        (e, s, mode.load(Ordering::Relaxed))
    }

    #[test]
    fn heavy_side_barriers_until_the_switch_is_complete() {
        let mode = AtomicU32::new(ASYMMETRIC);
        // Asymmetric: membarrier only.
        assert_eq!(heavy(&mode, true, true), (true, false, ASYMMETRIC));
        // It fails: the switch starts, the slow barrier covers, complete.
        assert_eq!(heavy(&mode, false, true), (true, true, FENCED));
        // Fenced: no barrier at all.
        assert_eq!(heavy(&mode, true, true), (false, false, FENCED));
        // Switching (another node fell back): a registered heavy side's
        // membarrier completes it.
        mode.store(SWITCHING, Ordering::Relaxed);
        assert_eq!(heavy(&mode, true, true), (true, false, FENCED));
        // No barrier available at all: the switch stays incomplete, so the
        // next heavy side tries again.
        mode.store(SWITCHING, Ordering::Relaxed);
        assert_eq!(heavy(&mode, false, false), (true, true, SWITCHING));
        // Garbage counts as switching.
        mode.store(0xdead, Ordering::Relaxed);
        assert_eq!(heavy(&mode, false, true), (true, true, FENCED));
    }
}

//! Gate: lets one thread stop the world on an exchange, or wait out the
//! operations in flight, without costing the data path more than two stores
//! (release stores: plain `mov`s on x86) and a fence.
//!
//! Two kinds of words take part:
//!
//! - each port has a **busy** counter, written only by the port's single owner
//!   thread: odd while that thread is inside a data-path operation, even
//!   between operations. It only ever grows (wrapping), so a change of value
//!   means an operation ended or began.
//! - the exchange has a **state** word with the bits [`PAUSED`] (a pauser
//!   wants every port between operations) and [`DOWN`] (the exchange is gone
//!   for good).
//!
//! The protocol is a Dekker handshake, each side writing its own word, fencing,
//! then reading the other's:
//!
//! | port owner: [`enter`] | pauser: [`pause`], then [`is_idle`] |
//! |---|---|
//! | `busy := b + 1` (odd) | `state \|= PAUSED` |
//! | full fence | full fence |
//! | read `state` | read every port's `busy` |
//!
//! Sequentially consistent fences guarantee that at least one side sees the
//! other's write: either the pauser sees the port busy and waits for it to
//! become even, or the port sees the pause, sets its counter back to even
//! without doing anything and reports [`Enter::Paused`]. Between its fence
//! and [`resume`] the pauser has every port to itself.
//!
//! The same handshake gives a quiescence wait like RCU's grace period, without
//! a pause: a thread that retracts something the operations read (a port
//! leaving marks itself free) writes, calls [`grace_fence`], snapshots every
//! port's `busy` with [`op_in_progress`] and waits with [`op_ended`] until each
//! odd snapshot has changed. Every operation that may have missed the write
//! has then ended; every later one sees it.
//!
//! Guarantees, for a port whose owner follows [`enter`] / [`exit`] and a
//! pauser that follows [`pause`] / [`is_idle`] / [`resume`]:
//!
//! 1. **Exclusion.** Once [`pause`] has returned and [`is_idle`] has returned
//!    `true` for a port, that port runs no operation until [`resume`]: every
//!    [`enter`] in between returns [`Enter::Paused`] (or [`Enter::Down`]), and
//!    [`Enter::Nested`] only happens inside an operation.
//! 2. **Visibility.** Everything a port wrote in its finished operations
//!    happens-before the pauser's work after [`is_idle`] returned `true`
//!    (release in [`exit`], acquire in [`is_idle`]), and everything the pauser
//!    wrote before [`resume`] happens-before every operation whose [`enter`]
//!    returns [`Enter::Entered`] after it (release in [`resume`], acquire in
//!    [`enter`]).
//! 3. **Down is final.** After [`take_down`], every [`enter`] that has not yet
//!    passed its fence returns [`Enter::Down`]; [`resume`] leaves the bit set.
//! 4. **Grace period.** If a thread writes `X`, calls [`grace_fence`] and waits
//!    out, for every port, the operation [`op_in_progress`] reported (if any),
//!    then every operation that did not see `X` has ended, and its writes
//!    happen-before the waiter's next step. (This is why [`enter`]'s odd
//!    store is a release too: the waiter may first observe the *next*
//!    operation's odd value, and a relaxed store there would not carry the
//!    previous [`exit`]'s release. The counter would have to advance by 2^32
//!    during one wait to come back to the snapshot.)
//!
//! Nothing here waits: the caller decides how (spin, yield, block on a lock,
//! give up after a deadline because the owner of a busy port is stopped).
//!
//! The port's fence can be made free, as with
//! [`WaitWord::notify`](crate::wait::WaitWord::notify): when every pauser
//! issues a process-wide heavy barrier (Linux `membarrier`) after [`pause`] or
//! [`grace_fence`] and before reading any `busy`, that barrier stands in for
//! the port's fence, and the port passes `asymmetric = true` to [`enter`],
//! which keeps only a compiler fence. The loom models check the symmetric form
//! (`false`), which the heavy barrier refines.

use crate::sync::{fence, AtomicU32, Ordering};

/// State bit: a pauser wants every port between operations; [`enter`] returns
/// [`Enter::Paused`] while it is set.
pub const PAUSED: u32 = 1;

/// State bit: the exchange is down for good; [`enter`] returns
/// [`Enter::Down`] once it is set.
pub const DOWN: u32 = 2;

/// Every bit the state word may legally hold. Any other bit means the word
/// is corrupt: [`enter`] answers [`Enter::Corrupt`] (never `Paused`, which
/// would make the caller wait for a pause nobody will end).
pub const KNOWN: u32 = PAUSED | DOWN;

/// What [`enter`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Enter {
    /// The operation started; the caller must call [`exit`] when it ends.
    Entered,
    /// The port was already inside an operation (a release inside a send),
    /// which this one joins; the caller must **not** call [`exit`].
    Nested,
    /// A pauser holds the exchange. Nothing started and the port is idle
    /// again; the caller waits until [`is_paused`] is false (it may block on
    /// whatever the pauser holds) and calls [`enter`] again.
    Paused,
    /// The exchange is down. Nothing started and the port is idle again.
    Down,
    /// The state word holds bits outside [`KNOWN`]: shared memory was
    /// overwritten. Nothing started and the port is idle again; the caller
    /// reports corruption (the runtime also takes the exchange down, so every
    /// other user stops at [`Enter::Down`]). Checked only on the slow path
    /// (state not 0), so it costs the data path nothing.
    Corrupt,
}

/// Starts a data-path operation on the port whose counter is `busy`, in the
/// exchange whose state word is `state`. Must be called by the port's owner
/// thread only.
///
/// `asymmetric`: every pauser issues a heavy barrier (Linux `membarrier`)
/// after [`pause`] / [`grace_fence`], which stands in for this side's fence;
/// only a compiler fence is kept here. Pass `false` unless that holds.
#[inline]
pub fn enter(busy: &AtomicU32, state: &AtomicU32, asymmetric: bool) -> Enter {
    enter_with(busy, state, || asymmetric)
}

/// [`enter`], asking `asymmetric` only after the odd store: the answer comes
/// from the namespace's barrier mode word, which must be read after this
/// side's store so that a heavy barrier issued after a mode switch began
/// covers the store (see [`barrier_mode`](crate::barrier_mode)).
#[inline]
pub fn enter_with(busy: &AtomicU32, state: &AtomicU32, asymmetric: impl FnOnce() -> bool) -> Enter {
    // Only the owner writes `busy`, so a relaxed load reads its own last store.
    let b = busy.load(Ordering::Relaxed);
    if b & 1 == 1 {
        return Enter::Nested;
    }
    // Release, although nothing is published yet: a grace-period waiter that
    // reads this value learns that the previous operation ended, and must
    // then see what that operation wrote. A relaxed store would not carry the
    // previous `exit`'s release (release sequences do not continue through
    // plain stores); loom finds that race. Free on x86; `stlr` on Arm.
    busy.store(b.wrapping_add(1), Ordering::Release);
    // The Dekker fence: orders the odd store before the state read, pairing
    // with the fence in `pause` / `grace_fence`.
    if asymmetric() {
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
    // Acquire: pairs with `resume`'s release, so the operation sees what the
    // last pauser wrote.
    let st = state.load(Ordering::Acquire);
    if st == 0 {
        return Enter::Entered;
    }
    // Back to even. Release: a pauser that reads this value sees the port's
    // earlier operations.
    busy.store(b.wrapping_add(2), Ordering::Release);
    if st & !KNOWN != 0 {
        Enter::Corrupt
    } else if st & DOWN != 0 {
        Enter::Down
    } else {
        Enter::Paused
    }
}

/// True when `state` holds bits outside [`KNOWN`] (see [`Enter::Corrupt`]).
#[inline]
pub fn is_corrupt(state: &AtomicU32) -> bool {
    state.load(Ordering::Acquire) & !KNOWN != 0
}

/// Ends the operation started by an [`enter`] that returned
/// [`Enter::Entered`]. Must be called by the port's owner thread only.
///
/// The counter lives in shared memory, so another process may have
/// overwritten it: an even value here (no operation in progress) is not
/// trusted to be odd. The counter is moved to the next even value either
/// way (`(b | 1) + 1`, branch-free), so the port never looks busy forever
/// after a stray write. (This used to be a `debug_assert!`, which a release
/// build skips.)
#[inline]
pub fn exit(busy: &AtomicU32) {
    let b = busy.load(Ordering::Relaxed);
    // Release: a pauser or grace-period waiter that reads this value sees
    // everything the operation wrote.
    busy.store((b | 1).wrapping_add(1), Ordering::Release);
}

/// True while the port's owner is inside an operation. For the owner itself
/// (to check it is not nested); others use [`is_idle`] or [`op_in_progress`].
#[inline]
pub fn is_busy(busy: &AtomicU32) -> bool {
    busy.load(Ordering::Relaxed) & 1 == 1
}

/// Sets [`PAUSED`] and fences. Afterwards, wait until [`is_idle`] is true for
/// every port (with the heavy barrier first when the ports enter
/// asymmetrically); then the ports are the caller's until [`resume`].
///
/// One pauser at a time: the caller serialises pausers (the runtime holds a
/// lock), since [`resume`] clears the bit for everyone.
pub fn pause(state: &AtomicU32) {
    state.fetch_or(PAUSED, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// True when the port is between operations. Acquire: once it returns `true`
/// the caller sees everything the port wrote in its finished operations, and
/// after a [`pause`] the port stays idle until [`resume`].
#[inline]
pub fn is_idle(busy: &AtomicU32) -> bool {
    busy.load(Ordering::Acquire) & 1 == 0
}

/// Clears [`PAUSED`], leaving [`DOWN`] as it is. Release: operations entered
/// afterwards see what the pauser wrote.
pub fn resume(state: &AtomicU32) {
    state.fetch_and(!PAUSED, Ordering::Release);
}

/// Sets [`DOWN`] for good and fences. Usually done while paused, after every
/// port is idle, so that no operation runs at all any more. Without a pause,
/// operations already entered may still run; [`is_idle`] tells when each
/// has ended, exactly as after [`pause`].
pub fn take_down(state: &AtomicU32) {
    state.fetch_or(DOWN, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// True while a pauser holds the exchange (whether or not it is also down).
/// Acquire: pairs with [`resume`].
#[inline]
pub fn is_paused(state: &AtomicU32) -> bool {
    state.load(Ordering::Acquire) & PAUSED != 0
}

/// True once the exchange went down. Acquire: pairs with [`take_down`].
#[inline]
pub fn is_down(state: &AtomicU32) -> bool {
    state.load(Ordering::Acquire) & DOWN != 0
}

/// Starts a grace period: the full fence between the caller's own write (the
/// thing operations must stop seeing, e.g. a port marked free) and its
/// [`op_in_progress`] snapshots. Add the heavy barrier after it when the ports
/// enter asymmetrically.
pub fn grace_fence() {
    fence(Ordering::SeqCst);
}

/// Grace-period snapshot of one port: `Some(value)` when an operation is in
/// progress (the caller then waits until [`op_ended`]), `None` when the port
/// is between operations (every later operation sees the caller's write).
pub fn op_in_progress(busy: &AtomicU32) -> Option<u32> {
    let b = busy.load(Ordering::Acquire);
    (b & 1 == 1).then_some(b)
}

/// True once the operation snapshotted by [`op_in_progress`] as `seen` has
/// ended. Acquire: the caller then sees what it wrote. The counter only
/// grows, so any other value means it ended (possibly followed by another
/// operation, which sees the caller's write).
pub fn op_ended(busy: &AtomicU32, seen: u32) -> bool {
    busy.load(Ordering::Acquire) != seen
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn enter_exit_counts_operations() {
        let busy = AtomicU32::new(0);
        let state = AtomicU32::new(0);
        for asym in [false, true] {
            assert!(is_idle(&busy));
            assert_eq!(enter(&busy, &state, asym), Enter::Entered);
            assert!(is_busy(&busy));
            assert!(!is_idle(&busy));
            exit(&busy);
            assert!(is_idle(&busy));
        }
        assert_eq!(busy.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn nested_entry_joins_outer_operation() {
        let busy = AtomicU32::new(0);
        let state = AtomicU32::new(0);
        assert_eq!(enter(&busy, &state, false), Enter::Entered);
        assert_eq!(enter(&busy, &state, false), Enter::Nested);
        // Nested even while paused or down: the pauser waits for the outer one.
        pause(&state);
        assert_eq!(enter(&busy, &state, false), Enter::Nested);
        take_down(&state);
        assert_eq!(enter(&busy, &state, false), Enter::Nested);
        assert!(!is_idle(&busy));
        exit(&busy);
        assert!(is_idle(&busy));
        assert_eq!(busy.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn paused_until_resumed() {
        let busy = AtomicU32::new(0);
        let state = AtomicU32::new(0);
        pause(&state);
        assert!(is_paused(&state));
        assert!(is_idle(&busy));
        assert_eq!(enter(&busy, &state, false), Enter::Paused);
        // A refused entry leaves the port idle, one step further.
        assert!(is_idle(&busy));
        assert_eq!(busy.load(Ordering::Relaxed), 2);
        assert_eq!(enter(&busy, &state, true), Enter::Paused);
        resume(&state);
        assert!(!is_paused(&state));
        assert_eq!(state.load(Ordering::Relaxed), 0);
        assert_eq!(enter(&busy, &state, false), Enter::Entered);
        exit(&busy);
        assert!(is_idle(&busy));
    }

    #[test]
    fn down_is_final() {
        let busy = AtomicU32::new(0);
        let state = AtomicU32::new(0);
        take_down(&state);
        assert!(is_down(&state));
        assert_eq!(enter(&busy, &state, false), Enter::Down);
        assert!(is_idle(&busy));
        // Down while paused: resume keeps it down, and Down wins over Paused.
        let state = AtomicU32::new(0);
        pause(&state);
        take_down(&state);
        assert_eq!(enter(&busy, &state, false), Enter::Down);
        resume(&state);
        assert!(!is_paused(&state));
        assert!(is_down(&state));
        assert_eq!(enter(&busy, &state, false), Enter::Down);
        assert!(is_idle(&busy));
    }

    #[test]
    fn exit_on_an_overwritten_even_counter_stays_idle() {
        // Another process wrote an even value while the owner was inside an
        // operation: exit must not leave the port odd ("busy") for good.
        let busy = AtomicU32::new(0);
        let state = AtomicU32::new(0);
        assert_eq!(enter(&busy, &state, false), Enter::Entered);
        busy.store(40, Ordering::Relaxed);
        exit(&busy);
        assert!(is_idle(&busy));
        assert_eq!(busy.load(Ordering::Relaxed), 42);
        busy.store(u32::MAX - 1, Ordering::Relaxed);
        exit(&busy);
        assert!(is_idle(&busy));
    }

    #[test]
    fn unknown_state_bits_are_corrupt_not_paused() {
        let busy = AtomicU32::new(0);
        for bad in [4, 4 | PAUSED, 4 | DOWN, 0x8000_0000, u32::MAX] {
            let state = AtomicU32::new(bad);
            assert!(is_corrupt(&state));
            assert_eq!(enter(&busy, &state, false), Enter::Corrupt);
            assert_eq!(enter(&busy, &state, true), Enter::Corrupt);
            // A refused entry leaves the port idle.
            assert!(is_idle(&busy));
        }
        for good in [0, PAUSED, DOWN, PAUSED | DOWN] {
            assert!(!is_corrupt(&AtomicU32::new(good)));
        }
    }

    #[test]
    fn counter_wraps() {
        let busy = AtomicU32::new(u32::MAX - 1);
        let state = AtomicU32::new(0);
        assert_eq!(enter(&busy, &state, false), Enter::Entered);
        assert_eq!(op_in_progress(&busy), Some(u32::MAX));
        exit(&busy);
        assert_eq!(busy.load(Ordering::Relaxed), 0);
        assert!(is_idle(&busy));
        // A refused entry wraps too.
        let busy = AtomicU32::new(u32::MAX - 1);
        pause(&state);
        assert_eq!(enter(&busy, &state, false), Enter::Paused);
        assert_eq!(busy.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn grace_snapshot() {
        let busy = AtomicU32::new(0);
        let state = AtomicU32::new(0);
        grace_fence();
        assert_eq!(op_in_progress(&busy), None);
        assert_eq!(enter(&busy, &state, false), Enter::Entered);
        let seen = op_in_progress(&busy).expect("in an operation");
        assert!(!op_ended(&busy, seen));
        exit(&busy);
        assert!(op_ended(&busy, seen));
        // Still "ended" when the next operation has already begun.
        assert_eq!(enter(&busy, &state, false), Enter::Entered);
        assert!(op_ended(&busy, seen));
        exit(&busy);
    }
}

//! Lock-free structures that live in shared memory.
//!
//! Everything here is `#[repr(C)]`, holds indices instead of pointers and makes
//! no system call, so the same bytes work in every process that maps them. The
//! structures only ever see *views*: a [`ring::Ring`] or [`pool::Pool`] borrows
//! the control words and slots from wherever they live (a shared-memory mapping
//! in the runtime, the heap in the loom models), so the shipped code and the
//! modelled code are one source. Atomics come from [`sync`], which swaps in
//! loom's under `--cfg loom`.
//!
//! Shared memory is untrusted: every index read from it is checked, every retry
//! loop is bounded, and a violated invariant is reported as [`Corrupt`], never a
//! panic or undefined behaviour.

#![warn(missing_docs)]

pub mod barrier_mode;
pub mod gate;
pub mod ledger;
pub mod mpmc;
pub mod pool;
pub mod recycle;
pub mod ring;
pub mod sync;
pub mod wait;

/// A shared structure was found in a state the algorithm can never produce:
/// an index out of range, a refcount underflow, or a retry loop that did not
/// converge. The segment holding it cannot be trusted any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl core::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "corrupt shared structure: {}", self.0)
    }
}

impl std::error::Error for Corrupt {}

/// Upper bound on the iterations of any CAS retry loop. Legitimate contention
/// resolves in a handful of retries; only a corrupted word loops this long.
pub const MAX_RETRIES: u32 = 1 << 20;

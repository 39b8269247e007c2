//! Recycling a chunk nobody references any more: into the return ring of the
//! port that loaned it while that port is attached (its owner reuses it
//! without touching the shared free list), else onto the pool's free list.
//!
//! A chunk in a return ring keeps a refcount of 1 (its owner's), a chunk on
//! the free list 0.
//!
//! Racing the owner leaving. The leaving port marks itself detached, runs a
//! grace period ([`crate::gate`]: [`grace_fence`](crate::gate::grace_fence),
//! then waits out every operation [`op_in_progress`](crate::gate::op_in_progress)
//! reports) and only then drains its return ring into the free list.
//! [`recycle`] runs inside a gate operation and reads the owner's state word
//! after entering, so either it sees the owner detached (and frees the
//! chunk), or the leaver waits for its operation to end before draining (and
//! drains the chunk). Either way the chunk ends on the free list exactly once.

use crate::pool::{MetaTable, Pool};
use crate::ring::{Descriptor, Ring};
use crate::sync::{AtomicU32, Ordering};
use crate::Corrupt;

/// A head cache entry that was never read: [`recycle`] reads the ring's head.
pub const UNKNOWN_HEAD: u32 = u32::MAX;

/// The port that loaned a chunk, as [`recycle`] needs it.
#[derive(Clone, Copy)]
pub struct Owner<'a> {
    /// The port's state word.
    pub state: &'a AtomicU32,
    /// The value of `state` meaning "attached".
    pub attached: u32,
    /// The port's return ring.
    pub ring: Ring<'a>,
    /// This process's last reading of the ring's head ([`UNKNOWN_HEAD`]:
    /// none yet).
    pub head_cache: &'a AtomicU32,
}

/// Where [`recycle`] put the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recycled {
    /// Into the owner's return ring (refcount 1).
    Returned,
    /// Onto the pool's free list (refcount 0).
    Freed,
}

/// Recycles `chunk`: into `owner`'s return ring while the owner is attached
/// and the ring has room, else onto `pool`'s free list. `refcount_is_one`
/// says whether the chunk's refcount is already 1 (else it is 0). Call it
/// inside a gate operation (see the module docs). Fails only when `chunk` is
/// out of the pool's range or the free list is corrupt.
pub fn recycle<M: MetaTable + ?Sized>(
    pool: &Pool<'_, M>,
    chunk: u32,
    owner: Option<Owner<'_>>,
    refcount_is_one: bool,
) -> Result<Recycled, Corrupt> {
    if chunk >= pool.capacity() {
        return Err(Corrupt("chunk index out of range"));
    }
    // Acquire: pairs with the attach that published the port.
    if let Some(o) = owner.filter(|o| o.state.load(Ordering::Acquire) == o.attached) {
        let mut head = o.head_cache.load(Ordering::Relaxed);
        if head == UNKNOWN_HEAD {
            head = o.ring.head();
        }
        if !refcount_is_one {
            pool.set_refcount(chunk, 1)?;
        }
        let d = Descriptor {
            chunk,
            ..Descriptor::default()
        };
        let pushed = o.ring.push_cached(&d, &mut head).is_ok();
        o.head_cache.store(head, Ordering::Relaxed);
        if pushed {
            return Ok(Recycled::Returned);
        }
    }
    pool.set_refcount(chunk, 0)?;
    pool.free(chunk)?;
    Ok(Recycled::Freed)
}

//! Fixed-size chunk pool: a lock-free free list plus per-chunk reference counts.
//!
//! The free list is a Treiber stack whose head packs a 32-bit chunk index with a
//! 32-bit version counter that every successful CAS increments, so a head that
//! was popped and pushed back in between (ABA) no longer compares equal. Each
//! chunk's metadata ([`ChunkMeta`]) holds the link to the next free chunk and
//! the reference count.
//!
//! Guarantees:
//! - a chunk is handed out by [`Pool::alloc`] to one caller at a time;
//! - a chunk returns to the free list exactly when its last reference is
//!   released ([`Pool::release`]);
//! - with `n` references from [`Pool::retain`] on top of the allocation, the
//!   chunk is freed by the `n + 1`-th release, whoever does it;
//! - references are added only while one holder has the chunk to itself
//!   (before it is shared), which is what lets [`Pool::drop_ref`] skip the
//!   locked decrement when it sees a count of 1.

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{Corrupt, MAX_RETRIES};

/// Index meaning "no chunk" (end of the free list).
pub const NIL: u32 = u32::MAX;

/// Per-chunk bookkeeping. The runtime places it at the start of the chunk's own
/// block, so a chunk's refcount never shares a cache line with another chunk's.
#[repr(C)]
pub struct ChunkMeta {
    /// Next chunk on the free list (meaningful only while free).
    pub next: AtomicU32,
    /// Live references; 0 exactly while the chunk is on the free list.
    pub refcount: AtomicU32,
}

impl ChunkMeta {
    /// Metadata of a free chunk linked to `next` (used to build pools on the heap).
    pub fn new(next: u32) -> Self {
        ChunkMeta {
            next: AtomicU32::new(next),
            refcount: AtomicU32::new(0),
        }
    }
}

/// Where chunk metadata lives: a slice on the heap, or strided blocks in a
/// mapping. `meta` is only called with `index < len()`.
pub trait MetaTable {
    /// Number of chunks.
    fn len(&self) -> u32;
    /// Metadata of chunk `index` (`index < len()`).
    fn meta(&self, index: u32) -> &ChunkMeta;
    /// True when the table has no chunks.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MetaTable for [ChunkMeta] {
    fn len(&self) -> u32 {
        <[ChunkMeta]>::len(self) as u32
    }
    fn meta(&self, index: u32) -> &ChunkMeta {
        &self[index as usize]
    }
}

/// The free list head: `version << 32 | index`.
#[repr(C)]
pub struct PoolControl {
    /// Packed head of the free list.
    pub head: AtomicU64,
}

impl PoolControl {
    /// An empty free list (used to build pools on the heap; call [`Pool::init`]).
    pub fn new() -> Self {
        PoolControl {
            head: AtomicU64::new(NIL as u64),
        }
    }
}

impl Default for PoolControl {
    fn default() -> Self {
        Self::new()
    }
}

/// A view of one pool.
pub struct Pool<'a, M: MetaTable + ?Sized> {
    control: &'a PoolControl,
    metas: &'a M,
}

impl<'a, M: MetaTable + ?Sized> Clone for Pool<'a, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<'a, M: MetaTable + ?Sized> Copy for Pool<'a, M> {}

fn pack(version: u32, index: u32) -> u64 {
    (u64::from(version) << 32) | u64::from(index)
}

impl<'a, M: MetaTable + ?Sized> Pool<'a, M> {
    /// Views a pool.
    pub fn new(control: &'a PoolControl, metas: &'a M) -> Self {
        Pool { control, metas }
    }

    /// Links every chunk into the free list (single-threaded, before sharing).
    pub fn init(&self) {
        let n = self.metas.len();
        for i in 0..n {
            let m = self.metas.meta(i);
            m.next
                .store(if i + 1 < n { i + 1 } else { NIL }, Ordering::Relaxed);
            m.refcount.store(0, Ordering::Relaxed);
        }
        self.control
            .head
            .store(pack(0, if n > 0 { 0 } else { NIL }), Ordering::Release);
    }

    /// Number of chunks in the pool.
    pub fn capacity(&self) -> u32 {
        self.metas.len()
    }

    /// Takes a free chunk with a refcount of 1, or `Ok(None)` when the pool is
    /// exhausted.
    pub fn alloc(&self) -> Result<Option<u32>, Corrupt> {
        let mut head = self.control.head.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let index = head as u32;
            if index == NIL {
                return Ok(None);
            }
            if index >= self.metas.len() {
                return Err(Corrupt("free-list head out of range"));
            }
            let next = self.metas.meta(index).next.load(Ordering::Relaxed);
            let new = pack(((head >> 32) as u32).wrapping_add(1), next);
            match self.control.head.compare_exchange_weak(
                head,
                new,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let prev = self.metas.meta(index).refcount.swap(1, Ordering::Relaxed);
                    if prev != 0 {
                        return Err(Corrupt("free chunk had references"));
                    }
                    return Ok(Some(index));
                }
                Err(actual) => head = actual,
            }
            crate::sync::spin_hint();
        }
        Err(Corrupt("free-list head never settles"))
    }

    /// Adds `n` references to an allocated chunk.
    pub fn retain(&self, index: u32, n: u32) -> Result<(), Corrupt> {
        if index >= self.metas.len() {
            return Err(Corrupt("chunk index out of range"));
        }
        self.metas
            .meta(index)
            .refcount
            .fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the reference count of a chunk nobody else can see yet (loaned
    /// and not yet sent): a plain store instead of a locked add.
    pub fn set_refcount(&self, index: u32, n: u32) -> Result<(), Corrupt> {
        if index >= self.metas.len() {
            return Err(Corrupt("chunk index out of range"));
        }
        self.metas.meta(index).refcount.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// Drops one reference; the last one returns the chunk to the free list.
    /// Returns whether the chunk was freed.
    pub fn release(&self, index: u32) -> Result<bool, Corrupt> {
        if self.drop_ref(index)? {
            self.free(index)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Drops one reference without freeing: `Ok(true)` means it was the last
    /// one, and the caller now owns the chunk (refcount 0) and must
    /// [`free`](Self::free) it or hand it to another cache of free chunks.
    ///
    /// References are only ever added before a chunk is shared, so a holder
    /// that sees a count of 1 is the only holder: it skips the locked
    /// decrement.
    pub fn drop_ref(&self, index: u32) -> Result<bool, Corrupt> {
        if index >= self.metas.len() {
            return Err(Corrupt("chunk index out of range"));
        }
        let meta = self.metas.meta(index);
        if meta.refcount.load(Ordering::Acquire) == 1 {
            meta.refcount.store(0, Ordering::Relaxed);
            return Ok(true);
        }
        let prev = meta.refcount.fetch_sub(1, Ordering::AcqRel);
        match prev {
            0 => {
                meta.refcount.store(0, Ordering::Relaxed);
                Err(Corrupt("chunk released more often than referenced"))
            }
            1 => Ok(true),
            _ => Ok(false),
        }
    }

    /// Pushes a chunk whose last reference was dropped onto the free list.
    pub fn free(&self, index: u32) -> Result<(), Corrupt> {
        if index >= self.metas.len() {
            return Err(Corrupt("chunk index out of range"));
        }
        self.push_free(index)
    }

    fn push_free(&self, index: u32) -> Result<(), Corrupt> {
        let meta = self.metas.meta(index);
        let mut head = self.control.head.load(Ordering::Relaxed);
        for _ in 0..MAX_RETRIES {
            meta.next.store(head as u32, Ordering::Relaxed);
            let new = pack(((head >> 32) as u32).wrapping_add(1), index);
            match self.control.head.compare_exchange_weak(
                head,
                new,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => head = actual,
            }
            crate::sync::spin_hint();
        }
        Err(Corrupt("free-list head never settles"))
    }

    /// Rebuilds the free list from scratch: every chunk `is_free` says is
    /// free is linked in with a refcount of 0; the others are left alone.
    /// Returns how many chunks the list holds. Only while nobody else uses the
    /// pool (reclaim runs it with every live user paused); the head's version
    /// moves on, so a user that read the old head cannot succeed a CAS on it.
    pub fn rebuild(&self, is_free: impl Fn(u32) -> bool) -> u32 {
        let old = self.control.head.load(Ordering::Acquire);
        let mut head = NIL;
        let mut count = 0;
        for i in (0..self.metas.len()).rev() {
            if is_free(i) {
                let m = self.metas.meta(i);
                m.next.store(head, Ordering::Relaxed);
                m.refcount.store(0, Ordering::Relaxed);
                head = i;
                count += 1;
            }
        }
        let version = ((old >> 32) as u32).wrapping_add(1);
        self.control
            .head
            .store(pack(version, head), Ordering::Release);
        count
    }

    /// The chunks on the free list, in order, or `Err` when the list is
    /// longer than the pool (a cycle) or names a chunk out of range. Only
    /// while nobody else uses the pool.
    pub fn free_list(&self) -> Result<Vec<u32>, Corrupt> {
        let mut out = Vec::new();
        let mut i = self.control.head.load(Ordering::Acquire) as u32;
        while i != NIL {
            if i >= self.metas.len() || out.len() >= self.metas.len() as usize {
                return Err(Corrupt("free list out of range or cyclic"));
            }
            out.push(i);
            i = self.metas.meta(i).next.load(Ordering::Relaxed);
        }
        Ok(out)
    }

    /// Number of chunks with no reference (free), counted by scanning the
    /// refcounts. A snapshot: exact only while nobody allocates or releases.
    pub fn free_count(&self) -> u32 {
        (0..self.metas.len())
            .filter(|&i| self.metas.meta(i).refcount.load(Ordering::Relaxed) == 0)
            .count() as u32
    }
}

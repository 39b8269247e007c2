//! Loom models of `shmex_core::pool::Pool`, the chunk pool (ABA-tagged
//! Treiber free list plus per-chunk reference counts).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmex_core::pool::{ChunkMeta, Pool};
use shmex_loom::{desc, model, tag_of, HeapPool, HeapRing};

const CHUNKS: u32 = 2;

/// A pool plus, per chunk, what its holder does with it: a `held` flag that
/// detects two simultaneous holders directly, and a payload cell that loom
/// checks for unsynchronised access (so a chunk handed over without a
/// happens-before edge from its previous holder is a reported data race).
struct Chunks {
    heap: HeapPool,
    held: Vec<AtomicBool>,
    payload: Vec<UnsafeCell<u64>>,
}

type View<'a> = Pool<'a, [ChunkMeta]>;

impl Chunks {
    fn new(heap: HeapPool) -> Self {
        let n = heap.pool().capacity();
        Chunks {
            heap,
            held: (0..n).map(|_| AtomicBool::new(false)).collect(),
            payload: (0..n).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    /// Allocates a chunk for `who` and writes its payload; `None` when the
    /// pool is exhausted.
    fn take(&self, pool: &View<'_>, who: u64) -> Option<u32> {
        let c = pool.alloc().expect("pool corrupt")?;
        let i = c as usize;
        assert!(i < self.held.len(), "alloc returned out-of-range chunk {c}");
        // Relaxed on purpose: the flag must not add synchronisation that the
        // pool itself is supposed to provide.
        assert!(
            !self.held[i].swap(true, Ordering::Relaxed),
            "chunk {c} handed out while still held"
        );
        self.payload[i].with_mut(|p| unsafe { *p = who });
        Some(c)
    }

    /// Checks `who` still owns the payload of `c`, then frees `c` (its last
    /// reference).
    fn give(&self, pool: &View<'_>, c: u32, who: u64) {
        let i = c as usize;
        self.payload[i].with(|p| assert_eq!(unsafe { *p }, who, "chunk {c} overwritten"));
        self.held[i].store(false, Ordering::Relaxed);
        assert_eq!(
            pool.release(c),
            Ok(true),
            "last release must free chunk {c}"
        );
    }

    /// After all threads are gone: every chunk is free, and allocating them
    /// all yields each chunk exactly once, then `None`.
    fn check_all_free(&self) {
        let pool = self.heap.pool();
        assert_eq!(pool.free_count(), pool.capacity());
        let mut got: Vec<u32> = std::iter::from_fn(|| pool.alloc().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..pool.capacity()).collect::<Vec<_>>());
        assert_eq!(pool.free_count(), 0);
    }
}

/// Three threads on a pool of two chunks A, B (free list A → B). Thread 0
/// takes and gives back one chunk; thread 1 takes two chunks and gives back
/// the first, then the second; thread 2 takes and gives back one chunk. This
/// contains the ABA schedule: thread 0 reads head = A and A.next = B, is
/// preempted, thread 1 pops A, pops B, pushes A, and thread 0's CAS must then
/// fail (the head version moved) instead of installing B, which thread 1
/// still holds. Checks: no chunk is ever held by two threads at once (the
/// `held` flag), every hand-over is synchronised (the payload cell), and at
/// the end `free_count() == capacity` and allocating everything yields A and
/// B once each.
fn aba(version: u32) {
    model(move || {
        let chunks = Arc::new(Chunks::new(HeapPool::with_version(CHUNKS, version)));
        let t0 = {
            let chunks = chunks.clone();
            thread::spawn(move || {
                let pool = chunks.heap.pool();
                if let Some(c) = chunks.take(&pool, 10) {
                    chunks.give(&pool, c, 10);
                }
            })
        };
        let t1 = {
            let chunks = chunks.clone();
            thread::spawn(move || {
                let pool = chunks.heap.pool();
                let a = chunks.take(&pool, 11);
                let b = chunks.take(&pool, 12);
                if let Some(a) = a {
                    chunks.give(&pool, a, 11);
                }
                if let Some(b) = b {
                    chunks.give(&pool, b, 12);
                }
            })
        };
        {
            let pool = chunks.heap.pool();
            if let Some(c) = chunks.take(&pool, 13) {
                chunks.give(&pool, c, 13);
            }
        }
        t0.join().unwrap();
        t1.join().unwrap();
        chunks.check_all_free();
    });
}

/// [`aba`] with the free-list version starting at 0.
#[test]
fn alloc_release_aba() {
    aba(0);
}

/// [`aba`] with the free-list version starting at `u32::MAX - 1`, so it
/// wraps during the run (the version must wrap, never overflow-panic).
#[test]
fn alloc_release_aba_version_wraps() {
    aba(u32::MAX - 1);
}

/// A chunk is allocated and its payload written, then `retain(2)` gives it
/// three references; three threads each read the payload and release once.
/// Checks: exactly one release returns `Ok(true)` (the others `Ok(false)`);
/// the thread that freed it can immediately re-allocate it and overwrite the
/// payload without a data race with the other threads' reads (the release
/// `fetch_sub` is `AcqRel`, so the last releaser sees every earlier reader);
/// and at the end the chunk is back on the free list (`free_count() ==
/// capacity`, both chunks allocatable once).
#[test]
fn refcount_last_release_frees() {
    model(|| {
        let chunks = Arc::new(Chunks::new(HeapPool::new(CHUNKS)));
        let c = {
            let pool = chunks.heap.pool();
            let c = chunks.take(&pool, 7).unwrap();
            pool.retain(c, 2).unwrap();
            c
        };
        let releasers: Vec<_> = (0..3)
            .map(|_| {
                let chunks = chunks.clone();
                thread::spawn(move || {
                    let pool = chunks.heap.pool();
                    let i = c as usize;
                    chunks.payload[i].with(|p| assert_eq!(unsafe { *p }, 7));
                    let freed = pool.release(c).unwrap();
                    if freed {
                        // Only this thread touches the free list now: the
                        // chunk it just pushed is on top.
                        chunks.held[i].store(false, Ordering::Relaxed);
                        assert_eq!(chunks.take(&pool, 8), Some(c));
                        chunks.give(&pool, c, 8);
                    }
                    freed
                })
            })
            .collect();
        let freed = releasers
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&f| f)
            .count();
        assert_eq!(freed, 1, "exactly one release must free the chunk");
        chunks.check_all_free();
    });
}

/// One holder's part in [`refcount_fast_path_return_ring`]: read the
/// payload, drop the reference, and push the chunk onto the owner's return
/// ring if it was the last. Returns whether it was.
fn hold(chunks: &Chunks, returns: &HeapRing, c: u32) -> bool {
    let pool = chunks.heap.pool();
    let i = c as usize;
    chunks.payload[i].with(|p| assert_eq!(unsafe { *p }, 7));
    let last = pool.drop_ref(c).unwrap();
    if last {
        chunks.held[i].store(false, Ordering::Relaxed);
        // As the runtime's `return_free`: a cached free chunk keeps its
        // owner's single reference.
        pool.set_refcount(c, 1).unwrap();
        returns.ring().push(&desc(u64::from(c))).unwrap();
    }
    last
}

/// The recycling path the runtime uses for published chunks: the owner
/// allocates a chunk, writes it, and (before sharing it) sets its refcount to
/// 3 with `set_refcount`; it and two subscribers then each read the payload
/// and drop one reference with `drop_ref` (which skips the locked decrement
/// when it sees a count of 1). Whoever drops the last one pushes the chunk
/// onto the owner's return ring with a refcount of 1 (the owner's); the owner
/// pops it, overwrites the payload and finally frees it with `release`.
/// Checks: exactly one `drop_ref` returns `Ok(true)`; the owner's overwrite does not
/// race with any holder's read (the last dropper acquired every earlier
/// holder's release, and the ring carried that to the owner); and at the end
/// every chunk is free.
#[test]
fn refcount_fast_path_return_ring() {
    model(|| {
        let chunks = Arc::new(Chunks::new(HeapPool::new(CHUNKS)));
        let returns = Arc::new(HeapRing::new(2));
        let pool = chunks.heap.pool();
        let c = chunks.take(&pool, 7).unwrap();
        pool.set_refcount(c, 3).unwrap();

        let subscribers: Vec<_> = (0..2)
            .map(|_| {
                let chunks = chunks.clone();
                let returns = returns.clone();
                thread::spawn(move || hold(&chunks, &returns, c))
            })
            .collect();

        let mut last = usize::from(hold(&chunks, &returns, c));
        let ring = returns.ring();
        let back = loop {
            match ring.pop() {
                Some(d) => break tag_of(&d) as u32,
                None => thread::yield_now(),
            }
        };
        assert_eq!(back, c);
        let i = c as usize;
        assert!(!chunks.held[i].swap(true, Ordering::Relaxed));
        chunks.payload[i].with_mut(|p| unsafe { *p = 8 });
        chunks.give(&pool, c, 8);

        last += subscribers
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum::<usize>();
        assert_eq!(last, 1, "exactly one drop_ref must be the last");
        assert!(ring.pop().is_none());
        chunks.check_all_free();
    });
}

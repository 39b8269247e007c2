//! Loom models of shmex-core live in `tests/`; this crate only holds the
//! fixtures they share (heap-built rings and pools, descriptor encoding, the
//! model runner). Everything is compiled only under `--cfg loom`; see the
//! README for how to run the suite.

#[cfg(loom)]
pub use fixtures::*;

#[cfg(loom)]
mod fixtures {
    use shmex_core::pool::{ChunkMeta, Pool, PoolControl};
    use shmex_core::ring::{Descriptor, Ring, RingControl, Slot};
    use shmex_core::sync::Ordering;
    use std::collections::BTreeSet;
    use std::fmt::Debug;

    /// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set, so that a
    /// bare `cargo test` under `--cfg loom` still finishes.
    pub const DEFAULT_PREEMPTIONS: usize = 2;

    /// Runs `f` under loom's model checker with the environment's settings
    /// (`LOOM_MAX_PREEMPTIONS`, `LOOM_MAX_BRANCHES`, ...), defaulting the
    /// preemption bound to [`DEFAULT_PREEMPTIONS`].
    pub fn model<F>(f: F)
    where
        F: Fn() + Sync + Send + 'static,
    {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
        }
        builder.check(f);
    }

    /// Runs `f` under loom ([`model`]) and returns the set of outcomes its
    /// executions reported, so that a model can check that loom really
    /// explored the schedules it is about ([`assert_explored`]): loom 0.7
    /// can skip orders where a thread's store races another's earlier
    /// access to the same word (tokio-rs/loom#392).
    pub fn explore<T, F>(f: F) -> BTreeSet<T>
    where
        T: Ord + Debug + Send + 'static,
        F: Fn() -> T + Sync + Send + 'static,
    {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let sink = seen.clone();
        model(move || {
            let outcome = f();
            sink.lock().unwrap().insert(outcome);
        });
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        println!("outcomes: {seen:?}");
        seen
    }

    /// Asserts that every outcome in `required` was seen by [`explore`].
    pub fn assert_explored<T: Ord + Debug>(seen: &BTreeSet<T>, required: &[T]) {
        for r in required {
            assert!(
                seen.contains(r),
                "loom never explored {r:?}; seen: {seen:?}"
            );
        }
    }

    /// A ring built on the heap: control words plus slots.
    pub struct HeapRing {
        control: RingControl,
        slots: Vec<Slot>,
    }

    impl HeapRing {
        /// An empty ring of `capacity` slots (a power of two) at position 0.
        pub fn new(capacity: u32) -> Self {
            Self::starting_at(capacity, 0)
        }

        /// An empty ring of `capacity` slots whose head and tail both sit at
        /// `start`, e.g. just below `u32::MAX` to make positions wrap.
        pub fn starting_at(capacity: u32, start: u32) -> Self {
            assert!(capacity.is_power_of_two());
            let mask = capacity - 1;
            // Slot `i` is free for the first position `p >= start` with `p & mask == i`.
            let slots = (0..capacity)
                .map(|i| {
                    let offset = i.wrapping_sub(start) & mask;
                    Slot::new(start.wrapping_add(offset))
                })
                .collect();
            let control = RingControl::new();
            control.tail.store(start, Ordering::Relaxed);
            control.head.store(start, Ordering::Relaxed);
            HeapRing { control, slots }
        }

        /// A view of the ring.
        pub fn ring(&self) -> Ring<'_> {
            Ring::new(&self.control, &self.slots).expect("capacity is a power of two >= 2")
        }
    }

    /// A pool built on the heap, initialised (every chunk free).
    pub struct HeapPool {
        control: PoolControl,
        metas: Vec<ChunkMeta>,
    }

    impl HeapPool {
        /// A pool of `chunks` free chunks, free-list version 0.
        pub fn new(chunks: u32) -> Self {
            let heap = HeapPool {
                control: PoolControl::new(),
                metas: (0..chunks).map(|_| ChunkMeta::new(0)).collect(),
            };
            heap.pool().init();
            heap
        }

        /// Like [`new`](Self::new) but with the free-list version counter
        /// starting at `version` (to exercise its wrap-around).
        pub fn with_version(chunks: u32, version: u32) -> Self {
            let heap = Self::new(chunks);
            let head = heap.control.head.load(Ordering::Relaxed);
            heap.control.head.store(
                (u64::from(version) << 32) | (head & 0xffff_ffff),
                Ordering::Relaxed,
            );
            heap
        }

        /// A view of the pool.
        pub fn pool(&self) -> Pool<'_, [ChunkMeta]> {
            Pool::new(&self.control, &self.metas[..])
        }
    }

    /// A descriptor whose every field is derived from `tag`, so that a torn
    /// descriptor (fields from two different pushes) is detected by
    /// [`tag_of`].
    pub fn desc(tag: u64) -> Descriptor {
        Descriptor {
            chunk: tag as u32,
            len: (tag as u32).wrapping_mul(3).wrapping_add(1),
            flags: !(tag as u32),
            tag,
            meta: !tag,
        }
    }

    /// The tag of a descriptor built by [`desc`]; panics if its fields do not
    /// all come from the same push.
    pub fn tag_of(d: &Descriptor) -> u64 {
        assert_eq!(*d, desc(d.tag), "torn descriptor");
        d.tag
    }
}

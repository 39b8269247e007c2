//! Loaning chunks: the per-port caches and spare chunks, and the loan
//! calls of `PortCore`.

use super::*;

impl ExchangeInner {
    /// Loans a chunk for `len` bytes held by port `port` (recorded in its
    /// holdings): its spare, else from its return ring (chunks its own
    /// earlier messages left behind), else from the shared free list.
    pub(super) fn loan_on(&self, port: u32, len: usize) -> Result<u32, SendError> {
        let max = self.limits.chunk_size as usize;
        if len > max {
            return Err(SendError::PayloadTooLarge { len, max });
        }
        let mut flushed = false;
        // Bounded: a corrupt cache or free list that keeps handing out held
        // chunks ends in `Corrupt`, not in a loop.
        let mut tries = 0u32;
        loop {
            tries += 1;
            if tries > crate::layout::RETURN_DEPTH + 4 {
                return Err(Corrupt("the pool keeps handing out chunks this port holds").into());
            }
            let op = self.enter(port)?;
            let chunk = match self.take_spare(port).or_else(|| self.pop_cached(port)) {
                Some(c) => Some(c),
                None => self.pool().alloc()?.inspect(|&c| {
                    if let Some(h) = self.chunk_header(c) {
                        h.owner.store(port + 1, Ordering::Relaxed);
                    }
                }),
            };
            if let Some(chunk) = chunk {
                if self.is_held(port, chunk) {
                    // A cache or the free list handed out a chunk this port
                    // holds already (a forged return ring, a corrupt free
                    // list): never hand it out twice. The next reclaim
                    // pass recounts it.
                    self.corrupt_chunk_seen();
                    continue;
                }
                self.hold(port, chunk);
                return Ok(chunk);
            }
            // Dry: free chunks may be parked in other ports' caches. Once,
            // outside this operation (the pass waits for every port to be
            // between operations), empty them into the free list.
            let outermost = op.is_outermost();
            drop(op);
            if flushed || !outermost || !self.caches_hold_chunks() {
                return Err(SendError::PoolExhausted {
                    chunks: self.limits.chunk_count,
                });
            }
            flushed = true;
            // Under back-pressure a sender meets a dry pool again and again
            // while its receivers' deferred slots hold a chunk each (coming
            // back to it anyway): one pass per interval at most.
            let now = crate::sys::monotonic_ms();
            let last = self.last_flush_ms.load(Ordering::Relaxed);
            if last != 0 && now < last.saturating_add(FLUSH_INTERVAL_MS) {
                return Err(SendError::PoolExhausted {
                    chunks: self.limits.chunk_count,
                });
            }
            self.last_flush_ms.store(now.max(1), Ordering::Relaxed);
            if let Ok(_guard) = self.node.control_within(FLUSH_LOCK_WAIT) {
                self.flush_caches_locked();
            }
        }
    }

    /// True when some port's cache (return ring, spare, deferred slot) holds
    /// a free chunk. Reads only.
    pub(super) fn caches_hold_chunks(&self) -> bool {
        (0..self.limits.max_ports).any(|i| {
            self.port(i).is_some_and(|p| {
                p.spare.chunk.load(Ordering::Relaxed) < self.limits.chunk_count
                    || p.spare.deferred.load(Ordering::Relaxed) != NO_DEFERRED
            }) || self.return_ring(i).is_some_and(|r| r.len_hint() > 0)
        })
    }

    /// Takes a free chunk from port `port`'s return ring (refcount 1, owner
    /// this port). A free chunk loaned by an earlier port of this slot (its
    /// owner reset by reclaim) goes to the free list; a chunk whose refcount
    /// is not 1 is left alone rather than handed out twice.
    pub(super) fn pop_cached(&self, port: u32) -> Option<u32> {
        let ring = self.return_ring(port)?;
        // At most one lap: a hostile writer cannot keep the loop going.
        for d in std::iter::from_fn(|| ring.pop()).take(ring.capacity() as usize) {
            let Some(h) = self.chunk_header(d.chunk) else {
                if d.flags & FLAG_VOID == 0 {
                    self.corrupt_chunk_seen();
                }
                continue;
            };
            if h.meta.refcount.load(Ordering::Acquire) != 1 {
                // Not a free chunk (a forged or corrupt entry): left to the
                // next reclaim pass, which recounts it.
                self.corrupt_chunk_seen();
                continue;
            }
            if h.owner.load(Ordering::Relaxed) == port + 1 {
                return Some(d.chunk);
            }
            h.meta.refcount.store(0, Ordering::Relaxed);
            let _ = self.pool().free(d.chunk);
        }
        None
    }

    /// A chunk record read from shared memory was wrong (counted in the
    /// header's `corrupt_chunks`): the chunk is left alone; the next pass
    /// (at the latest the one a loan runs when the pool is dry) recounts it
    /// and puts it back where it belongs.
    pub(super) fn corrupt_chunk_seen(&self) {
        if let Some(h) = self.header() {
            h.corrupt_chunks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Called inside a send operation after it succeeded: fetches the next
    /// loan's chunk now, overlapping its cache miss with the message's flight.
    pub fn after_send(&self, port: u32) {
        let Some(slot) = self.port(port) else {
            return;
        };
        if slot.spare.chunk.load(Ordering::Relaxed) == Descriptor::NO_CHUNK {
            if let Some(c) = self.pop_cached(port) {
                slot.spare.chunk.store(c, Ordering::Relaxed);
            }
        }
    }

    /// Port `port`'s spare chunk, if any (see [`PortSlot::spare`]).
    pub(super) fn take_spare(&self, port: u32) -> Option<u32> {
        let slot = self.port(port)?;
        let c = slot.spare.chunk.load(Ordering::Relaxed);
        if c == Descriptor::NO_CHUNK {
            return None;
        }
        slot.spare
            .chunk
            .store(Descriptor::NO_CHUNK, Ordering::Relaxed);
        (c < self.limits.chunk_count).then_some(c)
    }
}

impl PortCore {
    /// Loans a chunk for `len` bytes ([`ExchangeInner::loan_on`]).
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        let chunk = self.ex.loan_on(self.index, len)?;
        Ok(Loan::new(self, chunk, len))
    }

    /// Loans a chunk and copies `payload` into it.
    pub fn loan_copy(&self, payload: &[u8]) -> Result<Loan<'_>, SendError> {
        let mut loan = self.loan(payload.len())?;
        loan.copy_from_slice(payload);
        Ok(loan)
    }

    /// Starts a data-path operation on this port ([`ExchangeInner::enter`]).
    /// An outermost operation first carries out the releases of owned
    /// values dropped on other threads ([`Keeper::drain`]).
    pub fn enter(&self) -> Result<OpGuard<'_>, Down> {
        let op = self.ex.enter(self.index)?;
        if let Some(k) = self.keeper.get() {
            if op.is_outermost() {
                k.drain();
            }
        }
        Ok(op)
    }

    /// This port's [`Keeper`], created on first use (the first `into_owned`).
    pub fn keeper(&self) -> &Arc<Keeper> {
        self.keeper
            .get_or_init(|| Keeper::new(self.ex.clone(), self.index, self.generation))
    }

    /// See [`ExchangeInner::after_send`].
    pub fn after_send(&self) {
        self.ex.after_send(self.index);
    }

    pub fn ring(&self) -> Option<Ring<'_>> {
        self.ex.ring(self.index)
    }

    /// Pops the next descriptor from this port's inbox, passing over the
    /// void ones reclaim left where a dead sender's push never finished, and
    /// the misaddressed ones: stamped for another attachment of this slot
    /// ([`stamp`]), which are discarded ([`ExchangeInner::misaddressed`]).
    /// Passes over at most one ring's worth of them per call (more than a
    /// lap of void slots means corrupt ring words): `None` then, and the next
    /// call goes on, so a receive never loops on what shared words say.
    pub fn pop(&self) -> Option<Descriptor> {
        let ring = self.ring()?;
        let mine = stamp(self.generation);
        for _ in 0..ring.capacity() {
            let d = ring.pop()?;
            if d.flags & FLAG_VOID != 0 {
                continue;
            }
            if d.flags & STAMP_MASK == mine {
                return Some(d);
            }
            self.ex.misaddressed(&d);
        }
        None
    }

    /// True when a receive would return now: something queued, or the
    /// exchange went down (the receive reports it); or when owned values'
    /// releases wait for this port's next operation (a blocked receive or a
    /// `WaitSet` then calls the port once, which carries them out).
    pub fn has_pending(&self) -> bool {
        self.ring().is_some_and(|r| r.has_pending()) || self.ex.is_down() || self.releases_pending()
    }

    /// True when owned values' releases wait for this port's next operation.
    pub fn releases_pending(&self) -> bool {
        self.keeper.get().is_some_and(|k| k.has_pending())
    }

    pub fn address(&self) -> u64 {
        address(self.index, self.generation)
    }
}

impl Drop for PortCore {
    fn drop(&mut self) {
        match self.keeper.take() {
            // Owned values may still hold chunks in this port's holdings.
            Some(keeper) => keeper.port_dropped(),
            None => self.ex.detach(self.index, self.generation, Detach::Full),
        }
    }
}

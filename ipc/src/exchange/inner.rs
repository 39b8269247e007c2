//! The shared state of an open exchange (`ExchangeInner`): mapping and
//! initialising the segment, the pool, the rings, holdings, the operation
//! gate (`enter`), delivery and the return of released chunks.

use super::*;

impl ExchangeInner {
    pub(super) fn new(
        node: &Arc<NodeInner>,
        name: &str,
        pattern: Pattern,
        limits: RawLimits,
        layout: ExchangeLayout,
        seg: Segment,
    ) -> Result<ExchangeInner, SegmentError> {
        let regions =
            Regions::new(&seg, &layout, &limits).ok_or_else(|| SegmentError::Corrupt {
                path: seg.path.clone(),
                what: "regions do not fit the segment".into(),
            })?;
        Ok(ExchangeInner {
            node: node.clone(),
            name: name.into(),
            pattern,
            limits,
            layout,
            table: ChunkTable::new(&seg, &layout, limits.chunk_count),
            seg,
            regions,
            return_heads: (0..limits.max_ports)
                .map(|_| AtomicU32::new(UNKNOWN_HEAD))
                .collect(),
            in_op: (0..limits.max_ports)
                .map(|_| {
                    crossbeam_utils::CachePadded::new(std::sync::atomic::AtomicBool::new(false))
                })
                .collect(),
            user: NO_USER,
            last_flush_ms: std::sync::atomic::AtomicU64::new(0),
            parked: std::sync::Mutex::new(Vec::new()),
            has_parked: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Maps and validates the existing exchange `name` without joining it
    /// (no entry in its users table); `Ok(None)` when absent. Removes a file
    /// whose creator died while creating it. Under the control lock.
    /// `populate` maps every page now (for a handle that will use it).
    pub(crate) fn map_locked(
        node: &Arc<NodeInner>,
        name: &str,
        populate: bool,
    ) -> Result<Option<ExchangeInner>, OpenError> {
        let path = node.namespace.exchange_path(name);
        let seg = if populate {
            Segment::open(&path, node.namespace.share_group)?
        } else {
            Segment::open_lazy(&path, node.namespace.share_group)?
        };
        let Some(seg) = seg else {
            return Ok(None);
        };
        if seg.is_uninitialised() {
            // Its creator died while creating it (we hold the lock it held).
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        seg.check_header(KIND_EXCHANGE, "exchange")?;
        let corrupt = |what: String| SegmentError::Corrupt {
            path: path.clone(),
            what,
        };
        let h: &ExchangeHeader = seg
            .get(0)
            .ok_or_else(|| corrupt("header does not fit".into()))?;
        let pattern_code = h.pattern.load(Ordering::Relaxed);
        let pattern = Pattern::from_code(pattern_code)
            .ok_or_else(|| corrupt(format!("unknown pattern code {pattern_code}")))?;
        let raw = RawLimits {
            tasks: pattern == Pattern::Tasks,
            chunk_size: h.chunk_size.load(Ordering::Relaxed),
            chunk_count: h.chunk_count.load(Ordering::Relaxed),
            queue_depth: h.queue_depth.load(Ordering::Relaxed),
            max_ports: h.max_ports.load(Ordering::Relaxed),
        };
        let layout = ExchangeLayout::compute(&raw).map_err(|r| corrupt(format!("limits: {r}")))?;
        if layout.total != seg.len() {
            return Err(SegmentError::SizeMismatch {
                path,
                what: "exchange size for its limits",
                expected: layout.total as u64,
                found: seg.len() as u64,
            }
            .into());
        }
        let stored_name = load_bytes(&h.name, h.name_len.load(Ordering::Relaxed) as usize);
        if stored_name != name.as_bytes() {
            return Err(corrupt(format!(
                "header names exchange {:?}",
                String::from_utf8_lossy(&stored_name)
            ))
            .into());
        }
        Ok(Some(ExchangeInner::new(
            node, name, pattern, raw, layout, seg,
        )?))
    }

    pub(crate) fn header(&self) -> Option<&ExchangeHeader> {
        // SAFETY: validated inside the mapping by Regions::new; the mapping
        // lives as long as self; ExchangeHeader is Shared.
        Some(unsafe { &*self.regions.header })
    }

    pub(super) fn ports_table(&self) -> &[PortSlot] {
        // SAFETY: as in `header`.
        unsafe { &*self.regions.ports }
    }

    /// Fills a freshly created, all-zero segment. Under the control lock.
    pub(super) fn initialise(
        &self,
        name: &str,
        pattern: Pattern,
        limits: &Limits,
        [payload, response]: [&TypeInfo; 2],
    ) -> Result<(), SegmentError> {
        let corrupt = || SegmentError::Corrupt {
            path: self.seg.path.clone(),
            what: "new segment too small for its layout".into(),
        };
        let h = self.header().ok_or_else(corrupt)?;
        self.seg.write_header(KIND_EXCHANGE);
        h.pattern.store(pattern.code(), Ordering::Relaxed);
        h.max_ports.store(self.limits.max_ports, Ordering::Relaxed);
        h.queue_depth
            .store(self.limits.queue_depth, Ordering::Relaxed);
        h.chunk_count
            .store(self.limits.chunk_count, Ordering::Relaxed);
        h.chunk_size
            .store(self.limits.chunk_size, Ordering::Relaxed);
        h.name_len.store(name.len() as u32, Ordering::Relaxed);
        store_bytes(&h.name, name.as_bytes());
        h.creator_pid.store(self.node.pid, Ordering::Relaxed);
        h.creator.store(self.node.key, Ordering::Relaxed);
        h.persistent
            .store(u32::from(limits.persistent), Ordering::Relaxed);
        h.incarnation.store(new_incarnation(), Ordering::Relaxed);
        payload.store(&h.payload);
        response.store(&h.response);
        for i in 0..self.limits.max_ports {
            self.ring(i).ok_or_else(corrupt)?.init();
            self.return_ring(i).ok_or_else(corrupt)?.init();
            self.port(i)
                .ok_or_else(corrupt)?
                .spare
                .chunk
                .store(Descriptor::NO_CHUNK, Ordering::Relaxed);
            self.port(i)
                .ok_or_else(corrupt)?
                .spare
                .deferred
                .store(NO_DEFERRED, Ordering::Relaxed);
        }
        self.pool().init();
        self.initialise_tasks(limits.ack_timeout, limits.max_deliveries);
        let u = &h.users[0];
        u.pid.store(self.node.pid, Ordering::Relaxed);
        u.node.store(self.node.index, Ordering::Relaxed);
        u.owner.store(self.node.key, Ordering::Relaxed);
        self.seg.publish_ready();
        Ok(())
    }

    /// Records this handle in the users table. Under the control lock.
    pub(super) fn add_user(&self) -> Option<u32> {
        let h = self.header()?;
        let (i, u) = h
            .users
            .iter()
            .enumerate()
            .find(|(_, u)| u.pid.load(Ordering::Relaxed) == 0)?;
        u.node.store(self.node.index, Ordering::Relaxed);
        u.owner.store(self.node.key, Ordering::Relaxed);
        u.pid.store(self.node.pid, Ordering::Relaxed);
        Some(i as u32)
    }

    pub fn pool(&self) -> Pool<'_, ChunkTable> {
        // SAFETY: as in `header`.
        let control = unsafe { &(*self.regions.pool).0 };
        Pool::new(control, &self.table)
    }

    /// Port `port`'s inbox.
    pub fn ring(&self, port: u32) -> Option<Ring<'_>> {
        let port = port as usize;
        let depth = self.limits.queue_depth as usize;
        // SAFETY: as in `header`.
        let (controls, slots) =
            unsafe { (&*self.regions.ring_controls, &*self.regions.ring_slots) };
        let control = controls.get(port)?;
        let slots = slots.get(port * depth..(port + 1) * depth)?;
        Ring::new(control, slots)
    }

    /// The return rings' controls, one per port.
    pub(super) fn return_controls(&self) -> &[RingControl] {
        // SAFETY: as in `header`.
        let controls = unsafe { &*self.regions.ring_controls };
        controls
            .get(self.limits.max_ports as usize..)
            .unwrap_or(&[])
    }

    /// Port `port`'s return ring (free chunks coming back to it).
    pub fn return_ring(&self, port: u32) -> Option<Ring<'_>> {
        if port >= self.limits.max_ports {
            return None;
        }
        let port = port as usize;
        let depth = RETURN_DEPTH as usize;
        // SAFETY: as in `header`.
        let (controls, slots) =
            unsafe { (&*self.regions.ring_controls, &*self.regions.return_slots) };
        let control = controls.get(self.limits.max_ports as usize + port)?;
        let slots = slots.get(port * depth..(port + 1) * depth)?;
        Ring::new(control, slots)
    }

    pub fn port(&self, index: u32) -> Option<&PortSlot> {
        self.ports_table().get(index as usize)
    }

    /// Client port `port`'s stream slot `i`.
    pub(crate) fn stream_slot(&self, port: u32, i: u32) -> Option<&crate::layout::StreamSlot> {
        if port >= self.limits.max_ports || i >= crate::layout::STREAM_SLOTS {
            return None;
        }
        let index = (port * crate::layout::STREAM_SLOTS + i) as usize;
        self.seg
            .get(self.layout.streams + index * std::mem::size_of::<crate::layout::StreamSlot>())
    }

    /// A client released a chunk of the stream in its slot `slot`: one more
    /// for the server's window; wakes the server if it waits.
    pub(crate) fn stream_released(&self, port: u32, slot: u32, generation: u32) {
        if let Some(s) = self.stream_slot(port, slot) {
            if s.generation.load(Ordering::Acquire) == generation {
                s.released.fetch_add(1, Ordering::AcqRel);
                self.node.wake(s.server_node.load(Ordering::Relaxed));
            }
        }
    }

    /// Port `port`'s holdings bits (see [`ExchangeLayout::holdings`]).
    pub(crate) fn holdings(&self, port: u32) -> Option<&[AtomicU64]> {
        let w = self.layout.holding_words;
        // SAFETY: as in `header`.
        let all = unsafe { &*self.regions.holdings };
        all.get(port as usize * w..(port as usize + 1) * w)
    }

    /// True when port `port`'s holdings record `chunk` (an index out of
    /// range is never held).
    pub(crate) fn is_held(&self, port: u32, chunk: u32) -> bool {
        self.holdings(port)
            .and_then(|h| h.get(chunk as usize / 64))
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1u64 << (chunk % 64)) != 0)
    }

    /// Records that port `port` holds `chunk` in hand. Only the port's owner
    /// calls it (single writer: a plain read-modify-write).
    pub(crate) fn hold(&self, port: u32, chunk: u32) {
        if let Some(w) = self.holdings(port).and_then(|h| h.get(chunk as usize / 64)) {
            let bit = 1u64 << (chunk % 64);
            w.store(w.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
        }
    }

    /// Records that port `port` no longer holds `chunk`.
    pub(crate) fn unhold(&self, port: u32, chunk: u32) {
        if let Some(w) = self.holdings(port).and_then(|h| h.get(chunk as usize / 64)) {
            let bit = 1u64 << (chunk % 64);
            w.store(w.load(Ordering::Relaxed) & !bit, Ordering::Relaxed);
        }
    }

    /// Starts a data-path operation on port `port`: marks the port busy so a
    /// reclaim pass waits for the operation to end, and waits while a pass
    /// runs. Fails when the exchange is down. Nested calls on the same port
    /// (a release inside a send) join the outer operation.
    ///
    /// Whether the port is inside an operation is this process's own record
    /// (`in_op`), not the shared counter: an odd value forged into a live
    /// port's counter used to make its owner take every later operation for
    /// a nested one, never move the counter again, and so hold off every
    /// reclaim pass (each gave up after its idle wait) for the owner's life.
    /// Now the owner's next operation puts the counter back to even first;
    /// until then the port looks like one whose owner is stopped.
    pub(crate) fn enter(&self, port: u32) -> Result<OpGuard<'_>, Down> {
        let (Some(slot), Some(h), Some(in_op)) = (
            self.port(port),
            self.header(),
            self.in_op.get(port as usize).map(|f| &**f),
        ) else {
            return Ok(OpGuard { busy: None });
        };
        if in_op.load(Ordering::Relaxed) {
            return Ok(OpGuard { busy: None });
        }
        let busy = &slot.spare.busy;
        for _ in 0..MAX_PAUSED_ROUNDS {
            // The Dekker handshake with reclaim's pause (see `gate`): with
            // `membarrier` on the reclaimer's side, a compiler fence here.
            match gate::enter_with(busy, &h.state.0, || self.node.asymmetric()) {
                gate::Enter::Entered => {
                    in_op.store(true, Ordering::Relaxed);
                    let guard = OpGuard {
                        busy: Some((busy, in_op)),
                    };
                    if self.has_parked.load(Ordering::Relaxed) {
                        self.retry_parked();
                    }
                    return Ok(guard);
                }
                // Odd, but not ours (`in_op` says no operation runs here):
                // another process wrote it. Back to even (release, as
                // `gate::exit`), then enter again.
                gate::Enter::Nested => busy.store(
                    busy.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Release,
                ),
                gate::Enter::Down => return Err(Down::Down),
                gate::Enter::Corrupt => {
                    return Err(self.corrupt_state("exchange state word holds unknown bits"))
                }
                gate::Enter::Paused => self.wait_unpaused(),
            }
        }
        Err(self.corrupt_state("exchange stays paused with no reclaim pass running"))
    }

    /// The exchange's state word cannot be trusted: marks the exchange down
    /// (every other user stops at `ExchangeDown`) and wakes every port so
    /// blocked receivers see it.
    pub(super) fn corrupt_state(&self, what: &'static str) -> Down {
        if let Some(h) = self.header() {
            gate::take_down(&h.state.0);
        }
        self.node.exchanges_changed();
        self.wake_all_ports();
        Down::Corrupt(Corrupt(what))
    }

    /// True once the exchange went down.
    pub(crate) fn is_down(&self) -> bool {
        self.header().is_some_and(|h| gate::is_down(&h.state.0))
    }

    /// Waits for a reclaim pass to end. A pass holds the control lock, so
    /// after a short spin this blocks on the lock; a pass whose process died
    /// left the exchange paused, and the waiter finishes it.
    pub(super) fn wait_unpaused(&self) {
        let paused = || self.header().is_some_and(|h| gate::is_paused(&h.state.0));
        for _ in 0..200 {
            if !paused() {
                return;
            }
            std::thread::yield_now();
        }
        if let Ok(_guard) = self.node.control() {
            if paused() {
                self.reclaim_locked();
            }
        }
    }

    /// The routing-key area of chunk `chunk`.
    pub fn chunk_key(&self, chunk: u32) -> Option<&KeyArea> {
        if chunk >= self.limits.chunk_count {
            return None;
        }
        self.seg.get(
            self.layout.chunks + chunk as usize * self.layout.chunk_stride + self.layout.key_offset,
        )
    }

    pub fn chunk_header(&self, chunk: u32) -> Option<&ChunkHeader> {
        if chunk >= self.limits.chunk_count {
            return None;
        }
        self.seg
            .get(self.layout.chunks + chunk as usize * self.layout.chunk_stride)
    }

    /// Pointer to chunk `chunk`'s payload, after checking `chunk` and `len`.
    pub fn payload_ptr(&self, chunk: u32, len: usize) -> Result<*mut u8, Corrupt> {
        if chunk >= self.limits.chunk_count {
            return Err(Corrupt("chunk index out of range"));
        }
        if len as u64 > self.limits.chunk_size {
            return Err(Corrupt("payload length exceeds the chunk size"));
        }
        let offset = self.layout.chunks
            + chunk as usize * self.layout.chunk_stride
            + crate::layout::CHUNK_HEADER;
        if offset + len > self.seg.mapped_len() {
            return Err(Corrupt("payload outside the segment"));
        }
        Ok(self.seg.base().wrapping_add(offset))
    }

    pub fn ports_epoch(&self) -> u32 {
        self.header()
            .map_or(0, |h| h.ports_epoch.load(Ordering::Acquire))
    }

    pub(super) fn active_ports(&self) -> u32 {
        (0..self.limits.max_ports)
            .filter(|&i| {
                self.port(i)
                    .is_some_and(|p| p.state.load(Ordering::Relaxed) == PORT_ACTIVE)
            })
            .count() as u32
    }

    /// Pushes `d` into the inbox of port `port`, addressed to its attachment
    /// `generation` (see [`stamp`]), and wakes its node.
    pub fn deliver(
        &self,
        port: u32,
        generation: u32,
        node: u32,
        d: &Descriptor,
    ) -> Result<(), PushError> {
        let ring = self
            .ring(port)
            .ok_or(PushError::Corrupt(Corrupt("port index out of range")))?;
        ring.push(&stamped(d, generation))?;
        self.node.wake(node);
        Ok(())
    }

    /// Pushes `d` to a cached target (using its cached ring head), addressed
    /// to the attachment the target was read from, and wakes its node.
    pub fn deliver_to(&self, target: &mut Target, d: &Descriptor) -> Result<(), PushError> {
        let ring = self
            .ring(target.index)
            .ok_or(PushError::Corrupt(Corrupt("port index out of range")))?;
        ring.push_cached(&stamped(d, target.generation), &mut target.head)?;
        self.node.wake(target.node);
        Ok(())
    }

    /// Drops one reference to a chunk shared by several receivers; the last
    /// one frees it ([`return_free`](Self::return_free)).
    pub fn release_ref(&self, chunk: u32) {
        if matches!(self.pool().drop_ref(chunk), Ok(true)) {
            self.return_free(chunk, None, false);
        }
    }

    /// Releases what a descriptor referenced (a queued message nobody will
    /// receive, or a received one).
    pub fn release_descriptor(&self, d: &Descriptor) {
        if d.chunk == Descriptor::NO_CHUNK {
            return;
        }
        if d.flags & FLAG_SOLE != 0 {
            self.return_free(d.chunk, flags_owner(d.flags), true);
        } else {
            self.release_ref(d.chunk);
        }
    }

    /// Returns a chunk the caller holds alone (loaned, not sent).
    pub fn give_back(&self, chunk: u32) {
        self.return_free(chunk, None, true);
    }

    /// Releases a sole-delivered chunk received on port `port` later: it
    /// parks in the port's deferred slot until the port's next receive (or
    /// the next deferral), so a reply sent meanwhile does not wait for the
    /// owner's return-ring line.
    pub fn defer_return(&self, port: u32, chunk: u32, owner: Option<u32>) {
        let Some(slot) = self.port(port) else {
            self.return_free(chunk, owner, true);
            return;
        };
        let owner_bits = owner.map_or(u64::from(u32::MAX), u64::from);
        let prev = slot
            .spare
            .deferred
            .swap(u64::from(chunk) | owner_bits << 32, Ordering::Relaxed);
        self.release_deferred(prev);
    }

    /// Hands port `port`'s deferred chunk, if any, to its owner.
    pub fn flush_deferred(&self, port: u32) {
        if let Some(slot) = self.port(port) {
            if slot.spare.deferred.load(Ordering::Relaxed) != NO_DEFERRED {
                let prev = slot.spare.deferred.swap(NO_DEFERRED, Ordering::Relaxed);
                self.release_deferred(prev);
            }
        }
    }

    pub(super) fn release_deferred(&self, word: u64) {
        if word == NO_DEFERRED {
            return;
        }
        let chunk = word as u32;
        let owner = (word >> 32) as u32;
        if chunk < self.limits.chunk_count {
            self.return_free(chunk, (owner != u32::MAX).then_some(owner), true);
        }
    }

    /// Frees a chunk nobody references any more: into the return ring of the
    /// port that loaned it (`owner`, else read from the chunk) while that port
    /// is attached and its ring has room, else onto the shared free list.
    /// Chunks in a return ring keep a refcount of 1 (their owner's), chunks on
    /// the free list 0; `refcount_is_one` says which the chunk has now.
    /// The lock-free part (and why racing the owner's leaving is safe) is
    /// [`recycle::recycle`].
    pub fn return_free(&self, chunk: u32, owner: Option<u32>, refcount_is_one: bool) {
        let owner = owner.or_else(|| self.chunk_owner(chunk)).and_then(|o| {
            Some(recycle::Owner {
                state: &self.port(o)?.state,
                attached: PORT_ACTIVE,
                ring: self.return_ring(o)?,
                head_cache: self.return_heads.get(o as usize)?,
            })
        });
        let _ = recycle::recycle(&self.pool(), chunk, owner, refcount_is_one);
    }

    /// The port that loaned `chunk`, if recorded and in range.
    pub(super) fn chunk_owner(&self, chunk: u32) -> Option<u32> {
        let owner = self.chunk_header(chunk)?.owner.load(Ordering::Relaxed);
        (owner != 0 && owner <= self.limits.max_ports).then(|| owner - 1)
    }

    /// Moves every chunk cached for port `port` (its spare and its return
    /// ring) to the free list.
    pub(crate) fn drain_returns(&self, port: u32) {
        let pool = self.pool();
        if let Some(slot) = self.port(port) {
            let spare = slot
                .spare
                .chunk
                .swap(Descriptor::NO_CHUNK, Ordering::Relaxed);
            if let Some(h) = self.chunk_header(spare) {
                h.meta.refcount.store(0, Ordering::Relaxed);
                let _ = pool.free(spare);
            }
            self.flush_deferred(port);
        }
        let Some(ring) = self.return_ring(port) else {
            return;
        };
        // At most one lap: a hostile writer cannot keep the loop going.
        for d in std::iter::from_fn(|| ring.pop()).take(ring.capacity() as usize) {
            if let Some(h) = self.chunk_header(d.chunk) {
                h.meta.refcount.store(0, Ordering::Relaxed);
                let _ = pool.free(d.chunk);
            }
        }
    }
}

impl Drop for ExchangeInner {
    fn drop(&mut self) {
        if self.has_parked.load(Ordering::Relaxed) {
            // Entries still parked: a pass rebuilds the task queues from the
            // ledger, which puts them where their state says.
            if let Ok(_guard) = self.node.control() {
                self.flush_caches_locked();
            }
        }
        if self.user == NO_USER {
            return;
        }
        let Ok(_guard) = self.node.control() else {
            return;
        };
        let Some(h) = self.header() else { return };
        if let Some(u) = h.users.get(self.user as usize) {
            if u.pid.load(Ordering::Relaxed) == self.node.pid
                && u.node.load(Ordering::Relaxed) == self.node.index
            {
                u.pid.store(0, Ordering::Relaxed);
            }
        }
        // The creator closing cleanly hands the exchange over to its other
        // users (only a creator's death takes a transient exchange down).
        if h.creator_pid.load(Ordering::Relaxed) != 0
            && h.creator.load(Ordering::Relaxed) == self.node.key
        {
            h.creator_pid.store(0, Ordering::Relaxed);
        }
        let live = h.users.iter().any(|u| {
            u.pid.load(Ordering::Relaxed) != 0
                && self.node.owner_alive(u.owner.load(Ordering::Relaxed))
        });
        let persistent = h.persistent.load(Ordering::Relaxed) == 1;
        if !live && !persistent && !self.is_down() && self.seg.path_is_ours() {
            gate::take_down(&h.state.0);
            let _ = std::fs::remove_file(&self.seg.path);
            self.node.exchanges_changed();
        }
    }
}

/// A value that tells one incarnation of an exchange name from the next.
pub(super) fn new_incarnation() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 40)
}

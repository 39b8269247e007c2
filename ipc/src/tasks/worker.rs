//! The working side: `Worker`, its held deliveries and its sweeps.

use super::*;

/// The working side of a task exchange. Takes tasks within its prefetch
/// limit; acks or nacks each.
pub struct Worker {
    pub(super) core: PortCore,
    pub(super) prefetch: u32,
    /// The task this worker nacked and last passed over to the others
    /// (ledger index), and since when: after [`PASS_OVER`] it takes it back.
    pub(super) passed_over: std::cell::Cell<Option<(u32, Instant)>>,
    /// The deliveries alive in this process, and whether each owns the
    /// chunk's reference (acked through [`Worker::ack`] while it lived).
    pub(super) live: RefCell<Vec<LiveDelivery>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core
            .debug_struct(f, "Worker")
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

/// A [`Delivery`] not yet dropped.
pub(super) struct LiveDelivery {
    pub(super) id: TaskId,
    pub(super) chunk: u32,
    /// The ledger's reference passed to the delivery at its ack (recorded in
    /// the worker's holdings); released when the delivery drops.
    pub(super) owned: bool,
}

/// How long a worker leaves a task it nacked to other workers with room
/// before it takes the task back itself.
pub const PASS_OVER: Duration = Duration::from_millis(50);

impl Worker {
    /// Its prefetch limit.
    pub fn prefetch_limit(&self) -> u32 {
        self.prefetch
    }

    /// Deliveries it holds now (not acked, nacked or taken back).
    pub fn held(&self) -> u32 {
        self.core
            .ex
            .port(self.core.index)
            .map_or(0, |p| p.tasks.held.load(Ordering::Relaxed))
    }

    /// The next task if one is ready and this worker is under its prefetch
    /// limit (never blocks). Also takes back deliveries (of any worker) whose
    /// ack deadline passed.
    pub fn try_receive(&self) -> Result<Option<Delivery<'_>>, RecvError> {
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter()?;
        let now = now_ms();
        ex.sweep_expired(now);
        let me = self.core.index;
        let line = &ex
            .port(me)
            .ok_or(Corrupt("worker port out of range"))?
            .tasks;
        if line.held.load(Ordering::Acquire) >= self.prefetch {
            return Ok(None);
        }
        let deadline = now.saturating_add(ex.ack_timeout_ms());
        for p in (0..PRIORITIES).rev() {
            let Some(queue) = ex.task_queue(READY_QUEUE + usize::from(p)) else {
                continue;
            };
            // At most one pass over the queue: a task passed over comes
            // back at its end.
            let mut passed = None;
            while let Some(index) = queue.pop()? {
                let Some(entry) = ex.task_entry(index) else {
                    continue;
                };
                let Ok(word) = entry.load() else { continue };
                if word.state != TaskState::Queued {
                    continue;
                }
                // (A push that fails falls through: the task is claimed
                // here rather than left out of its queue.)
                if passed == Some(index) && push_index(&queue, index).is_ok() {
                    break; // round the queue: leave it queued
                }
                if passed.is_none()
                    && word.holder == me as u16
                    && word.deliveries > 0
                    && self.pass_over(index)
                    && ex.another_worker_has_room(me)
                    && push_index(&queue, index).is_ok()
                {
                    passed = Some(index);
                    continue;
                }
                // A body that does not fit the pool is never delivered (it
                // stays queued for `shmex ls` to show; reclaim recounts it).
                let body = entry.read_body();
                if ex.payload_ptr(body.chunk, body.len as usize).is_err() {
                    continue;
                }
                let Ok(delivered) = entry.claim(word, me as u16, deadline) else {
                    continue;
                };
                if self.passed_over.get().is_some_and(|(i, _)| i == index) {
                    self.passed_over.set(None);
                }
                return Ok(Some(self.deliver(index, body, delivered)?));
            }
        }
        Ok(None)
    }

    /// Whether to leave task `index`, which this worker nacked, to the other
    /// workers: yes for [`PASS_OVER`] after this worker first met it queued
    /// again, then no (nobody else took it: this worker may).
    pub(super) fn pass_over(&self, index: u32) -> bool {
        let now = Instant::now();
        match self.passed_over.get() {
            Some((i, since)) if i == index => now.duration_since(since) < PASS_OVER,
            _ => {
                self.passed_over.set(Some((index, now)));
                true
            }
        }
    }

    /// Builds the delivery of a task just claimed (its body checked). Inside
    /// the operation.
    ///
    /// The delivery takes no reference of its own: it reads the chunk under
    /// the ledger's reference while the task is delivered to this worker
    /// (`claim` and reading the body happen under one entry generation, so
    /// no stall between them can make it retain a chunk freed meanwhile).
    pub(super) fn deliver(
        &self,
        index: u32,
        body: TaskBody,
        word: TaskWord,
    ) -> Result<Delivery<'_>, RecvError> {
        let ex: &ExchangeInner = &self.core.ex;
        let line = &ex
            .port(self.core.index)
            .ok_or(Corrupt("worker port out of range"))?
            .tasks;
        let held = line.held.fetch_add(1, Ordering::AcqRel) + 1;
        line.max_held.fetch_max(held, Ordering::Relaxed);
        line.delivered.fetch_add(1, Ordering::Relaxed);
        if word.deliveries > 1 {
            if let Some(h) = ex.task_header() {
                h.redelivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        let id = TaskId::new(index, word.generation);
        self.live.borrow_mut().push(LiveDelivery {
            id,
            chunk: body.chunk,
            owned: false,
        });
        Ok(Delivery {
            worker: self,
            chunk: body.chunk,
            len: body.len as usize,
            tag: body.tag,
            id,
            priority: word.priority,
            deliveries: u32::from(word.deliveries),
        })
    }

    /// True when [`try_receive`](Self::try_receive) may find a task (or the
    /// exchange went down).
    pub(super) fn ready(&self) -> bool {
        let ex = &self.core.ex;
        ex.is_down()
            || self.core.releases_pending()
            || (self.held() < self.prefetch
                && (0..PRIORITIES).any(|p| {
                    ex.task_queue(READY_QUEUE + usize::from(p))
                        .is_some_and(|q| q.len_hint() > 0)
                }))
    }

    pub(super) fn take_until(&self, timeout: Option<Duration>) -> Result<Delivery<'_>, RecvError> {
        let deadline = timeout.and_then(deadline);
        let forever = timeout.is_none() || deadline.is_none();
        let sweep = Duration::from_millis((self.core.ex.ack_timeout_ms() / 4).clamp(1, 100));
        let mut phantom = crate::waitset::Phantom::default();
        loop {
            if let Some(d) = self.try_receive()? {
                return Ok(d);
            }
            if self.held() >= self.prefetch {
                return Err(RecvError::PrefetchLimit {
                    limit: self.prefetch,
                });
            }
            let until = crate::waitset::until_next_check(deadline, sweep);
            let woke = wait_until(&self.core.ex.node, until, || self.ready());
            // `ready` reads queue positions other processes write: a
            // submitter that died between claiming a queue slot and
            // publishing it leaves the queue looking non-empty for good. So
            // the deadline is checked whether or not the wait said ready,
            // and a readiness that `try_receive` keeps not confirming backs off
            // and starts a reclaim pass (which rebuilds the queues).
            if !forever && crate::waitset::expired(deadline) {
                return Err(RecvError::Timeout);
            }
            if woke && phantom.step(deadline) {
                self.core.ex.reclaim_now();
            }
        }
    }

    /// Blocks until a task is ready. Fails at once with
    /// [`RecvError::PrefetchLimit`] when the worker already holds its limit.
    pub fn receive(&self) -> Result<Delivery<'_>, RecvError> {
        self.take_until(None)
    }

    /// Blocks at most `timeout`; [`RecvError::Timeout`] after, whatever the
    /// task queues' shared words say: a queue can look non-empty for good
    /// when a submitter died between claiming a slot and publishing it. A
    /// wait that keeps finding such phantom tasks backs off (sleeps up to
    /// 1 ms per round) and starts a reclaim pass every 100 ms, which rebuilds
    /// the queues once the dead submitter is found.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Delivery<'_>, RecvError> {
        self.take_until(Some(timeout))
    }

    /// Completes task `id`: frees its ledger entry and its chunk (once its
    /// [`Delivery`] is dropped too). [`TaskError::NotHeld`] when this worker
    /// does not hold that delivery (acked or nacked already, taken back
    /// after its ack timeout, another worker's).
    pub fn ack(&self, id: TaskId) -> Result<(), TaskError> {
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter().map_err(|_| TaskError::ExchangeDown)?;
        let chunk = ex.ack_task(self.core.index, id)?;
        // The ledger's reference passes to the delivery if it still lives
        // (its payload stays readable until it drops), else goes.
        let mut live = self.live.borrow_mut();
        match live.iter_mut().find(|d| d.id == id && !d.owned) {
            Some(d) => {
                d.owned = true;
                d.chunk = chunk;
                ex.hold(self.core.index, chunk);
            }
            None => ex.release_ref(chunk),
        }
        drop(live);
        Ok(ex.free_entry(id.entry())?)
    }

    /// Hands task `id` back: to the ready queue when `requeue`, unless it
    /// was delivered `max_deliveries` times; else to the dead-letter queue.
    /// A requeued task goes to another worker when one has room: this
    /// worker's takes pass it over for [`PASS_OVER`] while another worker is
    /// under its prefetch limit, then take it back if nobody did. Errors as
    /// for [`ack`](Self::ack).
    pub fn nack(&self, id: TaskId, requeue: bool) -> Result<(), TaskError> {
        let _op = self.core.enter().map_err(|_| TaskError::ExchangeDown)?;
        self.core.ex.nack_task(self.core.index, id, requeue)
    }

    /// Takes the oldest dead letter off the dead-letter queue, if any: its
    /// payload, tag and delivery count. Dropping it frees it.
    pub fn try_receive_dead_letter(&self) -> Result<Option<DeadLetter<'_>>, RecvError> {
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter()?;
        let dead = ex.task_queue(DEAD_QUEUE).ok_or(Corrupt("no task region"))?;
        while let Some(index) = dead.pop()? {
            let Some(entry) = ex.task_entry(index) else {
                continue;
            };
            let Ok(word) = entry.load() else { continue };
            if word.state != TaskState::DeadLetter {
                continue;
            }
            let body = entry.read_body();
            if entry.release_dead_letter(word.generation).is_err() {
                continue;
            }
            ex.push_committed(FREE_QUEUE, index)?;
            // The ledger's reference passes to the dead letter.
            ex.hold(self.core.index, body.chunk);
            ex.payload_ptr(body.chunk, body.len as usize)?;
            return Ok(Some(DeadLetter {
                worker: self,
                chunk: body.chunk,
                len: body.len as usize,
                tag: body.tag,
                deliveries: u32::from(word.deliveries),
                priority: word.priority,
            }));
        }
        Ok(None)
    }
}

impl Drop for Worker {
    /// A worker that leaves gives back the tasks it still holds: they are
    /// requeued at once (a dead worker's are requeued by reclaim), and never
    /// charged to the next port in its slot.
    fn drop(&mut self) {
        let ex: &ExchangeInner = &self.core.ex;
        let Ok(_op) = self.core.enter() else { return };
        let me = self.core.index as u16;
        let max = ex.max_deliveries();
        let mut requeued = false;
        for i in 0..ex.limits.queue_depth {
            let Some(e) = ex.task_entry(i) else { break };
            let Ok(w) = e.load() else { continue };
            if w.state == TaskState::Delivered && w.holder == me {
                if let Ok(returned) = e.requeue_from(me, max) {
                    requeued |= matches!(returned, Returned::Requeued(_));
                    let _ = ex.route_returned(i, returned);
                }
            }
        }
        if let Some(p) = ex.port(self.core.index) {
            p.tasks.held.store(0, Ordering::Relaxed);
        }
        if requeued {
            ex.wake_workers();
        }
    }
}

impl Waitable for Worker {
    fn has_pending(&self) -> bool {
        self.ready()
    }
    fn wait_node(&self) -> WaitNode {
        WaitNode(self.core.ex.node.clone())
    }
}

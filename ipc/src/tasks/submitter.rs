//! The submitting side: `Submitter`.

use super::*;

/// The submitting side of a task exchange.
pub struct Submitter {
    pub(super) core: PortCore,
    pub(super) workers: RefCell<Targets>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug_struct(f, "Submitter").finish()
    }
}

impl Submitter {
    /// Loans a chunk for a task of `len` bytes, to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        self.core.loan(len)
    }

    /// Submits a copy of `payload` with the priority (0 ..
    /// [`PRIORITIES`], higher first) and tag set in `task`. [`SendError::QueueFull`]
    /// when the ledger is full.
    pub fn send(&self, task: crate::Submit, payload: &[u8]) -> Result<(), SendError> {
        let loan = self.core.loan_copy(payload)?;
        self.send_loan(task, loan)
    }

    /// Like [`send`](Self::send), but while the queue is full it waits
    /// (backing off up to 1 ms between attempts) for at most `timeout`.
    pub fn send_timeout(
        &self,
        task: crate::Submit,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), SendError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut pause = Duration::from_micros(10);
        loop {
            match self.send(task, payload) {
                Err(SendError::QueueFull) => {}
                other => return other,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(SendError::QueueFull);
            }
            if let Ok(_op) = self.core.enter() {
                self.core.ex.sweep_expired(now_ms());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// Submits a loaned chunk (zero-copy) with the priority and tag set in
    /// `task`. On error the chunk returns to the pool.
    ///
    /// [`SendError::Corrupt`] also when the ready queue stays stalled behind
    /// a worker that stopped between taking a queue slot and releasing it
    /// (it died there): the task is then recorded in the ledger but on no
    /// queue until the reclaim pass that retires the dead worker rebuilds
    /// the queues, so it may still be delivered (at least once).
    pub fn send_loan(&self, task: crate::Submit, loan: Loan<'_>) -> Result<(), SendError> {
        let crate::Submit { priority, tag } = task;
        loan.check_owner(&self.core.ex)?;
        if priority >= PRIORITIES {
            return Err(SendError::InvalidPriority { priority });
        }
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter()?;
        let corrupt = |what| SendError::Corrupt(Corrupt(what));
        let free = ex.task_queue(FREE_QUEUE).ok_or(corrupt("no task region"))?;
        let Some(index) = free.pop()? else {
            return Err(SendError::QueueFull);
        };
        let entry = ex
            .task_entry(index)
            .ok_or(corrupt("free task index out of range"))?;
        let me = self.core.index as u16;
        let reserved = entry
            .reserve(me)
            .map_err(|_| corrupt("a free-queue entry was not free"))?;
        let h = ex.task_header().ok_or(corrupt("no task region"))?;
        let seq = h.next_seq.fetch_add(1, Ordering::Relaxed);
        let (chunk, len, _owner) = loan.into_raw();
        entry.write_body(&TaskBody {
            chunk,
            len,
            tag,
            seq,
        });
        entry
            .publish(reserved, priority)
            .map_err(|_| corrupt("a reserved task entry moved"))?;
        // Published: from here the task is submitted, whatever the push.
        ex.push_committed(READY_QUEUE + usize::from(priority), index)?;
        h.submitted.fetch_add(1, Ordering::Relaxed);
        let mut workers = self.workers.borrow_mut();
        workers.refresh(ex, Role::Worker);
        for w in &workers.list {
            ex.node.wake(w.node);
        }
        self.core.after_send();
        Ok(())
    }
}

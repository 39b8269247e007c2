//! Chunked responses: `ResponseStream`, under the client's window.

use super::*;

/// A chunked response being sent: chunks loaned from the exchange, written
/// in place and pushed straight into the requesting client's inbox. At most
/// the stream's window of chunks are sent and not yet released by the
/// client: [`send_loan`](Self::send_loan) waits for the client (or is told, with
/// [`is_ready`](Self::is_ready) and a [`WaitSet`](crate::WaitSet), so a
/// server can serve others meanwhile). [`end`](Self::end) finishes it;
/// dropping it unfinished, or [`abort`](Self::abort), tells the client
/// ([`FailReason::Aborted`]).
///
/// No wait happens inside a data-path operation: while the window or the
/// client's inbox is full, each push is retried in an operation of its own
/// and the waiting is done outside, so a reclaim pass of the exchange (which
/// waits for every live port to be between operations) is never held up by
/// a slow or stuck client.
pub struct ResponseStream<'a> {
    pub(super) server: &'a Server,
    pub(super) reply: u64,
    pub(super) node: u32,
    pub(super) tag: u64,
    pub(super) slot: u32,
    pub(super) generation: u32,
    pub(super) window: u64,
    pub(super) sent: u64,
    pub(super) done: bool,
}

impl std::fmt::Debug for ResponseStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("tag", &self.tag)
            .field("window", &self.window)
            .field("sent", &self.sent)
            .field("done", &self.done)
            .finish()
    }
}

/// Why a stream cannot send now.
pub(super) enum Blocked {
    Window,
    Cancelled,
    ClientGone,
}

impl<'a> ResponseStream<'a> {
    pub(super) fn ex(&self) -> &ExchangeInner {
        &self.server.core.ex
    }

    pub(super) fn slot(&self) -> Option<&crate::layout::StreamSlot> {
        self.ex()
            .stream_slot(address_port(self.reply), self.slot)
            .filter(|s| s.generation.load(Ordering::Acquire) == self.generation)
    }

    /// The request's tag.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// Chunks sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Loans a chunk for the next part (`len` bytes), to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'a>, SendError> {
        self.server.core.loan(len)
    }

    /// What keeps a send from going now, if anything.
    pub(super) fn blocked(&self) -> Option<Blocked> {
        let ex = self.ex();
        let Some(slot) = self.slot() else {
            return Some(Blocked::ClientGone);
        };
        if slot.state.load(Ordering::Acquire) == STREAM_CANCELLED {
            return Some(Blocked::Cancelled);
        }
        if ex.reply_target(self.reply).is_none() {
            return Some(Blocked::ClientGone);
        }
        let released = slot.released.load(Ordering::Acquire);
        (self.sent.saturating_sub(released) >= self.window).then_some(Blocked::Window)
    }

    /// True when [`send`](Self::send) or [`send_loan`](Self::send_loan)
    /// would not wait: the window has room
    /// (or the stream is over: cancelled, client gone).
    pub fn is_ready(&self) -> bool {
        !matches!(self.blocked(), Some(Blocked::Window))
    }

    /// Sends a loaned chunk as the next part, waiting while the window is
    /// full. Fails with [`StreamError::Cancelled`](crate::StreamError::Cancelled)
    /// once the client cancelled, and
    /// [`StreamError::ClientGone`](crate::StreamError::ClientGone) once its
    /// port closed or its process died (checked every
    /// [`SERVER_CHECK_INTERVAL`] while waiting).
    pub fn send_loan(&mut self, loan: Loan<'_>) -> Result<(), crate::StreamError> {
        self.send_until(loan, None)
    }

    /// [`send_loan`](Self::send_loan) waiting at most `timeout` for the window;
    /// [`StreamError::Timeout`](crate::StreamError::Timeout) after (the
    /// stream stays usable).
    pub fn send_loan_timeout(
        &mut self,
        loan: Loan<'_>,
        timeout: Duration,
    ) -> Result<(), crate::StreamError> {
        self.send_until(loan, Some(timeout))
    }

    /// Sends a copy of `bytes` as the next part.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), crate::StreamError> {
        let loan = self.server.core.loan_copy(bytes)?;
        self.send_loan(loan)
    }

    pub(super) fn send_until(
        &mut self,
        loan: Loan<'_>,
        timeout: Option<Duration>,
    ) -> Result<(), crate::StreamError> {
        loan.check_owner(self.ex())?;
        let deadline = timeout.and_then(crate::waitset::deadline);
        self.wait_room(deadline)?;
        let (chunk, len, owner) = loan.raw_parts();
        let d = Descriptor {
            chunk,
            len,
            flags: FLAG_RESPONSE | FLAG_STREAM | FLAG_SOLE | owner,
            tag: self.tag,
            meta: u64::from(self.slot) | u64::from(self.generation) << 32,
        };
        // The loan keeps the chunk in this port's holdings until the push
        // succeeds (then, in the same operation, the descriptor holds it), so
        // a reclaim pass between attempts counts it. On an error the loan's
        // drop gives the chunk back.
        let mut loan = Some(loan);
        self.push(&d, deadline, || {
            if let Some(l) = loan.take() {
                l.into_raw();
            }
        })?;
        self.sent += 1;
        Ok(())
    }

    /// Waits until the window has room; the stream's end otherwise.
    pub(super) fn wait_room(
        &mut self,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), crate::StreamError> {
        use crate::StreamError as E;
        loop {
            match self.blocked() {
                None => return Ok(()),
                Some(Blocked::Cancelled) => {
                    let _ = self.finish(FLAG_FAILED, FailReason::Aborted.code());
                    return Err(E::Cancelled);
                }
                Some(Blocked::ClientGone) => {
                    self.done = true;
                    return Err(E::ClientGone);
                }
                Some(Blocked::Window) => {}
            }
            if crate::waitset::expired(deadline) {
                return Err(E::Timeout);
            }
            let until = crate::waitset::until_next_check(deadline, SERVER_CHECK_INTERVAL);
            let woke = crate::waitset::wait_until(&self.ex().node, until, || self.is_ready());
            if !woke && !self.client_alive() {
                self.done = true;
                self.ex().reclaim_now();
                return Err(E::ClientGone);
            }
        }
    }

    pub(super) fn client_alive(&self) -> bool {
        self.ex()
            .port(address_port(self.reply))
            .is_some_and(|p| self.ex().node.owner_alive(p.owner.load(Ordering::Relaxed)))
    }

    /// Pushes `d` into the client's inbox, calling `sent` inside the
    /// operation that pushed it. While the inbox is full (its reservation
    /// makes that rare) it retries until `deadline`, each attempt in an
    /// operation of its own and every wait outside one, so a reclaim pass of
    /// the exchange never waits for a full client.
    pub(super) fn push(
        &self,
        d: &Descriptor,
        deadline: Option<std::time::Instant>,
        mut sent: impl FnMut(),
    ) -> Result<(), crate::StreamError> {
        use crate::StreamError as E;
        let mut tries = 0u32;
        loop {
            {
                let _op = self.server.core.enter().map_err(|e| E::Send(e.into()))?;
                // Inside the operation: a client that frees the slot (its
                // port leaving) waits out this push in its grace period and
                // drains it; later pushes see the slot moved on.
                if self.slot().is_none() {
                    return Err(E::ClientGone);
                }
                match self.server.push_reply(self.reply, self.node, d) {
                    Ok(()) => {
                        sent();
                        self.server.core.after_send();
                        return Ok(());
                    }
                    Err(PushError::Corrupt(c)) => return Err(E::Send(c.into())),
                    Err(PushError::Full) => {}
                }
            }
            if crate::waitset::expired(deadline) {
                return Err(E::Timeout);
            }
            tries += 1;
            if tries.is_multiple_of(1000) && !self.client_alive() {
                return Err(E::ClientGone);
            }
            if tries < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Sends the end (or abort) marker and marks the stream done. The
    /// client reserved room for it, so it fails only when the client is
    /// gone or does not receive for seconds.
    pub(super) fn finish(&mut self, flags: u32, code: u32) -> Result<(), crate::StreamError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let d = Descriptor {
            chunk: Descriptor::NO_CHUNK,
            len: code,
            flags: FLAG_RESPONSE | FLAG_STREAM | flags,
            tag: self.tag,
            meta: u64::from(self.slot) | u64::from(self.generation) << 32,
        };
        let deadline = crate::waitset::deadline(SERVER_CHECK_INTERVAL * 50);
        self.push(&d, deadline, || {})
    }

    /// Ends the stream: the client receives the end marker after the last
    /// chunk ([`Sample::is_stream_end`]).
    pub fn end(mut self) -> Result<(), crate::StreamError> {
        use crate::StreamError as E;
        match self.blocked() {
            Some(Blocked::Cancelled) => {
                let _ = self.finish(FLAG_FAILED, FailReason::Aborted.code());
                return Err(E::Cancelled);
            }
            Some(Blocked::ClientGone) => {
                self.done = true;
                return Err(E::ClientGone);
            }
            _ => {}
        }
        self.finish(FLAG_END, 0)
    }

    /// Aborts the stream: the client gets [`RecvError::RequestFailed`] with
    /// [`FailReason::Aborted`] after the chunks already sent.
    pub fn abort(mut self) {
        let _ = self.finish(FLAG_FAILED, FailReason::Aborted.code());
    }
}

impl Drop for ResponseStream<'_> {
    fn drop(&mut self) {
        let _ = self.finish(FLAG_FAILED, FailReason::Aborted.code());
    }
}

impl Waitable for ResponseStream<'_> {
    fn has_pending(&self) -> bool {
        self.is_ready()
    }
    fn wait_node(&self) -> WaitNode {
        WaitNode(self.server.core.ex.node.clone())
    }
}

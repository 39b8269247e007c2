//! The client side: `Client`, its requests in flight and what it receives.

use super::*;

/// The requesting side of a request-response exchange.
///
/// ```no_run
/// # fn f(ex: &shmex::Exchange) -> Result<(), Box<dyn std::error::Error>> {
/// let client = ex.client()?;
/// client.send(7, b"ping")?;
/// let answer = client.receive()?;
/// assert_eq!(answer.tag(), 7);
/// # Ok(()) }
/// ```
pub struct Client {
    pub(super) core: PortCore,
    pub(super) servers: RefCell<Targets>,
    pub(super) next: Cell<usize>,
    pub(super) outstanding: Cell<u32>,
    /// Requests sent and not yet answered, with the process of the server
    /// that got each one.
    pub(super) pending: RefCell<Vec<Pending>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core
            .debug_struct(f, "Client")
            .field("outstanding", &self.outstanding.get())
            .finish()
    }
}

/// A request in flight (or a conversation, or a stream being received).
pub(super) struct Pending {
    pub(super) tag: u64,
    /// Node key of the server's node (`node::node_key`).
    pub(super) owner: u64,
    /// Inbox slots it reserves: 1, or a stream's window plus its end marker.
    pub(super) reserved: u32,
    /// Its server's process is gone: unless a notice is queued, no answer
    /// will ever come, and the client reports it failed.
    pub(super) doomed: bool,
}

impl Client {
    /// Loans a chunk for a request of `len` bytes, to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        self.core.loan(len)
    }

    /// Sends a copy of `payload` as request `tag`.
    pub fn send(&self, tag: u64, payload: &[u8]) -> Result<(), SendError> {
        self.check_room()?;
        let loan = self.core.loan_copy(payload)?;
        self.send_loan(tag, loan)
    }

    /// Sends a loaned chunk as request `tag` (zero-copy). Errors:
    /// [`SendError::NoServer`], [`SendError::QueueFull`] (every server's inbox
    /// is full, or this client has `queue_depth` requests outstanding). On
    /// error the chunk returns to the pool.
    pub fn send_loan(&self, tag: u64, loan: Loan<'_>) -> Result<(), SendError> {
        self.send_with_window(tag, loan, 0)
    }

    /// Sends a copy of `payload` as request `tag`, announcing that a chunked
    /// response is welcome: the server may answer with a stream of at most
    /// `window` unreleased chunks at a time (1 ..= [`MAX_STREAM_WINDOW`]).
    /// The request reserves `window + 1` slots of this client's inbox (the
    /// chunks and the end marker), so it fails with
    /// [`SendError::QueueFull`] when the inbox cannot hold them besides the
    /// requests already outstanding. The chunks then come out of
    /// [`receive`](Self::receive) in order ([`Sample::is_stream_chunk`]),
    /// then an end marker ([`Sample::is_stream_end`]), or
    /// [`RecvError::RequestFailed`] when the server aborts or dies.
    pub fn request_stream(&self, tag: u64, payload: &[u8], window: u32) -> Result<(), SendError> {
        let window = window.clamp(1, MAX_STREAM_WINDOW);
        self.check_room_for(window + 1)?;
        let loan = self.core.loan_copy(payload)?;
        self.send_with_window(tag, loan, window)
    }

    pub(super) fn send_with_window(
        &self,
        tag: u64,
        loan: Loan<'_>,
        window: u32,
    ) -> Result<(), SendError> {
        loan.check_owner(&self.core.ex)?;
        let reserved = if window == 0 { 1 } else { window + 1 };
        self.check_room_for(reserved)?;
        let ex = &self.core.ex;
        let mut servers = self.servers.borrow_mut();
        servers.reclaim_if_wanted(ex);
        let _op = self.core.enter()?;
        servers.refresh(ex, Role::Server);
        let n = servers.list.len();
        if n == 0 {
            return Err(SendError::NoServer);
        }
        let (chunk, len, owner) = loan.into_raw();
        let d = Descriptor {
            chunk,
            len,
            flags: FLAG_REQUEST | FLAG_SOLE | owner,
            tag,
            meta: self.core.address() | u64::from(window) << 16,
        };
        let start = self.next.get();
        for k in 0..n {
            let t = &mut servers.list[(start + k) % n];
            match ex.deliver_to(t, &d) {
                Ok(()) => {
                    self.next.set((start + k + 1) % n);
                    self.outstanding.set(self.outstanding.get() + reserved);
                    self.pending.borrow_mut().push(Pending {
                        tag,
                        owner: t.owner,
                        reserved,
                        doomed: false,
                    });
                    drop(servers);
                    self.core.after_send();
                    return Ok(());
                }
                Err(PushError::Full) => continue,
                Err(PushError::Corrupt(c)) => {
                    ex.give_back(chunk);
                    return Err(c.into());
                }
            }
        }
        ex.give_back(chunk);
        servers.note_full(&ex.node);
        Err(SendError::QueueFull)
    }

    pub(super) fn check_room(&self) -> Result<(), SendError> {
        self.check_room_for(1)
    }

    pub(super) fn check_room_for(&self, slots: u32) -> Result<(), SendError> {
        if self.outstanding.get() + slots > self.core.ex.limits.queue_depth {
            Err(SendError::QueueFull)
        } else {
            Ok(())
        }
    }

    /// Inbox slots reserved by requests sent and not yet answered (or
    /// failed): one per request, `window + 1` per stream request.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.get()
    }

    /// Cancels the chunked response to request `tag`: the server's next send
    /// fails with [`StreamError::Cancelled`](crate::StreamError::Cancelled)
    /// and the server stops. Chunks already queued are released unread; the
    /// stream then ends without an event. Returns false when no stream of
    /// that tag is open.
    pub fn cancel(&self, tag: u64) -> bool {
        let ex = &self.core.ex;
        for i in 0..STREAM_SLOTS {
            let Some(slot) = ex.stream_slot(self.core.index, i) else {
                break;
            };
            if slot.tag.load(Ordering::Relaxed) == tag
                && slot
                    .state
                    .compare_exchange(
                        STREAM_OPEN,
                        STREAM_CANCELLED,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                ex.node.wake(slot.server_node.load(Ordering::Relaxed));
                return true;
            }
        }
        false
    }

    /// Answers a server's question ([`Sample::is_question`]) with a copy of
    /// `payload`: it goes to the server port that asked, under the question's
    /// tag. [`SendError::NoServer`] when that port is gone.
    pub fn answer(&self, question: &Sample<'_>, payload: &[u8]) -> Result<(), SendError> {
        let loan = self.core.loan_copy(payload)?;
        self.answer_loan(question, loan)
    }

    /// Answers a server's question with a loaned chunk (zero-copy).
    pub fn answer_loan(&self, question: &Sample<'_>, loan: Loan<'_>) -> Result<(), SendError> {
        loan.check_owner(&self.core.ex)?;
        if !question.is_question() {
            return Err(SendError::NotAQuestion);
        }
        let ex: &ExchangeInner = &self.core.ex;
        let _op = self.core.enter()?;
        let server = question.reply_to;
        let Some(p) = ex.port(address_port(server)) else {
            return Err(SendError::NoServer);
        };
        if p.state.load(Ordering::Acquire) != crate::layout::PORT_ACTIVE
            || p.generation.load(Ordering::Relaxed) != address_generation(server)
            || p.role.load(Ordering::Relaxed) != Role::Server as u32
        {
            return Err(SendError::NoServer);
        }
        let (chunk, len, owner) = loan.into_raw();
        let d = Descriptor {
            chunk,
            len,
            flags: FLAG_REQUEST | FLAG_ANSWER | FLAG_SOLE | owner,
            tag: question.tag(),
            meta: self.core.address(),
        };
        let node = p.node.load(Ordering::Relaxed);
        match ex.deliver(address_port(server), address_generation(server), node, &d) {
            Ok(()) => {
                self.core.after_send();
                Ok(())
            }
            Err(PushError::Full) => {
                ex.give_back(chunk);
                Err(SendError::QueueFull)
            }
            Err(PushError::Corrupt(c)) => {
                ex.give_back(chunk);
                Err(c.into())
            }
        }
    }

    /// Returns the next response if one is there. A request that will never
    /// be answered comes back as [`RecvError::RequestFailed`] with its tag:
    /// the server dropped it, its port closed, or (found by
    /// [`check_servers`](Self::check_servers)) its process died.
    pub fn try_receive(&self) -> Result<Option<Sample<'_>>, RecvError> {
        let _op = self.core.enter()?;
        self.core.ex.flush_deferred(self.core.index);
        loop {
            let Some(d) = self.core.pop() else {
                return self.fail_doomed().map_or(Ok(None), Err);
            };
            if d.flags & FLAG_STREAM != 0 {
                match self.stream_event(&d)? {
                    Some(s) => return Ok(Some(s)),
                    None => continue,
                }
            }
            if d.flags & FLAG_ASK != 0 {
                // A question keeps the request pending: the conversation
                // goes on until a plain response (or a failure) ends it.
                let mut s = Sample::from_descriptor(&self.core, &d)?;
                s.reply_to = d.meta;
                s.kind = crate::sample::Kind::Question;
                return Ok(Some(s));
            }
            let known = self.settle(d.tag);
            if d.flags & FLAG_FAILED != 0 {
                if !known {
                    // Already reported when its server was found dead.
                    continue;
                }
                let reason = FailReason::from_code(d.len);
                return Err(RecvError::RequestFailed { tag: d.tag, reason });
            }
            let mut sample = Sample::from_descriptor(&self.core, &d)?;
            sample.sender = None;
            if !known {
                // Its request was reported failed already (its server was
                // found gone): one outcome per request. Released unread.
                drop(sample);
                continue;
            }
            return Ok(Some(sample));
        }
    }

    /// A descriptor of a chunked response: a chunk (a sample), the end
    /// marker (a sample without payload), or the abort marker (an error).
    /// `None`: nothing to report (a cancelled stream's leftovers).
    pub(super) fn stream_event(&self, d: &Descriptor) -> Result<Option<Sample<'_>>, RecvError> {
        let ex = &self.core.ex;
        let slot_index = d.meta as u32;
        let generation = (d.meta >> 32) as u32;
        let Some(slot) = ex
            .stream_slot(self.core.index, slot_index)
            .filter(|s| s.generation.load(Ordering::Acquire) == generation)
        else {
            // A part or marker of a stream whose slot moved on: never this
            // client's to see.
            ex.misaddressed(d);
            return Ok(None);
        };
        let cancelled = slot.state.load(Ordering::Acquire) == STREAM_CANCELLED;
        if d.flags & (FLAG_END | FLAG_FAILED) == 0 {
            let mut s = Sample::from_descriptor(&self.core, d)?;
            s.kind = crate::sample::Kind::StreamChunk;
            s.sender = None;
            s.stream = Some((slot_index, generation));
            if cancelled {
                return Ok(None); // dropped here: released unread
            }
            return Ok(Some(s));
        }
        // The stream is over: free its slot, settle the request.
        slot.free();
        let known = self.settle(d.tag);
        if cancelled || !known {
            return Ok(None);
        }
        if d.flags & FLAG_FAILED != 0 {
            return Err(RecvError::RequestFailed {
                tag: d.tag,
                reason: FailReason::from_code(d.len),
            });
        }
        Ok(Some(Sample::stream_end(&self.core, d.tag)))
    }

    /// Forgets the pending request `tag`; false when none was pending.
    pub(super) fn settle(&self, tag: u64) -> bool {
        let mut pending = self.pending.borrow_mut();
        match pending.iter().position(|p| p.tag == tag) {
            Some(i) => {
                let p = pending.swap_remove(i);
                self.outstanding
                    .set(self.outstanding.get().saturating_sub(p.reserved));
                true
            }
            None => false,
        }
    }

    /// With the inbox empty, reports one request whose server died.
    pub(super) fn fail_doomed(&self) -> Option<RecvError> {
        let mut pending = self.pending.borrow_mut();
        let i = pending.iter().position(|p| p.doomed)?;
        let p = pending.swap_remove(i);
        self.outstanding
            .set(self.outstanding.get().saturating_sub(p.reserved));
        Some(RecvError::RequestFailed {
            tag: p.tag,
            reason: FailReason::ServerGone,
        })
    }

    /// Checks that the processes of the servers holding this client's
    /// requests are alive. When one died, its port is reclaimed (queued
    /// requests come back as failure notices) and the requests it had taken
    /// are reported failed by the next receive. `receive` and
    /// `receive_timeout` do this every [`SERVER_CHECK_INTERVAL`] while they
    /// wait; a client that polls with `try_receive` calls it itself. Returns
    /// how many requests were found doomed.
    pub fn check_servers(&self) -> usize {
        let mut doomed = 0;
        for p in self.pending.borrow_mut().iter_mut() {
            if !p.doomed && !self.core.ex.node.owner_alive(p.owner) {
                p.doomed = true;
                doomed += 1;
            }
        }
        if doomed > 0 {
            self.core.ex.reclaim_now();
        }
        doomed
    }

    pub(super) fn has_doomed(&self) -> bool {
        self.pending.borrow().iter().any(|p| p.doomed)
    }

    pub(super) fn receive_until(&self, timeout: Option<Duration>) -> Result<Sample<'_>, RecvError> {
        let deadline = timeout.and_then(crate::waitset::deadline);
        let forever = timeout.is_none() || deadline.is_none();
        let mut phantom = crate::waitset::Phantom::default();
        loop {
            if let Some(x) = self.try_receive()? {
                return Ok(x);
            }
            let until = crate::waitset::until_next_check(deadline, SERVER_CHECK_INTERVAL);
            let woke = crate::waitset::wait_until(&self.core.ex.node, until, || {
                self.core.has_pending() || self.has_doomed()
            });
            // The deadline holds whatever the inbox's words say.
            if !forever && crate::waitset::expired(deadline) {
                return Err(RecvError::Timeout);
            }
            if !woke {
                self.check_servers();
            } else if phantom.step(deadline) {
                self.core.ex.reclaim_now();
            }
        }
    }

    /// Blocks until a response (or failure notice) arrives.
    pub fn receive(&self) -> Result<Sample<'_>, RecvError> {
        self.receive_until(None)
    }

    /// Blocks at most `timeout`; [`RecvError::Timeout`] after.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Sample<'_>, RecvError> {
        self.receive_until(Some(timeout))
    }
}

waitable!(Client);

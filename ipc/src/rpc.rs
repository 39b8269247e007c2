//! Request-response: clients send tagged requests, servers answer each once.
//!
//! A request goes into one server's inbox, chosen round-robin among the
//! servers attached when it is sent (a full inbox is skipped). The response
//! goes straight into the requesting client's inbox, addressed by port index
//! and generation, so it reaches only that client. A client never has more
//! requests outstanding than its inbox holds, which guarantees room for every
//! response or failure notice: nothing is dropped.
//!
//! Two variants:
//! - **Chunked response** ([`Client::request_stream`],
//!   [`Request::respond_stream`], [`ResponseStream`]): the server answers
//!   with a stream of chunks written in place and pushed straight into the
//!   client's inbox, under a flow-control window, then an end marker.
//! - **Dialogue** ([`Request::ask`], [`Client::answer`]): a response may be
//!   a question the client answers; the answer goes to the same server port,
//!   under the same tag, and the conversation goes on until a plain response
//!   ends it.

use crate::error::{FailReason, PortError, RecvError, RespondError, SendError};
use crate::exchange::{
    address, address_generation, address_port, reply_address, reply_window, Exchange,
    ExchangeInner, PortCore, Role, Target, Targets, FLAG_ANSWER, FLAG_ASK, FLAG_END, FLAG_FAILED,
    FLAG_REQUEST, FLAG_RESPONSE, FLAG_SOLE, FLAG_STREAM,
};
use crate::layout::{STREAM_CANCELLED, STREAM_FREE, STREAM_OPEN, STREAM_SLOTS};
use crate::sample::{Loan, Sample};
use crate::waitset::{waitable, WaitNode, Waitable};
use shmex_core::ring::{Descriptor, PushError};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

impl Exchange {
    /// Attaches a client (request-response exchanges).
    pub fn client(&self) -> Result<Client, PortError> {
        Ok(Client {
            core: self.inner.attach(Role::Client, 0, b"")?,
            servers: RefCell::default(),
            next: Cell::new(std::process::id() as usize),
            outstanding: Cell::new(0),
            pending: RefCell::default(),
        })
    }

    /// Attaches a server (request-response exchanges).
    pub fn server(&self) -> Result<Server, PortError> {
        let core = self.inner.attach(Role::Server, 0, b"")?;
        let heads: Box<[AtomicU32]> = (0..self.inner.limits.max_ports)
            .map(|_| AtomicU32::new(UNKNOWN_HEAD))
            .collect();
        Ok(Server {
            core,
            reply_heads: heads,
            conversations: RefCell::default(),
        })
    }
}

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
    core: PortCore,
    servers: RefCell<Targets>,
    next: Cell<usize>,
    outstanding: Cell<u32>,
    /// Requests sent and not yet answered, with the process of the server
    /// that got each one.
    pending: RefCell<Vec<Pending>>,
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
struct Pending {
    tag: u64,
    /// Node key of the server's node (`node::node_key`).
    owner: u64,
    /// Inbox slots it reserves: 1, or a stream's window plus its end marker.
    reserved: u32,
    /// Its server's process is gone: unless a notice is queued, no answer
    /// will ever come, and the client reports it failed.
    doomed: bool,
}

/// Largest window of a chunked response (it must fit a reply address).
pub const MAX_STREAM_WINDOW: u32 = 0x7FFF;

/// How often a blocked `receive` checks that the servers holding its
/// requests are still alive.
pub const SERVER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

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

    fn send_with_window(&self, tag: u64, loan: Loan<'_>, window: u32) -> Result<(), SendError> {
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

    fn check_room(&self) -> Result<(), SendError> {
        self.check_room_for(1)
    }

    fn check_room_for(&self, slots: u32) -> Result<(), SendError> {
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
    fn stream_event(&self, d: &Descriptor) -> Result<Option<Sample<'_>>, RecvError> {
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
    fn settle(&self, tag: u64) -> bool {
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
    fn fail_doomed(&self) -> Option<RecvError> {
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

    fn has_doomed(&self) -> bool {
        self.pending.borrow().iter().any(|p| p.doomed)
    }

    fn receive_until(&self, timeout: Option<Duration>) -> Result<Sample<'_>, RecvError> {
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

/// The answering side of a request-response exchange. Several servers on one
/// exchange share its requests round-robin.
pub struct Server {
    core: PortCore,
    /// Last known inbox head of each client port, shared with this server's
    /// requests so responses rarely read the client's head line.
    reply_heads: Box<[AtomicU32]>,
    /// Conversations waiting for the client's answer to a question: the
    /// client's address, the tag and the client's process.
    conversations: RefCell<Vec<Conversation>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug_struct(f, "Server").finish()
    }
}

/// A question asked and not yet answered.
struct Conversation {
    client: u64,
    tag: u64,
    /// Node key of the client's node (`node::node_key`).
    owner: u64,
}

/// A reply-head cache entry that was never read.
const UNKNOWN_HEAD: u32 = u32::MAX;

impl Server {
    /// Loans a chunk for a response of `len` bytes, to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        self.core.loan(len)
    }

    /// Returns the next request if one is there: a new request, or a
    /// client's answer to this server's question ([`Request::is_answer`]).
    /// A conversation whose client died while this server waited for its
    /// answer comes back as [`RecvError::RequestFailed`] with
    /// [`FailReason::ClientGone`] (found by [`check_clients`](Self::check_clients)).
    pub fn try_receive(&self) -> Result<Option<Request<'_>>, RecvError> {
        let _op = self.core.enter()?;
        self.core.ex.flush_deferred(self.core.index);
        let Some(d) = self.core.pop() else {
            return Ok(None);
        };
        if d.flags & FLAG_REQUEST == 0 {
            self.core.ex.release_descriptor(&d);
            return Err(shmex_core::Corrupt("non-request in a server inbox").into());
        }
        let reply = d.meta;
        if d.flags & FLAG_ANSWER != 0 {
            let mut c = self.conversations.borrow_mut();
            if let Some(i) = c
                .iter()
                .position(|c| c.tag == d.tag && c.client == reply_address(reply))
            {
                c.swap_remove(i);
            }
        }
        match Sample::from_descriptor(&self.core, &d) {
            Ok(sample) => Ok(Some(Request {
                sample,
                reply,
                answered: false,
                answer: d.flags & FLAG_ANSWER != 0,
                server: self,
            })),
            Err(c) => {
                self.core
                    .ex
                    .fail_request(reply, d.tag, FailReason::Unanswered);
                Err(c.into())
            }
        }
    }

    /// Checks that the clients this server asked a question are alive, and
    /// returns (and forgets) the tags of the conversations whose client
    /// died. Blocking receives do this every [`SERVER_CHECK_INTERVAL`] and
    /// report each as [`RecvError::RequestFailed`] with
    /// [`FailReason::ClientGone`]; a server that polls calls it itself.
    pub fn check_clients(&self) -> Vec<u64> {
        let mut gone = Vec::new();
        self.conversations.borrow_mut().retain(|c| {
            let alive = self.client_present(c);
            if !alive {
                gone.push(c.tag);
            }
            alive
        });
        gone
    }

    /// True while a conversation's client port is attached and its process
    /// alive.
    fn client_present(&self, c: &Conversation) -> bool {
        self.core.ex.reply_target(c.client).is_some() && self.core.ex.node.owner_alive(c.owner)
    }

    /// Reports one conversation whose client died, if any.
    fn fail_gone_client(&self) -> Option<RecvError> {
        let mut c = self.conversations.borrow_mut();
        let i = c.iter().position(|c| !self.client_present(c))?;
        let gone = c.swap_remove(i);
        Some(RecvError::RequestFailed {
            tag: gone.tag,
            reason: FailReason::ClientGone,
        })
    }

    fn receive_until(&self, timeout: Option<Duration>) -> Result<Request<'_>, RecvError> {
        let deadline = timeout.and_then(crate::waitset::deadline);
        let forever = timeout.is_none() || deadline.is_none();
        let mut phantom = crate::waitset::Phantom::default();
        loop {
            if let Some(x) = self.try_receive()? {
                return Ok(x);
            }
            if let Some(e) = self.fail_gone_client() {
                return Err(e);
            }
            let until = crate::waitset::until_next_check(deadline, SERVER_CHECK_INTERVAL);
            let woke =
                crate::waitset::wait_until(&self.core.ex.node, until, || self.core.has_pending());
            // The deadline holds whatever the inbox's words say.
            if !forever && crate::waitset::expired(deadline) {
                return Err(RecvError::Timeout);
            }
            if woke && phantom.step(deadline) {
                self.core.ex.reclaim_now();
            }
        }
    }

    /// Blocks until a request arrives.
    pub fn receive(&self) -> Result<Request<'_>, RecvError> {
        self.receive_until(None)
    }

    /// Blocks at most `timeout`; [`RecvError::Timeout`] after.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Request<'_>, RecvError> {
        self.receive_until(Some(timeout))
    }

    /// Pushes a response descriptor into the client's inbox at `reply`.
    fn push_reply(&self, reply: u64, node: u32, d: &Descriptor) -> Result<(), PushError> {
        let ex: &ExchangeInner = &self.core.ex;
        let port = address_port(reply);
        let mut target = Target {
            index: port,
            generation: address_generation(reply),
            node,
            tag: 0,
            topic: None,
            head: UNKNOWN_HEAD,
            owner: 0,
        };
        let cache = self.reply_heads.get(port as usize);
        target.head = match cache.map(|c| c.load(Ordering::Relaxed)) {
            Some(h) if h != UNKNOWN_HEAD => h,
            _ => ex.ring(port).map_or(0, |r| r.head()),
        };
        let result = ex.deliver_to(&mut target, d);
        if let Some(c) = cache {
            c.store(target.head, Ordering::Relaxed);
        }
        result
    }
}

waitable!(Server);

impl Drop for Server {
    /// Conversations waiting for a client's answer end: each client is told
    /// (`RequestFailed` with `ServerGone`).
    fn drop(&mut self) {
        let ex: &ExchangeInner = &self.core.ex;
        if let Ok(_op) = self.core.enter() {
            for c in self.conversations.borrow().iter() {
                ex.fail_request(c.client, c.tag, FailReason::ServerGone);
            }
        }
    }
}

/// A request held by a server. Answer it once with [`respond`](Self::respond)
/// or [`respond_loan`](Self::respond_loan), with a chunked response
/// ([`respond_stream`](Self::respond_stream)) or with a question
/// ([`ask`](Self::ask)); dropping it unanswered tells the client
/// ([`RecvError::RequestFailed`] with [`FailReason::Unanswered`]). The
/// payload is read in place (`Deref<Target = Sample>`).
pub struct Request<'a> {
    sample: Sample<'a>,
    reply: u64,
    answered: bool,
    answer: bool,
    server: &'a Server,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("sample", &self.sample)
            .field("answered", &self.answered)
            .finish()
    }
}

impl<'a> Request<'a> {
    fn ex(&self) -> &'a ExchangeInner {
        self.sample.ex
    }

    /// True when this is a client's answer to this server's question
    /// ([`ask`](Self::ask)); the tag is the conversation's.
    pub fn is_answer(&self) -> bool {
        self.answer
    }

    /// The chunked-response window the client asked for
    /// ([`Client::request_stream`]); 0 for a plain request.
    pub fn stream_window(&self) -> u32 {
        reply_window(self.reply)
    }

    /// Answers with a copy of `payload`.
    pub fn respond(self, payload: &[u8]) -> Result<(), RespondError> {
        let loan = self.sample.core.loan_copy(payload)?;
        self.respond_loan(loan)
    }

    /// Answers with a loaned chunk (zero-copy). Fails with
    /// [`RespondError::ClientGone`] when the client's port closed.
    pub fn respond_loan(self, loan: Loan<'_>) -> Result<(), RespondError> {
        self.reply_with(loan, FLAG_RESPONSE, 0)
    }

    /// Answers with a question the client must answer
    /// ([`Client::answer`]): the conversation goes on under the same tag,
    /// and the client's answer comes back to this server port as a request
    /// with [`is_answer`](Self::is_answer). Either side dying ends it with
    /// an error on the other side.
    pub fn ask(self, payload: &[u8]) -> Result<(), RespondError> {
        let loan = self.sample.core.loan_copy(payload)?;
        self.ask_loan(loan)
    }

    /// [`ask`](Self::ask) with a loaned chunk (zero-copy).
    pub fn ask_loan(self, loan: Loan<'_>) -> Result<(), RespondError> {
        let server = self.server;
        let client = reply_address(self.reply);
        let tag = self.sample.tag;
        let owner = self
            .ex()
            .port(address_port(self.reply))
            .map(|p| p.owner.load(Ordering::Relaxed));
        let me = address(server.core.index, server.core.generation);
        self.reply_with(loan, FLAG_RESPONSE | FLAG_ASK, me)?;
        if let Some(owner) = owner {
            server
                .conversations
                .borrow_mut()
                .push(Conversation { client, tag, owner });
        }
        Ok(())
    }

    fn reply_with(mut self, loan: Loan<'_>, flags: u32, meta: u64) -> Result<(), RespondError> {
        loan.check_owner(self.ex())?;
        self.answered = true;
        let ex = self.ex();
        let _op = ex.enter(self.sample.port).map_err(SendError::from)?;
        let Some(node) = ex.reply_target(self.reply) else {
            return Err(RespondError::ClientGone);
        };
        let (chunk, len, owner) = loan.into_raw();
        let d = Descriptor {
            chunk,
            len,
            flags: flags | FLAG_SOLE | owner,
            tag: self.sample.tag,
            meta,
        };
        match self.server.push_reply(self.reply, node, &d) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => {
                // Only a client that broke its outstanding budget gets here.
                ex.give_back(chunk);
                Err(SendError::QueueFull.into())
            }
            Err(PushError::Corrupt(c)) => {
                ex.give_back(chunk);
                Err(SendError::from(c).into())
            }
        }
    }

    /// Answers with a chunked response: a [`ResponseStream`] that pushes
    /// chunks straight into the client's inbox, at most the window the client
    /// asked for ([`Client::request_stream`]) not yet released by it. Fails
    /// with [`StreamError::NotAStreamRequest`] for a plain request (its
    /// client reserved room for one response only),
    /// [`StreamError::TooManyStreams`] when the client already receives
    /// [`STREAM_SLOTS`] streams, and [`StreamError::ClientGone`]; the
    /// request is then dropped unanswered and its client told
    /// ([`FailReason::Unanswered`]).
    ///
    /// [`StreamError::NotAStreamRequest`]: crate::StreamError::NotAStreamRequest
    /// [`StreamError::TooManyStreams`]: crate::StreamError::TooManyStreams
    /// [`StreamError::ClientGone`]: crate::StreamError::ClientGone
    pub fn respond_stream(mut self) -> Result<ResponseStream<'a>, crate::StreamError> {
        // On error the request drops unanswered: the client is told.
        if self.stream_window() == 0 {
            return Err(crate::StreamError::NotAStreamRequest);
        }
        let ex = self.ex();
        let server = self.server;
        let _op = ex
            .enter(self.sample.port)
            .map_err(|d| crate::StreamError::Send(d.into()))?;
        let Some(node) = ex.reply_target(self.reply) else {
            return Err(crate::StreamError::ClientGone);
        };
        let client = address_port(self.reply);
        for i in 0..STREAM_SLOTS {
            let Some(slot) = ex.stream_slot(client, i) else {
                break;
            };
            if slot
                .state
                .compare_exchange(
                    STREAM_FREE,
                    STREAM_OPEN,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            self.answered = true;
            let generation = slot.generation.load(Ordering::Relaxed).wrapping_add(1);
            let window = self.stream_window();
            slot.generation.store(generation, Ordering::Relaxed);
            slot.window.store(window, Ordering::Relaxed);
            slot.server_node.store(ex.node.index, Ordering::Relaxed);
            slot.server.store(
                address(server.core.index, server.core.generation),
                Ordering::Relaxed,
            );
            slot.tag.store(self.sample.tag, Ordering::Relaxed);
            slot.released.store(0, Ordering::Release);
            return Ok(ResponseStream {
                server,
                reply: self.reply,
                node,
                tag: self.sample.tag,
                slot: i,
                generation,
                window: u64::from(window),
                sent: 0,
                done: false,
            });
        }
        Err(crate::StreamError::TooManyStreams)
    }
}

impl<'a> std::ops::Deref for Request<'a> {
    type Target = Sample<'a>;
    fn deref(&self) -> &Sample<'a> {
        &self.sample
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        if !self.answered {
            if let Ok(_op) = self.ex().enter(self.sample.port) {
                self.ex()
                    .fail_request(self.reply, self.sample.tag, FailReason::Unanswered);
            }
        }
    }
}

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
    server: &'a Server,
    reply: u64,
    node: u32,
    tag: u64,
    slot: u32,
    generation: u32,
    window: u64,
    sent: u64,
    done: bool,
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
enum Blocked {
    Window,
    Cancelled,
    ClientGone,
}

impl<'a> ResponseStream<'a> {
    fn ex(&self) -> &ExchangeInner {
        &self.server.core.ex
    }

    fn slot(&self) -> Option<&crate::layout::StreamSlot> {
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
    fn blocked(&self) -> Option<Blocked> {
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

    fn send_until(
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
    fn wait_room(
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

    fn client_alive(&self) -> bool {
        self.ex()
            .port(address_port(self.reply))
            .is_some_and(|p| self.ex().node.owner_alive(p.owner.load(Ordering::Relaxed)))
    }

    /// Pushes `d` into the client's inbox, calling `sent` inside the
    /// operation that pushed it. While the inbox is full (its reservation
    /// makes that rare) it retries until `deadline`, each attempt in an
    /// operation of its own and every wait outside one, so a reclaim pass of
    /// the exchange never waits for a full client.
    fn push(
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
    fn finish(&mut self, flags: u32, code: u32) -> Result<(), crate::StreamError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Node, Pattern};

    fn exchange(ns: &str) -> (Node, Exchange) {
        let node = Node::builder("t").namespace(ns).create().expect("node");
        let limits = Limits {
            chunk_size: 64,
            chunk_count: 8,
            queue_depth: 8,
            max_ports: 2,
            ..Limits::default()
        };
        let ex = node
            .create_exchange("x", Pattern::RequestResponse, limits)
            .expect("create");
        (node, ex)
    }

    fn finish(ns: String, node: Node, ex: Exchange) {
        assert_eq!(
            ex.chunks_free(),
            ex.limits().chunk_count,
            "every chunk came back"
        );
        drop((ex, node));
        let left: Vec<_> = crate::Namespace::new(crate::DEFAULT_ROOT, ns).segment_files();
        assert!(left.is_empty(), "{left:?}");
    }

    fn misaddressed(ex: &Exchange) -> u64 {
        let h = ex.inner.header().expect("header");
        h.misaddressed.load(Ordering::Relaxed)
    }

    /// Issue 12 item 7: a server that looked its client up (`reply_target`)
    /// and stalled inside its operation past the grace period of the
    /// client's detach pushed the response into the inbox of the next
    /// client of that slot, which took it for the answer to its own request
    /// of the same tag. The stall is made deterministic by holding the
    /// server's operation open across the detach and the new attach.
    #[test]
    fn a_late_response_to_a_reused_client_slot_is_not_delivered() {
        let ns = format!("unit-reply-{}", std::process::id());
        let (node, ex) = exchange(&ns);
        let server = ex.server().expect("server");
        let c1 = ex.client().expect("first client");
        let slot = c1.core.index;
        c1.send(7, b"c1").expect("request");
        let req = server.try_receive().expect("receive").expect("a request");
        let reply = req.reply;
        let op = server.core.enter().expect("enter");
        let node_index = ex.inner.reply_target(reply).expect("client attached");
        let loan = server.core.loan_copy(b"for c1").expect("loan");
        drop(c1);
        let c2 = ex.client().expect("second client");
        assert_eq!(c2.core.index, slot, "the slot is re-used");
        c2.send(7, b"c2").expect("request");
        let (chunk, len, owner) = loan.into_raw();
        let d = Descriptor {
            chunk,
            len,
            flags: FLAG_RESPONSE | FLAG_SOLE | owner,
            tag: 7,
            meta: 0,
        };
        if server.push_reply(reply, node_index, &d).is_err() {
            ex.inner.give_back(chunk);
        }
        drop(op);
        drop(req); // its client is gone: nothing to tell
        let got = c2.try_receive().expect("receive").map(|s| s.to_vec());
        assert!(
            got.is_none(),
            "the response to the slot's previous client reached the new one: {got:?}"
        );
        assert_eq!(misaddressed(&ex), 1);
        // The new client's own request is still answered.
        let req = server
            .try_receive()
            .expect("receive")
            .expect("c2's request");
        assert_eq!(&*req.sample, b"c2");
        req.respond(b"for c2").expect("respond");
        let got = c2.try_receive().expect("receive").expect("its response");
        assert_eq!(&*got, b"for c2");
        drop(got);
        drop((c2, server));
        finish(ns, node, ex);
    }

    /// The same for a request: a client that picked its server and stalled
    /// past the server's detach pushed into the next server of that slot.
    /// Now the new server passes over it and the request fails towards its
    /// client once (`ServerGone`), as if the old server's drain had found it.
    #[test]
    fn a_late_request_to_a_reused_server_slot_fails_once() {
        let ns = format!("unit-request-{}", std::process::id());
        let (node, ex) = exchange(&ns);
        let s1 = ex.server().expect("first server");
        let slot = s1.core.index;
        let client = ex.client().expect("client");
        let op = client.core.enter().expect("enter");
        let mut servers = Targets::default();
        servers.refresh(&ex.inner, Role::Server);
        assert_eq!(servers.list.len(), 1);
        let loan = client.core.loan_copy(b"for s1").expect("loan");
        drop(s1);
        let s2 = ex.server().expect("second server");
        assert_eq!(s2.core.index, slot, "the slot is re-used");
        let (chunk, len, owner) = loan.into_raw();
        let d = Descriptor {
            chunk,
            len,
            flags: FLAG_REQUEST | FLAG_SOLE | owner,
            tag: 9,
            meta: client.core.address(),
        };
        ex.inner
            .deliver_to(&mut servers.list[0], &d)
            .expect("pushed");
        client.outstanding.set(1);
        client.pending.borrow_mut().push(Pending {
            tag: 9,
            owner: servers.list[0].owner,
            reserved: 1,
            doomed: false,
        });
        drop(op);
        let got = s2
            .try_receive()
            .expect("receive")
            .map(|r| r.sample.to_vec());
        assert!(
            got.is_none(),
            "a request for the slot's previous server reached the new one: {got:?}"
        );
        assert_eq!(misaddressed(&ex), 1);
        match client.try_receive() {
            Err(RecvError::RequestFailed { tag: 9, reason }) => {
                assert_eq!(reason, FailReason::ServerGone)
            }
            other => panic!(
                "expected the request to fail: {:?}",
                other.map(|s| s.is_some())
            ),
        }
        assert!(client.try_receive().expect("receive").is_none());
        assert_eq!(client.outstanding(), 0);
        drop((client, s2));
        finish(ns, node, ex);
    }

    /// The same for a chunk of a response stream: the server checked its
    /// window (client attached) in one operation and pushed in the next;
    /// the client left and another took its slot in between, and received a
    /// stream chunk it never asked for. Now the push checks the stream slot
    /// inside its operation, and the new port passes over what was addressed
    /// to the old one.
    #[test]
    fn a_late_stream_chunk_to_a_reused_client_slot_is_not_delivered() {
        let ns = format!("unit-stream-{}", std::process::id());
        let (node, ex) = exchange(&ns);
        let server = ex.server().expect("server");
        let c1 = ex.client().expect("first client");
        let slot = c1.core.index;
        c1.request_stream(5, b"list", 2).expect("request");
        let req = server.try_receive().expect("receive").expect("a request");
        let mut stream = req.respond_stream().expect("stream");
        stream.send(b"one").expect("first part");
        // Between the window check and the push of the next part:
        drop(c1);
        let c2 = ex.client().expect("second client");
        assert_eq!(c2.core.index, slot, "the slot is re-used");
        let loan = stream.loan(8).expect("loan");
        let (chunk, len, owner) = loan.raw_parts();
        let d = Descriptor {
            chunk,
            len,
            flags: FLAG_RESPONSE | FLAG_STREAM | FLAG_SOLE | owner,
            tag: stream.tag,
            meta: u64::from(stream.slot) | u64::from(stream.generation) << 32,
        };
        let mut loan = Some(loan);
        let pushed = stream.push(&d, None, || {
            if let Some(l) = loan.take() {
                l.into_raw();
            }
        });
        drop(loan);
        drop(stream);
        let got = c2.try_receive().expect("receive").map(|s| s.to_vec());
        assert!(
            got.is_none(),
            "a stream chunk for the slot's previous client reached the new one: {got:?}"
        );
        assert!(pushed.is_err(), "pushed to a stream slot of a client gone");
        drop((c2, server));
        finish(ns, node, ex);
    }
}

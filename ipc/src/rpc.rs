//! Request-response: clients send tagged requests, servers answer each once.
//!
//! A request goes into one server's inbox, chosen round-robin among the
//! servers attached when it is sent (a full inbox is skipped). The response
//! goes straight into the requesting client's inbox, addressed by port index
//! and generation, so it reaches only that client. A client never has more
//! requests outstanding than its inbox holds, which guarantees room for every
//! response or failure notice: nothing is dropped.

use crate::error::{FailReason, PortError, RecvError, RespondError, SendError};
use crate::exchange::{
    Exchange, ExchangeInner, PortCore, Role, Target, Targets, FLAG_FAILED, FLAG_REQUEST,
    FLAG_RESPONSE, FLAG_SOLE,
};
use crate::sample::{Loan, Sample};
use crate::waitset::{blocking, waitable, WaitNode, Waitable};
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
        })
    }
}

/// The requesting side of a request-response exchange.
///
/// ```no_run
/// # fn f(ex: &shmex::Exchange) -> Result<(), Box<dyn std::error::Error>> {
/// let client = ex.client()?;
/// client.request(7, b"ping")?;
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

/// A request in flight.
struct Pending {
    tag: u64,
    pid: u32,
    start_time: u64,
    /// Its server's process is gone: unless a notice is queued, no answer
    /// will ever come, and the client reports it failed.
    doomed: bool,
}

/// How often a blocked `receive` checks that the servers holding its
/// requests are still alive.
pub const SERVER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

impl Client {
    /// Loans a chunk for a request of `len` bytes, to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        self.core.loan(len)
    }

    /// Sends a copy of `payload` as request `tag`.
    pub fn request(&self, tag: u64, payload: &[u8]) -> Result<(), SendError> {
        self.check_room()?;
        let loan = self.core.loan_copy(payload)?;
        self.send_request(tag, loan)
    }

    /// Sends a loaned chunk as request `tag` (zero-copy). Errors:
    /// [`SendError::NoServer`], [`SendError::QueueFull`] (every server's inbox
    /// is full, or this client has `queue_depth` requests outstanding). On
    /// error the chunk returns to the pool.
    pub fn send_request(&self, tag: u64, loan: Loan<'_>) -> Result<(), SendError> {
        loan.check_owner(&self.core.ex)?;
        self.check_room()?;
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
            meta: self.core.address(),
        };
        let start = self.next.get();
        for k in 0..n {
            let t = &mut servers.list[(start + k) % n];
            match ex.deliver_to(t, &d) {
                Ok(()) => {
                    self.next.set((start + k + 1) % n);
                    self.outstanding.set(self.outstanding.get() + 1);
                    self.pending.borrow_mut().push(Pending {
                        tag,
                        pid: t.pid,
                        start_time: t.start_time,
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
        servers.note_full();
        Err(SendError::QueueFull)
    }

    fn check_room(&self) -> Result<(), SendError> {
        if self.outstanding.get() >= self.core.ex.limits.queue_depth {
            Err(SendError::QueueFull)
        } else {
            Ok(())
        }
    }

    /// Requests sent and not yet answered (or failed).
    pub fn outstanding(&self) -> u32 {
        self.outstanding.get()
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
            let known = self.settle(d.tag);
            if d.flags & FLAG_FAILED != 0 {
                if !known {
                    // Already reported when its server was found dead.
                    continue;
                }
                let reason = if d.len == 0 {
                    FailReason::Unanswered
                } else {
                    FailReason::ServerGone
                };
                return Err(RecvError::RequestFailed { tag: d.tag, reason });
            }
            return Ok(Some(Sample::from_descriptor(&self.core, &d)?));
        }
    }

    /// Forgets the pending request `tag`; false when none was pending.
    fn settle(&self, tag: u64) -> bool {
        let mut pending = self.pending.borrow_mut();
        match pending.iter().position(|p| p.tag == tag) {
            Some(i) => {
                pending.swap_remove(i);
                self.outstanding
                    .set(self.outstanding.get().saturating_sub(1));
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
            .set(self.outstanding.get().saturating_sub(1));
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
            if !p.doomed && !crate::sys::process_alive(p.pid, p.start_time) {
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
        loop {
            if let Some(x) = self.try_receive()? {
                return Ok(x);
            }
            let slice = crate::waitset::deadline(SERVER_CHECK_INTERVAL);
            let until = match (deadline, slice) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            let woke = crate::waitset::wait_until(&self.core.ex.node, until, || {
                self.core.has_pending() || self.has_doomed()
            });
            if !woke {
                if !forever && deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Err(RecvError::Timeout);
                }
                self.check_servers();
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
}

/// A reply-head cache entry that was never read.
const UNKNOWN_HEAD: u32 = u32::MAX;

impl Server {
    /// Loans a chunk for a response of `len` bytes, to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        self.core.loan(len)
    }

    /// Returns the next request if one is there.
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
        match Sample::from_descriptor(&self.core, &d) {
            Ok(sample) => Ok(Some(Request {
                sample,
                reply,
                answered: false,
                reply_heads: &self.reply_heads,
            })),
            Err(c) => {
                self.core
                    .ex
                    .fail_request(reply, d.tag, FailReason::Unanswered);
                Err(c.into())
            }
        }
    }

    /// Blocks until a request arrives.
    pub fn receive(&self) -> Result<Request<'_>, RecvError> {
        blocking(&self.core, None, || self.try_receive())
    }

    /// Blocks at most `timeout`; [`RecvError::Timeout`] after.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Request<'_>, RecvError> {
        blocking(&self.core, Some(timeout), || self.try_receive())
    }
}

waitable!(Server);

/// A request held by a server. Answer it once with [`respond`](Self::respond)
/// or [`respond_loan`](Self::respond_loan); dropping it unanswered tells the
/// client ([`RecvError::RequestFailed`] with [`FailReason::Unanswered`]).
/// The payload is read in place (`Deref<Target = Sample>`).
pub struct Request<'a> {
    sample: Sample<'a>,
    reply: u64,
    answered: bool,
    reply_heads: &'a [AtomicU32],
}

impl<'a> Request<'a> {
    fn ex(&self) -> &'a ExchangeInner {
        self.sample.ex
    }

    /// Answers with a copy of `payload`.
    pub fn respond(self, payload: &[u8]) -> Result<(), RespondError> {
        let loan = self.ex().loan_copy_on(self.sample.port, payload)?;
        self.respond_loan(loan)
    }

    /// Answers with a loaned chunk (zero-copy). Fails with
    /// [`RespondError::ClientGone`] when the client's port closed.
    pub fn respond_loan(mut self, loan: Loan<'_>) -> Result<(), RespondError> {
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
            flags: FLAG_RESPONSE | FLAG_SOLE | owner,
            tag: self.sample.tag,
            meta: 0,
        };
        let port = self.reply as u32;
        let mut target = Target {
            index: port,
            node,
            tag: 0,
            topic: None,
            head: UNKNOWN_HEAD,
            pid: 0,
            start_time: 0,
        };
        let cache = self.reply_heads.get(port as usize);
        target.head = match cache.map(|c| c.load(Ordering::Relaxed)) {
            Some(h) if h != UNKNOWN_HEAD => h,
            _ => ex.ring(port).map_or(0, |r| r.head()),
        };
        let result = ex.deliver_to(&mut target, &d);
        if let Some(c) = cache {
            c.store(target.head, Ordering::Relaxed);
        }
        match result {
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

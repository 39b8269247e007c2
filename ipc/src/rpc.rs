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
use crate::waitset::{WaitNode, Waitable};
use shmex_core::ring::{Descriptor, PushError};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Receives with the port's blocking policy: spin, then sleep.
pub(crate) fn blocking<T>(
    core: &PortCore,
    timeout: Option<Duration>,
    mut try_receive: impl FnMut() -> Result<Option<T>, RecvError>,
) -> Result<T, RecvError> {
    let deadline = timeout.and_then(crate::waitset::deadline);
    let forever = timeout.is_none() || deadline.is_none();
    loop {
        if let Some(x) = try_receive()? {
            return Ok(x);
        }
        if !crate::waitset::wait_until(&core.ex.node, deadline, || core.has_pending()) && !forever {
            return Err(RecvError::Timeout);
        }
    }
}

macro_rules! waitable {
    ($t:ty) => {
        impl Waitable for $t {
            fn has_pending(&self) -> bool {
                self.core.has_pending()
            }
            fn wait_node(&self) -> WaitNode {
                WaitNode(self.core.ex.node.clone())
            }
        }
    };
}
pub(crate) use waitable;

impl Exchange {
    /// Attaches a client (request-response exchanges).
    pub fn client(&self) -> Result<Client, PortError> {
        Ok(Client {
            core: self.inner.attach(Role::Client, 0, b"")?,
            servers: RefCell::default(),
            next: Cell::new(std::process::id() as usize),
            outstanding: Cell::new(0),
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
}

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
    /// be answered comes back as [`RecvError::RequestFailed`] with its tag.
    pub fn try_receive(&self) -> Result<Option<Sample<'_>>, RecvError> {
        let Some(ring) = self.core.ring() else {
            return Ok(None);
        };
        let Some(d) = ring.pop() else {
            return Ok(None);
        };
        self.outstanding
            .set(self.outstanding.get().saturating_sub(1));
        if d.flags & FLAG_FAILED != 0 {
            let reason = if d.len == 0 {
                FailReason::Unanswered
            } else {
                FailReason::ServerGone
            };
            return Err(RecvError::RequestFailed { tag: d.tag, reason });
        }
        Ok(Some(Sample::from_descriptor(&self.core.ex, &d)?))
    }

    /// Blocks until a response (or failure notice) arrives.
    pub fn receive(&self) -> Result<Sample<'_>, RecvError> {
        blocking(&self.core, None, || self.try_receive())
    }

    /// Blocks at most `timeout`; [`RecvError::Timeout`] after.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Sample<'_>, RecvError> {
        blocking(&self.core, Some(timeout), || self.try_receive())
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
        let Some(ring) = self.core.ring() else {
            return Ok(None);
        };
        let Some(d) = ring.pop() else {
            return Ok(None);
        };
        if d.flags & FLAG_REQUEST == 0 {
            self.core.ex.release_descriptor(&d);
            return Err(shmex_core::Corrupt("non-request in a server inbox").into());
        }
        let reply = d.meta;
        match Sample::from_descriptor(&self.core.ex, &d) {
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
        let loan = self.ex().loan_copy(payload)?;
        self.respond_loan(loan)
    }

    /// Answers with a loaned chunk (zero-copy). Fails with
    /// [`RespondError::ClientGone`] when the client's port closed.
    pub fn respond_loan(mut self, loan: Loan<'_>) -> Result<(), RespondError> {
        loan.check_owner(self.ex())?;
        self.answered = true;
        let ex = self.ex();
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
            self.ex()
                .fail_request(self.reply, self.sample.tag, FailReason::Unanswered);
        }
    }
}

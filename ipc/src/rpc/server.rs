//! The server side: `Server` and the conversations it keeps.

use super::*;

/// The answering side of a request-response exchange. Several servers on one
/// exchange share its requests round-robin.
pub struct Server {
    pub(super) core: PortCore,
    /// Last known inbox head of each client port, shared with this server's
    /// requests so responses rarely read the client's head line.
    pub(super) reply_heads: Box<[AtomicU32]>,
    /// Conversations waiting for the client's answer to a question: the
    /// client's address, the tag and the client's process.
    pub(super) conversations: RefCell<Vec<Conversation>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug_struct(f, "Server").finish()
    }
}

/// A question asked and not yet answered.
pub(super) struct Conversation {
    pub(super) client: u64,
    pub(super) tag: u64,
    /// Node key of the client's node (`node::node_key`).
    pub(super) owner: u64,
}

/// A reply-head cache entry that was never read.
pub(super) const UNKNOWN_HEAD: u32 = u32::MAX;

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
    pub(super) fn client_present(&self, c: &Conversation) -> bool {
        self.core.ex.reply_target(c.client).is_some() && self.core.ex.node.owner_alive(c.owner)
    }

    /// Reports one conversation whose client died, if any.
    pub(super) fn fail_gone_client(&self) -> Option<RecvError> {
        let mut c = self.conversations.borrow_mut();
        let i = c.iter().position(|c| !self.client_present(c))?;
        let gone = c.swap_remove(i);
        Some(RecvError::RequestFailed {
            tag: gone.tag,
            reason: FailReason::ClientGone,
        })
    }

    pub(super) fn receive_until(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Request<'_>, RecvError> {
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
    pub(super) fn push_reply(
        &self,
        reply: u64,
        node: u32,
        d: &Descriptor,
    ) -> Result<(), PushError> {
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

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

mod client;
mod reclaim;
mod request;
mod server;
mod stream;

pub use client::Client;
pub(crate) use reclaim::RpcReclaim;
pub use request::Request;
pub use server::Server;
use server::{Conversation, UNKNOWN_HEAD};
pub use stream::ResponseStream;

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

/// Largest window of a chunked response (it must fit a reply address).
pub const MAX_STREAM_WINDOW: u32 = 0x7FFF;

pub use crate::exchange::SERVER_CHECK_INTERVAL;

#[cfg(test)]
mod tests {
    use super::client::Pending;
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

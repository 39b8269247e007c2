//! A request a server received (`Request`) and the ways to answer it.

use super::*;

/// A request held by a server. Answer it once with [`respond`](Self::respond)
/// or [`respond_loan`](Self::respond_loan), with a chunked response
/// ([`respond_stream`](Self::respond_stream)) or with a question
/// ([`ask`](Self::ask)); dropping it unanswered tells the client
/// ([`RecvError::RequestFailed`] with [`FailReason::Unanswered`]). The
/// payload is read in place (`Deref<Target = Sample>`).
pub struct Request<'a> {
    pub(super) sample: Sample<'a>,
    pub(super) reply: u64,
    pub(super) answered: bool,
    pub(super) answer: bool,
    pub(super) server: &'a Server,
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
    pub(super) fn ex(&self) -> &'a ExchangeInner {
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

    pub(super) fn reply_with(
        mut self,
        loan: Loan<'_>,
        flags: u32,
        meta: u64,
    ) -> Result<(), RespondError> {
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

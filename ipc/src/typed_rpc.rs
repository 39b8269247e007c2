//! Typed request-response: an exchange created for a request type `Req` and
//! a response type `Resp`, whose clients send `Req` and receive `Resp`, and
//! whose servers the other way round, each written and read in place.
//!
//! The header records both descriptors (the request type where other
//! patterns keep their payload type, [`Exchange::payload_type`]; the
//! response type beside it, [`Exchange::response_type`]).
//! [`Node::open_typed_rpc_exchange`] refuses an exchange that disagrees on
//! either with [`OpenError::TypeMismatch`] naming both sides as
//! `Req -> Resp`; an untyped [`Node::open_exchange`] still opens it.
//! A chunked response is a stream of `Resp` values
//! ([`TypedClient::send_stream`], [`TypedRequest::respond_stream`],
//! [`TypedClient::receive_reply`]).
//!
//! ```
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Sum { a: u32, b: u32 }
//! shmex::payload!(Sum { a, b });
//!
//! let node = shmex::Node::builder("example")
//!     .namespace(format!("doc-typed-rpc-{}", std::process::id()))
//!     .create()?;
//! let ex = node.create_typed_rpc_exchange::<Sum, u64>("adder", shmex::Limits::default())?;
//! let (client, server) = (ex.client()?, ex.server()?);
//! client.send(1, &Sum { a: 2, b: 3 })?;
//! let request = server.receive()?;
//! let answer = u64::from(request.a + request.b);
//! request.respond(&answer)?;
//! assert_eq!(*client.receive()?, 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::{OpenError, RecvError, RespondError, SendError, StreamError};
use crate::typed::{typed, view, Payload, TypeInfo, TypedLoan, TypedSample};
use crate::{Client, Exchange, Limits, Node, Pattern, PortError, Request, ResponseStream, Server};
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::time::Duration;

impl Node {
    /// Creates request-response exchange `name` for requests of type `Req`
    /// and responses of type `Resp`, as
    /// [`create_exchange`](Node::create_exchange) does. Fails with
    /// [`OpenError::InvalidLimits`] when either type is aligned to more than
    /// [`MAX_PAYLOAD_ALIGN`](crate::MAX_PAYLOAD_ALIGN) or larger than
    /// `limits.chunk_size`.
    pub fn create_typed_rpc_exchange<Req: Payload, Resp: Payload>(
        &self,
        name: &str,
        limits: Limits,
    ) -> Result<TypedRpcExchange<Req, Resp>, OpenError> {
        let ex = self.create_rpc_exchange_of(
            name,
            limits,
            &TypeInfo::of::<Req>(),
            &TypeInfo::of::<Resp>(),
        )?;
        Ok(TypedRpcExchange::wrap(ex))
    }

    /// Opens the live request-response exchange `name`, created for `Req`
    /// and `Resp` (by Rust or C); [`OpenError::TypeMismatch`] when it was
    /// created for other types (either of them), untyped, or for another
    /// pattern.
    pub fn open_typed_rpc_exchange<Req: Payload, Resp: Payload>(
        &self,
        name: &str,
    ) -> Result<TypedRpcExchange<Req, Resp>, OpenError> {
        let ex =
            self.open_rpc_exchange_of(name, &TypeInfo::of::<Req>(), &TypeInfo::of::<Resp>())?;
        Ok(TypedRpcExchange::wrap(ex))
    }

    /// [`create_typed_rpc_exchange`](Self::create_typed_rpc_exchange) with
    /// the descriptors given as values (for bindings and tools): the
    /// exchange records `request` and `response`, its handle is untyped.
    pub fn create_rpc_exchange_of(
        &self,
        name: &str,
        limits: Limits,
        request: &TypeInfo,
        response: &TypeInfo,
    ) -> Result<Exchange, OpenError> {
        Exchange::create(
            &self.inner,
            name,
            Pattern::RequestResponse,
            limits,
            request,
            response,
        )
    }

    /// [`open_typed_rpc_exchange`](Self::open_typed_rpc_exchange) with the
    /// descriptors given as values: [`OpenError::TypeMismatch`] unless the
    /// exchange records exactly `request` and `response`.
    pub fn open_rpc_exchange_of(
        &self,
        name: &str,
        request: &TypeInfo,
        response: &TypeInfo,
    ) -> Result<Exchange, OpenError> {
        let ex = self.open_exchange(name)?;
        ex.check_types(request, response)?;
        Ok(ex)
    }
}

/// A handle on a request-response exchange of `Req` requests and `Resp`
/// responses. [`untyped`](Self::untyped) gives the byte handle.
pub struct TypedRpcExchange<Req, Resp> {
    ex: Exchange,
    _t: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for TypedRpcExchange<Req, Resp> {
    fn clone(&self) -> Self {
        TypedRpcExchange::wrap(self.ex.clone())
    }
}

impl<Req: Payload, Resp: Payload> std::fmt::Debug for TypedRpcExchange<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedRpcExchange")
            .field("exchange", &self.ex)
            .field("request", &Req::TYPE_NAME)
            .field("response", &Resp::TYPE_NAME)
            .finish()
    }
}

impl<Req, Resp> TypedRpcExchange<Req, Resp> {
    fn wrap(ex: Exchange) -> Self {
        TypedRpcExchange {
            ex,
            _t: PhantomData,
        }
    }

    /// The untyped handle.
    pub fn untyped(&self) -> &Exchange {
        &self.ex
    }

    /// Attaches a client ([`Exchange::client`]).
    pub fn client(&self) -> Result<TypedClient<Req, Resp>, PortError> {
        Ok(TypedClient {
            inner: self.ex.client()?,
            _t: PhantomData,
        })
    }

    /// Attaches a server ([`Exchange::server`]).
    pub fn server(&self) -> Result<TypedServer<Req, Resp>, PortError> {
        Ok(TypedServer {
            inner: self.ex.server()?,
            _t: PhantomData,
        })
    }
}

/// The requesting side of a typed request-response exchange: sends `Req`,
/// receives `Resp` (tagged with the request's tag,
/// `response.untyped().tag()`).
pub struct TypedClient<Req, Resp> {
    inner: Client,
    _t: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req: Payload, Resp: Payload> std::fmt::Debug for TypedClient<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedClient")
            .field("port", &self.inner)
            .field("request", &Req::TYPE_NAME)
            .field("response", &Resp::TYPE_NAME)
            .finish()
    }
}

impl<Req: Payload, Resp: Payload> TypedClient<Req, Resp> {
    /// Loans a chunk for one `Req`, to write in place.
    pub fn loan_uninit(&self) -> Result<TypedLoan<'_, MaybeUninit<Req>>, SendError> {
        TypedLoan::new(self.inner.loan(size_of::<Req>())?)
    }

    /// Sends a loan as request `tag` ([`Client::send_loan`]): zero-copy.
    pub fn send_loan(&self, tag: u64, loan: TypedLoan<'_, Req>) -> Result<(), SendError> {
        self.inner.send_loan(tag, loan.into_untyped())
    }

    /// Sends `value` as request `tag`, written straight into a chunk.
    pub fn send(&self, tag: u64, value: &Req) -> Result<(), SendError> {
        self.send_loan(tag, self.loan_uninit()?.write(*value))
    }

    /// Sends `value` as request `tag`, asking for a chunked response of at
    /// most `window` unreleased `Resp` chunks at a time
    /// ([`Client::request_stream`]; the value is written into the chunk
    /// once, as [`send`](Self::send) does). Receive the chunks and the end
    /// with [`receive_reply`](Self::receive_reply).
    pub fn send_stream(&self, tag: u64, value: &Req, window: u32) -> Result<(), SendError> {
        self.inner
            .request_stream(tag, bytemuck::bytes_of(value), window)
    }

    /// Takes the next response if one is there ([`Client::try_receive`]):
    /// a request that will never be answered comes back as
    /// [`RecvError::RequestFailed`]; a response of the wrong length (sent by
    /// an untyped server) is released and reported as
    /// [`RecvError::Corrupt`]. A stream's end marker carries no `Resp`: a
    /// client that sends [`send_stream`](Self::send_stream) receives with
    /// [`try_receive_reply`](Self::try_receive_reply), as here an end
    /// marker is a payload of the wrong length.
    pub fn try_receive(&self) -> Result<Option<TypedSample<'_, Resp>>, RecvError> {
        typed(self.inner.try_receive(), TypedSample::new)
    }

    /// Waits for the next response ([`Client::receive`]).
    pub fn receive(&self) -> Result<TypedSample<'_, Resp>, RecvError> {
        TypedSample::new(self.inner.receive()?)
    }

    /// Waits at most `timeout` for the next response.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<TypedSample<'_, Resp>, RecvError> {
        TypedSample::new(self.inner.receive_timeout(timeout)?)
    }

    /// Takes the next response, chunk of a chunked response, or end of
    /// one, if one is there; errors as [`try_receive`](Self::try_receive).
    pub fn try_receive_reply(&self) -> Result<Option<TypedReply<'_, Resp>>, RecvError> {
        self.inner.try_receive()?.map(TypedReply::new).transpose()
    }

    /// Waits for the next response, chunk or end of a chunked response.
    pub fn receive_reply(&self) -> Result<TypedReply<'_, Resp>, RecvError> {
        TypedReply::new(self.inner.receive()?)
    }

    /// Waits at most `timeout` for the next response, chunk or end.
    pub fn receive_reply_timeout(
        &self,
        timeout: Duration,
    ) -> Result<TypedReply<'_, Resp>, RecvError> {
        TypedReply::new(self.inner.receive_timeout(timeout)?)
    }

    /// The byte client underneath.
    pub fn untyped(&self) -> &Client {
        &self.inner
    }
}

/// What a typed client receives when it asks for chunked responses
/// ([`TypedClient::receive_reply`]).
#[derive(Debug)]
pub enum TypedReply<'a, Resp> {
    /// A response, or one chunk of a chunked response
    /// ([`Sample::is_stream_chunk`](crate::Sample::is_stream_chunk) on
    /// `untyped()`), read in place.
    Value(TypedSample<'a, Resp>),
    /// The end of the chunked response to request `tag`: every chunk came
    /// before it.
    StreamEnd {
        /// The request's tag.
        tag: u64,
    },
}

impl<'a, Resp: Payload> TypedReply<'a, Resp> {
    fn new(sample: crate::Sample<'a>) -> Result<Self, RecvError> {
        if sample.is_stream_end() {
            return Ok(TypedReply::StreamEnd { tag: sample.tag() });
        }
        TypedSample::new(sample).map(TypedReply::Value)
    }
}

/// The answering side of a typed request-response exchange: receives `Req`
/// ([`TypedRequest`]), answers with `Resp`.
pub struct TypedServer<Req, Resp> {
    inner: Server,
    _t: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req: Payload, Resp: Payload> std::fmt::Debug for TypedServer<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedServer")
            .field("port", &self.inner)
            .field("request", &Req::TYPE_NAME)
            .field("response", &Resp::TYPE_NAME)
            .finish()
    }
}

impl<Req: Payload, Resp: Payload> TypedServer<Req, Resp> {
    /// Loans a chunk for one `Resp`, to write in place.
    pub fn loan_uninit(&self) -> Result<TypedLoan<'_, MaybeUninit<Resp>>, SendError> {
        TypedLoan::new(self.inner.loan(size_of::<Resp>())?)
    }

    /// Takes the next request if one is there ([`Server::try_receive`]). A
    /// request of the wrong length (sent by an untyped client) is dropped
    /// unanswered, its client told ([`RecvError::RequestFailed`]), and
    /// reported here as [`RecvError::Corrupt`].
    pub fn try_receive(&self) -> Result<Option<TypedRequest<'_, Req, Resp>>, RecvError> {
        self.inner
            .try_receive()?
            .map(|r| TypedRequest::new(r, self))
            .transpose()
    }

    /// Waits for the next request ([`Server::receive`]).
    pub fn receive(&self) -> Result<TypedRequest<'_, Req, Resp>, RecvError> {
        TypedRequest::new(self.inner.receive()?, self)
    }

    /// Waits at most `timeout` for the next request.
    pub fn receive_timeout(
        &self,
        timeout: Duration,
    ) -> Result<TypedRequest<'_, Req, Resp>, RecvError> {
        TypedRequest::new(self.inner.receive_timeout(timeout)?, self)
    }

    /// The byte server underneath.
    pub fn untyped(&self) -> &Server {
        &self.inner
    }
}

/// A `Req` held by a typed server, read in place (`Deref<Target = Req>`).
/// Answer it once with [`respond`](Self::respond) or
/// [`respond_loan`](Self::respond_loan); dropping it unanswered tells the
/// client, as [`Request`] does.
pub struct TypedRequest<'a, Req, Resp> {
    request: Request<'a>,
    server: &'a TypedServer<Req, Resp>,
    /// Checked in range, aligned and of `Req`'s size on receipt; held by
    /// `request` while it lives.
    ptr: *const Req,
}

impl<'a, Req: Payload, Resp: Payload> TypedRequest<'a, Req, Resp> {
    fn new(request: Request<'a>, server: &'a TypedServer<Req, Resp>) -> Result<Self, RecvError> {
        // On a wrong length `request` drops unanswered: its client is told.
        let ptr = view::<Req>(request.payload())?;
        Ok(TypedRequest {
            request,
            server,
            ptr,
        })
    }

    /// Loans a chunk for the `Resp` to this request, to write in place.
    pub fn loan_uninit(&self) -> Result<TypedLoan<'a, MaybeUninit<Resp>>, SendError> {
        self.server.loan_uninit()
    }

    /// Answers with a loan ([`Request::respond_loan`]): zero-copy.
    pub fn respond_loan(self, loan: TypedLoan<'_, Resp>) -> Result<(), RespondError> {
        self.request.respond_loan(loan.into_untyped())
    }

    /// Answers with `value`, written straight into a chunk.
    pub fn respond(self, value: &Resp) -> Result<(), RespondError> {
        let loan = self.loan_uninit()?.write(*value);
        self.respond_loan(loan)
    }

    /// Answers with a chunked response of `Resp` values
    /// ([`Request::respond_stream`]: the client asked with
    /// [`TypedClient::send_stream`]).
    pub fn respond_stream(self) -> Result<TypedResponseStream<'a, Resp>, StreamError> {
        Ok(TypedResponseStream {
            inner: self.request.respond_stream()?,
            _t: PhantomData,
        })
    }

    /// The byte request underneath (tag, sender, [`Request::is_answer`]).
    pub fn untyped(&self) -> &Request<'a> {
        &self.request
    }
}

/// A chunked response of `Resp` values being sent ([`ResponseStream`]):
/// each chunk one `Resp`, written in place, under the client's window;
/// [`end`](Self::end) finishes it, dropping it unfinished aborts it.
pub struct TypedResponseStream<'a, Resp> {
    inner: ResponseStream<'a>,
    _t: PhantomData<fn() -> Resp>,
}

impl<Resp: Payload> std::fmt::Debug for TypedResponseStream<'_, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedResponseStream")
            .field("stream", &self.inner)
            .field("response", &Resp::TYPE_NAME)
            .finish()
    }
}

impl<'a, Resp: Payload> TypedResponseStream<'a, Resp> {
    /// Loans a chunk for the next `Resp`, to write in place.
    pub fn loan_uninit(&self) -> Result<TypedLoan<'a, MaybeUninit<Resp>>, SendError> {
        TypedLoan::new(self.inner.loan(size_of::<Resp>())?)
    }

    /// Sends a loan as the next chunk, waiting while the window is full
    /// ([`ResponseStream::send_loan`]): zero-copy.
    pub fn send_loan(&mut self, loan: TypedLoan<'_, Resp>) -> Result<(), StreamError> {
        self.inner.send_loan(loan.into_untyped())
    }

    /// Sends `value` as the next chunk, written straight into a chunk.
    pub fn send(&mut self, value: &Resp) -> Result<(), StreamError> {
        let loan = self.loan_uninit()?.write(*value);
        self.send_loan(loan)
    }

    /// Ends the stream ([`ResponseStream::end`]).
    pub fn end(self) -> Result<(), StreamError> {
        self.inner.end()
    }

    /// The byte stream underneath (tag, window, [`ResponseStream::abort`],
    /// [`ResponseStream::is_ready`]).
    pub fn untyped(&mut self) -> &mut ResponseStream<'a> {
        &mut self.inner
    }
}

impl<Req, Resp> std::ops::Deref for TypedRequest<'_, Req, Resp> {
    type Target = Req;
    fn deref(&self) -> &Req {
        // SAFETY: `ptr` was checked in range and aligned for `Req`, a `Pod`
        // type valid for any bytes; the request holds a reference on the
        // chunk, so the pool does not hand it out while we read.
        unsafe { &*self.ptr }
    }
}

impl<Req: Payload + std::fmt::Debug, Resp> std::fmt::Debug for TypedRequest<'_, Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedRequest")
            .field("tag", &self.request.tag())
            .field("request", &**self)
            .finish()
    }
}

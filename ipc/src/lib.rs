//! shmex: zero-copy messaging between processes on one host.
//!
//! Processes join a [`Namespace`] as [`Node`]s and meet at named
//! [`Exchange`]s, segments of shared memory holding a chunk pool, a port table
//! and one inbox per port. A sender loans a chunk, writes its payload in place
//! and sends a small descriptor; receivers read the payload in place
//! ([`Sample`]) and the chunk returns to the pool when the last one drops it.
//!
//! An exchange may be created for one payload type ([`typed`]):
//! [`Node::create_typed_exchange`] records the type in the exchange, a
//! [`TypedExchange`]'s ports send and receive `T` in place, and a process
//! asking for another type is refused ([`OpenError::TypeMismatch`]).
//! Request-response exchanges record a request and a response type
//! ([`Node::create_typed_rpc_exchange`]: [`TypedClient`] sends `Req` and
//! receives `Resp`, [`TypedServer`] the other way round, also as chunked
//! responses; [`typed_rpc`]);
//! task exchanges of `T` have [`TypedSubmitter`] and [`TypedWorker`]
//! ([`typed_tasks`]).
//!
//! With the feature `serde` (off by default), values of any `serde` type
//! (strings, vectors, enums) travel too: `send_serialized` on each sending
//! port encodes the value with postcard into the loaned chunk,
//! `deserialize` on a sample decodes it. Unlike `Pod` payloads these are
//! copies, in and out (module `serialized`).
//!
//! Every port offers `try_receive` (never blocks), `receive` (blocks) and
//! `receive_timeout`; a [`WaitSet`] blocks one thread on many ports.
//!
//! Ports are `Send` but not `Sync`; a [`Sample`] or [`Loan`] borrows its port
//! and stays on its thread. `into_owned` makes `Send` ones that any thread
//! may drop, also after the port is gone: [`OwnedSample`], [`OwnedLoan`],
//! [`OwnedDelivery`].
//!
//! # Patterns
//!
//! An exchange serves one [`Pattern`]. The examples below run both ends in
//! one process for brevity; in practice they are different processes that
//! join the same namespace and open the exchange by name
//! ([`Node::open_exchange`]).
//!
//! ## Request-response
//!
//! [`Client`]s send tagged requests, a [`Server`] answers each [`Request`]
//! once; the response carries the request's tag.
//!
//! ```
//! use shmex::{Limits, Node, Pattern};
//! let node = Node::builder("example").namespace(format!("doc-rr-{}", std::process::id())).create()?;
//! let ex = node.create_exchange("time", Pattern::RequestResponse, Limits::default())?;
//! let server = ex.server()?;
//! let client = ex.client()?;
//! client.send(7, b"what time is it?")?;
//! let request = server.receive()?;
//! assert_eq!(&request[..], b"what time is it?");
//! request.respond(b"noon")?;
//! let response = client.receive()?;
//! assert_eq!((response.tag(), &response[..]), (7, &b"noon"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Chunked response streams
//!
//! On a request-response exchange, [`Client::request_stream`] asks for a
//! response in many chunks, at most `window` of them in flight; the server
//! answers with a [`ResponseStream`] and ends it.
//!
//! ```
//! use shmex::{Limits, Node, Pattern};
//! let node = Node::builder("example").namespace(format!("doc-stream-{}", std::process::id())).create()?;
//! let ex = node.create_exchange("files", Pattern::RequestResponse, Limits::default())?;
//! let server = ex.server()?;
//! let client = ex.client()?;
//! client.request_stream(1, b"get", 4)?;
//! let mut stream = server.receive()?.respond_stream()?;
//! for part in [&b"first "[..], b"second"] {
//!     stream.send(part)?;
//! }
//! stream.end()?;
//! let mut whole = Vec::new();
//! loop {
//!     let chunk = client.receive()?;
//!     if chunk.is_stream_end() {
//!         break;
//!     }
//!     whole.extend_from_slice(&chunk);
//! }
//! assert_eq!(whole, b"first second");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Dialogue
//!
//! A server may answer a request with a question ([`Request::ask`]); the
//! client answers it ([`Client::answer`]) and the server then responds as
//! usual.
//!
//! ```
//! use shmex::{Limits, Node, Pattern};
//! let node = Node::builder("example").namespace(format!("doc-dialogue-{}", std::process::id())).create()?;
//! let ex = node.create_exchange("shop", Pattern::RequestResponse, Limits::default())?;
//! let server = ex.server()?;
//! let client = ex.client()?;
//! client.send(3, b"buy tea")?;
//! server.receive()?.ask(b"how many?")?;
//! let question = client.receive()?;
//! assert!(question.is_question());
//! client.answer(&question, b"2")?;
//! let answer = server.receive()?;
//! assert!(answer.is_answer());
//! assert_eq!(&answer[..], b"2");
//! answer.respond(b"2 teas")?;
//! assert_eq!(&client.receive()?[..], b"2 teas");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Publish-subscribe
//!
//! [`Publisher`]s publish under AMQP routing keys; each [`Subscriber`]
//! receives what its topic pattern matches (`*` one word, `#` any number).
//!
//! ```
//! use shmex::{Limits, Node, Pattern};
//! let node = Node::builder("example").namespace(format!("doc-pubsub-{}", std::process::id())).create()?;
//! let ex = node.create_exchange("greetings", Pattern::PublishSubscribe, Limits::default())?;
//! let sub = ex.subscriber("hello.#", 1)?;
//! let publisher = ex.publisher()?;
//! publisher.send("hello.world", b"hi")?;
//! let sample = sub.receive()?;
//! assert_eq!(&sample[..], b"hi");
//! assert_eq!(sample.key(), Some("hello.world"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Fan-in
//!
//! Many [`Producer`]s, one [`Consumer`]; [`Sample::sender`] tells the
//! producers apart.
//!
//! ```
//! use shmex::{Limits, Node, Pattern};
//! let node = Node::builder("example").namespace(format!("doc-fanin-{}", std::process::id())).create()?;
//! let ex = node.create_exchange("logs", Pattern::FanIn, Limits::default())?;
//! let consumer = ex.consumer()?;
//! let (a, b) = (ex.producer()?, ex.producer()?);
//! a.send(1, b"from a")?;
//! b.send(2, b"from b")?;
//! let (first, second) = (consumer.receive()?, consumer.receive()?);
//! assert_eq!((&first[..], &second[..]), (&b"from a"[..], &b"from b"[..]));
//! assert_ne!(first.sender(), second.sender());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Task distribution
//!
//! [`Submitter`]s queue prioritised tasks; [`Worker`]s take them (at most
//! their prefetch limit at once) and ack or nack each. A task not acked
//! within the exchange's `ack_timeout`, or whose worker died, is delivered
//! again, up to `max_deliveries` times, then dead-lettered.
//!
//! ```
//! use shmex::{Limits, Node, Pattern, Submit};
//! let node = Node::builder("example").namespace(format!("doc-tasks-{}", std::process::id())).create()?;
//! let ex = node.create_exchange("jobs", Pattern::Tasks, Limits::default())?;
//! let submitter = ex.submitter()?;
//! let worker = ex.worker(1)?;
//! submitter.send(Submit::new().tag(10), b"resize a.png")?;
//! let task = worker.receive()?;
//! assert_eq!((task.tag(), task.payload()), (10, &b"resize a.png"[..]));
//! task.ack()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads
//!
//! Which handles may move to (`Send`) or be shared with (`Sync`) another
//! thread; `tests/auto_traits.rs` checks this table at compile time.
//!
//! | Handle | `Send` | `Sync` |
//! |---|---|---|
//! | [`Node`], [`NodeBuilder`], [`Exchange`], [`TypedExchange`], [`TypedRpcExchange`] | yes | yes |
//! | Ports: [`Publisher`], [`Subscriber`], [`Client`], [`Server`], [`Producer`], [`Consumer`], [`Submitter`], [`Worker`], their `Typed*` forms, and [`Watch`] | yes | no |
//! | Borrowing a port: [`Sample`], [`Loan`], [`Delivery`], [`Request`], [`ResponseStream`], [`DeadLetter`], [`TypedSample`], [`TypedLoan`], [`TypedRequest`], [`TypedReply`], [`TypedResponseStream`], [`TypedDelivery`], [`WaitSet`] | no | no |
//! | [`OwnedSample`], [`OwnedLoan`], [`OwnedDelivery`] | yes | yes |
//! | [`Error`] and the per-operation errors | yes | yes |
//!
//! A port serves one thread at a time: move it, or give each thread its own
//! port. What borrows a port stays on the port's thread; `into_owned` makes
//! the owned forms, which any thread may use and drop.
//!
//! # What shared memory may do to you
//!
//! Every process of the namespace can write every byte of an exchange. shmex
//! splits those bytes in two:
//!
//! - **Structure words** (headers, port slots, rings, the pool, the task
//!   ledger, chunk headers, routing keys) are shmex's. Each is an atomic,
//!   loaded once into a local, checked, and only the local is used: a word
//!   changed or forged by another process yields a typed error (`Corrupt`,
//!   `ExchangeDown`, …), never undefined behaviour, a panic or an endless
//!   loop.
//! - **Payload bytes** are the application's. A sent chunk is immutable by
//!   protocol (only its loan's holder writes it, before sending), and shmex
//!   never decides anything from payload bytes. The `&[u8]` a [`Sample`]
//!   derefs to rests on that protocol: a buggy process of the namespace that
//!   writes into a chunk after sending it breaks the assumption a shared
//!   reference makes, and a reader may then see the bytes change between two
//!   reads. Treat payloads as untrusted input from another program: parse
//!   them once, or, when the peers are not trusted to keep the protocol,
//!   copy the bytes out first (`sample.to_vec()`, `copy_from_slice`) and
//!   validate the copy.

#![warn(missing_docs, missing_debug_implementations)]

mod deprecated;
mod error;
mod exchange;
mod fanin;
mod layout;
mod namespace;
mod node;
mod owned;
mod pattern;
mod payload;
mod pubsub;
mod reclaim;
mod registry;
mod rpc;
mod sample;
mod segment;
#[cfg(feature = "serde")]
pub mod serialized;
mod submit;
mod sys;
mod tasks;
pub mod topic;
pub mod typed;
pub mod typed_rpc;
pub mod typed_tasks;
mod umbrella;
mod waitset;
mod watch;

#[cfg(feature = "serde")]
pub use error::SerialError;
pub use error::{
    Corrupt, FailReason, NodeError, OpenError, PodError, PortError, RecvError, RespondError,
    SegmentError, SendError, StreamError, TaskError, WaitError,
};
#[doc(hidden)]
pub use exchange::word_offsets;
pub use exchange::{
    check_exchange_name, list_exchanges, Exchange, ExchangeInfo, Limits, Pattern, MAX_SEGMENT_SIZE,
};
pub use fanin::{Consumer, Producer};
pub use layout::{
    layout_hash, LAYOUT_VERSION, MAX_KEY_LEN, MAX_PAYLOAD_ALIGN, MAX_TYPE_NAME, STREAM_SLOTS,
};
#[doc(hidden)]
pub use layout::{WordOffsets, REGISTRY_FENCE_FLAG_OFFSET};
pub use node::{
    check_namespace_name, list_nodes, resolve_group, Namespace, Node, NodeBuilder, NodeInfo,
    Reclaimed, CONTROL_LOCK_WAIT, DEFAULT_HEARTBEAT, DEFAULT_NAMESPACE, DEFAULT_ROOT, DEFAULT_SPIN,
    HUNG_AFTER,
};
pub use owned::{OwnedLoan, OwnedSample};
pub use payload::{layout_hash_of, Payload, TypeInfo};
pub use pubsub::{Published, Publisher, Subscriber};
pub use rpc::{Client, Request, ResponseStream, Server, MAX_STREAM_WINDOW, SERVER_CHECK_INTERVAL};
pub use sample::{Loan, Sample, SenderId};
pub use submit::Submit;
pub use tasks::{
    DeadLetter, Delivery, OwnedDelivery, Submitter, TaskId, TaskStats, Worker, WorkerStats,
    PASS_OVER, PRIORITIES,
};
pub use typed::{
    TypedConsumer, TypedExchange, TypedLoan, TypedProducer, TypedPublisher, TypedSample,
    TypedSubscriber,
};
pub use typed_rpc::{
    TypedClient, TypedReply, TypedRequest, TypedResponseStream, TypedRpcExchange, TypedServer,
};
pub use typed_tasks::{TypedDelivery, TypedSubmitter, TypedWorker};
pub use umbrella::{Error, Result};
pub use waitset::{WaitNode, WaitSet, Waitable};
pub use watch::{ExchangeEvent, Watch};

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

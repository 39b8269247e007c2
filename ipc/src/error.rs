//! Error types, one enum per operation family. Every variant names something a
//! caller can act on: retry later, pick another name, fix a limit, give up.
//! Each is `#[non_exhaustive]` (a `match` needs a wildcard arm), and each
//! converts into the umbrella [`Error`] for `?` in application code.

use std::path::PathBuf;

pub use shmex_core::Corrupt;

/// A shared-memory object could not be created, opened or trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// A system call on the object failed.
    #[error("{path}: {source}")]
    Io {
        /// The object's file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The object belongs to another user and is refused.
    #[error("{path} is owned by uid {owner}, not by this process's uid {ours}")]
    ForeignOwner {
        /// The object's file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        ours: u32,
    },
    /// The object is not a shmex segment of the expected kind.
    #[error("{path} is not a shmex {expected} segment (magic/kind {found:#x})")]
    NotShmex {
        /// The object's file.
        path: PathBuf,
        /// The kind we wanted ("registry" or "exchange").
        expected: &'static str,
        /// What its header held.
        found: u64,
    },
    /// The object was written by another layout version of shmex.
    #[error("{path}: layout version {theirs}, this library speaks version {ours}")]
    VersionMismatch {
        /// The object's file.
        path: PathBuf,
        /// Our layout version.
        ours: u32,
        /// The segment's layout version.
        theirs: u32,
    },
    /// Same version number, different structure layout (another build).
    #[error("{path}: layout hash {theirs:#018x}, this library's is {ours:#018x}")]
    LayoutMismatch {
        /// The object's file.
        path: PathBuf,
        /// Our layout hash.
        ours: u64,
        /// The segment's layout hash.
        theirs: u64,
    },
    /// The header's size, the limits it states and the file size disagree.
    #[error("{path}: {what}: expected {expected}, found {found}")]
    SizeMismatch {
        /// The object's file.
        path: PathBuf,
        /// Which size.
        what: &'static str,
        /// What the layout requires.
        expected: u64,
        /// What the segment says.
        found: u64,
    },
    /// The file system holding the segments has no room for this one.
    #[error(
        "{path}: needs {needed} bytes of shared memory and the file system has not that much free"
    )]
    NoSpace {
        /// The object's file.
        path: PathBuf,
        /// Bytes the segment needs.
        needed: u64,
    },
    /// The namespace's control lock stayed held past the wait allowed
    /// ([`CONTROL_LOCK_WAIT`](crate::CONTROL_LOCK_WAIT) by default): its
    /// holder is stopped, hung or very slow. Retry later; `shmex supervisor`
    /// reports the holder as hung.
    #[error("{path}: the namespace's control lock is still held after {waited_ms} ms{}", holder.map_or(String::new(), |p| format!(" (by pid {p})")))]
    LockTimeout {
        /// The registry file whose `flock` is the control lock.
        path: PathBuf,
        /// The holder's pid as this process sees it (from `/proc/locks`),
        /// when visible.
        holder: Option<u32>,
        /// How long this call waited.
        waited_ms: u64,
    },
    /// The file or directory is not one shmex may trust: a symbolic link,
    /// FIFO, socket or device node where a segment should be, a file with
    /// more than one link or with holes, a directory with the wrong mode or
    /// group. Nothing was opened for writing or mapped; remove it or fix
    /// its mode.
    #[error("{path}: refused: {what}")]
    Untrusted {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A field of the segment holds a value the runtime never writes.
    #[error("{path}: corrupt: {what}")]
    Corrupt {
        /// The object's file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl SegmentError {
    /// The file the error is about (every variant names one).
    pub fn path(&self) -> &std::path::Path {
        match self {
            SegmentError::Io { path, .. }
            | SegmentError::ForeignOwner { path, .. }
            | SegmentError::NotShmex { path, .. }
            | SegmentError::VersionMismatch { path, .. }
            | SegmentError::LayoutMismatch { path, .. }
            | SegmentError::SizeMismatch { path, .. }
            | SegmentError::NoSpace { path, .. }
            | SegmentError::LockTimeout { path, .. }
            | SegmentError::Untrusted { path, .. }
            | SegmentError::Corrupt { path, .. } => path,
        }
    }
}

/// Joining a namespace failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Namespace or node name not allowed.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// "namespace" or "node".
        what: &'static str,
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An environment variable (`SHMEX_NAMESPACE`, `SHMEX_SHARE_GROUP`)
    /// holds a value that cannot be used.
    #[error("{var}={value:?}: {reason}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value (lossily decoded).
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The share group names no group of this system.
    #[error("share group {group:?} is not a group of this system")]
    UnknownGroup {
        /// The group as given.
        group: String,
    },
    /// Every node slot of the namespace is taken by a live process.
    #[error("namespace registry is full ({max} nodes)")]
    RegistryFull {
        /// Capacity of the registry.
        max: u32,
    },
    /// The registry segment is unusable.
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

/// Creating or opening an exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The exchange name is not allowed.
    #[error("invalid exchange name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No live exchange of that name exists in the namespace.
    #[error("exchange {name:?} does not exist")]
    NotFound {
        /// The exchange name.
        name: String,
    },
    /// A live exchange of that name exists already.
    #[error("exchange {name:?} already exists")]
    AlreadyExists {
        /// The exchange name.
        name: String,
    },
    /// The limits are out of range.
    #[error("invalid limits: {reason}")]
    InvalidLimits {
        /// Which limit and why.
        reason: String,
    },
    /// The existing exchange differs from what the caller asked for.
    #[error("exchange {name:?} exists with {what} {theirs}, asked for {ours}")]
    Mismatch {
        /// The exchange name.
        name: String,
        /// "pattern", "chunk_size", ...
        what: &'static str,
        /// What the caller asked for.
        ours: String,
        /// What the exchange has.
        theirs: String,
    },
    /// The exchange was created for another payload type than the one asked
    /// for ([`Node::open_typed_exchange`](crate::Node::open_typed_exchange)),
    /// or, for a typed request-response exchange
    /// ([`Node::open_typed_rpc_exchange`](crate::Node::open_typed_rpc_exchange)),
    /// another request or response type: the message then names both sides'
    /// types as `Req -> Resp`.
    #[error(
        "exchange {exchange:?} carries {}, asked for {}",
        crate::payload::describe(.found, .found_response, .expected_response),
        crate::payload::describe(.expected, .expected_response, .found_response)
    )]
    TypeMismatch {
        /// The exchange name.
        exchange: String,
        /// The type asked for (the request type of a request-response
        /// exchange).
        expected: Box<crate::TypeInfo>,
        /// The type it was created for.
        found: Box<crate::TypeInfo>,
        /// The response type asked for ([`TypeInfo::bytes`](crate::TypeInfo::bytes)
        /// when only one type was given).
        expected_response: Box<crate::TypeInfo>,
        /// The response type it was created for
        /// ([`Exchange::response_type`](crate::Exchange::response_type)).
        found_response: Box<crate::TypeInfo>,
    },
    /// The exchange's table of opening nodes is full.
    #[error("exchange {name:?} is open by too many handles ({max})")]
    TooManyUsers {
        /// The exchange name.
        name: String,
        /// Capacity of the table.
        max: u32,
    },
    /// The exchange segment is unusable.
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

/// Attaching a port to an exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The exchange's pattern has no such role.
    #[error("exchange {exchange:?} is {pattern}, which has no {role} role")]
    WrongPattern {
        /// The exchange name.
        exchange: String,
        /// Its pattern.
        pattern: crate::pattern::Pattern,
        /// The role asked for.
        role: &'static str,
    },
    /// Every port slot is taken.
    #[error("exchange {exchange:?} has no free port ({max} ports)")]
    PortTableFull {
        /// The exchange name.
        exchange: String,
        /// Its `max_ports`.
        max: u32,
    },
    /// The exchange went down (its creator died, or it was removed).
    #[error("exchange {exchange:?} is down")]
    ExchangeDown {
        /// The exchange.
        exchange: String,
    },
    /// A fan-in exchange already has its consumer.
    #[error("exchange {exchange:?} already has a consumer")]
    ConsumerExists {
        /// The exchange name.
        exchange: String,
    },
    /// A worker's prefetch limit of 0 (it could never hold a task).
    #[error("invalid prefetch limit 0: a worker must be able to hold at least one task")]
    InvalidPrefetch,
    /// The subscription pattern is malformed.
    #[error("invalid topic pattern {pattern:?}: {reason}")]
    InvalidTopic {
        /// The pattern given.
        pattern: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The exchange segment is unusable.
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

/// Loaning or sending a payload failed. The payload was not delivered to
/// anyone; nothing was dropped silently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The payload does not fit in one chunk.
    #[error("payload of {len} bytes exceeds the chunk size of {max} bytes")]
    PayloadTooLarge {
        /// Bytes asked for.
        len: usize,
        /// The exchange's chunk size.
        max: usize,
    },
    /// Every chunk of the pool is in use: `chunks` payloads are in flight
    /// (loaned, queued or being read). Released chunks parked in other
    /// ports' caches are emptied into the pool before this is reported (at
    /// most once per 10 ms per process and exchange, and not for a loan made
    /// inside another operation of the same port); retry once receivers
    /// released theirs.
    #[error("chunk pool exhausted ({chunks} chunks all in use)")]
    PoolExhausted {
        /// Pool size.
        chunks: u32,
    },
    /// The receiving queue (or every server's queue, or the client's budget of
    /// outstanding requests) is full; retry after the receiver has caught up.
    #[error("queue full")]
    QueueFull,
    /// A request-response exchange without any server.
    #[error("no server is registered on the exchange")]
    NoServer,
    /// A fan-in exchange without its consumer.
    #[error("no consumer is registered on the exchange")]
    NoConsumer,
    /// The routing key is malformed.
    #[error("invalid routing key {key:?}: {reason}")]
    InvalidKey {
        /// The key given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A loan from another exchange was passed in.
    #[error("the loan belongs to another exchange")]
    ForeignLoan,
    /// The exchange went down (its creator died, or it was removed): open
    /// it again once it is back up (watch it to learn when).
    #[error("the exchange is down")]
    ExchangeDown,
    /// [`Client::answer`](crate::Client::answer) of a sample that is no
    /// question.
    #[error("the sample is not a server's question")]
    NotAQuestion,
    /// A task priority outside `0 .. PRIORITIES`.
    #[error("task priority {priority} out of range (0..=3)")]
    InvalidPriority {
        /// The priority asked for.
        priority: u8,
    },
    /// Shared state is inconsistent.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// The server dropped the request without responding.
    Unanswered,
    /// The server's port closed while the request was queued or held (or
    /// while it streamed its response, or held a dialogue).
    ServerGone,
    /// The server aborted its chunked response
    /// ([`ResponseStream::abort`](crate::ResponseStream::abort), or dropped
    /// it unfinished).
    Aborted,
    /// The client of a dialogue left while the server waited for its
    /// answer (reported to the server).
    ClientGone,
}

impl FailReason {
    /// The reason's code in a failure notice.
    pub(crate) fn code(self) -> u32 {
        match self {
            FailReason::Unanswered => 0,
            FailReason::ServerGone => 1,
            FailReason::Aborted => 2,
            FailReason::ClientGone => 3,
        }
    }

    /// The reason a failure notice's code names.
    pub(crate) fn from_code(code: u32) -> FailReason {
        match code {
            0 => FailReason::Unanswered,
            2 => FailReason::Aborted,
            3 => FailReason::ClientGone,
            _ => FailReason::ServerGone,
        }
    }
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailReason::Unanswered => "the server dropped it without responding",
            FailReason::ServerGone => "the server left before responding",
            FailReason::Aborted => "the server aborted its chunked response",
            FailReason::ClientGone => "the client of the conversation left",
        })
    }
}

/// Receiving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing arrived before the deadline.
    #[error("timed out")]
    Timeout,
    /// The exchange went down (its creator died, or it was removed): open
    /// it again once it is back up (watch it to learn when).
    #[error("the exchange is down")]
    ExchangeDown,
    /// A worker holds its prefetch limit of unacknowledged tasks: ack or
    /// nack one first.
    #[error("the worker holds its prefetch limit of {limit} unacknowledged tasks")]
    PrefetchLimit {
        /// The limit.
        limit: u32,
    },
    /// A request of this client will never be answered.
    #[error("request {tag} failed: {reason}")]
    RequestFailed {
        /// The request's tag.
        tag: u64,
        /// Why.
        reason: FailReason,
    },
    /// A descriptor or chunk read from shared memory is invalid.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// Responding to a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// The requesting client's port is gone; the response was discarded.
    #[error("the requesting client is gone")]
    ClientGone,
    /// Loaning the response chunk failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Waiting on a set of ports failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// Nothing arrived before the deadline.
    #[error("timed out")]
    Timeout,
    /// The ports of one wait set must belong to one node (they share its wait word).
    #[error("ports of different nodes cannot share a wait set")]
    ForeignPort,
    /// An empty wait set was asked to wait without a timeout: nothing could
    /// ever wake it (with a timeout, it sleeps until the deadline).
    #[error("an empty wait set cannot wait without a timeout: nothing could wake it")]
    Empty,
}

/// A payload could not be viewed as the requested `Pod` type.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a payload of {len} bytes cannot be viewed as {type_name}: {reason}")]
#[non_exhaustive]
pub struct PodError {
    /// Payload length.
    pub len: usize,
    /// The type asked for.
    pub type_name: &'static str,
    /// "size differs" or "misaligned".
    pub reason: &'static str,
}

impl PodError {
    pub(crate) fn new<T>(len: usize, e: bytemuck::PodCastError) -> Self {
        PodError {
            len,
            type_name: std::any::type_name::<T>(),
            reason: match e {
                bytemuck::PodCastError::SizeMismatch
                | bytemuck::PodCastError::OutputSliceWouldHaveSlop => "size differs",
                _ => "misaligned",
            },
        }
    }
}

/// Acking or nacking a task failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// This worker does not hold that delivery: it was acked or nacked
    /// already, taken back after its ack timeout (and maybe redelivered), or
    /// belongs to another worker.
    #[error("task {task} is not held by this worker")]
    NotHeld {
        /// The delivery.
        task: crate::layout::TaskId,
    },
    /// The exchange went down.
    #[error("the exchange is down")]
    ExchangeDown,
    /// The exchange's words are inconsistent.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// Sending on a chunked response failed; the stream is over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The client cancelled the stream.
    #[error("the client cancelled the stream")]
    Cancelled,
    /// The client's port closed, or its process died.
    #[error("the client is gone")]
    ClientGone,
    /// The request is a plain one ([`Client::send`](crate::Client::send)):
    /// its client reserved room for one response, not for a stream.
    #[error("the request is not a stream request")]
    NotAStreamRequest,
    /// Every stream slot of the client is taken (it receives
    /// `STREAM_SLOTS` streams at once).
    #[error("the client already receives its maximum of streams")]
    TooManyStreams,
    /// The window stayed full past the deadline of `send_loan_timeout`.
    #[error("timed out waiting for the client to release chunks")]
    Timeout,
    /// Loaning or sending the chunk failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// A value could not be serialized into a chunk, sent, or deserialized out
/// of one (feature `serde`, [`serialized`](crate::serialized)).
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SerialError {
    /// The value's encoding is longer than a chunk: nothing was sent (the
    /// loan, if any, keeps its length; its bytes may be overwritten).
    #[error("the serialized value does not fit in a chunk of {max} bytes")]
    TooLarge {
        /// The exchange's chunk size.
        max: usize,
    },
    /// The value's `Serialize` implementation failed, or uses what postcard
    /// cannot encode (a sequence of unknown length, for one).
    #[error("the value cannot be serialized: {0}")]
    Encode(postcard::Error),
    /// The payload is not an encoding of the type asked for.
    #[error("a payload of {len} bytes is not a serialized {type_name}: {source}")]
    Decode {
        /// The type asked for.
        type_name: &'static str,
        /// Payload length.
        len: usize,
        /// What postcard found wrong.
        source: postcard::Error,
    },
    /// The payload starts with an encoding of the type asked for, but goes
    /// on: it was most likely written as another type.
    #[error("a serialized {type_name} takes {used} bytes of the {len}-byte payload")]
    TrailingBytes {
        /// The type asked for.
        type_name: &'static str,
        /// Payload length.
        len: usize,
        /// Bytes the value's encoding took.
        used: usize,
    },
    /// Loaning or sending the chunk failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Responding to the request failed.
    #[error(transparent)]
    Respond(#[from] RespondError),
}

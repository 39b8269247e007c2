//! [`Error`]: one error for application code, with `From` for every
//! per-operation error (the `error` module) so `?` converts them.

#[cfg(feature = "serde")]
use crate::error::SerialError;
use crate::error::{
    Corrupt, NodeError, OpenError, PodError, PortError, RecvError, RespondError, SegmentError,
    SendError, StreamError, TaskError, WaitError,
};

/// Any error of shmex: one type for application code that calls several
/// operations and returns `Result<_, shmex::Error>`, with `From` for every
/// per-operation error so `?` converts them.
///
/// Its `Display` says which kind of operation failed; the per-operation
/// error (which says what went wrong) is its [`source`](std::error::Error::source).
/// Print the whole chain (as `anyhow`'s `{:#}` or a loop over `source()`
/// does), or match on the variant and its inner error.
///
/// ```
/// use shmex::{Limits, Node, Pattern};
///
/// fn roundtrip(namespace: String) -> Result<Vec<u8>, shmex::Error> {
///     let node = Node::builder("example").namespace(namespace).create()?; // NodeError
///     let ex = node.create_exchange("news", Pattern::PublishSubscribe, Limits::default())?; // OpenError
///     let subscriber = ex.subscriber("#", 0)?; // PortError
///     ex.publisher()?.send("weather", b"sunny")?; // SendError
///     let sample = subscriber.receive()?; // RecvError
///     Ok(sample.to_vec())
/// }
///
/// let bytes = roundtrip(format!("doc-error-{}", std::process::id()))?;
/// assert_eq!(bytes, b"sunny");
///
/// let refused = roundtrip("not a valid name!".into()).unwrap_err();
/// assert!(matches!(refused, shmex::Error::Node(_)));
/// assert!(std::error::Error::source(&refused).is_some());
/// # Ok::<(), shmex::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Joining a namespace failed.
    #[error("joining the namespace failed")]
    Node(#[source] NodeError),
    /// Creating or opening an exchange failed.
    #[error("creating or opening the exchange failed")]
    Open(#[source] OpenError),
    /// Attaching a port failed.
    #[error("attaching the port failed")]
    Port(#[source] PortError),
    /// Loaning or sending a payload failed.
    #[error("sending failed")]
    Send(#[source] SendError),
    /// Receiving failed.
    #[error("receiving failed")]
    Recv(#[source] RecvError),
    /// Responding to a request failed.
    #[error("responding failed")]
    Respond(#[source] RespondError),
    /// Waiting on a set of ports failed.
    #[error("waiting failed")]
    Wait(#[source] WaitError),
    /// Acking or nacking a task failed.
    #[error("acknowledging the task failed")]
    Task(#[source] TaskError),
    /// Sending on a chunked response failed.
    #[error("sending on the response stream failed")]
    Stream(#[source] StreamError),
    /// A shared-memory object could not be created, opened or trusted.
    #[error("the shared-memory segment is unusable")]
    Segment(#[source] SegmentError),
    /// A payload could not be viewed as the requested type.
    #[error("the payload has not the requested type")]
    Pod(#[source] PodError),
    /// A value could not be serialized into a chunk or out of one (feature
    /// `serde`).
    #[cfg(feature = "serde")]
    #[error("the serialized payload could not be written, sent or read")]
    Serial(#[source] SerialError),
    /// Shared state is inconsistent.
    #[error("shared state is inconsistent")]
    Corrupt(#[source] Corrupt),
}

macro_rules! umbrella_from {
    ($($inner:ident => $variant:ident),* $(,)?) => {$(
        impl From<$inner> for Error {
            fn from(e: $inner) -> Self {
                Error::$variant(e)
            }
        }
    )*};
}

umbrella_from!(
    NodeError => Node,
    OpenError => Open,
    PortError => Port,
    SendError => Send,
    RecvError => Recv,
    RespondError => Respond,
    WaitError => Wait,
    TaskError => Task,
    StreamError => Stream,
    SegmentError => Segment,
    PodError => Pod,
    Corrupt => Corrupt,
);

#[cfg(feature = "serde")]
umbrella_from!(SerialError => Serial);

/// `Result` with [`shmex::Error`](Error) as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

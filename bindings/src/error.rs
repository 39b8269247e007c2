//! Status codes, the per-thread last error message, and `ffi`, the wrapper
//! every extern fn runs its body in.
//!
//! Each Rust error variant maps to one named code, so a C caller can act on
//! it the way a Rust caller matches the variant; the variant's full text
//! (names, sizes, paths) goes to `shmex_last_error_message()`.

use shmex_rs::{
    FailReason, NodeError, OpenError, PortError, RecvError, RespondError, SegmentError, SendError,
    StreamError, TaskError, WaitError,
};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Success.
pub const SHMEX_OK: c_int = 0;
/// A required pointer argument (handle, out-parameter, string, data) is NULL.
pub const SHMEX_E_NULL: c_int = -1;
/// The handle was released already, or is not a handle of the expected kind.
pub const SHMEX_E_STALE_HANDLE: c_int = -2;
/// An argument is out of range or malformed: a name, a routing key or topic
/// pattern, limits, a priority, a length, a string that is not UTF-8, a
/// loan of another port, a sample that is not a question.
pub const SHMEX_E_INVALID_ARGUMENT: c_int = -3;
/// The object is still in use: a port with live samples, loans, requests,
/// streams or deliveries, or one that belongs to a wait set. Release those
/// first.
pub const SHMEX_E_BUSY: c_int = -4;
/// A panic inside the library was caught at the ABI boundary (a bug: the
/// message says where).
pub const SHMEX_E_PANIC: c_int = -5;
/// No live exchange of that name exists.
pub const SHMEX_E_NOT_FOUND: c_int = -10;
/// A live exchange of that name exists already.
pub const SHMEX_E_ALREADY_EXISTS: c_int = -11;
/// The existing exchange has another pattern or other limits than asked for.
pub const SHMEX_E_MISMATCH: c_int = -12;
/// The exchange's pattern has no such role (e.g. a subscriber on a
/// request-response exchange).
pub const SHMEX_E_WRONG_PATTERN: c_int = -13;
/// Every node slot of the namespace is taken.
pub const SHMEX_E_REGISTRY_FULL: c_int = -14;
/// The exchange is open by too many handles.
pub const SHMEX_E_TOO_MANY_USERS: c_int = -15;
/// Every port slot of the exchange is taken (`max_ports`).
pub const SHMEX_E_PORT_TABLE_FULL: c_int = -16;
/// The fan-in exchange already has its consumer.
pub const SHMEX_E_CONSUMER_EXISTS: c_int = -17;
/// The exchange went down (its creator died, or it was removed): free the
/// port and the exchange handle, and open it again once it is back up.
pub const SHMEX_E_EXCHANGE_DOWN: c_int = -18;
/// The receiving queue is full (or the client has `queue_depth` requests
/// outstanding): retry once the receiver caught up.
pub const SHMEX_E_QUEUE_FULL: c_int = -20;
/// Every chunk of the exchange's pool is in use.
pub const SHMEX_E_POOL_EXHAUSTED: c_int = -21;
/// The payload is larger than the exchange's chunk size.
pub const SHMEX_E_PAYLOAD_TOO_LARGE: c_int = -22;
/// No server is registered on the request-response exchange (or the server
/// that asked a question is gone).
pub const SHMEX_E_NO_SERVER: c_int = -23;
/// The fan-in exchange has no consumer.
pub const SHMEX_E_NO_CONSUMER: c_int = -24;
/// Nothing arrived before the deadline.
pub const SHMEX_E_TIMEOUT: c_int = -30;
/// A request will never be answered: the `shmex_failure` out-parameter says
/// which (its tag) and why (`SHMEX_FAIL_*`).
pub const SHMEX_E_REQUEST_FAILED: c_int = -31;
/// The worker holds its prefetch limit of unacknowledged tasks.
pub const SHMEX_E_PREFETCH_LIMIT: c_int = -32;
/// The worker does not hold that task (acked or nacked already, taken back
/// after its ack timeout, or another worker's).
pub const SHMEX_E_NOT_HELD: c_int = -33;
/// The client cancelled the chunked response.
pub const SHMEX_E_CANCELLED: c_int = -34;
/// The requesting client is gone.
pub const SHMEX_E_CLIENT_GONE: c_int = -35;
/// The client already receives its maximum of chunked responses.
pub const SHMEX_E_TOO_MANY_STREAMS: c_int = -36;
/// The ports of one wait set must belong to one node.
pub const SHMEX_E_FOREIGN_PORT: c_int = -37;
/// A chunked response to a plain request: its client reserved room for one
/// response only (`shmex_client_request_stream` asks for a stream).
pub const SHMEX_E_NOT_A_STREAM_REQUEST: c_int = -38;
/// A segment was written by another version (or build) of shmex.
pub const SHMEX_E_VERSION_MISMATCH: c_int = -40;
/// Shared state is inconsistent, or a file is not a shmex segment.
pub const SHMEX_E_CORRUPT: c_int = -41;
/// The file system holding the segments has no room for this one.
pub const SHMEX_E_NO_SPACE: c_int = -42;
/// A segment belongs to another user.
pub const SHMEX_E_PERMISSION: c_int = -43;
/// A system call failed (the message has the path and the system's error).
pub const SHMEX_E_IO: c_int = -44;
/// The namespace's control lock stayed held past its wait (its holder is
/// stopped or hung); retry later.
pub const SHMEX_E_LOCK_TIMEOUT: c_int = -45;
/// A file or directory of the namespace is not one shmex may trust: a
/// symbolic link, FIFO, socket or device node where a segment should be, a
/// file with several links or holes, a directory with the wrong mode or
/// group. Nothing was mapped; the message names the path.
pub const SHMEX_E_UNTRUSTED: c_int = -46;
/// An error this version of the binding has no code of its own for (the
/// Rust error enums are `#[non_exhaustive]`); the message says what it is.
pub const SHMEX_E_OTHER: c_int = -99;

/// Why a request failed (`shmex_failure.reason`): the server dropped it
/// without responding.
pub const SHMEX_FAIL_UNANSWERED: u32 = 0;
/// The server's port closed, or its process died, before it responded.
pub const SHMEX_FAIL_SERVER_GONE: u32 = 1;
/// The server aborted its chunked response.
pub const SHMEX_FAIL_ABORTED: u32 = 2;
/// The client of a dialogue left while the server waited for its answer
/// (reported to the server).
pub const SHMEX_FAIL_CLIENT_GONE: u32 = 3;

/// Which request failed and why; filled when a receive returns
/// `SHMEX_E_REQUEST_FAILED`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmex_failure {
    /// The request's tag (the conversation's, for a dialogue).
    pub tag: u64,
    /// `SHMEX_FAIL_*`.
    pub reason: u32,
}

impl shmex_failure {
    pub(crate) fn new(tag: u64, reason: FailReason) -> Self {
        let reason = match reason {
            FailReason::Unanswered => SHMEX_FAIL_UNANSWERED,
            FailReason::ServerGone => SHMEX_FAIL_SERVER_GONE,
            FailReason::Aborted => SHMEX_FAIL_ABORTED,
            FailReason::ClientGone => SHMEX_FAIL_CLIENT_GONE,
            // A reason newer than this binding: the request is over all the
            // same, as when its server left.
            _ => SHMEX_FAIL_SERVER_GONE,
        };
        shmex_failure { tag, reason }
    }
}

/// A failed call: its status code and the message for
/// `shmex_last_error_message()`.
#[derive(Debug)]
pub struct Error {
    /// A negative `SHMEX_E_*` code.
    pub code: c_int,
    /// The full text.
    pub message: String,
    /// Set for `SHMEX_E_REQUEST_FAILED`.
    pub failure: Option<shmex_failure>,
}

/// What every helper returns.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: c_int, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            failure: None,
        }
    }

    /// `SHMEX_E_NULL` for the argument `what`.
    pub fn null(what: &str) -> Error {
        Error::new(SHMEX_E_NULL, format!("{what} is NULL"))
    }

    /// `SHMEX_E_INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(SHMEX_E_INVALID_ARGUMENT, message)
    }
}

fn segment(e: &SegmentError) -> c_int {
    match e {
        SegmentError::Io { .. } => SHMEX_E_IO,
        SegmentError::ForeignOwner { .. } => SHMEX_E_PERMISSION,
        SegmentError::VersionMismatch { .. } | SegmentError::LayoutMismatch { .. } => {
            SHMEX_E_VERSION_MISMATCH
        }
        SegmentError::NotShmex { .. }
        | SegmentError::SizeMismatch { .. }
        | SegmentError::Corrupt { .. } => SHMEX_E_CORRUPT,
        SegmentError::NoSpace { .. } => SHMEX_E_NO_SPACE,
        SegmentError::LockTimeout { .. } => SHMEX_E_LOCK_TIMEOUT,
        SegmentError::Untrusted { .. } => SHMEX_E_UNTRUSTED,
        _ => SHMEX_E_OTHER,
    }
}

/// Maps each Rust error type to its codes: `$t`, then `variant pattern =>
/// code` arms.
macro_rules! map_errors {
    ($($t:ty => |$e:ident| $code:expr;)*) => {$(
        impl From<$t> for Error {
            fn from($e: $t) -> Error {
                let code = $code;
                Error::new(code, $e.to_string())
            }
        }
    )*};
}

map_errors! {
    SegmentError => |e| segment(&e);
    NodeError => |e| match &e {
        NodeError::InvalidName { .. }
        | NodeError::InvalidEnv { .. }
        | NodeError::UnknownGroup { .. } => SHMEX_E_INVALID_ARGUMENT,
        NodeError::RegistryFull { .. } => SHMEX_E_REGISTRY_FULL,
        NodeError::Segment(s) => segment(s),
        _ => SHMEX_E_OTHER,
    };
    OpenError => |e| match &e {
        OpenError::InvalidName { .. } | OpenError::InvalidLimits { .. } => SHMEX_E_INVALID_ARGUMENT,
        OpenError::NotFound { .. } => SHMEX_E_NOT_FOUND,
        OpenError::AlreadyExists { .. } => SHMEX_E_ALREADY_EXISTS,
        OpenError::Mismatch { .. } | OpenError::TypeMismatch { .. } => SHMEX_E_MISMATCH,
        OpenError::TooManyUsers { .. } => SHMEX_E_TOO_MANY_USERS,
        OpenError::Segment(s) => segment(s),
        _ => SHMEX_E_OTHER,
    };
    PortError => |e| match &e {
        PortError::WrongPattern { .. } => SHMEX_E_WRONG_PATTERN,
        PortError::PortTableFull { .. } => SHMEX_E_PORT_TABLE_FULL,
        PortError::ExchangeDown { .. } => SHMEX_E_EXCHANGE_DOWN,
        PortError::ConsumerExists { .. } => SHMEX_E_CONSUMER_EXISTS,
        PortError::InvalidTopic { .. } | PortError::InvalidPrefetch => SHMEX_E_INVALID_ARGUMENT,
        PortError::Segment(s) => segment(s),
        _ => SHMEX_E_OTHER,
    };
    SendError => |e| send_code(&e);
    RespondError => |e| match &e {
        RespondError::ClientGone => SHMEX_E_CLIENT_GONE,
        RespondError::Send(s) => send_code(s),
        _ => SHMEX_E_OTHER,
    };
    StreamError => |e| match &e {
        StreamError::Cancelled => SHMEX_E_CANCELLED,
        StreamError::ClientGone => SHMEX_E_CLIENT_GONE,
        StreamError::TooManyStreams => SHMEX_E_TOO_MANY_STREAMS,
        StreamError::Timeout => SHMEX_E_TIMEOUT,
        StreamError::NotAStreamRequest => SHMEX_E_NOT_A_STREAM_REQUEST,
        StreamError::Send(s) => send_code(s),
        _ => SHMEX_E_OTHER,
    };
    TaskError => |e| match &e {
        TaskError::NotHeld { .. } => SHMEX_E_NOT_HELD,
        TaskError::ExchangeDown => SHMEX_E_EXCHANGE_DOWN,
        TaskError::Corrupt(_) => SHMEX_E_CORRUPT,
        _ => SHMEX_E_OTHER,
    };
    WaitError => |e| match &e {
        WaitError::Timeout => SHMEX_E_TIMEOUT,
        WaitError::ForeignPort => SHMEX_E_FOREIGN_PORT,
        WaitError::Empty => SHMEX_E_INVALID_ARGUMENT,
        _ => SHMEX_E_OTHER,
    };
}

fn send_code(e: &SendError) -> c_int {
    match e {
        SendError::PayloadTooLarge { .. } => SHMEX_E_PAYLOAD_TOO_LARGE,
        SendError::PoolExhausted { .. } => SHMEX_E_POOL_EXHAUSTED,
        SendError::QueueFull => SHMEX_E_QUEUE_FULL,
        SendError::NoServer => SHMEX_E_NO_SERVER,
        SendError::NoConsumer => SHMEX_E_NO_CONSUMER,
        SendError::InvalidKey { .. }
        | SendError::ForeignLoan
        | SendError::NotAQuestion
        | SendError::InvalidPriority { .. } => SHMEX_E_INVALID_ARGUMENT,
        SendError::ExchangeDown => SHMEX_E_EXCHANGE_DOWN,
        SendError::Corrupt(_) => SHMEX_E_CORRUPT,
        _ => SHMEX_E_OTHER,
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Error {
        let mut error = Error::new(SHMEX_E_CORRUPT, e.to_string());
        match e {
            RecvError::Timeout => error.code = SHMEX_E_TIMEOUT,
            RecvError::ExchangeDown => error.code = SHMEX_E_EXCHANGE_DOWN,
            RecvError::PrefetchLimit { .. } => error.code = SHMEX_E_PREFETCH_LIMIT,
            RecvError::RequestFailed { tag, reason } => {
                error.code = SHMEX_E_REQUEST_FAILED;
                error.failure = Some(shmex_failure::new(tag, reason));
            }
            RecvError::Corrupt(_) => {}
            _ => error.code = SHMEX_E_OTHER,
        }
        error
    }
}

thread_local! {
    /// The message of this thread's last failed call.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = message);
}

/// Runs an extern fn's body: `Ok` is `SHMEX_OK`; an error records its
/// message for this thread and returns its code; a panic is caught here (it
/// must not unwind into C) and becomes `SHMEX_E_PANIC`.
pub(crate) fn ffi(body: impl FnOnce() -> Result<()>) -> c_int {
    // AssertUnwindSafe: after a panic the only shared state touched is the
    // handle tables and family locks, whose poisoning we deliberately
    // ignore: each entry is either fully inserted or not, and the Rust
    // library's own types restore their RefCell flags while unwinding.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SHMEX_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.code
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("panic inside shmex: {what}"));
            SHMEX_E_PANIC
        }
    }
}

/// The full message of the last call on this thread that returned an error
/// (names, sizes, paths, the system's error), or "" when none failed yet.
/// The string stays valid until the next failing call on the same thread;
/// successful calls leave it unchanged.
#[no_mangle]
pub extern "C" fn shmex_last_error_message() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|l| l.borrow().as_ptr())).unwrap_or(c"".as_ptr())
}

/// A short static description of a status code, e.g. "queue full" for
/// `SHMEX_E_QUEUE_FULL`; "unknown status code" for other values. Never NULL.
#[no_mangle]
pub extern "C" fn shmex_error_string(code: c_int) -> *const c_char {
    error_str(code).as_ptr()
}

fn error_str(code: c_int) -> &'static CStr {
    match code {
        SHMEX_OK => c"ok",
        SHMEX_E_NULL => c"a required pointer argument is NULL",
        SHMEX_E_STALE_HANDLE => c"stale handle (released, or of another kind)",
        SHMEX_E_INVALID_ARGUMENT => c"invalid argument",
        SHMEX_E_BUSY => c"still in use (live samples, loans, requests or a wait set)",
        SHMEX_E_PANIC => c"internal panic caught at the C boundary",
        SHMEX_E_NOT_FOUND => c"exchange not found",
        SHMEX_E_ALREADY_EXISTS => c"exchange already exists",
        SHMEX_E_MISMATCH => c"exchange exists with another pattern or other limits",
        SHMEX_E_WRONG_PATTERN => c"the exchange's pattern has no such role",
        SHMEX_E_REGISTRY_FULL => c"namespace registry full",
        SHMEX_E_TOO_MANY_USERS => c"exchange open by too many handles",
        SHMEX_E_PORT_TABLE_FULL => c"exchange port table full",
        SHMEX_E_CONSUMER_EXISTS => c"exchange already has a consumer",
        SHMEX_E_EXCHANGE_DOWN => c"exchange down",
        SHMEX_E_QUEUE_FULL => c"queue full",
        SHMEX_E_POOL_EXHAUSTED => c"chunk pool exhausted",
        SHMEX_E_PAYLOAD_TOO_LARGE => c"payload larger than the chunk size",
        SHMEX_E_NO_SERVER => c"no server",
        SHMEX_E_NO_CONSUMER => c"no consumer",
        SHMEX_E_TIMEOUT => c"timed out",
        SHMEX_E_REQUEST_FAILED => c"request failed",
        SHMEX_E_PREFETCH_LIMIT => c"worker at its prefetch limit",
        SHMEX_E_NOT_HELD => c"task not held by this worker",
        SHMEX_E_CANCELLED => c"stream cancelled by the client",
        SHMEX_E_CLIENT_GONE => c"client gone",
        SHMEX_E_TOO_MANY_STREAMS => c"client receives too many streams",
        SHMEX_E_FOREIGN_PORT => c"ports of different nodes in one wait set",
        SHMEX_E_NOT_A_STREAM_REQUEST => c"not a stream request",
        SHMEX_E_VERSION_MISMATCH => c"segment of another shmex version",
        SHMEX_E_CORRUPT => c"corrupt shared state",
        SHMEX_E_NO_SPACE => c"no space for the segment",
        SHMEX_E_PERMISSION => c"segment owned by another user",
        SHMEX_E_IO => c"system call failed",
        SHMEX_E_LOCK_TIMEOUT => c"namespace control lock held too long",
        SHMEX_E_UNTRUSTED => c"file or directory refused as untrusted",
        SHMEX_E_OTHER => c"error without a code of its own (see the message)",
        _ => c"unknown status code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_string() {
        let codes = [
            SHMEX_OK,
            SHMEX_E_NULL,
            SHMEX_E_STALE_HANDLE,
            SHMEX_E_INVALID_ARGUMENT,
            SHMEX_E_BUSY,
            SHMEX_E_PANIC,
            SHMEX_E_NOT_FOUND,
            SHMEX_E_ALREADY_EXISTS,
            SHMEX_E_MISMATCH,
            SHMEX_E_WRONG_PATTERN,
            SHMEX_E_REGISTRY_FULL,
            SHMEX_E_TOO_MANY_USERS,
            SHMEX_E_PORT_TABLE_FULL,
            SHMEX_E_CONSUMER_EXISTS,
            SHMEX_E_EXCHANGE_DOWN,
            SHMEX_E_QUEUE_FULL,
            SHMEX_E_POOL_EXHAUSTED,
            SHMEX_E_PAYLOAD_TOO_LARGE,
            SHMEX_E_NO_SERVER,
            SHMEX_E_NO_CONSUMER,
            SHMEX_E_TIMEOUT,
            SHMEX_E_REQUEST_FAILED,
            SHMEX_E_PREFETCH_LIMIT,
            SHMEX_E_NOT_HELD,
            SHMEX_E_CANCELLED,
            SHMEX_E_CLIENT_GONE,
            SHMEX_E_TOO_MANY_STREAMS,
            SHMEX_E_FOREIGN_PORT,
            SHMEX_E_NOT_A_STREAM_REQUEST,
            SHMEX_E_VERSION_MISMATCH,
            SHMEX_E_CORRUPT,
            SHMEX_E_NO_SPACE,
            SHMEX_E_PERMISSION,
            SHMEX_E_IO,
            SHMEX_E_LOCK_TIMEOUT,
            SHMEX_E_UNTRUSTED,
            SHMEX_E_OTHER,
        ];
        let mut seen = std::collections::HashSet::new();
        for c in codes {
            assert!(seen.insert(error_str(c)), "code {c} shares its string");
            assert_ne!(error_str(c), c"unknown status code");
        }
        assert_eq!(error_str(1), c"unknown status code");
    }

    #[test]
    fn panics_become_a_status() {
        let code = ffi(|| panic!("boom"));
        assert_eq!(code, SHMEX_E_PANIC);
        // SAFETY: the function returns a NUL-terminated thread-local string.
        let msg = unsafe { CStr::from_ptr(shmex_last_error_message()) };
        assert!(msg.to_str().unwrap().contains("boom"));
    }
}

//! Chunked responses, server side: a stream of parts pushed straight into
//! the requesting client's inbox under the window the client asked for.
//!
//! A stream belongs to its server (same thread rule); end or abort it
//! before freeing the server.

use crate::args::{self, set_opt, Out};
use crate::error::{ffi, Result};
use crate::handles::{self, Child, Kind, Locked};
use crate::sample::{expect_loan, loan_out, shmex_loan};
use shmex_rs::ResponseStream;
use std::ffi::{c_int, c_void};

/// A chunked response being sent. End it with `shmex_stream_end` or
/// `shmex_stream_abort` (both consume it). It can join a wait set
/// (`shmex_waitset_add`), which reports it ready when a send would not
/// wait.
pub struct shmex_stream {
    _private: [u8; 0],
}

fn with_stream<R>(
    stream: *mut shmex_stream,
    f: impl FnOnce(&mut ResponseStream<'static>, &mut Locked) -> Result<R>,
) -> Result<R> {
    handles::with_child(handles::of(stream), Kind::Stream, |c, locked| match c {
        Child::Stream(s) => f(s, locked),
        _ => unreachable!("a stream handle names a stream"),
    })
}

/// Loans a chunk of `len` bytes for the next part, to write in place at
/// `*data` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmex_stream_loan(
    stream: *mut shmex_stream,
    len: usize,
    loan: *mut *mut shmex_loan,
    data: *mut *mut c_void,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(loan, "loan") }?;
        with_stream(stream, |s, locked| {
            let l = s.loan(len)?;
            // SAFETY: NULL or writable, by the header's contract.
            unsafe { loan_out(locked, l, out, data) }
        })
    })
}

/// Sends a loaned chunk (of this stream or its server) as the next part,
/// waiting at most `timeout_ms` (`SHMEX_FOREVER`: no limit) while the
/// window is full; the loan is consumed whatever the outcome.
/// `SHMEX_E_TIMEOUT` leaves the
/// stream usable; `SHMEX_E_CANCELLED` (the client cancelled) and
/// `SHMEX_E_CLIENT_GONE` end it (abort it then).
#[no_mangle]
pub extern "C" fn shmex_stream_send_loan(
    stream: *mut shmex_stream,
    loan: *mut shmex_loan,
    timeout_ms: i64,
) -> c_int {
    ffi(|| {
        handles::consuming_loan(handles::of(loan), || {
            with_stream(stream, |s, locked| {
                let l = expect_loan(locked.claim(handles::of(loan), Kind::Loan)?);
                match args::timeout(timeout_ms) {
                    Some(t) => Ok(s.send_loan_timeout(l, t)?),
                    None => Ok(s.send_loan(l)?),
                }
            })
        })
    })
}

/// Sends a copy of the payload as the next part, waiting while the window
/// is full.
#[no_mangle]
pub unsafe extern "C" fn shmex_stream_send(
    stream: *mut shmex_stream,
    data: *const c_void,
    len: usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or `len` readable bytes, by the header's contract.
        let payload = unsafe { args::bytes(data, len) }?;
        with_stream(stream, |s, _| Ok(s.send(payload)?))
    })
}

/// `*ready` is 1 when a send would not wait (the window has room, or the
/// stream is over), else 0; `*sent` (may be NULL) counts the parts sent.
#[no_mangle]
pub unsafe extern "C" fn shmex_stream_status(
    stream: *mut shmex_stream,
    ready: *mut c_int,
    sent: *mut u64,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let ready_out = unsafe { Out::new(ready, "ready") }?;
        let sent_out = unsafe { Out::optional(sent) };
        with_stream(stream, |s, _| {
            ready_out.set(c_int::from(s.is_ready()));
            set_opt(sent_out, s.sent());
            Ok(())
        })
    })
}

fn expect_stream(c: Child) -> ResponseStream<'static> {
    match c {
        Child::Stream(s) => s,
        _ => unreachable!("a stream handle names a stream"),
    }
}

/// Ends the stream: the client receives `SHMEX_SAMPLE_STREAM_END` after the
/// last part. Consumes the stream. `SHMEX_E_CANCELLED`, `SHMEX_E_CLIENT_GONE`
/// when it was over already; `SHMEX_E_BUSY` (not consumed) while it belongs
/// to a wait set.
#[no_mangle]
pub extern "C" fn shmex_stream_end(stream: *mut shmex_stream) -> c_int {
    ffi(|| {
        handles::consume([(handles::of(stream), Kind::Stream)], |[s], _| {
            Ok(expect_stream(s).end()?)
        })
    })
}

/// Aborts the stream: the client receives `SHMEX_E_REQUEST_FAILED` with
/// `SHMEX_FAIL_ABORTED` after the parts already sent. Consumes the stream;
/// `SHMEX_E_BUSY` (not consumed) while it belongs to a wait set.
#[no_mangle]
pub extern "C" fn shmex_stream_abort(stream: *mut shmex_stream) -> c_int {
    ffi(|| {
        handles::consume([(handles::of(stream), Kind::Stream)], |[s], _| {
            expect_stream(s).abort();
            Ok(())
        })
    })
}

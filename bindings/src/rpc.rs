//! Request-response: clients, servers and the requests servers hold
//! (including dialogues: a server's question, the client's answer).
//!
//! A client or server is single-threaded: one thread at a time uses it and
//! what came from it (samples, loans, requests, streams). Calls from other
//! threads wait for the call in progress (a blocking receive included).

use crate::args::{self, set_opt, Out};
use crate::error::{ffi, shmex_failure, Error, Result};
use crate::handles::{self, Child, Kind, Locked, Port};
use crate::sample::{
    data_ptr, expect_loan, port_loan, shmex_loan, shmex_sample, shmex_sample_info, SampleOut,
};
use crate::stream::shmex_stream;
use shmex_rs::{Client, RecvError, Request, Server};
use std::ffi::{c_int, c_void};

/// The requesting side of a request-response exchange. Single-threaded.
/// Free with `shmex_client_free` once its samples and loans are released.
pub struct shmex_client {
    _private: [u8; 0],
}

/// The answering side of a request-response exchange. Single-threaded.
/// Free with `shmex_server_free` once its requests, streams and loans are
/// released.
pub struct shmex_server {
    _private: [u8; 0],
}

/// A request held by a server: answer it once (`shmex_request_respond*`,
/// `shmex_request_ask*`, `shmex_request_respond_stream`), which consumes the
/// handle, or release it unanswered (the client is told).
pub struct shmex_request {
    _private: [u8; 0],
}

fn client_of(locked: &Locked) -> &'static Client {
    match locked.port() {
        Port::Client(c) => c,
        _ => unreachable!("a client handle names a client"),
    }
}

fn server_of(locked: &Locked) -> &'static Server {
    match locked.port() {
        Port::Server(s) => s,
        _ => unreachable!("a server handle names a server"),
    }
}

/// Writes the failure out-parameter of a receive error.
pub(crate) fn with_failure(e: RecvError, failure: Option<Out<shmex_failure>>) -> Error {
    let e = Error::from(e);
    if let Some(f) = e.failure {
        set_opt(failure, f);
    }
    e
}

/// Attaches a client to a request-response exchange.
#[no_mangle]
pub unsafe extern "C" fn shmex_client_create(
    exchange: *mut crate::node::shmex_exchange,
    client: *mut *mut shmex_client,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(client, "client") }?;
        let c = handles::exchange(handles::of(exchange))?.client()?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Client,
            Port::Client(c),
        )?));
        Ok(())
    })
}

/// Detaches the client. `SHMEX_E_BUSY` while it has live samples or loans.
#[no_mangle]
pub extern "C" fn shmex_client_free(client: *mut shmex_client) -> c_int {
    ffi(|| handles::release_port(handles::of(client), Kind::Client))
}

/// Loans a chunk of `len` bytes for a request (or an answer), to write in
/// place at `*data` (may be NULL: see `shmex_loan_get`).
#[no_mangle]
pub unsafe extern "C" fn shmex_client_loan(
    client: *mut shmex_client,
    len: usize,
    loan: *mut *mut shmex_loan,
    data: *mut *mut c_void,
) -> c_int {
    // SAFETY: `loan` and `data` NULL or writable, by the header's contract.
    ffi(|| unsafe {
        port_loan(handles::of(client), Kind::Client, loan, data, |locked| {
            Ok(client_of(locked).loan(len)?)
        })
    })
}

/// Sends a copy of `len` bytes at `data` as request `tag`. Errors:
/// `SHMEX_E_NO_SERVER`, `SHMEX_E_QUEUE_FULL` (every server's inbox is full,
/// or the client has `queue_depth` requests outstanding), never a silent drop.
#[no_mangle]
pub unsafe extern "C" fn shmex_client_send(
    client: *mut shmex_client,
    tag: u64,
    data: *const c_void,
    len: usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or `len` readable bytes, by the header's contract.
        let payload = unsafe { args::bytes(data, len) }?;
        handles::with_port(handles::of(client), Kind::Client, |locked| {
            Ok(client_of(locked).send(tag, payload)?)
        })
    })
}

/// Sends a loaned chunk as request `tag` (zero-copy). The loan is consumed,
/// whatever the outcome (on error its chunk goes back to the pool).
#[no_mangle]
pub extern "C" fn shmex_client_send_loan(
    client: *mut shmex_client,
    tag: u64,
    loan: *mut shmex_loan,
) -> c_int {
    ffi(|| {
        handles::consuming_loan(handles::of(loan), || {
            handles::with_port(handles::of(client), Kind::Client, |locked| {
                let l = expect_loan(locked.claim(handles::of(loan), Kind::Loan)?);
                Ok(client_of(locked).send_loan(tag, l)?)
            })
        })
    })
}

/// Sends a copy of the payload as request `tag`, welcoming a chunked
/// response of at most `window` unreleased chunks at a time (1..=32767).
/// The chunks come out of the client's receive in order
/// (`SHMEX_SAMPLE_STREAM_CHUNK`), then `SHMEX_SAMPLE_STREAM_END`, or
/// `SHMEX_E_REQUEST_FAILED` when the server aborts or dies. The request
/// reserves `window + 1` inbox slots (`SHMEX_E_QUEUE_FULL` when they are not
/// free).
#[no_mangle]
pub unsafe extern "C" fn shmex_client_request_stream(
    client: *mut shmex_client,
    tag: u64,
    data: *const c_void,
    len: usize,
    window: u32,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or `len` readable bytes, by the header's contract.
        let payload = unsafe { args::bytes(data, len) }?;
        handles::with_port(handles::of(client), Kind::Client, |locked| {
            Ok(client_of(locked).request_stream(tag, payload, window)?)
        })
    })
}

/// Cancels the chunked response to request `tag`: the server's next send
/// fails with `SHMEX_E_CANCELLED`; chunks already queued are released
/// unread, and the stream ends without an event. `*cancelled` (may be NULL)
/// is 1, or 0 when no stream of that tag was open.
#[no_mangle]
pub unsafe extern "C" fn shmex_client_cancel(
    client: *mut shmex_client,
    tag: u64,
    cancelled: *mut c_int,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::optional(cancelled) };
        handles::with_port(handles::of(client), Kind::Client, |locked| {
            set_opt(out, c_int::from(client_of(locked).cancel(tag)));
            Ok(())
        })
    })
}

/// Answers a server's question (a sample of kind `SHMEX_SAMPLE_QUESTION`
/// received by this client) with a copy of the payload, under the
/// question's tag. The question stays valid (release it as usual).
/// `SHMEX_E_NO_SERVER` when the server that asked is gone.
#[no_mangle]
pub unsafe extern "C" fn shmex_client_answer(
    client: *mut shmex_client,
    question: *mut shmex_sample,
    data: *const c_void,
    len: usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or `len` readable bytes, by the header's contract.
        let payload = unsafe { args::bytes(data, len) }?;
        answer(client, question, |c, q, _| Ok(c.answer(q, payload)?))
    })
}

/// Answers a server's question with a loaned chunk (zero-copy). The loan is
/// consumed whatever the outcome; the question stays valid.
#[no_mangle]
pub extern "C" fn shmex_client_answer_loan(
    client: *mut shmex_client,
    question: *mut shmex_sample,
    loan: *mut shmex_loan,
) -> c_int {
    ffi(|| {
        handles::consuming_loan(handles::of(loan), || {
            answer(client, question, |c, q, locked| {
                let l = expect_loan(locked.claim(handles::of(loan), Kind::Loan)?);
                Ok(c.answer_loan(q, l)?)
            })
        })
    })
}

/// Runs `f` with the client and its question, both under the client's lock.
fn answer(
    client: *mut shmex_client,
    question: *mut shmex_sample,
    f: impl FnOnce(&Client, &shmex_rs::Sample<'static>, &mut Locked) -> Result<()>,
) -> Result<()> {
    handles::with_port(handles::of(client), Kind::Client, |locked| {
        let c = client_of(locked);
        locked.with_child(handles::of(question), Kind::Sample, |q, locked| match q {
            Child::Sample(q, _) => f(c, q, locked),
            _ => unreachable!("a sample handle names a sample"),
        })
    })
}

fn client_receive(
    client: *mut shmex_client,
    timeout: Option<Option<std::time::Duration>>,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
    failure: *mut shmex_failure,
) -> Result<()> {
    // SAFETY: NULL or writable, by the header's contract.
    let out = unsafe { SampleOut::new(sample, info) }?;
    let failure = unsafe { Out::optional(failure) };
    handles::with_port(handles::of(client), Kind::Client, |locked| {
        let c = client_of(locked);
        let got = match timeout {
            None => c.try_receive(),
            Some(None) => c.receive().map(Some),
            Some(Some(t)) => c.receive_timeout(t).map(Some),
        };
        let got = got.map_err(|e| with_failure(e, failure))?;
        out.set(locked, got)
    })
}

/// Returns the next response if one is there (never blocks): `*sample` is
/// the response, or NULL when none came. `*info` (may be NULL) describes
/// it. A request that will never be answered is `SHMEX_E_REQUEST_FAILED`,
/// with its tag and reason in `*failure` (may be NULL). A client that polls
/// calls `shmex_client_check_servers` now and then to learn of dead servers.
#[no_mangle]
pub unsafe extern "C" fn shmex_client_try_receive(
    client: *mut shmex_client,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
    failure: *mut shmex_failure,
) -> c_int {
    ffi(|| client_receive(client, None, sample, info, failure))
}

/// Blocks until a response arrives, at most `timeout_ms` milliseconds
/// (`SHMEX_FOREVER`: no limit; `SHMEX_E_TIMEOUT` after). Otherwise as
/// `shmex_client_try_receive`; while it waits it checks every 100 ms that
/// the servers holding its requests are alive.
#[no_mangle]
pub unsafe extern "C" fn shmex_client_receive(
    client: *mut shmex_client,
    timeout_ms: i64,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
    failure: *mut shmex_failure,
) -> c_int {
    ffi(|| {
        client_receive(
            client,
            Some(args::timeout(timeout_ms)),
            sample,
            info,
            failure,
        )
    })
}

/// Checks that the processes of the servers holding this client's requests
/// are alive; requests of dead ones are reported failed by the next
/// receive. `*doomed` (may be NULL) is how many were found.
#[no_mangle]
pub unsafe extern "C" fn shmex_client_check_servers(
    client: *mut shmex_client,
    doomed: *mut usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::optional(doomed) };
        handles::with_port(handles::of(client), Kind::Client, |locked| {
            set_opt(out, client_of(locked).check_servers());
            Ok(())
        })
    })
}

/// Attaches a server to a request-response exchange. Several servers on one
/// exchange share its requests round-robin.
#[no_mangle]
pub unsafe extern "C" fn shmex_server_create(
    exchange: *mut crate::node::shmex_exchange,
    server: *mut *mut shmex_server,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(server, "server") }?;
        let s = handles::exchange(handles::of(exchange))?.server()?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Server,
            Port::Server(s),
        )?));
        Ok(())
    })
}

/// Detaches the server; requests still queued fail towards their clients.
/// `SHMEX_E_BUSY` while it has live requests, streams or loans.
#[no_mangle]
pub extern "C" fn shmex_server_free(server: *mut shmex_server) -> c_int {
    ffi(|| handles::release_port(handles::of(server), Kind::Server))
}

/// Loans a chunk of `len` bytes for a response (or a stream part), to write
/// in place at `*data` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmex_server_loan(
    server: *mut shmex_server,
    len: usize,
    loan: *mut *mut shmex_loan,
    data: *mut *mut c_void,
) -> c_int {
    // SAFETY: `loan` and `data` NULL or writable, by the header's contract.
    ffi(|| unsafe {
        port_loan(handles::of(server), Kind::Server, loan, data, |locked| {
            Ok(server_of(locked).loan(len)?)
        })
    })
}

/// What a request holds. `data` points into shared memory and is valid
/// until the request is answered or released (NULL when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmex_request_info {
    /// The payload, in place.
    pub data: *const c_void,
    /// Its length in bytes.
    pub len: usize,
    /// The client's tag.
    pub tag: u64,
    /// The client's id: port slot in the low 32 bits, the slot's attach
    /// generation in the high 32 (as `shmex_sample_info.sender`).
    pub sender: u64,
    /// 1 when this is a client's answer to this server's question.
    pub is_answer: u32,
    /// The chunked-response window the client asked for; 0 for a plain
    /// request.
    pub stream_window: u32,
}

fn request_info(r: &Request<'_>) -> shmex_request_info {
    shmex_request_info {
        data: data_ptr(r.payload()),
        len: r.len(),
        tag: r.tag(),
        sender: crate::sample::sender_code(r.sender()),
        is_answer: u32::from(r.is_answer()),
        stream_window: r.stream_window(),
    }
}

fn server_receive(
    server: *mut shmex_server,
    timeout: Option<Option<std::time::Duration>>,
    request: *mut *mut shmex_request,
    info: *mut shmex_request_info,
    failure: *mut shmex_failure,
) -> Result<()> {
    // SAFETY: NULL or writable, by the header's contract.
    let out = unsafe { Out::new(request, "request") }?;
    let info = unsafe { Out::optional(info) };
    let failure = unsafe { Out::optional(failure) };
    handles::with_port(handles::of(server), Kind::Server, |locked| {
        let s = server_of(locked);
        let got = match timeout {
            None => s.try_receive(),
            Some(None) => s.receive().map(Some),
            Some(Some(t)) => s.receive_timeout(t).map(Some),
        };
        match got.map_err(|e| with_failure(e, failure))? {
            Some(r) => {
                set_opt(info, request_info(&r));
                out.set(handles::to_ptr(locked.adopt(Child::Request(r))?));
            }
            None => out.set(std::ptr::null_mut()),
        }
        Ok(())
    })
}

/// Returns the next request if one is there (never blocks): `*request` is
/// a new request or a client's answer to this server's question, or NULL.
/// `*info` (may be NULL) describes it.
#[no_mangle]
pub unsafe extern "C" fn shmex_server_try_receive(
    server: *mut shmex_server,
    request: *mut *mut shmex_request,
    info: *mut shmex_request_info,
) -> c_int {
    ffi(|| server_receive(server, None, request, info, std::ptr::null_mut()))
}

/// Blocks until a request arrives, at most `timeout_ms` milliseconds
/// (`SHMEX_FOREVER`: no limit; 0 polls once; `SHMEX_E_TIMEOUT` after). A
/// dialogue whose client died while this server waited for its answer is
/// `SHMEX_E_REQUEST_FAILED` with `SHMEX_FAIL_CLIENT_GONE` and its tag in
/// `*failure` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmex_server_receive(
    server: *mut shmex_server,
    timeout_ms: i64,
    request: *mut *mut shmex_request,
    info: *mut shmex_request_info,
    failure: *mut shmex_failure,
) -> c_int {
    ffi(|| {
        server_receive(
            server,
            Some(args::timeout(timeout_ms)),
            request,
            info,
            failure,
        )
    })
}

/// Fills `*info` with the request's payload, tag and flags.
#[no_mangle]
pub unsafe extern "C" fn shmex_request_get_info(
    request: *mut shmex_request,
    info: *mut shmex_request_info,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(info, "info") }?;
        handles::with_child(handles::of(request), Kind::Request, |c, _| match c {
            Child::Request(r) => {
                out.set(request_info(r));
                Ok(())
            }
            _ => unreachable!("a request handle names a request"),
        })
    })
}

fn expect_request(c: Child) -> Request<'static> {
    match c {
        Child::Request(r) => r,
        _ => unreachable!("a request handle names a request"),
    }
}

/// Answers with a copy of the payload; consumes the request (whatever the
/// outcome, once the arguments are valid). `SHMEX_E_CLIENT_GONE` when the
/// client's port closed.
#[no_mangle]
pub unsafe extern "C" fn shmex_request_respond(
    request: *mut shmex_request,
    data: *const c_void,
    len: usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or `len` readable bytes, by the header's contract.
        let payload = unsafe { args::bytes(data, len) }?;
        handles::consume([(handles::of(request), Kind::Request)], |[r], _| {
            Ok(expect_request(r).respond(payload)?)
        })
    })
}

/// Answers with a loaned chunk (zero-copy, loaned from the same server).
/// Consumes the loan whatever the outcome, and the request once the
/// arguments are valid.
#[no_mangle]
pub extern "C" fn shmex_request_respond_loan(
    request: *mut shmex_request,
    loan: *mut shmex_loan,
) -> c_int {
    ffi(|| {
        handles::consuming_loan(handles::of(loan), || {
            handles::consume(
                [
                    (handles::of(request), Kind::Request),
                    (handles::of(loan), Kind::Loan),
                ],
                |[r, l], _| Ok(expect_request(r).respond_loan(expect_loan(l))?),
            )
        })
    })
}

/// Answers with a question the client must answer (`shmex_client_answer`):
/// the conversation goes on under the same tag, and the answer comes back
/// to this server as a request with `is_answer`. Consumes the request.
#[no_mangle]
pub unsafe extern "C" fn shmex_request_ask(
    request: *mut shmex_request,
    data: *const c_void,
    len: usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or `len` readable bytes, by the header's contract.
        let payload = unsafe { args::bytes(data, len) }?;
        handles::consume([(handles::of(request), Kind::Request)], |[r], _| {
            Ok(expect_request(r).ask(payload)?)
        })
    })
}

/// `shmex_request_ask` with a loaned chunk (zero-copy). Consumes the loan
/// whatever the outcome, and the request once the arguments are valid.
#[no_mangle]
pub extern "C" fn shmex_request_ask_loan(
    request: *mut shmex_request,
    loan: *mut shmex_loan,
) -> c_int {
    ffi(|| {
        handles::consuming_loan(handles::of(loan), || {
            handles::consume(
                [
                    (handles::of(request), Kind::Request),
                    (handles::of(loan), Kind::Loan),
                ],
                |[r, l], _| Ok(expect_request(r).ask_loan(expect_loan(l))?),
            )
        })
    })
}

/// Answers with a chunked response: `*stream` pushes parts straight into
/// the client's inbox, at most the window the client asked for
/// (`shmex_client_request_stream`) unreleased at a time. Consumes the
/// request; on error it is dropped unanswered and its client told.
/// `SHMEX_E_NOT_A_STREAM_REQUEST` for a plain request,
/// `SHMEX_E_TOO_MANY_STREAMS`, `SHMEX_E_CLIENT_GONE`.
#[no_mangle]
pub unsafe extern "C" fn shmex_request_respond_stream(
    request: *mut shmex_request,
    stream: *mut *mut shmex_stream,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(stream, "stream") }?;
        handles::consume([(handles::of(request), Kind::Request)], |[r], locked| {
            let s = expect_request(r).respond_stream()?;
            out.set(handles::to_ptr(locked.adopt(Child::Stream(s))?));
            Ok(())
        })
    })
}

/// Releases the request unanswered: its client receives
/// `SHMEX_E_REQUEST_FAILED` with `SHMEX_FAIL_UNANSWERED`.
#[no_mangle]
pub extern "C" fn shmex_request_release(request: *mut shmex_request) -> c_int {
    ffi(|| handles::release_child(handles::of(request), Kind::Request))
}

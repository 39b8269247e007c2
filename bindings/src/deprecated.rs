//! The C names the verb renames replaced (see CHANGELOG.md), kept for one
//! release: each calls its new function, and the header marks it
//! deprecated. (`shmex_stream_send` is not among them: it is the new name of
//! `shmex_stream_send_copy`; the loan form is `shmex_stream_send_loan`.)

use crate::pubsub::{shmex_published, shmex_publisher};
use crate::rpc::shmex_client;
use crate::sample::shmex_loan;
use crate::stream::shmex_stream;
use crate::tasks::{
    shmex_dead_letter, shmex_dead_letter_info, shmex_delivery, shmex_delivery_info,
    shmex_submitter, shmex_worker,
};
use std::ffi::{c_char, c_int, c_void};

/// Renamed to `shmex_client_send`.
#[deprecated(note = "renamed to shmex_client_send")]
#[no_mangle]
pub unsafe extern "C" fn shmex_client_request(
    client: *mut shmex_client,
    tag: u64,
    data: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: the same contract as the function called.
    unsafe { crate::rpc::shmex_client_send(client, tag, data, len) }
}

/// Renamed to `shmex_client_send_loan`.
#[deprecated(note = "renamed to shmex_client_send_loan")]
#[no_mangle]
pub extern "C" fn shmex_client_send_request(
    client: *mut shmex_client,
    tag: u64,
    loan: *mut shmex_loan,
) -> c_int {
    crate::rpc::shmex_client_send_loan(client, tag, loan)
}

/// Renamed to `shmex_stream_send` (the name of the loan form before).
#[deprecated(note = "renamed to shmex_stream_send")]
#[no_mangle]
pub unsafe extern "C" fn shmex_stream_send_copy(
    stream: *mut shmex_stream,
    data: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: the same contract as the function called.
    unsafe { crate::stream::shmex_stream_send(stream, data, len) }
}

/// Renamed to `shmex_publisher_send`.
#[deprecated(note = "renamed to shmex_publisher_send")]
#[no_mangle]
pub unsafe extern "C" fn shmex_publisher_publish(
    publisher: *mut shmex_publisher,
    key: *const c_char,
    data: *const c_void,
    len: usize,
    report: *mut shmex_published,
) -> c_int {
    // SAFETY: the same contract as the function called.
    unsafe { crate::pubsub::shmex_publisher_send(publisher, key, data, len, report) }
}

/// Renamed to `shmex_publisher_send_loan`.
#[deprecated(note = "renamed to shmex_publisher_send_loan")]
#[no_mangle]
pub unsafe extern "C" fn shmex_publisher_publish_loan(
    publisher: *mut shmex_publisher,
    key: *const c_char,
    loan: *mut shmex_loan,
    report: *mut shmex_published,
) -> c_int {
    // SAFETY: the same contract as the function called.
    unsafe { crate::pubsub::shmex_publisher_send_loan(publisher, key, loan, report) }
}

/// Renamed to `shmex_submitter_send`.
#[deprecated(note = "renamed to shmex_submitter_send")]
#[no_mangle]
pub unsafe extern "C" fn shmex_submitter_submit(
    submitter: *mut shmex_submitter,
    priority: u8,
    tag: u64,
    data: *const c_void,
    len: usize,
    timeout_ms: i64,
) -> c_int {
    // SAFETY: the same contract as the function called.
    unsafe { crate::tasks::shmex_submitter_send(submitter, priority, tag, data, len, timeout_ms) }
}

/// Renamed to `shmex_submitter_send_loan`.
#[deprecated(note = "renamed to shmex_submitter_send_loan")]
#[no_mangle]
pub extern "C" fn shmex_submitter_submit_loan(
    submitter: *mut shmex_submitter,
    priority: u8,
    tag: u64,
    loan: *mut shmex_loan,
) -> c_int {
    crate::tasks::shmex_submitter_send_loan(submitter, priority, tag, loan)
}

/// Renamed to `shmex_worker_try_receive`.
#[deprecated(note = "renamed to shmex_worker_try_receive")]
#[no_mangle]
pub unsafe extern "C" fn shmex_worker_try_take(
    worker: *mut shmex_worker,
    delivery: *mut *mut shmex_delivery,
    info: *mut shmex_delivery_info,
) -> c_int {
    // SAFETY: the same contract as the function called.
    unsafe { crate::tasks::shmex_worker_try_receive(worker, delivery, info) }
}

/// Renamed to `shmex_worker_receive`.
#[deprecated(note = "renamed to shmex_worker_receive")]
#[no_mangle]
pub unsafe extern "C" fn shmex_worker_take(
    worker: *mut shmex_worker,
    timeout_ms: i64,
    delivery: *mut *mut shmex_delivery,
    info: *mut shmex_delivery_info,
) -> c_int {
    // SAFETY: the same contract as the function called.
    unsafe { crate::tasks::shmex_worker_receive(worker, timeout_ms, delivery, info) }
}

/// Renamed to `shmex_worker_try_receive_dead_letter`.
#[deprecated(note = "renamed to shmex_worker_try_receive_dead_letter")]
#[no_mangle]
pub unsafe extern "C" fn shmex_worker_take_dead_letter(
    worker: *mut shmex_worker,
    dead_letter: *mut *mut shmex_dead_letter,
    info: *mut shmex_dead_letter_info,
) -> c_int {
    // SAFETY: the same contract as the function called.
    unsafe { crate::tasks::shmex_worker_try_receive_dead_letter(worker, dead_letter, info) }
}

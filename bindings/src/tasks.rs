//! Task distribution: submitters queue tasks with a priority, workers take
//! them within a prefetch limit and ack or nack each. Delivery is at least
//! once until acked: a task whose worker dies, nacks it or misses its ack
//! deadline comes back (`redelivered`), and after `max_deliveries` goes to
//! the dead-letter queue.
//!
//! Submitters and workers are single-threaded, like every port.

use crate::args::{self, set_opt, Out};
use crate::error::{ffi, Result};
use crate::handles::{self, Child, Kind, Locked, Port};
use crate::sample::{data_ptr, expect_loan, port_loan, shmex_loan};
use shmex_rs::{DeadLetter, Delivery, Submit, Submitter, TaskId, Worker};
use std::ffi::{c_int, c_void};

/// The submitting side of a task exchange. Single-threaded.
pub struct shmex_submitter {
    _private: [u8; 0],
}

/// The working side of a task exchange. Single-threaded. Freeing it
/// requeues the tasks it still holds.
pub struct shmex_worker {
    _private: [u8; 0],
}

/// A task delivered to a worker, read in place. Ack or nack it (which
/// consumes the handle), or release it: then it stays delivered until its
/// ack timeout and is redelivered.
pub struct shmex_delivery {
    _private: [u8; 0],
}

/// A task taken off the dead-letter queue. Release it to free it.
pub struct shmex_dead_letter {
    _private: [u8; 0],
}

/// Task priorities are 0 ..= SHMEX_MAX_PRIORITY (higher first).
pub const SHMEX_MAX_PRIORITY: u8 = 3;
const _: () = assert!(SHMEX_MAX_PRIORITY + 1 == shmex_rs::PRIORITIES);

fn submitter_of(locked: &Locked) -> &'static Submitter {
    match locked.port() {
        Port::Submitter(s) => s,
        _ => unreachable!("a submitter handle names a submitter"),
    }
}

fn worker_of(locked: &Locked) -> &'static Worker {
    match locked.port() {
        Port::Worker(w) => w,
        _ => unreachable!("a worker handle names a worker"),
    }
}

/// Attaches a submitter to a task exchange.
#[no_mangle]
pub unsafe extern "C" fn shmex_submitter_create(
    exchange: *mut crate::node::shmex_exchange,
    submitter: *mut *mut shmex_submitter,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(submitter, "submitter") }?;
        let s = handles::exchange(handles::of(exchange))?.submitter()?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Submitter,
            Port::Submitter(s),
        )?));
        Ok(())
    })
}

/// Detaches the submitter. `SHMEX_E_BUSY` while it has live loans.
#[no_mangle]
pub extern "C" fn shmex_submitter_free(submitter: *mut shmex_submitter) -> c_int {
    ffi(|| handles::release_port(handles::of(submitter), Kind::Submitter))
}

/// Loans a chunk of `len` bytes for a task, to write in place at `*data`
/// (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmex_submitter_loan(
    submitter: *mut shmex_submitter,
    len: usize,
    loan: *mut *mut shmex_loan,
    data: *mut *mut c_void,
) -> c_int {
    // SAFETY: `loan` and `data` NULL or writable, by the header's contract.
    ffi(|| unsafe {
        port_loan(
            handles::of(submitter),
            Kind::Submitter,
            loan,
            data,
            |locked| Ok(submitter_of(locked).loan(len)?),
        )
    })
}

/// Submits a copy of the payload at `priority` (0 ..= SHMEX_MAX_PRIORITY)
/// with `tag` (positional here: C has no named arguments; Rust takes them
/// as `shmex::Submit`). While the queue is full it waits at most `timeout_ms`
/// (0: not at all; `SHMEX_FOREVER`: no limit), then fails with
/// `SHMEX_E_QUEUE_FULL`.
#[no_mangle]
pub unsafe extern "C" fn shmex_submitter_send(
    submitter: *mut shmex_submitter,
    priority: u8,
    tag: u64,
    data: *const c_void,
    len: usize,
    timeout_ms: i64,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or `len` readable bytes, by the header's contract.
        let payload = unsafe { args::bytes(data, len) }?;
        handles::with_port(handles::of(submitter), Kind::Submitter, |locked| {
            let s = submitter_of(locked);
            let task = Submit::new().priority(priority).tag(tag);
            match args::timeout(timeout_ms) {
                Some(t) if t.is_zero() => Ok(s.send(task, payload)?),
                Some(t) => Ok(s.send_timeout(task, payload, t)?),
                None => Ok(s.send_timeout(task, payload, std::time::Duration::MAX)?),
            }
        })
    })
}

/// Submits a loaned chunk (zero-copy); the loan is consumed whatever the
/// outcome.
/// `SHMEX_E_QUEUE_FULL` at once when the queue is full.
#[no_mangle]
pub extern "C" fn shmex_submitter_send_loan(
    submitter: *mut shmex_submitter,
    priority: u8,
    tag: u64,
    loan: *mut shmex_loan,
) -> c_int {
    ffi(|| {
        handles::consuming_loan(handles::of(loan), || {
            handles::with_port(handles::of(submitter), Kind::Submitter, |locked| {
                let l = expect_loan(locked.claim(handles::of(loan), Kind::Loan)?);
                Ok(submitter_of(locked).send_loan(Submit::new().priority(priority).tag(tag), l)?)
            })
        })
    })
}

/// Attaches a worker that holds at most `prefetch_limit` unacknowledged
/// tasks (at least 1; 0 is `SHMEX_E_INVALID_ARGUMENT`).
#[no_mangle]
pub unsafe extern "C" fn shmex_worker_create(
    exchange: *mut crate::node::shmex_exchange,
    prefetch_limit: u32,
    worker: *mut *mut shmex_worker,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(worker, "worker") }?;
        let w = handles::exchange(handles::of(exchange))?.worker(prefetch_limit)?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Worker,
            Port::Worker(w),
        )?));
        Ok(())
    })
}

/// Detaches the worker: the tasks it still holds are requeued at once.
/// `SHMEX_E_BUSY` while it has live deliveries or dead letters.
#[no_mangle]
pub extern "C" fn shmex_worker_free(worker: *mut shmex_worker) -> c_int {
    ffi(|| handles::release_port(handles::of(worker), Kind::Worker))
}

/// What a delivery holds. `data` points into shared memory and is valid
/// until the delivery is acked, nacked or released (NULL when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmex_delivery_info {
    /// The payload, in place.
    pub data: *const c_void,
    /// Its length in bytes.
    pub len: usize,
    /// The submitter's tag.
    pub tag: u64,
    /// The delivery's id, for `shmex_worker_ack` / `shmex_worker_nack`.
    pub id: u64,
    /// Its priority.
    pub priority: u32,
    /// How many times the task has been delivered, this time included.
    pub deliveries: u32,
    /// 1 when it was delivered before (nacked, timed out, or its worker
    /// died).
    pub redelivered: u32,
}

fn delivery_info(d: &Delivery<'_>) -> shmex_delivery_info {
    shmex_delivery_info {
        data: data_ptr(d.payload()),
        len: d.payload().len(),
        tag: d.tag(),
        id: d.id().to_raw(),
        priority: u32::from(d.priority()),
        deliveries: d.deliveries(),
        redelivered: u32::from(d.redelivered()),
    }
}

fn take(
    worker: *mut shmex_worker,
    timeout: Option<Option<std::time::Duration>>,
    delivery: *mut *mut shmex_delivery,
    info: *mut shmex_delivery_info,
) -> Result<()> {
    // SAFETY: NULL or writable, by the header's contract.
    let out = unsafe { Out::new(delivery, "delivery") }?;
    let info = unsafe { Out::optional(info) };
    handles::with_port(handles::of(worker), Kind::Worker, |locked| {
        let w = worker_of(locked);
        let got = match timeout {
            None => w.try_receive()?,
            Some(None) => Some(w.receive()?),
            Some(Some(t)) => Some(w.receive_timeout(t)?),
        };
        match got {
            Some(d) => {
                set_opt(info, delivery_info(&d));
                out.set(handles::to_ptr(locked.adopt(Child::Delivery(d))?));
            }
            None => out.set(std::ptr::null_mut()),
        }
        Ok(())
    })
}

/// Takes the next task if one is ready and the worker is under its
/// prefetch limit (never blocks): `*delivery`, or NULL. `*info` (may be
/// NULL) describes it.
#[no_mangle]
pub unsafe extern "C" fn shmex_worker_try_receive(
    worker: *mut shmex_worker,
    delivery: *mut *mut shmex_delivery,
    info: *mut shmex_delivery_info,
) -> c_int {
    ffi(|| take(worker, None, delivery, info))
}

/// Blocks until a task is ready, at most `timeout_ms` milliseconds
/// (`SHMEX_FOREVER`: no limit; `SHMEX_E_TIMEOUT` after).
/// `SHMEX_E_PREFETCH_LIMIT` at once when the worker holds its limit.
#[no_mangle]
pub unsafe extern "C" fn shmex_worker_receive(
    worker: *mut shmex_worker,
    timeout_ms: i64,
    delivery: *mut *mut shmex_delivery,
    info: *mut shmex_delivery_info,
) -> c_int {
    ffi(|| take(worker, Some(args::timeout(timeout_ms)), delivery, info))
}

/// Acks task `id` (from `shmex_delivery_info.id`), e.g. after its delivery
/// was released. `SHMEX_E_NOT_HELD` when this worker does not hold it.
#[no_mangle]
pub extern "C" fn shmex_worker_ack(worker: *mut shmex_worker, id: u64) -> c_int {
    ffi(|| {
        handles::with_port(handles::of(worker), Kind::Worker, |locked| {
            Ok(worker_of(locked).ack(TaskId::from_raw(id))?)
        })
    })
}

/// Nacks task `id`: back to the queue (another worker gets it when one has
/// room) when `requeue` is nonzero and it has deliveries left, else to the
/// dead-letter queue.
#[no_mangle]
pub extern "C" fn shmex_worker_nack(worker: *mut shmex_worker, id: u64, requeue: c_int) -> c_int {
    ffi(|| {
        handles::with_port(handles::of(worker), Kind::Worker, |locked| {
            Ok(worker_of(locked).nack(TaskId::from_raw(id), requeue != 0)?)
        })
    })
}

/// `*held`: the deliveries the worker holds now (not acked, nacked or taken
/// back).
#[no_mangle]
pub unsafe extern "C" fn shmex_worker_held(worker: *mut shmex_worker, held: *mut u32) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(held, "held") }?;
        handles::with_port(handles::of(worker), Kind::Worker, |locked| {
            out.set(worker_of(locked).held());
            Ok(())
        })
    })
}

/// Fills `*info` with the delivery's payload, tag, id and counts.
#[no_mangle]
pub unsafe extern "C" fn shmex_delivery_get_info(
    delivery: *mut shmex_delivery,
    info: *mut shmex_delivery_info,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(info, "info") }?;
        handles::with_child(handles::of(delivery), Kind::Delivery, |c, _| match c {
            Child::Delivery(d) => {
                out.set(delivery_info(d));
                Ok(())
            }
            _ => unreachable!("a delivery handle names a delivery"),
        })
    })
}

fn expect_delivery(c: Child) -> Delivery<'static> {
    match c {
        Child::Delivery(d) => d,
        _ => unreachable!("a delivery handle names a delivery"),
    }
}

/// Acks the task: done, freed. Consumes the delivery (whatever the
/// outcome). `SHMEX_E_NOT_HELD` when it was taken back meanwhile (its ack
/// timeout passed).
#[no_mangle]
pub extern "C" fn shmex_delivery_ack(delivery: *mut shmex_delivery) -> c_int {
    ffi(|| {
        handles::consume([(handles::of(delivery), Kind::Delivery)], |[d], _| {
            Ok(expect_delivery(d).ack()?)
        })
    })
}

/// Nacks the task (see `shmex_worker_nack`). Consumes the delivery.
#[no_mangle]
pub extern "C" fn shmex_delivery_nack(delivery: *mut shmex_delivery, requeue: c_int) -> c_int {
    ffi(|| {
        handles::consume([(handles::of(delivery), Kind::Delivery)], |[d], _| {
            Ok(expect_delivery(d).nack(requeue != 0)?)
        })
    })
}

/// Releases the delivery without acking or nacking: the task stays
/// delivered to this worker until `shmex_worker_ack`/`nack` with its id, or
/// until its ack timeout, when it is taken back and redelivered.
#[no_mangle]
pub extern "C" fn shmex_delivery_release(delivery: *mut shmex_delivery) -> c_int {
    ffi(|| handles::release_child(handles::of(delivery), Kind::Delivery))
}

/// What a dead letter holds; `data` is valid until it is released.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmex_dead_letter_info {
    /// The payload, in place.
    pub data: *const c_void,
    /// Its length in bytes.
    pub len: usize,
    /// The submitter's tag.
    pub tag: u64,
    /// Its priority.
    pub priority: u32,
    /// How many times it was delivered.
    pub deliveries: u32,
}

fn dead_letter_info(d: &DeadLetter<'_>) -> shmex_dead_letter_info {
    shmex_dead_letter_info {
        data: data_ptr(d),
        len: d.len(),
        tag: d.tag(),
        priority: u32::from(d.priority()),
        deliveries: d.deliveries(),
    }
}

/// Takes the oldest dead letter off the dead-letter queue (never blocks):
/// `*dead_letter`, or NULL when there is none. `*info` (may be NULL)
/// describes it.
#[no_mangle]
pub unsafe extern "C" fn shmex_worker_try_receive_dead_letter(
    worker: *mut shmex_worker,
    dead_letter: *mut *mut shmex_dead_letter,
    info: *mut shmex_dead_letter_info,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(dead_letter, "dead_letter") }?;
        let info = unsafe { Out::optional(info) };
        handles::with_port(handles::of(worker), Kind::Worker, |locked| {
            match worker_of(locked).try_receive_dead_letter()? {
                Some(d) => {
                    set_opt(info, dead_letter_info(&d));
                    out.set(handles::to_ptr(locked.adopt(Child::DeadLetter(d))?));
                }
                None => out.set(std::ptr::null_mut()),
            }
            Ok(())
        })
    })
}

/// Fills `*info` with the dead letter's payload, tag and counts.
#[no_mangle]
pub unsafe extern "C" fn shmex_dead_letter_get_info(
    dead_letter: *mut shmex_dead_letter,
    info: *mut shmex_dead_letter_info,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(info, "info") }?;
        handles::with_child(handles::of(dead_letter), Kind::DeadLetter, |c, _| match c {
            Child::DeadLetter(d) => {
                out.set(dead_letter_info(d));
                Ok(())
            }
            _ => unreachable!("a dead-letter handle names a dead letter"),
        })
    })
}

/// Releases (frees) the dead letter.
#[no_mangle]
pub extern "C" fn shmex_dead_letter_release(dead_letter: *mut shmex_dead_letter) -> c_int {
    ffi(|| handles::release_child(handles::of(dead_letter), Kind::DeadLetter))
}

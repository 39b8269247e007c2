//! Fan-in (inverted publish-subscribe): many producers, one consumer. The
//! producers never wait for each other; the consumer sees each producer's
//! messages in that producer's order.

use crate::args::{self, Out};
use crate::error::{ffi, Result};
use crate::handles::{self, Kind, Locked, Port};
use crate::sample::{
    expect_loan, port_loan, shmex_loan, shmex_sample, shmex_sample_info, SampleOut,
};
use shmex_rs::{Consumer, Producer};
use std::ffi::{c_int, c_void};

/// A sending side of a fan-in exchange. Single-threaded.
pub struct shmex_producer {
    _private: [u8; 0],
}

/// The receiving side of a fan-in exchange (one per exchange).
/// Single-threaded.
pub struct shmex_consumer {
    _private: [u8; 0],
}

fn producer_of(locked: &Locked) -> &'static Producer {
    match locked.port() {
        Port::Producer(p) => p,
        _ => unreachable!("a producer handle names a producer"),
    }
}

fn consumer_of(locked: &Locked) -> &'static Consumer {
    match locked.port() {
        Port::Consumer(c) => c,
        _ => unreachable!("a consumer handle names a consumer"),
    }
}

/// Attaches a producer to a fan-in exchange.
#[no_mangle]
pub unsafe extern "C" fn shmex_producer_create(
    exchange: *mut crate::node::shmex_exchange,
    producer: *mut *mut shmex_producer,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(producer, "producer") }?;
        let p = handles::exchange(handles::of(exchange))?.producer()?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Producer,
            Port::Producer(p),
        )?));
        Ok(())
    })
}

/// Detaches the producer. `SHMEX_E_BUSY` while it has live loans.
#[no_mangle]
pub extern "C" fn shmex_producer_free(producer: *mut shmex_producer) -> c_int {
    ffi(|| handles::release_port(handles::of(producer), Kind::Producer))
}

/// Loans a chunk of `len` bytes, to write in place at `*data` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmex_producer_loan(
    producer: *mut shmex_producer,
    len: usize,
    loan: *mut *mut shmex_loan,
    data: *mut *mut c_void,
) -> c_int {
    // SAFETY: `loan` and `data` NULL or writable, by the header's contract.
    ffi(|| unsafe {
        port_loan(
            handles::of(producer),
            Kind::Producer,
            loan,
            data,
            |locked| Ok(producer_of(locked).loan(len)?),
        )
    })
}

/// Sends a copy of the payload with `tag`. `SHMEX_E_QUEUE_FULL`,
/// `SHMEX_E_NO_CONSUMER`.
#[no_mangle]
pub unsafe extern "C" fn shmex_producer_send(
    producer: *mut shmex_producer,
    tag: u64,
    data: *const c_void,
    len: usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or `len` readable bytes, by the header's contract.
        let payload = unsafe { args::bytes(data, len) }?;
        handles::with_port(handles::of(producer), Kind::Producer, |locked| {
            Ok(producer_of(locked).send(tag, payload)?)
        })
    })
}

/// Sends a loaned chunk with `tag` (zero-copy); the loan is consumed
/// whatever the outcome.
#[no_mangle]
pub extern "C" fn shmex_producer_send_loan(
    producer: *mut shmex_producer,
    tag: u64,
    loan: *mut shmex_loan,
) -> c_int {
    ffi(|| {
        handles::consuming_loan(handles::of(loan), || {
            handles::with_port(handles::of(producer), Kind::Producer, |locked| {
                let l = expect_loan(locked.claim(handles::of(loan), Kind::Loan)?);
                Ok(producer_of(locked).send_loan(tag, l)?)
            })
        })
    })
}

/// Attaches the consumer of a fan-in exchange (`SHMEX_E_CONSUMER_EXISTS`
/// when it has one).
#[no_mangle]
pub unsafe extern "C" fn shmex_consumer_create(
    exchange: *mut crate::node::shmex_exchange,
    consumer: *mut *mut shmex_consumer,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(consumer, "consumer") }?;
        let c = handles::exchange(handles::of(exchange))?.consumer()?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Consumer,
            Port::Consumer(c),
        )?));
        Ok(())
    })
}

/// Detaches the consumer. `SHMEX_E_BUSY` while it has live samples.
#[no_mangle]
pub extern "C" fn shmex_consumer_free(consumer: *mut shmex_consumer) -> c_int {
    ffi(|| handles::release_port(handles::of(consumer), Kind::Consumer))
}

fn receive(
    consumer: *mut shmex_consumer,
    timeout: Option<Option<std::time::Duration>>,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
) -> Result<()> {
    // SAFETY: NULL or writable, by the header's contract.
    let out = unsafe { SampleOut::new(sample, info) }?;
    handles::with_port(handles::of(consumer), Kind::Consumer, |locked| {
        let c = consumer_of(locked);
        let got = match timeout {
            None => c.try_receive()?,
            Some(None) => Some(c.receive()?),
            Some(Some(t)) => Some(c.receive_timeout(t)?),
        };
        out.set(locked, got)
    })
}

/// Returns the next message if one is there (never blocks): `*sample`, or
/// NULL. `info.sender` is the producer's id, `info.tag` its tag.
#[no_mangle]
pub unsafe extern "C" fn shmex_consumer_try_receive(
    consumer: *mut shmex_consumer,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
) -> c_int {
    ffi(|| receive(consumer, None, sample, info))
}

/// Blocks until a message arrives, at most `timeout_ms` milliseconds
/// (`SHMEX_FOREVER`: no limit; `SHMEX_E_TIMEOUT` after).
#[no_mangle]
pub unsafe extern "C" fn shmex_consumer_receive(
    consumer: *mut shmex_consumer,
    timeout_ms: i64,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
) -> c_int {
    ffi(|| receive(consumer, Some(args::timeout(timeout_ms)), sample, info))
}

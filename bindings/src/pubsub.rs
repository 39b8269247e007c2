//! Publish-subscribe with AMQP routing keys: publishers publish under a key,
//! subscribers receive what matches their pattern (`*` one word, `#` zero or
//! more words).
//!
//! Publishers and subscribers are single-threaded, like every port.

use crate::args::{self, set_opt, Out};
use crate::error::{ffi, Result};
use crate::handles::{self, Kind, Locked, Port};
use crate::sample::{
    expect_loan, port_loan, shmex_loan, shmex_sample, shmex_sample_info, SampleOut,
};
use shmex_rs::{Published, Publisher, Subscriber};
use std::ffi::{c_char, c_int, c_void};

/// The sending side of a publish-subscribe exchange. Single-threaded.
pub struct shmex_publisher {
    _private: [u8; 0],
}

/// A subscription: receives the publications whose key matches its
/// pattern. Single-threaded. Freeing it unsubscribes.
pub struct shmex_subscriber {
    _private: [u8; 0],
}

/// What a publish did.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmex_published {
    /// Subscribers the publication was queued for.
    pub delivered: u32,
    /// Matching subscribers whose inbox was full: they missed it (and see it
    /// in `shmex_subscriber_gaps`).
    pub missed: u32,
}

impl From<Published> for shmex_published {
    fn from(p: Published) -> Self {
        shmex_published {
            delivered: p.delivered,
            missed: p.missed,
        }
    }
}

fn publisher_of(locked: &Locked) -> &'static Publisher {
    match locked.port() {
        Port::Publisher(p) => p,
        _ => unreachable!("a publisher handle names a publisher"),
    }
}

fn subscriber_of(locked: &Locked) -> &'static Subscriber {
    match locked.port() {
        Port::Subscriber(s) => s,
        _ => unreachable!("a subscriber handle names a subscriber"),
    }
}

/// Attaches a publisher to a publish-subscribe exchange.
#[no_mangle]
pub unsafe extern "C" fn shmex_publisher_create(
    exchange: *mut crate::node::shmex_exchange,
    publisher: *mut *mut shmex_publisher,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(publisher, "publisher") }?;
        let p = handles::exchange(handles::of(exchange))?.publisher()?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Publisher,
            Port::Publisher(p),
        )?));
        Ok(())
    })
}

/// Detaches the publisher. `SHMEX_E_BUSY` while it has live loans.
#[no_mangle]
pub extern "C" fn shmex_publisher_free(publisher: *mut shmex_publisher) -> c_int {
    ffi(|| handles::release_port(handles::of(publisher), Kind::Publisher))
}

/// Loans a chunk of `len` bytes for a publication, to write in place at
/// `*data` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmex_publisher_loan(
    publisher: *mut shmex_publisher,
    len: usize,
    loan: *mut *mut shmex_loan,
    data: *mut *mut c_void,
) -> c_int {
    // SAFETY: `loan` and `data` NULL or writable, by the header's contract.
    ffi(|| unsafe {
        port_loan(
            handles::of(publisher),
            Kind::Publisher,
            loan,
            data,
            |locked| Ok(publisher_of(locked).loan(len)?),
        )
    })
}

/// Publishes a copy of the payload under routing `key` (dot-separated
/// words). `*report` (may be NULL) says how many subscribers got it and how
/// many missed it (full inbox). No match is not an error: `delivered` is 0.
#[no_mangle]
pub unsafe extern "C" fn shmex_publisher_send(
    publisher: *mut shmex_publisher,
    key: *const c_char,
    data: *const c_void,
    len: usize,
    report: *mut shmex_published,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let key = unsafe { args::string(key, "key") }?;
        let payload = unsafe { args::bytes(data, len) }?;
        let report = unsafe { Out::optional(report) };
        handles::with_port(handles::of(publisher), Kind::Publisher, |locked| {
            let p = publisher_of(locked).send(key, payload)?;
            set_opt(report, p.into());
            Ok(())
        })
    })
}

/// Publishes a loaned chunk under routing `key` (zero-copy: every matching
/// subscriber reads the same chunk). The loan is consumed whatever the
/// outcome.
#[no_mangle]
pub unsafe extern "C" fn shmex_publisher_send_loan(
    publisher: *mut shmex_publisher,
    key: *const c_char,
    loan: *mut shmex_loan,
    report: *mut shmex_published,
) -> c_int {
    ffi(|| {
        handles::consuming_loan(handles::of(loan), || {
            // SAFETY (all blocks): NULL or valid, by the header's contract.
            let key = unsafe { args::string(key, "key") }?;
            let report = unsafe { Out::optional(report) };
            handles::with_port(handles::of(publisher), Kind::Publisher, |locked| {
                let l = expect_loan(locked.claim(handles::of(loan), Kind::Loan)?);
                let p = publisher_of(locked).send_loan(key, l)?;
                set_opt(report, p.into());
                Ok(())
            })
        })
    })
}

/// Subscribes to a publish-subscribe exchange with topic `pattern` (e.g.
/// "home.*.temp", "home.#"); its samples carry `tag`.
#[no_mangle]
pub unsafe extern "C" fn shmex_subscriber_create(
    exchange: *mut crate::node::shmex_exchange,
    pattern: *const c_char,
    tag: u64,
    subscriber: *mut *mut shmex_subscriber,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(subscriber, "subscriber") }?;
        let pattern = unsafe { args::string(pattern, "pattern") }?;
        let s = handles::exchange(handles::of(exchange))?.subscriber(pattern, tag)?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Subscriber,
            Port::Subscriber(s),
        )?));
        Ok(())
    })
}

/// Unsubscribes. `SHMEX_E_BUSY` while it has live samples.
#[no_mangle]
pub extern "C" fn shmex_subscriber_free(subscriber: *mut shmex_subscriber) -> c_int {
    ffi(|| handles::release_port(handles::of(subscriber), Kind::Subscriber))
}

fn receive(
    subscriber: *mut shmex_subscriber,
    timeout: Option<Option<std::time::Duration>>,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
) -> Result<()> {
    // SAFETY: NULL or writable, by the header's contract.
    let out = unsafe { SampleOut::new(sample, info) }?;
    handles::with_port(handles::of(subscriber), Kind::Subscriber, |locked| {
        let s = subscriber_of(locked);
        let got = match timeout {
            None => s.try_receive()?,
            Some(None) => Some(s.receive()?),
            Some(Some(t)) => Some(s.receive_timeout(t)?),
        };
        out.set(locked, got)
    })
}

/// Returns the next publication if one is there (never blocks): `*sample`,
/// or NULL. `*info` (may be NULL) describes it; `shmex_sample_key` gives its
/// routing key.
#[no_mangle]
pub unsafe extern "C" fn shmex_subscriber_try_receive(
    subscriber: *mut shmex_subscriber,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
) -> c_int {
    ffi(|| receive(subscriber, None, sample, info))
}

/// Blocks until a publication arrives, at most `timeout_ms` milliseconds
/// (`SHMEX_FOREVER`: no limit; `SHMEX_E_TIMEOUT` after).
#[no_mangle]
pub unsafe extern "C" fn shmex_subscriber_receive(
    subscriber: *mut shmex_subscriber,
    timeout_ms: i64,
    sample: *mut *mut shmex_sample,
    info: *mut shmex_sample_info,
) -> c_int {
    ffi(|| receive(subscriber, Some(args::timeout(timeout_ms)), sample, info))
}

/// `*gaps`: publications this subscriber missed because its inbox was full.
#[no_mangle]
pub unsafe extern "C" fn shmex_subscriber_gaps(
    subscriber: *mut shmex_subscriber,
    gaps: *mut u64,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(gaps, "gaps") }?;
        handles::with_port(handles::of(subscriber), Kind::Subscriber, |locked| {
            out.set(subscriber_of(locked).gaps());
            Ok(())
        })
    })
}

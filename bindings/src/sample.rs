//! Received samples (read in place) and loans (written in place).
//!
//! A sample or loan belongs to the port it came from: use it from the thread
//! that uses that port, and release it before freeing the port. Its payload
//! pointer is valid until it is released (or, for a loan, sent).

use crate::args::{set_opt, Out};
use crate::error::{ffi, Result};
use crate::handles::{self, Child, Kind, Locked};
use shmex_rs::{Loan, Sample, SenderId};
use std::ffi::{c_char, c_int, c_void, CString};

/// A received payload, read in place in shared memory. Release it with
/// `shmex_sample_release`; its data stays valid until then.
pub struct shmex_sample {
    _private: [u8; 0],
}

/// A chunk loaned for writing in place. Send it (which consumes it) or
/// release it with `shmex_loan_release`.
pub struct shmex_loan {
    _private: [u8; 0],
}

/// `shmex_sample_info.sender` of a sample that names no sender (responses,
/// stream chunks and end markers: they come from the server asked).
pub const SHMEX_NO_SENDER: u64 = u64::MAX;

/// The C form of a sender id: its port slot in the low 32 bits, the slot's
/// attach generation in the high 32; `SHMEX_NO_SENDER` for none (a port
/// slot is below 2^16, so no id equals it).
pub(crate) fn sender_code(id: Option<SenderId>) -> u64 {
    id.map_or(SHMEX_NO_SENDER, |id| {
        u64::from(id.port()) | u64::from(id.generation()) << 32
    })
}

/// A plain message: a response, publication, fan-in message.
pub const SHMEX_SAMPLE_MESSAGE: u32 = 0;
/// A part of a chunked response; releasing it lets the server send one more.
pub const SHMEX_SAMPLE_STREAM_CHUNK: u32 = 1;
/// The end of a chunked response: every part came before it; no payload.
pub const SHMEX_SAMPLE_STREAM_END: u32 = 2;
/// A server's question in a dialogue: answer it with `shmex_client_answer`.
pub const SHMEX_SAMPLE_QUESTION: u32 = 3;

/// What a sample holds. `data` points into shared memory and is valid until
/// the sample is released (NULL when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmex_sample_info {
    /// The payload, in place (16-byte aligned).
    pub data: *const c_void,
    /// Its length in bytes.
    pub len: usize,
    /// The request's tag (responses), the subscription's tag (publications),
    /// the producer's tag (fan-in).
    pub tag: u64,
    /// Who sent it (publisher, producer, or a dialogue's server): port slot
    /// in the low 32 bits, the slot's attach generation in the high 32, so a
    /// later port in the same slot has another value. `SHMEX_NO_SENDER` for
    /// responses.
    pub sender: u64,
    /// `SHMEX_SAMPLE_*`.
    pub kind: u32,
}

/// A payload pointer for C: NULL for an empty payload.
pub(crate) fn data_ptr(bytes: &[u8]) -> *const c_void {
    if bytes.is_empty() {
        std::ptr::null()
    } else {
        bytes.as_ptr().cast()
    }
}

fn info(s: &Sample<'_>) -> shmex_sample_info {
    let kind = if s.is_stream_chunk() {
        SHMEX_SAMPLE_STREAM_CHUNK
    } else if s.is_stream_end() {
        SHMEX_SAMPLE_STREAM_END
    } else if s.is_question() {
        SHMEX_SAMPLE_QUESTION
    } else {
        SHMEX_SAMPLE_MESSAGE
    };
    shmex_sample_info {
        data: data_ptr(s.payload()),
        len: s.len(),
        tag: s.tag(),
        sender: sender_code(s.sender()),
        kind,
    }
}

/// Where a receive puts its result: the sample handle (NULL when nothing
/// came) and, if asked, its info.
pub(crate) struct SampleOut {
    sample: Out<*mut shmex_sample>,
    info: Option<Out<shmex_sample_info>>,
}

impl SampleOut {
    /// Checks the out-parameters.
    ///
    /// # Safety
    /// Each pointer is NULL or writable (`info` may be NULL).
    pub(crate) unsafe fn new(
        sample: *mut *mut shmex_sample,
        info: *mut shmex_sample_info,
    ) -> Result<SampleOut> {
        Ok(SampleOut {
            // SAFETY: forwarded contract.
            sample: unsafe { Out::new(sample, "sample") }?,
            info: unsafe { Out::optional(info) },
        })
    }

    /// Hands a received sample (or `None`) to C.
    pub(crate) fn set(self, locked: &mut Locked, sample: Option<Sample<'static>>) -> Result<()> {
        match sample {
            Some(s) => {
                let info = info(&s);
                let h = locked.adopt(Child::Sample(s, None))?;
                set_opt(self.info, info);
                self.sample.set(handles::to_ptr(h));
            }
            None => self.sample.set(std::ptr::null_mut()),
        }
        Ok(())
    }
}

/// Fills `*info` with the sample's payload, tag, sender and kind.
#[no_mangle]
pub unsafe extern "C" fn shmex_sample_get_info(
    sample: *mut shmex_sample,
    info_out: *mut shmex_sample_info,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(info_out, "info") }?;
        handles::with_child(handles::of(sample), Kind::Sample, |c, _| match c {
            Child::Sample(s, _) => {
                out.set(info(s));
                Ok(())
            }
            _ => unreachable!("a sample handle names a sample"),
        })
    })
}

/// The routing key a publication was published under, as a NUL-terminated
/// string valid until the sample is released; `*key` is NULL for samples
/// that are not publications.
#[no_mangle]
pub unsafe extern "C" fn shmex_sample_key(
    sample: *mut shmex_sample,
    key: *mut *const c_char,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(key, "key") }?;
        handles::with_child(handles::of(sample), Kind::Sample, |c, _| match c {
            Child::Sample(s, cached) => {
                if cached.is_none() {
                    // Keys are `[^\0]` words (checked when published).
                    *cached = s.key().and_then(|k| CString::new(k).ok());
                }
                out.set(cached.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()));
                Ok(())
            }
            _ => unreachable!("a sample handle names a sample"),
        })
    })
}

/// Releases the sample: its chunk goes back to the pool once every receiver
/// let go. For a stream chunk, this frees room in the stream's window.
#[no_mangle]
pub extern "C" fn shmex_sample_release(sample: *mut shmex_sample) -> c_int {
    ffi(|| handles::release_child(handles::of(sample), Kind::Sample))
}

/// Hands a new loan to C: its handle and, if asked, its data pointer.
///
/// # Safety
/// `data` is NULL or writable.
pub(crate) unsafe fn loan_out(
    locked: &mut Locked,
    mut loan: Loan<'static>,
    out: Out<*mut shmex_loan>,
    data: *mut *mut c_void,
) -> Result<()> {
    let ptr: *mut c_void = if loan.is_empty() {
        std::ptr::null_mut()
    } else {
        loan.as_mut_ptr().cast()
    };
    let h = locked.adopt(Child::Loan(loan))?;
    // SAFETY: forwarded contract.
    set_opt(unsafe { Out::optional(data) }, ptr);
    out.set(handles::to_ptr(h));
    Ok(())
}

/// The body of every port's `*_loan` call: checks `loan`, locks the port,
/// loans through `take` and hands the loan out (`*loan`, `*data`).
///
/// # Safety
/// `loan` and `data` are NULL or writable.
pub(crate) unsafe fn port_loan(
    port: usize,
    kind: Kind,
    loan: *mut *mut shmex_loan,
    data: *mut *mut c_void,
    take: impl FnOnce(&mut Locked) -> Result<Loan<'static>>,
) -> Result<()> {
    // SAFETY: forwarded contract.
    let out = unsafe { Out::new(loan, "loan") }?;
    handles::with_port(port, kind, |locked| {
        let l = take(locked)?;
        // SAFETY: forwarded contract.
        unsafe { loan_out(locked, l, out, data) }
    })
}

/// The loan's data pointer (`*data`, writable, 16-byte aligned) and length
/// (`*len`, may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmex_loan_get(
    loan: *mut shmex_loan,
    data: *mut *mut c_void,
    len: *mut usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let data_out = unsafe { Out::new(data, "data") }?;
        let len_out = unsafe { Out::optional(len) };
        handles::with_child(handles::of(loan), Kind::Loan, |c, _| match c {
            Child::Loan(l) => {
                set_opt(len_out, l.len());
                data_out.set(if l.is_empty() {
                    std::ptr::null_mut()
                } else {
                    l.as_mut_ptr().cast()
                });
                Ok(())
            }
            _ => unreachable!("a loan handle names a loan"),
        })
    })
}

/// Sets the loan's payload length (at most the exchange's chunk size,
/// `SHMEX_E_PAYLOAD_TOO_LARGE` otherwise). The data pointer does not change;
/// bytes past what was written are whatever the chunk held.
#[no_mangle]
pub extern "C" fn shmex_loan_set_len(loan: *mut shmex_loan, len: usize) -> c_int {
    ffi(|| {
        handles::with_child(handles::of(loan), Kind::Loan, |c, _| match c {
            Child::Loan(l) => Ok(l.set_len(len)?),
            _ => unreachable!("a loan handle names a loan"),
        })
    })
}

/// Releases an unsent loan: its chunk goes back to the pool.
#[no_mangle]
pub extern "C" fn shmex_loan_release(loan: *mut shmex_loan) -> c_int {
    ffi(|| handles::release_child(handles::of(loan), Kind::Loan))
}

/// Takes the loan out of a consumed child.
pub(crate) fn expect_loan(c: Child) -> Loan<'static> {
    match c {
        Child::Loan(l) => l,
        _ => unreachable!("a loan handle names a loan"),
    }
}

//! Reading C arguments: strings, byte ranges, timeouts, and out-parameters.
//!
//! Every pointer is checked for NULL before use; beyond that the caller's
//! contract (stated in the crate docs and the header) is what makes reading
//! and writing through it sound.

use crate::error::{Error, Result};
use std::ffi::{c_char, c_void, CStr};
use std::ptr::NonNull;
use std::time::Duration;

/// A required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string that stays unchanged
/// while the returned borrow lives.
pub(crate) unsafe fn string<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: non-NULL, and NUL-terminated and live by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// As for [`string`].
pub(crate) unsafe fn opt_string<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { string(p, what) }.map(Some)
    }
}

/// A `(data, len)` payload argument; `data` may be NULL when `len` is 0.
///
/// # Safety
/// `data` is NULL or points at `len` readable bytes that stay unchanged while
/// the returned borrow lives.
pub(crate) unsafe fn bytes<'a>(data: *const c_void, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Error::null("data"));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!("length {len} is too large")));
    }
    // SAFETY: non-NULL, len readable bytes by the caller's contract, and len
    // fits an isize.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// A timeout argument in milliseconds: negative waits for ever.
pub(crate) fn timeout(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// An out-parameter, checked for NULL when taken (before the call has any
/// effect), written once at the end.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// A required out-parameter.
    ///
    /// # Safety
    /// `p` is NULL or valid for writing a `T`, and stays so until [`set`](Self::set).
    pub(crate) unsafe fn new(p: *mut T, what: &str) -> Result<Out<T>> {
        NonNull::new(p).map(Out).ok_or_else(|| Error::null(what))
    }

    /// An optional out-parameter: NULL means the caller does not want it.
    ///
    /// # Safety
    /// As for [`new`](Self::new).
    pub(crate) unsafe fn optional(p: *mut T) -> Option<Out<T>> {
        NonNull::new(p).map(Out)
    }

    /// Writes the value.
    pub(crate) fn set(self, value: T) {
        // SAFETY: valid for writes by the contract of `new`/`optional`;
        // `write` does not read (or drop) what the caller left there.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Writes `value` into an optional out-parameter.
pub(crate) fn set_opt<T>(out: Option<Out<T>>, value: T) {
    if let Some(out) = out {
        out.set(value);
    }
}

//! Payload type descriptors of typed exchanges: C reads the type an exchange
//! was created for, creates an exchange for a type it describes (name, size,
//! alignment, layout hash), and opens one only if it records that type. A
//! Rust process whose `shmex::Payload` type has the same descriptor joins it
//! with `open_typed_exchange`. A request-response exchange may record a
//! response type too (`shmex_exchange_create_typed_rpc`), which a Rust
//! process joins with `open_typed_rpc_exchange::<Req, Resp>`.

use crate::args::{self, Out};
use crate::error::{ffi, Error, Result};
use crate::handles;
use crate::node::{limits_arg, new_exchange, pattern, shmex_exchange, shmex_limits, shmex_node};
use shmex_rs::TypeInfo;
use std::ffi::{c_char, c_int};

/// Bytes of `shmex_payload_type.name`: a type name of at most 64 bytes and
/// its terminating NUL.
pub const SHMEX_TYPE_NAME_CAPACITY: usize = 65;

/// The payload type an exchange was created for. Untyped exchanges hold the
/// name "bytes", size 0, align 1 and hash 0. Rust's `shmex::payload!(T)`
/// computes `hash` with `shmex::layout_hash_of`; a C program states the
/// same value to share the exchange with Rust.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmex_payload_type {
    /// The type's name, NUL-terminated (1–64 bytes of UTF-8).
    pub name: [c_char; SHMEX_TYPE_NAME_CAPACITY],
    /// `sizeof` the type (at most the exchange's chunk size).
    pub size: u64,
    /// Its alignment: a power of two, at most 16 (payloads are 16-byte
    /// aligned).
    pub align: u32,
    /// A hash of its layout, compared on open.
    pub hash: u64,
}

impl From<&TypeInfo> for shmex_payload_type {
    fn from(t: &TypeInfo) -> Self {
        let mut name = [0 as c_char; SHMEX_TYPE_NAME_CAPACITY];
        for (d, s) in name
            .iter_mut()
            .zip(t.name.bytes().take(SHMEX_TYPE_NAME_CAPACITY - 1))
        {
            *d = s as c_char;
        }
        shmex_payload_type {
            name,
            size: t.size,
            align: t.align,
            hash: t.hash,
        }
    }
}

/// The descriptor `*payload` points at (required).
///
/// # Safety
/// `payload` is NULL or readable.
unsafe fn type_arg(payload: *const shmex_payload_type) -> Result<TypeInfo> {
    // SAFETY: NULL or readable, by the caller's contract.
    let p = unsafe { payload.as_ref() }.ok_or_else(|| Error::null("payload type"))?;
    let bytes: Vec<u8> = p.name.iter().map(|&c| c as u8).collect();
    let len = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| Error::invalid("payload type name is not NUL-terminated"))?;
    let name = std::str::from_utf8(&bytes[..len])
        .map_err(|_| Error::invalid("payload type name is not UTF-8"))?;
    Ok(TypeInfo::new(name, p.size, p.align, p.hash))
}

/// The payload type the exchange was created for, in `*payload`.
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_payload_type(
    exchange: *mut shmex_exchange,
    payload: *mut shmex_payload_type,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(payload, "payload") }?;
        let x = handles::exchange(handles::of(exchange))?;
        out.set((&x.payload_type()).into());
        Ok(())
    })
}

/// As `shmex_exchange_create`, for payloads of type `*payload`:
/// `SHMEX_E_INVALID_ARGUMENT` when its name is empty or too long, its
/// alignment is not a power of two up to 16, or its size exceeds the chunk
/// size.
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_create_typed(
    node: *mut shmex_node,
    name: *const c_char,
    pattern_code: u32,
    limits: *const shmex_limits,
    payload: *const shmex_payload_type,
    exchange: *mut *mut shmex_exchange,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(exchange, "exchange") }?;
        let name = unsafe { args::string(name, "name") }?;
        let limits = unsafe { limits_arg(limits) }?;
        let payload = unsafe { type_arg(payload) }?;
        let n = handles::node(handles::of(node))?;
        new_exchange(
            out,
            n.create_exchange_of(name, pattern(pattern_code)?, limits, &payload)?,
        )
    })
}

/// As `shmex_exchange_open`, only if the exchange was created for type
/// `*payload` (same name, size, alignment and hash) and no response type:
/// `SHMEX_E_MISMATCH` otherwise, the message naming both types (a typed
/// request-response exchange opens with `shmex_exchange_open_typed_rpc`).
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_open_typed(
    node: *mut shmex_node,
    name: *const c_char,
    payload: *const shmex_payload_type,
    exchange: *mut *mut shmex_exchange,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(exchange, "exchange") }?;
        let name = unsafe { args::string(name, "name") }?;
        let payload = unsafe { type_arg(payload) }?;
        let n = handles::node(handles::of(node))?;
        new_exchange(out, n.open_exchange_of(name, &payload)?)
    })
}

/// The response type of a typed request-response exchange, in
/// `*response`: the name "bytes", size 0, align 1 and hash 0 for other
/// patterns and untyped exchanges.
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_response_type(
    exchange: *mut shmex_exchange,
    response: *mut shmex_payload_type,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(response, "response") }?;
        let x = handles::exchange(handles::of(exchange))?;
        out.set((&x.response_type()).into());
        Ok(())
    })
}

/// As `shmex_exchange_create` with `SHMEX_PATTERN_REQUEST_RESPONSE`, for
/// requests of type `*request` and responses of type `*response`; each
/// descriptor is checked as in `shmex_exchange_create_typed`.
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_create_typed_rpc(
    node: *mut shmex_node,
    name: *const c_char,
    limits: *const shmex_limits,
    request: *const shmex_payload_type,
    response: *const shmex_payload_type,
    exchange: *mut *mut shmex_exchange,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(exchange, "exchange") }?;
        let name = unsafe { args::string(name, "name") }?;
        let limits = unsafe { limits_arg(limits) }?;
        let request = unsafe { type_arg(request) }?;
        let response = unsafe { type_arg(response) }?;
        let n = handles::node(handles::of(node))?;
        new_exchange(
            out,
            n.create_rpc_exchange_of(name, limits, &request, &response)?,
        )
    })
}

/// As `shmex_exchange_open`, only if the exchange was created for requests
/// of type `*request` and responses of type `*response`:
/// `SHMEX_E_MISMATCH` otherwise (either type differs), the message naming
/// both sides as `request -> response`.
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_open_typed_rpc(
    node: *mut shmex_node,
    name: *const c_char,
    request: *const shmex_payload_type,
    response: *const shmex_payload_type,
    exchange: *mut *mut shmex_exchange,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(exchange, "exchange") }?;
        let name = unsafe { args::string(name, "name") }?;
        let request = unsafe { type_arg(request) }?;
        let response = unsafe { type_arg(response) }?;
        let n = handles::node(handles::of(node))?;
        new_exchange(out, n.open_rpc_exchange_of(name, &request, &response)?)
    })
}

//! Payload type descriptors: the [`Payload`] trait of typed exchanges and
//! [`TypeInfo`], the descriptor an exchange header records (name, size,
//! alignment, layout hash). Below the exchange core, which stores and
//! compares descriptors; the typed ports live in [`typed`](crate::typed).

use crate::error::OpenError;
use crate::layout::{load_bytes, store_bytes, PayloadType, MAX_PAYLOAD_ALIGN, MAX_TYPE_NAME};
use std::mem::{align_of, size_of};
use std::sync::atomic::Ordering;

/// A payload type of a typed exchange: a [`bytemuck::Pod`] type with a name
/// and a layout hash stored in the exchange header (see the
/// [module docs](crate::typed) for why it is safe to implement).
pub trait Payload: bytemuck::Pod {
    /// The name recorded in the header (at most 64 bytes), the same in every
    /// process and language that uses the exchange.
    const TYPE_NAME: &'static str;
    /// A hash of the layout: processes that agree on name, size and
    /// alignment but not on the fields disagree here.
    const LAYOUT_HASH: u64;
}

/// FNV-1a of `bytes`, continuing from `h` (start with [`HASH_SEED`]); a
/// building block of [`Payload::LAYOUT_HASH`].
pub const fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// The FNV-1a offset basis, where [`hash_bytes`] starts.
pub const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// The layout hash [`payload!`](crate::payload) computes: name, size,
/// alignment, then each field's name and offset.
pub const fn layout_hash_of(
    name: &str,
    size: usize,
    align: usize,
    fields: &[(&str, usize)],
) -> u64 {
    let mut h = hash_bytes(HASH_SEED, name.as_bytes());
    h = hash_bytes(h, &(size as u64).to_le_bytes());
    h = hash_bytes(h, &(align as u64).to_le_bytes());
    let mut i = 0;
    while i < fields.len() {
        h = hash_bytes(h, fields[i].0.as_bytes());
        h = hash_bytes(h, &(fields[i].1 as u64).to_le_bytes());
        i += 1;
    }
    h
}

/// Implements [`Payload`] for a `Pod` type of this crate: `payload!(Type)`
/// hashes its name, size and alignment; `payload!(Type { field, ... })`
/// also each listed field's name and offset.
#[macro_export]
macro_rules! payload {
    ($t:ident) => {
        $crate::payload!($t {});
    };
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl $crate::Payload for $t {
            const TYPE_NAME: &'static str = stringify!($t);
            const LAYOUT_HASH: u64 = $crate::layout_hash_of(
                stringify!($t),
                ::std::mem::size_of::<$t>(),
                ::std::mem::align_of::<$t>(),
                &[$((stringify!($f), ::std::mem::offset_of!($t, $f))),*],
            );
        }
    };
}

macro_rules! primitive_payloads {
    ($($t:ty),*) => {$(
        impl Payload for $t {
            const TYPE_NAME: &'static str = stringify!($t);
            const LAYOUT_HASH: u64 =
                layout_hash_of(stringify!($t), size_of::<$t>(), align_of::<$t>(), &[]);
        }
    )*};
}

primitive_payloads!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

impl<T: Payload, const N: usize> Payload for [T; N]
where
    [T; N]: bytemuck::Pod,
{
    /// Arrays are told apart by their size and hash, which cover the
    /// element type and the length.
    const TYPE_NAME: &'static str = "array";
    const LAYOUT_HASH: u64 = hash_bytes(
        hash_bytes(HASH_SEED, &T::LAYOUT_HASH.to_le_bytes()),
        &(N as u64).to_le_bytes(),
    );
}

/// An exchange's payload type descriptor, as stored in its header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TypeInfo {
    /// The type's name ([`Payload::TYPE_NAME`]); `bytes` when untyped.
    pub name: String,
    /// `size_of` the type; 0 when untyped.
    pub size: u64,
    /// `align_of` the type; 1 when untyped.
    pub align: u32,
    /// [`Payload::LAYOUT_HASH`]; 0 when untyped.
    pub hash: u64,
}

impl TypeInfo {
    /// The descriptor of an untyped (bytes) exchange.
    pub fn bytes() -> TypeInfo {
        TypeInfo {
            name: "bytes".into(),
            size: 0,
            align: 1,
            hash: 0,
        }
    }

    /// The descriptor of `T`.
    pub fn of<T: Payload>() -> TypeInfo {
        TypeInfo {
            name: T::TYPE_NAME.into(),
            size: size_of::<T>() as u64,
            align: align_of::<T>() as u32,
            hash: T::LAYOUT_HASH,
        }
    }

    /// A descriptor from its parts, for a type described elsewhere (a C
    /// struct, another language's record): `name` 1..=64 bytes, `align` a
    /// power of two. Checked when an exchange is created with it, not here.
    pub fn new(name: impl Into<String>, size: u64, align: u32, hash: u64) -> TypeInfo {
        TypeInfo {
            name: name.into(),
            size,
            align,
            hash,
        }
    }

    /// True for [`TypeInfo::bytes`].
    pub fn is_bytes(&self) -> bool {
        *self == TypeInfo::bytes()
    }

    /// Checks it can be the payload of an exchange with `chunk_size`.
    pub(crate) fn check(&self, chunk_size: usize) -> Result<(), OpenError> {
        let invalid = |reason: String| Err(OpenError::InvalidLimits { reason });
        if self.name.is_empty() || self.name.len() > MAX_TYPE_NAME {
            return invalid(format!(
                "payload type name {:?} not 1..={MAX_TYPE_NAME} bytes",
                self.name
            ));
        }
        if !self.align.is_power_of_two() || self.align as usize > MAX_PAYLOAD_ALIGN {
            return invalid(format!(
                "payload type {self} needs alignment {}; chunks align payloads to at most \
                 {MAX_PAYLOAD_ALIGN} bytes",
                self.align
            ));
        }
        if self.size > chunk_size as u64 {
            return invalid(format!(
                "payload type {self} does not fit chunk_size {chunk_size}"
            ));
        }
        Ok(())
    }

    /// Writes it into a header being initialised.
    pub(crate) fn store(&self, p: &PayloadType) {
        p.size.store(self.size, Ordering::Relaxed);
        p.align.store(self.align, Ordering::Relaxed);
        p.hash.store(self.hash, Ordering::Relaxed);
        p.name_len.store(self.name.len() as u32, Ordering::Relaxed);
        store_bytes(&p.name, self.name.as_bytes());
    }

    /// Reads it from a header (untrusted bytes: the name is clamped and
    /// decoded lossily).
    pub(crate) fn load(p: &PayloadType) -> TypeInfo {
        let len = p.name_len.load(Ordering::Relaxed) as usize;
        TypeInfo {
            name: String::from_utf8_lossy(&load_bytes(&p.name, len)).into_owned(),
            size: p.size.load(Ordering::Relaxed),
            align: p.align.load(Ordering::Relaxed),
            hash: p.hash.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Display for TypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (size {}, align {}, hash {:#018x})",
            self.name, self.size, self.align, self.hash
        )
    }
}

/// `payload`, or `payload -> response` when either side of a type mismatch
/// has a response type (`other`: the other side's).
pub(crate) fn describe(payload: &TypeInfo, response: &TypeInfo, other: &TypeInfo) -> String {
    if response.is_bytes() && other.is_bytes() {
        payload.to_string()
    } else {
        format!("{payload} -> {response}")
    }
}

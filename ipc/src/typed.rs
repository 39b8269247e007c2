//! Typed exchanges: an exchange created for one payload type `T`, whose
//! ports send and receive `T` values in place instead of bytes.
//!
//! The exchange header records a type descriptor ([`TypeInfo`]: name, size,
//! alignment, layout hash) at creation; [`Node::open_typed_exchange`] refuses
//! an exchange whose descriptor differs from `T`'s with
//! [`OpenError::TypeMismatch`] naming both. Untyped handles
//! ([`Node::open_exchange`]) still open a typed exchange (tools, C); an
//! untyped exchange holds the descriptor [`TypeInfo::bytes`].
//!
//! [`Payload`] is a *safe* trait on top of [`bytemuck::Pod`]: `Pod` (itself
//! `unsafe` to implement, or derived) already promises what zero-copy needs,
//! that every bit pattern is a valid `T` with no padding; the name and hash
//! only identify the layout. A wrong hash lets two disagreeing layouts
//! exchange garbage, as bytes would, but never undefined behaviour: every
//! view is still checked for size and alignment. It is implemented for the
//! primitive numbers and arrays of payloads; for a struct of your own, derive
//! `Pod` and `Zeroable` and use [`payload!`](crate::payload) (or implement it
//! by hand with your own hash):
//!
//! ```
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Point { x: f32, y: f32 }
//! // The hash covers the name, size, alignment and each field's name and offset.
//! shmex::payload!(Point { x, y });
//! assert_eq!(shmex::TypeInfo::of::<Point>().size, 8);
//! ```
//!
//! Payloads are aligned to [`MAX_PAYLOAD_ALIGN`] (16) bytes; creating an
//! exchange for a type aligned to more fails. Typed ports are thin wrappers
//! over the byte ports: a loan is written in place and a sample is read in
//! place (cast with `bytemuck` over the chunk), no copy beyond the user's own
//! writes. Variable-length arrays go as slices: `loan_slice_uninit(n)` on
//! the sending side, `receive_slice` on the receiving one. A received
//! payload whose length does not fit the view (not `size_of::<T>()`, or not
//! a multiple of it for a slice; sent by an untyped port) is released and
//! reported as [`RecvError::Corrupt`].

use crate::error::{OpenError, RecvError, SendError};
use crate::layout::{load_bytes, store_bytes, PayloadType, MAX_PAYLOAD_ALIGN, MAX_TYPE_NAME};
use crate::{
    Consumer, Exchange, Limits, Loan, Node, Pattern, PortError, Producer, Published, Publisher,
    Sample, Subscriber,
};
use std::marker::PhantomData;
use std::mem::{align_of, size_of, MaybeUninit};
use std::sync::atomic::Ordering;
use std::time::Duration;

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

impl Node {
    /// Creates exchange `name` for payloads of type `T`, as
    /// [`create_exchange`](Node::create_exchange) does. Fails with
    /// [`OpenError::InvalidLimits`] when `T` is aligned to more than
    /// [`MAX_PAYLOAD_ALIGN`] or larger than `limits.chunk_size`.
    pub fn create_typed_exchange<T: Payload>(
        &self,
        name: &str,
        pattern: Pattern,
        limits: Limits,
    ) -> Result<TypedExchange<T>, OpenError> {
        let ex = self.create_exchange_of(name, pattern, limits, &TypeInfo::of::<T>())?;
        Ok(TypedExchange::wrap(ex))
    }

    /// Opens the live exchange `name`, created for `T` (by Rust or C);
    /// [`OpenError::TypeMismatch`] when it was created for another type or
    /// untyped.
    pub fn open_typed_exchange<T: Payload>(
        &self,
        name: &str,
    ) -> Result<TypedExchange<T>, OpenError> {
        let ex = self.open_exchange_of(name, &TypeInfo::of::<T>())?;
        Ok(TypedExchange::wrap(ex))
    }

    /// [`create_typed_exchange`](Self::create_typed_exchange) with the
    /// descriptor given as a value (for bindings and tools): the exchange
    /// records `payload`, its handle is untyped.
    pub fn create_exchange_of(
        &self,
        name: &str,
        pattern: Pattern,
        limits: Limits,
        payload: &TypeInfo,
    ) -> Result<Exchange, OpenError> {
        Exchange::create(&self.inner, name, pattern, limits, payload)
    }

    /// [`open_typed_exchange`](Self::open_typed_exchange) with the descriptor
    /// given as a value: [`OpenError::TypeMismatch`] unless the exchange
    /// records exactly `payload`.
    pub fn open_exchange_of(&self, name: &str, payload: &TypeInfo) -> Result<Exchange, OpenError> {
        let ex = self.open_exchange(name)?;
        let found = ex.payload_type();
        if found != *payload {
            return Err(OpenError::TypeMismatch {
                exchange: name.to_string(),
                expected: Box::new(payload.clone()),
                found: Box::new(found),
            });
        }
        Ok(ex)
    }
}

/// A handle on an exchange of `T` payloads; its ports send and receive `T`.
/// [`untyped`](Self::untyped) gives the byte handle (for other patterns'
/// ports, limits, statistics).
pub struct TypedExchange<T> {
    ex: Exchange,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedExchange<T> {
    fn clone(&self) -> Self {
        TypedExchange::wrap(self.ex.clone())
    }
}

impl<T: Payload> std::fmt::Debug for TypedExchange<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedExchange")
            .field("exchange", &self.ex)
            .field("payload", &T::TYPE_NAME)
            .finish()
    }
}

impl<T> TypedExchange<T> {
    fn wrap(ex: Exchange) -> Self {
        TypedExchange {
            ex,
            _t: PhantomData,
        }
    }

    /// The untyped handle.
    pub fn untyped(&self) -> &Exchange {
        &self.ex
    }

    /// Attaches a publisher of `T` ([`Exchange::publisher`]).
    pub fn publisher(&self) -> Result<TypedPublisher<T>, PortError> {
        Ok(TypedPublisher {
            inner: self.ex.publisher()?,
            _t: PhantomData,
        })
    }

    /// Subscribes to `pattern` ([`Exchange::subscriber`]).
    pub fn subscriber(&self, pattern: &str, tag: u64) -> Result<TypedSubscriber<T>, PortError> {
        Ok(TypedSubscriber {
            inner: self.ex.subscriber(pattern, tag)?,
            _t: PhantomData,
        })
    }

    /// Attaches a fan-in producer of `T` ([`Exchange::producer`]).
    pub fn producer(&self) -> Result<TypedProducer<T>, PortError> {
        Ok(TypedProducer {
            inner: self.ex.producer()?,
            _t: PhantomData,
        })
    }

    /// Attaches the fan-in consumer ([`Exchange::consumer`]).
    pub fn consumer(&self) -> Result<TypedConsumer<T>, PortError> {
        Ok(TypedConsumer {
            inner: self.ex.consumer()?,
            _t: PhantomData,
        })
    }
}

/// A loaned chunk viewed as a `T` or a `[T]` (`MaybeUninit` before it is
/// written), in place in shared memory. Dropping it unsent returns the chunk.
pub struct TypedLoan<'a, V: ?Sized> {
    loan: Loan<'a>,
    /// The payload: checked in range, aligned and of the view's size when
    /// the loan was made; held by `loan` while it lives.
    ptr: *mut V,
}

impl<'a, T: Payload> TypedLoan<'a, MaybeUninit<T>> {
    fn new(mut loan: Loan<'a>) -> Result<Self, SendError> {
        let ptr = bytemuck::try_from_bytes_mut::<T>(&mut loan)
            .map_err(|_| SendError::Corrupt(shmex_core::Corrupt("loaned payload misplaced")))?
            as *mut T;
        Ok(TypedLoan {
            loan,
            ptr: ptr.cast(),
        })
    }

    /// Writes `value` into the chunk.
    pub fn write(mut self, value: T) -> TypedLoan<'a, T> {
        (*self).write(value);
        self.assume_init()
    }

    /// Takes the chunk's bytes as they are as a `T`. Safe, unlike
    /// `MaybeUninit::assume_init`: the chunk's bytes are initialised memory
    /// (they hold whatever it carried before) and every bit pattern is a
    /// valid `T` (`Pod`); the value is merely stale until written.
    pub fn assume_init(self) -> TypedLoan<'a, T> {
        TypedLoan {
            loan: self.loan,
            ptr: self.ptr.cast(),
        }
    }
}

impl<'a, T: Payload> TypedLoan<'a, [MaybeUninit<T>]> {
    fn slice(mut loan: Loan<'a>) -> Result<Self, SendError> {
        let ptr = bytemuck::try_cast_slice_mut::<u8, T>(&mut loan)
            .map_err(|_| SendError::Corrupt(shmex_core::Corrupt("loaned payload misplaced")))?
            as *mut [T];
        Ok(TypedLoan {
            loan,
            ptr: ptr as *mut [MaybeUninit<T>],
        })
    }

    /// Takes the chunk's bytes as they are as `[T]`; safe for the reasons
    /// given for a single value (write the elements first with
    /// `MaybeUninit::write`).
    pub fn assume_init(self) -> TypedLoan<'a, [T]> {
        TypedLoan {
            loan: self.loan,
            ptr: self.ptr as *mut [T],
        }
    }
}

impl<'a, V: ?Sized> TypedLoan<'a, V> {
    /// The byte loan underneath.
    pub fn into_untyped(self) -> Loan<'a> {
        self.loan
    }
}

impl<V: ?Sized> std::ops::Deref for TypedLoan<'_, V> {
    type Target = V;
    fn deref(&self) -> &V {
        // SAFETY: `ptr` was checked in range and aligned for `V` over the
        // loan's payload, which the loan holds (refcount) and nobody else
        // writes while it is unsent; `V` is a `Pod` type, a slice of one, or
        // `MaybeUninit` of those.
        unsafe { &*self.ptr }
    }
}

impl<V: ?Sized> std::ops::DerefMut for TypedLoan<'_, V> {
    fn deref_mut(&mut self) -> &mut V {
        // SAFETY: as in Deref; `&mut self` makes the view exclusive.
        unsafe { &mut *self.ptr }
    }
}

impl<V: ?Sized> std::fmt::Debug for TypedLoan<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedLoan")
            .field("len", &self.loan.len())
            .finish()
    }
}

/// A received `T` or `[T]`, read in place in shared memory; dropping it
/// releases the chunk. [`untyped`](Self::untyped) gives the tag, key and
/// sender.
pub struct TypedSample<'a, V: ?Sized> {
    sample: Sample<'a>,
    /// Checked in range, aligned and of the view's size on receipt; held by
    /// `sample` while it lives.
    ptr: *const V,
}

/// A payload of the wrong length for the exchange's type.
fn wrong_size() -> RecvError {
    RecvError::Corrupt(shmex_core::Corrupt(
        "payload size does not fit the exchange's type",
    ))
}

impl<'a, T: Payload> TypedSample<'a, T> {
    fn new(sample: Sample<'a>) -> Result<Self, RecvError> {
        let ptr =
            bytemuck::try_from_bytes::<T>(sample.payload()).map_err(|_| wrong_size())? as *const T;
        Ok(TypedSample { sample, ptr })
    }
}

impl<'a, T: Payload> TypedSample<'a, [T]> {
    fn slice(sample: Sample<'a>) -> Result<Self, RecvError> {
        let ptr = bytemuck::try_cast_slice::<u8, T>(sample.payload()).map_err(|_| wrong_size())?
            as *const [T];
        Ok(TypedSample { sample, ptr })
    }
}

impl<'a, V: ?Sized> TypedSample<'a, V> {
    /// The byte sample underneath (tag, routing key, sender).
    pub fn untyped(&self) -> &Sample<'a> {
        &self.sample
    }
}

impl<V: ?Sized> std::ops::Deref for TypedSample<'_, V> {
    type Target = V;
    fn deref(&self) -> &V {
        // SAFETY: `ptr` was checked in range and aligned for `V`, a `Pod`
        // type or a slice of one, valid for any bytes; the sample holds a
        // reference on the chunk, so the pool does not hand it out while we
        // read.
        unsafe { &*self.ptr }
    }
}

impl<V: ?Sized + std::fmt::Debug> std::fmt::Debug for TypedSample<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedSample").field(&&**self).finish()
    }
}

/// Views a received sample with `view`.
fn typed<'a, V: ?Sized>(
    r: Result<Option<Sample<'a>>, RecvError>,
    view: fn(Sample<'a>) -> Result<TypedSample<'a, V>, RecvError>,
) -> Result<Option<TypedSample<'a, V>>, RecvError> {
    r?.map(view).transpose()
}

/// The sending side of a publish-subscribe exchange of `T`.
pub struct TypedPublisher<T> {
    inner: Publisher,
    _t: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for TypedPublisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedPublisher")
            .field("port", &self.inner)
            .field("payload", &T::TYPE_NAME)
            .finish()
    }
}

impl<T: Payload> TypedPublisher<T> {
    /// Loans a chunk for one `T`, to write in place.
    pub fn loan_uninit(&self) -> Result<TypedLoan<'_, MaybeUninit<T>>, SendError> {
        TypedLoan::new(self.inner.loan(size_of::<T>())?)
    }

    /// Publishes a loan under routing `key` ([`Publisher::send_loan`]):
    /// zero-copy.
    pub fn send_loan(&self, key: &str, loan: TypedLoan<'_, T>) -> Result<Published, SendError> {
        self.inner.send_loan(key, loan.loan)
    }

    /// Publishes `value` under routing `key`, written straight into a chunk.
    pub fn send(&self, key: &str, value: &T) -> Result<Published, SendError> {
        self.send_loan(key, self.loan_uninit()?.write(*value))
    }

    /// Loans a chunk for `n` values of `T` (a variable-length array), to
    /// write in place; [`SendError::PayloadTooLarge`] beyond the chunk size.
    pub fn loan_slice_uninit(
        &self,
        n: usize,
    ) -> Result<TypedLoan<'_, [MaybeUninit<T>]>, SendError> {
        TypedLoan::slice(self.inner.loan(n.saturating_mul(size_of::<T>()))?)
    }

    /// Publishes a slice loan under routing `key`: zero-copy. Receivers
    /// take it with [`TypedSubscriber::receive_slice`].
    pub fn send_slice_loan(
        &self,
        key: &str,
        loan: TypedLoan<'_, [T]>,
    ) -> Result<Published, SendError> {
        self.inner.send_loan(key, loan.loan)
    }

    /// The byte publisher underneath.
    pub fn untyped(&self) -> &Publisher {
        &self.inner
    }
}

/// A fan-in producer of `T`.
pub struct TypedProducer<T> {
    inner: Producer,
    _t: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for TypedProducer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedProducer")
            .field("port", &self.inner)
            .field("payload", &T::TYPE_NAME)
            .finish()
    }
}

impl<T: Payload> TypedProducer<T> {
    /// Loans a chunk for one `T`, to write in place.
    pub fn loan_uninit(&self) -> Result<TypedLoan<'_, MaybeUninit<T>>, SendError> {
        TypedLoan::new(self.inner.loan(size_of::<T>())?)
    }

    /// Sends a loan with `tag` ([`Producer::send_loan`]): zero-copy.
    pub fn send_loan(&self, tag: u64, loan: TypedLoan<'_, T>) -> Result<(), SendError> {
        self.inner.send_loan(tag, loan.loan)
    }

    /// Sends `value` with `tag`, written straight into a chunk.
    pub fn send(&self, tag: u64, value: &T) -> Result<(), SendError> {
        self.send_loan(tag, self.loan_uninit()?.write(*value))
    }

    /// Loans a chunk for `n` values of `T`, as
    /// [`TypedPublisher::loan_slice_uninit`] does.
    pub fn loan_slice_uninit(
        &self,
        n: usize,
    ) -> Result<TypedLoan<'_, [MaybeUninit<T>]>, SendError> {
        TypedLoan::slice(self.inner.loan(n.saturating_mul(size_of::<T>()))?)
    }

    /// Sends a slice loan with `tag`: zero-copy. The consumer takes it with
    /// [`TypedConsumer::receive_slice`].
    pub fn send_slice_loan(&self, tag: u64, loan: TypedLoan<'_, [T]>) -> Result<(), SendError> {
        self.inner.send_loan(tag, loan.loan)
    }

    /// The byte producer underneath.
    pub fn untyped(&self) -> &Producer {
        &self.inner
    }
}

/// A receiving typed port: the byte port `$inner` underneath, its receives
/// viewed as `T` or `[T]` (one definition for the subscriber and the
/// consumer, whose receives have the same shape).
macro_rules! typed_receiver {
    ($(#[$doc:meta])* $name:ident, $inner:ident, $slice_sender:literal) => {
        $(#[$doc])*
        pub struct $name<T> {
            inner: $inner,
            _t: PhantomData<fn() -> T>,
        }

        impl<T: Payload> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("port", &self.inner)
                    .field("payload", &T::TYPE_NAME)
                    .finish()
            }
        }

        impl<T: Payload> $name<T> {
            #[doc = concat!("Takes the next `T` if one is queued ([`", stringify!($inner), "::try_receive`]).")]
            pub fn try_receive(&self) -> Result<Option<TypedSample<'_, T>>, RecvError> {
                typed(self.inner.try_receive(), TypedSample::new)
            }

            #[doc = concat!("Waits for the next `T` ([`", stringify!($inner), "::receive`]).")]
            pub fn receive(&self) -> Result<TypedSample<'_, T>, RecvError> {
                TypedSample::new(self.inner.receive()?)
            }

            /// Waits at most `timeout` for the next `T`.
            pub fn receive_timeout(&self, timeout: Duration) -> Result<TypedSample<'_, T>, RecvError> {
                TypedSample::new(self.inner.receive_timeout(timeout)?)
            }

            #[doc = concat!("Takes the next `[T]` if one is queued (sent with [`", $slice_sender, "`]).")]
            pub fn try_receive_slice(&self) -> Result<Option<TypedSample<'_, [T]>>, RecvError> {
                typed(self.inner.try_receive(), TypedSample::slice)
            }

            /// Waits for the next `[T]`.
            pub fn receive_slice(&self) -> Result<TypedSample<'_, [T]>, RecvError> {
                TypedSample::slice(self.inner.receive()?)
            }

            /// Waits at most `timeout` for the next `[T]`.
            pub fn receive_slice_timeout(
                &self,
                timeout: Duration,
            ) -> Result<TypedSample<'_, [T]>, RecvError> {
                TypedSample::slice(self.inner.receive_timeout(timeout)?)
            }

            #[doc = concat!("The byte port underneath ([`", stringify!($inner), "`]).")]
            pub fn untyped(&self) -> &$inner {
                &self.inner
            }
        }
    };
}

typed_receiver!(
    /// A subscriber of a publish-subscribe exchange of `T`.
    TypedSubscriber,
    Subscriber,
    "TypedPublisher::send_slice_loan"
);

typed_receiver!(
    /// The consumer of a fan-in exchange of `T`.
    TypedConsumer,
    Consumer,
    "TypedProducer::send_slice_loan"
);

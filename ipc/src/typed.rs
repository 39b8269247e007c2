//! Typed exchanges: an exchange created for one payload type `T`, whose
//! ports send and receive `T` values in place instead of bytes.
//!
//! The exchange header records a type descriptor ([`TypeInfo`]: name, size,
//! alignment, layout hash) at creation; [`Node::open_typed_exchange`] and
//! [`Node::open_or_create_typed_exchange`] refuse an exchange whose
//! descriptor differs from `T`'s with [`OpenError::TypeMismatch`] naming
//! both. Untyped handles ([`Node::open_exchange`],
//! [`Node::open_or_create_exchange`]) still open a typed exchange (tools,
//! C); an untyped exchange holds the descriptor [`TypeInfo::bytes`].
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
//! Payloads are aligned to [`MAX_PAYLOAD_ALIGN`](crate::MAX_PAYLOAD_ALIGN) (16) bytes; creating an
//! exchange for a type aligned to more fails. Typed ports are thin wrappers
//! over the byte ports: a loan is written in place and a sample is read in
//! place (cast with `bytemuck` over the chunk), no copy beyond the user's own
//! writes. Variable-length arrays go as slices: `loan_slice_uninit(n)` on
//! the sending side, `receive_slice` on the receiving one. A received
//! payload whose length does not fit the view (not `size_of::<T>()`, or not
//! a multiple of it for a slice; sent by an untyped port) is released and
//! reported as [`RecvError::Corrupt`].

use crate::error::{OpenError, RecvError, SendError};
use crate::{
    Consumer, Exchange, Limits, Loan, Node, Pattern, PortError, Producer, Published, Publisher,
    Sample, Subscriber,
};
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::time::Duration;

pub use crate::payload::{hash_bytes, layout_hash_of, Payload, TypeInfo, HASH_SEED};

impl Node {
    /// Creates exchange `name` for payloads of type `T`, as
    /// [`create_exchange`](Node::create_exchange) does. Fails with
    /// [`OpenError::InvalidLimits`] when `T` is aligned to more than
    /// [`MAX_PAYLOAD_ALIGN`](crate::MAX_PAYLOAD_ALIGN) or larger than `limits.chunk_size`.
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
    /// [`OpenError::TypeMismatch`] when it was created for another type,
    /// untyped, or with a response type as well
    /// ([`open_typed_rpc_exchange`](Self::open_typed_rpc_exchange)).
    pub fn open_typed_exchange<T: Payload>(
        &self,
        name: &str,
    ) -> Result<TypedExchange<T>, OpenError> {
        let ex = self.open_exchange_of(name, &TypeInfo::of::<T>())?;
        Ok(TypedExchange::wrap(ex))
    }

    /// Opens exchange `name` created for `T`, or creates it for `T` when it
    /// does not exist (as [`open_or_create_exchange`](Self::open_or_create_exchange)
    /// does, same pattern and limits required).
    /// [`OpenError::TypeMismatch`] when it exists for another type or
    /// untyped.
    pub fn open_or_create_typed_exchange<T: Payload>(
        &self,
        name: &str,
        pattern: Pattern,
        limits: Limits,
    ) -> Result<TypedExchange<T>, OpenError> {
        let ex = self.open_or_create_exchange_of(name, pattern, limits, &TypeInfo::of::<T>())?;
        Ok(TypedExchange::wrap(ex))
    }

    /// [`open_or_create_typed_exchange`](Self::open_or_create_typed_exchange)
    /// with the descriptor given as a value: an existing exchange must
    /// record exactly `payload` ([`TypeInfo::bytes`] for untyped ones).
    pub fn open_or_create_exchange_of(
        &self,
        name: &str,
        pattern: Pattern,
        limits: Limits,
        payload: &TypeInfo,
    ) -> Result<Exchange, OpenError> {
        Exchange::open_or_create(&self.inner, name, pattern, limits, Some(payload))
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
        Exchange::create(
            &self.inner,
            name,
            pattern,
            limits,
            payload,
            &TypeInfo::bytes(),
        )
    }

    /// [`open_typed_exchange`](Self::open_typed_exchange) with the descriptor
    /// given as a value: [`OpenError::TypeMismatch`] unless the exchange
    /// records exactly `payload` (and no response type: a typed
    /// request-response exchange opens with
    /// [`open_rpc_exchange_of`](Self::open_rpc_exchange_of)).
    pub fn open_exchange_of(&self, name: &str, payload: &TypeInfo) -> Result<Exchange, OpenError> {
        let ex = self.open_exchange(name)?;
        ex.check_types(payload, &TypeInfo::bytes())?;
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
    pub(crate) fn new(mut loan: Loan<'a>) -> Result<Self, SendError> {
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

/// `bytes` viewed as one `T`: exactly `size_of::<T>()` long and aligned,
/// else [`RecvError::Corrupt`].
pub(crate) fn view<T: Payload>(bytes: &[u8]) -> Result<*const T, RecvError> {
    Ok(bytemuck::try_from_bytes::<T>(bytes).map_err(|_| wrong_size())? as *const T)
}

impl<'a, T: Payload> TypedSample<'a, T> {
    pub(crate) fn new(sample: Sample<'a>) -> Result<Self, RecvError> {
        let ptr = view::<T>(sample.payload())?;
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
pub(crate) fn typed<'a, V: ?Sized>(
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

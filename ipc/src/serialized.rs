//! Payloads of [`serde`] types, for values that are not `Pod` (strings,
//! vectors, enums with data): feature `serde`, off by default.
//!
//! A sender serializes the value straight into a loaned chunk
//! ([`Loan::write_serialized`], or `send_serialized` on each sending port);
//! a receiver deserializes it out of the chunk ([`Sample::deserialize`]).
//! **Both are copies**, unlike `Pod` payloads and [typed](crate::typed)
//! exchanges, which are read in place: the value is encoded into the
//! chunk's bytes and decoded into a new value owned by the receiver. The
//! chunk itself still travels without a copy, and the encoding needs no
//! buffer of its own (nothing is allocated on the sending side).
//!
//! The wire format is [postcard](https://docs.rs/postcard)'s: compact
//! (variable-length integers, no field names), with a stable, written
//! specification (postcard 1.0), `no_std` (a C or embedded peer can
//! implement it), serde-native, and it encodes into a caller's `&mut [u8]`
//! without allocating, which is what writing into a chunk needs. It is not
//! self-describing: both ends must agree on the type, as with `Pod`.
//!
//! Payload bytes are untrusted input ([crate docs](crate#what-shared-memory-may-do-to-you)):
//! bytes that are not an encoding of the type asked for give
//! [`SerialError::Decode`] or [`SerialError::TrailingBytes`], never a panic;
//! a length prefix claiming more than the payload holds allocates nothing
//! up front (postcard checks strings and sequences against the bytes left,
//! serde caps any preallocation at 1 MiB). One limit: postcard has no nesting limit, so a recursive type
//! (`enum Tree { Leaf, Node(Box<Tree>) }`) lets a payload one byte per level
//! deep exhaust the stack; deserialize such types only from trusted peers,
//! or bound the chunk size.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use shmex::{Limits, Node, Pattern};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Order { item: String, quantities: Vec<u32> }
//!
//! let node = Node::builder("example").namespace(format!("doc-serde-{}", std::process::id())).create()?;
//! let ex = node.create_exchange("orders", Pattern::PublishSubscribe, Limits::default())?;
//! let sub = ex.subscriber("orders.#", 0)?;
//! let order = Order { item: "tea".into(), quantities: vec![2, 3] };
//! ex.publisher()?.send_serialized("orders.new", &order)?;
//! let copy: Order = sub.receive()?.deserialize()?;
//! assert_eq!(copy, order);
//! # Ok::<(), shmex::Error>(())
//! ```

use crate::{
    Client, Delivery, Loan, OwnedDelivery, OwnedLoan, OwnedSample, Producer, Published, Publisher,
    Request, Sample, SerialError, Submitter,
};
use serde::{de::DeserializeOwned, Serialize};

/// Serializes `value` into `chunk` (a whole chunk), returning the length of
/// its encoding.
fn encode<T: Serialize + ?Sized>(value: &T, chunk: &mut [u8]) -> Result<usize, SerialError> {
    let max = chunk.len();
    match postcard::to_slice(value, chunk) {
        Ok(used) => Ok(used.len()),
        Err(postcard::Error::SerializeBufferFull) => Err(SerialError::TooLarge { max }),
        Err(e) => Err(SerialError::Encode(e)),
    }
}

/// Deserializes a `T` from all of `payload`.
fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, SerialError> {
    let type_name = std::any::type_name::<T>();
    let len = payload.len();
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(SerialError::TrailingBytes {
            type_name,
            len,
            used: len - rest.len(),
        }),
        Err(source) => Err(SerialError::Decode {
            type_name,
            len,
            source,
        }),
    }
}

impl Loan<'_> {
    /// Serializes `value` into the loan's chunk (postcard, see
    /// [`serialized`](crate::serialized)) and sets the payload length to
    /// the encoding's. A copy, unlike writing a `Pod` in place.
    /// [`SerialError::TooLarge`] when the encoding exceeds the chunk size
    /// (the length is then unchanged, the bytes may be overwritten).
    pub fn write_serialized<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), SerialError> {
        let old = self.len;
        self.len = self.ex.limits.chunk_size as usize;
        let written = encode(value, &mut self[..]);
        self.len = *written.as_ref().unwrap_or(&old);
        written.map(drop)
    }
}

impl OwnedLoan {
    /// [`Loan::write_serialized`] for an owned loan.
    pub fn write_serialized<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), SerialError> {
        let old = self.len();
        self.set_len(self.capacity())?;
        let written = encode(value, &mut self[..]);
        self.set_len(*written.as_ref().unwrap_or(&old))?;
        written.map(drop)
    }
}

impl Publisher {
    /// Serializes `value` into a loaned chunk and publishes it under routing
    /// `key`, as [`send_loan`](Self::send_loan) does. A copy into the
    /// chunk (see [`Loan::write_serialized`]).
    pub fn send_serialized<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<Published, SerialError> {
        let mut loan = self.loan(0)?;
        loan.write_serialized(value)?;
        Ok(self.send_loan(key, loan)?)
    }
}

impl Producer {
    /// Serializes `value` into a loaned chunk and sends it with `tag`, as
    /// [`send_loan`](Self::send_loan) does. A copy into the chunk (see
    /// [`Loan::write_serialized`]).
    pub fn send_serialized<T: Serialize + ?Sized>(
        &self,
        tag: u64,
        value: &T,
    ) -> Result<(), SerialError> {
        let mut loan = self.loan(0)?;
        loan.write_serialized(value)?;
        Ok(self.send_loan(tag, loan)?)
    }
}

impl Client {
    /// Serializes `value` into a loaned chunk and sends it as request
    /// `tag`, as [`send_loan`](Self::send_loan) does. A copy into the
    /// chunk (see [`Loan::write_serialized`]).
    pub fn send_serialized<T: Serialize + ?Sized>(
        &self,
        tag: u64,
        value: &T,
    ) -> Result<(), SerialError> {
        let mut loan = self.loan(0)?;
        loan.write_serialized(value)?;
        Ok(self.send_loan(tag, loan)?)
    }
}

impl Submitter {
    /// Serializes `value` into a loaned chunk and submits it with `task`'s
    /// priority and tag, as [`send_loan`](Self::send_loan) does. A copy into
    /// the chunk (see [`Loan::write_serialized`]).
    pub fn send_serialized<T: Serialize + ?Sized>(
        &self,
        task: crate::Submit,
        value: &T,
    ) -> Result<(), SerialError> {
        let mut loan = self.loan(0)?;
        loan.write_serialized(value)?;
        Ok(self.send_loan(task, loan)?)
    }
}

impl Request<'_> {
    /// Serializes `value` into a loaned chunk and answers with it, as
    /// [`respond_loan`](Self::respond_loan) does. A copy into the chunk
    /// (see [`Loan::write_serialized`]). Like [`respond`](Self::respond),
    /// it consumes the request: when the loan or the encoding fails, the
    /// request is dropped unanswered (the client sees
    /// [`FailReason::Unanswered`](crate::FailReason::Unanswered)).
    pub fn respond_serialized<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SerialError> {
        // The server port's core, as `respond` loans from.
        let core = self.core;
        let mut loan = core.loan(0)?;
        loan.write_serialized(value)?;
        Ok(self.respond_loan(loan)?)
    }
}

/// `deserialize` for receiving types whose payload is `&*self`.
macro_rules! deserialize_from_payload {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// Deserializes the payload as a `T` (postcard, see
            /// [`serialized`](crate::serialized)): a copy out of the chunk,
            /// unlike [`as_pod`](crate::Sample::as_pod)'s view in place.
            /// Bytes that are not exactly one encoding of a `T` give
            /// [`SerialError::Decode`] or [`SerialError::TrailingBytes`].
            pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, SerialError> {
                decode(&self[..])
            }
        }
    )*};
}

deserialize_from_payload!(Sample<'_>, OwnedSample, Delivery<'_>, OwnedDelivery);

//! Typed task distribution: on a task exchange created for `T`
//! ([`Node::create_typed_exchange`](crate::Node::create_typed_exchange) with
//! [`Pattern::Tasks`](crate::Pattern::Tasks)), submitters send `T` values
//! written in place and workers read them in place, then ack or nack each.
//!
//! ```
//! let node = shmex::Node::builder("example")
//!     .namespace(format!("doc-typed-tasks-{}", std::process::id()))
//!     .create()?;
//! let ex = node.create_typed_exchange::<[u32; 4]>("jobs", shmex::Pattern::Tasks, Default::default())?;
//! let (submitter, worker) = (ex.submitter()?, ex.worker(1)?);
//! submitter.send(shmex::Submit::new().tag(10), &[1, 2, 3, 4])?;
//! let task = worker.receive()?;
//! assert_eq!((task.untyped().tag(), task.iter().sum::<u32>()), (10, 10));
//! task.ack()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::{RecvError, SendError, TaskError};
use crate::typed::{view, Payload, TypedExchange, TypedLoan};
use crate::{Delivery, PortError, Submit, Submitter, Worker};
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::time::Duration;

impl<T> TypedExchange<T> {
    /// Attaches a task submitter of `T` ([`Exchange::submitter`](crate::Exchange::submitter)).
    pub fn submitter(&self) -> Result<TypedSubmitter<T>, PortError> {
        Ok(TypedSubmitter {
            inner: self.untyped().submitter()?,
            _t: PhantomData,
        })
    }

    /// Attaches a task worker of `T` taking at most `prefetch_limit` tasks
    /// at once ([`Exchange::worker`](crate::Exchange::worker)).
    pub fn worker(&self, prefetch_limit: u32) -> Result<TypedWorker<T>, PortError> {
        Ok(TypedWorker {
            inner: self.untyped().worker(prefetch_limit)?,
            _t: PhantomData,
        })
    }
}

/// The submitting side of a task exchange of `T`.
pub struct TypedSubmitter<T> {
    inner: Submitter,
    _t: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for TypedSubmitter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedSubmitter")
            .field("port", &self.inner)
            .field("payload", &T::TYPE_NAME)
            .finish()
    }
}

impl<T: Payload> TypedSubmitter<T> {
    /// Loans a chunk for one `T`, to write in place.
    pub fn loan_uninit(&self) -> Result<TypedLoan<'_, MaybeUninit<T>>, SendError> {
        TypedLoan::new(self.inner.loan(size_of::<T>())?)
    }

    /// Submits a loan with `task`'s priority and tag
    /// ([`Submitter::send_loan`]): zero-copy.
    pub fn send_loan(&self, task: Submit, loan: TypedLoan<'_, T>) -> Result<(), SendError> {
        self.inner.send_loan(task, loan.into_untyped())
    }

    /// Submits `value` with `task`'s priority and tag, written straight into
    /// a chunk.
    pub fn send(&self, task: Submit, value: &T) -> Result<(), SendError> {
        self.send_loan(task, self.loan_uninit()?.write(*value))
    }

    /// The byte submitter underneath.
    pub fn untyped(&self) -> &Submitter {
        &self.inner
    }
}

/// The working side of a task exchange of `T`: takes tasks as
/// [`TypedDelivery`]s, within its prefetch limit, and acks or nacks each.
pub struct TypedWorker<T> {
    inner: Worker,
    _t: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for TypedWorker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedWorker")
            .field("port", &self.inner)
            .field("payload", &T::TYPE_NAME)
            .finish()
    }
}

impl<T: Payload> TypedWorker<T> {
    /// Takes the next task if one is ready ([`Worker::try_receive`]). A task of
    /// the wrong length (submitted by an untyped port) is nacked without
    /// requeue (to the dead-letter queue) and reported as
    /// [`RecvError::Corrupt`].
    pub fn try_receive(&self) -> Result<Option<TypedDelivery<'_, T>>, RecvError> {
        self.inner
            .try_receive()?
            .map(TypedDelivery::new)
            .transpose()
    }

    /// Waits for the next task ([`Worker::receive`]).
    pub fn receive(&self) -> Result<TypedDelivery<'_, T>, RecvError> {
        TypedDelivery::new(self.inner.receive()?)
    }

    /// Waits at most `timeout` for the next task.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<TypedDelivery<'_, T>, RecvError> {
        TypedDelivery::new(self.inner.receive_timeout(timeout)?)
    }

    /// The byte worker underneath (prefetch, dead letters, ack by id).
    pub fn untyped(&self) -> &Worker {
        &self.inner
    }
}

/// A task of `T` held by a worker, read in place (`Deref<Target = T>`); the
/// bytes stay the task's as [`Delivery::payload`] says. Ack or nack it;
/// dropping it leaves the task held until its ack timeout.
pub struct TypedDelivery<'a, T> {
    delivery: Delivery<'a>,
    /// Checked in range, aligned and of `T`'s size on receipt; held by
    /// `delivery` while it lives.
    ptr: *const T,
}

impl<'a, T: Payload> TypedDelivery<'a, T> {
    fn new(delivery: Delivery<'a>) -> Result<Self, RecvError> {
        match view::<T>(delivery.payload()) {
            Ok(ptr) => Ok(TypedDelivery { delivery, ptr }),
            Err(e) => {
                // Never viewed, never lost: dead-lettered.
                let _ = delivery.nack(false);
                Err(e)
            }
        }
    }

    /// Acks it ([`Delivery::ack`]).
    pub fn ack(self) -> Result<(), TaskError> {
        self.delivery.ack()
    }

    /// Nacks it ([`Delivery::nack`]): back to the ready queue when
    /// `requeue`, else to the dead-letter queue.
    pub fn nack(self, requeue: bool) -> Result<(), TaskError> {
        self.delivery.nack(requeue)
    }

    /// The byte delivery underneath (id, tag, priority, delivery count).
    pub fn untyped(&self) -> &Delivery<'a> {
        &self.delivery
    }
}

impl<T> std::ops::Deref for TypedDelivery<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` was checked in range and aligned for `T`, a `Pod`
        // type valid for any bytes, over the payload `Delivery` derefs to
        // (same chunk and length, under the same terms: see
        // `Delivery::payload`).
        unsafe { &*self.ptr }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for TypedDelivery<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedDelivery")
            .field("id", &self.delivery.id())
            .field("payload", &**self)
            .finish()
    }
}

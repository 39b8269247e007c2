//! Fan-in (inverted publish-subscribe): many producers, one consumer.
//!
//! Producers push into the consumer's inbox, a many-producer ring: they never
//! wait for each other beyond a CAS retry, and the consumer sees each
//! producer's messages in the order that producer sent them. A full inbox is
//! an error for the producer ([`SendError::QueueFull`]), never a silent drop.

use crate::error::{PortError, RecvError, SendError};
use crate::exchange::{Exchange, PortCore, Role, Targets, FLAG_FANIN, FLAG_SOLE};
use crate::sample::{Loan, Sample, SenderId};
use crate::waitset::{blocking, waitable};
use crate::waitset::{WaitNode, Waitable};
use shmex_core::ring::{Descriptor, PushError};
use std::cell::RefCell;
use std::time::Duration;

impl Exchange {
    /// Attaches a producer (fan-in exchanges).
    pub fn producer(&self) -> Result<Producer, PortError> {
        Ok(Producer {
            core: self.inner.attach(Role::Producer, 0, b"")?,
            consumer: RefCell::default(),
        })
    }

    /// Attaches the consumer (fan-in exchanges; one per exchange, else
    /// [`PortError::ConsumerExists`]).
    pub fn consumer(&self) -> Result<Consumer, PortError> {
        Ok(Consumer {
            core: self.inner.attach(Role::Consumer, 0, b"")?,
        })
    }
}

/// One of the many sending sides of a fan-in exchange.
///
/// ```no_run
/// # fn f(ex: &shmex::Exchange) -> Result<(), Box<dyn std::error::Error>> {
/// let producer = ex.producer()?;
/// producer.send(1, b"log line")?;
/// # Ok(()) }
/// ```
pub struct Producer {
    core: PortCore,
    consumer: RefCell<Targets>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug_struct(f, "Producer").finish()
    }
}

impl Producer {
    /// This producer's id, as [`Sample::sender`] reports it to the consumer.
    pub fn id(&self) -> SenderId {
        SenderId::new(self.core.index, self.core.generation)
    }

    /// Loans a chunk for a message of `len` bytes, to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        self.core.loan(len)
    }

    /// Sends a copy of `payload` with `tag`.
    pub fn send(&self, tag: u64, payload: &[u8]) -> Result<(), SendError> {
        let loan = self.core.loan_copy(payload)?;
        self.send_loan(tag, loan)
    }

    /// Sends a loaned chunk with `tag` (zero-copy). Errors:
    /// [`SendError::NoConsumer`], [`SendError::QueueFull`]; on error the chunk
    /// returns to the pool.
    pub fn send_loan(&self, tag: u64, loan: Loan<'_>) -> Result<(), SendError> {
        loan.check_owner(&self.core.ex)?;
        let ex = &self.core.ex;
        let mut consumer = self.consumer.borrow_mut();
        consumer.reclaim_if_wanted(ex);
        let _op = self.core.enter()?;
        consumer.refresh(ex, Role::Consumer);
        let Some(t) = consumer.list.first_mut() else {
            return Err(SendError::NoConsumer);
        };
        let (chunk, len, owner) = loan.into_raw();
        let d = Descriptor {
            chunk,
            len,
            flags: FLAG_FANIN | FLAG_SOLE | owner,
            tag,
            meta: self.core.address(),
        };
        match ex.deliver_to(t, &d) {
            Ok(()) => {
                self.core.after_send();
                Ok(())
            }
            Err(PushError::Full) => {
                ex.give_back(chunk);
                consumer.note_full(&ex.node);
                Err(SendError::QueueFull)
            }
            Err(PushError::Corrupt(c)) => {
                ex.give_back(chunk);
                Err(c.into())
            }
        }
    }
}

/// The single receiving side of a fan-in exchange.
pub struct Consumer {
    core: PortCore,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug_struct(f, "Consumer").finish()
    }
}

impl Consumer {
    /// Returns the next message if one is there; [`Sample::sender`] tells which
    /// producer sent it.
    pub fn try_receive(&self) -> Result<Option<Sample<'_>>, RecvError> {
        let _op = self.core.enter()?;
        self.core.ex.flush_deferred(self.core.index);
        match self.core.pop() {
            Some(d) => Ok(Some(Sample::from_descriptor(&self.core, &d)?)),
            None => Ok(None),
        }
    }

    /// Blocks until a message arrives.
    pub fn receive(&self) -> Result<Sample<'_>, RecvError> {
        blocking(&self.core, None, || self.try_receive())
    }

    /// Blocks at most `timeout`; [`RecvError::Timeout`] after.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Sample<'_>, RecvError> {
        blocking(&self.core, Some(timeout), || self.try_receive())
    }
}

waitable!(Consumer);

//! Publish-subscribe with AMQP topic routing.
//!
//! A publication is one chunk, shared by every matching subscriber through
//! the chunk's reference count; it returns to the pool when the last of them
//! drops it. Delivery policy when a subscriber's inbox is full: that
//! subscriber misses the publication (its gap count grows by one), the
//! publisher is told in [`Published::missed`], and neither the publisher nor
//! the other subscribers wait. Each subscriber sees publications in the order
//! each publisher published them.

use crate::error::{PortError, RecvError, SendError};
use crate::exchange::{Exchange, PortCore, Role, Targets, FLAG_PUBLISH, FLAG_SOLE};
use crate::layout::store_bytes;
use crate::owned::OwnedLoan;
use crate::sample::{Loan, Sample};
use crate::topic::Topic;
use crate::waitset::{blocking, waitable};
use crate::waitset::{WaitNode, Waitable};
use shmex_core::ring::{Descriptor, PushError};
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Exchange {
    /// Attaches a publisher (publish-subscribe exchanges).
    pub fn publisher(&self) -> Result<Publisher, PortError> {
        Ok(Publisher {
            core: self.inner.attach(Role::Publisher, 0, b"")?,
            subscribers: RefCell::default(),
        })
    }

    /// Subscribes with a topic `pattern` (`*` one word, `#` zero or more) and
    /// a `tag` every delivery will carry.
    pub fn subscriber(&self, pattern: &str, tag: u64) -> Result<Subscriber, PortError> {
        let topic = Topic::parse(pattern).map_err(|reason| PortError::InvalidTopic {
            pattern: pattern.to_string(),
            reason,
        })?;
        drop(topic);
        Ok(Subscriber {
            core: self
                .inner
                .attach(Role::Subscriber, tag, pattern.as_bytes())?,
            pattern: pattern.to_string(),
            tag,
        })
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Subscribers the publication was queued for.
    pub delivered: u32,
    /// Matching subscribers whose inbox was full: they missed it.
    pub missed: u32,
}

/// The sending side of a publish-subscribe exchange.
///
/// ```no_run
/// # fn f(ex: &shmex::Exchange) -> Result<(), Box<dyn std::error::Error>> {
/// let publisher = ex.publisher()?;
/// let report = publisher.send("sensors.kitchen.temp", b"21.5")?;
/// println!("{} delivered, {} missed", report.delivered, report.missed);
/// # Ok(()) }
/// ```
pub struct Publisher {
    core: PortCore,
    subscribers: RefCell<Targets>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug_struct(f, "Publisher").finish()
    }
}

impl Publisher {
    /// Loans a chunk for a publication of `len` bytes, to write in place.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        self.core.loan(len)
    }

    /// Publishes a copy of `payload` under routing `key`.
    pub fn send(&self, key: &str, payload: &[u8]) -> Result<Published, SendError> {
        let loan = self.core.loan_copy(payload)?;
        self.send_loan(key, loan)
    }

    /// Publishes an owned loan ([`Loan::into_owned`]) of this publisher as
    /// [`send_loan`](Self::send_loan) does; [`SendError::ForeignLoan`]
    /// for another port's (that loan is dropped).
    pub fn send_owned(&self, key: &str, loan: OwnedLoan) -> Result<Published, SendError> {
        self.send_loan(key, loan.into_loan(&self.core)?)
    }

    /// Publishes a loaned chunk under routing `key` (zero-copy): every
    /// matching subscriber receives the same chunk. With no match the chunk
    /// returns to the pool and `delivered` is 0.
    pub fn send_loan(&self, key: &str, loan: Loan<'_>) -> Result<Published, SendError> {
        loan.check_owner(&self.core.ex)?;
        let ex = &self.core.ex;
        let mut subs = self.subscribers.borrow_mut();
        subs.reclaim_if_wanted(ex);
        let _op = self.core.enter()?;
        subs.refresh(ex, Role::Subscriber);
        // Validates the key (length, no wildcard words) before it is copied.
        subs.match_key(key)
            .map_err(|reason| SendError::InvalidKey {
                key: key.to_string(),
                reason,
            })?;
        let header = ex
            .chunk_header(loan.chunk)
            .ok_or(shmex_core::Corrupt("loaned chunk out of range"))?;
        let key_area = ex
            .chunk_key(loan.chunk)
            .ok_or(shmex_core::Corrupt("loaned chunk out of range"))?;
        let words = key_area
            .0
            .get(..key.len().div_ceil(8))
            .ok_or(SendError::InvalidKey {
                key: key.to_string(),
                reason: "longer than 192 bytes",
            })?;
        header.key_len.store(key.len() as u32, Ordering::Relaxed);
        store_bytes(words, key.as_bytes());
        let (chunk, len, owner) = loan.into_raw();
        let mut report = Published::default();
        let Targets { list, matched, .. } = &mut *subs;
        let sole = matched.len() == 1;
        if matched.is_empty() {
            ex.give_back(chunk);
            return Ok(report);
        }
        if !sole {
            // Nobody else sees the chunk yet: a plain store, not a locked
            // add. One reference per subscriber plus ours for the loop.
            if let Err(c) = ex.pool().set_refcount(chunk, 1 + matched.len() as u32) {
                ex.give_back(chunk);
                return Err(c.into());
            }
        }
        let flags = FLAG_PUBLISH | owner | if sole { FLAG_SOLE } else { 0 };
        for &i in matched.iter() {
            let t = &mut list[i];
            let d = Descriptor {
                chunk,
                len,
                flags,
                tag: t.tag,
                meta: self.core.address(),
            };
            match ex.deliver_to(t, &d) {
                Ok(()) => report.delivered += 1,
                Err(PushError::Full) | Err(PushError::Corrupt(_)) => {
                    report.missed += 1;
                    if let Some(p) = ex.port(t.index) {
                        p.gaps.fetch_add(1, Ordering::Relaxed);
                    }
                    if sole {
                        ex.give_back(chunk);
                    } else {
                        ex.release_ref(chunk);
                    }
                }
            }
        }
        if !sole {
            ex.release_ref(chunk);
        }
        self.core.after_send();
        if report.missed > 0 {
            subs.note_full(&ex.node);
        }
        Ok(report)
    }
}

/// The receiving side of a publish-subscribe exchange: one topic pattern, one
/// tag. Drop it (or call [`unsubscribe`](Self::unsubscribe)) to stop.
pub struct Subscriber {
    core: PortCore,
    pattern: String,
    tag: u64,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core
            .debug_struct(f, "Subscriber")
            .field("pattern", &self.pattern)
            .field("tag", &self.tag)
            .finish()
    }
}

impl Subscriber {
    /// The topic pattern.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The subscription tag.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// Publications this subscriber missed because its inbox was full, since
    /// it subscribed.
    pub fn gaps(&self) -> u64 {
        self.core
            .ex
            .port(self.core.index)
            .map_or(0, |p| p.gaps.load(Ordering::Relaxed))
    }

    /// Leaves the exchange; queued publications are released.
    pub fn unsubscribe(self) {}

    /// Returns the next publication if one is there.
    pub fn try_receive(&self) -> Result<Option<Sample<'_>>, RecvError> {
        let _op = self.core.enter()?;
        self.core.ex.flush_deferred(self.core.index);
        let Some(d) = self.core.pop() else {
            return Ok(None);
        };
        let mut sample = Sample::from_descriptor(&self.core, &d)?;
        sample.publication = true;
        Ok(Some(sample))
    }

    /// Blocks until a publication arrives.
    pub fn receive(&self) -> Result<Sample<'_>, RecvError> {
        blocking(&self.core, None, || self.try_receive())
    }

    /// Blocks at most `timeout`; [`RecvError::Timeout`] after.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Sample<'_>, RecvError> {
        blocking(&self.core, Some(timeout), || self.try_receive())
    }
}

waitable!(Subscriber);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Node, Pattern};

    /// A return ring that lists one chunk twice (forged, or corrupted) made
    /// its owner loan that chunk twice (issue 12 item 6). Now the second
    /// pop finds it held by the port already and leaves it alone.
    #[test]
    fn a_chunk_twice_in_the_return_ring_is_loaned_once() {
        let ns = format!("unit-dup-{}", std::process::id());
        let node = Node::builder("t").namespace(&ns).create().expect("node");
        let limits = Limits {
            chunk_size: 64,
            chunk_count: 4,
            queue_depth: 4,
            max_ports: 2,
            ..Limits::default()
        };
        let ex = node
            .create_exchange("x", Pattern::PublishSubscribe, limits)
            .expect("create");
        let p = ex.publisher().expect("publisher");
        let c = p.loan(8).expect("loan").chunk; // dropped: back in p's return ring
        p.core.ex.return_free(c, Some(p.core.index), true); // ... and again
        let a = p.loan(8).expect("first loan");
        let b = p.loan(8).expect("second loan");
        assert_ne!(a.chunk, b.chunk, "one chunk loaned twice");
        drop((a, b));
        drop((p, ex, node));
        let left: Vec<_> = crate::Namespace::new(crate::DEFAULT_ROOT, ns).segment_files();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Issue 12 item 7: a publisher that looked its subscribers up, then
    /// stalled inside its operation past the grace period of a subscriber's
    /// detach, pushed into the inbox of the port that re-used the slot: the
    /// new subscriber received a publication its pattern does not match.
    /// The stall is made deterministic by holding the publisher's operation
    /// open across the detach and the new attach, and pushing to the target
    /// it resolved before (what `send_loan` does after its lookup).
    #[test]
    fn a_late_publication_to_a_reused_slot_is_not_delivered() {
        let ns = format!("unit-reuse-{}", std::process::id());
        let node = Node::builder("t").namespace(&ns).create().expect("node");
        let limits = Limits {
            chunk_size: 64,
            chunk_count: 4,
            queue_depth: 4,
            max_ports: 2,
            ..Limits::default()
        };
        let ex = node
            .create_exchange("x", Pattern::PublishSubscribe, limits)
            .expect("create");
        let p = ex.publisher().expect("publisher");
        let s1 = ex.subscriber("a.*", 1).expect("first subscriber");
        let slot = s1.core.index;
        let inner = &p.core.ex;
        let op = p.core.enter().expect("enter");
        let mut targets = crate::exchange::Targets::default();
        targets.refresh(inner, crate::exchange::Role::Subscriber);
        targets.match_key("a.x").expect("key");
        assert_eq!(targets.matched.len(), 1);
        let loan = p.core.loan_copy(b"for a.*").expect("loan");
        let (chunk, len, owner) = loan.into_raw();
        // The subscriber leaves (its grace period gives up on the open
        // operation) and another one takes its slot.
        drop(s1);
        let s2 = ex.subscriber("b.*", 2).expect("second subscriber");
        assert_eq!(s2.core.index, slot, "the slot is re-used");
        let d = Descriptor {
            chunk,
            len,
            flags: crate::exchange::FLAG_PUBLISH | FLAG_SOLE | owner,
            tag: 1,
            meta: p.core.address(),
        };
        let t = &mut targets.list[targets.matched[0]];
        if inner.deliver_to(t, &d).is_err() {
            inner.give_back(chunk);
        }
        drop(op);
        let got = s2.try_receive().expect("receive").map(|s| s.to_vec());
        assert!(
            got.is_none(),
            "a publication for the slot's previous subscriber reached the new one: {got:?}"
        );
        let h = inner.header().expect("header");
        assert_eq!(h.misaddressed.load(Ordering::Relaxed), 1);
        drop((s2, p));
        assert_eq!(ex.chunks_free(), limits.chunk_count, "the chunk came back");
        drop((ex, node));
        let left: Vec<_> = crate::Namespace::new(crate::DEFAULT_ROOT, ns).segment_files();
        assert!(left.is_empty(), "{left:?}");
    }
}

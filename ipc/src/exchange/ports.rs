//! Ports: descriptor flags and port addresses, a port's attachment
//! (`PortCore`), attaching, draining and detaching ports.

use super::*;

/// Descriptor flags.
pub(crate) const FLAG_REQUEST: u32 = 1;
pub(crate) const FLAG_RESPONSE: u32 = 2;
pub(crate) const FLAG_FAILED: u32 = 4;
pub(crate) const FLAG_PUBLISH: u32 = 8;
pub(crate) const FLAG_FANIN: u32 = 16;
/// The receiver is the chunk's only holder: the reference passes to it
/// without touching the refcount, and it hands the chunk straight back to its
/// owner's return ring, so a small message's line is never pulled back.
pub(crate) const FLAG_SOLE: u32 = 32;
/// A slot reclaim filled in for a sender that died mid-push: no chunk, no
/// message; receivers pass over it.
pub(crate) const FLAG_VOID: u32 = 64;
/// A response that is part of a chunked response (with [`FLAG_END`]: its
/// end marker; with [`FLAG_FAILED`]: its abort marker). `meta` names the
/// client's stream slot and its generation.
pub(crate) const FLAG_STREAM: u32 = 128;
/// The end of a chunked response.
pub(crate) const FLAG_END: u32 = 256;
/// A response that asks back (dialogue): the client answers it; `meta` is
/// the server port's address.
pub(crate) const FLAG_ASK: u32 = 512;
/// A request that answers a server's question (dialogue), sent to that
/// server's port directly.
pub(crate) const FLAG_ANSWER: u32 = 1024;

/// First bit of the loaning port in descriptor flags (bits 0..11 are the
/// flags above, 11..21 the address stamp, 21..32 the owner).
pub(super) const OWNER_SHIFT: u32 = 21;
/// First bit of the address stamp in descriptor flags.
pub(super) const STAMP_SHIFT: u32 = 11;
/// Descriptor flags bits holding the address stamp ([`stamp`]).
pub(crate) const STAMP_MASK: u32 = (1 << OWNER_SHIFT) - (1 << STAMP_SHIFT);

/// Descriptor flags bits naming the port that loaned the chunk (`owner + 1`
/// in the high 11 bits, 0 for none; `max_ports` is at most 1024).
pub(crate) fn owner_flags(owner: Option<u32>) -> u32 {
    owner.map_or(0, |o| (o + 1) << OWNER_SHIFT)
}

/// The loaning port encoded in descriptor flags.
pub(crate) fn flags_owner(flags: u32) -> Option<u32> {
    (flags >> OWNER_SHIFT).checked_sub(1)
}

/// The address stamp of a port attachment: the low 10 bits of its
/// generation, in descriptor flags bits 11..21. Every push into an inbox
/// ([`ExchangeInner::deliver`], [`ExchangeInner::deliver_to`]) stamps the
/// descriptor with the generation of the port it was addressed to, read when
/// the sender looked the port up; the inbox's owner passes over every
/// descriptor whose stamp is not its own ([`PortCore::pop`]). So a sender
/// that looked a port up, stalled past the grace period of its detach, and
/// pushed after another port re-used the slot delivers nothing to the new
/// port. (A stamp repeats after 1024 attachments of one slot, each of which
/// first waits out a grace period and a reclaim pass for the stalled sender.)
pub(crate) fn stamp(generation: u32) -> u32 {
    (generation << STAMP_SHIFT) & STAMP_MASK
}

/// `d` addressed to the port attachment `generation`.
pub(super) fn stamped(d: &Descriptor, generation: u32) -> Descriptor {
    Descriptor {
        flags: d.flags & !STAMP_MASK | stamp(generation),
        ..*d
    }
}

/// Packs a port address (index and generation) into a descriptor word.
pub(crate) fn address(index: u32, generation: u32) -> u64 {
    u64::from(index) | (u64::from(generation) << 32)
}

/// The port index of an address (a request's reply address also carries
/// its stream window in bits 16..32: see [`reply_window`]).
pub(crate) fn address_port(address: u64) -> u32 {
    address as u32 & 0xFFFF
}

/// The port generation of an address.
pub(crate) fn address_generation(address: u64) -> u32 {
    (address >> 32) as u32
}

/// A request's reply address without the stream window: the client port's
/// address.
pub(crate) fn reply_address(reply: u64) -> u64 {
    reply & !0xFFFF_0000
}

/// The stream window a request's reply address carries (0: a plain request).
pub(crate) fn reply_window(reply: u64) -> u32 {
    (reply as u32) >> 16
}

/// A port's attachment to an exchange: its slot, claimed on creation and
/// released (inbox drained, chunks returned) on drop.
pub(crate) struct PortCore {
    pub ex: Arc<ExchangeInner>,
    pub index: u32,
    pub generation: u32,
    /// Where owned values ([`crate::owned`]) of this port send their
    /// releases; `None` until the first one is made.
    pub(super) keeper: std::cell::OnceCell<Arc<Keeper>>,
    /// Ports are used by one thread at a time (single consumer of the inbox).
    pub(super) _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl PortCore {
    /// The start of a port's `Debug`: its type, exchange, slot and
    /// generation.
    pub fn debug_struct<'f, 'b>(
        &self,
        f: &'f mut std::fmt::Formatter<'b>,
        name: &str,
    ) -> std::fmt::DebugStruct<'f, 'b> {
        let mut d = f.debug_struct(name);
        d.field("exchange", &self.ex.name)
            .field("port", &self.index)
            .field("generation", &self.generation);
        d
    }
}

impl ExchangeInner {
    /// Claims a port slot for `role`.
    pub fn attach(
        self: &Arc<Self>,
        role: Role,
        tag: u64,
        pattern: &[u8],
    ) -> Result<PortCore, PortError> {
        if role.pattern() != self.pattern {
            return Err(PortError::WrongPattern {
                exchange: self.name.to_string(),
                pattern: self.pattern,
                role: role.name(),
            });
        }
        let _guard = self.node.control()?;
        self.reclaim_locked();
        if self.is_down() {
            return Err(PortError::ExchangeDown {
                exchange: self.name.to_string(),
            });
        }
        let slots = || (0..self.limits.max_ports).filter_map(|i| self.port(i).map(|p| (i, p)));
        if role == Role::Consumer
            && slots().any(|(_, p)| {
                p.state.load(Ordering::Relaxed) == PORT_ACTIVE
                    && p.role.load(Ordering::Relaxed) == Role::Consumer as u32
            })
        {
            return Err(PortError::ConsumerExists {
                exchange: self.name.to_string(),
            });
        }
        let (index, slot) = slots()
            .find(|(_, p)| p.state.load(Ordering::Relaxed) == PORT_FREE)
            .ok_or_else(|| PortError::PortTableFull {
                exchange: self.name.to_string(),
                max: self.limits.max_ports,
            })?;
        // Senders that saw the previous owner may have pushed after it left.
        self.drain(index);
        self.drain_returns(index);
        // The generation moves first, then a release fence: a sender's
        // `Targets::refresh` that reads any field below as written here
        // re-reads the generation and sees it moved. Descriptors pushed by a
        // sender that looked up an earlier generation are passed over by
        // this port ([`stamp`]).
        let generation = slot.generation.load(Ordering::Relaxed).wrapping_add(1);
        slot.generation.store(generation, Ordering::Release);
        std::sync::atomic::fence(Ordering::Release);
        slot.role.store(role as u32, Ordering::Relaxed);
        slot.node.store(self.node.index, Ordering::Relaxed);
        slot.pid.store(self.node.pid, Ordering::Relaxed);
        slot.owner.store(self.node.key, Ordering::Relaxed);
        slot.tag.store(tag, Ordering::Relaxed);
        slot.gaps.store(0, Ordering::Relaxed);
        for w in [&slot.tasks.held, &slot.tasks.prefetch, &slot.tasks.max_held] {
            w.store(0, Ordering::Relaxed);
        }
        slot.tasks.delivered.store(0, Ordering::Relaxed);
        slot.tasks.acked.store(0, Ordering::Relaxed);
        slot.pattern_len
            .store(pattern.len() as u32, Ordering::Relaxed);
        store_bytes(&slot.pattern, pattern);
        slot.state.store(PORT_ACTIVE, Ordering::Release);
        if let Some(h) = self.header() {
            h.ports_epoch.fetch_add(1, Ordering::AcqRel);
        }
        Ok(PortCore {
            ex: self.clone(),
            index,
            generation,
            keeper: std::cell::OnceCell::new(),
            _not_sync: std::marker::PhantomData,
        })
    }

    /// A reclaim pass on this exchange ([`reclaim_locked`](Self::reclaim_locked)),
    /// taking the control lock.
    pub fn reclaim_now(&self) {
        if let Ok(_guard) = self.node.control() {
            self.reclaim_locked();
        }
    }

    /// Empties port `index`'s inbox: chunks go back to the pool, queued
    /// requests fail towards their clients.
    pub(crate) fn drain(&self, index: u32) {
        let Some(ring) = self.ring(index) else { return };
        // At most one lap: a hostile writer cannot keep the loop going.
        for d in std::iter::from_fn(|| ring.pop()).take(ring.capacity() as usize) {
            self.discard(&d);
        }
    }

    /// Drops a queued descriptor nobody will receive: its chunk is released,
    /// and a request fails towards its client.
    pub(super) fn discard(&self, d: &Descriptor) {
        if d.flags & FLAG_REQUEST != 0 {
            self.fail_request(d.meta, d.tag, crate::error::FailReason::ServerGone);
        }
        self.release_descriptor(d);
    }

    /// A port popped (or a client matched to its stream slot) a descriptor
    /// addressed to an earlier attachment of its slot, or to an earlier
    /// stream: it is discarded ([`discard`](Self::discard)) and counted in
    /// the header's `misaddressed`.
    pub(crate) fn misaddressed(&self, d: &Descriptor) {
        if let Some(h) = self.header() {
            h.misaddressed.fetch_add(1, Ordering::Relaxed);
        }
        self.discard(d);
    }

    /// Tells the client at `reply` that request `tag` will not be answered.
    pub fn fail_request(&self, reply: u64, tag: u64, reason: crate::error::FailReason) {
        let d = Descriptor {
            chunk: Descriptor::NO_CHUNK,
            len: reason.code(),
            flags: FLAG_FAILED,
            tag,
            meta: 0,
        };
        if let Some(node) = self.reply_target(reply) {
            let _ = self.deliver(address_port(reply), address_generation(reply), node, &d);
        }
    }

    /// The node of the client port at `reply` if that port is still the one
    /// that sent the request.
    pub fn reply_target(&self, reply: u64) -> Option<u32> {
        let p = self.port(address_port(reply))?;
        (p.state.load(Ordering::Acquire) == PORT_ACTIVE
            && p.generation.load(Ordering::Relaxed) == address_generation(reply)
            && p.role.load(Ordering::Relaxed) == Role::Client as u32)
            .then(|| p.node.load(Ordering::Relaxed))
    }
}

/// How far [`ExchangeInner::detach`] takes a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detach {
    /// The port leaves: nothing of it stays.
    Full,
    /// The port leaves but owned values still hold chunks in its holdings:
    /// the slot stays [`PORT_CLOSING`] (nobody routes to it, reclaim
    /// counts its holdings while its process lives).
    Close,
    /// The last owned value of a closed port is gone: the slot is freed.
    Finish,
}

impl ExchangeInner {
    /// Releases port `index` (generation `generation`): its inbox drained,
    /// its cached chunks returned, its holdings cleared (see [`Detach`]).
    pub(crate) fn detach(&self, index: u32, generation: u32, how: Detach) {
        // Under the control lock, so a port attaching to this slot at the
        // same moment cannot become a second consumer of the inbox.
        let guard = self.node.control();
        if let Some(p) = self.port(index) {
            if p.generation.load(Ordering::Relaxed) == generation {
                let state = if how == Detach::Close {
                    PORT_CLOSING
                } else {
                    PORT_FREE
                };
                p.state.store(state, Ordering::Release);
            }
        }
        if let Some(h) = self.header() {
            h.ports_epoch.fetch_add(1, Ordering::AcqRel);
        }
        if how != Detach::Finish {
            // Senders and releasers that saw the port attached finish first.
            self.grace_period(index);
            self.drain(index);
            // Streams to this port end with it (their servers see the client
            // gone); the next port in the slot starts with none.
            for i in 0..crate::layout::STREAM_SLOTS {
                if let Some(s) = self.stream_slot(index, i) {
                    s.free();
                }
            }
        }
        self.drain_returns(index);
        if how != Detach::Close {
            for w in self.holdings(index).unwrap_or(&[]) {
                w.store(0, Ordering::Relaxed);
            }
        }
        drop(guard);
    }
}

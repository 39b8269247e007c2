//! Request-response's part of a reclaim pass (reclaim.rs, steps 2 and 3):
//! requests queued for a dead server fail towards their clients, a dead
//! client's stream slots are freed, and streams a dead server was sending
//! to a live client are aborted.

use super::*;
use crate::exchange::PatternReclaim;

/// The [`PatternReclaim`] of request-response exchanges.
pub(crate) struct RpcReclaim;

impl PatternReclaim for RpcReclaim {
    fn drained(&self, ex: &ExchangeInner, d: &Descriptor) -> bool {
        if d.flags & FLAG_REQUEST == 0 {
            return false;
        }
        ex.fail_request(d.meta, d.tag, FailReason::ServerGone);
        true
    }

    fn retired(&self, ex: &ExchangeInner, live: &[bool]) {
        let ports = ex.limits.max_ports;
        // Dead ports: forget their stream slots.
        for i in (0..ports).filter(|&i| !live[i as usize]) {
            for s in 0..crate::layout::STREAM_SLOTS {
                if let Some(slot) = ex.stream_slot(i, s) {
                    slot.free();
                }
            }
        }
        // Streams to live clients from servers that died: abort them.
        for i in (0..ports).filter(|&i| live[i as usize]) {
            for s in 0..crate::layout::STREAM_SLOTS {
                let Some(slot) = ex.stream_slot(i, s) else {
                    continue;
                };
                let state = slot.state.load(Ordering::Acquire);
                if state == crate::layout::STREAM_FREE || state == crate::layout::STREAM_ABORTED {
                    continue;
                }
                let server = slot.server.load(Ordering::Relaxed);
                let server_live = ex
                    .port(crate::exchange::address_port(server))
                    .is_some_and(|p| {
                        live.get(crate::exchange::address_port(server) as usize)
                            .copied()
                            .unwrap_or(false)
                            && p.generation.load(Ordering::Relaxed)
                                == crate::exchange::address_generation(server)
                    });
                if server_live {
                    continue;
                }
                let d = Descriptor {
                    chunk: Descriptor::NO_CHUNK,
                    len: crate::error::FailReason::ServerGone.code(),
                    flags: crate::exchange::FLAG_RESPONSE
                        | crate::exchange::FLAG_STREAM
                        | crate::exchange::FLAG_FAILED,
                    tag: slot.tag.load(Ordering::Relaxed),
                    meta: u64::from(s) | u64::from(slot.generation.load(Ordering::Relaxed)) << 32,
                };
                if let Some(p) = ex.port(i) {
                    // The client frees its slot when it receives this.
                    let (generation, node) = (
                        p.generation.load(Ordering::Relaxed),
                        p.node.load(Ordering::Relaxed),
                    );
                    if ex.deliver(i, generation, node, &d).is_ok() {
                        let aborted = if state == crate::layout::STREAM_CANCELLED {
                            crate::layout::STREAM_CANCELLED
                        } else {
                            crate::layout::STREAM_ABORTED
                        };
                        slot.state.store(aborted, Ordering::Release);
                    }
                }
            }
        }
    }
}

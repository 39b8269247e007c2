//! Reclaim: cleaning up after processes that died.
//!
//! A process can die anywhere, including halfway through a send or a
//! release, so its records cannot be trusted to be consistent. Reclaim does
//! not try to undo the dead process's last step. It recounts, from the
//! records of the living only, who holds each chunk:
//!
//! 1. **Pause.** Set [`EX_PAUSED`] in the exchange's state word and issue the
//!    heavy barrier. Every data-path operation marks its port busy, then
//!    checks the state word ([`ExchangeInner::enter`]), so after the barrier
//!    each live port is either seen busy or will wait. Wait until no live
//!    port is busy. Every live port is now between operations, where its
//!    records are exact. A port that stays busy (its process is stopped) makes
//!    the pass give up and retry later.
//! 2. **Retire** the ports of dead processes. Drain their inboxes; queued
//!    requests fail towards their clients.
//! 3. **Void** the ring slots that a dead producer claimed but never
//!    published, so consumers can pass them.
//! 4. **Recount.** A chunk's references are the descriptors queued in live
//!    inboxes, the entries of live return rings, live spares and deferred
//!    releases, and the holdings bits of live ports (loans and samples in
//!    hand). Every chunk with no reference goes back on a rebuilt free list.
//!    Every other chunk gets its refcount set to the count.
//!    In a task exchange each live ledger entry holds a reference too. First,
//!    reservations of dead submitters are cancelled and deliveries to dead
//!    workers are requeued. Then every task queue is rebuilt from the ledger
//!    ([`ExchangeInner::reclaim_tasks`]).
//! 5. **Down.** A transient exchange whose creator died goes down: the state
//!    word gets [`EX_DOWN`], the file is unlinked, and watchers are told.
//! 6. **Resume.** Clear the pause, bump the port epoch (senders drop cached
//!    targets) and wake every node with a port, so blocked receivers see
//!    failure notices and `ExchangeDown`.
//!
//! Passes run under the namespace's control lock. Whoever finds a dead node
//! first does the work: the heartbeat thread of any node, `shmex supervisor`,
//! or an open, attach or client check. The pass on each exchange happens
//! exactly once, and a pass that finds nothing dead returns at once.

use crate::error::{OpenError, SegmentError};
use crate::exchange::{ExchangeInner, PatternReclaim, FLAG_VOID, NO_DEFERRED};
use crate::layout::{EX_DOWN, EX_PAUSED, NODE_RECLAIMED, PORT_ACTIVE, PORT_CLOSING, PORT_FREE};
use crate::registry::{NodeInfo, NodeInner, Reclaimed};
use shmex_core::gate;
use shmex_core::ring::Descriptor;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The patterns with records of their own, each cleaned up by its own
/// [`PatternReclaim`]; every pass runs all of them (a pattern finds none of
/// its records in another pattern's exchange).
const PATTERNS: &[&dyn PatternReclaim] = &[&crate::rpc::RpcReclaim, &crate::tasks::TasksReclaim];

/// How long a pass waits for a live port to leave its current operation
/// before it gives up (the process is probably stopped) and retries later.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// What a pass did on one exchange.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    pub ports: u32,
    pub chunks: u32,
    pub requests_failed: u32,
    pub down: bool,
    /// A live port stayed busy: nothing was done.
    pub busy: bool,
}

impl ExchangeInner {
    /// True when a pass has work: a port of a dead process, leftovers in a
    /// free port (a sender that raced its detach), a dead creator of a
    /// transient exchange, or a pass whose process died halfway.
    fn needs_reclaim(&self) -> bool {
        let Some(h) = self.header() else { return false };
        let state = h.state.0.load(Ordering::Acquire);
        if state & EX_PAUSED != 0 {
            return true;
        }
        if state & EX_DOWN != 0 {
            return false;
        }
        if self.creator_died() {
            return true;
        }
        (0..self.limits.max_ports).any(|i| {
            let Some(p) = self.port(i) else { return false };
            match p.state.load(Ordering::Acquire) {
                PORT_ACTIVE | PORT_CLOSING => {
                    !self.node.owner_alive(p.owner.load(Ordering::Relaxed))
                }
                _ => {
                    self.ring(i).is_some_and(|r| r.len_hint() > 0)
                        || self.return_ring(i).is_some_and(|r| r.len_hint() > 0)
                }
            }
        })
    }

    /// True when the creator of this transient exchange died (it did not
    /// close its handle: a clean close clears the creator).
    fn creator_died(&self) -> bool {
        let Some(h) = self.header() else { return false };
        h.persistent.load(Ordering::Relaxed) == 0
            && h.state.0.load(Ordering::Relaxed) & EX_DOWN == 0
            && h.creator_pid.load(Ordering::Relaxed) != 0
            && !self.node.owner_alive(h.creator.load(Ordering::Relaxed))
    }

    /// Runs a reclaim pass (see the module docs) if one is needed. Under the
    /// control lock; never inside a data-path operation of this thread.
    pub(crate) fn reclaim_locked(&self) -> Pass {
        self.pass_locked(false)
    }

    /// A pass that also empties every live port's caches (return ring,
    /// spare, deferred slot) into the free list: what a loan that found the
    /// pool dry runs, so that released chunks parked with other ports are
    /// reachable. Under the control lock.
    pub(crate) fn flush_caches_locked(&self) -> Pass {
        self.pass_locked(true)
    }

    fn pass_locked(&self, flush_caches: bool) -> Pass {
        let mut pass = Pass::default();
        if !flush_caches && !self.needs_reclaim() {
            return pass;
        }
        let Some(h) = self.header() else { return pass };
        let ports = self.limits.max_ports;
        // A closing port (owned values still hold chunks it recorded) is
        // live like an attached one.
        let alive = |i: u32| {
            self.port(i).is_some_and(|p| {
                matches!(p.state.load(Ordering::Acquire), PORT_ACTIVE | PORT_CLOSING)
                    && self.node.owner_alive(p.owner.load(Ordering::Relaxed))
            })
        };

        // 1. Pause, and wait for every live port to be between operations.
        gate::pause(&h.state.0);
        self.node.heavy_barrier();
        let deadline = Instant::now() + IDLE_WAIT;
        let mut live = vec![false; ports as usize];
        for i in 0..ports {
            live[i as usize] = alive(i);
            if !live[i as usize] {
                continue;
            }
            let Some(p) = self.port(i) else { continue };
            while !gate::is_idle(&p.spare.busy) {
                if Instant::now() >= deadline {
                    gate::resume(&h.state.0);
                    pass.busy = true;
                    return pass;
                }
                std::thread::yield_now();
            }
        }

        // 2. Retire the ports of dead processes.
        for i in 0..ports {
            let Some(p) = self.port(i) else { continue };
            if !live[i as usize] && p.state.load(Ordering::Acquire) != PORT_FREE {
                p.state.store(PORT_FREE, Ordering::Release);
                pass.ports += 1;
            }
        }

        // 3. Void half-finished pushes, in inboxes and return rings alike.
        let void = Descriptor {
            chunk: Descriptor::NO_CHUNK,
            flags: FLAG_VOID,
            ..Descriptor::default()
        };
        for i in 0..ports {
            if let Some(r) = self.ring(i) {
                r.void_unpublished(&void);
            }
            if let Some(r) = self.return_ring(i) {
                r.void_unpublished(&void);
            }
        }

        // Free ports: drain (failing queued requests), forget their caches.
        for i in 0..ports {
            if live[i as usize] {
                continue;
            }
            if let Some(r) = self.ring(i) {
                while let Some(d) = r.pop() {
                    if PATTERNS.iter().any(|p| p.drained(self, &d)) {
                        pass.requests_failed += 1;
                    }
                }
            }
            if let Some(r) = self.return_ring(i) {
                while r.pop().is_some() {}
            }
            if let Some(p) = self.port(i) {
                p.spare.chunk.store(Descriptor::NO_CHUNK, Ordering::Relaxed);
                p.spare.deferred.store(NO_DEFERRED, Ordering::Relaxed);
                p.spare.busy.store(0, Ordering::Relaxed);
            }
            for w in self.holdings(i).unwrap_or(&[]) {
                w.store(0, Ordering::Relaxed);
            }
        }
        for p in PATTERNS {
            p.retired(self, &live);
        }

        // 4. Recount every chunk's references from the living.
        let n = self.limits.chunk_count;
        let mut counts = vec![0u32; n as usize];
        for p in PATTERNS {
            p.count(self, &live, &mut counts);
        }
        let mut count = |c: u32| {
            if let Some(x) = counts.get_mut(c as usize) {
                *x += 1;
            }
        };
        for i in (0..ports).filter(|&i| live[i as usize]) {
            if let Some(r) = self.ring(i) {
                r.for_each_queued(|d| count(d.chunk));
            }
            if flush_caches {
                // Cached chunks are free: uncounted, they go to the free list.
                if let Some(r) = self.return_ring(i) {
                    while r.pop().is_some() {}
                }
                if let Some(p) = self.port(i) {
                    p.spare.chunk.store(Descriptor::NO_CHUNK, Ordering::Relaxed);
                    p.spare.deferred.store(NO_DEFERRED, Ordering::Relaxed);
                }
            }
            if let Some(r) = self.return_ring(i) {
                r.for_each_queued(|d| count(d.chunk));
            }
            if let Some(p) = self.port(i) {
                count(p.spare.chunk.load(Ordering::Relaxed));
                let deferred = p.spare.deferred.load(Ordering::Relaxed);
                if deferred != NO_DEFERRED {
                    count(deferred as u32);
                    // Its owner left: release it to the free list, not to
                    // whichever port takes the owner's slot next.
                    let owner = (deferred >> 32) as usize;
                    if !live.get(owner).copied().unwrap_or(false) {
                        p.spare
                            .deferred
                            .store(deferred | u64::from(u32::MAX) << 32, Ordering::Relaxed);
                    }
                }
            }
            for (w, word) in self.holdings(i).unwrap_or(&[]).iter().enumerate() {
                let mut bits = word.load(Ordering::Relaxed);
                while bits != 0 {
                    count((w * 64) as u32 + bits.trailing_zeros());
                    bits &= bits - 1;
                }
            }
        }
        let pool = self.pool();
        let mut was_free = vec![false; n as usize];
        for c in pool.free_list().unwrap_or_default() {
            was_free[c as usize] = true;
        }
        pass.chunks = (0..n)
            .filter(|&c| counts[c as usize] == 0 && !was_free[c as usize])
            .count() as u32;
        pool.rebuild(|c| counts[c as usize] == 0);
        for c in 0..n {
            let Some(ch) = self.chunk_header(c) else {
                continue;
            };
            let refs = counts[c as usize];
            if refs > 0 {
                ch.meta.refcount.store(refs, Ordering::Relaxed);
            }
            let owner = ch.owner.load(Ordering::Relaxed);
            if refs == 0 || (owner != 0 && !live.get(owner as usize - 1).copied().unwrap_or(false))
            {
                ch.owner.store(0, Ordering::Relaxed);
            }
        }

        // 5. A transient exchange goes down with its creator.
        if self.creator_died() {
            self.take_down();
            pass.down = true;
        }

        // 6. Resume.
        h.ports_epoch.fetch_add(1, Ordering::AcqRel);
        gate::resume(&h.state.0);
        self.wake_all_ports();
        pass
    }

    /// Marks the exchange down, unlinks its file and tells watchers. Under
    /// the control lock.
    pub(crate) fn take_down(&self) {
        if let Some(h) = self.header() {
            gate::take_down(&h.state.0);
        }
        if self.seg.path_is_ours() {
            let _ = std::fs::remove_file(&self.seg.path);
        }
        self.node.exchanges_changed();
        self.wake_all_ports();
    }

    /// Wakes the node of every attached port.
    pub(crate) fn wake_all_ports(&self) {
        for i in 0..self.limits.max_ports {
            if let Some(p) = self.port(i) {
                if p.state.load(Ordering::Acquire) == PORT_ACTIVE {
                    self.node.wake(p.node.load(Ordering::Relaxed));
                }
            }
        }
    }

    /// After a port left (state free, epoch bumped): waits until every
    /// operation that may have seen it attached has ended, so that nothing
    /// is pushed into its inbox or return ring after the final drain. Gives
    /// up after [`IDLE_WAIT`] (a stopped process); the next reclaim pass
    /// (or attach, which drains the slot) then sweeps what it pushed, and
    /// what it pushes after a new port took the slot carries the old
    /// generation's stamp, which the new port discards
    /// ([`stamp`](crate::exchange::stamp)).
    pub(crate) fn grace_period(&self, leaving: u32) {
        gate::grace_fence();
        self.node.heavy_barrier();
        let deadline = Instant::now() + IDLE_WAIT;
        for i in 0..self.limits.max_ports {
            if i == leaving {
                continue;
            }
            let Some(p) = self.port(i) else { continue };
            // A closing port's operations (owned values' releases) free
            // chunks into return rings too.
            if p.state.load(Ordering::Acquire) == PORT_FREE {
                continue;
            }
            let Some(seen) = gate::op_in_progress(&p.spare.busy) else {
                continue;
            };
            while !gate::op_ended(&p.spare.busy, seen) {
                if Instant::now() >= deadline {
                    return;
                }
                std::thread::yield_now();
            }
        }
    }
}

/// [`Node::reclaim_dead`](crate::Node::reclaim_dead).
pub(crate) fn reclaim_dead(
    node: &Arc<NodeInner>,
    wait: std::time::Duration,
) -> Result<Reclaimed, SegmentError> {
    let _guard = node.control_within(wait)?;
    let mut out = Reclaimed::default();
    let dead: Vec<u32> = (0..crate::layout::MAX_NODES)
        .filter(|&i| node.slot_dead(i))
        .collect();
    if dead.is_empty() {
        return Ok(out);
    }
    let prefix = node.namespace.exchange_prefix();
    for path in node.namespace.segment_files() {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(&prefix))
            .map(str::to_string)
        else {
            continue;
        };
        // An exchange that cannot be mapped (another build, corrupt) is left
        // for `shmex ls` to report.
        let Ok(Some(ex)) = ExchangeInner::map_locked(node, &name, false) else {
            continue;
        };
        if ex.is_down() {
            continue;
        }
        let pass = ex.reclaim_locked();
        out.ports += pass.ports;
        out.chunks += pass.chunks;
        out.requests_failed += pass.requests_failed;
        if pass.down {
            out.exchanges_down.push(name.clone());
        }
        if pass.busy {
            out.busy.push(name);
        } else if !pass.down {
            ex.remove_if_stale();
        }
    }
    if out.busy.is_empty() {
        let now = crate::registry::now_ms();
        for i in dead {
            let Some(s) = node.slot(i) else { continue };
            s.state.store(NODE_RECLAIMED, Ordering::Release);
            let name_len = s.name_len.load(Ordering::Relaxed) as usize;
            out.nodes.push(NodeInfo {
                id: i,
                name: String::from_utf8_lossy(&crate::layout::load_bytes(&s.name, name_len))
                    .into_owned(),
                pid: s.pid.load(Ordering::Relaxed),
                state: "reclaimed",
                heartbeat_age_ms: now.saturating_sub(s.heartbeat.load(Ordering::Relaxed)),
                start_time: s.start_time.load(Ordering::Relaxed),
            });
        }
    }
    Ok(out)
}

impl ExchangeInner {
    /// Removes a transient exchange that no live process holds open any
    /// more (its users all died). Under the control lock.
    fn remove_if_stale(&self) {
        let Some(h) = self.header() else { return };
        if h.persistent.load(Ordering::Relaxed) == 1 {
            return;
        }
        let mut live = false;
        for u in &h.users {
            let pid = u.pid.load(Ordering::Relaxed);
            if pid == 0 {
                continue;
            }
            if self.node.owner_alive(u.owner.load(Ordering::Relaxed)) {
                live = true;
            } else {
                u.pid.store(0, Ordering::Relaxed);
            }
        }
        if !live {
            self.take_down();
        }
    }
}

/// [`Node::remove_exchange`](crate::Node::remove_exchange).
pub(crate) fn remove_exchange(node: &Arc<NodeInner>, name: &str) -> Result<(), OpenError> {
    crate::exchange::check_exchange_name(name)?;
    let _guard = node.control()?;
    match ExchangeInner::map_locked(node, name, false)? {
        Some(ex) if !ex.is_down() => {
            ex.take_down();
            Ok(())
        }
        _ => Err(OpenError::NotFound {
            name: name.to_string(),
        }),
    }
}

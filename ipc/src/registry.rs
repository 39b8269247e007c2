//! Nodes: a process's registration in a namespace.
//!
//! The namespace registry is one segment, `ROOT/shmex-UID/shmex.NS.registry`, holding a
//! slot per node (pid, process start time, name, heartbeat, wait word). Its
//! file also serves as the namespace's control lock (`flock`): every change to
//! the set of segments, nodes or ports happens under it, so control operations
//! are simple and serial, and the kernel releases the lock of a process that
//! dies. Data paths never take it.
//!
//! This module holds the registry and a process's registration in it
//! (`NodeInner`, shared by a node and everything made from it); the public
//! handle, `Node`, is in node.rs.

use crate::error::{NodeError, SegmentError};
use crate::layout::{
    load_bytes, NodeSlot, RegistryHeader, RegistryLayout, KIND_REGISTRY, MAX_NODES, NODE_ALIVE,
    NODE_FREE, NODE_RECLAIMED,
};
use crate::namespace::{Namespace, CONTROL_LOCK_WAIT, HUNG_AFTER};
use crate::segment::{load_acquire_read_only, Created, Segment};
use crate::sys;
use shmex_core::barrier_mode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The clock of heartbeats: [`sys::monotonic_ms`] (compared across
/// processes; a wall-clock jump makes no node look hung).
pub(crate) fn now_ms() -> u64 {
    sys::monotonic_ms()
}

pub(crate) fn slot(registry: &Segment, index: u32) -> Option<&NodeSlot> {
    if index >= MAX_NODES {
        return None;
    }
    registry.get(RegistryLayout::SLOTS + index as usize * std::mem::size_of::<NodeSlot>())
}

/// Offset of the byte whose OFD lock says node slot `index` is held by a
/// running process (far past the registry's end: locks need no data).
pub(crate) fn liveness_offset(index: u32) -> i64 {
    (1 << 40) + i64::from(index)
}

/// A descriptor of its own on the registry file, whose open file
/// description holds the node's liveness lock for the node's life.
pub(crate) fn open_liveness(registry: &Segment) -> Result<std::fs::File, SegmentError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let io = |source| SegmentError::Io {
        path: registry.path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(&registry.path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if (meta.dev(), meta.ino()) != registry.identity {
        return Err(SegmentError::Corrupt {
            path: registry.path.clone(),
            what: "the registry was replaced while joining".into(),
        });
    }
    Ok(file)
}

/// The identity of the node in slot `index` at registration `generation`,
/// as ports, users and creators record their owner: `generation << 32 |
/// index`. See [`key_alive`].
pub(crate) fn node_key(index: u32, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(index)
}

/// True while the node of slot `index` runs: the slot is in use and some
/// process holds its liveness lock (the kernel's word, not shared memory's;
/// released when the process dies, whatever PID namespace it lives in).
pub(crate) fn slot_alive(registry: &Segment, index: u32) -> bool {
    slot(registry, index).is_some_and(|s| load_acquire_read_only(&s.state) == NODE_ALIVE)
        && sys::ofd_is_locked(&registry.file, liveness_offset(index))
}

/// True while the node that `key` ([`node_key`]) names runs: its slot still
/// holds that registration and is alive ([`slot_alive`]).
pub(crate) fn key_alive(registry: &Segment, key: u64) -> bool {
    let index = key as u32;
    let generation = (key >> 32) as u32;
    slot(registry, index).is_some_and(|s| load_acquire_read_only(&s.generation) == generation)
        && slot_alive(registry, index)
}

/// True when slot `index` holds a node whose process is gone and that no
/// reclaim pass has cleaned up after yet.
pub(crate) fn is_dead(registry: &Segment, index: u32) -> bool {
    slot(registry, index).is_some_and(|s| load_acquire_read_only(&s.state) == NODE_ALIVE)
        && !slot_alive(registry, index)
}

/// Takes the control lock (the registry's `flock`), waiting at most `wait`.
pub(crate) fn lock_registry(
    registry: &Segment,
    wait: Duration,
) -> Result<sys::FileLock<'_>, SegmentError> {
    sys::FileLock::lock_within(&registry.file, wait).map_err(|e| match e {
        sys::LockFailed::TimedOut { holder } => SegmentError::LockTimeout {
            path: registry.path.clone(),
            holder,
            waited_ms: wait.as_millis() as u64,
        },
        sys::LockFailed::Io(source) => SegmentError::Io {
            path: registry.path.clone(),
            source,
        },
    })
}

/// Opens (creating if needed) the registry and validates it. Loops when the
/// file it opened was unlinked by a last node leaving at the same moment.
pub(crate) fn open_registry(ns: &Namespace) -> Result<Segment, NodeError> {
    let path = ns.registry_path();
    for _ in 0..100 {
        let seg = match Segment::create(&path, RegistryLayout::SIZE, ns.share_group)? {
            Created::New(seg) => seg,
            Created::Exists => match Segment::open(&path, ns.share_group)? {
                Some(seg) => seg,
                None => continue,
            },
        };
        let lock = lock_registry(&seg, CONTROL_LOCK_WAIT)?;
        if !seg.path_is_ours() {
            continue;
        }
        if !seg.is_uninitialised() && seg.mapped_len() < RegistryLayout::SIZE {
            // Opened while its creator was still initialising it (only the
            // header was mapped): open it again, whole.
            drop(lock);
            continue;
        }
        let seg = if seg.is_uninitialised() {
            drop(lock);
            let seg = if seg.len() < RegistryLayout::SIZE {
                seg.reserve(RegistryLayout::SIZE)?
            } else {
                seg
            };
            let lock = lock_registry(&seg, CONTROL_LOCK_WAIT)?;
            if seg.is_uninitialised() && seg.path_is_ours() {
                seg.write_header(KIND_REGISTRY);
                seg.publish_ready();
            }
            drop(lock);
            seg
        } else {
            drop(lock);
            seg
        };
        seg.check_header(KIND_REGISTRY, "registry")?;
        if seg.len() != RegistryLayout::SIZE {
            return Err(SegmentError::SizeMismatch {
                path,
                what: "registry size",
                expected: RegistryLayout::SIZE as u64,
                found: seg.len() as u64,
            }
            .into());
        }
        return Ok(seg);
    }
    Err(SegmentError::Corrupt {
        path,
        what: "registry keeps disappearing while opened".into(),
    }
    .into())
}

pub(crate) struct NodeInner {
    pub name: String,
    pub namespace: Namespace,
    pub index: u32,
    pub pid: u32,
    pub spin: Duration,
    /// The control lock's in-process half (`flock` is per open file, shared
    /// by the threads); shared with the heartbeat thread's twin.
    pub control: Arc<Mutex<()>>,
    pub registry: Arc<Segment>,
    pub heartbeat: Option<Heartbeat>,
    /// This registration's identity ([`node_key`]), recorded as the owner of
    /// its ports, exchange handles and created exchanges.
    pub key: u64,
    /// False for the heartbeat thread's twin: dropping it deregisters
    /// nothing.
    pub owns_slot: bool,
    /// The descriptor holding the slot's liveness lock (the node itself,
    /// not its twin); closing it tells every other process the node is gone.
    pub _liveness: Option<std::fs::File>,
}

thread_local! {
    /// Address of the NodeInner whose control lock this thread holds (0: none).
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The background thread that writes a node's heartbeat and, when it sees a
/// dead node in the registry, runs a reclaim pass ([`Node::reclaim_dead`](crate::Node::reclaim_dead)).
/// It reclaims through a twin of the node (same registry, same control
/// lock, no slot of its own), never through the node itself, so the node is
/// always dropped (and deregistered) by its last user, who first stops this
/// thread.
pub(crate) struct Heartbeat {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Heartbeat {
    pub(crate) fn start(
        registry: Arc<Segment>,
        index: u32,
        interval: Duration,
        twin: Arc<NodeInner>,
        reclaim: fn(&Arc<NodeInner>),
    ) -> Option<Heartbeat> {
        if interval.is_zero() {
            return None;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shmex-heartbeat".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Acquire) {
                    if let Some(s) = slot(&registry, index) {
                        s.heartbeat.store(now_ms(), Ordering::Relaxed);
                    }
                    let dead = (0..MAX_NODES).any(|i| i != index && is_dead(&registry, i));
                    if dead {
                        reclaim(&twin);
                    }
                    std::thread::park_timeout(interval);
                }
            })
            .ok()?;
        Some(Heartbeat { stop, thread })
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// Held while changing the namespace's set of segments, nodes or ports.
pub(crate) struct ControlGuard<'a> {
    locks: Option<(sys::FileLock<'a>, MutexGuard<'a, ()>)>,
    prev: usize,
}

impl Drop for ControlGuard<'_> {
    fn drop(&mut self) {
        if self.locks.is_some() {
            HELD.with(|h| h.set(self.prev));
        }
    }
}

impl NodeInner {
    /// Takes the namespace's control lock (threads of this process, then
    /// other processes). Reentrant: a thread that holds it already (e.g. a
    /// handle dropped inside a control operation) gets a no-op guard.
    /// Fails with [`SegmentError::LockTimeout`] after [`CONTROL_LOCK_WAIT`].
    pub fn control(&self) -> Result<ControlGuard<'_>, SegmentError> {
        self.control_within(CONTROL_LOCK_WAIT)
    }

    /// [`control`](Self::control), waiting at most `wait` for another
    /// process to release the lock.
    pub fn control_within(&self, wait: Duration) -> Result<ControlGuard<'_>, SegmentError> {
        let me = self as *const NodeInner as usize;
        let prev = HELD.with(|h| h.get());
        if prev == me {
            return Ok(ControlGuard { locks: None, prev });
        }
        // Threads of this process hold the lock only for short control
        // operations, never across a wait on another process.
        let thread = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let file = lock_registry(&self.registry, wait)?;
        HELD.with(|h| h.set(me));
        Ok(ControlGuard {
            locks: Some((file, thread)),
            prev,
        })
    }

    /// Registry slot `index`, if in range.
    pub fn slot(&self, index: u32) -> Option<&NodeSlot> {
        slot(&self.registry, index)
    }

    /// True when receivers in this namespace issue the heavy barrier before
    /// sleeping, so a sender need not fence: every node registered for
    /// `membarrier` (the namespace's flag says so) *and* this process's own
    /// registration holds. The flag lives in shared memory and is only a
    /// hint: a process whose registration failed is not reached by the
    /// others' barriers, so it fences (light side) and never relies on
    /// `membarrier` (heavy side) whatever the flag says.
    pub fn asymmetric(&self) -> bool {
        self.barrier_mode()
            .is_some_and(|m| barrier_mode::light_side(m, sys::membarrier_ok()))
    }

    /// The namespace's barrier mode word ([`barrier_mode`]).
    pub(crate) fn barrier_mode(&self) -> Option<&AtomicU32> {
        self.registry
            .get::<RegistryHeader>(0)
            .map(|h| &h.senders_fence)
    }

    /// The heavy side's part of the mode check ([`barrier_mode::heavy_side`]):
    /// `membarrier` while the namespace is asymmetric; when it fails, or
    /// while another node's switch to fences is under way, a barrier that
    /// covers the light sides still trusting the old mode (`membarrier`, or
    /// the slow global one when this process is not registered), then the
    /// switch is complete and later heavy sides skip it.
    pub(crate) fn heavy_side(&self) {
        if let Some(m) = self.barrier_mode() {
            barrier_mode::heavy_side(m, sys::membarrier_global, sys::membarrier_slow);
        }
    }

    /// The heavy side of the asymmetric barrier pairs (wake-up, `gate`): forces a full barrier on every running thread of
    /// every registered process (or is a plain full fence when some node
    /// could not register, in which case the light side fences too). The
    /// `membarrier` call's result is checked: if it fails, the namespace
    /// falls back to fences.
    pub fn heavy_barrier(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.heavy_side();
    }

    /// Called by a receiver between announcing itself as a sleeper and its
    /// last check of its queues.
    pub fn before_sleep_check(&self) {
        // Symmetric mode needs nothing more: the announcement's fence (in
        // `prepare`) pairs with the senders' fences.
        self.heavy_side();
    }

    /// Wakes node `index` if it sleeps. `index` comes from shared memory and
    /// is checked.
    pub fn wake(&self, index: u32) {
        if let Some(s) = self.slot(index) {
            if s.wait.0.notify(self.asymmetric()) {
                sys::futex_wake_all(&s.wait.0.seq);
            }
        }
    }

    /// True while the node that `key` ([`node_key`]) names runs. `key` comes
    /// from shared memory; any value is safe.
    pub fn owner_alive(&self, key: u64) -> bool {
        key_alive(&self.registry, key)
    }

    /// True when slot `index` holds a node whose process is gone and that
    /// no reclaim pass has cleaned up after yet.
    pub fn slot_dead(&self, index: u32) -> bool {
        is_dead(&self.registry, index)
    }

    /// This node's own slot.
    pub fn own_slot(&self) -> Option<&NodeSlot> {
        self.slot(self.index)
    }

    /// An exchange was created, went down or was removed: moves the
    /// namespace's exchange epoch and wakes every node, so watchers look.
    pub fn exchanges_changed(&self) {
        if let Some(h) = self.registry.get::<RegistryHeader>(0) {
            h.exchanges_epoch.fetch_add(1, Ordering::AcqRel);
        }
        for i in 0..MAX_NODES {
            if self
                .slot(i)
                .is_some_and(|s| s.state.load(Ordering::Relaxed) == NODE_ALIVE)
            {
                self.wake(i);
            }
        }
    }

    /// The namespace's exchange epoch (see [`exchanges_changed`](Self::exchanges_changed)).
    pub fn exchanges_epoch(&self) -> u32 {
        self.registry
            .get::<RegistryHeader>(0)
            .map_or(0, |h| h.exchanges_epoch.load(Ordering::Acquire))
    }

    /// True when some other node of the namespace died and was not
    /// reclaimed yet (what the heartbeat thread checks each beat).
    pub fn sees_dead_node(&self) -> bool {
        (0..MAX_NODES).any(|i| i != self.index && is_dead(&self.registry, i))
    }
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.stop();
        }
        if !self.owns_slot {
            return;
        }
        // The liveness lock closes after this returns (fields drop last).
        // Without the control lock (a stopped holder), the slot stays
        // "alive" until then, and reads dead afterwards: a reclaim pass
        // cleans up after this node.
        let Ok(_guard) = self.control() else { return };
        if let Some(s) = self.own_slot() {
            s.state.store(NODE_FREE, Ordering::Release);
        }
        let anyone_left = (0..MAX_NODES).any(|i| {
            self.slot(i)
                .is_some_and(|s| s.state.load(Ordering::Relaxed) == NODE_ALIVE)
                && !is_dead(&self.registry, i)
        });
        if !anyone_left && self.registry.path_is_ours() {
            // Last one out: every transient exchange left in the namespace
            // belongs to dead processes. Remove them, then the registry
            // unless a persistent exchange stays. Only files that are ours
            // are removed: a regular file we may trust with one link, a
            // valid exchange header, and still the inode we checked when
            // unlinked; anything else with a matching name stays.
            let prefix = self.namespace.exchange_prefix();
            let group = self.namespace.share_group;
            let mut keep = false;
            for path in self.namespace.segment_files() {
                let is_exchange = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
                if !is_exchange {
                    continue;
                }
                let Ok(Some(seg)) = Segment::open_read_only(&path, group) else {
                    continue;
                };
                let valid = seg.is_uninitialised()
                    || seg
                        .check_header(crate::layout::KIND_EXCHANGE, "exchange")
                        .is_ok();
                if !valid {
                    continue;
                }
                if is_persistent(&path, group) {
                    keep = true;
                } else if seg.path_is_ours() {
                    let _ = std::fs::remove_file(&path);
                }
            }
            if !keep {
                let _ = std::fs::remove_file(&self.registry.path);
            }
        }
    }
}

/// True when the exchange file at `path` says it is persistent (read
/// without joining it; false when it cannot be read).
pub(crate) fn is_persistent(path: &std::path::Path, group: Option<u32>) -> bool {
    let Ok(Some(seg)) = Segment::open_read_only(path, group) else {
        return false;
    };
    seg.get::<crate::layout::ExchangeHeader>(0)
        .is_some_and(|h| h.persistent.load(Ordering::Relaxed) == 1)
}

/// What one reclaim pass ([`Node::reclaim_dead`](crate::Node::reclaim_dead)) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reclaimed {
    /// Nodes found dead and now marked "reclaimed".
    pub nodes: Vec<NodeInfo>,
    /// Ports of dead processes detached from their exchanges.
    pub ports: u32,
    /// Chunks given back to their pools (loaned, queued, cached or held by
    /// the dead).
    pub chunks: u32,
    /// Requests queued at a dead server, failed towards their clients.
    /// (Requests a dead server had taken are reported failed by their
    /// clients' own check of the servers holding them.)
    pub requests_failed: u32,
    /// Transient exchanges taken down because their creator died.
    pub exchanges_down: Vec<String>,
    /// Exchanges skipped because a live port stayed inside an operation (a
    /// stopped process); a later pass retries them.
    pub busy: Vec<String>,
}

impl Reclaimed {
    /// True when the pass found nothing to do.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.ports == 0
            && self.chunks == 0
            && self.exchanges_down.is_empty()
            && self.busy.is_empty()
    }
}

/// What `shmex ls` shows of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Registry slot.
    pub id: u32,
    /// Name given at creation.
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// "alive", "hung" (process exists, heartbeat older than [`HUNG_AFTER`]),
    /// "dead" (process gone, not yet reclaimed) or "reclaimed" (process gone,
    /// everything it held given back; the slot is free for reuse).
    pub state: &'static str,
    /// Start time of its process (clock ticks since boot, from
    /// `/proc/PID/stat`): with `pid`, identifies the process across pid reuse.
    pub start_time: u64,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
}

/// Reads the nodes of a namespace without joining it. `Ok(empty)` when the
/// namespace does not exist.
pub fn list_nodes(ns: &Namespace) -> Result<Vec<NodeInfo>, SegmentError> {
    if !ns.dir().exists() && std::fs::symlink_metadata(ns.dir()).is_err() {
        return Ok(Vec::new());
    }
    let Some(seg) = Segment::open_read_only(&ns.registry_path(), ns.share_group)? else {
        return Ok(Vec::new());
    };
    if seg.is_uninitialised() {
        return Ok(Vec::new());
    }
    seg.check_header(KIND_REGISTRY, "registry")?;
    let now = now_ms();
    let mut out = Vec::new();
    for i in 0..MAX_NODES {
        let Some(s) = slot(&seg, i) else { break };
        let slot_state = load_acquire_read_only(&s.state);
        if slot_state == NODE_FREE {
            continue;
        }
        let pid = s.pid.load(Ordering::Relaxed);
        let name_len = s.name_len.load(Ordering::Relaxed) as usize;
        let alive = slot_alive(&seg, i);
        let age = now.saturating_sub(s.heartbeat.load(Ordering::Relaxed));
        out.push(NodeInfo {
            id: i,
            name: String::from_utf8_lossy(&load_bytes(&s.name, name_len)).into_owned(),
            pid,
            state: match (alive, age > HUNG_AFTER.as_millis() as u64) {
                _ if slot_state == NODE_RECLAIMED => "reclaimed",
                (false, _) => "dead",
                (true, true) => "hung",
                (true, false) => "alive",
            },
            heartbeat_age_ms: age,
            start_time: s.start_time.load(Ordering::Relaxed),
        });
    }
    Ok(out)
}

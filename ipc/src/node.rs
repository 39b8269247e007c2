//! Nodes: a process's registration in a namespace.
//!
//! The namespace registry is one segment, `ROOT/shmex-UID/shmex.NS.registry`, holding a
//! slot per node (pid, process start time, name, heartbeat, wait word). Its
//! file also serves as the namespace's control lock (`flock`): every change to
//! the set of segments, nodes or ports happens under it, so control operations
//! are simple and serial, and the kernel releases the lock of a process that
//! dies. Data paths never take it.

use crate::error::{NodeError, SegmentError};
use crate::exchange::{Exchange, Limits, Pattern};
use crate::layout::{
    load_bytes, store_bytes, NodeSlot, RegistryHeader, RegistryLayout, KIND_REGISTRY, MAX_NODES,
    MAX_NODE_NAME, NODE_ALIVE, NODE_FREE, NODE_RECLAIMED,
};
use crate::segment::{load_acquire_read_only, Created, Segment};
use crate::sys;
use shmex_core::barrier_mode;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Default namespace when neither the builder nor `SHMEX_NAMESPACE` names one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Default root folder when neither the builder nor `SHMEX_ROOT` names one.
pub const DEFAULT_ROOT: &str = "/dev/shm";
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
/// Heartbeat age after which `list_nodes` reports a live process as hung.
pub const HUNG_AFTER: Duration = Duration::from_secs(1);
/// Longest wait for the namespace's control lock (the registry's `flock`,
/// taken to create or open exchanges, attach or detach ports, join or leave,
/// and by reclaim passes). A holder that stopped or hung makes such calls
/// fail with [`SegmentError::LockTimeout`] after this long instead of
/// blocking; data paths never take the lock.
pub const CONTROL_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long a pass made on the side (a node joining, a heartbeat) waits for
/// the control lock before leaving the work to the next beat.
const RECLAIM_ON_THE_SIDE_WAIT: Duration = Duration::from_millis(10);
/// Default time a receiver spins before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// Where a namespace's segments live.
///
/// `root` is the shared folder every user sees (`/dev/shm` by default,
/// `SHMEX_ROOT`); shmex never puts files in it directly. Each user's
/// namespaces live in a directory of their own inside it,
/// [`dir`](Self::dir): `ROOT/shmex-UID/` (mode 0700, owned by the user), or
/// `ROOT/shmex-gGID/` (setgid, mode 02770, group GID) for a namespace shared
/// with a group ([`NodeBuilder::share_group`]). The directory is created on
/// first use, checked on every open (a directory, not a symbolic link, ours
/// or the share group's, exact mode) and never removed: namespaces of the
/// same user come and go in it. The root must be a directory owned by us or
/// by root, sticky if others may write to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The shared folder holding the per-user directories.
    pub root: PathBuf,
    /// Prefix of every segment's name (see [`check_namespace_name`]).
    pub name: String,
    /// Group id the namespace is shared with, if any: its files are then
    /// 0660 in the group's directory, and files of other members of the
    /// group are accepted.
    pub share_group: Option<u32>,
}

/// Checks a namespace name: 1–64 bytes of `[A-Za-z0-9_.-]`, not `.` or
/// `..`.
pub fn check_namespace_name(name: &str) -> Result<(), NodeError> {
    check_name("namespace", name, 64).map_err(|(what, reason)| NodeError::InvalidName {
        what,
        name: name.to_string(),
        reason,
    })
}

/// Resolves a group given by name or number to its gid.
pub fn resolve_group(group: &str) -> Result<u32, NodeError> {
    let unknown = || NodeError::UnknownGroup {
        group: group.to_string(),
    };
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(unknown()),
    }
}

/// `SHMEX_ROOT`, else [`DEFAULT_ROOT`].
fn env_root() -> PathBuf {
    std::env::var_os("SHMEX_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// A variable's value as UTF-8, `None` when unset or empty.
fn env_utf8(var: &'static str) -> Result<Option<String>, NodeError> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .map_err(|v| NodeError::InvalidEnv {
                var,
                value: v.to_string_lossy().into_owned(),
                reason: "not UTF-8".into(),
            }),
    }
}

/// `SHMEX_NAMESPACE` (checked), else [`DEFAULT_NAMESPACE`].
fn env_namespace() -> Result<String, NodeError> {
    let name = env_utf8("SHMEX_NAMESPACE")?.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    check_namespace_name(&name)?;
    Ok(name)
}

/// `SHMEX_SHARE_GROUP` resolved to a gid, else `None`.
fn env_share_group() -> Result<Option<u32>, NodeError> {
    env_utf8("SHMEX_SHARE_GROUP")?
        .map(|g| resolve_group(&g))
        .transpose()
}

impl Namespace {
    /// Namespace `name` under `root`, private to this user.
    pub fn new(root: impl Into<PathBuf>, name: impl Into<String>) -> Namespace {
        Namespace {
            root: root.into(),
            name: name.into(),
            share_group: None,
        }
    }

    /// The namespace from `SHMEX_ROOT` / `SHMEX_NAMESPACE` /
    /// `SHMEX_SHARE_GROUP` (a group name or gid), or the defaults (`/dev/shm`,
    /// `default`, private). A `SHMEX_NAMESPACE` that is not UTF-8 or not a
    /// valid name, and an unknown group, are errors.
    pub fn from_env() -> Result<Namespace, NodeError> {
        Ok(Namespace {
            root: env_root(),
            name: env_namespace()?,
            share_group: env_share_group()?,
        })
    }

    /// The directory holding this namespace's files: `ROOT/shmex-UID` (our
    /// effective uid), or `ROOT/shmex-gGID` when shared with a group.
    pub fn dir(&self) -> PathBuf {
        match self.share_group {
            Some(g) => self.root.join(format!("shmex-g{g}")),
            None => self.root.join(format!("shmex-{}", sys::euid())),
        }
    }

    /// Creates (when missing) and checks [`dir`](Self::dir) and the root.
    pub(crate) fn prepare_dir(&self) -> Result<(), SegmentError> {
        crate::segment::prepare_dir(&self.root, &self.dir(), self.share_group)
    }

    /// Path of the registry segment.
    pub fn registry_path(&self) -> PathBuf {
        self.dir().join(format!("shmex.{}.registry", self.name))
    }

    /// Path of exchange `name`'s segment.
    pub fn exchange_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("shmex.{}.x.{}", self.name, name))
    }

    /// File-name prefix of this namespace's exchange segments.
    pub(crate) fn exchange_prefix(&self) -> String {
        format!("shmex.{}.x.", self.name)
    }

    /// Every file of this namespace in its directory (registry and
    /// exchanges), whatever their type: listing opens none of them.
    pub fn segment_files(&self) -> Vec<PathBuf> {
        let prefix = format!("shmex.{}.", self.name);
        let mut out = Vec::new();
        if let Ok(dir) = std::fs::read_dir(self.dir()) {
            for e in dir.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                let rest = name.strip_prefix(&prefix);
                if rest.is_some_and(|r| r == "registry" || r.starts_with("x.")) {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }
}

/// The one rule for namespace, node, exchange names and each of them:
/// 1..=`max` bytes of ASCII letters, digits, `_`, `-` and `.`, and not `.`
/// or `..` (so no `/`, NUL or control character can reach a file name).
pub(crate) fn check_name(
    what: &'static str,
    name: &str,
    max: usize,
) -> Result<(), (&'static str, &'static str)> {
    if name.is_empty() {
        return Err((what, "empty"));
    }
    if name.len() > max {
        return Err((what, "too long"));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        return Err((
            what,
            "only ASCII letters, digits, '_', '-' and '.' are allowed",
        ));
    }
    if name == "." || name == ".." {
        return Err((what, "'.' and '..' are not names"));
    }
    Ok(())
}

/// Builds a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    name: String,
    namespace: Option<String>,
    root: Option<PathBuf>,
    share_group: Option<String>,
    spin: Duration,
    heartbeat: Duration,
}

impl NodeBuilder {
    /// Namespace to join (default: `SHMEX_NAMESPACE`, else `default`).
    pub fn namespace(mut self, name: impl Into<String>) -> Self {
        self.namespace = Some(name.into());
        self
    }

    /// Shared folder holding the per-user directories (default:
    /// `SHMEX_ROOT`, else `/dev/shm`); see [`Namespace`].
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// Shares the namespace with the members of `group` (a group name or a
    /// gid; default: `SHMEX_SHARE_GROUP`, else private). Its files then live
    /// in `ROOT/shmex-gGID/` (setgid, 02770), are created 0660, and files of
    /// other members of the group are accepted. Every member must ask for
    /// the same group. Without it, files of another user are refused.
    pub fn share_group(mut self, group: impl Into<String>) -> Self {
        self.share_group = Some(group.into());
        self
    }

    /// How long a blocking receive busy-polls before it sleeps (default
    /// 20 µs). Zero sleeps at once; longer spins cut wake-up latency on
    /// machines where a sleeping core wakes slowly, at the price of CPU.
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// How often the node's background thread writes its heartbeat into its
    /// registry slot (default 100 ms). `Duration::ZERO` disables the thread;
    /// the heartbeat then only shows when the node joined.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Joins the namespace: creates its registry if needed, frees the slots
    /// of nodes whose processes have exited, and claims a slot.
    pub fn create(self) -> Result<Node, NodeError> {
        let name = match self.namespace {
            Some(name) => name,
            None => env_namespace()?,
        };
        let root = self.root.unwrap_or_else(env_root);
        let share_group = match &self.share_group {
            Some(g) => Some(resolve_group(g)?),
            None => env_share_group()?,
        };
        let ns = Namespace {
            root,
            name,
            share_group,
        };
        check_namespace_name(&ns.name)?;
        check_name("node", &self.name, MAX_NODE_NAME).map_err(|(what, reason)| {
            NodeError::InvalidName {
                what,
                name: self.name.clone(),
                reason,
            }
        })?;
        ns.prepare_dir()?;
        let registry = open_registry(&ns)?;
        let liveness = open_liveness(&registry)?;
        let (pid, start_time) = sys::self_identity();
        let index = {
            let _lock = lock_registry(&registry, CONTROL_LOCK_WAIT)?;
            if !sys::membarrier_register() {
                if let Some(h) = registry.get::<RegistryHeader>(0) {
                    barrier_mode::fall_back(&h.senders_fence);
                }
            }
            // A free slot, else one whose node was reclaimed, else one whose
            // process died (the new generation makes its ports dead to
            // reclaim). Ours once we hold its liveness lock.
            let state = |i| slot(&registry, i).map(|s| s.state.load(Ordering::Relaxed));
            let candidates = (0..MAX_NODES)
                .filter(|&i| state(i) == Some(NODE_FREE))
                .chain((0..MAX_NODES).filter(|&i| state(i) == Some(NODE_RECLAIMED)))
                .chain((0..MAX_NODES).filter(|&i| is_dead(&registry, i)));
            let mut index = None;
            for i in candidates {
                let locked = sys::ofd_try_lock(&liveness, liveness_offset(i)).map_err(|e| {
                    SegmentError::Io {
                        path: registry.path.clone(),
                        source: e,
                    }
                })?;
                if locked {
                    index = Some(i);
                    break;
                }
            }
            let index = index.ok_or(NodeError::RegistryFull { max: MAX_NODES })?;
            let s = slot(&registry, index).ok_or(NodeError::RegistryFull { max: MAX_NODES })?;
            s.pid.store(pid, Ordering::Relaxed);
            s.start_time.store(start_time, Ordering::Relaxed);
            s.heartbeat.store(now_ms(), Ordering::Relaxed);
            s.name_len.store(self.name.len() as u32, Ordering::Relaxed);
            store_bytes(&s.name, self.name.as_bytes());
            s.wait.0.sleepers.store(0, Ordering::Relaxed);
            s.generation.fetch_add(1, Ordering::Relaxed);
            s.state.store(NODE_ALIVE, Ordering::Release);
            index
        };
        let generation = slot(&registry, index).map_or(0, |s| s.generation.load(Ordering::Relaxed));
        let registry = Arc::new(registry);
        let control = Arc::new(Mutex::new(()));
        let mut liveness = Some(liveness);
        let mut inner = |heartbeat, owns_slot: bool| NodeInner {
            name: self.name.clone(),
            namespace: ns.clone(),
            index,
            pid,
            spin: self.spin,
            control: control.clone(),
            registry: registry.clone(),
            key: node_key(index, generation),
            heartbeat,
            owns_slot,
            _liveness: if owns_slot { liveness.take() } else { None },
        };
        // The heartbeat thread reclaims through a twin that shares the
        // registry and the control lock but owns no slot, so it never holds
        // the node itself: dropping the node's last handle stops the thread
        // (waiting for a pass in progress) and deregisters at once.
        let twin = Arc::new(inner(None, false));
        let heartbeat = Heartbeat::start(registry.clone(), index, self.heartbeat, twin);
        let inner = Arc::new(inner(heartbeat, true));
        // Nodes notice dead peers when they join.
        if inner.sees_dead_node() {
            let _ = crate::reclaim::reclaim_dead(&inner, RECLAIM_ON_THE_SIDE_WAIT);
        }
        Ok(Node { inner })
    }
}

/// The clock of heartbeats: [`sys::monotonic_ms`] (compared across
/// processes; a wall-clock jump makes no node look hung).
pub(crate) fn now_ms() -> u64 {
    sys::monotonic_ms()
}

fn slot(registry: &Segment, index: u32) -> Option<&NodeSlot> {
    if index >= MAX_NODES {
        return None;
    }
    registry.get(RegistryLayout::SLOTS + index as usize * std::mem::size_of::<NodeSlot>())
}

/// Offset of the byte whose OFD lock says node slot `index` is held by a
/// running process (far past the registry's end: locks need no data).
fn liveness_offset(index: u32) -> i64 {
    (1 << 40) + i64::from(index)
}

/// A descriptor of its own on the registry file, whose open file
/// description holds the node's liveness lock for the node's life.
fn open_liveness(registry: &Segment) -> Result<std::fs::File, SegmentError> {
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
fn slot_alive(registry: &Segment, index: u32) -> bool {
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
fn is_dead(registry: &Segment, index: u32) -> bool {
    slot(registry, index).is_some_and(|s| load_acquire_read_only(&s.state) == NODE_ALIVE)
        && !slot_alive(registry, index)
}

/// Takes the control lock (the registry's `flock`), waiting at most `wait`.
fn lock_registry(registry: &Segment, wait: Duration) -> Result<sys::FileLock<'_>, SegmentError> {
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
fn open_registry(ns: &Namespace) -> Result<Segment, NodeError> {
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
    control: Arc<Mutex<()>>,
    pub registry: Arc<Segment>,
    heartbeat: Option<Heartbeat>,
    /// This registration's identity ([`node_key`]), recorded as the owner of
    /// its ports, exchange handles and created exchanges.
    pub key: u64,
    /// False for the heartbeat thread's twin: dropping it deregisters
    /// nothing.
    owns_slot: bool,
    /// The descriptor holding the slot's liveness lock (the node itself,
    /// not its twin); closing it tells every other process the node is gone.
    _liveness: Option<std::fs::File>,
}

thread_local! {
    /// Address of the NodeInner whose control lock this thread holds (0: none).
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The background thread that writes a node's heartbeat and, when it sees a
/// dead node in the registry, runs a reclaim pass ([`Node::reclaim_dead`]).
/// It reclaims through a twin of the node (same registry, same control
/// lock, no slot of its own), never through the node itself, so the node is
/// always dropped (and deregistered) by its last user, who first stops this
/// thread.
struct Heartbeat {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Heartbeat {
    fn start(
        registry: Arc<Segment>,
        index: u32,
        interval: Duration,
        twin: Arc<NodeInner>,
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
                        let _ = crate::reclaim::reclaim_dead(&twin, RECLAIM_ON_THE_SIDE_WAIT);
                    }
                    std::thread::park_timeout(interval);
                }
            })
            .ok()?;
        Some(Heartbeat { stop, thread })
    }

    fn stop(self) {
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
    fn barrier_mode(&self) -> Option<&AtomicU32> {
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
    fn heavy_side(&self) {
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
                if crate::exchange::is_persistent(&path, group) {
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

/// One participant in a namespace, normally one per process.
///
/// Creating a node registers it in the namespace registry (name, pid, process
/// start time); dropping the last handle to it (the node and every exchange
/// and port made from it) deregisters it. The last node to leave a namespace
/// removes the namespace's files.
///
/// ```no_run
/// let node = shmex::Node::builder("svc").namespace("demo").create()?;
/// # Ok::<(), shmex::NodeError>(())
/// ```
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("namespace", &self.inner.namespace)
            .field("id", &self.inner.index)
            .finish()
    }
}

impl Node {
    /// Test support: whether this node uses `membarrier` (heavy side issues
    /// it, light side skips its fence) rather than symmetric fences.
    #[doc(hidden)]
    pub fn uses_membarrier(&self) -> bool {
        self.inner.asymmetric()
    }

    /// Starts building a node called `name` (1–32 bytes of `[A-Za-z0-9_.-]`,
    /// not `.` or `..`).
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            namespace: None,
            root: None,
            share_group: None,
            spin: DEFAULT_SPIN,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The namespace the node joined.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    /// Index of the node's slot in the registry.
    pub fn id(&self) -> u32 {
        self.inner.index
    }

    /// Creates exchange `name` with `pattern` and `limits`. Fails with
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists) when a
    /// live exchange of that name exists; one left behind by processes that
    /// have all exited is replaced.
    pub fn create_exchange(
        &self,
        name: &str,
        pattern: Pattern,
        limits: Limits,
    ) -> Result<Exchange, crate::OpenError> {
        Exchange::create(
            &self.inner,
            name,
            pattern,
            limits,
            &crate::TypeInfo::bytes(),
            &crate::TypeInfo::bytes(),
        )
    }

    /// Opens the live exchange `name`; [`OpenError::NotFound`](crate::OpenError::NotFound) otherwise.
    pub fn open_exchange(&self, name: &str) -> Result<Exchange, crate::OpenError> {
        Exchange::open(&self.inner, name)
    }

    /// Finds the nodes of this namespace whose processes are gone and reclaims
    /// everything they held on every exchange of the namespace: their ports
    /// leave, chunks they had loaned, queued, cached or were reading return
    /// to the pool, requests queued at or held by a dead server fail towards
    /// their clients, half-finished sends are voided, and transient exchanges
    /// they created go down. Safe to call from any number of processes at
    /// once: each dead node is reclaimed exactly once (under the namespace's
    /// control lock). The heartbeat thread runs it whenever it sees a dead
    /// node; `shmex supervisor` runs it on every process exit.
    ///
    /// Waits at most [`CONTROL_LOCK_WAIT`] for the control lock, then fails
    /// with [`SegmentError::LockTimeout`] (see
    /// [`reclaim_dead_within`](Self::reclaim_dead_within)).
    pub fn reclaim_dead(&self) -> Result<Reclaimed, SegmentError> {
        crate::reclaim::reclaim_dead(&self.inner, CONTROL_LOCK_WAIT)
    }

    /// [`reclaim_dead`](Self::reclaim_dead), waiting at most `wait` for the
    /// namespace's control lock: a supervisor passes a short wait so that a
    /// stopped holder of the lock never stops it watching the others.
    pub fn reclaim_dead_within(&self, wait: Duration) -> Result<Reclaimed, SegmentError> {
        crate::reclaim::reclaim_dead(&self.inner, wait)
    }

    /// Watches exchange `name` (which need not exist yet): the [`Watch`]
    /// reports [`ExchangeEvent::Down`](crate::ExchangeEvent::Down) when it
    /// goes down and [`ExchangeEvent::Up`](crate::ExchangeEvent::Up) when it
    /// is (re)created.
    ///
    /// [`Watch`]: crate::Watch
    pub fn watch(&self, name: &str) -> Result<crate::Watch, crate::OpenError> {
        crate::watch::Watch::new(&self.inner, name)
    }

    /// Takes exchange `name` down and removes it, persistent or not: its
    /// users get `ExchangeDown` from then on, watchers see
    /// [`ExchangeEvent::Down`](crate::ExchangeEvent::Down).
    pub fn remove_exchange(&self, name: &str) -> Result<(), crate::OpenError> {
        crate::reclaim::remove_exchange(&self.inner, name)
    }

    /// Opens exchange `name`, creating it when it does not exist. An existing
    /// exchange must have the same pattern and limits.
    pub fn open_or_create_exchange(
        &self,
        name: &str,
        pattern: Pattern,
        limits: Limits,
    ) -> Result<Exchange, crate::OpenError> {
        Exchange::open_or_create(&self.inner, name, pattern, limits)
    }
}

/// What one reclaim pass ([`Node::reclaim_dead`]) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

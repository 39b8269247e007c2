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
    store_bytes, RegistryHeader, MAX_NODES, MAX_NODE_NAME, NODE_ALIVE, NODE_FREE, NODE_RECLAIMED,
};
use crate::namespace::{
    check_name, env_namespace, env_root, env_share_group, RECLAIM_ON_THE_SIDE_WAIT,
};
pub use crate::namespace::{
    check_namespace_name, resolve_group, Namespace, CONTROL_LOCK_WAIT, DEFAULT_HEARTBEAT,
    DEFAULT_NAMESPACE, DEFAULT_ROOT, DEFAULT_SPIN, HUNG_AFTER,
};
use crate::registry::{
    is_dead, liveness_offset, lock_registry, node_key, now_ms, open_liveness, open_registry, slot,
    Heartbeat, NodeInner,
};
pub use crate::registry::{list_nodes, NodeInfo, Reclaimed};
use crate::sys;
use shmex_core::barrier_mode;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        let heartbeat = Heartbeat::start(
            registry.clone(),
            index,
            self.heartbeat,
            twin,
            reclaim_on_the_side,
        );
        let inner = Arc::new(inner(heartbeat, true));
        // Nodes notice dead peers when they join.
        if inner.sees_dead_node() {
            let _ = crate::reclaim::reclaim_dead(&inner, RECLAIM_ON_THE_SIDE_WAIT);
        }
        Ok(Node { inner })
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

    /// Opens exchange `name`, creating it (untyped) when it does not exist.
    /// An existing exchange must have the same pattern and limits; its
    /// payload type is not checked: like [`open_exchange`](Self::open_exchange)
    /// it opens a typed exchange too, as bytes (tools, C).
    /// [`open_or_create_typed_exchange`](Self::open_or_create_typed_exchange)
    /// checks the type.
    pub fn open_or_create_exchange(
        &self,
        name: &str,
        pattern: Pattern,
        limits: Limits,
    ) -> Result<Exchange, crate::OpenError> {
        Exchange::open_or_create(&self.inner, name, pattern, limits, None)
    }
}

/// The pass a heartbeat runs when it sees a dead node
/// ([`Heartbeat`](crate::registry::Heartbeat) cannot name reclaim, a layer above it).
fn reclaim_on_the_side(node: &Arc<NodeInner>) {
    let _ = crate::reclaim::reclaim_dead(node, RECLAIM_ON_THE_SIDE_WAIT);
}

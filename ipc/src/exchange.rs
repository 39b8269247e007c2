//! Exchanges: named segments holding a chunk pool, a port table and one
//! inbox ring per port.
//!
//! Layout of `ROOT/shmex.NS.x.NAME` (offsets from [`ExchangeLayout`]):
//! header (limits, name, creator, table of open handles) · port table ·
//! pool head · ring controls · ring slots · chunk blocks (header with
//! refcount and routing key, then payload).
//!
//! An exchange lives as long as some live process holds it open: the last
//! handle to close removes the file, and a file whose holders have all exited
//! is treated as absent (removed at the next create or open).

use crate::error::{OpenError, PortError, SegmentError, SendError};
use crate::layout::{
    load_bytes, store_bytes, ChunkHeader, ExchangeHeader, ExchangeLayout, KeyArea, PoolLine,
    PortSlot, RawLimits, EX_DOWN, KIND_EXCHANGE, MAX_EXCHANGE_NAME, MAX_USERS, PORT_ACTIVE,
    PORT_CLOSING, PORT_FREE, RETURN_DEPTH,
};
use crate::node::{check_name, Namespace, NodeInner};
use crate::owned::Keeper;
use crate::sample::Loan;
use crate::segment::{Created, Segment};
use crate::typed::TypeInfo;
use shmex_core::pool::{ChunkMeta, MetaTable, Pool};
use shmex_core::ring::{Descriptor, PushError, Ring, RingControl, Slot};
use shmex_core::{gate, recycle, Corrupt};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Which message exchange pattern an exchange serves; fixes the roles its
/// ports may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Clients send tagged requests, servers answer each once.
    RequestResponse,
    /// Publishers publish under routing keys; subscribers receive what matches
    /// their topic pattern.
    PublishSubscribe,
    /// Many producers, one consumer.
    FanIn,
    /// Task distribution: submitters queue tasks, workers take them within
    /// a prefetch limit and ack or nack each; unacked tasks are redelivered.
    Tasks,
}

impl Pattern {
    /// Every pattern, in the order of their codes (the C binding's
    /// `SHMEX_PATTERN_*` values 1, 2, 3, 4).
    pub const ALL: [Pattern; 4] = [
        Pattern::RequestResponse,
        Pattern::PublishSubscribe,
        Pattern::FanIn,
        Pattern::Tasks,
    ];

    pub(crate) fn code(self) -> u32 {
        match self {
            Pattern::RequestResponse => 1,
            Pattern::PublishSubscribe => 2,
            Pattern::FanIn => 3,
            Pattern::Tasks => 4,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Pattern> {
        match code {
            1 => Some(Pattern::RequestResponse),
            2 => Some(Pattern::PublishSubscribe),
            3 => Some(Pattern::FanIn),
            4 => Some(Pattern::Tasks),
            _ => None,
        }
    }

    /// The pattern's one spelling: `request-response`, `publish-subscribe`,
    /// `fan-in`, `tasks`. The CLI (`shmex ls`, the supervisor's config and
    /// log), the docs and the C header's `SHMEX_PATTERN_*` names (upper case,
    /// `_` for `-`) use it; [`FromStr`](std::str::FromStr) parses it back
    /// (and also the older `pubsub`, `rpc`, `fanin`, `task-distribution`).
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::RequestResponse => "request-response",
            Pattern::PublishSubscribe => "publish-subscribe",
            Pattern::FanIn => "fan-in",
            Pattern::Tasks => "tasks",
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "request-response" | "rpc" => Ok(Pattern::RequestResponse),
            "publish-subscribe" | "pubsub" => Ok(Pattern::PublishSubscribe),
            "fan-in" | "fanin" => Ok(Pattern::FanIn),
            "tasks" | "task-distribution" => Ok(Pattern::Tasks),
            _ => Err(format!(
                "unknown pattern {s:?} (request-response, publish-subscribe, fan-in, tasks)"
            )),
        }
    }
}

/// Largest exchange segment [`Limits::segment_size`] accepts (64 GiB).
pub const MAX_SEGMENT_SIZE: u64 = 64 << 30;
const MIN_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1);
const MAX_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Sizes of an exchange, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload in bytes (1 B ..= 1 GiB). Default 4096.
    pub chunk_size: usize,
    /// Chunks in the pool: payloads that can be in flight at once across the
    /// whole exchange (1 ..= 2^24). Default 256. Chunks released to a port's
    /// caches (return ring, spare, deferred release) stay reachable: a loan
    /// that finds the pool dry empties every port's caches into it first.
    pub chunk_count: u32,
    /// Descriptors each port's inbox holds; a power of two (2 ..= 2^20).
    /// Default 64.
    pub queue_depth: u32,
    /// Ports that can be attached at once (1 ..= 1024). Default 16.
    pub max_ports: u32,
    /// File mode of the segment: 0o600 (default), or 0o660, which is allowed
    /// only in a namespace shared with a group
    /// ([`NodeBuilder::share_group`](crate::NodeBuilder::share_group)),
    /// where every segment is 0660 anyway.
    pub mode: u32,
    /// Task exchanges: how long a worker may hold a task unacknowledged
    /// before it is taken back and redelivered (1 ms ..= 7 days, default
    /// 30 s).
    pub ack_timeout: std::time::Duration,
    /// Task exchanges: deliveries after which an unacknowledged task goes to
    /// the dead-letter queue instead of being redelivered (1 ..= 255,
    /// default 5).
    pub max_deliveries: u32,
    /// Keep the exchange up when its creator dies and when its last handle
    /// closes (default `false`: a transient exchange goes down when its
    /// creator dies, and is removed when its last handle closes). A
    /// persistent exchange is removed only by
    /// [`Node::remove_exchange`](crate::Node::remove_exchange).
    pub persistent: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            chunk_size: 4096,
            chunk_count: 256,
            queue_depth: 64,
            max_ports: 16,
            mode: 0o600,
            ack_timeout: std::time::Duration::from_secs(30),
            max_deliveries: 5,
            persistent: false,
        }
    }
}

impl Limits {
    pub(crate) fn raw(&self, pattern: Pattern) -> RawLimits {
        RawLimits {
            tasks: pattern == Pattern::Tasks,
            chunk_size: self.chunk_size as u64,
            chunk_count: self.chunk_count,
            queue_depth: self.queue_depth,
            max_ports: self.max_ports,
        }
    }

    /// Bytes of shared memory an exchange of `pattern` with these limits
    /// needs, or why the limits are invalid. Compare with the free space of
    /// the root folder (containers often give `/dev/shm` only 64 MiB).
    pub fn segment_size(&self, pattern: Pattern) -> Result<usize, OpenError> {
        if self.mode != 0o600 && self.mode != 0o660 {
            return Err(OpenError::InvalidLimits {
                reason: format!("mode {:o} must be 600 or 660", self.mode),
            });
        }
        if pattern == Pattern::Tasks
            && !(MIN_ACK_TIMEOUT..=MAX_ACK_TIMEOUT).contains(&self.ack_timeout)
        {
            return Err(OpenError::InvalidLimits {
                reason: format!(
                    "ack_timeout {} ms not in 1 ms..=7 days",
                    self.ack_timeout.as_millis()
                ),
            });
        }
        if pattern == Pattern::Tasks && !(1..=255).contains(&self.max_deliveries) {
            return Err(OpenError::InvalidLimits {
                reason: format!("max_deliveries {} not in 1..=255", self.max_deliveries),
            });
        }
        let total = ExchangeLayout::compute(&self.raw(pattern))
            .map(|l| l.total)
            .map_err(|reason| OpenError::InvalidLimits { reason })?;
        if total as u64 > MAX_SEGMENT_SIZE {
            return Err(OpenError::InvalidLimits {
                reason: format!(
                    "the segment would need {total} bytes, more than the {MAX_SEGMENT_SIZE} allowed"
                ),
            });
        }
        Ok(total)
    }
}

/// Port roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Client = 1,
    Server = 2,
    Publisher = 3,
    Subscriber = 4,
    Producer = 5,
    Consumer = 6,
    Submitter = 7,
    Worker = 8,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Submitter => "submitter",
            Role::Worker => "worker",
        }
    }

    fn pattern(self) -> Pattern {
        match self {
            Role::Client | Role::Server => Pattern::RequestResponse,
            Role::Publisher | Role::Subscriber => Pattern::PublishSubscribe,
            Role::Producer | Role::Consumer => Pattern::FanIn,
            Role::Submitter | Role::Worker => Pattern::Tasks,
        }
    }
}

/// Chunk metadata placed at the start of each chunk block, `stride` apart.
pub(crate) struct ChunkTable {
    base: *const u8,
    stride: usize,
    count: u32,
}

// SAFETY: `base` points into the mapping owned by the same `ExchangeInner`,
// which outlives the table; only atomics are reached through it.
unsafe impl Send for ChunkTable {}
// SAFETY: as above.
unsafe impl Sync for ChunkTable {}

impl ChunkTable {
    fn new(seg: &Segment, layout: &ExchangeLayout, count: u32) -> Self {
        ChunkTable {
            base: seg.base().wrapping_add(layout.chunks),
            stride: layout.chunk_stride,
            count,
        }
    }
}

impl MetaTable for ChunkTable {
    fn len(&self) -> u32 {
        self.count
    }
    fn meta(&self, index: u32) -> &ChunkMeta {
        let index = index.min(self.count.saturating_sub(1)) as usize;
        // SAFETY: the validated layout places `count` blocks of `stride`
        // bytes (each starting with a 64-byte-aligned ChunkHeader, whose
        // first field is the ChunkMeta) inside the mapping; `index` is
        // clamped below `count`; ChunkMeta is made of atomics.
        unsafe { &*(self.base.add(index * self.stride) as *const ChunkMeta) }
    }
}

pub(crate) struct ExchangeInner {
    pub node: Arc<NodeInner>,
    pub name: Arc<str>,
    pub pattern: Pattern,
    pub limits: RawLimits,
    pub layout: ExchangeLayout,
    pub seg: Segment,
    table: ChunkTable,
    regions: Regions,
    /// This process's last reading of each port's return-ring head.
    return_heads: Box<[AtomicU32]>,
    /// Which of this process's ports are inside a data-path operation
    /// ([`enter`](Self::enter)): the process's own record, which a value
    /// forged into a port's shared `busy` word cannot change. One line per
    /// port: threads with ports of their own do not share it.
    in_op: Box<[crossbeam_utils::CachePadded<std::sync::atomic::AtomicBool>]>,
    /// This handle's entry in the users table ([`NO_USER`]: none).
    pub(crate) user: u32,
    /// When this process last emptied the ports' caches for a dry loan
    /// (monotonic ms; 0: never): at most one such pass per
    /// [`FLUSH_INTERVAL_MS`].
    last_flush_ms: std::sync::atomic::AtomicU64,
    /// Task entries whose queue push stalled after their ledger transition
    /// committed (see `push_committed` in `tasks.rs`), with `has_parked`
    /// set while any are: pushed again at a later operation.
    pub(crate) parked: std::sync::Mutex<Vec<crate::tasks::Parked>>,
    pub(crate) has_parked: std::sync::atomic::AtomicBool,
}

pub(crate) use shmex_core::recycle::UNKNOWN_HEAD;

/// A data-path operation in progress on one port ([`ExchangeInner::enter`]);
/// ends when dropped.
pub(crate) struct OpGuard<'a> {
    /// The port's shared counter and this process's in-operation flag;
    /// `None` for a nested guard.
    busy: Option<(&'a AtomicU32, &'a std::sync::atomic::AtomicBool)>,
}

impl OpGuard<'_> {
    /// True when this guard started the operation (not nested in another of
    /// the same port, which a reclaim pass would wait for).
    pub(crate) fn is_outermost(&self) -> bool {
        self.busy.is_some()
    }
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        if let Some((b, in_op)) = self.busy {
            gate::exit(b);
            in_op.store(false, Ordering::Relaxed);
        }
    }
}

/// Why [`ExchangeInner::enter`] failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Down {
    /// The exchange is down.
    Down,
    /// Its state word is corrupt, or stays paused with nobody to end the
    /// pause; the exchange has been marked down.
    Corrupt(Corrupt),
}

impl From<Down> for SendError {
    fn from(d: Down) -> Self {
        match d {
            Down::Down => SendError::ExchangeDown,
            Down::Corrupt(c) => SendError::Corrupt(c),
        }
    }
}

impl From<Down> for crate::error::RecvError {
    fn from(d: Down) -> Self {
        match d {
            Down::Down => crate::error::RecvError::ExchangeDown,
            Down::Corrupt(c) => crate::error::RecvError::Corrupt(c),
        }
    }
}

/// How many times in a row [`ExchangeInner::enter`] may find the exchange
/// paused (each time after waiting for the pass, or finishing it) before it
/// calls the state word corrupt. A real pass ends within its bounded idle
/// wait, and the waiter finishes a pass whose process died.
const MAX_PAUSED_ROUNDS: u32 = 1000;

/// `ExchangeInner::user` of a mapping made by reclaim, not a user's handle.
const NO_USER: u32 = u32::MAX;

/// Longest wait for the control lock of a loan that found the pool dry and
/// empties the ports' caches ([`ExchangeInner::loan_on`]).
const FLUSH_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Shortest time between two cache-emptying passes of one process on one
/// exchange ([`ExchangeInner::loan_on`]).
const FLUSH_INTERVAL_MS: u64 = 10;

/// An empty deferred-release slot.
pub(crate) const NO_DEFERRED: u64 = u64::MAX;

/// The segment's regions, bounds-checked once when the exchange is opened so
/// the data path only checks indices.
struct Regions {
    header: *const ExchangeHeader,
    ports: *const [PortSlot],
    ring_controls: *const [RingControl],
    ring_slots: *const [Slot],
    return_slots: *const [Slot],
    holdings: *const [AtomicU64],
    pool: *const PoolLine,
}

// SAFETY: the pointers target the mapping owned by the same ExchangeInner
// (which outlives every use) and reach only `Shared` types (atomics).
unsafe impl Send for Regions {}
// SAFETY: as above.
unsafe impl Sync for Regions {}

impl Regions {
    fn new(seg: &Segment, layout: &ExchangeLayout, limits: &RawLimits) -> Option<Regions> {
        let ports = limits.max_ports as usize;
        let chunks_end = (limits.chunk_count as usize)
            .checked_mul(layout.chunk_stride)?
            .checked_add(layout.chunks)?;
        if chunks_end > seg.mapped_len() {
            return None;
        }
        Some(Regions {
            header: seg.get::<ExchangeHeader>(0)?,
            ports: seg.slice::<PortSlot>(layout.ports, ports)?,
            ring_controls: seg.slice::<RingControl>(layout.ring_controls, 2 * ports)?,
            ring_slots: seg
                .slice::<Slot>(layout.ring_slots, ports * limits.queue_depth as usize)?,
            return_slots: seg.slice::<Slot>(layout.return_slots, ports * RETURN_DEPTH as usize)?,
            holdings: seg.slice::<AtomicU64>(layout.holdings, ports * layout.holding_words)?,
            pool: seg.get::<PoolLine>(layout.pool)?,
        })
    }
}

/// A handle on an open exchange. Ports are made from it; the exchange stays
/// open while the handle or any of its ports lives.
#[derive(Clone)]
pub struct Exchange {
    pub(crate) inner: Arc<ExchangeInner>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("name", &self.inner.name)
            .field("pattern", &self.inner.pattern)
            .finish()
    }
}

/// Checks an exchange name the way create and open do: 1–64 bytes of
/// `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn check_exchange_name(name: &str) -> Result<(), OpenError> {
    check_name("exchange", name, MAX_EXCHANGE_NAME).map_err(|(_, reason)| OpenError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

impl Exchange {
    pub(crate) fn create(
        node: &Arc<NodeInner>,
        name: &str,
        pattern: Pattern,
        limits: Limits,
        payload: &TypeInfo,
        response: &TypeInfo,
    ) -> Result<Exchange, OpenError> {
        check_exchange_name(name)?;
        let size = limits.segment_size(pattern)?;
        payload.check(limits.chunk_size)?;
        response.check(limits.chunk_size)?;
        let _guard = node.control()?;
        Self::create_locked(node, name, pattern, limits, size, [payload, response])
    }

    pub(crate) fn open(node: &Arc<NodeInner>, name: &str) -> Result<Exchange, OpenError> {
        check_exchange_name(name)?;
        let _guard = node.control()?;
        Self::open_locked(node, name)?.ok_or_else(|| OpenError::NotFound {
            name: name.to_string(),
        })
    }

    pub(crate) fn open_or_create(
        node: &Arc<NodeInner>,
        name: &str,
        pattern: Pattern,
        limits: Limits,
    ) -> Result<Exchange, OpenError> {
        check_exchange_name(name)?;
        let size = limits.segment_size(pattern)?;
        let _guard = node.control()?;
        match Self::open_locked(node, name)? {
            Some(ex) => {
                ex.check_matches(pattern, &limits)?;
                Ok(ex)
            }
            None => {
                let bytes = TypeInfo::bytes();
                Self::create_locked(node, name, pattern, limits, size, [&bytes, &bytes])
            }
        }
    }

    fn check_matches(&self, pattern: Pattern, limits: &Limits) -> Result<(), OpenError> {
        let mismatch = |what, ours: String, theirs: String| OpenError::Mismatch {
            name: self.inner.name.to_string(),
            what,
            ours,
            theirs,
        };
        if pattern != self.inner.pattern {
            return Err(mismatch(
                "pattern",
                pattern.to_string(),
                self.inner.pattern.to_string(),
            ));
        }
        let l = &self.inner.limits;
        let pairs = [
            ("chunk_size", limits.chunk_size as u64, l.chunk_size),
            (
                "chunk_count",
                u64::from(limits.chunk_count),
                u64::from(l.chunk_count),
            ),
            (
                "queue_depth",
                u64::from(limits.queue_depth),
                u64::from(l.queue_depth),
            ),
            (
                "max_ports",
                u64::from(limits.max_ports),
                u64::from(l.max_ports),
            ),
        ];
        for (what, ours, theirs) in pairs {
            if ours != theirs {
                return Err(mismatch(what, ours.to_string(), theirs.to_string()));
            }
        }
        Ok(())
    }

    /// Under the control lock.
    fn create_locked(
        node: &Arc<NodeInner>,
        name: &str,
        pattern: Pattern,
        limits: Limits,
        size: usize,
        types: [&TypeInfo; 2],
    ) -> Result<Exchange, OpenError> {
        if limits.mode == 0o660 && node.namespace.share_group.is_none() {
            return Err(OpenError::InvalidLimits {
                reason: "mode 660 (group access) needs a namespace shared with a group \
                         (share_group, SHMEX_SHARE_GROUP)"
                    .into(),
            });
        }
        let path = node.namespace.exchange_path(name);
        let seg = match Segment::create(&path, size, node.namespace.share_group)? {
            Created::New(seg) => seg,
            Created::Exists => {
                if Self::open_locked(node, name)?.is_some() {
                    return Err(OpenError::AlreadyExists {
                        name: name.to_string(),
                    });
                }
                // open_locked removed a stale one.
                match Segment::create(&path, size, node.namespace.share_group)? {
                    Created::New(seg) => seg,
                    Created::Exists => {
                        return Err(OpenError::AlreadyExists {
                            name: name.to_string(),
                        })
                    }
                }
            }
        };
        let raw = limits.raw(pattern);
        let layout = match ExchangeLayout::compute(&raw) {
            Ok(l) => l,
            Err(reason) => {
                let _ = std::fs::remove_file(&path);
                return Err(OpenError::InvalidLimits { reason });
            }
        };
        let mut inner = match ExchangeInner::new(node, name, pattern, raw, layout, seg) {
            Ok(inner) => inner,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e.into());
            }
        };
        if let Err(e) = inner.initialise(name, pattern, &limits, types) {
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        // initialise recorded the creator as user 0.
        inner.user = 0;
        node.exchanges_changed();
        Ok(Exchange {
            inner: Arc::new(inner),
        })
    }

    /// Opens and validates an existing exchange; `Ok(None)` when absent or
    /// stale (a transient exchange whose holders all exited: removed). Runs
    /// a reclaim pass on it. Under the control lock.
    fn open_locked(node: &Arc<NodeInner>, name: &str) -> Result<Option<Exchange>, OpenError> {
        let Some(mut inner) = ExchangeInner::map_locked(node, name, true)? else {
            return Ok(None);
        };
        let h = inner.header().ok_or_else(|| SegmentError::Corrupt {
            path: inner.seg.path.clone(),
            what: "header does not fit".into(),
        })?;
        if h.state.0.load(Ordering::Acquire) & EX_DOWN != 0 {
            // Taken down while we looked it up; its file is being removed.
            return Ok(None);
        }
        // Drop entries of dead processes; none left means the file is stale.
        let mut live = 0;
        for u in &h.users {
            let pid = u.pid.load(Ordering::Relaxed);
            if pid == 0 {
                continue;
            }
            if inner.node.owner_alive(u.owner.load(Ordering::Relaxed)) {
                live += 1;
            } else {
                u.pid.store(0, Ordering::Relaxed);
            }
        }
        if live == 0 && h.persistent.load(Ordering::Relaxed) == 0 {
            let _ = std::fs::remove_file(&inner.seg.path);
            return Ok(None);
        }
        inner.reclaim_locked();
        if inner.is_down() {
            return Ok(None);
        }
        inner.user = inner.add_user().ok_or_else(|| OpenError::TooManyUsers {
            name: name.to_string(),
            max: MAX_USERS,
        })?;
        Ok(Some(Exchange {
            inner: Arc::new(inner),
        }))
    }

    /// The exchange's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The exchange's pattern.
    pub fn pattern(&self) -> Pattern {
        self.inner.pattern
    }

    /// The exchange's limits (the mode read from the segment file).
    pub fn limits(&self) -> Limits {
        use std::os::unix::fs::MetadataExt;
        let l = &self.inner.limits;
        Limits {
            chunk_size: l.chunk_size as usize,
            chunk_count: l.chunk_count,
            queue_depth: l.queue_depth,
            max_ports: l.max_ports,
            mode: self
                .inner
                .seg
                .file
                .metadata()
                .map_or(0o600, |m| m.mode() & 0o777),
            ack_timeout: self
                .inner
                .task_header()
                .map_or(Limits::default().ack_timeout, |h| {
                    std::time::Duration::from_millis(h.ack_timeout_ms.load(Ordering::Relaxed))
                }),
            max_deliveries: self
                .inner
                .task_header()
                .map_or(Limits::default().max_deliveries, |h| {
                    h.max_deliveries.load(Ordering::Relaxed)
                }),
            persistent: self
                .inner
                .header()
                .is_some_and(|h| h.persistent.load(Ordering::Relaxed) == 1),
        }
    }

    /// Chunks currently free (a snapshot): on the free list or cached in a
    /// sending port's return ring.
    pub fn chunks_free(&self) -> u32 {
        let ex = &self.inner;
        count_free(
            &ex.pool(),
            ex.ports_table(),
            ex.return_controls(),
            ex.limits.chunk_count,
        )
    }

    /// Ports currently attached (a snapshot).
    pub fn ports(&self) -> u32 {
        self.inner.active_ports()
    }

    /// The payload type it was created for ([`TypeInfo::bytes`] when
    /// untyped).
    pub fn payload_type(&self) -> TypeInfo {
        self.inner
            .header()
            .map_or_else(TypeInfo::bytes, |h| TypeInfo::load(&h.payload))
    }

    /// The response type of a typed request-response exchange
    /// ([`Node::create_typed_rpc_exchange`](crate::Node::create_typed_rpc_exchange));
    /// [`TypeInfo::bytes`] for other patterns and untyped exchanges.
    pub fn response_type(&self) -> TypeInfo {
        self.inner
            .header()
            .map_or_else(TypeInfo::bytes, |h| TypeInfo::load(&h.response))
    }
}

impl ExchangeInner {
    fn new(
        node: &Arc<NodeInner>,
        name: &str,
        pattern: Pattern,
        limits: RawLimits,
        layout: ExchangeLayout,
        seg: Segment,
    ) -> Result<ExchangeInner, SegmentError> {
        let regions =
            Regions::new(&seg, &layout, &limits).ok_or_else(|| SegmentError::Corrupt {
                path: seg.path.clone(),
                what: "regions do not fit the segment".into(),
            })?;
        Ok(ExchangeInner {
            node: node.clone(),
            name: name.into(),
            pattern,
            limits,
            layout,
            table: ChunkTable::new(&seg, &layout, limits.chunk_count),
            seg,
            regions,
            return_heads: (0..limits.max_ports)
                .map(|_| AtomicU32::new(UNKNOWN_HEAD))
                .collect(),
            in_op: (0..limits.max_ports)
                .map(|_| {
                    crossbeam_utils::CachePadded::new(std::sync::atomic::AtomicBool::new(false))
                })
                .collect(),
            user: NO_USER,
            last_flush_ms: std::sync::atomic::AtomicU64::new(0),
            parked: std::sync::Mutex::new(Vec::new()),
            has_parked: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Maps and validates the existing exchange `name` without joining it
    /// (no entry in its users table); `Ok(None)` when absent. Removes a file
    /// whose creator died while creating it. Under the control lock.
    /// `populate` maps every page now (for a handle that will use it).
    pub(crate) fn map_locked(
        node: &Arc<NodeInner>,
        name: &str,
        populate: bool,
    ) -> Result<Option<ExchangeInner>, OpenError> {
        let path = node.namespace.exchange_path(name);
        let seg = if populate {
            Segment::open(&path, node.namespace.share_group)?
        } else {
            Segment::open_lazy(&path, node.namespace.share_group)?
        };
        let Some(seg) = seg else {
            return Ok(None);
        };
        if seg.is_uninitialised() {
            // Its creator died while creating it (we hold the lock it held).
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        seg.check_header(KIND_EXCHANGE, "exchange")?;
        let corrupt = |what: String| SegmentError::Corrupt {
            path: path.clone(),
            what,
        };
        let h: &ExchangeHeader = seg
            .get(0)
            .ok_or_else(|| corrupt("header does not fit".into()))?;
        let pattern_code = h.pattern.load(Ordering::Relaxed);
        let pattern = Pattern::from_code(pattern_code)
            .ok_or_else(|| corrupt(format!("unknown pattern code {pattern_code}")))?;
        let raw = RawLimits {
            tasks: pattern == Pattern::Tasks,
            chunk_size: h.chunk_size.load(Ordering::Relaxed),
            chunk_count: h.chunk_count.load(Ordering::Relaxed),
            queue_depth: h.queue_depth.load(Ordering::Relaxed),
            max_ports: h.max_ports.load(Ordering::Relaxed),
        };
        let layout = ExchangeLayout::compute(&raw).map_err(|r| corrupt(format!("limits: {r}")))?;
        if layout.total != seg.len() {
            return Err(SegmentError::SizeMismatch {
                path,
                what: "exchange size for its limits",
                expected: layout.total as u64,
                found: seg.len() as u64,
            }
            .into());
        }
        let stored_name = load_bytes(&h.name, h.name_len.load(Ordering::Relaxed) as usize);
        if stored_name != name.as_bytes() {
            return Err(corrupt(format!(
                "header names exchange {:?}",
                String::from_utf8_lossy(&stored_name)
            ))
            .into());
        }
        Ok(Some(ExchangeInner::new(
            node, name, pattern, raw, layout, seg,
        )?))
    }

    pub(crate) fn header(&self) -> Option<&ExchangeHeader> {
        // SAFETY: validated inside the mapping by Regions::new; the mapping
        // lives as long as self; ExchangeHeader is Shared.
        Some(unsafe { &*self.regions.header })
    }

    fn ports_table(&self) -> &[PortSlot] {
        // SAFETY: as in `header`.
        unsafe { &*self.regions.ports }
    }

    /// Fills a freshly created, all-zero segment. Under the control lock.
    fn initialise(
        &self,
        name: &str,
        pattern: Pattern,
        limits: &Limits,
        [payload, response]: [&TypeInfo; 2],
    ) -> Result<(), SegmentError> {
        let corrupt = || SegmentError::Corrupt {
            path: self.seg.path.clone(),
            what: "new segment too small for its layout".into(),
        };
        let h = self.header().ok_or_else(corrupt)?;
        self.seg.write_header(KIND_EXCHANGE);
        h.pattern.store(pattern.code(), Ordering::Relaxed);
        h.max_ports.store(self.limits.max_ports, Ordering::Relaxed);
        h.queue_depth
            .store(self.limits.queue_depth, Ordering::Relaxed);
        h.chunk_count
            .store(self.limits.chunk_count, Ordering::Relaxed);
        h.chunk_size
            .store(self.limits.chunk_size, Ordering::Relaxed);
        h.name_len.store(name.len() as u32, Ordering::Relaxed);
        store_bytes(&h.name, name.as_bytes());
        h.creator_pid.store(self.node.pid, Ordering::Relaxed);
        h.creator.store(self.node.key, Ordering::Relaxed);
        h.persistent
            .store(u32::from(limits.persistent), Ordering::Relaxed);
        h.incarnation.store(new_incarnation(), Ordering::Relaxed);
        payload.store(&h.payload);
        response.store(&h.response);
        for i in 0..self.limits.max_ports {
            self.ring(i).ok_or_else(corrupt)?.init();
            self.return_ring(i).ok_or_else(corrupt)?.init();
            self.port(i)
                .ok_or_else(corrupt)?
                .spare
                .chunk
                .store(Descriptor::NO_CHUNK, Ordering::Relaxed);
            self.port(i)
                .ok_or_else(corrupt)?
                .spare
                .deferred
                .store(NO_DEFERRED, Ordering::Relaxed);
        }
        self.pool().init();
        self.initialise_tasks(limits.ack_timeout, limits.max_deliveries);
        let u = &h.users[0];
        u.pid.store(self.node.pid, Ordering::Relaxed);
        u.node.store(self.node.index, Ordering::Relaxed);
        u.owner.store(self.node.key, Ordering::Relaxed);
        self.seg.publish_ready();
        Ok(())
    }

    /// Records this handle in the users table. Under the control lock.
    fn add_user(&self) -> Option<u32> {
        let h = self.header()?;
        let (i, u) = h
            .users
            .iter()
            .enumerate()
            .find(|(_, u)| u.pid.load(Ordering::Relaxed) == 0)?;
        u.node.store(self.node.index, Ordering::Relaxed);
        u.owner.store(self.node.key, Ordering::Relaxed);
        u.pid.store(self.node.pid, Ordering::Relaxed);
        Some(i as u32)
    }

    pub fn pool(&self) -> Pool<'_, ChunkTable> {
        // SAFETY: as in `header`.
        let control = unsafe { &(*self.regions.pool).0 };
        Pool::new(control, &self.table)
    }

    /// Port `port`'s inbox.
    pub fn ring(&self, port: u32) -> Option<Ring<'_>> {
        let port = port as usize;
        let depth = self.limits.queue_depth as usize;
        // SAFETY: as in `header`.
        let (controls, slots) =
            unsafe { (&*self.regions.ring_controls, &*self.regions.ring_slots) };
        let control = controls.get(port)?;
        let slots = slots.get(port * depth..(port + 1) * depth)?;
        Ring::new(control, slots)
    }

    /// The return rings' controls, one per port.
    fn return_controls(&self) -> &[RingControl] {
        // SAFETY: as in `header`.
        let controls = unsafe { &*self.regions.ring_controls };
        controls
            .get(self.limits.max_ports as usize..)
            .unwrap_or(&[])
    }

    /// Port `port`'s return ring (free chunks coming back to it).
    pub fn return_ring(&self, port: u32) -> Option<Ring<'_>> {
        if port >= self.limits.max_ports {
            return None;
        }
        let port = port as usize;
        let depth = RETURN_DEPTH as usize;
        // SAFETY: as in `header`.
        let (controls, slots) =
            unsafe { (&*self.regions.ring_controls, &*self.regions.return_slots) };
        let control = controls.get(self.limits.max_ports as usize + port)?;
        let slots = slots.get(port * depth..(port + 1) * depth)?;
        Ring::new(control, slots)
    }

    pub fn port(&self, index: u32) -> Option<&PortSlot> {
        self.ports_table().get(index as usize)
    }

    /// Client port `port`'s stream slot `i`.
    pub(crate) fn stream_slot(&self, port: u32, i: u32) -> Option<&crate::layout::StreamSlot> {
        if port >= self.limits.max_ports || i >= crate::layout::STREAM_SLOTS {
            return None;
        }
        let index = (port * crate::layout::STREAM_SLOTS + i) as usize;
        self.seg
            .get(self.layout.streams + index * std::mem::size_of::<crate::layout::StreamSlot>())
    }

    /// A client released a chunk of the stream in its slot `slot`: one more
    /// for the server's window; wakes the server if it waits.
    pub(crate) fn stream_released(&self, port: u32, slot: u32, generation: u32) {
        if let Some(s) = self.stream_slot(port, slot) {
            if s.generation.load(Ordering::Acquire) == generation {
                s.released.fetch_add(1, Ordering::AcqRel);
                self.node.wake(s.server_node.load(Ordering::Relaxed));
            }
        }
    }

    /// Port `port`'s holdings bits (see [`ExchangeLayout::holdings`]).
    pub(crate) fn holdings(&self, port: u32) -> Option<&[AtomicU64]> {
        let w = self.layout.holding_words;
        // SAFETY: as in `header`.
        let all = unsafe { &*self.regions.holdings };
        all.get(port as usize * w..(port as usize + 1) * w)
    }

    /// True when port `port`'s holdings record `chunk` (an index out of
    /// range is never held).
    pub(crate) fn is_held(&self, port: u32, chunk: u32) -> bool {
        self.holdings(port)
            .and_then(|h| h.get(chunk as usize / 64))
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1u64 << (chunk % 64)) != 0)
    }

    /// Records that port `port` holds `chunk` in hand. Only the port's owner
    /// calls it (single writer: a plain read-modify-write).
    pub(crate) fn hold(&self, port: u32, chunk: u32) {
        if let Some(w) = self.holdings(port).and_then(|h| h.get(chunk as usize / 64)) {
            let bit = 1u64 << (chunk % 64);
            w.store(w.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
        }
    }

    /// Records that port `port` no longer holds `chunk`.
    pub(crate) fn unhold(&self, port: u32, chunk: u32) {
        if let Some(w) = self.holdings(port).and_then(|h| h.get(chunk as usize / 64)) {
            let bit = 1u64 << (chunk % 64);
            w.store(w.load(Ordering::Relaxed) & !bit, Ordering::Relaxed);
        }
    }

    /// Starts a data-path operation on port `port`: marks the port busy so a
    /// reclaim pass waits for the operation to end, and waits while a pass
    /// runs. Fails when the exchange is down. Nested calls on the same port
    /// (a release inside a send) join the outer operation.
    ///
    /// Whether the port is inside an operation is this process's own record
    /// (`in_op`), not the shared counter: an odd value forged into a live
    /// port's counter used to make its owner take every later operation for
    /// a nested one, never move the counter again, and so hold off every
    /// reclaim pass (each gave up after its idle wait) for the owner's life.
    /// Now the owner's next operation puts the counter back to even first;
    /// until then the port looks like one whose owner is stopped.
    pub(crate) fn enter(&self, port: u32) -> Result<OpGuard<'_>, Down> {
        let (Some(slot), Some(h), Some(in_op)) = (
            self.port(port),
            self.header(),
            self.in_op.get(port as usize).map(|f| &**f),
        ) else {
            return Ok(OpGuard { busy: None });
        };
        if in_op.load(Ordering::Relaxed) {
            return Ok(OpGuard { busy: None });
        }
        let busy = &slot.spare.busy;
        for _ in 0..MAX_PAUSED_ROUNDS {
            // The Dekker handshake with reclaim's pause (see `gate`): with
            // `membarrier` on the reclaimer's side, a compiler fence here.
            match gate::enter_with(busy, &h.state.0, || self.node.asymmetric()) {
                gate::Enter::Entered => {
                    in_op.store(true, Ordering::Relaxed);
                    let guard = OpGuard {
                        busy: Some((busy, in_op)),
                    };
                    if self.has_parked.load(Ordering::Relaxed) {
                        self.retry_parked();
                    }
                    return Ok(guard);
                }
                // Odd, but not ours (`in_op` says no operation runs here):
                // another process wrote it. Back to even (release, as
                // `gate::exit`), then enter again.
                gate::Enter::Nested => busy.store(
                    busy.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Release,
                ),
                gate::Enter::Down => return Err(Down::Down),
                gate::Enter::Corrupt => {
                    return Err(self.corrupt_state("exchange state word holds unknown bits"))
                }
                gate::Enter::Paused => self.wait_unpaused(),
            }
        }
        Err(self.corrupt_state("exchange stays paused with no reclaim pass running"))
    }

    /// The exchange's state word cannot be trusted: marks the exchange down
    /// (every other user stops at `ExchangeDown`) and wakes every port so
    /// blocked receivers see it.
    fn corrupt_state(&self, what: &'static str) -> Down {
        if let Some(h) = self.header() {
            gate::take_down(&h.state.0);
        }
        self.node.exchanges_changed();
        self.wake_all_ports();
        Down::Corrupt(Corrupt(what))
    }

    /// True once the exchange went down.
    pub(crate) fn is_down(&self) -> bool {
        self.header().is_some_and(|h| gate::is_down(&h.state.0))
    }

    /// Waits for a reclaim pass to end. A pass holds the control lock, so
    /// after a short spin this blocks on the lock; a pass whose process died
    /// left the exchange paused, and the waiter finishes it.
    fn wait_unpaused(&self) {
        let paused = || self.header().is_some_and(|h| gate::is_paused(&h.state.0));
        for _ in 0..200 {
            if !paused() {
                return;
            }
            std::thread::yield_now();
        }
        if let Ok(_guard) = self.node.control() {
            if paused() {
                self.reclaim_locked();
            }
        }
    }

    /// The routing-key area of chunk `chunk`.
    pub fn chunk_key(&self, chunk: u32) -> Option<&KeyArea> {
        if chunk >= self.limits.chunk_count {
            return None;
        }
        self.seg.get(
            self.layout.chunks + chunk as usize * self.layout.chunk_stride + self.layout.key_offset,
        )
    }

    pub fn chunk_header(&self, chunk: u32) -> Option<&ChunkHeader> {
        if chunk >= self.limits.chunk_count {
            return None;
        }
        self.seg
            .get(self.layout.chunks + chunk as usize * self.layout.chunk_stride)
    }

    /// Pointer to chunk `chunk`'s payload, after checking `chunk` and `len`.
    pub fn payload_ptr(&self, chunk: u32, len: usize) -> Result<*mut u8, Corrupt> {
        if chunk >= self.limits.chunk_count {
            return Err(Corrupt("chunk index out of range"));
        }
        if len as u64 > self.limits.chunk_size {
            return Err(Corrupt("payload length exceeds the chunk size"));
        }
        let offset = self.layout.chunks
            + chunk as usize * self.layout.chunk_stride
            + crate::layout::CHUNK_HEADER;
        if offset + len > self.seg.mapped_len() {
            return Err(Corrupt("payload outside the segment"));
        }
        Ok(self.seg.base().wrapping_add(offset))
    }

    pub fn ports_epoch(&self) -> u32 {
        self.header()
            .map_or(0, |h| h.ports_epoch.load(Ordering::Acquire))
    }

    fn active_ports(&self) -> u32 {
        (0..self.limits.max_ports)
            .filter(|&i| {
                self.port(i)
                    .is_some_and(|p| p.state.load(Ordering::Relaxed) == PORT_ACTIVE)
            })
            .count() as u32
    }

    /// Pushes `d` into the inbox of port `port`, addressed to its attachment
    /// `generation` (see [`stamp`]), and wakes its node.
    pub fn deliver(
        &self,
        port: u32,
        generation: u32,
        node: u32,
        d: &Descriptor,
    ) -> Result<(), PushError> {
        let ring = self
            .ring(port)
            .ok_or(PushError::Corrupt(Corrupt("port index out of range")))?;
        ring.push(&stamped(d, generation))?;
        self.node.wake(node);
        Ok(())
    }

    /// Pushes `d` to a cached target (using its cached ring head), addressed
    /// to the attachment the target was read from, and wakes its node.
    pub fn deliver_to(&self, target: &mut Target, d: &Descriptor) -> Result<(), PushError> {
        let ring = self
            .ring(target.index)
            .ok_or(PushError::Corrupt(Corrupt("port index out of range")))?;
        ring.push_cached(&stamped(d, target.generation), &mut target.head)?;
        self.node.wake(target.node);
        Ok(())
    }

    /// Drops one reference to a chunk shared by several receivers; the last
    /// one frees it ([`return_free`](Self::return_free)).
    pub fn release_ref(&self, chunk: u32) {
        if matches!(self.pool().drop_ref(chunk), Ok(true)) {
            self.return_free(chunk, None, false);
        }
    }

    /// Releases what a descriptor referenced (a queued message nobody will
    /// receive, or a received one).
    pub fn release_descriptor(&self, d: &Descriptor) {
        if d.chunk == Descriptor::NO_CHUNK {
            return;
        }
        if d.flags & FLAG_SOLE != 0 {
            self.return_free(d.chunk, flags_owner(d.flags), true);
        } else {
            self.release_ref(d.chunk);
        }
    }

    /// Returns a chunk the caller holds alone (loaned, not sent).
    pub fn give_back(&self, chunk: u32) {
        self.return_free(chunk, None, true);
    }

    /// Releases a sole-delivered chunk received on port `port` later: it
    /// parks in the port's deferred slot until the port's next receive (or
    /// the next deferral), so a reply sent meanwhile does not wait for the
    /// owner's return-ring line.
    pub fn defer_return(&self, port: u32, chunk: u32, owner: Option<u32>) {
        let Some(slot) = self.port(port) else {
            self.return_free(chunk, owner, true);
            return;
        };
        let owner_bits = owner.map_or(u64::from(u32::MAX), u64::from);
        let prev = slot
            .spare
            .deferred
            .swap(u64::from(chunk) | owner_bits << 32, Ordering::Relaxed);
        self.release_deferred(prev);
    }

    /// Hands port `port`'s deferred chunk, if any, to its owner.
    pub fn flush_deferred(&self, port: u32) {
        if let Some(slot) = self.port(port) {
            if slot.spare.deferred.load(Ordering::Relaxed) != NO_DEFERRED {
                let prev = slot.spare.deferred.swap(NO_DEFERRED, Ordering::Relaxed);
                self.release_deferred(prev);
            }
        }
    }

    fn release_deferred(&self, word: u64) {
        if word == NO_DEFERRED {
            return;
        }
        let chunk = word as u32;
        let owner = (word >> 32) as u32;
        if chunk < self.limits.chunk_count {
            self.return_free(chunk, (owner != u32::MAX).then_some(owner), true);
        }
    }

    /// Frees a chunk nobody references any more: into the return ring of the
    /// port that loaned it (`owner`, else read from the chunk) while that port
    /// is attached and its ring has room, else onto the shared free list.
    /// Chunks in a return ring keep a refcount of 1 (their owner's), chunks on
    /// the free list 0; `refcount_is_one` says which the chunk has now.
    /// The lock-free part (and why racing the owner's leaving is safe) is
    /// [`recycle::recycle`].
    pub fn return_free(&self, chunk: u32, owner: Option<u32>, refcount_is_one: bool) {
        let owner = owner.or_else(|| self.chunk_owner(chunk)).and_then(|o| {
            Some(recycle::Owner {
                state: &self.port(o)?.state,
                attached: PORT_ACTIVE,
                ring: self.return_ring(o)?,
                head_cache: self.return_heads.get(o as usize)?,
            })
        });
        let _ = recycle::recycle(&self.pool(), chunk, owner, refcount_is_one);
    }

    /// The port that loaned `chunk`, if recorded and in range.
    fn chunk_owner(&self, chunk: u32) -> Option<u32> {
        let owner = self.chunk_header(chunk)?.owner.load(Ordering::Relaxed);
        (owner != 0 && owner <= self.limits.max_ports).then(|| owner - 1)
    }

    /// Moves every chunk cached for port `port` (its spare and its return
    /// ring) to the free list.
    pub(crate) fn drain_returns(&self, port: u32) {
        let pool = self.pool();
        if let Some(slot) = self.port(port) {
            let spare = slot
                .spare
                .chunk
                .swap(Descriptor::NO_CHUNK, Ordering::Relaxed);
            if let Some(h) = self.chunk_header(spare) {
                h.meta.refcount.store(0, Ordering::Relaxed);
                let _ = pool.free(spare);
            }
            self.flush_deferred(port);
        }
        let Some(ring) = self.return_ring(port) else {
            return;
        };
        // At most one lap: a hostile writer cannot keep the loop going.
        for d in std::iter::from_fn(|| ring.pop()).take(ring.capacity() as usize) {
            if let Some(h) = self.chunk_header(d.chunk) {
                h.meta.refcount.store(0, Ordering::Relaxed);
                let _ = pool.free(d.chunk);
            }
        }
    }
}

impl Drop for ExchangeInner {
    fn drop(&mut self) {
        if self.has_parked.load(Ordering::Relaxed) {
            // Entries still parked: a pass rebuilds the task queues from the
            // ledger, which puts them where their state says.
            if let Ok(_guard) = self.node.control() {
                self.flush_caches_locked();
            }
        }
        if self.user == NO_USER {
            return;
        }
        let Ok(_guard) = self.node.control() else {
            return;
        };
        let Some(h) = self.header() else { return };
        if let Some(u) = h.users.get(self.user as usize) {
            if u.pid.load(Ordering::Relaxed) == self.node.pid
                && u.node.load(Ordering::Relaxed) == self.node.index
            {
                u.pid.store(0, Ordering::Relaxed);
            }
        }
        // The creator closing cleanly hands the exchange over to its other
        // users (only a creator's death takes a transient exchange down).
        if h.creator_pid.load(Ordering::Relaxed) != 0
            && h.creator.load(Ordering::Relaxed) == self.node.key
        {
            h.creator_pid.store(0, Ordering::Relaxed);
        }
        let live = h.users.iter().any(|u| {
            u.pid.load(Ordering::Relaxed) != 0
                && self.node.owner_alive(u.owner.load(Ordering::Relaxed))
        });
        let persistent = h.persistent.load(Ordering::Relaxed) == 1;
        if !live && !persistent && !self.is_down() && self.seg.path_is_ours() {
            gate::take_down(&h.state.0);
            let _ = std::fs::remove_file(&self.seg.path);
            self.node.exchanges_changed();
        }
    }
}

/// A value that tells one incarnation of an exchange name from the next.
fn new_incarnation() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 40)
}

/// What `shmex ls` shows of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeInfo {
    /// Exchange name.
    pub name: String,
    /// Its pattern.
    pub pattern: Pattern,
    /// Live processes holding it open; 0 means it was left behind by
    /// processes that all exited (stale: replaced at the next create).
    pub holders: u32,
    /// Attached ports.
    pub ports: u32,
    /// Pool size.
    pub chunks_total: u32,
    /// Free chunks (snapshot).
    pub chunks_free: u32,
    /// Largest payload.
    pub chunk_size: u64,
    /// Inbox depth per port.
    pub queue_depth: u32,
    /// Segment size in bytes.
    pub size: u64,
    /// The payload type it was created for.
    pub payload: TypeInfo,
    /// The response type ([`Exchange::response_type`]).
    pub response: TypeInfo,
}

/// Reads the exchanges of a namespace without joining it or writing to them
/// (read-only mappings). Files that fail validation are reported as errors
/// next to the good ones; an exchange still being created is skipped.
pub fn list_exchanges(ns: &Namespace) -> Vec<Result<ExchangeInfo, SegmentError>> {
    let prefix = ns.exchange_prefix();
    let mut out = Vec::new();
    // Liveness of the holders is read from the registry's locks.
    let registry = Segment::open_read_only(&ns.registry_path(), ns.share_group)
        .ok()
        .flatten();
    for path in ns.segment_files() {
        let Some(file_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(name) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        match inspect(&path, name, ns.share_group, registry.as_ref()) {
            Ok(None) => {} // being created right now
            Ok(Some(info)) => out.push(Ok(info)),
            Err(e) => out.push(Err(e)),
        }
    }
    out
}

fn inspect(
    path: &std::path::Path,
    name: &str,
    group: Option<u32>,
    registry: Option<&Segment>,
) -> Result<Option<ExchangeInfo>, SegmentError> {
    let corrupt = |what: String| SegmentError::Corrupt {
        path: path.to_owned(),
        what,
    };
    let seg = Segment::open_read_only(path, group)?
        .ok_or_else(|| corrupt("vanished while listed".into()))?;
    if seg.is_uninitialised() {
        return Ok(None);
    }
    seg.check_header(KIND_EXCHANGE, "exchange")?;
    let h: &ExchangeHeader = seg.get(0).ok_or_else(|| corrupt("header".into()))?;
    let code = h.pattern.load(Ordering::Relaxed);
    let pattern =
        Pattern::from_code(code).ok_or_else(|| corrupt(format!("unknown pattern {code}")))?;
    let raw = RawLimits {
        tasks: pattern == Pattern::Tasks,
        chunk_size: h.chunk_size.load(Ordering::Relaxed),
        chunk_count: h.chunk_count.load(Ordering::Relaxed),
        queue_depth: h.queue_depth.load(Ordering::Relaxed),
        max_ports: h.max_ports.load(Ordering::Relaxed),
    };
    let layout = ExchangeLayout::compute(&raw).map_err(corrupt)?;
    if layout.total != seg.len() {
        return Err(corrupt("size does not match its limits".into()));
    }
    let table = ChunkTable::new(&seg, &layout, raw.chunk_count);
    let control = seg
        .get::<PoolLine>(layout.pool)
        .ok_or_else(|| corrupt("pool".into()))?;
    let pool = Pool::new(&control.0, &table);
    let port_slots = seg
        .slice::<PortSlot>(layout.ports, raw.max_ports as usize)
        .unwrap_or(&[]);
    let ports = port_slots
        .iter()
        .filter(|p| p.state.load(Ordering::Relaxed) == PORT_ACTIVE)
        .count() as u32;
    let holders = h
        .users
        .iter()
        .filter(|u| {
            u.pid.load(Ordering::Relaxed) != 0
                && registry
                    .is_some_and(|r| crate::node::key_alive(r, u.owner.load(Ordering::Relaxed)))
        })
        .count() as u32;
    let return_controls = seg
        .slice::<RingControl>(layout.ring_controls, 2 * raw.max_ports as usize)
        .map_or(&[][..], |c| &c[raw.max_ports as usize..]);
    Ok(Some(ExchangeInfo {
        name: name.to_string(),
        holders,
        pattern,
        ports,
        chunks_total: raw.chunk_count,
        chunks_free: count_free(&pool, port_slots, return_controls, raw.chunk_count),
        chunk_size: raw.chunk_size,
        queue_depth: raw.queue_depth,
        size: seg.len() as u64,
        payload: TypeInfo::load(&h.payload),
        response: TypeInfo::load(&h.response),
    }))
}

/// Free chunks (a snapshot): those on the free list plus those cached for a
/// port (its return ring, spare and deferred slot, refcount 1 yet free).
/// `return_controls` are the return rings' controls, one per port.
fn count_free(
    pool: &Pool<'_, ChunkTable>,
    ports: &[PortSlot],
    return_controls: &[RingControl],
    chunk_count: u32,
) -> u32 {
    let cached: u32 = ports
        .iter()
        .map(|p| {
            u32::from(p.spare.chunk.load(Ordering::Relaxed) < chunk_count)
                + u32::from(p.spare.deferred.load(Ordering::Relaxed) != NO_DEFERRED)
        })
        .chain(return_controls.iter().map(|c| {
            let tail = c.tail.load(Ordering::Relaxed);
            let head = c.head.load(Ordering::Relaxed);
            tail.wrapping_sub(head).min(RETURN_DEPTH)
        }))
        .sum();
    (pool.free_count() + cached).min(chunk_count)
}

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
const OWNER_SHIFT: u32 = 21;
/// First bit of the address stamp in descriptor flags.
const STAMP_SHIFT: u32 = 11;
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
fn stamped(d: &Descriptor, generation: u32) -> Descriptor {
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
    keeper: std::cell::OnceCell<Arc<Keeper>>,
    /// Ports are used by one thread at a time (single consumer of the inbox).
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
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
    fn discard(&self, d: &Descriptor) {
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

impl ExchangeInner {
    /// Loans a chunk for `len` bytes held by port `port` (recorded in its
    /// holdings): its spare, else from its return ring (chunks its own
    /// earlier messages left behind), else from the shared free list.
    fn loan_on(&self, port: u32, len: usize) -> Result<u32, SendError> {
        let max = self.limits.chunk_size as usize;
        if len > max {
            return Err(SendError::PayloadTooLarge { len, max });
        }
        let mut flushed = false;
        // Bounded: a corrupt cache or free list that keeps handing out held
        // chunks ends in `Corrupt`, not in a loop.
        let mut tries = 0u32;
        loop {
            tries += 1;
            if tries > crate::layout::RETURN_DEPTH + 4 {
                return Err(Corrupt("the pool keeps handing out chunks this port holds").into());
            }
            let op = self.enter(port)?;
            let chunk = match self.take_spare(port).or_else(|| self.pop_cached(port)) {
                Some(c) => Some(c),
                None => self.pool().alloc()?.inspect(|&c| {
                    if let Some(h) = self.chunk_header(c) {
                        h.owner.store(port + 1, Ordering::Relaxed);
                    }
                }),
            };
            if let Some(chunk) = chunk {
                if self.is_held(port, chunk) {
                    // A cache or the free list handed out a chunk this port
                    // holds already (a forged return ring, a corrupt free
                    // list): never hand it out twice. The next reclaim
                    // pass recounts it.
                    self.corrupt_chunk_seen();
                    continue;
                }
                self.hold(port, chunk);
                return Ok(chunk);
            }
            // Dry: free chunks may be parked in other ports' caches. Once,
            // outside this operation (the pass waits for every port to be
            // between operations), empty them into the free list.
            let outermost = op.is_outermost();
            drop(op);
            if flushed || !outermost || !self.caches_hold_chunks() {
                return Err(SendError::PoolExhausted {
                    chunks: self.limits.chunk_count,
                });
            }
            flushed = true;
            // Under back-pressure a sender meets a dry pool again and again
            // while its receivers' deferred slots hold a chunk each (coming
            // back to it anyway): one pass per interval at most.
            let now = crate::sys::monotonic_ms();
            let last = self.last_flush_ms.load(Ordering::Relaxed);
            if last != 0 && now < last.saturating_add(FLUSH_INTERVAL_MS) {
                return Err(SendError::PoolExhausted {
                    chunks: self.limits.chunk_count,
                });
            }
            self.last_flush_ms.store(now.max(1), Ordering::Relaxed);
            if let Ok(_guard) = self.node.control_within(FLUSH_LOCK_WAIT) {
                self.flush_caches_locked();
            }
        }
    }

    /// True when some port's cache (return ring, spare, deferred slot) holds
    /// a free chunk. Reads only.
    fn caches_hold_chunks(&self) -> bool {
        (0..self.limits.max_ports).any(|i| {
            self.port(i).is_some_and(|p| {
                p.spare.chunk.load(Ordering::Relaxed) < self.limits.chunk_count
                    || p.spare.deferred.load(Ordering::Relaxed) != NO_DEFERRED
            }) || self.return_ring(i).is_some_and(|r| r.len_hint() > 0)
        })
    }

    /// Takes a free chunk from port `port`'s return ring (refcount 1, owner
    /// this port). A free chunk loaned by an earlier port of this slot (its
    /// owner reset by reclaim) goes to the free list; a chunk whose refcount
    /// is not 1 is left alone rather than handed out twice.
    fn pop_cached(&self, port: u32) -> Option<u32> {
        let ring = self.return_ring(port)?;
        // At most one lap: a hostile writer cannot keep the loop going.
        for d in std::iter::from_fn(|| ring.pop()).take(ring.capacity() as usize) {
            let Some(h) = self.chunk_header(d.chunk) else {
                if d.flags & FLAG_VOID == 0 {
                    self.corrupt_chunk_seen();
                }
                continue;
            };
            if h.meta.refcount.load(Ordering::Acquire) != 1 {
                // Not a free chunk (a forged or corrupt entry): left to the
                // next reclaim pass, which recounts it.
                self.corrupt_chunk_seen();
                continue;
            }
            if h.owner.load(Ordering::Relaxed) == port + 1 {
                return Some(d.chunk);
            }
            h.meta.refcount.store(0, Ordering::Relaxed);
            let _ = self.pool().free(d.chunk);
        }
        None
    }

    /// A chunk record read from shared memory was wrong (counted in the
    /// header's `corrupt_chunks`): the chunk is left alone; the next pass
    /// (at the latest the one a loan runs when the pool is dry) recounts it
    /// and puts it back where it belongs.
    fn corrupt_chunk_seen(&self) {
        if let Some(h) = self.header() {
            h.corrupt_chunks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Called inside a send operation after it succeeded: fetches the next
    /// loan's chunk now, overlapping its cache miss with the message's flight.
    pub fn after_send(&self, port: u32) {
        let Some(slot) = self.port(port) else {
            return;
        };
        if slot.spare.chunk.load(Ordering::Relaxed) == Descriptor::NO_CHUNK {
            if let Some(c) = self.pop_cached(port) {
                slot.spare.chunk.store(c, Ordering::Relaxed);
            }
        }
    }

    /// Port `port`'s spare chunk, if any (see [`PortSlot::spare`]).
    fn take_spare(&self, port: u32) -> Option<u32> {
        let slot = self.port(port)?;
        let c = slot.spare.chunk.load(Ordering::Relaxed);
        if c == Descriptor::NO_CHUNK {
            return None;
        }
        slot.spare
            .chunk
            .store(Descriptor::NO_CHUNK, Ordering::Relaxed);
        (c < self.limits.chunk_count).then_some(c)
    }
}

impl PortCore {
    /// Loans a chunk for `len` bytes ([`ExchangeInner::loan_on`]).
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, SendError> {
        let chunk = self.ex.loan_on(self.index, len)?;
        Ok(Loan::new(self, chunk, len))
    }

    /// Loans a chunk and copies `payload` into it.
    pub fn loan_copy(&self, payload: &[u8]) -> Result<Loan<'_>, SendError> {
        let mut loan = self.loan(payload.len())?;
        loan.copy_from_slice(payload);
        Ok(loan)
    }

    /// Starts a data-path operation on this port ([`ExchangeInner::enter`]).
    /// An outermost operation first carries out the releases of owned
    /// values dropped on other threads ([`Keeper::drain`]).
    pub fn enter(&self) -> Result<OpGuard<'_>, Down> {
        let op = self.ex.enter(self.index)?;
        if let Some(k) = self.keeper.get() {
            if op.is_outermost() {
                k.drain();
            }
        }
        Ok(op)
    }

    /// This port's [`Keeper`], created on first use (the first `into_owned`).
    pub fn keeper(&self) -> &Arc<Keeper> {
        self.keeper
            .get_or_init(|| Keeper::new(self.ex.clone(), self.index, self.generation))
    }

    /// See [`ExchangeInner::after_send`].
    pub fn after_send(&self) {
        self.ex.after_send(self.index);
    }

    pub fn ring(&self) -> Option<Ring<'_>> {
        self.ex.ring(self.index)
    }

    /// Pops the next descriptor from this port's inbox, passing over the
    /// void ones reclaim left where a dead sender's push never finished, and
    /// the misaddressed ones: stamped for another attachment of this slot
    /// ([`stamp`]), which are discarded ([`ExchangeInner::misaddressed`]).
    /// Passes over at most one ring's worth of them per call (more than a
    /// lap of void slots means corrupt ring words): `None` then, and the next
    /// call goes on, so a receive never loops on what shared words say.
    pub fn pop(&self) -> Option<Descriptor> {
        let ring = self.ring()?;
        let mine = stamp(self.generation);
        for _ in 0..ring.capacity() {
            let d = ring.pop()?;
            if d.flags & FLAG_VOID != 0 {
                continue;
            }
            if d.flags & STAMP_MASK == mine {
                return Some(d);
            }
            self.ex.misaddressed(&d);
        }
        None
    }

    /// True when a receive would return now: something queued, or the
    /// exchange went down (the receive reports it); or when owned values'
    /// releases wait for this port's next operation (a blocked receive or a
    /// `WaitSet` then calls the port once, which carries them out).
    pub fn has_pending(&self) -> bool {
        self.ring().is_some_and(|r| r.has_pending()) || self.ex.is_down() || self.releases_pending()
    }

    /// True when owned values' releases wait for this port's next operation.
    pub fn releases_pending(&self) -> bool {
        self.keeper.get().is_some_and(|k| k.has_pending())
    }

    pub fn address(&self) -> u64 {
        address(self.index, self.generation)
    }
}

impl Drop for PortCore {
    fn drop(&mut self) {
        match self.keeper.take() {
            // Owned values may still hold chunks in this port's holdings.
            Some(keeper) => keeper.port_dropped(),
            None => self.ex.detach(self.index, self.generation, Detach::Full),
        }
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

/// A cached view of the ports a sender delivers to, refreshed when the
/// exchange's port epoch changes.
#[derive(Default)]
pub(crate) struct Targets {
    epoch: Option<u32>,
    pub list: Vec<Target>,
    /// The last routing key matched against `list`, and the indices into
    /// `list` it matched (publishers usually repeat keys).
    last_key: Option<String>,
    pub matched: Vec<usize>,
    /// When a full target was last checked for a dead process.
    last_dead_check: Option<std::time::Instant>,
    /// A full target's process was found dead: the next send runs a
    /// reclaim pass first (it cannot run inside the send's operation).
    reclaim_wanted: bool,
}

/// One port a sender delivers to.
pub(crate) struct Target {
    pub index: u32,
    /// The port's generation when the target was read: deliveries are
    /// stamped with it ([`stamp`]).
    pub generation: u32,
    pub node: u32,
    pub tag: u64,
    pub topic: Option<crate::topic::Topic>,
    /// This sender's last reading of the port's inbox head.
    pub head: u32,
    /// The port owner's node key (`node::node_key`).
    pub owner: u64,
}

impl Targets {
    /// Called when a delivery found a target's inbox full: at most every
    /// 100 ms, checks whether the process of one of the targets is gone, and
    /// if so asks for a reclaim pass before the next send.
    pub fn note_full(&mut self, node: &crate::node::NodeInner) {
        let now = std::time::Instant::now();
        if self
            .last_dead_check
            .is_some_and(|t| now.duration_since(t) < crate::rpc::SERVER_CHECK_INTERVAL)
        {
            return;
        }
        self.last_dead_check = Some(now);
        if self.list.iter().any(|t| !node.owner_alive(t.owner)) {
            self.reclaim_wanted = true;
        }
    }

    /// Runs the reclaim pass [`note_full`](Self::note_full) asked for.
    /// Call before entering the send's operation.
    pub fn reclaim_if_wanted(&mut self, ex: &ExchangeInner) {
        if std::mem::take(&mut self.reclaim_wanted) {
            ex.reclaim_now();
        }
    }

    /// Brings the list up to date with the port table (ports of `role`).
    pub fn refresh(&mut self, ex: &ExchangeInner, role: Role) {
        let epoch = ex.ports_epoch();
        if self.epoch == Some(epoch) {
            return;
        }
        self.list.clear();
        self.last_key = None;
        for i in 0..ex.limits.max_ports {
            let Some(p) = ex.port(i) else { break };
            // Read like a seqlock: the generation first, the fields, then
            // the generation again (`attach` moves it before it writes
            // them), so a target never pairs one attachment's generation
            // with the next one's pattern or node.
            let generation = p.generation.load(Ordering::Acquire);
            if p.state.load(Ordering::Acquire) != PORT_ACTIVE
                || p.role.load(Ordering::Relaxed) != role as u32
            {
                continue;
            }
            let topic = if role == Role::Subscriber {
                let len = p.pattern_len.load(Ordering::Relaxed) as usize;
                let bytes = load_bytes(&p.pattern, len);
                // A pattern that does not parse matches nothing.
                match std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| crate::topic::Topic::parse(s).ok())
                {
                    Some(t) => Some(t),
                    None => continue,
                }
            } else {
                None
            };
            let Some(ring) = ex.ring(i) else { break };
            let target = Target {
                index: i,
                generation,
                node: p.node.load(Ordering::Relaxed),
                tag: p.tag.load(Ordering::Relaxed),
                topic,
                head: ring.head(),
                owner: p.owner.load(Ordering::Relaxed),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if p.generation.load(Ordering::Relaxed) != generation {
                // Re-attached meanwhile (the epoch moved too): the next
                // refresh reads the new port.
                continue;
            }
            self.list.push(target);
        }
        self.epoch = Some(epoch);
    }

    /// Checks `key` and sets `matched` to the indices into `list` of the
    /// subscribers whose pattern matches it. Both are cached for the last key.
    pub fn match_key(&mut self, key: &str) -> Result<(), &'static str> {
        if self.last_key.as_deref() != Some(key) {
            crate::topic::check_key(key)?;
            self.matched.clear();
            for (i, t) in self.list.iter().enumerate() {
                if t.topic.as_ref().is_some_and(|p| p.matches(key)) {
                    self.matched.push(i);
                }
            }
            match &mut self.last_key {
                Some(k) => {
                    k.clear();
                    k.push_str(key);
                }
                None => self.last_key = Some(key.to_string()),
            }
        }
        Ok(())
    }
}

/// True when the exchange file at `path` says it is persistent (read
/// without joining it; false when it cannot be read).
pub(crate) fn is_persistent(path: &std::path::Path, group: Option<u32>) -> bool {
    let Ok(Some(seg)) = Segment::open_read_only(path, group) else {
        return false;
    };
    seg.get::<ExchangeHeader>(0)
        .is_some_and(|h| h.persistent.load(Ordering::Relaxed) == 1)
}

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
use crate::layout::{SpareLine, StreamSlot, WordOffsets};
use crate::namespace::{check_name, Namespace};
use crate::owned::Keeper;
use crate::payload::TypeInfo;
use crate::registry::NodeInner;
use crate::sample::Loan;
use crate::segment::{Created, Segment};
use shmex_core::pool::{ChunkMeta, MetaTable, Pool};
use shmex_core::ring::{Descriptor, PushError, Ring, RingControl, Slot};
use shmex_core::{gate, recycle, Corrupt};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

mod info;
mod inner;
mod limits;
mod loans;
mod ports;
mod targets;

use info::count_free;
pub use info::{list_exchanges, word_offsets, ExchangeInfo};
pub use limits::{Limits, MAX_SEGMENT_SIZE};

pub(crate) use ports::*;
pub(crate) use targets::*;

pub use crate::pattern::Pattern;

/// How often a blocked `receive` checks that the servers holding its
/// requests are still alive.
pub const SERVER_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

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
    /// committed (see `push_committed` in `tasks/queue.rs`), with `has_parked`
    /// set while any are: pushed again at a later operation.
    pub(crate) parked: std::sync::Mutex<Vec<Parked>>,
    pub(crate) has_parked: std::sync::atomic::AtomicBool,
}

/// A task entry parked by `ExchangeInner::push_committed` (task exchanges).
#[derive(Debug)]
pub(crate) struct Parked {
    pub queue: usize,
    pub index: u32,
    /// The task header's `rebuilds` when it was parked.
    pub rebuilds: u64,
}

/// A pattern's own step in a reclaim pass ([`crate::reclaim`] runs it for
/// every exchange): the pattern, not reclaim, knows what its records in the
/// segment mean. Called under the pause, with `live[i]` telling whether port
/// `i` belongs to a live process.
pub(crate) trait PatternReclaim {
    /// A descriptor drained from a dead port's inbox (step 2); true when
    /// it was a request now failed towards its client.
    fn drained(&self, _ex: &ExchangeInner, _d: &Descriptor) -> bool {
        false
    }
    /// After the dead ports are drained: clear the pattern's records of dead
    /// ports and end what live ports wait for from dead ones.
    fn retired(&self, _ex: &ExchangeInner, _live: &[bool]) {}
    /// First thing of the recount (step 4): repair the pattern's records and
    /// add the chunk references they hold to `counts`.
    fn count(&self, _ex: &ExchangeInner, _live: &[bool], _counts: &mut [u32]) {}
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

    /// Opens `name` or creates it (for `payload`, untyped when `None`). An
    /// existing exchange must match `pattern` and `limits` and, when
    /// `payload` is given, record exactly that type.
    pub(crate) fn open_or_create(
        node: &Arc<NodeInner>,
        name: &str,
        pattern: Pattern,
        limits: Limits,
        payload: Option<&TypeInfo>,
    ) -> Result<Exchange, OpenError> {
        check_exchange_name(name)?;
        let size = limits.segment_size(pattern)?;
        let bytes = TypeInfo::bytes();
        let create_as = payload.unwrap_or(&bytes);
        create_as.check(limits.chunk_size)?;
        let _guard = node.control()?;
        match Self::open_locked(node, name)? {
            Some(ex) => {
                if let Some(payload) = payload {
                    ex.check_types(payload, &TypeInfo::bytes())?;
                }
                ex.check_matches(pattern, &limits)?;
                Ok(ex)
            }
            None => Self::create_locked(node, name, pattern, limits, size, [create_as, &bytes]),
        }
    }

    /// [`OpenError::TypeMismatch`], naming both sides, unless it records
    /// exactly `payload` and `response` ([`TypeInfo::bytes`] for none).
    pub(crate) fn check_types(
        &self,
        payload: &TypeInfo,
        response: &TypeInfo,
    ) -> Result<(), OpenError> {
        let (found, found_response) = (self.payload_type(), self.response_type());
        if found != *payload || found_response != *response {
            return Err(OpenError::TypeMismatch {
                exchange: self.name().to_string(),
                expected: Box::new(payload.clone()),
                found: Box::new(found),
                expected_response: Box::new(response.clone()),
                found_response: Box::new(found_response),
            });
        }
        Ok(())
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

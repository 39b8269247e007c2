//! The bytes of every segment: `#[repr(C)]` structures made only of atomics
//! (valid for any bit pattern, so reading a hostile segment is never undefined
//! behaviour), and the offset arithmetic that places them. All sizes are
//! computed with checked arithmetic from validated limits.

use shmex_core::pool::ChunkMeta;
use shmex_core::ring::{RingControl, Slot};
use shmex_core::wait::WaitWord;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Version of the segment layout; bumped on any incompatible change.
pub const LAYOUT_VERSION: u32 = 5;
/// First 8 bytes of every shmex segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMEX\0\0\x01");
/// Segment kind: the namespace registry.
pub const KIND_REGISTRY: u32 = 1;
/// Segment kind: an exchange.
pub const KIND_EXCHANGE: u32 = 2;
/// Maximum nodes per namespace.
pub const MAX_NODES: u32 = 128;
/// Maximum open handles per exchange.
pub const MAX_USERS: u32 = 64;
/// Slots of each port's return ring: chunks released by receivers come back
/// to the port that loaned them through it, so a sender rarely touches the
/// shared free list. Also the most free chunks one port can keep cached.
pub const RETURN_DEPTH: u32 = 8;
/// Longest routing key or topic pattern, in bytes.
pub const MAX_KEY_LEN: usize = 192;
/// Longest node name, in bytes.
pub const MAX_NODE_NAME: usize = 32;
/// Longest exchange name, in bytes.
pub const MAX_EXCHANGE_NAME: usize = 64;
/// Longest payload type name stored in an exchange header, in bytes.
pub const MAX_TYPE_NAME: usize = 64;
/// Largest payload alignment a typed exchange can honour: a chunk block
/// starts on a 64-byte boundary and its payload follows the
/// 16 bytes of chunk header, so every payload is aligned to 16.
pub const MAX_PAYLOAD_ALIGN: usize = CHUNK_HEADER;

/// Marker for types that may be viewed in shared memory: `#[repr(C)]`, made
/// only of atomics and padding, valid for every bit pattern (including all
/// zeros, which is how a fresh segment starts).
///
/// # Safety
/// Implement only for such types.
pub(crate) unsafe trait Shared {}

/// Common head of every segment.
#[repr(C)]
pub(crate) struct SegmentHeader {
    pub magic: AtomicU64,
    pub kind: AtomicU32,
    pub version: AtomicU32,
    pub layout_hash: AtomicU64,
    pub total_size: AtomicU64,
    /// 1 once the creator finished initialising.
    pub ready: AtomicU32,
    _pad: AtomicU32,
}

/// Head of the registry segment.
#[repr(C)]
pub(crate) struct RegistryHeader {
    pub seg: SegmentHeader,
    /// Set (never cleared) when a node joined that cannot issue the heavy
    /// barrier (`membarrier`): from then on senders fence on every send.
    pub senders_fence: AtomicU32,
    /// Bumped whenever an exchange of the namespace is created, goes down or
    /// is removed; watchers re-check their exchange when it moves.
    pub exchanges_epoch: AtomicU32,
}

/// One node's registry slot.
#[repr(C, align(64))]
pub(crate) struct NodeSlot {
    pub state: AtomicU32,
    pub generation: AtomicU32,
    pub pid: AtomicU32,
    pub name_len: AtomicU32,
    pub start_time: AtomicU64,
    /// Milliseconds of the monotonic clock (`sys::monotonic_ms`) at the last
    /// sign of life.
    pub heartbeat: AtomicU64,
    pub name: [AtomicU64; MAX_NODE_NAME / 8],
    /// The node's wait word on a line of its own: senders read it on every send.
    pub wait: WaitLine,
}

/// A wait word padded to a cache line.
#[repr(C, align(64))]
pub(crate) struct WaitLine(pub WaitWord);

/// Node slot states.
pub(crate) const NODE_FREE: u32 = 0;
pub(crate) const NODE_ALIVE: u32 = 1;
/// The node's process died and a reclaim pass cleaned up after it; the slot
/// is free for reuse.
pub(crate) const NODE_RECLAIMED: u32 = 2;

/// Exchange header, after the segment header.
#[repr(C, align(64))]
pub(crate) struct ExchangeHeader {
    pub seg: SegmentHeader,
    pub pattern: AtomicU32,
    pub max_ports: AtomicU32,
    pub queue_depth: AtomicU32,
    pub chunk_count: AtomicU32,
    pub chunk_size: AtomicU64,
    /// Bumped whenever a port is attached or detached; senders cache their
    /// targets per epoch.
    pub ports_epoch: AtomicU32,
    pub name_len: AtomicU32,
    pub name: [AtomicU64; MAX_EXCHANGE_NAME / 8],
    /// The creator's pid (0 once it closed cleanly), for display.
    pub creator_pid: AtomicU32,
    /// 1: stays up when its creator dies or its last handle closes.
    pub persistent: AtomicU32,
    /// The creator's node key (`node::node_key`): its liveness.
    pub creator: AtomicU64,
    /// Identifies this incarnation of the name (a watcher tells a re-created
    /// exchange from the one it knew).
    pub incarnation: AtomicU64,
    /// Chunk records found wrong and left alone (a chunk twice in a cache,
    /// a cached chunk still referenced); a reclaim pass recounts them.
    pub corrupt_chunks: AtomicU64,
    /// Descriptors a port passed over because they were addressed to an
    /// earlier attachment of its slot, or to an earlier stream of a stream
    /// slot (a sender that stalled past a detach's grace period): released,
    /// requests failed towards their clients.
    pub misaddressed: AtomicU64,
    /// The payload type descriptor (`typed::TypeInfo`), written at creation.
    pub payload: PayloadType,
    /// The response type descriptor of a typed request-response exchange;
    /// `bytes` for other patterns and untyped exchanges.
    pub response: PayloadType,
    pub users: [UserSlot; MAX_USERS as usize],
    /// [`EX_PAUSED`] and [`EX_DOWN`], on a line of its own: every data-path
    /// operation reads it, only reclaim writes it.
    pub state: StateLine,
}

/// An exchange's payload type as stored in its header: untyped exchanges
/// hold size 0, align 1, hash 0 and the name `bytes`.
#[repr(C)]
pub(crate) struct PayloadType {
    pub size: AtomicU64,
    pub hash: AtomicU64,
    pub align: AtomicU32,
    pub name_len: AtomicU32,
    pub name: [AtomicU64; MAX_TYPE_NAME / 8],
}

/// The exchange's state word, padded to a cache line.
#[repr(C, align(64))]
pub(crate) struct StateLine(pub AtomicU32);

/// Exchange state bit: a reclaim pass is running; data-path operations wait.
pub(crate) const EX_PAUSED: u32 = shmex_core::gate::PAUSED;
/// Exchange state bit: the exchange went down (its creator died); every
/// operation fails with `ExchangeDown`.
pub(crate) const EX_DOWN: u32 = shmex_core::gate::DOWN;

/// One open handle on an exchange: which process holds it.
#[repr(C)]
pub(crate) struct UserSlot {
    /// The holder's pid (0: entry free), for display.
    pub pid: AtomicU32,
    pub node: AtomicU32,
    /// The holder's node key (`node::node_key`): its liveness.
    pub owner: AtomicU64,
}

/// The free-list head of an exchange's pool, on its own lines.
#[repr(C, align(128))]
pub(crate) struct PoolLine(pub shmex_core::pool::PoolControl);

impl StreamSlot {
    /// Frees the slot for the next stream. The generation moves first, so a
    /// late write of the stream that had it (a stalled or dead server,
    /// holding the old generation) never matches the next one's, whatever
    /// the interleaving with the next open.
    pub fn free(&self) {
        self.generation.store(
            self.generation.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        self.state.store(STREAM_FREE, Ordering::Release);
    }
}

/// One port slot.
#[repr(C, align(64))]
pub(crate) struct PortSlot {
    pub state: AtomicU32,
    pub role: AtomicU32,
    /// Bumped on every attach, before the other fields are written: an
    /// address names it, and every descriptor pushed into the inbox carries
    /// its low bits (`exchange::stamp`); the port discards the others.
    pub generation: AtomicU32,
    /// Registry index of the owning node (whose wait word to wake).
    pub node: AtomicU32,
    /// The owner's pid, for display.
    pub pid: AtomicU32,
    pub pattern_len: AtomicU32,
    /// The owning node's key (`node::node_key`): reclaim retires the port
    /// once that node is no longer alive.
    pub owner: AtomicU64,
    pub tag: AtomicU64,
    /// Deliveries this port missed because its queue was full.
    pub gaps: AtomicU64,
    pub pattern: [AtomicU64; MAX_KEY_LEN / 8],
    /// A worker's delivery counters (task exchanges).
    pub tasks: TaskLine,
    /// Chunks the port's owner keeps at hand, on a line of its own written
    /// only by the owner; both count as free and are given back on detach
    /// and by reclaim.
    pub spare: SpareLine,
}

/// A port's spare and deferred chunks.
#[repr(C, align(64))]
pub(crate) struct SpareLine {
    /// The next loan's chunk, fetched from the return ring right after a
    /// send (u32::MAX: none).
    pub chunk: AtomicU32,
    /// Odd while the owner is inside a data-path operation on this port
    /// (bumped on entry and exit): reclaim waits for every live port to be
    /// between operations, where its records are exact.
    pub busy: AtomicU32,
    /// A received chunk whose release to its owner's return ring waits for
    /// this port's next receive, off the path of a reply sent meanwhile
    /// (`chunk | owner << 32`, u64::MAX: none).
    pub deferred: AtomicU64,
}

/// A worker's counters, written by the worker (and by whoever takes one of
/// its tasks back), read by `task_stats`.
#[repr(C, align(64))]
pub(crate) struct TaskLine {
    /// Tasks delivered to this worker and not yet acked, nacked or taken back.
    pub held: AtomicU32,
    /// Its prefetch limit.
    pub prefetch: AtomicU32,
    /// The most it ever held at once.
    pub max_held: AtomicU32,
    _pad: AtomicU32,
    /// Deliveries to it.
    pub delivered: AtomicU64,
    /// Its acks.
    pub acked: AtomicU64,
}

/// Streams one client port can receive at once (chunked responses).
pub const STREAM_SLOTS: u32 = 8;

/// One chunked response in flight to a client port: its flow-control
/// window. Opened by the server (a CAS on `state`), freed by the client when
/// it receives the stream's end or abort.
#[repr(C, align(64))]
pub(crate) struct StreamSlot {
    /// [`STREAM_FREE`], [`STREAM_OPEN`], [`STREAM_CANCELLED`] or
    /// [`STREAM_ABORTED`].
    pub state: AtomicU32,
    /// Bumped on every open; chunks carry it, so a late release of an old
    /// stream's chunk never counts for a new one.
    pub generation: AtomicU32,
    /// Chunks the stream may have sent and not yet released.
    pub window: AtomicU32,
    /// Registry index of the server's node (whom a release wakes).
    pub server_node: AtomicU32,
    /// The server port's address (index and generation).
    pub server: AtomicU64,
    /// The request's tag.
    pub tag: AtomicU64,
    /// Chunks released by the client (written by the client).
    pub released: AtomicU64,
}

pub(crate) const STREAM_FREE: u32 = 0;
pub(crate) const STREAM_OPEN: u32 = 1;
pub(crate) const STREAM_CANCELLED: u32 = 2;
/// Its server died; reclaim queued the abort marker.
pub(crate) const STREAM_ABORTED: u32 = 3;

/// Head of a task exchange's task region.
#[repr(C, align(128))]
pub(crate) struct TaskHeader {
    /// Next submission sequence number (FIFO order within a priority).
    pub next_seq: AtomicU64,
    pub ack_timeout_ms: AtomicU64,
    pub max_deliveries: AtomicU32,
    _pad: AtomicU32,
    /// When a worker last looked for expired deliveries (ms since the epoch).
    pub last_sweep_ms: AtomicU64,
    pub submitted: AtomicU64,
    pub acked: AtomicU64,
    pub redelivered: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Reclaim passes that rebuilt the task queues from the ledger (a
    /// parked entry is pushed again only if none ran since it was parked).
    pub rebuilds: AtomicU64,
}

/// The queues of a task exchange: free entries, one ready queue per
/// priority, dead letters.
pub(crate) const TASK_QUEUES: usize = 2 + shmex_core::ledger::PRIORITIES as usize;
/// Index of the free-entry queue among the task queues.
pub(crate) const FREE_QUEUE: usize = 0;
/// Index of the dead-letter queue among the task queues.
pub(crate) const DEAD_QUEUE: usize = 1;
/// Index of the ready queue of priority 0 (priority `p` is `READY_QUEUE + p`).
pub(crate) const READY_QUEUE: usize = 2;

/// Port slot states.
pub(crate) const PORT_FREE: u32 = 0;
pub(crate) const PORT_ACTIVE: u32 = 2;
/// Detached while owned values of its process still hold chunks in its
/// holdings (see `owned.rs`): nobody routes to it or attaches to it; reclaim
/// counts it live while its process lives.
pub(crate) const PORT_CLOSING: u32 = 3;

/// Header of each chunk block. The payload follows at [`CHUNK_HEADER`] in
/// the same cache line, so a small message and its refcount travel together;
/// the routing key sits after the payload ([`KeyArea`]), touched only by
/// publishers and by receivers that ask for it.
#[repr(C, align(16))]
pub(crate) struct ChunkHeader {
    pub meta: ChunkMeta,
    pub key_len: AtomicU32,
    /// Port that loaned the chunk, plus one (0: none); the last release
    /// returns the chunk to that port's return ring.
    pub owner: AtomicU32,
}

/// Routing-key bytes of a chunk.
#[repr(C)]
pub(crate) struct KeyArea(pub [AtomicU64; MAX_KEY_LEN / 8]);

/// Bytes from a chunk block's start to its payload (the payload alignment).
pub(crate) const CHUNK_HEADER: usize = size_of::<ChunkHeader>();

// SAFETY: each of these is #[repr(C)] and made only of atomics, arrays of
// atomics and other `Shared` types, so every bit pattern is a valid value.
unsafe impl Shared for SegmentHeader {}
unsafe impl Shared for RegistryHeader {}
unsafe impl Shared for NodeSlot {}
unsafe impl Shared for ExchangeHeader {}
unsafe impl Shared for PortSlot {}
unsafe impl Shared for RingControl {}
unsafe impl Shared for Slot {}
unsafe impl Shared for PoolLine {}
unsafe impl Shared for ChunkHeader {}
unsafe impl Shared for KeyArea {}
unsafe impl Shared for AtomicU64 {}
unsafe impl Shared for StateLine {}
unsafe impl Shared for TaskHeader {}
unsafe impl Shared for StreamSlot {}
unsafe impl Shared for shmex_core::ledger::TaskEntry {}
unsafe impl Shared for shmex_core::mpmc::MpmcSlot {}

/// FNV-1a over the sizes and alignments of every shared structure: two builds
/// with the same version but different layouts disagree here.
pub fn layout_hash() -> u64 {
    let facts: [usize; 30] = [
        size_of::<PayloadType>(),
        MAX_TYPE_NAME,
        size_of::<StreamSlot>(),
        STREAM_SLOTS as usize,
        size_of::<StateLine>(),
        size_of::<TaskHeader>(),
        size_of::<shmex_core::ledger::TaskEntry>(),
        size_of::<shmex_core::mpmc::MpmcControl>(),
        size_of::<shmex_core::mpmc::MpmcSlot>(),
        size_of::<SegmentHeader>(),
        size_of::<RegistryHeader>(),
        size_of::<NodeSlot>(),
        align_of::<NodeSlot>(),
        size_of::<ExchangeHeader>(),
        align_of::<ExchangeHeader>(),
        size_of::<UserSlot>(),
        size_of::<PortSlot>(),
        align_of::<PortSlot>(),
        size_of::<RingControl>(),
        align_of::<RingControl>(),
        size_of::<Slot>(),
        size_of::<PoolLine>(),
        size_of::<ChunkHeader>(),
        size_of::<KeyArea>(),
        MAX_NODES as usize,
        MAX_USERS as usize,
        MAX_KEY_LEN,
        MAX_NODE_NAME,
        MAX_EXCHANGE_NAME,
        RETURN_DEPTH as usize,
    ];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in facts {
        for b in (f as u64).to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn align_up(x: usize, a: usize) -> Option<usize> {
    Some(x.checked_add(a - 1)? & !(a - 1))
}

/// Where things are in the registry.
pub(crate) struct RegistryLayout;

impl RegistryLayout {
    pub const SLOTS: usize = 128;
    pub const SIZE: usize = Self::SLOTS + MAX_NODES as usize * size_of::<NodeSlot>();
}

/// Limits of an exchange, as stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawLimits {
    pub chunk_size: u64,
    pub chunk_count: u32,
    pub queue_depth: u32,
    pub max_ports: u32,
    /// A task exchange: the segment also holds a task region with
    /// `queue_depth` entries.
    pub tasks: bool,
}

/// Where things are in an exchange segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExchangeLayout {
    pub ports: usize,
    pub pool: usize,
    /// `2 * max_ports` ring controls: inboxes, then return rings.
    pub ring_controls: usize,
    pub ring_slots: usize,
    /// Slots of the return rings, [`RETURN_DEPTH`] per port.
    pub return_slots: usize,
    /// Each port's holdings: one bit per chunk it holds in hand (loaned,
    /// or received and not yet released), `holding_words` words per port.
    pub holdings: usize,
    pub holding_words: usize,
    /// [`STREAM_SLOTS`] stream slots per port.
    pub streams: usize,
    /// Task exchanges only (else 0): the task header, `queue_depth` task
    /// entries, [`TASK_QUEUES`] queue controls, then their slots
    /// (`queue_depth` each).
    pub task_header: usize,
    pub task_entries: usize,
    pub task_controls: usize,
    pub task_slots: usize,
    pub chunks: usize,
    pub chunk_stride: usize,
    /// Offset of the routing key inside a chunk block.
    pub key_offset: usize,
    pub total: usize,
}

impl ExchangeLayout {
    /// Places every region for `limits`, or says which limit is out of range.
    pub fn compute(l: &RawLimits) -> Result<Self, String> {
        if l.chunk_size == 0 || l.chunk_size > 1 << 30 {
            return Err(format!("chunk_size {} not in 1..=1 GiB", l.chunk_size));
        }
        if l.chunk_count == 0 || l.chunk_count > 1 << 24 {
            return Err(format!("chunk_count {} not in 1..=2^24", l.chunk_count));
        }
        if l.queue_depth < 2 || l.queue_depth > 1 << 20 || !l.queue_depth.is_power_of_two() {
            return Err(format!(
                "queue_depth {} must be a power of two in 2..=2^20",
                l.queue_depth
            ));
        }
        if l.max_ports == 0 || l.max_ports > 1024 {
            return Err(format!("max_ports {} not in 1..=1024", l.max_ports));
        }
        let too_big = || "the segment would exceed the address space".to_string();
        let ports = align_up(size_of::<ExchangeHeader>(), 128).ok_or_else(too_big)?;
        let pool = ports
            .checked_add(l.max_ports as usize * size_of::<PortSlot>())
            .and_then(|x| align_up(x, 128))
            .ok_or_else(too_big)?;
        let ring_controls = pool + size_of::<PoolLine>();
        // Inbox rings for every port, then a return ring for every port.
        let ring_slots = ring_controls
            .checked_add(2 * l.max_ports as usize * size_of::<RingControl>())
            .ok_or_else(too_big)?;
        let slots = (l.max_ports as usize)
            .checked_mul(l.queue_depth as usize)
            .and_then(|n| n.checked_mul(size_of::<Slot>()))
            .ok_or_else(too_big)?;
        let return_slots = ring_slots.checked_add(slots).ok_or_else(too_big)?;
        let holdings = (l.max_ports as usize * RETURN_DEPTH as usize * size_of::<Slot>())
            .checked_add(return_slots)
            .and_then(|x| align_up(x, 64))
            .ok_or_else(too_big)?;
        // Whole cache lines per port: each port's bits are written only by it.
        let holding_words =
            align_up((l.chunk_count as usize).div_ceil(64), 8).ok_or_else(too_big)?;
        let streams = (l.max_ports as usize)
            .checked_mul(holding_words * 8)
            .and_then(|n| n.checked_add(holdings))
            .and_then(|x| align_up(x, 64))
            .ok_or_else(too_big)?;
        let holdings_end = (l.max_ports as usize)
            .checked_mul(STREAM_SLOTS as usize * size_of::<StreamSlot>())
            .and_then(|n| n.checked_add(streams))
            .ok_or_else(too_big)?;
        let (task_header, task_entries, task_controls, task_slots, tasks_end) = if l.tasks {
            let depth = l.queue_depth as usize;
            let header = align_up(holdings_end, 128).ok_or_else(too_big)?;
            let entries = header + size_of::<TaskHeader>();
            let controls = depth
                .checked_mul(size_of::<shmex_core::ledger::TaskEntry>())
                .and_then(|n| n.checked_add(entries))
                .and_then(|x| align_up(x, 128))
                .ok_or_else(too_big)?;
            let slots = controls + TASK_QUEUES * size_of::<shmex_core::mpmc::MpmcControl>();
            let end = depth
                .checked_mul(TASK_QUEUES * size_of::<shmex_core::mpmc::MpmcSlot>())
                .and_then(|n| n.checked_add(slots))
                .ok_or_else(too_big)?;
            (header, entries, controls, slots, end)
        } else {
            (0, 0, 0, 0, holdings_end)
        };
        let chunks = align_up(tasks_end, 4096).ok_or_else(too_big)?;
        let key_offset = align_up(CHUNK_HEADER + l.chunk_size as usize, 8).ok_or_else(too_big)?;
        let chunk_stride = align_up(key_offset + size_of::<KeyArea>(), 64).ok_or_else(too_big)?;
        let total = (l.chunk_count as usize)
            .checked_mul(chunk_stride)
            .and_then(|c| c.checked_add(chunks))
            .ok_or_else(too_big)?;
        Ok(ExchangeLayout {
            ports,
            pool,
            ring_controls,
            ring_slots,
            return_slots,
            holdings,
            holding_words,
            streams,
            task_header,
            task_entries,
            task_controls,
            task_slots,
            chunks,
            chunk_stride,
            key_offset,
            total,
        })
    }
}

/// Stores `s` (at most `8 * words.len()` bytes) into `words`.
pub(crate) fn store_bytes(words: &[AtomicU64], s: &[u8]) {
    for (i, w) in words.iter().enumerate() {
        let mut b = [0u8; 8];
        for (j, byte) in b.iter_mut().enumerate() {
            if let Some(&c) = s.get(i * 8 + j) {
                *byte = c;
            }
        }
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

/// Reads `len` bytes back from `words` (clamped to their capacity).
pub(crate) fn load_bytes(words: &[AtomicU64], len: usize) -> Vec<u8> {
    let len = len.min(words.len() * 8);
    let mut out = Vec::with_capacity(len);
    for w in words {
        if out.len() >= len {
            break;
        }
        let b = w.load(Ordering::Relaxed).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&b[..take]);
    }
    out
}

/// Byte offsets of the shared words that fault-injection tests overwrite in a
/// live segment. Not a stable API: the layout changes with
/// [`LAYOUT_VERSION`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct WordOffsets {
    /// The exchange header's state word (`PAUSED`, `DOWN`).
    pub exchange_state: usize,
    /// Port 0's slot; port `i`'s is `port_stride * i` further on.
    pub ports: usize,
    pub port_stride: usize,
    /// Inside a port slot: its state word, and its busy counter.
    pub port_state: usize,
    pub port_busy: usize,
    /// Port 0's inbox ring control (`tail` first, then `head`, each on its
    /// own line); port `i`'s is `ring_control_stride * i` further on.
    pub ring_controls: usize,
    pub ring_control_stride: usize,
    pub ring_tail: usize,
    pub ring_head: usize,
    /// The pool's free-list head (a `u64`).
    pub pool_head: usize,
    /// Port 0's stream slots ([`STREAM_SLOTS`] per port,
    /// `stream_slot_stride` each).
    pub streams: usize,
    pub stream_slot_stride: usize,
    /// Task exchanges (else 0): task entry 0 (`task_entry_stride` each; its
    /// state word first), and the control of task queue 0 (free entries, then
    /// dead letters, then the ready queues by priority).
    pub task_entries: usize,
    pub task_entry_stride: usize,
    pub task_controls: usize,
    pub task_control_stride: usize,
}

/// Offset of the registry's `senders_fence` flag (fault-injection tests).
#[doc(hidden)]
pub const REGISTRY_FENCE_FLAG_OFFSET: usize = std::mem::offset_of!(RegistryHeader, senders_fence);

/// Identifies one delivery of a task: its ledger entry and the entry's
/// generation when it was delivered. Acking or nacking it a second time,
/// after the delivery was taken back, or from another worker fails with
/// [`TaskError::NotHeld`](crate::TaskError::NotHeld).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskId(u64);

impl TaskId {
    pub(crate) fn new(entry: u32, generation: u32) -> TaskId {
        TaskId(u64::from(entry) | u64::from(generation) << 32)
    }
    pub(crate) fn entry(self) -> u32 {
        self.0 as u32
    }
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The id as one number (for logs and the C API).
    pub fn to_raw(self) -> u64 {
        self.0
    }
    /// An id from [`to_raw`](Self::to_raw).
    pub fn from_raw(raw: u64) -> TaskId {
        TaskId(raw)
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.entry(), self.generation())
    }
}

//! Reading exchanges from outside: `list_exchanges` (what `shmex ls`
//! shows) and the word offsets fault-injection tests poke.

use super::*;

/// What `shmex ls` shows of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The response type ([`Exchange::response_type`](crate::Exchange::response_type)).
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

pub(super) fn inspect(
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
                    .is_some_and(|r| crate::registry::key_alive(r, u.owner.load(Ordering::Relaxed)))
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
pub(super) fn count_free(
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

/// [`WordOffsets`] for an exchange of `pattern` with `limits`.
#[doc(hidden)]
pub fn word_offsets(pattern: Pattern, limits: &Limits) -> Result<WordOffsets, String> {
    let l = ExchangeLayout::compute(&limits.raw(pattern))?;
    use std::mem::size_of;
    Ok(WordOffsets {
        exchange_state: std::mem::offset_of!(ExchangeHeader, state),
        ports: l.ports,
        port_stride: size_of::<PortSlot>(),
        port_state: std::mem::offset_of!(PortSlot, state),
        port_busy: std::mem::offset_of!(PortSlot, spare) + std::mem::offset_of!(SpareLine, busy),
        ring_controls: l.ring_controls,
        ring_control_stride: size_of::<RingControl>(),
        ring_tail: std::mem::offset_of!(RingControl, tail),
        ring_head: std::mem::offset_of!(RingControl, head),
        pool_head: l.pool,
        streams: l.streams,
        stream_slot_stride: size_of::<StreamSlot>(),
        task_entries: l.task_entries,
        task_entry_stride: size_of::<shmex_core::ledger::TaskEntry>(),
        task_controls: l.task_controls,
        task_control_stride: size_of::<shmex_core::mpmc::MpmcControl>(),
    })
}

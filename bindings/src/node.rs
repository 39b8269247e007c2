//! Nodes (a process's membership of a namespace), exchanges and their limits.
//!
//! A node and an exchange handle may be used from any thread at once. Freeing
//! either while ports made from it live is fine: the ports keep what they
//! need open, and the node leaves the namespace when its last port is freed.

use crate::args::{self, set_opt, Out};
use crate::error::{ffi, Error, Result};
use crate::handles::{self, Kind, Object};
use shmex_rs::{Limits, Node, Pattern};
use std::ffi::{c_char, c_int};
use std::time::Duration;

/// A node: one participant of a namespace (normally one per process).
/// Thread-safe. Free it with `shmex_node_free`.
pub struct shmex_node {
    _private: [u8; 0],
}

/// An open exchange. Thread-safe. Free it with `shmex_exchange_free`.
pub struct shmex_exchange {
    _private: [u8; 0],
}

/// Pattern of an exchange: request-response (with chunked responses and
/// dialogues).
pub const SHMEX_PATTERN_REQUEST_RESPONSE: u32 = 1;
/// Pattern of an exchange: publish-subscribe with routing keys.
pub const SHMEX_PATTERN_PUBLISH_SUBSCRIBE: u32 = 2;
/// Pattern of an exchange: fan-in (many producers, one consumer).
pub const SHMEX_PATTERN_FAN_IN: u32 = 3;
/// Pattern of an exchange: task distribution (submitters, workers).
pub const SHMEX_PATTERN_TASKS: u32 = 4;

pub(crate) fn pattern(code: u32) -> Result<Pattern> {
    match code {
        SHMEX_PATTERN_REQUEST_RESPONSE => Ok(Pattern::RequestResponse),
        SHMEX_PATTERN_PUBLISH_SUBSCRIBE => Ok(Pattern::PublishSubscribe),
        SHMEX_PATTERN_FAN_IN => Ok(Pattern::FanIn),
        SHMEX_PATTERN_TASKS => Ok(Pattern::Tasks),
        _ => Err(Error::invalid(format!(
            "unknown pattern {code} (SHMEX_PATTERN_REQUEST_RESPONSE .. SHMEX_PATTERN_TASKS)"
        ))),
    }
}

fn pattern_code(p: Pattern) -> u32 {
    match p {
        Pattern::RequestResponse => SHMEX_PATTERN_REQUEST_RESPONSE,
        Pattern::PublishSubscribe => SHMEX_PATTERN_PUBLISH_SUBSCRIBE,
        Pattern::FanIn => SHMEX_PATTERN_FAN_IN,
        Pattern::Tasks => SHMEX_PATTERN_TASKS,
    }
}

/// How a node joins its namespace; fill with `shmex_node_options_init`, then
/// change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmex_node_options {
    /// Namespace to join (1–64 bytes of `[A-Za-z0-9_.-]`, not "." or "..");
    /// NULL: `SHMEX_NAMESPACE` (an invalid or non-UTF-8 value is
    /// `SHMEX_E_INVALID_ARGUMENT`), else "default". `SHMEX_SHARE_GROUP`
    /// (a group name or gid) shares the namespace with that group.
    pub namespace_name: *const c_char,
    /// Shared folder holding each user's directory of segment files
    /// (`ROOT/shmex-UID/`, mode 0700, checked on every open; refused with
    /// `SHMEX_E_UNTRUSTED` otherwise); NULL: `SHMEX_ROOT`, else "/dev/shm".
    pub root: *const c_char,
    /// Microseconds a blocking receive busy-polls before it sleeps; negative:
    /// the default (20).
    pub spin_us: i64,
    /// Heartbeat interval in milliseconds; 0 disables the heartbeat thread;
    /// negative: the default (100).
    pub heartbeat_ms: i64,
}

/// Fills `options` with the defaults (NULL names, negative numbers).
#[no_mangle]
pub unsafe extern "C" fn shmex_node_options_init(options: *mut shmex_node_options) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(options, "options") }?;
        out.set(shmex_node_options {
            namespace_name: std::ptr::null(),
            root: std::ptr::null(),
            spin_us: -1,
            heartbeat_ms: -1,
        });
        Ok(())
    })
}

/// Joins a namespace as node `name` (1–32 bytes of `[A-Za-z0-9_.-]`, not
/// "." or "..").
/// `namespace_name` and `root` may be NULL (see `shmex_node_options`). On
/// success `*node` is the new node.
#[no_mangle]
pub unsafe extern "C" fn shmex_node_create(
    name: *const c_char,
    namespace_name: *const c_char,
    root: *const c_char,
    node: *mut *mut shmex_node,
) -> c_int {
    let options = shmex_node_options {
        namespace_name,
        root,
        spin_us: -1,
        heartbeat_ms: -1,
    };
    // SAFETY: forwarded contract.
    unsafe { shmex_node_create_with(name, &options, node) }
}

/// Joins a namespace as node `name` with `options` (NULL: the defaults).
#[no_mangle]
pub unsafe extern "C" fn shmex_node_create_with(
    name: *const c_char,
    options: *const shmex_node_options,
    node: *mut *mut shmex_node,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): pointers NULL or valid, by the header's contract.
        let out = unsafe { Out::new(node, "node") }?;
        let name = unsafe { args::string(name, "name") }?;
        let mut builder = Node::builder(name);
        if let Some(o) = unsafe { options.as_ref() } {
            if let Some(ns) = unsafe { args::opt_string(o.namespace_name, "namespace_name") }? {
                builder = builder.namespace(ns);
            }
            if let Some(root) = unsafe { args::opt_string(o.root, "root") }? {
                builder = builder.root(root);
            }
            if let Ok(us) = u64::try_from(o.spin_us) {
                builder = builder.spin(Duration::from_micros(us));
            }
            if let Ok(ms) = u64::try_from(o.heartbeat_ms) {
                builder = builder.heartbeat(Duration::from_millis(ms));
            }
        }
        let n = builder.create()?;
        out.set(handles::to_ptr(handles::insert(
            Kind::Node,
            Object::Node(n),
        )?));
        Ok(())
    })
}

/// Frees the node handle. The node leaves its namespace once its exchanges
/// and ports are freed too.
#[no_mangle]
pub extern "C" fn shmex_node_free(node: *mut shmex_node) -> c_int {
    ffi(|| handles::release(handles::of(node), Kind::Node))
}

/// Takes exchange `name` down and removes it, persistent or not: its users
/// get `SHMEX_E_EXCHANGE_DOWN` from then on, watchers see
/// `SHMEX_EVENT_DOWN`.
#[no_mangle]
pub unsafe extern "C" fn shmex_node_remove_exchange(
    node: *mut shmex_node,
    name: *const c_char,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or a C string, by the header's contract.
        let name = unsafe { args::string(name, "name") }?;
        handles::node(handles::of(node))?.remove_exchange(name)?;
        Ok(())
    })
}

/// Sizes of an exchange, fixed at creation. Fill with `shmex_limits_init`,
/// then change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmex_limits {
    /// Largest payload in bytes (default 4096).
    pub chunk_size: u64,
    /// Chunks in the pool: payloads in flight at once (default 256).
    pub chunk_count: u32,
    /// Descriptors each port's inbox holds, a power of two (default 64); for
    /// task exchanges, the tasks the queue holds.
    pub queue_depth: u32,
    /// Ports attached at once (default 16).
    pub max_ports: u32,
    /// File mode of the segment: 0600 (default), or 0660, allowed only in a
    /// namespace shared with a group (`SHMEX_SHARE_GROUP`), else
    /// `SHMEX_E_INVALID_ARGUMENT`.
    pub mode: u32,
    /// Task exchanges: milliseconds a worker may hold a task unacknowledged
    /// before it is taken back and redelivered (1 ..= 604800000, default
    /// 30000; 0 is `SHMEX_E_INVALID_ARGUMENT`).
    pub ack_timeout_ms: u64,
    /// Task exchanges: deliveries after which a task goes to the dead-letter
    /// queue (1..=255, default 5).
    pub max_deliveries: u32,
    /// Nonzero: the exchange outlives its creator and its last handle, until
    /// `shmex_node_remove_exchange` (default 0).
    pub persistent: u32,
}

impl From<Limits> for shmex_limits {
    fn from(l: Limits) -> Self {
        shmex_limits {
            chunk_size: l.chunk_size as u64,
            chunk_count: l.chunk_count,
            queue_depth: l.queue_depth,
            max_ports: l.max_ports,
            mode: l.mode,
            ack_timeout_ms: u64::try_from(l.ack_timeout.as_millis()).unwrap_or(u64::MAX),
            max_deliveries: l.max_deliveries,
            persistent: u32::from(l.persistent),
        }
    }
}

/// The Rust limits of `limits` (NULL: the defaults).
///
/// # Safety
/// `limits` is NULL or readable.
pub(crate) unsafe fn limits_arg(limits: *const shmex_limits) -> Result<Limits> {
    // SAFETY: NULL or readable, by the caller's contract.
    let Some(l) = (unsafe { limits.as_ref() }) else {
        return Ok(Limits::default());
    };
    Ok(Limits::default()
        .chunk_size(
            usize::try_from(l.chunk_size)
                .map_err(|_| Error::invalid(format!("chunk_size {} is too large", l.chunk_size)))?,
        )
        .chunk_count(l.chunk_count)
        .queue_depth(l.queue_depth)
        .max_ports(l.max_ports)
        .mode(l.mode)
        .ack_timeout(Duration::from_millis(l.ack_timeout_ms))
        .max_deliveries(l.max_deliveries)
        .persistent(l.persistent != 0))
}

/// Fills `limits` with the defaults.
#[no_mangle]
pub unsafe extern "C" fn shmex_limits_init(limits: *mut shmex_limits) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        unsafe { Out::new(limits, "limits") }?.set(Limits::default().into());
        Ok(())
    })
}

/// Bytes of shared memory an exchange of `pattern` with `limits` (NULL: the
/// defaults) needs, in `*size`; `SHMEX_E_INVALID_ARGUMENT` with the reason
/// when the limits are out of range.
#[no_mangle]
pub unsafe extern "C" fn shmex_limits_segment_size(
    limits: *const shmex_limits,
    pattern_code: u32,
    size: *mut usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or valid, by the header's contract.
        let out = unsafe { Out::new(size, "size") }?;
        let limits = unsafe { limits_arg(limits) }?;
        out.set(limits.segment_size(pattern(pattern_code)?)?);
        Ok(())
    })
}

pub(crate) fn new_exchange(out: Out<*mut shmex_exchange>, x: shmex_rs::Exchange) -> Result<()> {
    out.set(handles::to_ptr(handles::insert(
        Kind::Exchange,
        Object::Exchange(x),
    )?));
    Ok(())
}

/// Creates exchange `name` (1–64 bytes of `[A-Za-z0-9_.-]`, not "." or
/// "..") with `pattern` (`SHMEX_PATTERN_*`) and `limits` (NULL: the defaults).
/// `SHMEX_E_ALREADY_EXISTS` when a live exchange of that name exists.
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_create(
    node: *mut shmex_node,
    name: *const c_char,
    pattern_code: u32,
    limits: *const shmex_limits,
    exchange: *mut *mut shmex_exchange,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(exchange, "exchange") }?;
        let name = unsafe { args::string(name, "name") }?;
        let limits = unsafe { limits_arg(limits) }?;
        let n = handles::node(handles::of(node))?;
        new_exchange(
            out,
            n.create_exchange(name, pattern(pattern_code)?, limits)?,
        )
    })
}

/// Opens the live exchange `name`; `SHMEX_E_NOT_FOUND` when there is none.
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_open(
    node: *mut shmex_node,
    name: *const c_char,
    exchange: *mut *mut shmex_exchange,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(exchange, "exchange") }?;
        let name = unsafe { args::string(name, "name") }?;
        let n = handles::node(handles::of(node))?;
        new_exchange(out, n.open_exchange(name)?)
    })
}

/// Opens exchange `name`, creating it when it does not exist. An existing
/// exchange must have the same pattern and limits (`SHMEX_E_MISMATCH`).
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_open_or_create(
    node: *mut shmex_node,
    name: *const c_char,
    pattern_code: u32,
    limits: *const shmex_limits,
    exchange: *mut *mut shmex_exchange,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(exchange, "exchange") }?;
        let name = unsafe { args::string(name, "name") }?;
        let limits = unsafe { limits_arg(limits) }?;
        let n = handles::node(handles::of(node))?;
        new_exchange(
            out,
            n.open_or_create_exchange(name, pattern(pattern_code)?, limits)?,
        )
    })
}

/// Frees the exchange handle. Ports made from it stay usable; the exchange
/// closes when they are freed too (and goes away with its last user, unless
/// persistent).
#[no_mangle]
pub extern "C" fn shmex_exchange_free(exchange: *mut shmex_exchange) -> c_int {
    ffi(|| handles::release(handles::of(exchange), Kind::Exchange))
}

/// The exchange's limits (`*limits`) and pattern (`*pattern_code`, may be
/// NULL).
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_info(
    exchange: *mut shmex_exchange,
    limits: *mut shmex_limits,
    pattern_code: *mut u32,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(limits, "limits") }?;
        let pattern_out = unsafe { Out::optional(pattern_code) };
        let x = handles::exchange(handles::of(exchange))?;
        out.set(x.limits().into());
        set_opt(pattern_out, pattern_code_of(&x));
        Ok(())
    })
}

fn pattern_code_of(x: &shmex_rs::Exchange) -> u32 {
    pattern_code(x.pattern())
}

/// A snapshot of a task exchange's queue (`SHMEX_E_WRONG_PATTERN` for other
/// patterns).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmex_task_stats {
    /// Tasks the ledger holds at most (`queue_depth`).
    pub capacity: u32,
    /// Tasks waiting for a worker.
    pub queued: u32,
    /// Tasks delivered and not yet acked.
    pub in_flight: u32,
    /// Tasks on the dead-letter queue.
    pub dead_letters: u32,
    /// Workers attached.
    pub workers: u32,
    /// Tasks submitted since the exchange was created.
    pub submitted: u64,
    /// Tasks acked.
    pub acked: u64,
    /// Deliveries of tasks delivered before.
    pub redelivered: u64,
    /// Tasks moved to the dead-letter queue.
    pub dead_lettered: u64,
}

/// Fills `*stats` with a snapshot of a task exchange's queue and counters.
#[no_mangle]
pub unsafe extern "C" fn shmex_exchange_task_stats(
    exchange: *mut shmex_exchange,
    stats: *mut shmex_task_stats,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(stats, "stats") }?;
        let x = handles::exchange(handles::of(exchange))?;
        let s = x.task_stats().ok_or_else(|| {
            Error::new(
                crate::error::SHMEX_E_WRONG_PATTERN,
                format!("exchange {:?} is not a task exchange", x.name()),
            )
        })?;
        out.set(shmex_task_stats {
            capacity: s.capacity,
            queued: s.queued,
            in_flight: s.in_flight,
            dead_letters: s.dead_letters,
            workers: s.workers.len() as u32,
            submitted: s.submitted,
            acked: s.acked,
            redelivered: s.redelivered,
            dead_lettered: s.dead_lettered,
        });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SHMEX_PATTERN_*` values are the positions in `Pattern::ALL` plus one
    /// (their names, `Pattern::as_str` upper-cased, are checked against the
    /// header by the tools' `pattern_names_agree` test).
    #[test]
    fn codes_follow_pattern_all() {
        for (i, p) in Pattern::ALL.into_iter().enumerate() {
            let code = u32::try_from(i + 1).unwrap();
            assert_eq!(pattern_code(p), code);
            assert_eq!(pattern(code).ok(), Some(p));
        }
    }
}

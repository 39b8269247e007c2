//! Wait sets: one thread blocks on many ports (and watches) of one node at
//! once, like a mailbox.
//!
//! A wait set remembers its members (ports, and streams of servers); each
//! wait locks their ports (in slot order, each once), waits with the Rust
//! `WaitSet`, and unlocks them, so the members are the waiting thread's
//! while it waits. A member cannot be freed, nor a stream ended
//! (`SHMEX_E_BUSY`), until the wait set is.

use crate::args::{self, Out};
use crate::error::{ffi, Error, Result, SHMEX_E_FOREIGN_PORT, SHMEX_E_STALE_HANDLE};
use crate::handles::{self, Kind, Member, Object, WaitSetObject};
use shmex_rs::WaitSet;
use std::ffi::{c_int, c_void};

/// A set of ports one thread waits on at once. Single-threaded; free it
/// with `shmex_waitset_free` before freeing its members.
pub struct shmex_waitset {
    _private: [u8; 0],
}

/// Creates an empty wait set.
#[no_mangle]
pub unsafe extern "C" fn shmex_waitset_create(waitset: *mut *mut shmex_waitset) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(waitset, "waitset") }?;
        let h = handles::insert(Kind::WaitSet, Object::WaitSet(WaitSetObject::default()))?;
        out.set(handles::to_ptr(h));
        Ok(())
    })
}

/// Adds a port to the set: any handle of a client, server, subscriber,
/// consumer, worker or watch (ports that only send have nothing to wait
/// for), or a stream (a `shmex_stream *`: ready when a send would not wait,
/// see `shmex_stream_status`). `*index` (may be NULL) is its index in the
/// set, as `shmex_waitset_wait` reports it; adding a member again gives
/// its index. Until the set is freed, its ports cannot be freed and its
/// streams cannot end or abort (`SHMEX_E_BUSY`).
/// `SHMEX_E_FOREIGN_PORT` when it belongs to another node than the others;
/// any other handle (a publisher, an exchange, a sample, ...) is
/// `SHMEX_E_STALE_HANDLE` like a released one.
#[no_mangle]
pub unsafe extern "C" fn shmex_waitset_add(
    waitset: *mut shmex_waitset,
    port: *const c_void,
    index: *mut usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::optional(index) };
        let h = handles::of(port);
        let new = match handles::stream_member(h) {
            Ok(m) => m,
            Err(_) => port_member(h)?,
        };
        let i = handles::with_waitset(handles::of(waitset), |set| {
            if let Some(i) = set.members().iter().position(|m| *m == new) {
                return Ok(i);
            }
            if let Some(&first) = set.members().first() {
                check_same_node(first, new)?;
            }
            handles::join(new)?;
            Ok(set.push(new))
        })?;
        args::set_opt(out, i);
        Ok(())
    })
}

/// The member for `h` when it is a port that can wait.
fn port_member(h: usize) -> Result<Member> {
    let kind = handles::kind_of(h)?;
    if !matches!(
        kind,
        Kind::Client
            | Kind::Server
            | Kind::Subscriber
            | Kind::Consumer
            | Kind::Worker
            | Kind::Watch
    ) {
        return Err(Error::new(
            SHMEX_E_STALE_HANDLE,
            format!(
                "a {} cannot join a wait set: only clients, servers, subscribers, \
                     consumers, workers, watches and streams have something to wait for",
                kind.c_name()
            ),
        ));
    }
    handles::member(h, kind)
}

/// `SHMEX_E_FOREIGN_PORT` unless `new` belongs to the node of `first`.
fn check_same_node(first: Member, new: Member) -> Result<()> {
    let locked = handles::lock_ports(&[first, new])?;
    let mut trial = WaitSet::new();
    for m in [first, new] {
        trial
            .add(locked.waitable(m)?)
            .map_err(|e| Error::new(SHMEX_E_FOREIGN_PORT, e.to_string()))?;
    }
    Ok(())
}

/// Blocks until at least one member has something to receive (or an event,
/// for a watch), at most `timeout_ms` milliseconds (`SHMEX_FOREVER`: no
/// limit; `SHMEX_E_TIMEOUT` after). An empty set sleeps until the timeout,
/// as `poll(2)` does, or fails with `SHMEX_E_INVALID_ARGUMENT` at once
/// under `SHMEX_FOREVER` (nothing could ever wake it). The
/// indices of the ready members go to `ready[0 .. *count]`, at most
/// `capacity` of them. The members stay locked (other threads' calls on
/// them wait) until it returns. A wait reuses the set's buffers: after the
/// first, it allocates nothing.
#[no_mangle]
pub unsafe extern "C" fn shmex_waitset_wait(
    waitset: *mut shmex_waitset,
    timeout_ms: i64,
    ready: *mut usize,
    capacity: usize,
    count: *mut usize,
) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let count_out = unsafe { Out::new(count, "count") }?;
        if ready.is_null() && capacity > 0 {
            return Err(Error::null("ready"));
        }
        let n = handles::with_waitset(handles::of(waitset), |set| {
            let indices = set.wait(args::timeout(timeout_ms))?;
            let n = indices.len().min(capacity);
            for (k, &i) in indices.iter().take(n).enumerate() {
                // SAFETY: `ready` holds `capacity` writable slots by the
                // header's contract, and k < n <= capacity.
                unsafe { ready.add(k).write(i) };
            }
            Ok(n)
        })?;
        count_out.set(n);
        Ok(())
    })
}

/// Frees the wait set; its members can be freed again.
#[no_mangle]
pub extern "C" fn shmex_waitset_free(waitset: *mut shmex_waitset) -> c_int {
    ffi(|| handles::release_waitset(handles::of(waitset)))
}

//! Watching an exchange: told when it goes down (its creator died, it was
//! removed) and when it is up again, so a service can register again.
//!
//! A watch is single-threaded, like a port, and can join a wait set.

use crate::args::{self, Out};
use crate::error::{ffi, Result};
use crate::handles::{self, Kind, Locked, Port};
use shmex_rs::{ExchangeEvent, Watch};
use std::ffi::{c_char, c_int};

/// A watch on one exchange name. Single-threaded.
pub struct shmex_watch {
    _private: [u8; 0],
}

/// No event (a `shmex_watch_try_event` that found nothing).
pub const SHMEX_EVENT_NONE: c_int = 0;
/// The exchange went down: ports on it fail with `SHMEX_E_EXCHANGE_DOWN`;
/// free them and the exchange handle.
pub const SHMEX_EVENT_DOWN: c_int = 1;
/// The exchange is up again (created anew): open it and register again.
pub const SHMEX_EVENT_UP: c_int = 2;

fn event_code(e: ExchangeEvent) -> c_int {
    match e {
        ExchangeEvent::Down => SHMEX_EVENT_DOWN,
        ExchangeEvent::Up => SHMEX_EVENT_UP,
    }
}

fn watch_of(locked: &Locked) -> &'static Watch {
    match locked.port() {
        Port::Watch(w) => w,
        _ => unreachable!("a watch handle names a watch"),
    }
}

/// Watches exchange `name` (which need not exist yet). Events alternate:
/// `SHMEX_EVENT_DOWN` after up (or after a watch started on a live
/// exchange), `SHMEX_EVENT_UP` after down.
#[no_mangle]
pub unsafe extern "C" fn shmex_watch_create(
    node: *mut crate::node::shmex_node,
    name: *const c_char,
    watch: *mut *mut shmex_watch,
) -> c_int {
    ffi(|| {
        // SAFETY (all blocks): NULL or valid, by the header's contract.
        let out = unsafe { Out::new(watch, "watch") }?;
        let name = unsafe { args::string(name, "name") }?;
        let w = handles::node(handles::of(node))?.watch(name)?;
        out.set(handles::to_ptr(handles::new_port(
            Kind::Watch,
            Port::Watch(w),
        )?));
        Ok(())
    })
}

/// Frees the watch. `SHMEX_E_BUSY` while it belongs to a wait set.
#[no_mangle]
pub extern "C" fn shmex_watch_free(watch: *mut shmex_watch) -> c_int {
    ffi(|| handles::release_port(handles::of(watch), Kind::Watch))
}

fn event(watch: *mut shmex_watch, event: *mut c_int, timeout: Option<i64>) -> Result<()> {
    // SAFETY: NULL or writable, by the header's contract.
    let out = unsafe { Out::new(event, "event") }?;
    handles::with_port(handles::of(watch), Kind::Watch, |locked| {
        let w = watch_of(locked);
        let e = match timeout {
            None => w.try_event().map_or(SHMEX_EVENT_NONE, event_code),
            Some(ms) => event_code(w.wait(args::timeout(ms))?),
        };
        out.set(e);
        Ok(())
    })
}

/// The next event if one happened (never blocks): `*event` is
/// `SHMEX_EVENT_DOWN`, `SHMEX_EVENT_UP` or `SHMEX_EVENT_NONE`.
#[no_mangle]
pub unsafe extern "C" fn shmex_watch_try_event(
    watch: *mut shmex_watch,
    event_out: *mut c_int,
) -> c_int {
    ffi(|| event(watch, event_out, None))
}

/// Blocks until the next event, at most `timeout_ms` milliseconds
/// (`SHMEX_FOREVER`: no limit; `SHMEX_E_TIMEOUT` after).
#[no_mangle]
pub unsafe extern "C" fn shmex_watch_wait(
    watch: *mut shmex_watch,
    timeout_ms: i64,
    event_out: *mut c_int,
) -> c_int {
    ffi(|| event(watch, event_out, Some(timeout_ms)))
}

/// `*up` is 1 when the exchange was up at the last look (the watch's
/// creation or its last event), else 0.
#[no_mangle]
pub unsafe extern "C" fn shmex_watch_is_up(watch: *mut shmex_watch, up: *mut c_int) -> c_int {
    ffi(|| {
        // SAFETY: NULL or writable, by the header's contract.
        let out = unsafe { Out::new(up, "up") }?;
        handles::with_port(handles::of(watch), Kind::Watch, |locked| {
            out.set(c_int::from(watch_of(locked).is_up()));
            Ok(())
        })
    })
}

//! The system interfaces the supervisor needs beyond the library: process
//! file descriptors (`pidfd_open`, `pidfd_send_signal`), `ppoll` on them,
//! process start times, and the SIGTERM/SIGINT handler.
//!
//! Signals: SIGTERM and SIGINT are blocked in every thread (the mask is set
//! before the node's heartbeat thread starts, which inherits it) and
//! unblocked only inside [`wait`]'s `ppoll`, atomically. So a stop request
//! is never lost between checking [`stop_requested`] and going to sleep, and
//! always interrupts the main thread's wait.

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::time::TimeSpec;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// A process file descriptor: refers to one process for its whole life
/// (immune to pid reuse), readable once the process has exited.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
}

impl Pidfd {
    /// Opens a pidfd for `pid`. `Err(ESRCH)` when no such process exists,
    /// `Err(ENOSYS)` on kernels older than 5.3.
    pub fn open(pid: u32) -> Result<Pidfd, Errno> {
        let pid = match libc::pid_t::try_from(pid) {
            Ok(p) if p > 0 => p,
            _ => return Err(Errno::ESRCH),
        };
        // SAFETY: pidfd_open takes a pid and flags by value and passes no
        // memory; it returns a new descriptor or -1 with errno set.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if ret < 0 {
            return Err(Errno::last());
        }
        let raw = i32::try_from(ret).map_err(|_| Errno::EBADF)?;
        // SAFETY: `raw` was just returned by pidfd_open: an open descriptor
        // that nothing else owns, so `OwnedFd` may close it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Pidfd { fd })
    }

    /// Sends `signal` to the process (never to a later process that reuses
    /// its pid).
    pub fn send_signal(&self, signal: Signal) -> Result<(), Errno> {
        // SAFETY: the descriptor is open for the duration of the call (we
        // own it); a null `info` is allowed (the kernel fills it as for
        // kill(2)); flags must be 0.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if ret < 0 {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`, the value the library records in `NodeInfo`), or
/// `None` when it cannot be read (no such process).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // Field 2, the command name, may hold spaces and parentheses: fields 3..
    // start after the last ')'. Field 22 is the 20th of those.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The signal that asked the supervisor to stop (0: none yet).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP.store(signal, Ordering::Relaxed);
}

/// The stop signal received so far, if any.
pub fn stop_requested() -> Option<Signal> {
    match STOP.load(Ordering::Relaxed) {
        0 => None,
        n => Some(Signal::try_from(n).unwrap_or(Signal::SIGTERM)),
    }
}

/// What [`wait`] unblocks while it sleeps.
pub struct Signals {
    /// The thread's mask during `ppoll`: the original one without SIGTERM
    /// and SIGINT.
    wait_mask: SigSet,
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread it
/// starts afterwards) and installs the handler that records them. Call
/// before any other thread exists.
pub fn install_stop_handler() -> Result<Signals, Errno> {
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGTERM);
    stop.add(Signal::SIGINT);
    let mut wait_mask = stop.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    wait_mask.remove(Signal::SIGTERM);
    wait_mask.remove(Signal::SIGINT);
    // No SA_RESTART: ppoll returns EINTR (it would anyway).
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe; no previous handler is relied upon.
        unsafe { nix::sys::signal::sigaction(signal, &action) }?;
    }
    Ok(Signals { wait_mask })
}

/// Sleeps until one of `fds` is readable (a process exited), a stop signal
/// arrives, or `timeout` passes. Returns the indices of the readable
/// descriptors (empty on timeout or signal).
pub fn wait(fds: &[BorrowedFd<'_>], timeout: Duration, signals: &Signals) -> Vec<usize> {
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    let timeout = TimeSpec::from_duration(timeout);
    match nix::poll::ppoll(&mut polled, Some(timeout), Some(signals.wait_mask)) {
        Ok(0) | Err(_) => Vec::new(), // timeout, EINTR (ENOMEM: retried next tick)
        Ok(_) => polled
            .iter()
            .enumerate()
            .filter(|(_, p)| p.any().unwrap_or(true))
            .map(|(i, _)| i)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_field() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 \
                    1000 10 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(12345));
        assert_eq!(parse_start_time("garbage"), None);
        let me = std::process::id();
        assert!(process_start_time(me).is_some());
    }

    #[test]
    fn pidfd_of_self_and_of_nobody() {
        let me = Pidfd::open(std::process::id()).expect("pidfd_open");
        // This process runs: its pidfd is not readable.
        let signals = Signals {
            wait_mask: SigSet::thread_get_mask().unwrap(),
        };
        assert!(wait(&[me.as_fd()], Duration::from_millis(1), &signals).is_empty());
        assert_eq!(Pidfd::open(0).unwrap_err(), Errno::ESRCH);
        assert_eq!(Pidfd::open(u32::MAX).unwrap_err(), Errno::ESRCH);
    }

    #[test]
    fn pidfd_readable_after_exit() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let fd = Pidfd::open(child.id()).unwrap();
        let signals = Signals {
            wait_mask: SigSet::thread_get_mask().unwrap(),
        };
        let mut ready = Vec::new();
        for _ in 0..1000 {
            ready = wait(&[fd.as_fd()], Duration::from_millis(10), &signals);
            if !ready.is_empty() {
                break;
            }
        }
        assert_eq!(ready, [0]);
        child.wait().unwrap();
    }
}

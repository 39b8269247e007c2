//! The system calls the runtime needs: futex, process identity, file locks.
//! Nothing here knows about shmex's layouts.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout` (forever when `None`).
/// Returns on wake-up, value change, timeout or signal; callers re-check.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| nix::libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as nix::libc::time_t,
        tv_nsec: t.subsec_nanos() as nix::libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const nix::libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call (it
    // lives in a mapping the caller keeps alive); FUTEX_WAIT only reads it.
    // Not FUTEX_PRIVATE: the word is shared between processes.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_futex,
            word.as_ptr(),
            nix::libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        );
    }
}

/// Wakes every thread sleeping on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access memory.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_futex,
            word.as_ptr(),
            nix::libc::FUTEX_WAKE,
            i32::MAX,
        );
    }
}

/// Milliseconds of the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`):
/// the clock of heartbeats and ack deadlines, which processes compare with
/// each other. Shared by every process of the host (a time namespace can
/// offset it: processes of one namespace must share one), unmoved by
/// wall-clock changes, stopped during suspend.
pub(crate) fn monotonic_ms() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE)
        .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
    {
        Ok(t) => (t.tv_sec() as u64).saturating_mul(1000) + t.tv_nsec() as u64 / 1_000_000,
        Err(_) => 0,
    }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` when the process does not exist.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// Fields 3 (state) and 22 (start time) of `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come fields 3.. ; start time is field 22, i.e. index 19 here.
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// This process's (pid, start time). The start time is informational (it
/// tells a reused pid apart in `shmex ls` and the supervisor); liveness never
/// depends on it. 0 when `/proc` is unreadable.
pub(crate) fn self_identity() -> (u32, u64) {
    let pid = std::process::id();
    (pid, process_start_time(pid).unwrap_or(0))
}

/// An open file description's (OFD) write lock on byte `offset` of `file`,
/// for the life of `file`: the kernel releases it when the last descriptor
/// of that description closes, which a process's death does. Unlike a pid,
/// it means the same thing in every PID namespace, and cannot be forged by
/// writing shared memory. `Ok(false)` when another description holds it.
pub(crate) fn ofd_try_lock(file: &File, offset: i64) -> std::io::Result<bool> {
    let mut lock = byte_lock(offset);
    // SAFETY: F_OFD_SETLK reads the flock struct we pass, which lives for the
    // call; the descriptor is valid.
    let r = unsafe { nix::libc::fcntl(file.as_raw_fd(), nix::libc::F_OFD_SETLK, &mut lock) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(nix::libc::EAGAIN) | Some(nix::libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// True when some open file description other than `file`'s holds the lock
/// [`ofd_try_lock`] takes on byte `offset`. A probe that fails (a kernel
/// without OFD locks, before 3.15) answers true: never take the living for
/// dead.
pub(crate) fn ofd_is_locked(file: &File, offset: i64) -> bool {
    let mut lock = byte_lock(offset);
    // SAFETY: F_OFD_GETLK reads and writes the flock struct we pass, which
    // lives for the call; the descriptor is valid.
    let r = unsafe { nix::libc::fcntl(file.as_raw_fd(), nix::libc::F_OFD_GETLK, &mut lock) };
    r != 0 || lock.l_type != nix::libc::F_UNLCK as nix::libc::c_short
}

fn byte_lock(offset: i64) -> nix::libc::flock {
    // SAFETY: flock is a plain C struct for which all zeros is valid.
    let mut lock: nix::libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = nix::libc::F_WRLCK as nix::libc::c_short;
    lock.l_whence = nix::libc::SEEK_SET as nix::libc::c_short;
    lock.l_start = offset;
    lock.l_len = 1;
    lock.l_pid = 0; // required by OFD locks
    lock
}

/// An exclusive `flock` on a file, released on drop (and by the kernel if the
/// process dies).
pub(crate) struct FileLock<'a>(&'a File);

/// Why [`FileLock::lock_within`] failed.
pub(crate) enum LockFailed {
    /// Still held by someone else when the wait ran out; the holder's pid as
    /// this process sees it (from `/proc/locks`), when it could be found.
    TimedOut { holder: Option<u32> },
    /// `flock` failed.
    Io(std::io::Error),
}

impl<'a> FileLock<'a> {
    /// Takes the lock, waiting at most `wait` for its holder to let go. A
    /// holder that stopped (SIGSTOP, a debugger) or hangs never blocks the
    /// caller past `wait`.
    pub(crate) fn lock_within(file: &'a File, wait: Duration) -> Result<Self, LockFailed> {
        let deadline = std::time::Instant::now() + wait;
        let mut pause = Duration::from_micros(50);
        loop {
            // SAFETY: flock on a valid open descriptor; no memory is touched.
            let r = unsafe {
                nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB)
            };
            if r == 0 {
                return Ok(FileLock(file));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(nix::libc::EINTR) => continue,
                Some(nix::libc::EWOULDBLOCK) => {}
                _ => return Err(LockFailed::Io(e)),
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(LockFailed::TimedOut {
                    holder: flock_holder(file),
                });
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }
}

/// The pid holding a `flock` on `file`, read from `/proc/locks` (the kernel's
/// word, not shared memory's); `None` when not found or not visible from
/// this PID namespace.
pub(crate) fn flock_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    // `/proc/locks` names the device as `MAJOR:MINOR` in hex.
    let id = format!(
        "{:02x}:{:02x}:{}",
        nix::libc::major(dev),
        nix::libc::minor(dev),
        meta.ino()
    );
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    parse_flock_holder(&text, &id)
}

/// The holder of the granted `FLOCK` on `id` (`MAJ:MIN:INODE`) in the text
/// of `/proc/locks`. Waiters (`->` lines) are skipped.
fn parse_flock_holder(locks: &str, id: &str) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END`
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, dev_ino, ..] if *dev_ino == id => pid.parse().ok(),
            _ => None,
        }
    })
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `lock`.
        unsafe { nix::libc::flock(self.0.as_raw_fd(), nix::libc::LOCK_UN) };
    }
}

/// Effective user id of this process.
pub(crate) fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Environment variable that, set to `off`, makes this process's
/// `membarrier` registration fail as if the kernel refused it (for tests of
/// the fenced fallback, and as an escape hatch on kernels whose `membarrier`
/// misbehaves).
pub const MEMBARRIER_ENV: &str = "SHMEX_MEMBARRIER";

/// True while this process is registered for `membarrier(GLOBAL_EXPEDITED)`
/// and no call has failed since: the heavy side of the asymmetric barriers
/// may use it, and other processes' barriers reach this one.
static MEMBARRIER_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Registers this process for `membarrier(GLOBAL_EXPEDITED)` (once per
/// process). Returns whether the asymmetric barrier is available.
pub(crate) fn membarrier_register() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        if std::env::var_os(MEMBARRIER_ENV).is_some_and(|v| v == "off") {
            return false;
        }
        // SAFETY: membarrier takes plain integers and touches no memory.
        let query =
            unsafe { nix::libc::syscall(nix::libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
        if query < 0 || query & MEMBARRIER_CMD_GLOBAL_EXPEDITED == 0 {
            return false;
        }
        // SAFETY: as above.
        let ok = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
                0,
                0,
            ) == 0
        };
        MEMBARRIER_OK.store(ok, std::sync::atomic::Ordering::Release);
        ok
    })
}

/// True while this process's registration holds (see [`MEMBARRIER_OK`]).
/// One relaxed load: read on every send.
pub(crate) fn membarrier_ok() -> bool {
    MEMBARRIER_OK.load(std::sync::atomic::Ordering::Relaxed)
}

/// Executes a full memory barrier on every running thread of every process
/// registered with [`membarrier_register`]. Returns false (and stops
/// [`membarrier_ok`] for good) when this process is not registered or the
/// call failed: then nothing was fenced, and the caller falls back to
/// symmetric fences.
pub(crate) fn membarrier_global() -> bool {
    if !membarrier_ok() {
        return false;
    }
    // SAFETY: as in membarrier_register.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_membarrier,
            MEMBARRIER_CMD_GLOBAL_EXPEDITED,
            0,
            0,
        )
    };
    if r != 0 {
        MEMBARRIER_OK.store(false, std::sync::atomic::Ordering::Release);
        return false;
    }
    true
}

/// The slow global barrier (`MEMBARRIER_CMD_GLOBAL`): every thread of every
/// process on the machine passes through a full barrier before it returns
/// (an RCU grace period, milliseconds). Needs no registration; used by a
/// heavy side that cannot issue the expedited one while the namespace's
/// switch to fences is under way (`shmex_core::barrier_mode`).
/// False where the kernel lacks it (e.g. `nohz_full` CPUs).
pub(crate) fn membarrier_slow() -> bool {
    // SAFETY: as in membarrier_register.
    unsafe { nix::libc::syscall(nix::libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0 }
}

const MEMBARRIER_CMD_QUERY: nix::libc::c_long = 0;
const MEMBARRIER_CMD_GLOBAL: nix::libc::c_long = 1;
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: nix::libc::c_long = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: nix::libc::c_long = 1 << 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_global_barrier_is_available() {
        // What completes a switch to fences when the expedited barrier is
        // unavailable (`barrier_mode::heavy_side`): supported here.
        assert!(membarrier_slow());
    }

    #[test]
    fn ofd_lock_is_seen_by_other_descriptions_only_while_held() {
        let path = std::env::temp_dir().join(format!("shmex-ofd-{}", std::process::id()));
        let holder = File::create(&path).unwrap();
        let prober = File::open(&path).unwrap();
        assert!(!ofd_is_locked(&prober, 7));
        assert!(ofd_try_lock(&holder, 7).unwrap());
        assert!(ofd_is_locked(&prober, 7));
        assert!(!ofd_is_locked(&prober, 8), "one byte only");
        assert!(
            !ofd_is_locked(&holder, 7),
            "its own description sees no conflict"
        );
        let other = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(!ofd_try_lock(&other, 7).unwrap(), "taken already");
        drop(holder);
        assert!(!ofd_is_locked(&prober, 7), "released with its description");
        let _ = std::fs::remove_file(&path);
    }

    /// Before, ack deadlines and heartbeats read the real-time clock, so a
    /// wall-clock jump redelivered everything or nothing and made every
    /// node look hung or alive. The clock they read now is the monotonic one.
    #[test]
    fn deadlines_run_on_the_monotonic_clock() {
        let mono = |id| {
            let t = nix::time::clock_gettime(id).unwrap();
            t.tv_sec() as i64 * 1000 + t.tv_nsec() as i64 / 1_000_000
        };
        let before = mono(nix::time::ClockId::CLOCK_MONOTONIC);
        let ours = monotonic_ms() as i64;
        let heartbeat = monotonic_ms() as i64;
        let after = mono(nix::time::ClockId::CLOCK_MONOTONIC);
        // The coarse clock lags the fine one by at most a tick (a few ms).
        for t in [ours, heartbeat] {
            assert!(t >= before - 100 && t <= after, "{before} {t} {after}");
        }
    }

    #[test]
    fn flock_holder_is_read_from_proc_locks() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 00:1a:77 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 5151 00:1a:77 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 99 00:1a:78 0 EOF\n";
        assert_eq!(parse_flock_holder(text, "00:1a:77"), Some(4242));
        assert_eq!(parse_flock_holder(text, "00:1a:78"), None);
    }

    #[test]
    fn a_held_lock_times_out_naming_its_holder() {
        let path = std::env::temp_dir().join(format!("shmex-flock-{}", std::process::id()));
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        let held = FileLock::lock_within(&a, Duration::ZERO)
            .ok()
            .expect("free lock");
        match FileLock::lock_within(&b, Duration::from_millis(20)) {
            Err(LockFailed::TimedOut { holder }) => {
                assert_eq!(holder, Some(std::process::id()))
            }
            _ => panic!("a held lock was taken"),
        }
        drop(held);
        assert!(FileLock::lock_within(&b, Duration::ZERO).is_ok());
        let _ = std::fs::remove_file(&path);
    }
}

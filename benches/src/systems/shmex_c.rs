//! shmex from C: the C↔C ping-pong of the C bindings,
//! `bindings/examples/pingpong.c`, as it is (8-byte payloads, both sides
//! spin-polling with `try_receive`; `rpc`: `shmex_client_send` +
//! `shmex_request_respond`, `pubsub`: `shmex_publisher_send` on two
//! exchanges).
//!
//! pingpong forks its own echoing side and times every round trip itself
//! (`clock_gettime` before the send and after the answer arrived), so it
//! does not fit the driver/peer model of the other systems: one batch is
//! one run of the program, `pingpong rpc|pubsub N NAMESPACE A,B`, with
//! `N` round trips (after its own warm-up of `N / 10`), its timing side on
//! the driver's core `A` and its echoing side on the peer's core `B` (it
//! exits with an error if either cannot be pinned; `-` with `--no-pin`).
//! It prints its median, p90, p99 and p99.9, which the batch reports as
//! [`Quantiles`] (the histogram stays empty). The program runs in a
//! process group of its own (Ctrl-C does not cut a batch short; a hang is
//! ended by [`kill_running`]) and in a namespace of its own per batch
//! (`shmexbench-<run>-c<cell>b<batch>`, swept with the run's files).
//!
//! The program is built on first use ([`program`]): `cargo build -p
//! shmex-c` (same profile and target folder as the running binary; a
//! no-op when `libshmex.a` is fresh), then `cc -O2` with the header,
//! linking `-lpthread -ldl -lm` as `bindings/Makefile` does, into
//! `<target>/<profile>/bench-c/pingpong` (compiled again only when the
//! library, the header or the source is newer). What is missing (no `cc`,
//! no sources) is reported, not fatal: the rows say why.

use crate::{
    err, Batch, Case, Clock, DriverSide, Histogram, Mode, Quantiles, Result, Run, Spec, NAME_PREFIX,
};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

/// The built program, or why there is none.
static PROGRAM: OnceLock<std::result::Result<Prepared, String>> = OnceLock::new();

/// Process group of the pingpong running now (0: none).
static RUNNING: AtomicI32 = AtomicI32::new(0);

/// The C ping-pong, ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The executable.
    pub exe: PathBuf,
    /// What preparing it did (for the report): e.g. `built in 7.9 s`,
    /// `up to date`.
    pub how: String,
}

/// Whether this system takes part in `spec`: the 8-byte spin round trips
/// pingpong measures.
pub fn applies(spec: &Spec) -> bool {
    matches!(spec.case, Case::PubsubRtt | Case::ReqrespRtt)
        && spec.size == 8
        && spec.mode == Mode::Spin
        && !spec.touched
}

/// Builds the program (once per process) or finds it built; `Err` says
/// why it cannot run.
pub fn program() -> &'static std::result::Result<Prepared, String> {
    PROGRAM.get_or_init(prepare)
}

/// Ends the pingpong running now, both its processes (from a watchdog).
pub fn kill_running() {
    let pgid = RUNNING.swap(0, Ordering::SeqCst);
    if pgid > 0 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The bindings crate: next to this one in the workspace the binary was
/// built from, or `SHMEX_BENCH_BINDINGS`.
fn bindings_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("SHMEX_BENCH_BINDINGS") {
        return PathBuf::from(p);
    }
    crate::sibling::workspace_dir().join("bindings")
}

/// The C compiler: `$CC` (words) or `cc`.
fn c_compiler() -> (OsString, Vec<String>) {
    let cc = std::env::var("CC").unwrap_or_default();
    let mut words = cc.split_whitespace().map(str::to_string);
    match words.next() {
        Some(prog) => (prog.into(), words.collect()),
        None => ("cc".into(), Vec::new()),
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn prepare() -> std::result::Result<Prepared, String> {
    let started = Instant::now();
    let bindings = bindings_dir();
    let source = bindings.join("examples/pingpong.c");
    let include = bindings.join("include");
    if !source.exists() || !include.join("shmex.h").exists() {
        return Err(format!(
            "C sources not found ({}; set SHMEX_BENCH_BINDINGS to the bindings folder)",
            source.display()
        ));
    }
    let (cc, cc_args) = c_compiler();
    match Command::new(&cc)
        .args(&cc_args)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no C compiler: `{}` not found on PATH (install one, e.g. apt-get install gcc)",
                cc.to_string_lossy()
            ))
        }
        Err(e) => return Err(format!("cannot run {}: {e}", cc.to_string_lossy())),
    }
    let profile_dir = crate::sibling::profile_dir()?;
    let lib = profile_dir.join("libshmex.a");
    // The library: cargo rebuilds it only when a source changed.
    let lib_before = modified(&lib);
    crate::sibling::cargo_build(&bindings.join("Cargo.toml"), &["-p", "shmex-c"], &lib)?;
    let lib_built = modified(&lib) != lib_before;

    // The program: compiled again when anything it is made of is newer.
    let out_dir = profile_dir.join("bench-c");
    let exe = out_dir.join("pingpong");
    let inputs = [&lib, &source, &include.join("shmex.h")];
    let stale = match modified(&exe) {
        None => true,
        Some(t) => inputs.iter().any(|p| modified(p).is_none_or(|m| m > t)),
    };
    if stale {
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
        // Written beside, then renamed: a concurrent run never sees half a file.
        let tmp = out_dir.join(format!("pingpong.{}.tmp", std::process::id()));
        let out = Command::new(&cc)
            .args(&cc_args)
            .args(["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-I"])
            .arg(&include)
            .arg(&source)
            .arg(&lib)
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&tmp)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", cc.to_string_lossy()))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "{} failed on pingpong.c: {}",
                cc.to_string_lossy(),
                crate::sibling::tail(&out.stderr)
            ));
        }
        std::fs::rename(&tmp, &exe).map_err(|e| format!("cannot move {}: {e}", tmp.display()))?;
    }
    let took = started.elapsed().as_secs_f64();
    let how = match (lib_built, stale) {
        (true, _) => format!("libshmex.a and pingpong built in {took:.1} s"),
        (false, true) => format!("pingpong compiled in {took:.1} s"),
        (false, false) => "up to date".to_string(),
    };
    Ok(Prepared { exe, how })
}

struct Driver {
    exe: PathBuf,
    mode: &'static str,
    /// Namespace of the batches, completed by the batch number.
    namespace: String,
    batches: u32,
    /// `A,B` or `-`.
    cpus: String,
    last: Option<Quantiles>,
}

/// Driving side: runs the program once per batch.
pub fn driver(run: &Run, cell: u32, spec: Spec) -> Result<Box<dyn DriverSide>> {
    if !applies(&spec) {
        return Err(err(format!("shmex-c does not measure {spec}")));
    }
    let exe = program().as_ref().map_err(|e| err(e.clone()))?.exe.clone();
    let pin = &run.pinning;
    let cpus = match (pin.driver, pin.peer(0)) {
        (Some(a), Some(b)) if pin.driver_pinned => format!("{a},{b}"),
        _ => "-".to_string(),
    };
    Ok(Box::new(Driver {
        exe,
        mode: if spec.case == Case::ReqrespRtt {
            "rpc"
        } else {
            "pubsub"
        },
        namespace: format!("{NAME_PREFIX}-{}-c{cell}", run.id),
        batches: 0,
        cpus,
        last: None,
    }))
}

/// The `key=value` of pingpong's result line.
fn field(line: &str, key: &str) -> Result<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| err(format!("pingpong printed no {key}: {line:?}")))
}

impl DriverSide for Driver {
    fn run(
        &mut self,
        n: u64,
        _peers: usize,
        _clock: &Clock,
        _hist: &mut Histogram,
    ) -> Result<Batch> {
        // pingpong wants at least 10.
        let rounds = n.max(10);
        let namespace = format!("{}b{}", self.namespace, self.batches);
        self.batches += 1;
        self.last = None;
        let start = Instant::now();
        let child = Command::new(&self.exe)
            .arg(self.mode)
            .arg(rounds.to_string())
            .arg(&namespace)
            .arg(&self.cpus)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", self.exe.display())))?;
        RUNNING.store(child.id() as i32, Ordering::SeqCst);
        // Blocks (no polling on the core the timing side spins on).
        let out = child.wait_with_output();
        RUNNING.store(0, Ordering::SeqCst);
        let out = out?;
        let elapsed = start.elapsed();
        if !out.status.success() {
            return Err(err(format!(
                "pingpong {} {rounds} {namespace} {} failed ({}): {}",
                self.mode,
                self.cpus,
                out.status,
                crate::sibling::tail(&out.stderr)
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("pingpong ") && l.contains("median_ns="))
            .ok_or_else(|| err(format!("pingpong printed no result: {stdout:?}")))?;
        let got = field(line, "rounds")?;
        if got != rounds {
            return Err(err(format!("pingpong ran {got} round trips, not {rounds}")));
        }
        self.last = Some(Quantiles {
            median_ns: field(line, "median_ns")? as f64,
            p99_ns: field(line, "p99_ns")? as f64,
            p999_ns: field(line, "p999_ns")? as f64,
            samples: rounds,
        });
        Ok(Batch {
            // The whole run (start-up and warm-up too): what calibration
            // needs to size batches.
            elapsed,
            msgs: rounds,
        })
    }

    fn quantiles(&self) -> Option<Quantiles> {
        self.last
    }
}

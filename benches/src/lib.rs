//! Measurement code shared by the criterion benchmarks (`benches/*.rs`) and the
//! `compare` binary.
//!
//! Every case runs between two (fan-in and two-worker tasks: three)
//! processes over real shared memory or a real socket: this process drives one side and times it, the
//! `bench-peer` binary runs the other side(s); only the `memcpy` floor of
//! `stream-response` runs in this process alone. One module per system under
//! [`systems`] holds both halves of that system's cases, so the code that is
//! timed is the same whoever calls it.
//!
//! The pieces:
//! - [`Spec`]: what is measured (case, payload size, blocking or busy-polling,
//!   payload touched or not) and [`System`]: by which system;
//! - [`Run`]: one run's unique names (shmex namespace, iceoryx2 root and
//!   prefix, socket names, `/dev/shm` files), core pinning and clean-up;
//! - [`Cell`]: one (spec, system) pair ready to measure: its own side plus its
//!   peer processes, idle (blocked on a pipe) between batches;
//! - [`Histogram`]: round-trip times, merged across batches.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

pub mod clock;
pub mod histogram;
pub mod json;
pub mod machine;
pub mod shm_file;
pub mod sibling;
pub mod systems;

pub use clock::Clock;
pub use histogram::Histogram;

/// Errors of the benchmark harness: reported, never recovered from.
pub type Error = Box<dyn std::error::Error>;
/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error`] from a message.
pub fn err(msg: impl Into<String>) -> Error {
    msg.into().into()
}

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Case {
    /// Publish to a subscriber in the peer, which publishes back: round trip.
    PubsubRtt,
    /// Request to a server in the peer, which responds: round trip.
    ReqrespRtt,
    /// The peer streams messages one way as fast as it can: msgs/s.
    Stream,
    /// Two peers stream into one consumer: msgs/s in total.
    Fanin,
    /// Task distribution (shmex only): this process submits tasks, `workers`
    /// peers take (up to `prefetch` unacknowledged each) and ack them as
    /// fast as they can: acked tasks/s.
    Tasks {
        /// Worker processes (1 or 2).
        workers: u8,
        /// Each worker's prefetch limit.
        prefetch: u32,
    },
    /// Streamed response: this process sends one request per response, the
    /// peer answers each with [`Spec::size`] bytes in [`STREAM_CHUNK`]-byte
    /// chunks (at most [`STREAM_WINDOW`] unreleased), every byte written by
    /// the server and read by the client in place: bytes/s.
    StreamResponse,
}

impl Case {
    /// The kind of case, as the JSON's `case` field: `pubsub-rtt`, ...,
    /// `tasks` (see [`name`](Self::name) for one that tells tasks cases
    /// apart).
    pub fn as_str(self) -> &'static str {
        match self {
            Case::PubsubRtt => "pubsub-rtt",
            Case::ReqrespRtt => "reqresp-rtt",
            Case::Stream => "stream",
            Case::Fanin => "fanin",
            Case::Tasks { .. } => "tasks",
            Case::StreamResponse => "stream-response",
        }
    }

    /// Unique name, used in [`Spec`]'s text form and criterion ids:
    /// [`as_str`](Self::as_str), and for tasks `tasks-<W>w-pf<P>`.
    pub fn name(self) -> String {
        match self {
            Case::Tasks { workers, prefetch } => format!("tasks-{workers}w-pf{prefetch}"),
            other => other.as_str().to_string(),
        }
    }

    /// Round-trip latency case (else a throughput case).
    pub fn is_latency(self) -> bool {
        matches!(self, Case::PubsubRtt | Case::ReqrespRtt)
    }

    /// Bandwidth case (a throughput case measured in bytes/s): the whole
    /// batch is timed, from the first request sent to the last byte read,
    /// and a batch message is one chunk ([`Spec::msg_bytes`]).
    pub fn is_bandwidth(self) -> bool {
        matches!(self, Case::StreamResponse)
    }

    /// Number of peer processes.
    pub fn peers(self) -> usize {
        match self {
            Case::Fanin => 2,
            Case::Tasks { workers, .. } => usize::from(workers),
            _ => 1,
        }
    }

    /// Parses [`name`](Self::name)'s form.
    fn parse(s: &str) -> Option<Case> {
        if let Some(rest) = s.strip_prefix("tasks-") {
            let (workers, prefetch) = rest.split_once("w-pf")?;
            let workers: u8 = workers.parse().ok()?;
            let prefetch: u32 = prefetch.parse().ok()?;
            return (workers >= 1 && prefetch >= 1).then_some(Case::Tasks { workers, prefetch });
        }
        [
            Case::PubsubRtt,
            Case::ReqrespRtt,
            Case::Stream,
            Case::Fanin,
            Case::StreamResponse,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// How a receiver waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Busy-polls (`try_receive` in a loop, non-blocking socket).
    Spin,
    /// Sleeps in the system's blocking receive (shmex with a spin budget of
    /// zero, so it really sleeps; blocking socket; futex).
    Blocking,
}

impl Mode {
    /// Name used in tables, JSON and criterion ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Spin => "spin",
            Mode::Blocking => "blocking",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        [Mode::Spin, Mode::Blocking]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// The systems measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    /// This project.
    Shmex,
    /// This project's typed exchanges: `pubsub-rtt` only, the same round
    /// trips as [`System::Shmex`] on exchanges of `u64` slices (see
    /// [`systems::shmex`]), to show that typing costs nothing.
    ShmexTyped,
    /// This project from C: the C↔C ping-pong of the C bindings
    /// (`bindings/examples/pingpong.c`), 8-byte spin round trips only; it
    /// times itself and reports [`Quantiles`] (see [`systems::shmex_c`]).
    ShmexC,
    /// iceoryx2 (crates.io), `ipc::Service`.
    Iceoryx2,
    /// A Unix domain stream socket.
    Uds,
    /// Two cache-line-padded counters in a mapped `/dev/shm` file, busy-polled:
    /// the floor of any shared-memory round trip.
    Floor,
    /// Two futex words in a mapped `/dev/shm` file, each side sleeping at once:
    /// the floor of a blocking round trip.
    Futex,
    /// `stream-response` only: the same bytes copied with `memcpy` in
    /// [`STREAM_CHUNK`]-byte blocks between two buffers of one process, the
    /// floor of moving them.
    Memcpy,
}

impl System {
    /// Every system, in table order.
    pub const ALL: [System; 8] = [
        System::Shmex,
        System::ShmexTyped,
        System::ShmexC,
        System::Iceoryx2,
        System::Uds,
        System::Floor,
        System::Futex,
        System::Memcpy,
    ];

    /// Name used in tables, JSON and criterion ids.
    pub fn as_str(self) -> &'static str {
        match self {
            System::Shmex => "shmex",
            System::ShmexTyped => "shmex-typed",
            System::ShmexC => "shmex-c",
            System::Iceoryx2 => "iceoryx2",
            System::Uds => "uds",
            System::Floor => "floor",
            System::Futex => "futex",
            System::Memcpy => "memcpy",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether this system takes part in `spec`.
    pub fn applies(self, spec: &Spec) -> bool {
        match self {
            // No other system here distributes tasks with acks.
            System::Iceoryx2 | System::Uds if matches!(spec.case, Case::Tasks { .. }) => false,
            // A socket has no chunked responses written in place.
            System::Uds if spec.case == Case::StreamResponse => false,
            System::Shmex | System::Iceoryx2 | System::Uds => true,
            System::ShmexTyped => spec.case == Case::PubsubRtt,
            System::ShmexC => systems::shmex_c::applies(spec),
            System::Floor => spec.case.is_latency() && spec.mode == Mode::Spin,
            System::Futex => spec.case.is_latency() && spec.mode == Mode::Blocking,
            System::Memcpy => spec.case == Case::StreamResponse,
        }
    }

    /// Peer processes this system starts for `spec` (`memcpy`: none;
    /// `shmex-c`: none, its program forks its own).
    pub fn peers(self, spec: &Spec) -> usize {
        match self {
            System::Memcpy | System::ShmexC => 0,
            _ => spec.case.peers(),
        }
    }

    /// Times its round trips itself, in a program of its own, and reports
    /// [`Quantiles`] per batch instead of filling the [`Histogram`]
    /// (`shmex-c`); not in the criterion benches.
    pub fn times_itself(self) -> bool {
        self == System::ShmexC
    }
}

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spec {
    /// What is measured.
    pub case: Case,
    /// Payload bytes per message (at least 8: every message carries a
    /// sequence number in its first 8 bytes, checked by the receiver);
    /// `stream-response`: bytes per response, a multiple of [`STREAM_CHUNK`].
    pub size: usize,
    /// How receivers wait.
    pub mode: Mode,
    /// Every payload byte written by the sender and read by the receiver.
    /// Untouched: only the 8-byte sequence number is.
    pub touched: bool,
}

impl Spec {
    /// A spec.
    pub const fn new(case: Case, size: usize, mode: Mode, touched: bool) -> Spec {
        Spec {
            case,
            size,
            mode,
            touched,
        }
    }

    /// Parses [`Display`](fmt::Display)'s form, `case/size/mode/touched|untouched`
    /// (`case` as [`Case::name`]).
    pub fn parse(s: &str) -> Option<Spec> {
        let mut it = s.split('/');
        let case = Case::parse(it.next()?)?;
        let size: usize = it.next()?.parse().ok()?;
        let mode = Mode::parse(it.next()?)?;
        let touched = match it.next()? {
            "touched" => true,
            "untouched" => false,
            _ => return None,
        };
        let whole_chunks = case != Case::StreamResponse
            || (size >= STREAM_CHUNK && size.is_multiple_of(STREAM_CHUNK));
        (it.next().is_none() && size >= 8 && whole_chunks).then_some(Spec {
            case,
            size,
            mode,
            touched,
        })
    }

    /// Bytes of one batch message: a chunk for `stream-response`, else
    /// [`size`](Self::size).
    pub fn msg_bytes(&self) -> usize {
        match self.case {
            Case::StreamResponse => STREAM_CHUNK,
            _ => self.size,
        }
    }

    /// The spec `compare --quick` measures instead: `stream-response` with
    /// [`QUICK_STREAM_RESPONSE_BYTES`] per response; others unchanged.
    pub fn quick(self) -> Spec {
        match self.case {
            Case::StreamResponse => Spec {
                size: QUICK_STREAM_RESPONSE_BYTES,
                ..self
            },
            _ => self,
        }
    }

    /// Short label for tables: `pubsub-rtt 4KiB touched`,
    /// `tasks 8B 2 workers prefetch 64`.
    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.case.as_str(), size_label(self.size));
        if let Case::Tasks { workers, prefetch } = self.case {
            let plural = if workers == 1 { "" } else { "s" };
            s.push_str(&format!(" {workers} worker{plural} prefetch {prefetch}"));
        }
        if self.touched {
            s.push_str(" touched");
        }
        s
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.case.name(),
            self.size,
            self.mode.as_str(),
            if self.touched { "touched" } else { "untouched" }
        )
    }
}

/// `8B`, `4KiB`, `1MiB`.
pub fn size_label(size: usize) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{}MiB", size >> 20)
    } else if size >= 1 << 10 && size.is_multiple_of(1 << 10) {
        format!("{}KiB", size >> 10)
    } else {
        format!("{size}B")
    }
}

/// `stream-response`: bytes per chunk.
pub const STREAM_CHUNK: usize = 256 << 10;
/// `stream-response`: chunks the server may have sent and the client not yet
/// released (shmex's window; iceoryx2's response buffer).
pub const STREAM_WINDOW: u32 = 8;
/// `stream-response`: bytes per response (256 chunks).
pub const STREAM_RESPONSE_BYTES: usize = 64 << 20;
/// `stream-response` under `compare --quick`: bytes per response (64 chunks).
pub const QUICK_STREAM_RESPONSE_BYTES: usize = 16 << 20;

/// Every case of the issue, in table order.
pub fn all_specs() -> Vec<Spec> {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    let mut out = Vec::new();
    for mode in [Mode::Spin, Mode::Blocking] {
        for (size, touched) in [
            (8, false),
            (4 * KIB, false),
            (4 * KIB, true),
            (MIB, false),
            (MIB, true),
        ] {
            out.push(Spec::new(Case::PubsubRtt, size, mode, touched));
        }
        out.push(Spec::new(Case::ReqrespRtt, 8, mode, false));
        out.push(Spec::new(Case::Stream, 8, mode, false));
        out.push(Spec::new(Case::Stream, 4 * KIB, mode, false));
        out.push(Spec::new(Case::Fanin, 8, mode, false));
    }
    // Task distribution: shmex only, workers busy-polling.
    for workers in [1, 2] {
        for prefetch in [1, 64] {
            out.push(Spec::new(
                Case::Tasks { workers, prefetch },
                8,
                Mode::Spin,
                false,
            ));
        }
    }
    // Streamed responses: every byte written and read, busy-polling.
    out.push(Spec::new(
        Case::StreamResponse,
        STREAM_RESPONSE_BYTES,
        Mode::Spin,
        true,
    ));
    out
}

// ---------------------------------------------------------------------------
// Payload helpers, the same for every system.

/// Writes message `seq` into `buf`: the sequence number in the first 8 bytes
/// and, when `touched`, every other byte too.
#[inline]
pub fn write_payload(buf: &mut [u8], seq: u64, touched: bool) {
    if touched && buf.len() > 8 {
        buf[8..].fill(seq as u8);
    }
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

/// Reads a message written by [`write_payload`]: returns its sequence number
/// and, when `touched`, reads every other byte too (summed, the sum hidden
/// from the optimiser).
#[inline]
pub fn read_payload(buf: &[u8], touched: bool) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&buf[..8]);
    if touched && buf.len() > 8 {
        let sum = buf[8..].chunks_exact(8).fold(0u64, |a, c| {
            a.wrapping_add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        });
        std::hint::black_box(sum);
    }
    u64::from_le_bytes(head)
}

/// Writes chunk `seq` of a streamed response in place, every byte: `u64`
/// word `j` (little-endian) is `seq ^ j`, so the first 8 bytes carry `seq`.
#[inline]
pub fn fill_words(buf: &mut [u8], seq: u64) {
    for (j, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(seq ^ j as u64).to_le_bytes());
    }
}

/// Reads chunk `seq` written by [`fill_words`] in place, every byte, and
/// checks it (branch-free over the chunk; the culprit is looked for only
/// when something is wrong).
#[inline]
pub fn check_words(buf: &[u8], seq: u64) -> Result<()> {
    let diff = buf.chunks_exact(8).enumerate().fold(0u64, |acc, (j, w)| {
        acc | (u64::from_le_bytes(w.try_into().unwrap_or([0; 8])) ^ seq ^ j as u64)
    });
    if diff == 0 && buf.len().is_multiple_of(8) {
        return Ok(());
    }
    let mut head = [0u8; 8];
    if let Some(h) = buf.get(..8) {
        head.copy_from_slice(h);
    }
    check_seq(u64::from_le_bytes(head), seq)?;
    Err(err(format!(
        "chunk {seq} ({} bytes) does not hold what its writer wrote",
        buf.len()
    )))
}

/// Checks a received sequence number.
#[inline]
pub fn check_seq(got: u64, expected: u64) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(err(format!(
            "message out of order: got sequence {got}, expected {expected}"
        )))
    }
}

/// One busy-wait step, the same in every system's polling loop.
#[inline(always)]
pub fn spin_pause() {
    std::hint::spin_loop();
}

// ---------------------------------------------------------------------------
// Core pinning.

/// Cores this process may run on.
pub fn allowed_cores() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pins the calling thread to `core`; true when the kernel accepted it and
/// reading the affinity back shows exactly that core.
pub fn pin_to(core: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    if set.set(core).is_err() {
        return false;
    }
    let me = nix::unistd::Pid::from_raw(0);
    if nix::sched::sched_setaffinity(me, &set).is_err() {
        return false;
    }
    match nix::sched::sched_getaffinity(me) {
        Ok(got) => {
            (0..nix::sched::CpuSet::count()).all(|i| got.is_set(i).unwrap_or(false) == (i == core))
        }
        Err(_) => false,
    }
}

/// The core the calling thread runs on now, if known.
pub fn current_core() -> Option<usize> {
    nix::sched::sched_getcpu().ok()
}

/// Where this run's processes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinning {
    /// Core of the measuring process; `None`: not pinned.
    pub driver: Option<usize>,
    /// Core of each peer process (index = peer index).
    pub peers: Vec<Option<usize>>,
    /// Pinning was asked for and the driver's `sched_setaffinity` held.
    pub driver_pinned: bool,
}

impl Pinning {
    /// Pins this thread to the first allowed core and plans the peers on the
    /// others (both fan-in producers share a core on a 2-core machine). With
    /// fewer than 2 cores, or `enabled == false`, nothing is pinned.
    pub fn plan(enabled: bool) -> Pinning {
        let cores = allowed_cores();
        if !enabled || cores.len() < 2 {
            return Pinning {
                driver: None,
                peers: vec![None; 2],
                driver_pinned: false,
            };
        }
        let driver = cores[0];
        let others = &cores[1..];
        let peers = (0..2).map(|i| Some(others[i % others.len()])).collect();
        let driver_pinned = pin_to(driver);
        Pinning {
            driver: Some(driver),
            peers,
            driver_pinned,
        }
    }

    /// Peer `index`'s core.
    pub fn peer(&self, index: usize) -> Option<usize> {
        self.peers.get(index).copied().flatten()
    }
}

// ---------------------------------------------------------------------------
// A run: unique names and clean-up.

/// Prefix of every file, socket and name a run creates.
pub const NAME_PREFIX: &str = "shmexbench";

/// One run's identity: every shared-memory object, socket and service it
/// creates carries `id`, so runs never meet, and [`Run::cleanup`] (also run on
/// drop) removes whatever is left. Runs whose process died are swept when the
/// next run starts.
pub struct Run {
    /// `<pid>x<random hex>`: letters and digits only.
    pub id: String,
    /// The peer executable.
    pub peer_exe: PathBuf,
    /// Core plan.
    pub pinning: Pinning,
    next_cell: std::cell::Cell<u32>,
    /// Peers whose core differed from the planned one after some batch.
    pinning_broke: std::cell::Cell<bool>,
}

impl Run {
    /// A new run using `peer_exe` as the helper process. Pins this thread
    /// (see [`Pinning::plan`]) and sweeps files of earlier runs whose process
    /// has exited.
    pub fn new(peer_exe: PathBuf, pin: bool) -> Run {
        sweep_stale();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!("{}x{:06x}", std::process::id(), nanos & 0xff_ffff);
        Run {
            id,
            peer_exe,
            pinning: Pinning::plan(pin),
            next_cell: std::cell::Cell::new(0),
            pinning_broke: std::cell::Cell::new(false),
        }
    }

    /// The shmex namespace of this run.
    pub fn shmex_namespace(&self) -> String {
        format!("{NAME_PREFIX}-{}", self.id)
    }

    /// Folder under which iceoryx2 puts its service and node files in this run.
    pub fn iceoryx2_root(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/{NAME_PREFIX}-{}-iceoryx2/", self.id))
    }

    /// Prefix iceoryx2 gives its `/dev/shm` objects in this run.
    pub fn iceoryx2_prefix(&self) -> String {
        format!("{NAME_PREFIX}_{}_", self.id)
    }

    /// A name unique to `cell` in this run (socket names, files, services).
    pub fn cell_name(&self, cell: u32, what: &str) -> String {
        format!("{NAME_PREFIX}-{}-c{cell}-{what}", self.id)
    }

    fn new_cell(&self) -> u32 {
        let c = self.next_cell.get();
        self.next_cell.set(c + 1);
        c
    }

    /// True while every batch found each process on its planned core.
    pub fn pinning_held(&self) -> bool {
        self.pinning.driver_pinned && !self.pinning_broke.get()
    }

    /// Removes everything this run may have left: shmex segments,
    /// iceoryx2's `/dev/shm` objects and folder, floor/futex files.
    /// Returns the paths that were still there.
    pub fn cleanup(&self) -> Vec<PathBuf> {
        remove_run_files(&self.id)
    }

    /// Paths of this run still present (after [`cleanup`](Self::cleanup): none).
    pub fn leftovers(&self) -> Vec<PathBuf> {
        leftovers(&self.id)
    }
}

/// Removes every file and folder of run `id` (see [`Run::cleanup`]); usable
/// from a watchdog thread that does not own the [`Run`].
pub fn remove_run_files(id: &str) -> Vec<PathBuf> {
    {
        let mut removed = Vec::new();
        for p in leftovers(id) {
            let ok = if p.is_dir() {
                std::fs::remove_dir_all(&p).is_ok()
            } else {
                std::fs::remove_file(&p).is_ok()
            };
            if ok {
                removed.push(p);
            }
        }
        removed
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Files and folders belonging to run `id` (or to any run, for `id == ""`),
/// paired with the run id they carry.
fn run_paths() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for dir in ["/dev/shm", "/tmp"] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = run_id_in(&name) {
                out.push((e.path(), id));
            }
        }
    }
    out
}

/// The run id inside a file name made by a run (`...shmexbench-<id>...` or
/// `shmexbench_<id>_...`).
fn run_id_in(name: &str) -> Option<String> {
    let at = name.find(NAME_PREFIX)?;
    let rest = &name[at + NAME_PREFIX.len()..];
    let rest = rest.strip_prefix('-').or_else(|| rest.strip_prefix('_'))?;
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let (pid, tail) = id.split_once('x')?;
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !tail.is_empty()).then_some(id)
}

fn leftovers(id: &str) -> Vec<PathBuf> {
    run_paths()
        .into_iter()
        .filter(|(_, i)| i == id)
        .map(|(p, _)| p)
        .collect()
}

/// Removes what runs whose process has exited left behind.
fn sweep_stale() {
    for (path, id) in run_paths() {
        let pid: i32 = id
            .split_once('x')
            .and_then(|(p, _)| p.parse().ok())
            .unwrap_or(0);
        let alive = pid > 0
            && !matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            );
        if !alive {
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Peer processes.

/// One helper process, blocked on its stdin between batches.
///
/// Protocol (lines): the peer prints `ready <pinned 0|1>` once set up; then
/// for each `run N` it prints `go` right before starting and `done <core>`
/// after; `quit` (or end of input) makes it clean up and exit.
pub struct PeerProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Core the peer was asked to pin itself to.
    pub core: Option<usize>,
    /// Whether its pinning held at start.
    pub pinned: bool,
}

/// What identifies a peer's task: passed on its command line.
#[derive(Debug, Clone)]
pub struct PeerArgs {
    /// System under test.
    pub system: System,
    /// Case.
    pub spec: Spec,
    /// Run id ([`Run::id`]).
    pub run: String,
    /// Cell number inside the run.
    pub cell: u32,
    /// Peer index (fan-in producers: 0 and 1).
    pub index: usize,
    /// Core to pin to.
    pub core: Option<usize>,
}

impl PeerArgs {
    /// Command-line form.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            self.system.as_str().to_string(),
            self.spec.to_string(),
            self.run.clone(),
            self.cell.to_string(),
            self.index.to_string(),
            self.core.map_or_else(|| "-".to_string(), |c| c.to_string()),
        ]
    }

    /// Parses [`to_args`](Self::to_args).
    pub fn parse(args: &[String]) -> Result<PeerArgs> {
        let usage = || err("usage: bench-peer SYSTEM CASE/SIZE/MODE/TOUCHED RUN CELL INDEX CORE|-");
        if args.len() != 6 {
            return Err(usage());
        }
        Ok(PeerArgs {
            system: System::parse(&args[0]).ok_or_else(usage)?,
            spec: Spec::parse(&args[1]).ok_or_else(usage)?,
            run: args[2].clone(),
            cell: args[3].parse().map_err(|_| usage())?,
            index: args[4].parse().map_err(|_| usage())?,
            core: match args[5].as_str() {
                "-" => None,
                c => Some(c.parse().map_err(|_| usage())?),
            },
        })
    }

    /// A name unique to this cell (same as [`Run::cell_name`]).
    pub fn cell_name(&self, what: &str) -> String {
        format!("{NAME_PREFIX}-{}-c{}-{what}", self.run, self.cell)
    }
}

impl PeerProc {
    fn spawn(exe: &Path, args: &PeerArgs) -> Result<PeerProc> {
        let mut child = Command::new(exe)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", exe.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| err("no peer stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| err("no peer stdout"))?);
        let mut p = PeerProc {
            child,
            stdin,
            stdout,
            core: args.core,
            pinned: false,
        };
        let line = p.read_line()?;
        match line.strip_prefix("ready ") {
            Some(flag) => p.pinned = flag == "1",
            None => return Err(err(format!("peer said {line:?} instead of ready"))),
        }
        Ok(p)
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            return Err(err(format!("peer exited ({status})")));
        }
        Ok(line.trim_end().to_string())
    }

    fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        let _ = self.send("quit");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                _ => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer side of a cell, run inside `bench-peer`.
pub trait PeerSide {
    /// Runs one batch of `n` iterations (echo `n` round trips, or send `n`
    /// messages).
    fn run(&mut self, n: u64) -> Result<()>;
}

/// Runs a peer: sets up `args`' side, then serves the line protocol of
/// [`PeerProc`] on stdin/stdout until `quit`.
pub fn peer_main(args: &PeerArgs) -> Result<()> {
    // A peer never outlives the process measuring with it.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // Ctrl-C goes to the whole process group: let the driver shut us down.
    // SAFETY: installing SIG_IGN runs no code of ours in signal context.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    let pinned = args.core.is_some_and(pin_to);
    let mut side = systems::peer_side(args)?;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", u8::from(pinned))?;
    out.flush()?;
    for line in stdin.lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match words.next() {
            Some("run") => {
                let n: u64 = words
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| err(format!("bad command {line:?}")))?;
                writeln!(out, "go")?;
                out.flush()?;
                side.run(n)?;
                let core = current_core().map_or(-1, |c| c as i64);
                writeln!(out, "done {core}")?;
                out.flush()?;
            }
            Some("quit") | None => break,
            Some(other) => return Err(err(format!("unknown command {other:?}"))),
        }
    }
    drop(side);
    Ok(())
}

// ---------------------------------------------------------------------------
// The driving side and cells.

/// What one batch measured.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// Latency cases: time for all `n` round trips. Throughput cases: time
    /// from the first message received to the last.
    pub elapsed: Duration,
    /// Messages received (throughput cases) or round trips (latency cases).
    pub msgs: u64,
}

impl Batch {
    /// Messages per second (throughput cases: the first message starts the
    /// clock, so `msgs - 1` intervals are timed).
    pub fn msgs_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 || self.msgs < 2 {
            return 0.0;
        }
        (self.msgs - 1) as f64 / secs
    }

    /// Messages per second of a `case` batch: [`msgs_per_s`](Self::msgs_per_s),
    /// or, for a bandwidth case (timed over the whole batch), `msgs` over
    /// the time.
    pub fn rate(&self, case: Case) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if !case.is_bandwidth() {
            self.msgs_per_s()
        } else if secs <= 0.0 {
            0.0
        } else {
            self.msgs as f64 / secs
        }
    }

    /// Mean time per iteration.
    pub fn per_iter(&self) -> Duration {
        if self.msgs == 0 {
            return Duration::ZERO;
        }
        self.elapsed / self.msgs.min(u32::MAX as u64) as u32
    }
}

/// Round-trip figures of one batch timed by a program of its own
/// ([`System::times_itself`]), which prints quantiles, not every round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    /// Median round trip.
    pub median_ns: f64,
    /// 99th percentile.
    pub p99_ns: f64,
    /// 99.9th percentile.
    pub p999_ns: f64,
    /// Round trips timed.
    pub samples: u64,
}

/// The measuring side of a cell.
pub trait DriverSide {
    /// Called once the peers are up (accept connections, unlink files).
    fn connected(&mut self) -> Result<()> {
        Ok(())
    }

    /// Runs one batch of `n` iterations against peers that have just said
    /// `go`: `n` round trips (each one's time recorded in `hist`),
    /// receiving `n` messages from each of `peers` producers, or `n`
    /// streamed responses (`msgs`: their chunks).
    fn run(&mut self, n: u64, peers: usize, clock: &Clock, hist: &mut Histogram) -> Result<Batch>;

    /// Anything unusual seen so far (e.g. lost wake-ups), for the report.
    fn notes(&self) -> Option<String> {
        None
    }

    /// The last batch's round-trip figures, for a side that times itself
    /// ([`System::times_itself`]) and leaves the histogram empty.
    fn quantiles(&self) -> Option<Quantiles> {
        None
    }
}

/// One (spec, system) pair, set up and ready: its driving side and its
/// peer processes.
pub struct Cell {
    /// What it measures.
    pub spec: Spec,
    /// By which system.
    pub system: System,
    side: Box<dyn DriverSide>,
    peers: Vec<PeerProc>,
    driver_core: Option<usize>,
    /// Whether every process was on its planned core after every batch.
    pub pinning_held: bool,
}

impl Cell {
    /// Creates the driving side's resources, starts the peers and connects.
    pub fn new(run: &Run, spec: Spec, system: System) -> Result<Cell> {
        if !system.applies(&spec) {
            return Err(err(format!("{} does not apply to {spec}", system.as_str())));
        }
        let cell = run.new_cell();
        let mut side = systems::driver_side(run, cell, spec, system)?;
        let mut peers = Vec::new();
        for index in 0..system.peers(&spec) {
            let args = PeerArgs {
                system,
                spec,
                run: run.id.clone(),
                cell,
                index,
                core: run.pinning.peer(index),
            };
            peers.push(PeerProc::spawn(&run.peer_exe, &args)?);
        }
        side.connected()?;
        let pinning_held = run.pinning.driver_pinned && peers.iter().all(|p| p.pinned);
        Ok(Cell {
            spec,
            system,
            side,
            peers,
            driver_core: run.pinning.driver,
            pinning_held,
        })
    }

    /// Runs one batch of `n` iterations (see [`DriverSide::run`]).
    pub fn batch(&mut self, n: u64, clock: &Clock, hist: &mut Histogram) -> Result<Batch> {
        let n = n.max(1);
        for p in &mut self.peers {
            p.send(&format!("run {n}"))?;
        }
        for p in &mut self.peers {
            let line = p.read_line()?;
            if line != "go" {
                return Err(err(format!("peer said {line:?} instead of go")));
            }
        }
        let npeers = self.peers.len();
        // On error the peers may wait for messages that will never come;
        // dropping the cell kills them.
        let batch = self.side.run(n, npeers, clock, hist)?;
        let mut held = self.driver_core.is_none() || current_core() == self.driver_core;
        for p in &mut self.peers {
            let line = p.read_line()?;
            let core = line
                .strip_prefix("done ")
                .and_then(|c| c.parse::<i64>().ok())
                .ok_or_else(|| err(format!("peer said {line:?} instead of done")))?;
            held &= p.core.is_none_or(|c| c as i64 == core);
        }
        self.pinning_held &= held;
        Ok(batch)
    }

    /// Anything unusual the driving side saw (see [`DriverSide::notes`]).
    pub fn notes(&self) -> Option<String> {
        self.side.notes()
    }

    /// The last batch's figures of a side that times itself (see
    /// [`DriverSide::quantiles`]).
    pub fn quantiles(&self) -> Option<Quantiles> {
        self.side.quantiles()
    }

    /// Runs batches, growing `n`, until one takes at least `target`; returns
    /// the `n` that takes about `target`. Results are thrown away (warm-up).
    pub fn calibrate(&mut self, target: Duration, clock: &Clock) -> Result<u64> {
        let mut n: u64 = if self.spec.case.is_bandwidth() {
            1
        } else if self.spec.mode == Mode::Blocking || self.spec.size >= 1 << 20 {
            16
        } else {
            256
        };
        let mut scratch = Histogram::new();
        loop {
            let b = self.batch(n, clock, &mut scratch)?;
            let took = b.elapsed.max(Duration::from_micros(1));
            if took >= target / 4 || n >= 1 << 32 {
                let per = took.as_secs_f64() / n as f64;
                return Ok(((target.as_secs_f64() / per) as u64).clamp(8, 1 << 34));
            }
            let grow = (target.as_secs_f64() / 2.0 / took.as_secs_f64()).clamp(2.0, 64.0);
            n = (n as f64 * grow) as u64;
        }
    }
}

/// Records the pinning outcome of `cell` into `run`.
pub fn note_pinning(run: &Run, cell: &Cell) {
    if !cell.pinning_held {
        run.pinning_broke.set(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_through_text() {
        let specs = all_specs();
        for spec in &specs {
            assert_eq!(Spec::parse(&spec.to_string()), Some(*spec), "{spec}");
        }
        let tasks: Vec<_> = specs
            .iter()
            .filter(|s| matches!(s.case, Case::Tasks { .. }))
            .collect();
        assert_eq!(tasks.len(), 4);
        for s in tasks {
            assert!(!s.case.is_latency());
            assert!(System::Shmex.applies(s));
            assert!(System::ALL[1..].iter().all(|x| !x.applies(s)));
            assert!(!System::ShmexC.applies(s));
        }
        let streamed: Vec<_> = specs
            .iter()
            .filter(|s| s.case == Case::StreamResponse)
            .collect();
        assert_eq!(streamed.len(), 1);
        for s in streamed {
            assert!(s.case.is_bandwidth() && !s.case.is_latency());
            let on: Vec<_> = System::ALL.into_iter().filter(|x| x.applies(s)).collect();
            assert_eq!(on, [System::Shmex, System::Iceoryx2, System::Memcpy]);
            assert_eq!(System::Memcpy.peers(s), 0);
            assert_eq!(System::Shmex.peers(s), 1);
            assert_eq!(Spec::parse(&s.quick().to_string()), Some(s.quick()));
            assert_eq!(s.msg_bytes(), STREAM_CHUNK);
        }
        assert!(Spec::parse("stream-response/1000/spin/touched").is_none());
        let s = Spec::parse("tasks-2w-pf64/8/spin/untouched").unwrap();
        assert_eq!(s.case.peers(), 2);
        assert_eq!(s.label(), "tasks 8B 2 workers prefetch 64");
        assert!(Spec::parse("tasks-0w-pf64/8/spin/untouched").is_none());
        assert!(Spec::parse("tasks-1w-pf/8/spin/untouched").is_none());
        // The C ping-pong: the two 8-byte spin round trips, nothing else.
        let c: Vec<String> = specs
            .iter()
            .filter(|s| System::ShmexC.applies(s))
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            c,
            [
                "pubsub-rtt/8/spin/untouched",
                "reqresp-rtt/8/spin/untouched"
            ]
        );
        assert_eq!(System::parse("shmex-c"), Some(System::ShmexC));
        // Typed rows: every pub-sub round trip (each size and mode), nothing else.
        for s in &specs {
            assert_eq!(
                System::ShmexTyped.applies(s),
                s.case == Case::PubsubRtt,
                "{s}"
            );
        }
        assert_eq!(System::parse("shmex-typed"), Some(System::ShmexTyped));
        assert_eq!(System::ShmexC.peers(&Spec::parse(&c[0]).unwrap()), 0);
    }

    #[test]
    fn words_round_trip() {
        let mut buf = vec![0u8; 4096];
        fill_words(&mut buf, 7);
        assert!(check_words(&buf, 7).is_ok());
        assert!(check_words(&buf, 8).is_err());
        buf[4000] ^= 1;
        assert!(check_words(&buf, 7).is_err());
    }
}

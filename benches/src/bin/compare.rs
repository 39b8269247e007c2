//! Runs every case for shmex and its peers, interleaved, and prints one table.
//!
//! ```text
//! cargo run --release -p shmex-benches --bin compare -- [--quick] [--json FILE]
//!     [--rounds N] [--batch-ms MS] [--only TEXT] [--no-pin]
//! ```
//!
//! For each case, every applicable system is set up at once (peers idle on a
//! pipe), calibrated, then measured in rounds: one batch of each system per
//! round, the order rotating, so drift of the (virtualised) machine hits all
//! systems alike. The task-distribution cases (`tasks`) have shmex alone;
//! `stream-response` (GB/s) has shmex, iceoryx2 and a `memcpy` floor. The
//! 8-byte spin round trips also have `shmex-c`, the C↔C ping-pong of the C
//! bindings (built first if needed), one run of it per batch; the pub-sub
//! round trips have `shmex-typed`, the same on typed exchanges.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmex_benches::json::Json;
use shmex_benches::machine::{cpu_busy_percent, load_average, shmex_commit, Machine};
use shmex_benches::systems::shmex_c;
use shmex_benches::{
    all_specs, note_pinning, size_label, Case, Cell, Clock, Histogram, Mode, Quantiles, Run, Spec,
    System, STREAM_CHUNK, STREAM_WINDOW,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

/// Milliseconds since the start at the last step of progress (watchdog).
static LAST_PROGRESS_MS: AtomicU64 = AtomicU64::new(0);
/// What is being measured now (watchdog message).
static CURRENT: Mutex<String> = Mutex::new(String::new());

/// The progress bar, which also feeds the watchdog.
struct Progress {
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    fn tick(&self) {
        LAST_PROGRESS_MS.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.tick();
    }

    fn set_message(&self, msg: String) {
        if let Ok(mut c) = CURRENT.lock() {
            c.clone_from(&msg);
        }
        self.bar.set_message(msg);
        self.tick();
    }
}

/// Ends the process when nothing progresses for `limit` (a peer or a
/// system hung): removes the run's files first; the peers die with us
/// (parent-death signal).
fn start_watchdog(run_id: String, started: Instant, limit: Duration) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = started.elapsed().as_millis() as u64;
        let last = LAST_PROGRESS_MS.load(Ordering::Relaxed);
        if now.saturating_sub(last) > limit.as_millis() as u64 {
            let what = CURRENT.lock().map(|c| c.clone()).unwrap_or_default();
            eprintln!(
                "\ncompare: no progress for {} s while measuring {what}; giving up",
                limit.as_secs()
            );
            shmex_c::kill_running();
            shmex_benches::remove_run_files(&run_id);
            std::process::exit(3);
        }
    });
}

extern "C" fn on_sigint(_: nix::libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Options {
    quick: bool,
    json: Option<String>,
    rounds: usize,
    batch: Duration,
    only: Vec<String>,
    systems: Vec<System>,
    pin: bool,
}

const USAGE: &str = "usage: compare [--quick] [--json FILE] [--rounds N] [--batch-ms MS] [--only TEXT]... [--system NAME]... [--no-pin]

  --quick        3 short rounds per case, 16 MiB streamed responses (under half a minute on 2 cores)
  --json FILE    also write the results as JSON
  --rounds N     rounds per case (default 10, quick 3)
  --batch-ms MS  length of one batch (default 200, quick 50)
  --only TEXT    run only cases whose label contains TEXT (e.g. pubsub-rtt, 8B, blocking); repeatable
  --system NAME  run only this system (shmex, shmex-typed, shmex-c, iceoryx2, uds, floor, futex, memcpy); repeatable
  --no-pin       do not pin processes to cores";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        json: None,
        rounds: 0,
        batch: Duration::ZERO,
        only: Vec::new(),
        systems: Vec::new(),
        pin: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = Some(value("--json")?),
            "--rounds" => {
                o.rounds = value("--rounds")?
                    .parse()
                    .map_err(|_| "--rounds needs a number")?
            }
            "--batch-ms" => {
                o.batch = Duration::from_millis(
                    value("--batch-ms")?
                        .parse()
                        .map_err(|_| "--batch-ms needs a number")?,
                )
            }
            "--only" => o.only.push(value("--only")?),
            "--system" => {
                let name = value("--system")?;
                o.systems
                    .push(System::parse(&name).ok_or(format!("unknown system {name:?}"))?);
            }
            "--no-pin" => o.pin = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.rounds == 0 {
        o.rounds = if o.quick { 3 } else { 10 };
    }
    if o.batch.is_zero() {
        o.batch = Duration::from_millis(if o.quick { 50 } else { 200 });
    }
    Ok(o)
}

/// One result row.
struct Row {
    spec: Spec,
    system: System,
    median_ns: Option<f64>,
    p99_ns: Option<f64>,
    p999_ns: Option<f64>,
    msgs_per_s: Option<f64>,
    /// Bandwidth cases: median bytes/s over the rounds.
    bytes_per_s: Option<f64>,
    samples: u64,
    per_round: Vec<f64>,
    /// Blocking round trips: median of those that took at least
    /// [`SLEPT_NS`] (a sleeping receiver was woken).
    slept_median_ns: Option<f64>,
    note: Option<String>,
    error: Option<String>,
}

/// What `shmex-c`'s rows are made of (see [`shmex_c`]).
const SHMEX_C_LEGEND: &str = "shmex-c: the C↔C ping-pong of the C bindings (bindings/examples/pingpong.c, cc -O2, libshmex.a), one run of it per batch, its two processes on the driver's and the peer's core; it times each round trip itself (clock_gettime from before the send to after the answer's release; its echo releases before answering, as the Rust rows do); median/p99/p99.9: medians over the rounds of each run's own figures. ÷ shmex: shmex-c ÷ shmex median (below 1 = C faster).";

/// What `shmex-typed`'s rows are made of (see [`shmex_benches::systems::shmex`]).
const SHMEX_TYPED_LEGEND: &str = "shmex-typed: the shmex pub-sub round trips on typed exchanges of u64 (TypedPublisher<u64>: loan_slice_uninit(size/8) written in place, send_slice_loan; receive_slice read in place): the same chunks seen as [u64]; ÷ shmex: its median ÷ shmex's (1 = typing costs nothing).";

/// A blocking round trip at least this long included a wake-up (~25 µs
/// here); shorter ones were caught by spinning.
const SLEPT_NS: u64 = 10_000;

impl Row {
    fn failed(spec: Spec, system: System, e: String) -> Row {
        Row {
            spec,
            system,
            median_ns: None,
            p99_ns: None,
            p999_ns: None,
            msgs_per_s: None,
            bytes_per_s: None,
            samples: 0,
            per_round: Vec::new(),
            slept_median_ns: None,
            note: None,
            error: Some(e),
        }
    }

    /// A system that could not run at all here (e.g. no C compiler): "-"
    /// with a note saying why.
    fn unavailable(spec: Spec, system: System, why: &str) -> Row {
        Row {
            error: None,
            note: Some(format!("not measured: {why}")),
            ..Row::failed(spec, system, String::new())
        }
    }

    /// The number ratios compare: median latency (blocking: over the round
    /// trips that slept, see [`SLEPT_NS`]), bytes/s (bandwidth) or msgs/s.
    fn headline(&self) -> Option<f64> {
        if self.spec.case.is_latency() {
            self.slept_median_ns.filter(|&v| v > 0.0).or(self.median_ns)
        } else if self.spec.case.is_bandwidth() {
            self.bytes_per_s
        } else {
            self.msgs_per_s
        }
    }

    /// The median cell: blocking rows where some round trips did not sleep
    /// also show the median of those that did.
    fn median_cell(&self) -> String {
        match (self.median_ns, self.slept_median_ns) {
            (Some(m), Some(s)) if s > 0.0 && (s - m).abs() / m > 0.05 => {
                format!("{} ({} slept)", ns(Some(m)), ns(Some(s)))
            }
            (m, _) => ns(m),
        }
    }

    fn json(&self) -> Json {
        let (workers, prefetch) = match self.spec.case {
            Case::Tasks { workers, prefetch } => (
                Json::Num(f64::from(workers)),
                Json::Num(f64::from(prefetch)),
            ),
            _ => (Json::Null, Json::Null),
        };
        let (chunk, window) = match self.spec.case {
            Case::StreamResponse => (
                Json::Num(STREAM_CHUNK as f64),
                Json::Num(f64::from(STREAM_WINDOW)),
            ),
            _ => (Json::Null, Json::Null),
        };
        Json::obj([
            ("case", Json::str(self.spec.case.as_str())),
            ("workers", workers),
            ("prefetch", prefetch),
            ("chunk_bytes", chunk),
            ("window", window),
            ("size", Json::Num(self.spec.size as f64)),
            ("mode", Json::str(self.spec.mode.as_str())),
            ("touched", Json::Bool(self.spec.touched)),
            ("system", Json::str(self.system.as_str())),
            (
                "timed_by",
                Json::str(if self.system.times_itself() {
                    "pingpong.c (per-round quantiles)"
                } else {
                    "compare"
                }),
            ),
            ("median_ns", Json::opt(self.median_ns)),
            ("p99_ns", Json::opt(self.p99_ns)),
            ("p999_ns", Json::opt(self.p999_ns)),
            ("msgs_per_s", Json::opt(self.msgs_per_s.map(f64::round))),
            ("bytes_per_s", Json::opt(self.bytes_per_s.map(f64::round))),
            ("samples", Json::Num(self.samples as f64)),
            (
                "per_round",
                Json::Arr(
                    self.per_round
                        .iter()
                        .map(|v| Json::Num(v.round()))
                        .collect(),
                ),
            ),
            ("slept_median_ns", Json::opt(self.slept_median_ns)),
            (
                "note",
                self.note
                    .as_ref()
                    .map_or(Json::Null, |e| Json::str(e.clone())),
            ),
            (
                "error",
                self.error
                    .as_ref()
                    .map_or(Json::Null, |e| Json::str(e.clone())),
            ),
        ])
    }
}

/// The system a case's shmex result is divided by in the "floor" column.
fn floor_of(spec: &Spec) -> System {
    match spec.mode {
        _ if spec.case.is_bandwidth() => System::Memcpy,
        Mode::Spin => System::Floor,
        Mode::Blocking => System::Futex,
    }
}

struct Measuring {
    cell: Cell,
    n: u64,
    hist: Histogram,
    round: Histogram,
    /// Per round: median round trip (latency), msgs/s (throughput) or
    /// bytes/s (bandwidth).
    per_round: Vec<f64>,
    /// Per round, from a system that times itself: its own figures.
    reported: Vec<Quantiles>,
}

/// Median of `v` (upper median; 0 when empty).
fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Measures every applicable system of `spec`, interleaved.
fn measure_spec(run: &Run, spec: Spec, opts: &Options, clock: &Clock, pb: &Progress) -> Vec<Row> {
    let systems: Vec<System> = System::ALL
        .into_iter()
        .filter(|s| s.applies(&spec) && (opts.systems.is_empty() || opts.systems.contains(s)))
        .collect();
    let mut rows = Vec::new();
    let mut live: Vec<(System, Measuring)> = Vec::new();
    for &system in &systems {
        if system == System::ShmexC {
            if let Err(why) = shmex_c::program() {
                pb.inc(opts.rounds as u64 + 1);
                rows.push(Row::unavailable(spec, system, why));
                continue;
            }
        }
        pb.set_message(format!(
            "{} {} {}: setting up",
            spec.label(),
            spec.mode.as_str(),
            system.as_str()
        ));
        let setup = Cell::new(run, spec, system).and_then(|mut cell| {
            let n = cell.calibrate(opts.batch, clock)?;
            Ok(Measuring {
                cell,
                n,
                hist: Histogram::new(),
                round: Histogram::new(),
                per_round: Vec::new(),
                reported: Vec::new(),
            })
        });
        pb.inc(1);
        match setup {
            Ok(m) => live.push((system, m)),
            Err(e) => {
                pb.inc(opts.rounds as u64);
                rows.push(Row::failed(spec, system, e.to_string()));
            }
        }
    }
    let mut failed: Vec<(System, String)> = Vec::new();
    for round in 0..opts.rounds {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        let k = live.len().max(1);
        for i in 0..live.len() {
            let (system, m) = &mut live[(i + round) % k];
            if failed.iter().any(|(s, _)| s == system) {
                pb.inc(1);
                continue;
            }
            pb.set_message(format!(
                "{} {} {}: round {}/{}",
                spec.label(),
                spec.mode.as_str(),
                system.as_str(),
                round + 1,
                opts.rounds
            ));
            m.round.clear();
            match m.cell.batch(m.n, clock, &mut m.round) {
                Ok(b) => {
                    if let Some(q) = m.cell.quantiles() {
                        m.per_round.push(q.median_ns);
                        m.reported.push(q);
                    } else if spec.case.is_latency() {
                        m.per_round.push(m.round.quantile(0.5) as f64);
                        m.hist.merge(&m.round);
                    } else if spec.case.is_bandwidth() {
                        m.per_round
                            .push(b.rate(spec.case) * spec.msg_bytes() as f64);
                    } else {
                        m.per_round.push(b.msgs_per_s());
                    }
                }
                Err(e) => failed.push((*system, e.to_string())),
            }
            pb.inc(1);
        }
    }
    for (system, m) in live {
        note_pinning(run, &m.cell);
        if let Some((_, e)) = failed.iter().find(|(s, _)| *s == system) {
            rows.push(Row::failed(spec, system, e.clone()));
            continue;
        }
        let reported = !m.reported.is_empty();
        let latency = spec.case.is_latency() && (m.hist.count() > 0 || reported);
        // Figures of a system that timed itself: medians over the rounds.
        let own = |f: fn(&Quantiles) -> f64| median_of(m.reported.iter().map(f).collect());
        let mut rates = if latency {
            Vec::new()
        } else {
            m.per_round.clone()
        };
        rates.sort_by(f64::total_cmp);
        // Blocking round trips that took under 10 µs cannot have included a
        // wake-up of a sleeping process (~25 µs here): the receiver caught
        // the reply before it slept.
        let mut note = m.cell.notes();
        let mut slept_median_ns = None;
        if latency && spec.mode == Mode::Blocking && !reported {
            let fast = m.hist.fraction_below(SLEPT_NS);
            slept_median_ns = Some(m.hist.quantile_from(SLEPT_NS, 0.5) as f64);
            if fast > 0.01 {
                let msg = format!(
                    "{:.0} % of round trips took < 10 µs (the receiver caught the reply before sleeping); median of the others {}",
                    fast * 100.0,
                    ns(slept_median_ns)
                );
                note = Some(match note {
                    Some(n) => format!("{n}; {msg}"),
                    None => msg,
                });
            }
        }
        let median_rate = (!rates.is_empty()).then(|| rates[rates.len() / 2]);
        let bandwidth = spec.case.is_bandwidth();
        let (median_ns, p99_ns, p999_ns) = if reported {
            (
                Some(own(|q| q.median_ns)),
                Some(own(|q| q.p99_ns)),
                Some(own(|q| q.p999_ns)),
            )
        } else {
            (
                latency.then(|| m.hist.quantile(0.5) as f64),
                latency.then(|| m.hist.quantile(0.99) as f64),
                latency.then(|| m.hist.quantile(0.999) as f64),
            )
        };
        let samples = if reported {
            m.reported.iter().map(|q| q.samples).sum()
        } else if latency {
            m.hist.count()
        } else {
            rates.len() as u64
        };
        rows.push(Row {
            spec,
            system,
            median_ns,
            p99_ns,
            p999_ns,
            msgs_per_s: if bandwidth {
                median_rate.map(|b| b / spec.msg_bytes() as f64)
            } else {
                median_rate
            },
            bytes_per_s: median_rate.filter(|_| bandwidth),
            samples,
            note,
            slept_median_ns,
            per_round: m.per_round,
            error: None,
        });
    }
    rows.sort_by_key(|r| r.system);
    rows
}

fn ns(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        Some(v) if v >= 1e4 => format!("{:.1} µs", v / 1e3),
        Some(v) if v >= 1e3 => format!("{:.2} µs", v / 1e3),
        Some(v) => format!("{v:.0} ns"),
    }
}

fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        Some(v) => format!("{v:.0} /s"),
    }
}

/// Bytes/s as GB/s (10^9 bytes).
fn gbps(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) => format!("{:.2} GB/s", v / 1e9),
    }
}

fn find<'a>(rows: &'a [Row], spec: &Spec, system: System) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.spec == *spec && r.system == system && r.error.is_none())
}

/// shmex ÷ `other` on the headline number.
fn ratio(rows: &[Row], spec: &Spec, other: System) -> Option<f64> {
    ratio_between(rows, spec, System::Shmex, other)
}

/// `a` ÷ `b` on the headline number.
fn ratio_between(rows: &[Row], spec: &Spec, a: System, b: System) -> Option<f64> {
    let a = find(rows, spec, a)?.headline()?;
    let b = find(rows, spec, b)?.headline()?;
    (b > 0.0).then(|| a / b)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}×"))
}

/// The table, as Markdown (readable in a terminal too).
fn table(rows: &[Row], specs: &[Spec]) -> String {
    let mut out = String::new();
    out.push_str(
        "| case | mode | system | median | p99 | p99.9 | msgs/s | GB/s | shmex/iceoryx2 | shmex/floor | ÷ shmex |\n",
    );
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for spec in specs {
        for r in rows.iter().filter(|r| r.spec == *spec) {
            let (x_iox, x_floor) = if r.system == System::Shmex {
                (
                    fmt_ratio(ratio(rows, spec, System::Iceoryx2)),
                    fmt_ratio(ratio(rows, spec, floor_of(spec))),
                )
            } else {
                (String::new(), String::new())
            };
            let vs_shmex = if matches!(r.system, System::ShmexC | System::ShmexTyped) {
                fmt_ratio(ratio_between(rows, spec, r.system, System::Shmex))
            } else {
                String::new()
            };
            if let Some(e) = &r.error {
                out.push_str(&format!(
                    "| {} | {} | {} | error: {} | | | | | | | |\n",
                    spec.label(),
                    spec.mode.as_str(),
                    r.system.as_str(),
                    e.replace('|', "/")
                ));
                continue;
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                spec.label(),
                spec.mode.as_str(),
                r.system.as_str(),
                r.median_cell(),
                ns(r.p99_ns),
                ns(r.p999_ns),
                rate(r.msgs_per_s),
                gbps(r.bytes_per_s),
                x_iox,
                x_floor,
                vs_shmex
            ));
        }
    }
    out
}

struct Target {
    name: &'static str,
    value: Option<f64>,
    limit: f64,
    /// true: value must be ≤ limit; false: ≥.
    at_most: bool,
    /// What `value` and `limit` are.
    unit: Unit,
}

/// The unit of a [`Target`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A ratio (shmex ÷ something).
    Ratio,
    /// Messages (tasks) per second.
    PerSecond,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Ratio => "ratio",
            Unit::PerSecond => "msgs_per_s",
        }
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Unit::Ratio => format!("{v:.2}×"),
            Unit::PerSecond => rate(Some(v)),
        }
    }
}

/// Blocking: shmex's median over the round trips that really slept (see
/// [`SLEPT_NS`]) ÷ the futex ping-pong's median (which always sleeps).
fn slept_ratio(rows: &[Row], spec: &Spec) -> Option<f64> {
    let a = find(rows, spec, System::Shmex)?.slept_median_ns?;
    let b = find(rows, spec, System::Futex)?.median_ns?;
    (a > 0.0 && b > 0.0).then(|| a / b)
}

fn targets(rows: &[Row]) -> Vec<Target> {
    let spec = |case, size, mode, touched| Spec::new(case, size, mode, touched);
    let pubsub8 = spec(Case::PubsubRtt, 8, Mode::Spin, false);
    let rpc8 = spec(Case::ReqrespRtt, 8, Mode::Spin, false);
    let mib = spec(Case::PubsubRtt, 1 << 20, Mode::Spin, false);
    let stream8 = spec(Case::Stream, 8, Mode::Spin, false);
    let blocking8 = spec(Case::PubsubRtt, 8, Mode::Blocking, false);
    let blocking_rpc8 = spec(Case::ReqrespRtt, 8, Mode::Blocking, false);
    let tasks_1w_64 = spec(
        Case::Tasks {
            workers: 1,
            prefetch: 64,
        },
        8,
        Mode::Spin,
        false,
    );
    // Quick runs measure a smaller response: whichever size was run.
    let streamed = rows
        .iter()
        .find(|r| r.spec.case == Case::StreamResponse)
        .map(|r| r.spec)
        .unwrap_or(spec(
            Case::StreamResponse,
            shmex_benches::STREAM_RESPONSE_BYTES,
            Mode::Spin,
            true,
        ));
    let mib_vs_8 = (|| {
        let a = find(rows, &mib, System::Shmex)?.median_ns?;
        let b = find(rows, &pubsub8, System::Shmex)?.median_ns?;
        Some(a / b)
    })();
    vec![
        Target {
            name: "pub-sub 8B RTT, shmex/iceoryx2",
            value: ratio(rows, &pubsub8, System::Iceoryx2),
            limit: 0.3,
            at_most: true,
            unit: Unit::Ratio,
        },
        Target {
            name: "pub-sub 8B RTT, shmex/floor",
            value: ratio(rows, &pubsub8, System::Floor),
            limit: 2.5,
            at_most: true,
            unit: Unit::Ratio,
        },
        Target {
            name: "req-resp 8B RTT, shmex/iceoryx2",
            value: ratio(rows, &rpc8, System::Iceoryx2),
            limit: 0.3,
            at_most: true,
            unit: Unit::Ratio,
        },
        Target {
            name: "pub-sub 1MiB untouched RTT / 8B RTT",
            value: mib_vs_8,
            limit: 1.05,
            at_most: true,
            unit: Unit::Ratio,
        },
        Target {
            name: "pub-sub 8B RTT, C/Rust (shmex-c/shmex)",
            value: ratio_between(rows, &pubsub8, System::ShmexC, System::Shmex),
            limit: 1.1,
            at_most: true,
            unit: Unit::Ratio,
        },
        Target {
            name: "req-resp 8B RTT, C/Rust (shmex-c/shmex)",
            value: ratio_between(rows, &rpc8, System::ShmexC, System::Shmex),
            limit: 1.1,
            at_most: true,
            unit: Unit::Ratio,
        },
        Target {
            name: "stream 8B msgs/s, shmex/iceoryx2",
            value: ratio(rows, &stream8, System::Iceoryx2),
            limit: 10.0,
            at_most: false,
            unit: Unit::Ratio,
        },
        Target {
            name: "blocking pub-sub 8B RTT (slept), shmex/futex",
            value: slept_ratio(rows, &blocking8),
            limit: 1.1,
            at_most: true,
            unit: Unit::Ratio,
        },
        Target {
            name: "blocking req-resp 8B RTT (slept), shmex/futex",
            value: slept_ratio(rows, &blocking_rpc8),
            limit: 1.1,
            at_most: true,
            unit: Unit::Ratio,
        },
        Target {
            name: "stream-response GB/s, shmex/memcpy",
            value: ratio(rows, &streamed, System::Memcpy),
            limit: 0.5,
            at_most: false,
            unit: Unit::Ratio,
        },
        Target {
            name: "tasks acked/s, 1 worker, prefetch 64",
            value: find(rows, &tasks_1w_64, System::Shmex).and_then(|r| r.msgs_per_s),
            limit: 5e6,
            at_most: false,
            unit: Unit::PerSecond,
        },
    ]
}

impl Target {
    fn met(&self) -> Option<bool> {
        self.value.map(|v| {
            if self.at_most {
                v <= self.limit
            } else {
                v >= self.limit
            }
        })
    }

    fn line(&self) -> String {
        let op = if self.at_most { "≤" } else { "≥" };
        let limit = match self.unit {
            Unit::Ratio => format!("{}×", self.limit),
            Unit::PerSecond => rate(Some(self.limit)),
        };
        match (self.value, self.met()) {
            (Some(v), Some(ok)) => format!(
                "{:<42} {:>10}  (target {op} {limit})  {}",
                self.name,
                self.unit.fmt(v),
                if ok { "met" } else { "MISSED" }
            ),
            _ => format!(
                "{:<42} {:>10}  (target {op} {limit})  not measured",
                self.name, "-"
            ),
        }
    }

    fn json(&self) -> Json {
        Json::obj([
            ("name", Json::str(self.name)),
            ("unit", Json::str(self.unit.as_str())),
            ("value", Json::opt(self.value)),
            ("limit", Json::Num(self.limit)),
            ("at_most", Json::Bool(self.at_most)),
            ("met", self.met().map_or(Json::Null, Json::Bool)),
        ])
    }
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("compare: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::Handler(on_sigint),
        );
    }
    let started = Instant::now();
    let specs: Vec<Spec> = all_specs()
        .into_iter()
        .map(|s| if opts.quick { s.quick() } else { s })
        .filter(|s| {
            let label = format!("{} {}", s.label(), s.mode.as_str());
            opts.only.is_empty() || opts.only.iter().all(|o| label.contains(o.as_str()))
        })
        .collect();
    let chosen = |x: &System| opts.systems.is_empty() || opts.systems.contains(x);
    // The C ping-pong is built (or found built) before anything is measured
    // and before this process is pinned: cargo and cc get every core.
    let shmex_c = (chosen(&System::ShmexC) && specs.iter().any(|s| System::ShmexC.applies(s)))
        .then(|| {
            eprintln!("compare: shmex-c: building the C ping-pong if needed (cargo build -p shmex-c, cc -O2 pingpong.c)");
            shmex_c::program()
        });
    let machine = Machine::read();
    let commit = shmex_commit();
    let load_start = load_average();
    let busy_start = cpu_busy_percent(Duration::from_secs(1));
    let peer = match shmex_benches::sibling::bench_peer() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("compare: cannot build the peer binary: {e}");
            std::process::exit(2);
        }
    };
    let run = Run::new(peer, opts.pin);
    if !run.peer_exe.exists() {
        eprintln!(
            "compare: peer binary {} not found (build it: cargo build --release -p shmex-benches)",
            run.peer_exe.display()
        );
        std::process::exit(2);
    }
    let clock = Clock::new();
    let pin = &run.pinning;
    println!(
        "machine: {} · {} cores · kernel {} · load {:.2} · shmex {}",
        machine.cpu_model, machine.cores, machine.kernel, load_start, commit
    );
    println!(
        "pinning: {} · clock: {} · {} rounds of {} ms per case · run {}",
        match pin.driver {
            Some(d) if pin.driver_pinned => format!(
                "driver on core {d}, peers on core(s) {}",
                pin.peers
                    .iter()
                    .flatten()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("+")
            ),
            Some(_) => "requested but refused by the kernel".to_string(),
            None if opts.pin => "off (fewer than 2 cores)".to_string(),
            None => "off (--no-pin)".to_string(),
        },
        if clock.uses_tsc() { "tsc" } else { "Instant" },
        opts.rounds,
        opts.batch.as_millis(),
        run.id
    );
    match shmex_c {
        Some(Ok(p)) => println!("shmex-c: {} ({})", p.exe.display(), p.how),
        Some(Err(why)) => println!("shmex-c: not measured: {why}"),
        None => {}
    }
    match busy_start {
        Some(b) if b > 10.0 => println!(
            "note: other processes kept the CPUs {b:.0} % busy in the second before the start: numbers will be noisy"
        ),
        Some(b) => println!("cpu busy in the second before the start: {b:.0} %"),
        None => {}
    }

    let steps: u64 = specs
        .iter()
        .map(|s| {
            System::ALL
                .iter()
                .filter(|x| x.applies(s) && chosen(x))
                .count() as u64
                * (opts.rounds as u64 + 1)
        })
        .sum();
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let pb = Progress { bar, started };
    pb.tick();
    start_watchdog(
        run.id.clone(),
        started,
        (opts.batch * 50).max(Duration::from_secs(60)),
    );
    let mut rows = Vec::new();
    for spec in &specs {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        rows.extend(measure_spec(&run, *spec, &opts, &clock, &pb));
    }
    pb.bar.finish_and_clear();
    let load_end = load_average();
    let interrupted = STOP.load(Ordering::Relaxed);

    println!();
    print!("{}", table(&rows, &specs));
    println!();
    println!("median/p99/p99.9: round-trip time, measured on one side per round trip; msgs/s: median of the rounds.");
    println!("ratios: shmex ÷ other (latency: below 1 = shmex faster; msgs/s, GB/s: above 1 = shmex faster); floor = raw spin ping-pong (spin) or futex ping-pong (blocking), memcpy (stream-response).");
    println!("blocking: a round trip under 10 µs cannot include waking a sleeping process; \"(X slept)\" is the median of the others, and blocking ratios use it.");
    if specs.iter().any(|s| matches!(s.case, Case::Tasks { .. })) {
        println!("tasks: submitted here, taken and acked by 1 or 2 worker processes (each takes up to its prefetch limit, then acks); msgs/s: acked tasks; shmex only (no other system here distributes tasks with acks).");
    }
    if rows
        .iter()
        .any(|r| r.system == System::ShmexC && r.median_ns.is_some())
    {
        println!("{SHMEX_C_LEGEND}");
    }
    if rows
        .iter()
        .any(|r| r.system == System::ShmexTyped && r.median_ns.is_some())
    {
        println!("{SHMEX_TYPED_LEGEND}");
    }
    if let Some(s) = specs.iter().find(|s| s.case.is_bandwidth()) {
        println!(
            "stream-response: per request a {} response in {} chunks (window {STREAM_WINDOW}), every byte written by the server and read (checked) by the client in place; GB/s (10^9 B/s): response bytes over the time from the first request to the last chunk, median of the rounds; msgs/s: chunks; memcpy: the same bytes copied in {} blocks between two {} buffers ({STREAM_WINDOW} blocks each, gone round) in one process (the floor column); uds: not measured (no chunks written in place).",
            size_label(s.size),
            size_label(STREAM_CHUNK),
            size_label(STREAM_CHUNK),
            size_label(STREAM_WINDOW as usize * STREAM_CHUNK),
        );
    }
    for r in rows.iter().filter(|r| r.note.is_some()) {
        println!(
            "note: {} {} {}: {}",
            r.spec.label(),
            r.spec.mode.as_str(),
            r.system.as_str(),
            r.note.as_deref().unwrap_or_default()
        );
    }
    println!();
    let targets = targets(&rows);
    println!("targets:");
    for t in &targets {
        println!("  {}", t.line());
    }
    let pinning_held = run.pinning_held();
    println!();
    println!(
        "pinning held: {}",
        match (pin.driver.is_some(), pinning_held) {
            (false, _) => "n/a (not pinned)",
            (true, true) => "yes (every batch ran on its planned cores)",
            (true, false) => "NO (some batch ran off its planned core)",
        }
    );
    println!("load average: {load_start:.2} at start, {load_end:.2} at end (the run itself keeps both cores busy)");

    let removed = run.cleanup();
    let left = run.leftovers();
    println!(
        "clean-up: {} leftover object(s) removed, {} remain; took {:.0} s{}",
        removed.len(),
        left.len(),
        started.elapsed().as_secs_f64(),
        if interrupted { " (interrupted)" } else { "" }
    );
    for p in &removed {
        println!("  removed: {}", p.display());
    }
    for p in &left {
        println!("  still there: {}", p.display());
    }

    if let Some(path) = &opts.json {
        let doc = Json::obj([
            (
                "machine",
                Json::obj([
                    ("cpu_model", Json::str(machine.cpu_model.clone())),
                    ("cores", Json::Num(machine.cores as f64)),
                    ("kernel", Json::str(machine.kernel.clone())),
                    ("virtualised", Json::Bool(machine.virtualised)),
                    ("load_start", Json::Num(load_start)),
                    ("cpu_busy_before_start_percent", Json::opt(busy_start)),
                    ("load_end", Json::Num(load_end)),
                    (
                        "pinning",
                        Json::obj([
                            ("requested", Json::Bool(opts.pin)),
                            ("driver_core", Json::opt(pin.driver.map(|c| c as f64))),
                            (
                                "peer_cores",
                                Json::Arr(
                                    pin.peers
                                        .iter()
                                        .map(|c| Json::opt(c.map(|c| c as f64)))
                                        .collect(),
                                ),
                            ),
                            ("held", Json::Bool(pin.driver.is_some() && pinning_held)),
                        ]),
                    ),
                    (
                        "clock",
                        Json::str(if clock.uses_tsc() { "tsc" } else { "instant" }),
                    ),
                ]),
            ),
            (
                "settings",
                Json::obj([
                    ("quick", Json::Bool(opts.quick)),
                    ("shmex_commit", Json::str(commit)),
                    ("rounds", Json::Num(opts.rounds as f64)),
                    ("batch_ms", Json::Num(opts.batch.as_millis() as f64)),
                    ("iceoryx2", Json::str(ICEORYX2_VERSION)),
                    (
                        "shmex_c",
                        match shmex_c {
                            Some(Ok(p)) => Json::str(p.exe.display().to_string()),
                            Some(Err(why)) => Json::str(format!("not measured: {why}")),
                            None => Json::Null,
                        },
                    ),
                    ("interrupted", Json::Bool(interrupted)),
                ]),
            ),
            ("results", Json::Arr(rows.iter().map(Row::json).collect())),
            (
                "targets",
                Json::Arr(targets.iter().map(Target::json).collect()),
            ),
        ]);
        if let Err(e) = std::fs::write(path, doc.pretty()) {
            eprintln!("compare: cannot write {path}: {e}");
            std::process::exit(1);
        }
        println!("wrote {path}");
    }
    if interrupted {
        std::process::exit(130);
    }
}

/// The iceoryx2 release this crate is built against (keep in step with
/// Cargo.toml).
const ICEORYX2_VERSION: &str = "0.10";

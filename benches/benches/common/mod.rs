//! Criterion glue shared by the bench files: one benchmark group per case,
//! one benchmark per system, each timed by the same `Cell::batch` as
//! `compare` uses (criterion's `iter_custom`). The peer processes are
//! started once per benchmark and idle between samples. Bandwidth cases
//! (`stream-response`) report bytes: one iteration is one whole response.

use criterion::{Criterion, Throughput};
use shmex_benches::{
    all_specs, note_pinning, size_label, Cell, Clock, Histogram, Run, Spec, System,
};
use std::path::PathBuf;
use std::time::Duration;

/// Benchmarks every spec `keep` accepts, for every system that applies.
pub fn run(keep: fn(&Spec) -> bool) {
    let run = Run::new(PathBuf::from(env!("CARGO_BIN_EXE_bench-peer")), true);
    let clock = Clock::new();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10)
        .configure_from_args();
    for spec in all_specs().into_iter().filter(keep) {
        let mut name = format!(
            "{}/{}/{}",
            spec.case.name(),
            size_label(spec.size),
            spec.mode.as_str()
        );
        if spec.touched {
            name.push_str("/touched");
        }
        let mut group = c.benchmark_group(name);
        if spec.case.is_bandwidth() {
            // One iteration: one whole response.
            group.throughput(Throughput::Bytes(spec.size as u64));
        } else if !spec.case.is_latency() {
            group.throughput(Throughput::Elements(spec.case.peers() as u64));
        }
        // shmex-c times itself (the C ping-pong): not a criterion benchmark.
        for system in System::ALL
            .into_iter()
            .filter(|s| s.applies(&spec) && !s.times_itself())
        {
            let mut cell: Option<Cell> = None;
            let mut hist = Histogram::new();
            group.bench_function(system.as_str(), |b| {
                let cell = cell.get_or_insert_with(|| {
                    Cell::new(&run, spec, system)
                        .unwrap_or_else(|e| panic!("{spec} {}: {e}", system.as_str()))
                });
                b.iter_custom(|iters| {
                    hist.clear();
                    let batch = cell
                        .batch(iters, &clock, &mut hist)
                        .unwrap_or_else(|e| panic!("{spec} {}: {e}", system.as_str()));
                    if spec.case.is_latency() || spec.case.is_bandwidth() || batch.msgs < 2 {
                        batch.elapsed.max(Duration::from_nanos(1))
                    } else {
                        // Timed from the first message to the last: scale
                        // the msgs - 1 intervals to msgs.
                        (batch.elapsed / (batch.msgs - 1) as u32) * batch.msgs as u32
                    }
                })
            });
            if let Some(cell) = &cell {
                note_pinning(&run, cell);
            }
        }
        group.finish();
    }
    c.final_summary();
    eprintln!(
        "pinning held: {}",
        match (run.pinning.driver, run.pinning_held()) {
            (None, _) => "n/a (not pinned)",
            (Some(_), true) => "yes",
            (Some(_), false) => "NO (some batch ran off its planned core)",
        }
    );
}

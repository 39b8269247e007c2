//! Latency samples and how the demo prints them.

use std::time::{Duration, Instant};

/// Round-trip times collected by a measuring loop.
pub struct Latencies {
    samples: Vec<u64>,
    started: Instant,
}

/// Summary of a [`Latencies`].
pub struct Summary {
    /// Round trips measured.
    pub count: usize,
    /// Median, nanoseconds.
    pub median: u64,
    /// 99th percentile, nanoseconds.
    pub p99: u64,
    /// Fastest, nanoseconds.
    pub min: u64,
}

impl Latencies {
    /// Room for `n` samples; the time budget starts now.
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies {
            samples: Vec::with_capacity(n),
            started: Instant::now(),
        }
    }

    /// Records one round trip.
    pub fn push(&mut self, d: Duration) {
        self.samples
            .push(d.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    /// True once `budget` has passed since creation: a loop stops early
    /// rather than hold up the demo on a loaded machine.
    pub fn over_budget(&self, budget: Duration) -> bool {
        self.started.elapsed() >= budget
    }

    /// Median, 99th percentile and minimum; `None` without samples.
    pub fn summary(mut self) -> Option<Summary> {
        if self.samples.is_empty() {
            return None;
        }
        self.samples.sort_unstable();
        let n = self.samples.len();
        let at = |q: f64| self.samples[((n - 1) as f64 * q).round() as usize];
        Some(Summary {
            count: n,
            median: at(0.5),
            p99: at(0.99),
            min: self.samples[0],
        })
    }
}

/// `850 ns`, `1.84 µs`, `12.3 ms`.
pub fn format_ns(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.2} µs", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

/// `2.50M`, `456k`, `950`: a count per second in short form.
pub fn format_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.0}k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut l = Latencies::with_capacity(101);
        for i in (0..=100).rev() {
            l.push(Duration::from_nanos(i));
        }
        let s = l.summary().unwrap();
        assert_eq!((s.count, s.median, s.p99, s.min), (101, 50, 99, 0));
        assert!(Latencies::with_capacity(0).summary().is_none());
    }

    #[test]
    fn formats() {
        assert_eq!(format_ns(850), "850 ns");
        assert_eq!(format_ns(1840), "1.84 µs");
        assert_eq!(format_ns(12_300_000), "12.30 ms");
        assert_eq!(format_rate(2_500_000.0), "2.50M");
        assert_eq!(format_rate(45_600.0), "46k");
        assert_eq!(format_rate(950.0), "950");
    }
}

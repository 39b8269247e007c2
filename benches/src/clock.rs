//! A cheap clock for timing single round trips.
//!
//! On x86-64 it reads the time-stamp counter (about 8 ns here, against about
//! 20 ns for `Instant::now` through the vDSO), calibrated once against
//! `Instant`; elsewhere it falls back to `Instant`. Each round trip pays one
//! read, and every system pays the same.

use std::time::{Duration, Instant};

/// Converts time-stamp-counter ticks to nanoseconds.
pub struct Clock {
    origin: Instant,
    ns_per_tick: f64,
    use_tsc: bool,
}

impl Clock {
    /// Calibrates over about 20 ms (the counter must be invariant, which the
    /// `constant_tsc`/`nonstop_tsc` CPU flags promise; without them, or off
    /// x86-64, `Instant` is used).
    pub fn new() -> Clock {
        let origin = Instant::now();
        let use_tsc = cfg!(target_arch = "x86_64") && tsc_is_invariant();
        if !use_tsc {
            return Clock {
                origin,
                ns_per_tick: 1.0,
                use_tsc,
            };
        }
        let t0 = Instant::now();
        let c0 = raw_ticks();
        while t0.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let c1 = raw_ticks();
        let ns = t0.elapsed().as_nanos() as f64;
        let ticks = c1.wrapping_sub(c0).max(1) as f64;
        Clock {
            origin,
            ns_per_tick: ns / ticks,
            use_tsc,
        }
    }

    /// Now, in ticks.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        if self.use_tsc {
            raw_ticks()
        } else {
            self.origin.elapsed().as_nanos() as u64
        }
    }

    /// Ticks to nanoseconds.
    #[inline(always)]
    pub fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick) as u64
    }

    /// Ticks to a duration.
    pub fn duration(&self, ticks: u64) -> Duration {
        Duration::from_nanos(self.ns(ticks))
    }

    /// Whether the time-stamp counter is used.
    pub fn uses_tsc(&self) -> bool {
        self.use_tsc
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn raw_ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions; it only reads the counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

fn tsc_is_invariant() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.contains(" constant_tsc") && l.contains(" nonstop_tsc"))
    })
}

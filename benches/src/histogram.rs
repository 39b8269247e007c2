//! A log-linear histogram of nanosecond values: exact below 256 ns, then 128
//! buckets per power of two (under 0.8 % error), fixed size, mergeable.

const SUB_BITS: u32 = 7;
const LINEAR: u64 = 1 << (SUB_BITS + 1); // 256: exact below
const BUCKETS: usize = LINEAR as usize + (64 - (SUB_BITS as usize + 1)) * (1 << SUB_BITS);

/// Counts of recorded values.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let top = v >> (e - SUB_BITS); // in [2^SUB_BITS, 2^(SUB_BITS+1))
    LINEAR as usize
        + (e - SUB_BITS - 1) as usize * (1 << SUB_BITS)
        + (top as usize - (1 << SUB_BITS))
}

/// Middle of bucket `i`.
fn value(i: usize) -> u64 {
    if (i as u64) < LINEAR {
        return i as u64;
    }
    let j = i - LINEAR as usize;
    let e = (j >> SUB_BITS) as u32 + SUB_BITS + 1;
    let top = (j & ((1 << SUB_BITS) - 1)) as u64 + (1 << SUB_BITS);
    let width = 1u64 << (e - SUB_BITS);
    (top << (e - SUB_BITS)) + width / 2
}

impl Histogram {
    /// Empty.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            max: 0,
        }
    }

    /// Records one value (nanoseconds).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.sum += u128::from(ns);
        self.max = self.max.max(ns);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
        self.sum = 0;
        self.max = 0;
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Mean, in ns.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Fraction of values below `ns` (bucket resolution).
    pub fn fraction_below(&self, ns: u64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let below: u64 = self.counts[..index(ns)].iter().sum();
        below as f64 / self.total as f64
    }

    /// The value at quantile `q` among the values of at least `min` ns
    /// (0 when there are none).
    pub fn quantile_from(&self, min: u64, q: f64) -> u64 {
        let start = index(min);
        let total: u64 = self.counts[start..].iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate().skip(start) {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    /// The value at quantile `q` (0..=1): the smallest bucket whose cumulative
    /// count reaches `ceil(q * count)`.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip() {
        for v in [0u64, 1, 255, 256, 257, 1000, 123_456, 1 << 40, u64::MAX / 2] {
            let m = value(index(v));
            let err = (m as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.01, "{v} -> {m}");
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let close = |q: f64, want: f64| {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        };
        close(0.5, 500.0);
        close(0.99, 990.0);
        assert_eq!(h.quantile(1.0), 1000);
        assert!((h.fraction_below(501) - 0.5).abs() < 0.01);
        let upper = h.quantile_from(501, 0.5) as f64;
        assert!((upper - 750.0).abs() / 750.0 < 0.01, "{upper}");
    }
}

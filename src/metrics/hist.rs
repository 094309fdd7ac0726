//! HDR histograms that many threads record into and one reads.
//!
//! Acceptor threads record hand-off times and connection durations on the
//! data plane's hot path, so a [`Hist`] is split in shards, one mutex each:
//! a thread always takes the same shard (its own when there are as many
//! shards as acceptors), so the lock is uncontended and costs a few ns. A
//! reader merges the shards into one `hdrhistogram::Histogram`, then
//! [`Summary`] turns that into what the wire carries: count, exact sum,
//! percentiles, and cumulative counts at fixed bucket bounds (Prometheus's
//! `le`). Counts at a bound are HDR's (2 significant digits: within 1 %).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::protocol::metrics::Summary;

/// Significant decimal digits kept (1 % resolution).
const SIGFIG: u8 = 2;

/// Bucket bounds, in seconds, of hand-off times (accept to the worker's
/// channel): µs to tens of ms.
pub const HANDOFF_BOUNDS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2,
];
/// Bucket bounds, in seconds, of connection and request durations.
pub const DURATION_BOUNDS: &[f64] = &[
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];

/// A histogram of values in one unit (`unit_s` seconds each, e.g. 1e-9
/// for ns), recorded from any thread.
pub struct Hist {
    shards: Box<[Mutex<Shard>]>,
    unit_s: f64,
    high: u64,
}

struct Shard {
    h: Histogram<u64>,
    /// Exact sum of what was recorded (HDR keeps none).
    sum: u128,
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed));
    MINE.with(|m| *m)
}

impl Hist {
    /// Values from 1 to `high` units (larger ones count as `high`), in
    /// `shards` shards (at least one).
    pub fn new(shards: usize, unit_s: f64, high: u64) -> Hist {
        let shards = (0..shards.max(1))
            .map(|_| {
                Mutex::new(Shard {
                    h: Histogram::new_with_bounds(1, high.max(2), SIGFIG)
                        .expect("valid histogram bounds"),
                    sum: 0,
                })
            })
            .collect();
        Hist {
            shards,
            unit_s,
            high: high.max(2),
        }
    }

    /// Records `n` values of `v` units.
    pub fn record_n(&self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        let v = v.clamp(1, self.high);
        let shard = &self.shards[shard_index() % self.shards.len()];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        s.h.saturating_record_n(v, n);
        s.sum += u128::from(v) * u128::from(n);
    }

    /// Records one value.
    pub fn record(&self, v: u64) {
        self.record_n(v, 1);
    }

    /// Everything recorded so far, merged, and its exact sum in units.
    pub fn merged(&self) -> (Histogram<u64>, u128) {
        let mut out = Histogram::new_with_bounds(1, self.high, SIGFIG).expect("valid bounds");
        let mut sum = 0;
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            let _ = out.add(&s.h);
            sum += s.sum;
        }
        (out, sum)
    }

    /// What the wire carries, at the bucket bounds `bounds` (seconds).
    pub fn summary(&self, bounds: &[f64]) -> Summary {
        let (h, sum) = self.merged();
        summarize(&h, sum, self.unit_s, bounds)
    }

    /// Adds everything `other` recorded (same unit) into this one.
    pub fn absorb(&self, other: &Hist) {
        let (h, sum) = other.merged();
        let shard = &self.shards[shard_index() % self.shards.len()];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        let _ = s.h.add(&h);
        s.sum += sum;
    }
}

/// [`Summary`] of `h` (values in units of `unit_s` seconds, exact sum
/// `sum`) with cumulative counts at `bounds` (seconds).
pub fn summarize(h: &Histogram<u64>, sum: u128, unit_s: f64, bounds: &[f64]) -> Summary {
    let count = h.len();
    let q = |p: f64| {
        if count == 0 {
            0.0
        } else {
            h.highest_equivalent(h.value_at_quantile(p)) as f64 * unit_s
        }
    };
    // One pass over the recorded values, bounds ascending: each value
    // whose HDR bucket starts at or below a bound counts there (values
    // within 1 % above it may: HDR's resolution).
    let mut buckets: Vec<(f64, u64)> = bounds.iter().map(|&le| (le, 0)).collect();
    let mut below = 0u64;
    let mut next = 0usize;
    for v in h.iter_recorded() {
        let at = h.lowest_equivalent(v.value_iterated_to()) as f64;
        while next < bounds.len() && at > (bounds[next] / unit_s).round() {
            buckets[next].1 = below;
            next += 1;
        }
        below += v.count_at_value();
    }
    for b in buckets.iter_mut().skip(next) {
        b.1 = below;
    }
    // A bound under one unit holds nothing.
    for b in buckets.iter_mut() {
        if (b.0 / unit_s).round() < 1.0 {
            b.1 = 0;
        }
    }
    Summary {
        count,
        sum_seconds: sum as f64 * unit_s,
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        p999: q(0.999),
        max: if count == 0 {
            0.0
        } else {
            h.highest_equivalent(h.max()) as f64 * unit_s
        },
        buckets,
    }
}

/// The compact form workers report request latencies in: microseconds
/// rounded to 6 significant bits (within 3 %), the middle of their range
/// (the Node preload computes the same in JavaScript; see
/// bench-apps/node/herd-listen.js).
pub fn quantize_us(us: u64) -> u64 {
    if us < 64 {
        return us;
    }
    let e = 63 - us.leading_zeros() - 5;
    ((us >> e) << e) + ((1u64 << e) >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_percentiles_and_buckets() {
        let h = Hist::new(2, 1e-6, 60_000_000);
        for us in 1..=1000u64 {
            h.record(us); // 1 µs .. 1 ms, uniform
        }
        let s = h.summary(&[1e-4, 5e-4, 1e-3, 1.0]);
        assert_eq!(s.count, 1000);
        assert!((s.sum_seconds - 500_500e-6).abs() < 1e-9, "exact sum");
        assert!((s.p50 - 500e-6).abs() < 10e-6, "p50 {}", s.p50);
        assert!((s.p99 - 990e-6).abs() < 15e-6, "p99 {}", s.p99);
        let counts: Vec<u64> = s.buckets.iter().map(|b| b.1).collect();
        assert!((99..=101).contains(&counts[0]), "{counts:?}");
        assert!((495..=505).contains(&counts[1]), "{counts:?}");
        assert_eq!(counts[2], 1000);
        assert_eq!(counts[3], 1000);
    }

    #[test]
    fn empty_summary_is_all_zero() {
        let s = Hist::new(1, 1e-9, 10_000_000_000).summary(HANDOFF_BOUNDS);
        assert_eq!(s.count, 0);
        assert_eq!(s.p99, 0.0);
        assert!(s.buckets.iter().all(|b| b.1 == 0));
    }

    #[test]
    fn shards_from_many_threads_merge() {
        let h = std::sync::Arc::new(Hist::new(4, 1e-6, 1_000_000));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        h.record_n(100, 2);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.summary(DURATION_BOUNDS);
        assert_eq!(s.count, 6_000);
        assert_eq!(s.buckets[0].1, 6_000, "all at 100 µs <= 1e-4 s");
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let h = Hist::new(1, 1e-6, 1000);
        h.record(0);
        h.record(5000);
        let s = h.summary(&[1e-3]);
        assert_eq!(s.count, 2);
    }

    #[test]
    fn quantize_keeps_six_bits() {
        assert_eq!(quantize_us(0), 0);
        assert_eq!(quantize_us(63), 63);
        assert_eq!(quantize_us(64), 65, "64..127 in steps of 2");
        // 1000 = 0b1111101000: top 6 bits 111110 << 4 = 992, + 8
        assert_eq!(quantize_us(1000), 1000);
        assert_eq!(quantize_us(1007), 1000);
        assert_eq!(quantize_us(1010), 1016);
        for us in [100u64, 12_345, 9_999_999] {
            let q = quantize_us(us) as f64;
            assert!(
                (q - us as f64).abs() / us as f64 <= 1.0 / 32.0,
                "{us} -> {q}"
            );
        }
    }
}

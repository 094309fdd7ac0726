//! How evenly load was spread over a cluster's workers.
//!
//! herd's whole point in cluster mode is that N workers share one port and
//! the kernel (SO_REUSEPORT or a shared accept queue) spreads connections
//! over them. A throughput number alone cannot tell a balanced cluster from
//! one where a single worker does all the work, so benchmarks and tests
//! report these two indexes over per-worker request counts:
//!
//! - [`jain`]: Jain's fairness index, 1.0 for a perfectly even spread and
//!   `1/n` when one of `n` workers gets everything. Being scale-free it
//!   supports ratio-based assertions such as "J ≥ 0.95".
//! - [`max_over_mean`]: how much busier the busiest worker is than the
//!   average one; 1.0 is even, `n` is "one worker took it all". It is the
//!   number that matters for tail latency and per-core saturation.
//!
//! Inputs are non-negative counts (requests or connections per worker).

/// Jain's fairness index `J = (Σx)² / (n · Σx²)` of the per-worker counts
/// `xs`, in `[1/n, 1]`.
///
/// An empty slice or one whose values are all zero returns 1.0: no load was
/// handed out, so none was handed out unevenly, and returning 1.0 instead of
/// the `0/0 = NaN` the formula gives keeps "J ≥ threshold" checks and JSON
/// reports (where NaN is not representable) meaningful.
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sum_sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sum_sq == 0.0 {
        return 1.0;
    }
    (sum * sum) / (xs.len() as f64 * sum_sq)
}

/// The busiest worker's count divided by the mean count, in `[1, n]`.
///
/// An empty slice or an all-zero one returns 1.0 for the same reason as
/// [`jain`]: nothing was distributed, so nothing is skewed, and the caller
/// gets a finite number instead of `0/0`.
pub fn max_over_mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 1.0;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    if mean == 0.0 {
        return 1.0;
    }
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max / mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_even_is_one() {
        assert_eq!(jain(&[1.0, 1.0, 1.0, 1.0]), 1.0);
        assert_eq!(jain(&[7.0]), 1.0);
    }

    #[test]
    fn jain_one_worker_takes_all_is_one_over_n() {
        assert_eq!(jain(&[1.0, 0.0, 0.0, 0.0]), 0.25);
    }

    #[test]
    fn jain_known_value() {
        // (2+1)² / (2 · (4+1)) = 9/10
        assert!((jain(&[2.0, 1.0]) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn jain_is_scale_free() {
        let a = jain(&[3.0, 5.0, 8.0]);
        let b = jain(&[300.0, 500.0, 800.0]);
        assert!((a - b).abs() < 1e-12);
    }

    #[test]
    fn jain_degenerate_inputs_are_fair() {
        assert_eq!(jain(&[]), 1.0);
        assert_eq!(jain(&[0.0, 0.0, 0.0]), 1.0);
    }

    #[test]
    fn max_over_mean_known_values() {
        assert_eq!(max_over_mean(&[1.0, 1.0, 1.0, 1.0]), 1.0);
        assert_eq!(max_over_mean(&[1.0, 0.0, 0.0, 0.0]), 4.0);
        // max 2, mean 1.5
        assert!((max_over_mean(&[2.0, 1.0]) - 4.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn max_over_mean_degenerate_inputs_are_even() {
        assert_eq!(max_over_mean(&[]), 1.0);
        assert_eq!(max_over_mean(&[0.0, 0.0]), 1.0);
    }
}

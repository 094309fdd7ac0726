//! `herd bench --sweep P99`: after a scenario's closed-loop run (which
//! gives the most the target serves, R), open-loop runs at chosen rates
//! find the highest rate whose coordinated-omission-corrected p99 stays
//! within the bound: one at R/2, then a bisection between the highest rate
//! that held and the lowest that did not, up to 1.25 R.

use serde_json::{json, Value};

use super::load::{self, LoadSpec};

/// Open-loop runs after the closed-loop one.
pub(super) const STEPS: usize = 6;

/// The rate where the search tops out, as a multiple of the closed-loop
/// rate (an open loop cannot serve more than the closed loop did; the top
/// is there to be refused).
const TOP: f64 = 1.25;

/// One point: the rate asked for, what was served, its p99 and whether it
/// held (p99 within the bound, no failed request).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Point {
    pub rate: f64,
    pub rps: f64,
    pub p99_us: u64,
    pub errors: u64,
    pub held: bool,
}

/// The next rate to try, from the points so far, or `None` when done.
fn next(closed_rps: f64, points: &[Point]) -> Option<f64> {
    if points.len() >= STEPS || closed_rps <= 0.0 {
        return None;
    }
    let lo = points
        .iter()
        .filter(|p| p.held)
        .map(|p| p.rate)
        .fold(0.0, f64::max);
    let hi = points
        .iter()
        .filter(|p| !p.held && p.rate > lo)
        .map(|p| p.rate)
        .fold(closed_rps * TOP, f64::min);
    Some(if points.is_empty() {
        closed_rps / 2.0
    } else {
        (lo + hi) / 2.0
    })
}

/// Whether a point holds under `bound_us`.
fn holds(p99_us: u64, errors: u64, bound_us: u64) -> bool {
    p99_us <= bound_us && errors == 0
}

/// Runs the sweep against `base` (the scenario's load, closed loop) whose
/// closed-loop run served `closed_rps`; returns the JSON of the points and
/// the rate found.
pub(super) fn run(base: &LoadSpec, closed_rps: f64, bound_us: u64) -> std::io::Result<Value> {
    let mut points: Vec<Point> = Vec::new();
    while let Some(rate) = next(closed_rps, &points) {
        let r = load::run(&LoadSpec {
            rate: Some(rate),
            ..base.clone()
        })?;
        let p99_us = r.latency.value_at_quantile(0.99);
        let errors = r.errors.total();
        points.push(Point {
            rate,
            rps: r.rps(),
            p99_us,
            errors,
            held: holds(p99_us, errors, bound_us),
        });
    }
    Ok(to_json(&points, closed_rps, bound_us))
}

fn to_json(points: &[Point], closed_rps: f64, bound_us: u64) -> Value {
    let best = points
        .iter()
        .filter(|p| p.held)
        .map(|p| p.rate)
        .fold(0.0, f64::max);
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    json!({
        "p99_bound_us": bound_us,
        "closed_loop_rps": closed_rps,
        "max_rate_within_bound": best,
        "points": sorted.iter().map(|p| json!({
            "rate": p.rate, "rps": p.rps, "p99_us": p.p99_us, "errors": p.errors, "held": p.held,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose p99 is 1 ms below 6,000 req/s and 50 ms above.
    fn fake(rate: f64) -> Point {
        let p99_us = if rate < 6000.0 { 1000 } else { 50_000 };
        Point {
            rate,
            rps: rate.min(7000.0),
            p99_us,
            errors: 0,
            held: holds(p99_us, 0, 10_000),
        }
    }

    #[test]
    fn the_bisection_closes_in_on_the_knee_from_both_sides() {
        let mut points = Vec::new();
        while let Some(rate) = next(10_000.0, &points) {
            points.push(fake(rate));
        }
        assert_eq!(points.len(), STEPS);
        assert_eq!(points[0].rate, 5000.0);
        let v = to_json(&points, 10_000.0, 10_000);
        let best = v["max_rate_within_bound"].as_f64().unwrap();
        // 6 steps over 0..12,500: within 12,500 / 2^6 of the knee.
        assert!((5800.0..6000.0).contains(&best), "{v}");
        assert!(points.iter().any(|p| !p.held), "never tried above the knee");
        let rates: Vec<f64> = v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["rate"].as_f64().unwrap())
            .collect();
        assert!(rates.windows(2).all(|w| w[0] <= w[1]), "{rates:?}");
    }

    #[test]
    fn errors_fail_a_point_and_nothing_held_is_zero() {
        assert!(!holds(10, 1, 1000));
        let mut points = Vec::new();
        while let Some(rate) = next(1000.0, &points) {
            points.push(Point {
                rate,
                rps: rate,
                p99_us: 1_000_000,
                errors: 0,
                held: false,
            });
        }
        let v = to_json(&points, 1000.0, 1000);
        assert_eq!(v["max_rate_within_bound"], 0.0);
        assert!(next(0.0, &[]).is_none());
    }
}

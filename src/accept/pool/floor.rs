//! The outlier rule of `least-conn` and `least-time`: which worker is too
//! slow to get new connections.
//!
//! The signal is a worker's *floor*: the fastest of its service-time samples
//! in the current and the previous window of [`WINDOW_NS`]. A worker that is
//! slow on every connection for a whole window (an app instance that takes
//! 5 ms longer per request) has a high floor. A worker that a scheduling
//! hiccup slowed for a few milliseconds, or that also serves some long
//! requests, still served connections fast within the window and keeps a
//! low floor. (A mean, which is what the first version of this rule judged,
//! cannot tell the two apart: under the test suite's contention it left a
//! healthy worker out long enough to make a 10,000-connection split 64/36.)
//!
//! A worker is an outlier when its floor, from at least [`FLOOR_SAMPLES`]
//! samples, is [`OUTLIER`] times the fastest worker's floor and at least
//! [`OUTLIER_GAP_NS`] above it. It then gets nothing until its floor goes
//! stale (no sample for one to two windows). Until it is measured again it
//! gets at most [`PROBES`] connection at a time, one per [`PROBE_EVERY_NS`]
//! and per [`PROBE_EVERY_CONNS`] connections (the probe: plain
//! least-conn would hand an idle worker everything until its first close).
//! So a slow worker costs a few connections per window, and a recovered one
//! is back within two windows.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// The floor is a window's RANKth fastest sample, not its fastest: one
/// connection that closed without a request (a probe, a client that gave
/// up) is fast on any worker, and as the floor it kept a 5 ms slow
/// worker in the rotation for 200 ms (measured: 24 µs).
pub const RANK: usize = 3;

/// Length of one window.
pub const WINDOW_NS: u64 = 100_000_000;
/// An outlier's floor is at least this many times the fastest worker's…
pub const OUTLIER: u64 = 4;
/// …and at least this much above it (sub-millisecond differences are
/// noise on a busy host, and not worth leaving a worker idle for).
pub const OUTLIER_GAP_NS: u64 = 2_500_000;
/// Samples in the two windows before a worker can be judged at all.
pub const FLOOR_SAMPLES: u32 = 4;
/// An outlier's samples must have come in over at least this long. A
/// healthy worker that the host did not run for a while (measured under
/// the full test suite: a Node worker's floor at 5.8–7.8 ms over 8–11
/// samples, the fastest worker's 0.3–0.5 ms) reports the connections it
/// then finishes all at once; a slow worker's closes keep coming.
pub const OUTLIER_SPAN_NS: u64 = 10_000_000;
/// Connections a suspect worker (last judged an outlier, not measured
/// since) may hold at a time: one probe. (least-conn picks in turn, so
/// each probe slot it has is taken at once: with four, a 5 ms slow worker
/// got 1.9% of the connections, and the p99 was its.)
pub const PROBES: u32 = 1;
/// Connections a worker brought back by one fast probe may hold until its
/// fresh samples judge it fit: a recovered worker (fast closes) soon gets
/// its share; a slow one that slipped through (contention can raise the
/// fastest floor past a quarter of its service time) costs a few
/// connections, not a burst (measured without this: 301 of 6,000 to a 5 ms
/// slow worker under the full test suite).
pub const TRIAL_IN_FLIGHT: u32 = 2;
/// …and at most one every this many ns…
pub const PROBE_EVERY_NS: u64 = WINDOW_NS / 4;
/// …and every this many connections picked for the pool: at a low rate a
/// probe every 25 ms is a large share of the traffic (measured: 25–31 of
/// 3,000 connections at ~2k/s, 1 %, so the p99 was the slow worker's
/// 5 ms); at most 1/256 of the connections keeps probes under the p99.
pub const PROBE_EVERY_CONNS: u64 = 256;

/// A worker's floor; see the module doc.
#[derive(Default)]
pub struct Floor {
    /// Serializes writers (samples from different acceptor threads), and
    /// holds the current window's [`RANK`] least samples; readers use the
    /// atomics alone.
    write: Mutex<[u64; RANK]>,
    /// Index of the window `cur` belongs to.
    win: AtomicU64,
    /// The [`RANK`]th least sample (ns; with fewer samples, the largest)
    /// and the sample count of the current window (0: none).
    cur: AtomicU64,
    cur_n: AtomicU32,
    /// The same for the window before it.
    prev: AtomicU64,
    prev_n: AtomicU32,
    /// When the current and the previous window's first samples came, and
    /// the latest sample (ns, the caller's clock).
    cur_first: AtomicU64,
    prev_first: AtomicU64,
    last: AtomicU64,
}

impl Floor {
    /// Records one sample of `ns` taken at `now_ns` (any monotonic origin).
    pub fn record(&self, ns: u64, now_ns: u64) {
        let ns = ns.max(1);
        let mut lows = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let have = self.win.load(Ordering::Relaxed);
        // A sample timed by another thread just before the last one's
        // window began belongs to the current window.
        let w = (now_ns / WINDOW_NS).max(have);
        if w != have || self.cur_n.load(Ordering::Relaxed) == 0 {
            let (prev, prev_n, prev_first) = if w == have + 1 {
                (
                    self.cur.load(Ordering::Relaxed),
                    self.cur_n.load(Ordering::Relaxed),
                    self.cur_first.load(Ordering::Relaxed),
                )
            } else if w == have {
                (
                    self.prev.load(Ordering::Relaxed),
                    self.prev_n.load(Ordering::Relaxed),
                    self.prev_first.load(Ordering::Relaxed),
                )
            } else {
                (0, 0, 0)
            };
            self.prev.store(prev, Ordering::Relaxed);
            self.prev_n.store(prev_n, Ordering::Relaxed);
            self.prev_first.store(prev_first, Ordering::Relaxed);
            self.cur_first.store(now_ns, Ordering::Relaxed);
            self.last.store(now_ns, Ordering::Relaxed);
            *lows = [u64::MAX; RANK];
            lows[0] = ns;
            self.cur.store(ns, Ordering::Relaxed);
            self.cur_n.store(1, Ordering::Relaxed);
            self.win.store(w, Ordering::Release);
            return;
        }
        // Keep the RANK least, sorted.
        if ns < lows[RANK - 1] {
            lows[RANK - 1] = ns;
            lows.sort_unstable();
        }
        let n = self.cur_n.fetch_add(1, Ordering::Relaxed) + 1;
        self.cur
            .store(lows[(n as usize).min(RANK) - 1], Ordering::Relaxed);
        self.last.fetch_max(now_ns, Ordering::Relaxed);
    }

    /// How long the samples [`Floor::get`] judges by took to come in (ns).
    pub fn span(&self, now_ns: u64) -> u64 {
        let w = now_ns / WINDOW_NS;
        let have = self.win.load(Ordering::Acquire);
        let first = if w == have && self.prev_n.load(Ordering::Relaxed) > 0 {
            self.prev_first.load(Ordering::Relaxed)
        } else {
            self.cur_first.load(Ordering::Relaxed)
        };
        self.last.load(Ordering::Relaxed).saturating_sub(first)
    }

    /// Forgets every sample.
    pub fn clear(&self) {
        let mut lows = self.write.lock().unwrap_or_else(|p| p.into_inner());
        *lows = [u64::MAX; RANK];
        self.cur_n.store(0, Ordering::Relaxed);
        self.prev_n.store(0, Ordering::Relaxed);
    }

    /// The floor at `now_ns` and how many samples it is the least of;
    /// `None` when stale (nothing in this window or the one before).
    pub fn get(&self, now_ns: u64) -> Option<(u64, u32)> {
        let w = now_ns / WINDOW_NS;
        let have = self.win.load(Ordering::Acquire);
        let (cur, n) = (
            self.cur.load(Ordering::Relaxed),
            self.cur_n.load(Ordering::Relaxed),
        );
        if n == 0 {
            return None;
        }
        match w.checked_sub(have) {
            // The current window and the one before it.
            Some(0) => {
                let (prev, prev_n) = (
                    self.prev.load(Ordering::Relaxed),
                    self.prev_n.load(Ordering::Relaxed),
                );
                Some(if prev_n > 0 {
                    (cur.min(prev), n + prev_n)
                } else {
                    (cur, n)
                })
            }
            // The window before; nothing in this one yet.
            Some(1) => Some((cur, n)),
            // Older, or a clock that went back (samples from another
            // thread's later `now`): stale or not, judge by what is there.
            None => Some((cur, n)),
            Some(_) => None,
        }
    }
}

/// What a worker's floor says next to `best`, the least floor among the
/// workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Too slow: no new connections.
    Outlier,
    /// Measured, and not an outlier.
    Fit,
    /// Too few recent samples to say (stale, or fewer than [`FLOOR_SAMPLES`]).
    Unjudged,
}

/// Judges a worker whose floor is `floor`.
pub fn judge(floor: Option<(u64, u32)>, best: u64) -> Verdict {
    match floor {
        Some((f, n)) if n >= FLOOR_SAMPLES => {
            if f / OUTLIER >= best.max(1) && f.saturating_sub(best) >= OUTLIER_GAP_NS {
                Verdict::Outlier
            } else {
                Verdict::Fit
            }
        }
        _ => Verdict::Unjudged,
    }
}

/// [`judge`] with the time the samples took to come in: an outlier whose
/// slow samples all came at once (the host did not run it for a while) is
/// not judged yet.
pub fn judge_over(floor: Option<(u64, u32)>, span_ns: u64, best: u64) -> Verdict {
    match judge(floor, best) {
        Verdict::Outlier if span_ns < OUTLIER_SPAN_NS => Verdict::Unjudged,
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_floor_is_the_third_least_sample_of_two_windows_then_goes_stale() {
        let f = Floor::default();
        assert_eq!(f.get(0), None);
        let t0 = 10 * WINDOW_NS;
        f.record(5 * MS, t0);
        assert_eq!(f.get(t0 + 1), Some((5 * MS, 1)));
        f.record(3 * MS, t0 + 1);
        f.record(9 * MS, t0 + 2);
        assert_eq!(f.get(t0 + 3), Some((9 * MS, 3)), "the third least");
        // One fast connection (closed without a request) does not set it.
        f.record(MS / 50, t0 + 3);
        assert_eq!(f.get(t0 + 4), Some((5 * MS, 4)));
        // Next window: the previous one still counts.
        f.record(7 * MS, t0 + WINDOW_NS);
        assert_eq!(f.get(t0 + WINDOW_NS), Some((5 * MS, 5)));
        // The one after: only the last window's.
        assert_eq!(f.get(t0 + 2 * WINDOW_NS), Some((7 * MS, 1)));
        // Two windows without a sample: stale.
        assert_eq!(f.get(t0 + 3 * WINDOW_NS), None);
        // A sample after a gap starts afresh.
        f.record(2 * MS, t0 + 5 * WINDOW_NS);
        assert_eq!(f.get(t0 + 5 * WINDOW_NS), Some((2 * MS, 1)));
    }

    #[test]
    fn a_hiccup_does_not_raise_the_floor_a_slow_worker_does() {
        let (fast, hiccup, slow) = (Floor::default(), Floor::default(), Floor::default());
        let t0 = 7 * WINDOW_NS;
        for i in 0..200 {
            let t = t0 + i * 500_000;
            fast.record(80_000, t);
            // 20 ms of a 100 ms stretch descheduled: those connections
            // take up to 20 ms, the rest are fast.
            hiccup.record(
                if (40..80).contains(&i) {
                    20 * MS
                } else {
                    90_000
                },
                t,
            );
            slow.record(5 * MS + 80_000, t);
        }
        let now = t0 + 200 * 500_000;
        let best = [&fast, &hiccup, &slow]
            .iter()
            .filter_map(|f| f.get(now))
            .map(|(f, _)| f)
            .min()
            .unwrap();
        assert_eq!(judge(fast.get(now), best), Verdict::Fit);
        assert_eq!(judge(hiccup.get(now), best), Verdict::Fit);
        assert_eq!(judge(slow.get(now), best), Verdict::Outlier);
    }

    #[test]
    fn slow_samples_that_came_at_once_are_no_verdict_yet() {
        let f = Floor::default();
        let t0 = 3 * WINDOW_NS;
        // A stalled worker catching up: eight slow closes within 1 ms.
        for i in 0..8 {
            f.record(6 * MS, t0 + i * 100_000);
        }
        assert!(f.span(t0 + MS) < OUTLIER_SPAN_NS);
        assert_eq!(judge(f.get(t0 + MS), 300_000), Verdict::Outlier);
        assert_eq!(
            judge_over(f.get(t0 + MS), f.span(t0 + MS), 300_000),
            Verdict::Unjudged
        );
        // Slow closes that keep coming, across a window boundary.
        let t1 = t0 + WINDOW_NS - 4 * MS;
        let g = Floor::default();
        for i in 0..6 {
            g.record(6 * MS, t1 + i * 2 * MS);
        }
        let now = t1 + 10 * MS;
        assert_eq!(g.span(now), 10 * MS);
        assert_eq!(
            judge_over(g.get(now), g.span(now), 300_000),
            Verdict::Outlier
        );
        // A fit worker is fit however fast its samples came.
        assert_eq!(judge_over(Some((400_000, 8)), 0, 300_000), Verdict::Fit);
    }

    #[test]
    fn the_rule_needs_samples_a_ratio_and_a_gap() {
        use Verdict::*;
        assert_eq!(judge(Some((5 * MS, 4)), 100_000), Outlier);
        assert_eq!(
            judge(Some((5 * MS, 3)), 100_000),
            Unjudged,
            "too few samples"
        );
        assert_eq!(judge(None, 100_000), Unjudged, "stale");
        assert_eq!(judge(Some((3 * MS, 9)), MS), Fit, "under 4×");
        assert_eq!(
            judge(Some((800_000, 9)), 100_000),
            Fit,
            "8× but under 1 ms apart"
        );
        assert_eq!(judge(Some((8 * MS, 9)), 2 * MS), Outlier);
    }
}

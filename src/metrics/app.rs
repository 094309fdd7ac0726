//! One app's live measurements, shared by the data plane's threads (which
//! record) and the control plane (which reads): hand-off times,
//! connection durations, the request latencies workers report, and the
//! sliding window that per-instance counts are judged fair over.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::fairness;
use super::hist::Hist;
use crate::protocol::metrics::Fairness;

/// The sliding window fairness and rates are computed over.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Most (µs, count) pairs taken from one worker report; the rest of a
/// larger one is ignored (a well-behaved reporter sends far fewer).
pub const MAX_REPORT_PAIRS: usize = 4096;
/// Latencies above this (µs, one hour) count as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Whether histograms are recorded (`HERD_METRICS=0` turns recording off,
/// to measure what it costs; counters always count).
pub fn recording() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("HERD_METRICS").as_deref(),
            Ok("0" | "off" | "false" | "no")
        )
    })
}

/// See the module doc.
pub struct AppMetrics {
    /// Accept to the worker's channel, ns.
    pub handoff: Hist,
    /// Connection open time as the worker reports it, µs.
    pub duration: Hist,
    /// Request latency as the worker reports it, µs.
    pub requests: Hist,
    /// Requests reported, by instance id.
    reported: Mutex<BTreeMap<u32, u64>>,
    /// Per-instance counts over the last [`WINDOW`], one sample a tick.
    window: Mutex<VecDeque<(Instant, BTreeMap<u32, u64>)>>,
    /// Whether histograms record (see [`recording`]).
    pub on: bool,
    /// `app_metrics` scrapes waiting for an instance's answer, by seq.
    scrapes: Mutex<BTreeMap<u64, tokio::sync::oneshot::Sender<Result<String, String>>>>,
    next_scrape: std::sync::atomic::AtomicU64,
}

impl AppMetrics {
    /// Histograms with `shards` shards (one per acceptor thread is best).
    pub fn new(shards: usize) -> AppMetrics {
        AppMetrics {
            handoff: Hist::new(shards, 1e-9, 10_000_000_000),
            duration: Hist::new(shards, 1e-6, MAX_LATENCY_US),
            requests: Hist::new(1, 1e-6, MAX_LATENCY_US),
            reported: Mutex::new(BTreeMap::new()),
            window: Mutex::new(VecDeque::new()),
            on: recording(),
            scrapes: Mutex::new(BTreeMap::new()),
            next_scrape: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// A new scrape of one instance's own metrics: its seq (sent to the
    /// instance) and where the answer arrives.
    pub fn begin_scrape(&self) -> (u64, tokio::sync::oneshot::Receiver<Result<String, String>>) {
        let seq = self
            .next_scrape
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut s = self.scrapes.lock().unwrap_or_else(|p| p.into_inner());
        // Scrapes nobody waits for any more (timed out) go.
        s.retain(|_, tx| !tx.is_closed());
        s.insert(seq, tx);
        (seq, rx)
    }

    /// An instance answered scrape `seq` (an unknown or late seq is
    /// ignored).
    pub fn scraped(&self, seq: u64, answer: Result<String, String>) {
        let tx = self
            .scrapes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
        if let Some(tx) = tx {
            let _ = tx.send(answer);
        }
    }

    /// A worker of instance `id` reports requests: (µs, how many) pairs.
    /// Anything beyond [`MAX_REPORT_PAIRS`] is ignored; values are clamped.
    pub fn report_requests(&self, id: u32, pairs: impl IntoIterator<Item = (u64, u64)>) {
        let mut n = 0u64;
        for (us, count) in pairs.into_iter().take(MAX_REPORT_PAIRS) {
            let count = count.min(1 << 32);
            if self.on {
                self.requests.record_n(us.min(MAX_LATENCY_US), count);
            }
            n += count;
        }
        if n > 0 {
            *self
                .reported
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(id)
                .or_default() += n;
        }
    }

    /// Requests instance `id` reported, ever.
    pub fn requests_of(&self, id: u32) -> u64 {
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    /// Whether any worker reported a request.
    pub fn has_requests(&self) -> bool {
        !self
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Records this tick's per-instance counts (monotonic per instance:
    /// connections dispatched, or requests reported), keeping what the
    /// window needs.
    pub fn tick(&self, now: Instant, counts: BTreeMap<u32, u64>) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        w.push_back((now, counts));
        // Keep the newest sample at least WINDOW old, and no older one.
        while w.len() > 2 && now.duration_since(w[1].0) >= WINDOW {
            w.pop_front();
        }
    }

    /// Fairness and rate over the window: the instances in both its oldest
    /// and newest sample, by how much their counts grew. `None` before two
    /// samples.
    pub fn windowed(&self, of: &str) -> Option<Fairness> {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let ((t0, first), (t1, last)) = (w.front()?, w.back()?);
        let secs = t1.duration_since(*t0).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let grew: Vec<f64> = last
            .iter()
            .filter_map(|(id, n)| first.get(id).map(|n0| n.saturating_sub(*n0) as f64))
            .collect();
        Some(figure(&grew, of, secs))
    }
}

/// Jain's index, max/mean and rate of per-worker counts `xs` over `secs`.
pub fn figure(xs: &[f64], of: &str, secs: f64) -> Fairness {
    let total: f64 = xs.iter().sum();
    Fairness {
        of: of.to_string(),
        jain: fairness::jain(xs),
        max_over_mean: fairness::max_over_mean(xs),
        total: total as u64,
        seconds: secs,
        per_second: if secs > 0.0 { total / secs } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(u32, u64)]) -> BTreeMap<u32, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn window_judges_growth_not_totals() {
        let m = AppMetrics::new(1);
        let t = Instant::now();
        assert!(m.windowed("connections").is_none());
        // Worker 1 did all the early work; over the window both grow evenly.
        m.tick(t, counts(&[(0, 0), (1, 5000)]));
        m.tick(t + Duration::from_secs(5), counts(&[(0, 500), (1, 5500)]));
        let f = m.windowed("connections").unwrap();
        assert_eq!(f.total, 1000);
        assert!((f.jain - 1.0).abs() < 1e-12);
        assert!((f.per_second - 200.0).abs() < 1e-9);
    }

    #[test]
    fn window_slides() {
        let m = AppMetrics::new(1);
        let t = Instant::now();
        for s in 0..30u64 {
            // Skewed for the first 15 s, even after.
            let (a, b) = if s < 15 {
                (s * 100, 0)
            } else {
                (1500 + (s - 15) * 100, (s - 15) * 100)
            };
            m.tick(t + Duration::from_secs(s), counts(&[(0, a), (1, b)]));
        }
        let f = m.windowed("connections").unwrap();
        assert!(f.seconds >= 10.0 && f.seconds <= 11.0, "{}", f.seconds);
        assert!(
            (f.jain - 1.0).abs() < 1e-9,
            "the skewed start left the window: {f:?}"
        );
    }

    #[test]
    fn one_worker_takes_all_is_half_for_two() {
        let f = figure(&[100.0, 0.0], "requests", 1.0);
        assert!((f.jain - 0.5).abs() < 1e-12);
        assert_eq!(f.max_over_mean, 2.0);
    }

    #[test]
    fn reports_count_per_instance_and_are_bounded() {
        let m = AppMetrics::new(1);
        m.report_requests(3, [(100, 2), (2000, 1)]);
        m.report_requests(3, std::iter::repeat_n((10, 1), MAX_REPORT_PAIRS + 50));
        assert_eq!(m.requests_of(3), 3 + MAX_REPORT_PAIRS as u64);
        assert_eq!(m.requests_of(4), 0);
        let s = m.requests.summary(&[1e-3]);
        assert_eq!(s.count, 3 + MAX_REPORT_PAIRS as u64);
    }
}

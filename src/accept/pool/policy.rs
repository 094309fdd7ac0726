//! How a worker is chosen for each connection: the [`Policy`], the
//! service-time estimate the timed policies read (an EWMA of samples), and
//! their rules for leaving a worker out: the outlier rule (see [`floor`])
//! and least-conn's stuck rule.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub use crate::protocol::Policy;

use super::{floor, ns_since_epoch, Pool, Slot};

impl Policy {
    /// Parses `round-robin|least-conn|p2c`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "round-robin" | "rr" => Some(Policy::RoundRobin),
            "least-conn" | "lc" => Some(Policy::LeastConn),
            "p2c" => Some(Policy::P2c),
            "least-time" | "lt" => Some(Policy::LeastTime),
            _ => None,
        }
    }
}

/// Weight of a new sample in the service-time EWMA.
const EWMA_NEW: f64 = 0.2;
/// A sample counts for at most this many times the current estimate.
const SAMPLE_CLAMP: f64 = 8.0;
/// Samples a worker needs before it can be left out as an outlier: the
/// first connections of a fresh worker are slow (measured: one of two
/// fresh hello workers got 44% instead of 50% for its first 3 s when one
/// sample sufficed). Until then a worker gets a connection only while no
/// busier than the least loaded, so what a slow one gets before it is
/// judged is about this many (16 gave a 5 ms slow worker 25–29 of 3,000
/// connections at 4 clients, 0.9 %, which set the p99; 8 gives 18–21, and
/// 10 fresh-daemon fairness runs each of Node and hello still pass).
pub(super) const MIN_SAMPLES: u32 = 8;
/// least-conn: connections a worker may hold beyond the least loaded
/// worker before it can count as stuck…
const STUCK_SLACK: u32 = 4;
/// …when it has also closed none for this long (ns). A scheduling hiccup
/// on a busy host lasts a few ms; an event loop blocked by a long request
/// or a worker holding long-lived connections, far longer.
const STUCK_NS: u64 = 50_000_000;

/// …or when what it holds beyond the least loaded worker would take this
/// long (ns) at its service time per connection: its floor (see [`floor`]),
/// or its mean before it has one. Uniform load stays far below it (the
/// hello worker under 32 connections: 14 beyond at 0.3 ms); a 5 ms slow
/// worker reaches it 10 connections beyond. (The mean is the wrong
/// measure once a worker has a floor: it includes the time a connection
/// waited inside the worker, which grows with what the worker holds. A
/// Node worker that takes a burst of connections per read measured a mean
/// of 1.3–4.6 ms against a floor of 0.3 ms under 16 clients, and the rule
/// turned 97–219 of 3,000 connections away from it: a 1,403 / 1,597 split.)
const STUCK_BACKLOG_NS: u64 = 50_000_000;

/// A worker that waited for a CPU this share of the time is starved by the
/// host, not slow (under the full test suite a healthy Node worker pinned
/// to a busy core read floors of 3.4–7.8 ms against 0.3 ms and was left
/// out for most of a second; a 5 ms slow worker is idle, not waiting).
const STARVED_SHARE: f64 = 0.2;
/// The run-queue wait is looked at most once per this many ns per worker…
const RUNQ_EVERY_NS: u64 = 10_000_000;
/// …and a look older than this does not count as the one before.
const RUNQ_STALE_NS: u64 = 200_000_000;

/// An unmeasured EWMA halves every this many ns, so a worker that was slow
/// (and so gets nothing) is tried again now and then.
const EWMA_HALF_LIFE_NS: f64 = 500e6;

impl Slot {
    /// Records how long one connection took (herd: sent → closed; Node:
    /// sent → accepted).
    pub(super) fn sample(&self, took: std::time::Duration, now: Instant) {
        let x = took.as_nanos() as f64;
        let old = self.ewma_ns.load(Ordering::Relaxed) as f64;
        let new = if old == 0.0 {
            x
        } else {
            // One long-lived connection (a websocket closing after a
            // minute) must not make its worker an outlier by itself: a
            // sample counts for at most SAMPLE_CLAMP × the estimate.
            old * (1.0 - EWMA_NEW) + x.min(old * SAMPLE_CLAMP) * EWMA_NEW
        };
        let at = ns_since_epoch(now);
        self.ewma_ns.store(new as u64, Ordering::Relaxed);
        self.ewma_at.store(at, Ordering::Relaxed);
        self.floor.record(took.as_nanos() as u64, at);
        if self.suspect.load(Ordering::Relaxed) {
            self.probe_min
                .fetch_min(took.as_nanos() as u64, Ordering::Relaxed);
        }
        let _ = self
            .samples
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    /// The service time (ns) the outlier rule judges this worker by: its
    /// floor over the last one or two windows (see [`floor`]), if it has one.
    pub fn service_floor_ns(&self) -> Option<u64> {
        self.floor
            .get(ns_since_epoch(Instant::now()))
            .map(|(f, _)| f)
    }

    /// Last judged an outlier and not measured fit since (see [`floor`]).
    pub fn is_left_out_slow(&self) -> bool {
        self.suspect.load(Ordering::Relaxed)
    }

    /// The outlier rule (see [`floor`]): whether this worker may get a new
    /// connection, given `best`, the least floor among the workers, and
    /// `turn`, the pool's count of picks.
    pub(super) fn fit(&self, best: u64, now_ns: u64, turn: u64) -> bool {
        let set = |on: bool| {
            if self.suspect.load(Ordering::Relaxed) != on {
                self.probe_min.store(u64::MAX, Ordering::Relaxed);
                self.suspect.store(on, Ordering::Relaxed);
                if on {
                    // Rare (a transition), and what an operator asks first
                    // when one worker gets less.
                    let (f, n) = self.floor.get(now_ns).unwrap_or_default();
                    log::info!(
                        "instance {} pid {}: left out as slow (floor {} µs over {n} samples, fastest worker {} µs)",
                        self.instance_id,
                        self.pid,
                        f / 1000,
                        best / 1000
                    );
                }
            }
        };
        // A suspect gets a probe at a time, each to an idle worker that
        // must first wake up: judged by the floor of those few samples, a
        // worker that was only slow for a while (a cold Node worker on a
        // contended core) stays out for good, since the probes that would
        // warm it are all it gets (measured: 50 of 3,000 connections). One
        // probe as fast as a fit worker's floor is proof enough: its old
        // samples are dropped and it is judged afresh from the rotation. A
        // worker slow on every connection never passes.
        if self.suspect.load(Ordering::Relaxed) {
            let fastest = self.probe_min.load(Ordering::Relaxed);
            if fastest != u64::MAX
                && floor::judge(Some((fastest, floor::FLOOR_SAMPLES)), best) == floor::Verdict::Fit
            {
                // Its floor is now empty: judged below as on trial.
                self.floor.clear();
                set(false);
                self.on_trial.store(true, Ordering::Relaxed);
            }
        }
        let mut verdict = floor::judge_over(self.floor.get(now_ns), self.floor.span(now_ns), best);
        // Before leaving a worker out: slow because the host does not run
        // it (ready, waiting for a CPU) is load, not slowness. Plain
        // least-conn already gives such a worker less.
        if verdict == floor::Verdict::Outlier
            && !self.suspect.load(Ordering::Relaxed)
            && self.starved(now_ns) != Some(false)
        {
            verdict = floor::Verdict::Unjudged;
        }
        if verdict != floor::Verdict::Unjudged {
            self.on_trial.store(false, Ordering::Relaxed);
        }
        match verdict {
            floor::Verdict::Outlier => {
                set(true);
                false
            }
            floor::Verdict::Fit => {
                set(false);
                true
            }
            floor::Verdict::Unjudged => {
                if self.on_trial.load(Ordering::Relaxed) {
                    return self.in_flight.load(Ordering::Relaxed) < floor::TRIAL_IN_FLIGHT;
                }
                if !self.suspect.load(Ordering::Relaxed) {
                    return true;
                }
                // A probe: one connection at a time, at most one per
                // PROBE_EVERY_NS (a probe-sized stream of requests to a 5 ms
                // slow worker is what would set the p99).
                let last = self.probed_at.load(Ordering::Relaxed);
                let due = now_ns.saturating_sub(last) >= floor::PROBE_EVERY_NS
                    && turn.wrapping_sub(self.probed_turn.load(Ordering::Relaxed))
                        >= floor::PROBE_EVERY_CONNS;
                if due && self.in_flight.load(Ordering::Relaxed) < floor::PROBES {
                    self.probed_at.store(now_ns, Ordering::Relaxed);
                    self.probed_turn.store(turn, Ordering::Relaxed);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Whether this worker's process spent at least [`STARVED_SHARE`] of
    /// the time since the last look ready but not running (its run-queue
    /// wait, `/proc/PID/schedstat`): `None` until two looks at least
    /// [`RUNQ_EVERY_NS`] and at most [`RUNQ_STALE_NS`] apart exist. Looks
    /// at most once per [`RUNQ_EVERY_NS`] (only a worker about to be left
    /// out asks). A process whose schedstat cannot be read counts as not
    /// starved, so the rule works as without this check.
    pub(super) fn starved(&self, now_ns: u64) -> Option<bool> {
        let at = self.runq_at.load(Ordering::Relaxed);
        let since = now_ns.saturating_sub(at);
        if at != 0 && since < RUNQ_EVERY_NS {
            return match self.runq_says.load(Ordering::Relaxed) {
                1 => Some(false),
                2 => Some(true),
                _ => None,
            };
        }
        let Some(wait) = crate::sys::process::runqueue_wait_ns(self.pid) else {
            return Some(false);
        };
        let before = self.runq_wait.swap(wait, Ordering::Relaxed);
        self.runq_at.store(now_ns.max(1), Ordering::Relaxed);
        let says = if at == 0 || since > RUNQ_STALE_NS {
            None
        } else {
            Some(wait.saturating_sub(before) as f64 >= since as f64 * STARVED_SHARE)
        };
        let code = match says {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.runq_says.store(code, Ordering::Relaxed);
        says
    }

    /// The service-time estimate at `now`, in ns, decayed since its last
    /// sample; `None` before the first sample.
    pub fn service_ns(&self, now: Instant) -> Option<f64> {
        let v = self.ewma_ns.load(Ordering::Relaxed);
        if v == 0 {
            return None;
        }
        let age = ns_since_epoch(now).saturating_sub(self.ewma_at.load(Ordering::Relaxed));
        Some(v as f64 * (-(age as f64) / EWMA_HALF_LIFE_NS).exp2())
    }

    /// Drops the service times measured so far (the warm-up's, whose
    /// connections are not the app's traffic: one fast warm-up sample kept
    /// a 5 ms slow worker's floor low, and so kept it in the rotation, for
    /// its first 200 ms). Closes counted in the shared page still lower
    /// `in_flight`.
    pub(super) fn forget_samples(&self) {
        // Apply the warm-up's closes (the sample they make goes below).
        self.sync_closes(None);
        self.lock().started.clear();
        self.floor.clear();
        self.samples.store(0, Ordering::Relaxed);
        self.ewma_ns.store(0, Ordering::Relaxed);
    }

    /// least-conn's stuck rule: a worker holding more than [`STUCK_SLACK`]
    /// connections beyond the least loaded worker's `least` gets no new
    /// ones when it has closed none for [`STUCK_NS`] (an event loop
    /// blocked by one long request, or long-lived connections), or when
    /// what it holds beyond `least` takes longer than [`STUCK_BACKLOG_NS`]
    /// at its service time per connection (a slow worker not judged yet).
    /// A worker the scheduler left out for a few ms is not stuck: it keeps
    /// its turn.
    fn is_stuck(&self, load: u32, least: u32, now_ns: u64) -> bool {
        if load <= least.saturating_add(STUCK_SLACK) {
            return false;
        }
        let silent = now_ns.saturating_sub(self.closed_at.load(Ordering::Relaxed)) > STUCK_NS;
        let per_conn = match self.floor.get(now_ns) {
            Some((floor, _)) => floor,
            None => self.ewma_ns.load(Ordering::Relaxed),
        };
        let behind = u64::from(load - least).saturating_mul(per_conn);
        silent || behind > STUCK_BACKLOG_NS
    }
}

impl Pool {
    /// The worker the policy would give the next connection, without
    /// giving it (`None`: none in the rotation). `dispatch` runs this once
    /// per connection; `benches/micro.rs` times it per policy.
    pub fn pick(&self) -> Option<Arc<Slot>> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        // Runs once per connection: walk the active slots in place rather
        // than collecting them into a Vec.
        let active = || slots.iter().filter(|s| s.is_active());
        let n = active().count();
        if n == 0 {
            return None;
        }
        let turn = self.rr.fetch_add(1, Ordering::Relaxed);
        // One clock read per pick serves the samples and the outlier rule,
        // for the policies that read them; the others read no clock.
        let now = self.timed().then(Instant::now);
        if self.policy != Policy::RoundRobin {
            for s in active() {
                s.sync_closes(now);
            }
        }
        let now = || now.unwrap_or_else(Instant::now);
        let load = |s: &Slot| s.in_flight.load(Ordering::Relaxed);
        // Start a scan at a rotating position so ties spread evenly.
        let scan = || active().cycle().skip(turn % n).take(n);
        let chosen = match self.policy {
            Policy::RoundRobin => active().nth(turn % n)?,
            Policy::LeastConn => {
                let now = now();
                let fit = fit(&slots, now, turn);
                // In turn among the workers that are neither outliers nor
                // stuck: uniform load stays exactly fair however the
                // in-flight counts jitter (a worker descheduled for a few
                // ms holds most of the connections for a moment: measured
                // 16 of 18 on 2 cores); when none qualifies, the least
                // loaded.
                let now_ns = ns_since_epoch(now);
                // The least loaded among the workers not left out as slow:
                // an outlier's empty queue must not make the others look
                // stuck.
                let trusted = || active().filter(|s| !s.is_left_out_slow());
                let least = trusted()
                    .map(|s| load(s))
                    .min()
                    .or_else(|| active().map(|s| load(s)).min())?;
                // A worker not measured enough to be judged yet takes its
                // turn only while no busier than the least loaded: a slow
                // one would otherwise get half of everything until judged.
                let ok = |s: &Slot| {
                    fit(s)
                        && !s.is_stuck(load(s), least, now_ns)
                        && (s.samples.load(Ordering::Relaxed) >= MIN_SAMPLES || load(s) <= least)
                };
                let fewer = |best: &'_ Arc<Slot>, s: &'_ Arc<Slot>| load(s) < load(best);
                match scan().find(|s| ok(s)) {
                    Some(s) => s,
                    None => pick_by(scan().filter(|s| !s.is_left_out_slow()), fewer)
                        .or_else(|| pick_by(scan(), fewer))?,
                }
            }
            Policy::LeastTime => {
                let now = now();
                // Unmeasured workers count as the fastest measured one.
                let floor = active()
                    .filter_map(|s| s.service_ns(now))
                    .fold(f64::INFINITY, f64::min);
                let floor = if floor.is_finite() { floor } else { 1.0 };
                let est = |s: &Slot| s.service_ns(now).unwrap_or(floor).max(1.0);
                let cost = |s: &Slot| (f64::from(load(s)) + 1.0) * est(s);
                let cheaper = |best: &'_ Arc<Slot>, s: &'_ Arc<Slot>| cost(s) < cost(best);
                let fit = fit(&slots, now, turn);
                pick_by(scan().filter(|s| fit(s)), cheaper).or_else(|| pick_by(scan(), cheaper))?
            }
            Policy::P2c => {
                let r = xorshift(turn as u64);
                let a = active().nth((r % n as u64) as usize)?;
                let b = active().nth(((r >> 32) % n as u64) as usize)?;
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        Some(chosen.clone())
    }
}

/// The outlier rule (see [`floor`]) over the active `slots`: whether a
/// slot may get new connections.
fn fit(slots: &[Arc<Slot>], now: Instant, turn: usize) -> impl Fn(&Slot) -> bool {
    let now = ns_since_epoch(now);
    let best = slots
        .iter()
        .filter(|s| s.is_active())
        .filter_map(|s| s.floor.get(now))
        .map(|(f, _)| f)
        .min();
    move |s: &Slot| match best {
        Some(best) if s.samples.load(Ordering::Relaxed) >= MIN_SAMPLES => {
            s.fit(best, now, turn as u64)
        }
        _ => true,
    }
}

/// The first slot of `slots` that no later one is `better` than.
///
/// Other acceptors update loads and samples while one picks, so a filter
/// may let nobody through (the fastest worker of a moment ago fails the
/// cut now); callers then pick among all, never from nobody.
fn pick_by<'a>(
    slots: impl Iterator<Item = &'a Arc<Slot>>,
    better: impl Fn(&Arc<Slot>, &Arc<Slot>) -> bool,
) -> Option<&'a Arc<Slot>> {
    slots.reduce(|best, s| if better(best, s) { s } else { best })
}

/// A cheap mixer for p2c's two random choices (no RNG crate needed).
fn xorshift(seed: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x
}

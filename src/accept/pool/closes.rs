//! Closes the worker reports: by id (herd `D` and `T`) or counted in the
//! shared counters page. Each lowers `in_flight` and lets go of the
//! daemon's copy; under the timed policies each is a service-time sample.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{ns_since_epoch, Slot, SlotState};
use crate::fdpass::herd::counters;

/// How long a connection reported closed took.
enum Took {
    /// Unknown: the daemon's time from sending it (`D`).
    SinceSent,
    /// As the worker measured it (`T`).
    Measured(std::time::Duration),
    /// Not timed (`T` with 0 ns): no sample.
    Untimed,
}

impl Slot {
    /// Records when connections `first..first + n` left, for the timed
    /// policies' service times (closes counted in the shared page carry no ids:
    /// nothing to match).
    pub(super) fn time_sent(&self, st: &mut SlotState, first: u64, n: usize) {
        if self.timed.load(Ordering::Relaxed) && !self.counts_closes() {
            let now = Instant::now();
            st.started
                .extend((first..first + n as u64).map(|id| (id, now)));
        }
    }

    /// The worker counts its closes in the shared page (it sends no `D`),
    /// so acceptors need not read its channel after each dispatch.
    pub fn counts_closes(&self) -> bool {
        self.counters().is_some_and(|c| {
            c.page.word(counters::FLAGS).load(Ordering::Relaxed) & counters::COUNTS_CLOSES != 0
        })
    }

    /// Applies the closes the worker counted in the shared page since the
    /// last call: fewer in flight, and (timed policies) their mean duration
    /// as one service-time sample taken at `now` (`None`: read the clock
    /// only if there is a sample to take).
    pub(super) fn sync_closes(&self, now: Option<Instant>) {
        let Some(c) = self.counters() else { return };
        let closed = c.page.word(counters::CLOSED).load(Ordering::Acquire);
        let seen = c.closes_seen.load(Ordering::Relaxed);
        if closed <= seen
            || c.closes_seen
                .compare_exchange(seen, closed, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return; // nothing new, or another acceptor applied it
        }
        let n = closed - seen;
        self.done(n as usize);
        self.sweep_closed();
        let ns = c.page.word(counters::CLOSED_NS).load(Ordering::Acquire);
        let prev = c.closed_ns_seen.swap(ns, Ordering::AcqRel);
        if ns > prev {
            // The page carries only a sum: n closes of their mean duration.
            let mean = (ns - prev) / n;
            self.record_duration(mean / 1000, n);
            if self.timed.load(Ordering::Relaxed) {
                let now = now.unwrap_or_else(Instant::now);
                self.sample(std::time::Duration::from_nanos(mean), now);
            }
        }
    }

    /// Connections in flight (dispatched, not yet closed), counting the
    /// closes in the shared page.
    pub fn load(&self) -> u32 {
        self.sync_closes(None);
        self.in_flight.load(Ordering::Relaxed)
    }

    /// herd `D`: these connections closed; each one's service time is the
    /// daemon's, from sending to now.
    pub fn closed(&self, ids: &[u64]) {
        self.closed_with(ids.iter().map(|&id| (id, Took::SinceSent)));
    }

    /// herd `T`: these connections closed, each open for the ns the worker
    /// measured; those are the service-time samples (the daemon's own
    /// sent → read-`D` time would add the channel's and the worker's
    /// queueing, which is load, not slowness: on a core the client also
    /// runs on it made a healthy Node worker look 4× slower). 0 ns: not
    /// timed (a connection refused before it opened), no sample.
    pub fn closed_timed(&self, pairs: &[(u64, u64)]) {
        self.closed_with(pairs.iter().map(|&(id, ns)| match ns {
            0 => (id, Took::Untimed),
            ns => (id, Took::Measured(std::time::Duration::from_nanos(ns))),
        }));
    }

    /// Closes reported by id: the copies go, and (timed policies) each
    /// sent connection is one sample, as [`Took`] says.
    fn closed_with(&self, closes: impl ExactSizeIterator<Item = (u64, Took)>) {
        let n = closes.len();
        let now = self.timed.load(Ordering::Relaxed).then(Instant::now);
        let mut st = self.lock();
        for (id, took) in closes {
            st.held.remove(&id);
            st.swept.remove(&id);
            if let Took::Measured(d) = took {
                self.record_duration(d.as_micros() as u64, 1);
            }
            let (Some(now), Some(sent)) = (now, st.started.remove(&id)) else {
                continue;
            };
            match took {
                Took::SinceSent => {
                    let d = now.saturating_duration_since(sent);
                    self.record_duration(d.as_micros() as u64, 1);
                    self.sample(d, now);
                }
                Took::Measured(d) => self.sample(d, now),
                Took::Untimed => {}
            }
        }
        drop(st);
        self.done(n);
    }

    /// `n` connections closed (Node's `newconn` path: were accepted).
    pub fn done(&self, n: usize) {
        self.closed.fetch_add(n as u64, Ordering::Relaxed);
        self.release(n);
    }

    /// `n` connections came back for another worker.
    pub(super) fn returned(&self, n: usize) {
        self.handed_on.fetch_add(n as u64, Ordering::Relaxed);
        self.release(n);
    }

    /// The worker reports requests it served: (µs, how many) pairs.
    pub fn requests(&self, pairs: &[(u64, u64)]) {
        if let Some(m) = self.metrics.get() {
            m.report_requests(self.instance_id, pairs.iter().copied());
        }
    }

    /// Records connection durations the worker reported: `n` of `us`.
    fn record_duration(&self, us: u64, n: u64) {
        if let Some(m) = self.metrics.get().filter(|m| m.on) {
            m.duration.record_n(us, n);
        }
    }

    /// `n` connections are no longer in flight.
    fn release(&self, n: usize) {
        if n > 0 {
            self.closed_at
                .store(ns_since_epoch(Instant::now()), Ordering::Relaxed);
        }
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n as u32))
            });
    }
}

//! The workers of one `fdpass` app and the dispatch of accepted connections
//! among them.
//!
//! Acceptor threads call [`Pool::dispatch`] for every accepted connection.
//! A [`Slot`] is one running worker process and its channel. No accepted
//! connection is lost to a worker's death or hang: unsent ones wait in the
//! slot's `queue`; sent ones are either in the worker's hands or still in
//! the channel, and the daemon keeps a copy of the worker's end of the
//! channel (`peer`), so on the worker's death it takes back what the worker
//! never read. Both go back through [`Pool::dispatch`] to another worker.
//! (herd workers: the daemon closes its copy of a descriptor as soon as it
//! is sent, so no acknowledgement per connection crosses the channel. Node
//! workers: the copy is kept until Node's `accepted` ack, since Node may
//! refuse a handle.)

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

mod closes;
mod copies;
mod floor;
mod node;
mod policy;
mod replay;
mod send;
mod slot;

use crate::metrics::app::AppMetrics;
pub use copies::{Batch, BatchFds, Deaths};
use floor::Floor;
pub use node::NODE_HANDLE_WINDOW;
pub use policy::Policy;
use replay::Held;
pub use replay::Replay;
use send::Deliver;
pub use slot::{ChannelKind, SlotProto, Warmup, Wire};

/// Upper bound of connections held while no worker is ready; beyond it new
/// connections are closed (the kernel backlog is the better buffer).
const MAX_ORPHANS: usize = 65_536;

#[derive(Default)]
struct SlotState {
    next_id: u64,
    /// Accepted, not yet sent.
    queue: VecDeque<OwnedFd>,
    /// Node: sent, not yet accepted: (seq, fd, when sent).
    unacked: VecDeque<(u64, OwnedFd, Instant)>,
    /// herd: the message at the head of the worker's channel when last
    /// looked at (its first 9 bytes), and since when it has been there.
    head: Option<([u8; 9], Instant)>,
    /// Node: seqs of handles sent whose NODE_HANDLE_ACK has not come back,
    /// oldest first (Node answers in order).
    node_handles_in_flight: VecDeque<u64>,
    /// Node: the server key from queryServer.
    node_key: Option<String>,
    /// herd, timed policies only (`least-conn`, `least-time`): when each
    /// connection still open was sent (for the service-time samples;
    /// removed by `D`).
    started: std::collections::HashMap<u64, Instant>,
    /// Reusable encode buffer.
    buf: Vec<u8>,
    /// herd protocol: the daemon's copy of each connection sent, by id,
    /// until the worker reports it closed or the kernel shows the worker
    /// started on it (read or wrote a byte, or shut it): should the worker
    /// die first, an untouched one goes to another worker. Shared with an
    /// acceptor's ring while it sends them ([`Batch`]): no `dup`. With
    /// each, the request to replay should the worker die having read it
    /// (`replay`).
    held: std::collections::BTreeMap<u64, Held>,
    /// Connections whose copy a sweep let go of (the worker had written to
    /// or finished them) and whose close report has not come, with what
    /// the kernel said then: a worker that reports closes by id and dies
    /// first has them counted by it (`Slot::kill`).
    swept: std::collections::BTreeMap<u64, crate::sys::tcp::Progress>,
}

/// One worker process and its channel.
pub struct Slot {
    /// The instance it belongs to.
    pub instance_id: u32,
    /// Its pid (for the hung-worker kill).
    pub pid: i32,
    chan: OwnedFd,
    /// What only the worker's protocol has.
    wire: Wire,
    state: Mutex<SlotState>,
    /// Read side of the channel; see `accept::channel::drain`.
    pub reader: Mutex<crate::accept::channel::Reader>,
    /// Connections dispatched and not yet closed (herd) / not yet accepted (Node).
    pub in_flight: AtomicU32,
    /// Connections dispatched to it, ever.
    pub dispatched: AtomicU64,
    /// Connections lost when it died because it had started on them (read
    /// a byte, written none): they cannot be handed on.
    pub lost_started: AtomicU64,
    /// Connections it had written to and not shut down when it died
    /// (see [`Deaths::cut_after_write`]).
    pub cut_after_write: AtomicU64,
    /// Connections it had received but not touched when it died, handed
    /// to another worker from the daemon's copies.
    pub saved: AtomicU64,
    /// Connections whose request it had read and not answered when it
    /// died, replayed to another worker (see `replay`).
    pub replayed: AtomicU64,
    /// Connections it closed (herd; Node's `newconn` path: accepted).
    pub closed: AtomicU64,
    /// Connections given back for another worker before it had them: a
    /// failed send, a refusal, unread when it stopped reading or died.
    pub handed_on: AtomicU64,
    /// The app's figures (set when the slot joins its pool).
    metrics: std::sync::OnceLock<Arc<AppMetrics>>,
    active: AtomicBool,
    dead: AtomicBool,
    /// Service-time EWMA in ns (0: none yet), and when it was last updated
    /// (ns since [`epoch`]); read by `least-time`.
    ewma_ns: AtomicU64,
    ewma_at: AtomicU64,
    /// Samples taken: a worker is judged an outlier only after
    /// [`MIN_SAMPLES`] (a fresh worker's first connections are slow).
    ///
    /// [`MIN_SAMPLES`]: policy::MIN_SAMPLES
    samples: AtomicU32,
    /// Its fastest recent sample, for the outlier rule.
    floor: Floor,
    /// Last judged an outlier and not measured fit since: probed with a
    /// few connections at a time.
    suspect: AtomicBool,
    /// When it was last let through as a probe (ns since [`epoch`]), and
    /// the pool's pick count then.
    probed_at: AtomicU64,
    probed_turn: AtomicU64,
    /// The fastest sample since it became a suspect (ns; `u64::MAX`: none).
    probe_min: AtomicU64,
    /// Brought back by one fast probe and not judged fit since: held to
    /// [`floor::TRIAL_IN_FLIGHT`] connections at a time until it is.
    on_trial: AtomicBool,
    /// Its process's run-queue wait at the last look (ns) and when that
    /// was (ns since [`epoch`]; 0: never), and what it said (see
    /// [`Slot::starved`]).
    runq_wait: AtomicU64,
    runq_at: AtomicU64,
    runq_says: AtomicU8,
    /// The daemon keeps a copy of each connection sent (`HERD_KEEP_COPIES`,
    /// on unless `0`): see `SlotState::held`.
    keep: AtomicBool,
    /// Requests are kept with the copies, for replay (`HERD_REPLAY`, on
    /// unless `0`; only where [`Slot::can_replay`]).
    replay: AtomicBool,
    /// The app's server speaks HTTP ([`Pool::set_http`]).
    http: AtomicBool,
    /// The pool's policy reads the samples (`least-conn`, `least-time`):
    /// only then does a herd connection's send time get recorded.
    timed: AtomicBool,
    /// When an acceptor thread last read the channel (ns since [`epoch`]).
    acceptor_drain_at: AtomicU64,
    /// When a connection of it last closed (ns since [`epoch`]; 0: none
    /// yet), for least-conn's stuck rule.
    closed_at: AtomicU64,
    /// Warm-up: `slot::WARMUP_*` (not started, running, done).
    warmup: AtomicU8,
    /// Signalled when the channel was full and connections stayed queued:
    /// the slot's task then retries until they are sent.
    pub queued: tokio::sync::Notify,
}

/// A fixed origin for storing instants in atomics.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn ns_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// The slots of one app and the dispatch policy.
pub struct Pool {
    slots: RwLock<Vec<Arc<Slot>>>,
    policy: Policy,
    rr: AtomicUsize,
    drain_turn: AtomicUsize,
    /// Slots keep copies of what they send (see `SlotState::held`).
    keep_copies: AtomicBool,
    /// Slots keep requests with their copies, for replay.
    replay: AtomicBool,
    /// A worker said the app's server speaks HTTP (`H`): requests are worth
    /// keeping.
    http: AtomicBool,
    orphans: Mutex<VecDeque<OwnedFd>>,
    /// Replays waiting for a worker that takes them.
    pending_replays: Mutex<Vec<Replay>>,
    /// Whether `orphans` may hold something (read on every dispatch).
    held: AtomicBool,
    /// Connections dispatched (including re-dispatches).
    pub dispatches: AtomicU64,
    /// Connections re-dispatched after a worker died or refused them.
    pub redispatched: AtomicU64,
    /// Connections closed because no worker was ready and the holding queue was full.
    pub dropped: AtomicU64,
    /// By instance id: connections saved from and lost with its dead
    /// processes (see [`Slot::saved`], [`Slot::lost_started`]).
    deaths: Mutex<std::collections::HashMap<u32, Deaths>>,
    /// The app's live figures (hand-off times, durations, requests).
    pub metrics: Arc<AppMetrics>,
}

impl Pool {
    /// An empty pool, with figures of its own.
    pub fn new(policy: Policy) -> Pool {
        Pool::with_metrics(policy, Arc::new(AppMetrics::new(1)))
    }

    /// An empty pool that records into the app's `metrics`.
    pub fn with_metrics(policy: Policy, metrics: Arc<AppMetrics>) -> Pool {
        Pool {
            metrics,
            slots: RwLock::new(Vec::new()),
            policy,
            rr: AtomicUsize::new(0),
            drain_turn: AtomicUsize::new(0),
            keep_copies: AtomicBool::new(true),
            replay: AtomicBool::new(true),
            http: AtomicBool::new(false),
            orphans: Mutex::new(VecDeque::new()),
            pending_replays: Mutex::new(Vec::new()),
            held: AtomicBool::new(false),
            dispatches: AtomicU64::new(0),
            redispatched: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            deaths: Mutex::new(Default::default()),
        }
    }

    /// Whether slots added from now on keep a copy of each connection they
    /// send, for a worker that dies before starting on it
    /// (`HERD_KEEP_COPIES=0` turns it off, to measure what it costs).
    pub fn set_keep_copies(&self, on: bool) {
        self.keep_copies.store(on, Ordering::Relaxed);
    }

    /// Whether slots added from now on keep the request with each copy, to
    /// replay it should the worker die having read it and written nothing
    /// (`HERD_REPLAY=0` turns it off; it needs the copies).
    pub fn set_replay(&self, on: bool) {
        self.replay.store(on, Ordering::Relaxed);
    }

    /// A worker said the app's server speaks HTTP: its slots, and those
    /// added from now on, keep the requests they may replay.
    pub fn set_http(&self) {
        self.http.store(true, Ordering::Relaxed);
        for s in self.slots.read().unwrap_or_else(|p| p.into_inner()).iter() {
            s.http.store(true, Ordering::Relaxed);
        }
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The policy reads service times (samples and the outlier rule).
    fn timed(&self) -> bool {
        matches!(self.policy, Policy::LeastConn | Policy::LeastTime)
    }

    /// Adds a slot (not yet in rotation until ready).
    pub fn add(&self, slot: Arc<Slot>) {
        slot.timed.store(self.timed(), Ordering::Relaxed);
        let keep = self.keep_copies.load(Ordering::Relaxed);
        slot.keep.store(keep, Ordering::Relaxed);
        slot.replay.store(
            keep && self.replay.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        slot.http
            .store(self.http.load(Ordering::Relaxed), Ordering::Relaxed);
        let _ = slot.metrics.set(self.metrics.clone());
        self.slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot);
    }

    /// Removes a slot and re-dispatches everything it held.
    pub fn remove(&self, slot: &Arc<Slot>) {
        let (fds, replays) = slot.kill();
        {
            let mut d = self.deaths.lock().unwrap_or_else(|p| p.into_inner());
            let e = d.entry(slot.instance_id).or_default();
            e.saved += slot.saved.swap(0, Ordering::Relaxed);
            e.replayed += slot.replayed.swap(0, Ordering::Relaxed);
            e.lost_started += slot.lost_started.swap(0, Ordering::Relaxed);
            e.cut_after_write += slot.cut_after_write.swap(0, Ordering::Relaxed);
            e.dispatched += slot.dispatched.swap(0, Ordering::Relaxed);
            e.closed += slot.closed.swap(0, Ordering::Relaxed);
            e.handed_on += slot.handed_on.swap(0, Ordering::Relaxed);
        }
        self.slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, slot));
        self.redispatch(fds);
        self.replay(replays);
    }

    /// Re-dispatches connections a worker gave back.
    pub fn redispatch(&self, fds: Vec<OwnedFd>) {
        self.redispatched
            .fetch_add(fds.len() as u64, Ordering::Relaxed);
        for fd in fds {
            let _ = self.dispatch(fd);
        }
    }

    /// Hands `fd` to `slot` itself, in or out of the rotation (a warm-up
    /// connection); it closes if the slot is dead.
    pub fn deliver_to(&self, slot: &Slot, fd: OwnedFd) {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        let _ = slot.deliver(fd, true);
    }

    /// A slot became ready: connections held while none was ready go out.
    pub fn slot_ready(&self, slot: &Slot) {
        slot.forget_samples();
        slot.set_ready();
        self.flush_orphans();
        self.flush_replays();
    }

    fn flush_orphans(&self) {
        let held: Vec<OwnedFd> = {
            let mut orphans = self.orphans.lock().unwrap_or_else(|p| p.into_inner());
            self.held.store(false, Ordering::Release);
            orphans.drain(..).collect()
        };
        for fd in held {
            let _ = self.dispatch(fd);
        }
    }

    /// Hands one accepted connection to a worker chosen by the policy;
    /// returns that worker (`None`: held until one is ready).
    pub fn dispatch(&self, fd: OwnedFd) -> Option<Arc<Slot>> {
        self.dispatch_with(fd, true)
    }

    /// [`Self::dispatch`], but the connection waits in the chosen worker's
    /// queue until the caller calls [`Slot::flush`] on the returned slot, so
    /// the connections an acceptor took in one wake-up reach each worker in
    /// one message (one `sendmsg`, one wake-up of the worker).
    pub fn dispatch_corked(&self, fd: OwnedFd) -> Option<Arc<Slot>> {
        self.dispatch_with(fd, false)
    }

    fn dispatch_with(&self, mut fd: OwnedFd, send: bool) -> Option<Arc<Slot>> {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        for _ in 0..8 {
            let Some(slot) = self.pick() else { break };
            match slot.deliver(fd, send) {
                Deliver::Ok => {
                    // Held while no worker could be picked, and a worker
                    // can be now: whatever else joins or leaves, they go.
                    if self.held.load(Ordering::Acquire) {
                        self.flush_orphans();
                    }
                    return Some(slot);
                }
                Deliver::Dead(back) => fd = back,
            }
        }
        let mut orphans = self.orphans.lock().unwrap_or_else(|p| p.into_inner());
        if orphans.len() >= MAX_ORPHANS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None; // fd closes here
        }
        orphans.push_back(fd);
        self.held.store(true, Ordering::Release);
        drop(orphans);
        // A worker may have become ready between pick() and the push.
        if self.pick().is_some() {
            self.flush_orphans();
        }
        None
    }

    /// One slot in turn (each call the next), for acceptor threads to drain
    /// before they pick: least-conn compares every worker's in-flight count,
    /// so no worker's closes may wait long unread.
    pub fn next_to_drain(&self) -> Option<Arc<Slot>> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        if slots.is_empty() {
            return None;
        }
        let k = self.drain_turn.fetch_add(1, Ordering::Relaxed);
        Some(slots[k % slots.len()].clone())
    }

    /// What the deaths of instance `id`'s processes cost so far.
    pub fn deaths(&self, id: u32) -> Deaths {
        self.deaths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
            .unwrap_or_default()
    }

    /// Instance `id`'s counts over all its processes: the dead ones'
    /// ([`Self::deaths`]) and the live ones' (during a reload an instance
    /// has two), with what is in flight now.
    pub fn totals(&self, id: u32) -> (Deaths, u64) {
        let mut t = self.deaths(id);
        let mut in_flight = 0;
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        for s in slots.iter().filter(|s| s.instance_id == id) {
            in_flight += u64::from(s.load());
            t.dispatched += s.dispatched.load(Ordering::Relaxed);
            t.closed += s.closed.load(Ordering::Relaxed);
            t.handed_on += s.handed_on.load(Ordering::Relaxed);
            t.saved += s.saved.load(Ordering::Relaxed);
            t.replayed += s.replayed.load(Ordering::Relaxed);
            t.lost_started += s.lost_started.load(Ordering::Relaxed);
            t.cut_after_write += s.cut_after_write.load(Ordering::Relaxed);
        }
        (t, in_flight)
    }

    /// Connections held while no worker is ready (or, for a replay, none
    /// that takes it).
    pub fn orphans(&self) -> usize {
        self.orphans.lock().unwrap_or_else(|p| p.into_inner()).len() + self.pending_replays()
    }

    /// Snapshot of the slots.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests;

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
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::fdpass::herd::{counters, Msg, MAX_IDS};
use crate::sys::fdpass::{recv_with_fds, send_with_fds};
use crate::sys::shm::SharedPage;

mod floor;
use floor::Floor;

/// How a worker is chosen for each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each worker in turn.
    RoundRobin,
    /// Each worker in turn, skipping the ones that are behind: an outlier
    /// (see [`floor`]: a worker whose every connection lately took 4× and
    /// 2.5 ms longer than the fastest worker's fastest, by the worker's
    /// own clock, gets only a probe now and then), or stuck (more than
    /// [`STUCK_SLACK`] connections beyond the least loaded worker, and
    /// either no close for 50 ms or a backlog of more than 50 ms at its
    /// mean service time). When every worker is behind, the least loaded.
    /// So uniform load is split exactly evenly however in-flight counts
    /// jitter, and a slow or blocked worker gets almost nothing.
    #[default]
    LeastConn,
    /// Two workers at random, the less loaded one wins.
    P2c,
    /// The worker with the least expected wait: (in flight + 1) × its
    /// recent service time (an EWMA of how long its connections last,
    /// herd workers; of how long Node takes to accept one), among those
    /// that are not outliers (as for least-conn). The estimate decays while
    /// unmeasured (half-life 500 ms), so a worker left idle is tried again.
    LeastTime,
}

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

    /// The flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::LeastConn => "least-conn",
            Policy::P2c => "p2c",
            Policy::LeastTime => "least-time",
        }
    }
}

/// Which protocol a slot's channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotProto {
    /// herd's SEQPACKET protocol (docs/PROTOCOL.md).
    Herd,
    /// Node's cluster IPC (JSON lines on a stream, one handle in flight).
    Node,
}

/// Node handles sent ahead of their NODE_HANDLE_ACK. Node's *sending* side
/// keeps one handle in flight (`_handleQueue` in internal/child_process);
/// its receiving side takes any number, one per `recvmsg`, as long as each
/// `sendmsg` carries one fd (verified live with 8, 64 and 200 back to back,
/// Node 20.20.2; see `fdpass::node` tests). A small window removes the
/// round trip per connection without letting a slow worker hoard handles.
pub const NODE_HANDLE_WINDOW: usize = 8;

/// Marks a handle in flight that is not a connection (see `send_node_handle`).
const NOT_A_CONNECTION: u64 = u64::MAX;

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
    /// acceptor's ring while it sends them ([`Batch`]): no `dup`.
    held: std::collections::BTreeMap<u64, Arc<OwnedFd>>,
}

/// Connections taken for an acceptor's ring ([`Slot::take_batch`]).
pub struct Batch {
    /// The id of the first.
    pub first: u64,
    /// Their `C` message.
    pub msg: Vec<u8>,
    /// The connections.
    pub fds: BatchFds,
}

/// A [`Batch`]'s connections.
pub enum BatchFds {
    /// The ring closes them once sent
    /// ([`crate::sys::uring::Outbox::send`]).
    Owned(Vec<OwnedFd>),
    /// The slot keeps them as its copies; the ring lets go of its
    /// references once sent ([`crate::sys::uring::Outbox::send_shared`]).
    Shared(Vec<Arc<OwnedFd>>),
}

impl Batch {
    /// How many connections.
    pub fn len(&self) -> usize {
        match &self.fds {
            BatchFds::Owned(f) => f.len(),
            BatchFds::Shared(f) => f.len(),
        }
    }

    /// Never: a batch holds at least one connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The descriptor behind `fd`: itself when no one else holds it, else a
/// `dup` (the ring still sending it, say).
fn own(fd: Arc<OwnedFd>) -> Option<OwnedFd> {
    Arc::try_unwrap(fd).or_else(|f| f.try_clone()).ok()
}

/// One worker process and its channel.
pub struct Slot {
    /// The instance it belongs to.
    pub instance_id: u32,
    /// Its pid (for the hung-worker kill).
    pub pid: i32,
    /// Its protocol.
    pub proto: SlotProto,
    chan: OwnedFd,
    /// Node: the daemon's end of a second channel that speaks herd's
    /// protocol (herd's Node preload reads it), used once the worker sent
    /// `R` on it (`fast_ready`); until then connections go as `newconn`.
    fast: Option<OwnedFd>,
    fast_ready: AtomicBool,
    /// The daemon's copy of the worker's end of the herd-protocol channel
    /// (`chan` for herd workers, `fast` for Node): what the worker has not
    /// read yet can be taken back from it.
    peer: Option<OwnedFd>,
    /// herd: the counters page shared with the worker (closes counted there
    /// instead of sent as `D`), and how many of its closes and close-time
    /// nanoseconds have been applied to `in_flight` and the EWMA.
    counters: Option<SharedPage>,
    closes_seen: AtomicU64,
    closed_ns_seen: AtomicU64,
    state: Mutex<SlotState>,
    /// Read side of the channel; see `fdpass::channel::drain`.
    pub reader: Mutex<crate::fdpass::channel::Reader>,
    /// Connections dispatched and not yet closed (herd) / not yet accepted (Node).
    pub in_flight: AtomicU32,
    /// Connections dispatched to it, ever.
    pub dispatched: AtomicU64,
    /// Connections lost when it died because it had started on them (read
    /// or written a byte): they cannot be handed on.
    pub lost_started: AtomicU64,
    /// Connections it had received but not touched when it died, handed
    /// to another worker from the daemon's copies.
    pub saved: AtomicU64,
    active: AtomicBool,
    dead: AtomicBool,
    /// `wait_ready`: a Node worker joins the rotation on `process.send('ready')`
    /// (after `listening`), not on `listening` alone.
    wait_ready: AtomicBool,
    /// Node readiness signals seen: [`Slot::LISTENING`] | [`Slot::READY`].
    signals: AtomicU8,
    /// Service-time EWMA in ns (0: none yet), and when it was last updated
    /// (ns since [`epoch`]); read by `least-time`.
    ewma_ns: AtomicU64,
    ewma_at: AtomicU64,
    /// Samples taken: a worker is judged an outlier only after
    /// [`MIN_SAMPLES`] (a fresh worker's first connections are slow).
    samples: AtomicU32,
    /// Its fastest recent sample, for the outlier rule.
    floor: Floor,
    /// Last judged an outlier and not measured fit since: probed with a
    /// few connections at a time.
    suspect: AtomicBool,
    /// When it was last let through as a probe (ns since [`epoch`]).
    probed_at: AtomicU64,
    /// The daemon keeps a copy of each connection sent (`HERD_KEEP_COPIES`,
    /// on unless `0`): see `SlotState::held`.
    keep: AtomicBool,
    /// The pool's policy reads the samples (`least-conn`, `least-time`):
    /// only then does a herd connection's send time get recorded.
    timed: AtomicBool,
    /// When an acceptor thread last read the channel (ns since [`epoch`]).
    acceptor_drain_at: AtomicU64,
    /// When a connection of it last closed (ns since [`epoch`]; 0: none
    /// yet), for least-conn's stuck rule.
    closed_at: AtomicU64,
    /// Warm-up: 0 not started, 1 running, 2 done.
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

/// Weight of a new sample in the service-time EWMA.
const EWMA_NEW: f64 = 0.2;
/// A sample counts for at most this many times the current estimate.
const SAMPLE_CLAMP: f64 = 8.0;
/// Samples a worker needs before it can be left out as an outlier: the
/// first connections of a fresh worker are slow (measured: one of two
/// fresh hello workers got 44% instead of 50% for its first 3 s when one
/// sample sufficed).
const MIN_SAMPLES: u32 = 16;
/// least-conn: connections a worker may hold beyond the least loaded
/// worker before it can count as stuck…
const STUCK_SLACK: u32 = 4;
/// …when it has also closed none for this long (ns). A scheduling hiccup
/// on a busy host lasts a few ms; an event loop blocked by a long request
/// or a worker holding long-lived connections, far longer.
const STUCK_NS: u64 = 50_000_000;

/// …or when what it holds beyond the least loaded worker would take this
/// long (ns) at its mean service time. Uniform load stays below it (the
/// hello worker under 32 connections: 14 beyond at 1.5 ms, 21 ms); a
/// 5 ms slow worker reaches it 10 connections beyond.
const STUCK_BACKLOG_NS: u64 = 50_000_000;

/// Copies of closed connections a slot may keep before it lets go of them
/// (workers that count their closes report no ids; see `sweep_closed`).
const SWEEP_EVERY: usize = 16;

/// An unmeasured EWMA halves every this many ns, so a worker that was slow
/// (and so gets nothing) is tried again now and then.
const EWMA_HALF_LIFE_NS: f64 = 500e6;

/// Where a slot's warm-up stands (see `DataPlane::slot_ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmup {
    /// The caller starts it.
    Start,
    /// Under way: its thread puts the slot into the rotation.
    Running,
    /// Over (or failed): the slot may join now.
    Done,
}

/// How long a connection reported closed took.
enum Took {
    /// Unknown: the daemon's time from sending it (`D`).
    SinceSent,
    /// As the worker measured it (`T`).
    Measured(std::time::Duration),
    /// Not timed (`T` with 0 ns): no sample.
    Untimed,
}

/// Outcome of handing a connection to a slot.
enum Deliver {
    Ok,
    Dead(OwnedFd),
}

impl Slot {
    /// A slot for a freshly started worker; it joins the rotation once the
    /// worker says it is ready. `chan` must be non-blocking.
    pub fn new(instance_id: u32, pid: i32, proto: SlotProto, chan: OwnedFd) -> Slot {
        Slot {
            instance_id,
            pid,
            proto,
            chan,
            fast: None,
            fast_ready: AtomicBool::new(false),
            peer: None,
            counters: None,
            closes_seen: AtomicU64::new(0),
            closed_ns_seen: AtomicU64::new(0),
            state: Mutex::new(SlotState::default()),
            reader: Mutex::new(Default::default()),
            in_flight: AtomicU32::new(0),
            dispatched: AtomicU64::new(0),
            lost_started: AtomicU64::new(0),
            saved: AtomicU64::new(0),
            active: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            wait_ready: AtomicBool::new(false),
            signals: AtomicU8::new(0),
            ewma_ns: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
            samples: AtomicU32::new(0),
            floor: Floor::default(),
            suspect: AtomicBool::new(false),
            probed_at: AtomicU64::new(0),
            timed: AtomicBool::new(false),
            keep: AtomicBool::new(true),
            acceptor_drain_at: AtomicU64::new(0),
            closed_at: AtomicU64::new(0),
            warmup: AtomicU8::new(0),
            queued: tokio::sync::Notify::new(),
        }
    }

    /// herd channels: the daemon's copy of the worker's end (see the module
    /// doc). It is only ever read with `MSG_DONTWAIT`: its file status flags
    /// are the worker's.
    pub fn with_peer(mut self, peer: OwnedFd) -> Slot {
        self.peer = Some(peer);
        self
    }

    /// Node: the herd-protocol channel herd's preload may take connections
    /// on (`ours`), and the daemon's copy of the worker's end of it.
    pub fn with_fast_channel(mut self, ours: OwnedFd, peer: OwnedFd) -> Slot {
        self.fast = Some(ours);
        self.peer = Some(peer);
        self
    }

    /// Where herd-protocol `C` messages go and how many connections each
    /// carries: a herd worker's channel, up to [`MAX_IDS`]; a Node
    /// worker's second channel once its preload is ready, one (Node's pipe
    /// hands the app one descriptor per read). `None`: Node's own protocol.
    fn herd_route(&self) -> Option<(BorrowedFd<'_>, usize)> {
        match (self.proto, &self.fast) {
            (SlotProto::Herd, _) => Some((self.chan.as_fd(), MAX_IDS)),
            (SlotProto::Node, Some(fast)) if self.is_fast() => Some((fast.as_fd(), 1)),
            (SlotProto::Node, _) => None,
        }
    }

    /// Where [`Self::take_batch`]'s messages go.
    pub fn send_chan(&self) -> BorrowedFd<'_> {
        self.herd_route()
            .map_or(self.chan.as_fd(), |(chan, _)| chan)
    }

    /// Records when connections `first..first + n` left, for the timed
    /// policies' service times (closes counted in the shared page carry no ids:
    /// nothing to match).
    fn time_sent(&self, st: &mut SlotState, first: u64, n: usize) {
        if self.timed.load(Ordering::Relaxed) && !self.counts_closes() {
            let now = Instant::now();
            st.started
                .extend((first..first + n as u64).map(|id| (id, now)));
        }
    }

    /// Node: the daemon's end of the herd-protocol channel, if any.
    pub fn fast_chan(&self) -> Option<BorrowedFd<'_>> {
        self.fast.as_ref().map(|f| f.as_fd())
    }

    /// Node: the preload said `R` on the herd-protocol channel: connections
    /// go there from now on.
    pub fn set_fast_ready(&self) {
        self.fast_ready.store(true, Ordering::Release);
        self.flush();
    }

    /// Claims the warm-up: the first caller starts it.
    pub fn begin_warmup(&self) -> Warmup {
        match self
            .warmup
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Warmup::Start,
            Err(1) => Warmup::Running,
            Err(_) => Warmup::Done,
        }
    }

    /// The warm-up is over.
    pub fn end_warmup(&self) {
        self.warmup.store(2, Ordering::Release);
    }

    /// An acceptor thread has just read the channel.
    pub fn note_acceptor_drain(&self) {
        self.acceptor_drain_at
            .store(ns_since_epoch(Instant::now()), Ordering::Relaxed);
    }

    /// Whether an acceptor thread read the channel less than `d` ago.
    pub fn acceptor_drained_within(&self, d: std::time::Duration) -> bool {
        let at = self.acceptor_drain_at.load(Ordering::Relaxed);
        at != 0 && ns_since_epoch(Instant::now()).saturating_sub(at) < d.as_nanos() as u64
    }

    /// How connections reach the worker (`herd show`'s `channel`).
    pub fn channel_kind(&self) -> &'static str {
        match self.proto {
            SlotProto::Herd if self.counts_closes() => "herd-counters",
            SlotProto::Herd => "herd",
            SlotProto::Node if self.is_fast() => "node-preload",
            SlotProto::Node => "node-cluster",
        }
    }

    /// Whether connections go over the herd-protocol channel of a Node slot.
    pub fn is_fast(&self) -> bool {
        self.fast_ready.load(Ordering::Acquire)
    }

    /// herd channels: the counters page the worker was given.
    pub fn with_counters(mut self, page: SharedPage) -> Slot {
        self.counters = Some(page);
        self
    }

    /// The worker counts its closes in the shared page (it sends no `D`),
    /// so acceptors need not read its channel after each dispatch.
    pub fn counts_closes(&self) -> bool {
        self.counters.as_ref().is_some_and(|c| {
            c.word(counters::FLAGS).load(Ordering::Relaxed) & counters::COUNTS_CLOSES != 0
        })
    }

    /// Applies the closes the worker counted in the shared page since the
    /// last call: fewer in flight, and (timed policies) their mean duration
    /// as one service-time sample taken at `now` (`None`: read the clock
    /// only if there is a sample to take).
    fn sync_closes(&self, now: Option<Instant>) {
        let Some(c) = &self.counters else { return };
        let closed = c.word(counters::CLOSED).load(Ordering::Acquire);
        let seen = self.closes_seen.load(Ordering::Relaxed);
        if closed <= seen
            || self
                .closes_seen
                .compare_exchange(seen, closed, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return; // nothing new, or another acceptor applied it
        }
        let n = closed - seen;
        self.done(n as usize);
        self.sweep_closed();
        if self.timed.load(Ordering::Relaxed) {
            let ns = c.word(counters::CLOSED_NS).load(Ordering::Acquire);
            let prev = self.closed_ns_seen.swap(ns, Ordering::AcqRel);
            if ns > prev {
                let now = now.unwrap_or_else(Instant::now);
                self.sample(std::time::Duration::from_nanos((ns - prev) / n), now);
            }
        }
    }

    /// Connections in flight (dispatched, not yet closed), counting the
    /// closes in the shared page.
    pub fn load(&self) -> u32 {
        self.sync_closes(None);
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records how long one connection took (herd: sent → closed; Node:
    /// sent → accepted).
    fn sample(&self, took: std::time::Duration, now: Instant) {
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
        let _ = self
            .samples
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    /// Last judged an outlier and not measured fit since (see [`floor`]).
    pub fn is_left_out_slow(&self) -> bool {
        self.suspect.load(Ordering::Relaxed)
    }

    /// The outlier rule (see [`floor`]): whether this worker may get a new
    /// connection, given `best`, the least floor among the workers.
    fn fit(&self, best: u64, now_ns: u64) -> bool {
        let set = |on: bool| {
            if self.suspect.load(Ordering::Relaxed) != on {
                self.suspect.store(on, Ordering::Relaxed);
            }
        };
        match floor::judge(self.floor.get(now_ns), best) {
            floor::Verdict::Outlier => {
                set(true);
                false
            }
            floor::Verdict::Fit => {
                set(false);
                true
            }
            floor::Verdict::Unjudged => {
                if !self.suspect.load(Ordering::Relaxed) {
                    return true;
                }
                // A probe: one connection at a time, at most one per
                // PROBE_EVERY_NS (a probe-sized stream of requests to a 5 ms
                // slow worker is what would set the p99).
                let last = self.probed_at.load(Ordering::Relaxed);
                let due = now_ns.saturating_sub(last) >= floor::PROBE_EVERY_NS;
                if due && self.in_flight.load(Ordering::Relaxed) < floor::PROBES {
                    self.probed_at.store(now_ns, Ordering::Relaxed);
                    true
                } else {
                    false
                }
            }
        }
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

    /// The Node worker's server listens.
    pub const LISTENING: u8 = 1;
    /// The Node worker sent `process.send('ready')`.
    pub const READY: u8 = 2;

    /// Joins the rotation only on `process.send('ready')` (PM2's `wait_ready`).
    pub fn set_wait_ready(&self, on: bool) {
        self.wait_ready.store(on, Ordering::Release);
    }

    /// Records a readiness signal; true when the worker is now ready to be
    /// sent connections (listening, and ready too under `wait_ready`).
    pub fn note_signal(&self, signal: u8) -> bool {
        let seen = self.signals.fetch_or(signal, Ordering::AcqRel) | signal;
        let need = if self.wait_ready.load(Ordering::Acquire) {
            Slot::LISTENING | Slot::READY
        } else {
            Slot::LISTENING
        };
        seen & need == need
    }

    /// The daemon's end of the channel.
    pub fn chan(&self) -> std::os::fd::BorrowedFd<'_> {
        self.chan.as_fd()
    }

    /// In the rotation (ready and not dead).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire) && !self.dead.load(Ordering::Acquire)
    }

    /// Is dead (channel closed or process gone).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A panic while holding the lock must not wedge dispatch forever.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `fd` for the worker and, with `send`, sends the queue; else
    /// the caller flushes later (a batch of connections in one message).
    fn deliver(&self, fd: OwnedFd, send: bool) -> Deliver {
        if self.is_dead() {
            return Deliver::Dead(fd);
        }
        let mut st = self.lock();
        // Again under the lock: `kill` marks the slot dead before it takes
        // the lock to empty the queue, so a connection queued after that
        // would be left behind in a dead slot.
        if self.is_dead() {
            return Deliver::Dead(fd);
        }
        st.queue.push_back(fd);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.dispatched.fetch_add(1, Ordering::Relaxed);
        if send {
            self.flush_locked(&mut st);
        }
        Deliver::Ok
    }

    /// Sends what the protocol allows from the queue. A full socket buffer
    /// leaves the rest queued and wakes the slot's task (`queued`), which
    /// retries until they are sent; Node's window reopens on its acks.
    fn flush_locked(&self, st: &mut SlotState) {
        if self.is_dead() {
            return;
        }
        match self.herd_route() {
            Some((chan, per_msg)) => self.send_conns(st, chan, per_msg),
            None => {
                let Some(key) = st.node_key.clone() else {
                    return;
                };
                while st.node_handles_in_flight.len() < NODE_HANDLE_WINDOW {
                    let Some(fd) = st.queue.pop_front() else {
                        return;
                    };
                    let seq = st.next_id;
                    let msg = crate::fdpass::node::newconn(&key, seq);
                    match send_all_with_fd(self.chan.as_fd(), &msg, fd.as_fd()) {
                        Ok(()) => {
                            st.next_id += 1;
                            st.node_handles_in_flight.push_back(seq);
                            st.unacked.push_back((seq, fd, Instant::now()));
                        }
                        Err(_) => {
                            st.queue.push_front(fd);
                            self.dead.store(true, Ordering::Release);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// herd protocol: sends the queue as `C` messages of at most `per_msg`
    /// connections on `chan` until it is empty or the channel is full.
    fn send_conns(&self, st: &mut SlotState, chan: BorrowedFd<'_>, per_msg: usize) {
        while !st.queue.is_empty() {
            let n = st.queue.len().min(per_msg);
            let first = st.next_id;
            let mut buf = std::mem::take(&mut st.buf);
            Msg::Conns((first..first + n as u64).collect()).encode_into(&mut buf);
            let res = {
                let fds: Vec<_> = st.queue.iter().take(n).map(|f| f.as_fd()).collect();
                send_with_fds(chan, &buf, &fds, true)
            };
            st.buf = buf;
            match res {
                Ok(_) => {
                    st.next_id += n as u64;
                    // Sent: the worker's now, or back through `peer` should
                    // it die before reading them, or from `held` should it
                    // die before starting on them.
                    let sent: Vec<OwnedFd> = st.queue.drain(..n).collect();
                    if self.keep.load(Ordering::Relaxed) {
                        st.held
                            .extend((first..).zip(sent.into_iter().map(Arc::new)));
                    }
                    self.time_sent(st, first, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.queued.notify_one();
                    return;
                }
                Err(_) => {
                    self.dead.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// herd protocol: takes up to [`MAX_IDS`] queued connections (one for a
    /// Node worker on the preload's channel) and their `C` message (ids
    /// assigned), for a sender that sends them itself on [`Self::send_chan`]
    /// (an acceptor's ring: [`crate::sys::uring::Outbox`]); it reports back
    /// only a failure, with [`Self::send_failed`]. `None` for a Node worker
    /// on Node's own protocol, a dead slot, or an empty queue.
    pub fn take_batch(&self) -> Option<Batch> {
        let (_, per_msg) = self.herd_route()?;
        if self.is_dead() {
            return None;
        }
        let mut st = self.lock();
        if st.queue.is_empty() {
            return None;
        }
        let n = st.queue.len().min(per_msg);
        let first = st.next_id;
        st.next_id += n as u64;
        let mut msg = Vec::with_capacity(1 + 8 * n);
        Msg::Conns((first..first + n as u64).collect()).encode_into(&mut msg);
        // Timed from now: the ring reports a success only lazily, and the
        // worker's `D` may come back before that.
        self.time_sent(&mut st, first, n);
        let fds = st.queue.drain(..n);
        let fds = if self.keep.load(Ordering::Relaxed) {
            // The copies (see `held`) from the start: a worker that dies
            // before the ring reports the send loses nothing untouched.
            let shared: Vec<Arc<OwnedFd>> = fds.map(Arc::new).collect();
            st.held.extend((first..).zip(shared.iter().cloned()));
            BatchFds::Shared(shared)
        } else {
            BatchFds::Owned(fds.collect())
        };
        Some(Batch { first, msg, fds })
    }

    /// The batch of `n` connections from `first` taken by
    /// [`Self::take_batch`] could not be sent: they go back to the head of
    /// the queue (`fds`, or for a shared batch the slot's own copies); a
    /// full channel wakes the slot's task to retry, any other error marks
    /// the worker dead. What a dead worker holds queued is returned, for
    /// re-dispatch (it may already have been emptied by [`Self::kill`],
    /// which would not see these).
    pub fn send_failed(
        &self,
        first: u64,
        n: usize,
        fds: Vec<OwnedFd>,
        e: &std::io::Error,
    ) -> Vec<OwnedFd> {
        let mut st = self.lock();
        let mut back = Vec::with_capacity(n);
        for id in first..first + n as u64 {
            st.started.remove(&id);
            if let Some(copy) = st.held.remove(&id) {
                back.extend(own(copy));
            }
        }
        // A shared batch's are the copies; an owned one's come with it.
        let back = if fds.is_empty() { back } else { fds };
        for fd in back.into_iter().rev() {
            st.queue.push_front(fd);
        }
        if e.kind() == std::io::ErrorKind::WouldBlock && !self.is_dead() {
            self.queued.notify_one();
            return Vec::new();
        }
        self.dead.store(true, Ordering::Release);
        let back: Vec<OwnedFd> = st.queue.drain(..).collect();
        drop(st);
        self.done(back.len());
        back
    }

    /// Connections wait in the queue (the channel was full).
    pub fn has_queued(&self) -> bool {
        !self.lock().queue.is_empty()
    }

    /// Sends what waits in the queue, as far as the channel takes it.
    pub fn flush(&self) {
        let mut st = self.lock();
        if !st.queue.is_empty() {
            self.flush_locked(&mut st);
        }
    }

    /// Sends raw protocol bytes (Node replies) on the channel.
    pub fn send_raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        let _st = self.lock(); // keep whole messages from interleaving
        send_all(self.chan.as_fd(), bytes)
    }

    /// Drops the service times measured so far (the warm-up's, whose
    /// connections are not the app's traffic: one fast warm-up sample kept
    /// a 5 ms slow worker's floor low, and so kept it in the rotation, for
    /// its first 200 ms). Closes counted in the shared page still lower
    /// `in_flight`.
    fn forget_samples(&self) {
        // Apply the warm-up's closes (the sample they make goes below).
        self.sync_closes(None);
        self.lock().started.clear();
        self.floor.clear();
        self.samples.store(0, Ordering::Relaxed);
        self.ewma_ns.store(0, Ordering::Relaxed);
    }

    /// The worker is ready: join the rotation.
    pub fn set_ready(&self) {
        self.active.store(true, Ordering::Release);
    }

    /// Takes the slot out of the rotation (it keeps what it has).
    pub fn set_inactive(&self) {
        self.active.store(false, Ordering::Release);
    }

    /// Node: the server key (from queryServer) used in newconn messages.
    pub fn set_node_key(&self, key: String) {
        let mut st = self.lock();
        st.node_key = Some(key);
        self.flush_locked(&mut st);
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
            let (Some(now), Some(sent)) = (now, st.started.remove(&id)) else {
                continue;
            };
            match took {
                Took::SinceSent => self.sample(now.saturating_duration_since(sent), now),
                Took::Measured(d) => self.sample(d, now),
                Took::Untimed => {}
            }
        }
        drop(st);
        self.done(n);
    }

    /// After closes counted in the shared page: once the copies outnumber
    /// the connections still open by [`SWEEP_EVERY`], the surplus is mostly
    /// closed ones; let go of them (one kernel query each, not one per
    /// pick).
    fn sweep_closed(&self) {
        let mut st = self.lock();
        let open = self.in_flight.load(Ordering::Relaxed) as usize;
        let held = st.held.len();
        if held > open + SWEEP_EVERY {
            Self::sweep_locked(&mut st, held - open + 1);
        }
    }

    /// Lets go of the copies of connections the worker has started on (the
    /// kernel says so: see [`crate::sys::tcp::progress`]), looking at no
    /// more than `at_most` of them. Workers that count their closes in the
    /// shared page report no ids, so this is how their copies go: after
    /// closes ([`Self::sweep_closed`]) and on the slot task's tick.
    fn sweep_locked(st: &mut SlotState, at_most: usize) {
        // Oldest first, up to the first one the worker has not touched:
        // workers start on their connections roughly in order, so what
        // lies beyond it is mostly untouched too (the tick's sweep, and
        // the worker's close reports, take the rest).
        let mut started = Vec::new();
        for (id, fd) in st.held.iter().take(at_most) {
            if crate::sys::tcp::progress(fd.as_fd()).map_or(true, |p| p.started()) {
                started.push(*id);
            } else {
                break;
            }
        }
        for id in started {
            st.held.remove(&id);
        }
    }

    /// Copies of connections the daemon holds for this worker.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// least-conn's stuck rule: a worker holding more than [`STUCK_SLACK`]
    /// connections beyond the least loaded worker's `least` gets no new
    /// ones when it has closed none for [`STUCK_NS`] (an event loop
    /// blocked by one long request, or long-lived connections), or when
    /// what it holds beyond `least` takes longer than [`STUCK_BACKLOG_NS`]
    /// at its mean service time (a slow worker not judged yet). A worker the scheduler
    /// left out for a few ms is not stuck: it keeps its turn.
    fn is_stuck(&self, load: u32, least: u32, now_ns: u64) -> bool {
        if load <= least.saturating_add(STUCK_SLACK) {
            return false;
        }
        let silent = now_ns.saturating_sub(self.closed_at.load(Ordering::Relaxed)) > STUCK_NS;
        // What it holds beyond the least loaded, at its mean service time.
        let behind = u64::from(load - least).saturating_mul(self.ewma_ns.load(Ordering::Relaxed));
        silent || behind > STUCK_BACKLOG_NS
    }

    /// `n` connections are no longer in flight.
    pub fn done(&self, n: usize) {
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

    /// Node: sends a message carrying a handle that is not a connection (a
    /// shared listener). It takes a place in the handle window so the
    /// NODE_HANDLE_ACK it causes is matched to it.
    pub fn send_node_handle(
        &self,
        bytes: &[u8],
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> std::io::Result<()> {
        let mut st = self.lock();
        send_all_with_fd(self.chan.as_fd(), bytes, fd)?;
        st.node_handles_in_flight.push_back(NOT_A_CONNECTION);
        Ok(())
    }

    /// Node `NODE_HANDLE_ACK`: the oldest handle arrived; another may go.
    pub fn node_handle_acked(&self) {
        let mut st = self.lock();
        st.node_handles_in_flight.pop_front();
        self.flush_locked(&mut st);
    }

    /// Node `NODE_HANDLE_NACK`: the oldest handle did not arrive whole; send
    /// it again.
    pub fn node_handle_nacked(&self) {
        let mut st = self.lock();
        if let Some(seq) = st
            .node_handles_in_flight
            .pop_front()
            .filter(|&s| s != NOT_A_CONNECTION)
        {
            if let Some(pos) = st.unacked.iter().position(|(id, _, _)| *id == seq) {
                let (_, fd, _) = st.unacked.remove(pos).expect("position is valid");
                st.queue.push_front(fd);
            }
        }
        self.flush_locked(&mut st);
    }

    /// Node `accepted` ack for `seq`: returns the fd when the worker refused
    /// it (`accepted: false`), for re-dispatch.
    pub fn node_accepted(&self, seq: u64, accepted: bool) -> Option<OwnedFd> {
        let mut st = self.lock();
        let pos = st.unacked.iter().position(|(id, _, _)| *id == seq)?;
        let (_, fd, sent) = st.unacked.remove(pos).expect("position is valid");
        let now = Instant::now();
        self.sample(now.saturating_duration_since(sent), now);
        self.done(1);
        (!accepted).then_some(fd)
    }

    /// How long the worker has left a connection unread (herd: the same
    /// message at the head of its channel; Node: the oldest handle not
    /// accepted). `None` when it is keeping up.
    pub fn stalled_for(&self, now: Instant) -> Option<std::time::Duration> {
        let mut st = self.lock();
        // The slot task's tick: also let go of the copies of connections
        // the worker has started on (long-lived ones, between closes).
        Self::sweep_locked(&mut st, 1024);
        let node = st
            .unacked
            .front()
            .map(|(_, _, t)| now.saturating_duration_since(*t));
        let Some(peer) = &self.peer else {
            return node;
        };
        let mut head = [0u8; 9];
        let herd = match crate::sys::fdpass::peek(peer.as_fd(), &mut head) {
            Ok(Some(_)) if head[0] == b'C' => match st.head {
                Some((h, since)) if h == head => Some(now.saturating_duration_since(since)),
                _ => {
                    st.head = Some((head, now));
                    Some(std::time::Duration::ZERO)
                }
            },
            // Empty, or a message that is not a connection (`S`).
            _ => {
                st.head = None;
                None
            }
        };
        node.max(herd)
    }

    /// Marks the slot dead and returns every connection it still holds
    /// (Node: not yet accepted; herd: still unread in the worker's end of
    /// the channel; then the queue) for re-dispatch.
    pub fn kill(&self) -> Vec<OwnedFd> {
        self.dead.store(true, Ordering::Release);
        self.active.store(false, Ordering::Release);
        let _ = crate::sys::fdpass::shutdown(self.chan.as_fd());
        self.sync_closes(None);
        let mut st = self.lock();
        let mut fds: Vec<OwnedFd> = st.unacked.drain(..).map(|(_, fd, _)| fd).collect();
        // Still in the channel: those (their copies in `held` go).
        fds.extend(self.unread(&mut st));
        fds.extend(st.queue.drain(..));
        // Taken by the worker: the ones it never touched can be answered
        // by another; the rest are lost with it.
        use crate::sys::tcp::Progress;
        let (mut saved, mut lost) = (0u64, 0u64);
        let held = std::mem::take(&mut st.held);
        let held_n = held.len() as u64;
        for (_, fd) in held {
            match crate::sys::tcp::progress(fd.as_fd()) {
                Ok(Progress::Untouched) => {
                    if let Some(fd) = own(fd) {
                        fds.push(fd);
                        saved += 1;
                    }
                }
                Ok(Progress::Read | Progress::Written) => lost += 1,
                // Answered (or abandoned by the client) before the end,
                // its close report lost with the worker.
                Ok(Progress::Finished | Progress::PeerGone) | Err(_) => {}
            }
        }
        st.started.clear();
        let in_flight = u64::from(self.in_flight.swap(0, Ordering::Relaxed));
        drop(st);
        let back = fds.len() as u64 - saved;
        // In flight, not in the channel or the queue, and no copy held:
        // the daemon let go of it once the worker had started on it.
        lost += in_flight.saturating_sub(back + held_n);
        self.saved.fetch_add(saved, Ordering::Relaxed);
        self.lost_started.fetch_add(lost, Ordering::Relaxed);
        fds
    }

    /// Takes back the connections the worker has not read from its
    /// herd-protocol channel (through the daemon's copy of its end), for
    /// re-dispatch: a worker that closed its server reads no more.
    pub fn reclaim(&self) -> Vec<OwnedFd> {
        let mut st = self.lock();
        let fds = self.unread(&mut st);
        self.done(fds.len());
        fds
    }

    fn unread(&self, st: &mut SlotState) -> Vec<OwnedFd> {
        let mut fds = Vec::new();
        let Some(peer) = &self.peer else {
            return fds;
        };
        let mut buf = [0u8; crate::fdpass::herd::MAX_MSG];
        while let Ok((n, _)) = recv_with_fds(peer.as_fd(), &mut buf, &mut fds, true) {
            if n == 0 {
                break;
            }
            if let Ok(Msg::Conns(ids)) = Msg::decode(&buf[..n]) {
                for id in ids {
                    st.started.remove(&id);
                    st.held.remove(&id);
                }
            }
        }
        fds
    }
}

fn send_all(sock: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match send_with_fds(sock, bytes, &[], false) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_writable(sock)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One Node handle message: the fd rides with the first byte; a partial
/// write (rare: the channel holds at most one handle message) is finished
/// without it.
fn send_all_with_fd(
    sock: std::os::fd::BorrowedFd<'_>,
    bytes: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    loop {
        match send_with_fds(sock, bytes, &[fd], false) {
            Ok(n) => return send_all(sock, &bytes[n..]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_writable(sock)?,
            Err(e) => return Err(e),
        }
    }
}

fn wait_writable(sock: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    if crate::sys::fdpass::poll_writable(sock, 1000)? {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "worker channel stayed full for 1 s",
        ))
    }
}

/// The slots of one app and the dispatch policy.
pub struct Pool {
    slots: RwLock<Vec<Arc<Slot>>>,
    policy: Policy,
    rr: AtomicUsize,
    drain_turn: AtomicUsize,
    /// Slots keep copies of what they send (see `SlotState::held`).
    keep_copies: AtomicBool,
    orphans: Mutex<VecDeque<OwnedFd>>,
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
}

/// What the deaths of an instance's processes cost: connections handed on
/// from the daemon's copies, and connections lost because the process had
/// started on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deaths {
    /// Received, untouched, answered by another worker.
    pub saved: u64,
    /// Started on (a byte read or written), closed with the process.
    pub lost_started: u64,
}

impl Pool {
    /// An empty pool.
    pub fn new(policy: Policy) -> Pool {
        Pool {
            slots: RwLock::new(Vec::new()),
            policy,
            rr: AtomicUsize::new(0),
            drain_turn: AtomicUsize::new(0),
            keep_copies: AtomicBool::new(true),
            orphans: Mutex::new(VecDeque::new()),
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
        slot.keep
            .store(self.keep_copies.load(Ordering::Relaxed), Ordering::Relaxed);
        self.slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot);
    }

    /// Removes a slot and re-dispatches everything it held.
    pub fn remove(&self, slot: &Arc<Slot>) {
        let fds = slot.kill();
        {
            let mut d = self.deaths.lock().unwrap_or_else(|p| p.into_inner());
            let e = d.entry(slot.instance_id).or_default();
            e.saved += slot.saved.swap(0, Ordering::Relaxed);
            e.lost_started += slot.lost_started.swap(0, Ordering::Relaxed);
        }
        self.slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, slot));
        self.redispatch(fds);
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

    /// Connections held while no worker is ready.
    pub fn orphans(&self) -> usize {
        self.orphans.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn pick(&self) -> Option<Arc<Slot>> {
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
                let fit = fit(&slots, now);
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
                let fit = fit(&slots, now);
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

    /// Snapshot of the slots.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The outlier rule (see [`floor`]) over the active `slots`: whether a
/// slot may get new connections.
fn fit(slots: &[Arc<Slot>], now: Instant) -> impl Fn(&Slot) -> bool {
    let now = ns_since_epoch(now);
    let best = slots
        .iter()
        .filter(|s| s.is_active())
        .filter_map(|s| s.floor.get(now))
        .map(|(f, _)| f)
        .min();
    move |s: &Slot| match best {
        Some(best) if s.samples.load(Ordering::Relaxed) >= MIN_SAMPLES => s.fit(best, now),
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

#[cfg(test)]
mod tests;

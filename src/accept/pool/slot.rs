//! A slot's life apart from the connections it carries: its construction,
//! the readiness signals and the warm-up that bring it into the rotation,
//! and the check for a worker that stopped reading.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::floor::Floor;
use super::{ns_since_epoch, Slot, SlotState};
use crate::sys::shm::SharedPage;

/// Which protocol a slot's channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotProto {
    /// herd's SEQPACKET protocol (docs/PROTOCOL.md).
    Herd,
    /// Node's cluster IPC (JSON lines on a stream, one handle in flight).
    Node,
}

/// A worker's channel beyond the socket both protocols have (`Slot::chan`):
/// what only a herd worker's has, and what only a Node worker's has.
pub enum Wire {
    /// herd's SEQPACKET protocol (docs/PROTOCOL.md).
    Herd {
        /// The daemon's copy of the worker's end: what the worker has not
        /// read yet can be taken back from it (see the module doc).
        peer: Option<OwnedFd>,
        /// The page the worker counts its closes in instead of sending `D`.
        counters: Option<Counters>,
    },
    /// Node's cluster IPC (JSON lines on a stream, one handle in flight).
    Node {
        /// herd's preload's herd-protocol channel, if the worker has one.
        fast: Option<FastChannel>,
        /// `wait_ready`: the worker joins the rotation on
        /// `process.send('ready')` (after `listening`), not on `listening`
        /// alone.
        wait_ready: bool,
        /// Readiness signals seen: [`Slot::LISTENING`] | [`Slot::READY`].
        signals: AtomicU8,
    },
}

/// The shared page a herd worker counts its closes in, and how many of
/// them (and of their nanoseconds) have been applied to `in_flight` and the
/// EWMA.
pub struct Counters {
    pub(super) page: SharedPage,
    pub(super) closes_seen: AtomicU64,
    pub(super) closed_ns_seen: AtomicU64,
}

/// A Node worker's second channel, in herd's protocol: herd's preload takes
/// connections on it once it sent `R` (`ready`); until then they go as
/// Node's `newconn`.
pub struct FastChannel {
    ours: OwnedFd,
    /// The daemon's copy of the worker's end.
    peer: OwnedFd,
    pub(super) ready: AtomicBool,
}

impl Wire {
    /// A herd worker's: the daemon's copy of its end, and its counters page.
    pub fn herd(peer: Option<OwnedFd>, counters: Option<SharedPage>) -> Wire {
        Wire::Herd {
            peer,
            counters: counters.map(|page| Counters {
                page,
                closes_seen: AtomicU64::new(0),
                closed_ns_seen: AtomicU64::new(0),
            }),
        }
    }

    /// A Node worker's: the herd-protocol channel of herd's preload (the
    /// daemon's end, and its copy of the worker's end), if any.
    pub fn node(fast: Option<(OwnedFd, OwnedFd)>, wait_ready: bool) -> Wire {
        Wire::Node {
            fast: fast.map(|(ours, peer)| FastChannel {
                ours,
                peer,
                ready: AtomicBool::new(false),
            }),
            wait_ready,
            signals: AtomicU8::new(0),
        }
    }

    /// Its protocol.
    pub fn proto(&self) -> SlotProto {
        match self {
            Wire::Herd { .. } => SlotProto::Herd,
            Wire::Node { .. } => SlotProto::Node,
        }
    }
}

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

/// A slot's warm-up state in its `AtomicU8`.
const WARMUP_NOT_STARTED: u8 = 0;
const WARMUP_RUNNING: u8 = 1;
const WARMUP_DONE: u8 = 2;

/// How connections reach a worker: its protocol, and how it reports
/// closes (the wire enum `herd show` prints).
pub use crate::protocol::Channel as ChannelKind;

impl Slot {
    /// A slot for a freshly started worker; it joins the rotation once the
    /// worker says it is ready. `chan` must be non-blocking.
    pub fn new(instance_id: u32, pid: i32, chan: OwnedFd, wire: Wire) -> Slot {
        Slot {
            instance_id,
            pid,
            chan,
            wire,
            state: Mutex::new(SlotState::default()),
            reader: Mutex::new(Default::default()),
            in_flight: AtomicU32::new(0),
            dispatched: AtomicU64::new(0),
            lost_started: AtomicU64::new(0),
            cut_after_write: AtomicU64::new(0),
            saved: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            handed_on: AtomicU64::new(0),
            metrics: std::sync::OnceLock::new(),
            active: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            ewma_ns: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
            samples: AtomicU32::new(0),
            floor: Floor::default(),
            suspect: AtomicBool::new(false),
            probed_at: AtomicU64::new(0),
            probed_turn: AtomicU64::new(0),
            probe_min: AtomicU64::new(u64::MAX),
            on_trial: AtomicBool::new(false),
            runq_wait: AtomicU64::new(0),
            runq_at: AtomicU64::new(0),
            runq_says: AtomicU8::new(0),
            timed: AtomicBool::new(false),
            keep: AtomicBool::new(true),
            replay: AtomicBool::new(false),
            http: AtomicBool::new(false),
            acceptor_drain_at: AtomicU64::new(0),
            closed_at: AtomicU64::new(0),
            warmup: AtomicU8::new(WARMUP_NOT_STARTED),
            queued: tokio::sync::Notify::new(),
        }
    }

    /// Its protocol.
    pub fn proto(&self) -> SlotProto {
        self.wire.proto()
    }

    /// The daemon's copy of the worker's end of its herd-protocol channel
    /// (a herd worker's channel; a Node worker's preload channel), from
    /// which what the worker has not read can be taken back.
    pub(super) fn peer(&self) -> Option<BorrowedFd<'_>> {
        match &self.wire {
            Wire::Herd { peer, .. } => peer.as_ref().map(|p| p.as_fd()),
            Wire::Node { fast, .. } => fast.as_ref().map(|f| f.peer.as_fd()),
        }
    }

    /// A herd worker's counters page, if it has one.
    pub(super) fn counters(&self) -> Option<&Counters> {
        match &self.wire {
            Wire::Herd { counters, .. } => counters.as_ref(),
            Wire::Node { .. } => None,
        }
    }

    /// Node: the daemon's end of the herd-protocol channel, if any.
    pub fn fast_chan(&self) -> Option<BorrowedFd<'_>> {
        match &self.wire {
            Wire::Node { fast, .. } => fast.as_ref().map(|f| f.ours.as_fd()),
            Wire::Herd { .. } => None,
        }
    }

    /// Node: the preload said `R` on the herd-protocol channel: connections
    /// go there from now on.
    pub fn set_fast_ready(&self) {
        if let Wire::Node { fast: Some(f), .. } = &self.wire {
            f.ready.store(true, Ordering::Release);
            self.flush();
        }
    }

    /// Claims the warm-up: the first caller starts it.
    pub fn begin_warmup(&self) -> Warmup {
        match self.warmup.compare_exchange(
            WARMUP_NOT_STARTED,
            WARMUP_RUNNING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Warmup::Start,
            Err(WARMUP_RUNNING) => Warmup::Running,
            Err(_) => Warmup::Done,
        }
    }

    /// The warm-up is over.
    pub fn end_warmup(&self) {
        self.warmup.store(WARMUP_DONE, Ordering::Release);
    }

    /// For an acceptor thread about to read the channel: `false` when one
    /// did less than `gap` ago; otherwise records now as its read and says
    /// `true` (one clock read either way: this is on every dispatch).
    pub fn claim_acceptor_drain(&self, gap: std::time::Duration) -> bool {
        let now = ns_since_epoch(Instant::now());
        let at = self.acceptor_drain_at.load(Ordering::Relaxed);
        if at != 0 && now.saturating_sub(at) < gap.as_nanos() as u64 {
            return false;
        }
        self.acceptor_drain_at.store(now, Ordering::Relaxed);
        true
    }

    /// Whether an acceptor thread read the channel less than `d` ago.
    pub fn acceptor_drained_within(&self, d: std::time::Duration) -> bool {
        let at = self.acceptor_drain_at.load(Ordering::Relaxed);
        at != 0 && ns_since_epoch(Instant::now()).saturating_sub(at) < d.as_nanos() as u64
    }

    /// How connections reach the worker (`herd show`'s `channel`).
    pub fn channel_kind(&self) -> ChannelKind {
        match self.wire {
            Wire::Herd { .. } if self.counts_closes() => ChannelKind::HerdCounters,
            Wire::Herd { .. } => ChannelKind::Herd,
            Wire::Node { .. } if self.is_fast() => ChannelKind::NodePreload,
            Wire::Node { .. } => ChannelKind::NodeCluster,
        }
    }

    /// Whether connections go over the herd-protocol channel of a Node slot.
    pub fn is_fast(&self) -> bool {
        matches!(&self.wire, Wire::Node { fast: Some(f), .. } if f.ready.load(Ordering::Acquire))
    }

    /// The Node worker's server listens.
    pub const LISTENING: u8 = 1;
    /// The Node worker sent `process.send('ready')`.
    pub const READY: u8 = 2;

    /// Records a Node readiness signal; true when the worker is now ready
    /// to be sent connections (listening, and ready too under
    /// `wait_ready`). herd workers have no such signals: always true.
    pub fn note_signal(&self, signal: u8) -> bool {
        let Wire::Node {
            wait_ready,
            signals,
            ..
        } = &self.wire
        else {
            return true;
        };
        let seen = signals.fetch_or(signal, Ordering::AcqRel) | signal;
        let need = if *wait_ready {
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

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A panic while holding the lock must not wedge dispatch forever.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The worker is ready: join the rotation.
    pub fn set_ready(&self) {
        self.active.store(true, Ordering::Release);
    }

    /// Takes the slot out of the rotation (it keeps what it has).
    pub fn set_inactive(&self) {
        self.active.store(false, Ordering::Release);
    }

    /// How long the worker has left a connection unread (herd: the same
    /// message at the head of its channel; Node: the oldest handle not
    /// accepted). `None` when it is keeping up.
    pub fn stalled_for(&self, now: Instant) -> Option<std::time::Duration> {
        let mut st = self.lock();
        let node = st
            .unacked
            .front()
            .map(|(_, _, t)| now.saturating_duration_since(*t));
        let Some(peer) = self.peer() else {
            return node;
        };
        let mut head = [0u8; 9];
        let herd = match crate::sys::fdpass::peek(peer, &mut head) {
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
}

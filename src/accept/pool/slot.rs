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
/// closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// herd's protocol, closes reported by id.
    Herd,
    /// herd's protocol, closes counted in a shared page.
    HerdCounters,
    /// A Node app through herd's preload (herd's protocol).
    NodePreload,
    /// A Node app through Node's own `newconn` messages.
    NodeCluster,
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
            warmup: AtomicU8::new(WARMUP_NOT_STARTED),
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
    pub fn channel_kind(&self) -> ChannelKind {
        match self.proto {
            SlotProto::Herd if self.counts_closes() => ChannelKind::HerdCounters,
            SlotProto::Herd => ChannelKind::Herd,
            SlotProto::Node if self.is_fast() => ChannelKind::NodePreload,
            SlotProto::Node => ChannelKind::NodeCluster,
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
}

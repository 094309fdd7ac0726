//! The daemon's copies of the connections a slot sent (see the module doc
//! of `pool`): kept until the worker has started on them, shared with an
//! acceptor's ring while it sends them ([`Batch`]), and on the worker's
//! death handed on when untouched, replayed when read and unanswered
//! (`replay`), or counted lost ([`Deaths`]).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::replay::{Held, Replay};
use super::{Slot, SlotState};
use crate::fdpass::herd::Msg;
use crate::sys::fdpass::recv_with_fds;

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
pub(super) fn own(fd: Arc<OwnedFd>) -> Option<OwnedFd> {
    Arc::try_unwrap(fd).or_else(|f| f.try_clone()).ok()
}

/// Copies of closed connections a slot may keep before it lets go of them
/// (workers that count their closes report no ids; see `sweep_closed`).
const SWEEP_EVERY: usize = 16;

/// Most connections a slot remembers as let go of before their close
/// report (see [`Slot::sweep_locked`]).
const MAX_SWEPT: usize = 65_536;

/// What the deaths of an instance's processes cost: connections handed on
/// from the daemon's copies, and connections lost because the process had
/// started on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deaths {
    /// Received, untouched, answered by another worker.
    pub saved: u64,
    /// Read and not answered, an idempotent request: replayed to another
    /// worker (see `replay`).
    pub replayed: u64,
    /// Started on and not answered (a byte read, none written), closed
    /// with the process.
    pub lost_started: u64,
    /// Written to (an answer begun, usually whole) and not yet shut down,
    /// closed with the process: the client keeps what was written.
    pub cut_after_write: u64,
    /// Handed to its processes.
    pub dispatched: u64,
    /// Closed by them (Node's `newconn` path: accepted).
    pub closed: u64,
    /// Given back before they had them (see [`Slot::handed_on`]).
    pub handed_on: u64,
}

impl Slot {
    /// herd protocol: takes up to [`MAX_IDS`] queued connections (one for a
    /// Node worker on the preload's channel) and their `C` message (ids
    /// assigned), for a sender that sends them itself on [`Self::send_chan`]
    /// (an acceptor's ring: [`crate::sys::uring::Outbox`]); it reports back
    /// only a failure, with [`Self::send_failed`]. `None` for a Node worker
    /// on Node's own protocol, a dead slot, or an empty queue.
    ///
    /// [`MAX_IDS`]: crate::fdpass::herd::MAX_IDS
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
            st.held.extend((first..).zip(shared.iter().map(|fd| Held {
                request: self.request_of(fd.as_fd()),
                fd: fd.clone(),
            })));
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
                back.extend(own(copy.fd));
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
        self.returned(back.len());
        back
    }

    /// After closes counted in the shared page: once the copies outnumber
    /// the connections still open by [`SWEEP_EVERY`], the surplus is mostly
    /// closed ones; let go of them (one kernel query each, not one per
    /// pick).
    pub(super) fn sweep_closed(&self) {
        let mut st = self.lock();
        let open = self.in_flight.load(Ordering::Relaxed) as usize;
        let held = st.held.len();
        if held > open + SWEEP_EVERY {
            Self::sweep_locked(&mut st, held - open + 1, false);
        }
    }

    /// Lets go of the copies of connections the worker has started on (the
    /// kernel says so: see [`crate::sys::tcp::progress`]), looking at no
    /// more than `at_most` of them. Workers that count their closes in the
    /// shared page report no ids, so this is how their copies go: after
    /// closes ([`Self::sweep_closed`]) and on the slot task's tick. With
    /// `record` (a worker that reports its closes by id) each one let go
    /// of is remembered, with what the kernel said, until its close report
    /// comes: should the worker die first, it is counted by that.
    pub(super) fn sweep_locked(st: &mut SlotState, at_most: usize, record: bool) {
        // Oldest first, up to the first one the worker has not touched:
        // workers start on their connections roughly in order, so what
        // lies beyond it is mostly untouched too (the tick's sweep, and
        // the worker's close reports, take the rest). A copy the worker
        // has only read stays: what it becomes (answered, or lost or
        // replayed with the worker) is judged when it matters.
        use crate::sys::tcp::Progress;
        let mut started = Vec::new();
        for (id, copy) in st.held.iter().take(at_most) {
            match crate::sys::tcp::progress(copy.fd.as_fd()) {
                Ok(Progress::Untouched) => break,
                Ok(Progress::Read) => {}
                Ok(p) => started.push((*id, p)),
                // Not a TCP socket the kernel can tell about: keep nothing.
                Err(_) => started.push((*id, Progress::Finished)),
            }
        }
        for (id, p) in started {
            st.held.remove(&id);
            if record {
                st.swept.insert(id, p);
            }
        }
        while st.swept.len() > MAX_SWEPT {
            st.swept.pop_first(); // reports that never came
        }
    }

    /// The slot task's tick: lets go of the copies of connections the
    /// worker has written to or finished (long-lived ones, between closes).
    pub fn sweep_started(&self) {
        let record = !self.counts_closes();
        Self::sweep_locked(&mut self.lock(), 1024, record);
    }

    /// Copies of connections the daemon holds for this worker.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// Marks the slot dead and returns every connection it still holds
    /// (Node: not yet accepted; herd: still unread in the worker's end of
    /// the channel; then the queue) for re-dispatch, and the requests it
    /// had read and not answered that can be replayed.
    pub fn kill(&self) -> (Vec<OwnedFd>, Vec<Replay>) {
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
        // by another; the rest are lost (read, not answered) or cut
        // (written to) with it.
        use crate::sys::tcp::Progress;
        let (mut saved, mut lost, mut cut) = (0u64, 0u64, 0u64);
        let mut replays = Vec::new();
        let held = std::mem::take(&mut st.held);
        let held_n = held.len() as u64;
        for (_, copy) in held {
            match crate::sys::tcp::progress(copy.fd.as_fd()) {
                Ok(Progress::Untouched) => {
                    if let Some(fd) = own(copy.fd) {
                        fds.push(fd);
                        saved += 1;
                    }
                }
                Ok(Progress::Read) => match Slot::replayable(&copy) {
                    Some(taken) => {
                        let Held { fd, request } = copy;
                        match (own(fd), request) {
                            (Some(fd), Some(request)) => {
                                replays.push(Replay { fd, request, taken })
                            }
                            _ => lost += 1,
                        }
                    }
                    None => lost += 1,
                },
                // Node writes its answer and shuts down a loop turn later:
                // the client has it unless it was cut short.
                Ok(Progress::Written) => cut += 1,
                // Answered (or abandoned by the client) before the end,
                // its close report lost with the worker.
                Ok(Progress::Finished | Progress::PeerGone) | Err(_) => {}
            }
        }
        // Let go of once the worker had written to them, and not reported
        // closed: answered, or cut if it had not shut them down yet.
        let swept = std::mem::take(&mut st.swept);
        let swept_n = swept.len() as u64;
        cut += swept.values().filter(|&&p| p == Progress::Written).count() as u64;
        st.started.clear();
        let in_flight = u64::from(self.in_flight.swap(0, Ordering::Relaxed));
        drop(st);
        let back = fds.len() as u64 - saved;
        let replayed = replays.len() as u64;
        // In flight, not in the channel or the queue, and no copy held:
        // the daemon let go of it once the worker had started on it.
        // (Workers that count their closes report no ids: what their
        // sweeps let go of is in this count.)
        lost += in_flight.saturating_sub(back + held_n + swept_n);
        // The rest were answered, their close reports lost with the worker.
        let finished = in_flight.saturating_sub(back + saved + replayed + lost + cut);
        self.closed.fetch_add(finished, Ordering::Relaxed);
        self.handed_on.fetch_add(back, Ordering::Relaxed);
        self.saved.fetch_add(saved, Ordering::Relaxed);
        self.replayed.fetch_add(replayed, Ordering::Relaxed);
        self.lost_started.fetch_add(lost, Ordering::Relaxed);
        self.cut_after_write.fetch_add(cut, Ordering::Relaxed);
        (fds, replays)
    }

    /// Takes back the connections the worker has not read from its
    /// herd-protocol channel (through the daemon's copy of its end), for
    /// re-dispatch: a worker that closed its server reads no more.
    pub fn reclaim(&self) -> Vec<OwnedFd> {
        let mut st = self.lock();
        let fds = self.unread(&mut st);
        self.returned(fds.len());
        fds
    }

    fn unread(&self, st: &mut SlotState) -> Vec<OwnedFd> {
        let mut fds = Vec::new();
        let Some(peer) = self.peer() else {
            return fds;
        };
        let mut buf = [0u8; crate::fdpass::herd::MAX_MSG];
        while let Ok((n, _)) = recv_with_fds(peer, &mut buf, &mut fds, true) {
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

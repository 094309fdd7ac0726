//! Requests a dead worker had read and not answered, sent again to
//! another worker (Node apps on herd's preload channel).
//!
//! The daemon's copies ([`super::copies`]) save every connection a dead
//! worker had not touched; the kernel cannot give back the bytes of one it
//! had read. So, for workers that can take a replay, the daemon peeks at
//! each connection's request before sending it ([`Slot::request_of`]: one
//! `recv(MSG_PEEK)`) and keeps it with the copy when it is a whole
//! idempotent HTTP request ([`crate::http::replayable_request`]). Should
//! the worker die having read it and written nothing, and the client have
//! sent nothing beyond it, the connection goes to another worker with the
//! bytes the dead one had taken ([`Replay`]); herd's preload puts them back
//! in front of the stream, and the app answers as if nothing happened
//! (nginx's `proxy_next_upstream` does the same for idempotent requests).
//! Only for an app whose server said it speaks HTTP (`H`): no peek for the
//! others. `HERD_REPLAY=0` turns it off.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::node::{send_all_with_fd, NOT_A_CONNECTION};
use super::{Pool, Slot, SlotProto};
use crate::http::{replayable_request, MAX_REPLAY};

/// The daemon's copy of a connection sent to a worker, and the request it
/// carried when sent if it may be replayed.
pub(super) struct Held {
    pub(super) fd: Arc<OwnedFd>,
    pub(super) request: Option<Box<[u8]>>,
}

/// A connection whose request a dead worker had read and not answered.
pub struct Replay {
    /// The connection.
    pub fd: OwnedFd,
    /// Its whole request, as peeked before the dead worker had it.
    pub request: Box<[u8]>,
    /// How much of it the dead worker had taken off the socket (the rest
    /// is still in the kernel's receive queue).
    pub taken: usize,
}

/// Replays held while no worker that takes them is in the rotation.
const MAX_PENDING: usize = 4096;

/// Its request, when `fd` carries a whole replayable one already.
fn peek_request(fd: BorrowedFd<'_>) -> Option<Box<[u8]>> {
    // One byte more than we keep: a longer request is seen as such.
    let mut buf = [0u8; MAX_REPLAY + 1];
    let n = crate::sys::tcp::peek(fd, &mut buf).ok()?;
    replayable_request(&buf[..n]).then(|| buf[..n].into())
}

impl Slot {
    /// Whether this worker takes replays: a Node worker whose preload
    /// channel is up, of an app whose server speaks HTTP (`HERD_REPLAY`
    /// and the copies on).
    pub fn can_replay(&self) -> bool {
        self.replay.load(Ordering::Relaxed)
            && self.http.load(Ordering::Relaxed)
            && self.proto() == SlotProto::Node
            && self.is_fast()
    }

    /// The request to keep with the copy of `fd`, for a slot that takes
    /// replays (nothing for the others: no peek).
    pub(super) fn request_of(&self, fd: BorrowedFd<'_>) -> Option<Box<[u8]>> {
        if !self.can_replay() {
            return None;
        }
        peek_request(fd)
    }

    /// Sends `r` to this worker (herd's preload puts its bytes back in
    /// front of the stream); the worker now holds it like any connection
    /// sent, copy and request kept. Gives it back if the worker cannot take
    /// it.
    pub fn replay(&self, r: Replay) -> Result<(), Replay> {
        if !self.can_replay() {
            return Err(r);
        }
        let mut st = self.lock();
        if self.is_dead() {
            return Err(r);
        }
        let id = st.next_id;
        let msg = crate::fdpass::node::replay(id, &r.request[..r.taken]);
        if send_all_with_fd(self.chan.as_fd(), &msg, r.fd.as_fd()).is_err() {
            // A broken channel, as on Node's `newconn` path.
            self.dead.store(true, Ordering::Release);
            return Err(r);
        }
        st.next_id += 1;
        // Node acknowledges the handle: match that ack to nothing.
        st.node_handles_in_flight.push_back(NOT_A_CONNECTION);
        st.held.insert(
            id,
            Held {
                fd: Arc::new(r.fd),
                request: Some(r.request),
            },
        );
        self.time_sent(&mut st, id, 1);
        drop(st);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.dispatched.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Of a dead worker's copy in state *read, nothing written*: how much
    /// of its kept request the worker had taken, when it can be replayed
    /// (request kept, the client sent nothing beyond it, some taken).
    pub(super) fn replayable(held: &Held) -> Option<usize> {
        let request = held.request.as_ref()?;
        let (taken, received) = crate::sys::tcp::consumed(held.fd.as_fd()).ok()?;
        (received == request.len() as u64 && taken > 0).then_some(taken as usize)
    }
}

impl Pool {
    /// Sends each replay to a worker that takes them, the least loaded
    /// first; held until one is in the rotation.
    pub(super) fn replay(&self, replays: Vec<Replay>) {
        if replays.is_empty() {
            return;
        }
        self.redispatched
            .fetch_add(replays.len() as u64, Ordering::Relaxed);
        for r in replays {
            self.replay_one(r);
        }
    }

    fn replay_one(&self, mut r: Replay) {
        for _ in 0..4 {
            let best = self
                .slots()
                .into_iter()
                .filter(|s| s.is_active() && s.can_replay())
                .min_by_key(|s| s.load());
            let Some(slot) = best else { break };
            match slot.replay(r) {
                Ok(()) => return,
                Err(back) => r = back,
            }
        }
        let mut pending = self
            .pending_replays
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if pending.len() < MAX_PENDING {
            pending.push(r);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Replays waiting for a worker that takes them.
    pub(super) fn pending_replays(&self) -> usize {
        self.pending_replays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// A worker joined the rotation, or its preload's channel came up:
    /// replays held for want of one that takes them go.
    pub fn flush_replays(&self) {
        let pending = std::mem::take(
            &mut *self
                .pending_replays
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for r in pending {
            self.replay_one(r);
        }
    }
}

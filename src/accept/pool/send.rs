//! Handing connections to a slot: its queue, and the queue's way to the
//! worker (herd `C` messages, or Node `newconn`s within the handle window),
//! as far as the channel takes it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::node::{send_all_with_fd, NODE_HANDLE_WINDOW};
use super::replay::Held;
use super::{Slot, SlotProto, SlotState};
use crate::fdpass::herd::{Msg, MAX_IDS};
use crate::sys::fdpass::send_with_fds;

/// Outcome of handing a connection to a slot.
pub(super) enum Deliver {
    Ok,
    Dead(OwnedFd),
}

impl Slot {
    /// Where herd-protocol `C` messages go and how many connections each
    /// carries: a herd worker's channel, up to [`MAX_IDS`]; a Node
    /// worker's second channel once its preload is ready, one (Node's pipe
    /// hands the app one descriptor per read). `None`: Node's own protocol.
    pub(super) fn herd_route(&self) -> Option<(BorrowedFd<'_>, usize)> {
        match self.proto() {
            SlotProto::Herd => Some((self.chan.as_fd(), MAX_IDS)),
            SlotProto::Node if self.is_fast() => self.fast_chan().map(|f| (f, 1)),
            SlotProto::Node => None,
        }
    }

    /// Where [`Self::take_batch`]'s messages go.
    pub fn send_chan(&self) -> BorrowedFd<'_> {
        self.herd_route()
            .map_or(self.chan.as_fd(), |(chan, _)| chan)
    }

    /// Queues `fd` for the worker and, with `send`, sends the queue; else
    /// the caller flushes later (a batch of connections in one message).
    pub(super) fn deliver(&self, fd: OwnedFd, send: bool) -> Deliver {
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
    pub(super) fn flush_locked(&self, st: &mut SlotState) {
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
            // Peeked before the worker can read them (one per connection
            // when copies are kept, none otherwise).
            let keep = self.keep.load(Ordering::Relaxed);
            let requests: Vec<Option<Box<[u8]>>> = st
                .queue
                .iter()
                .take(if keep { n } else { 0 })
                .map(|f| self.request_of(f.as_fd()))
                .collect();
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
                    if keep {
                        let copies = sent.into_iter().map(Arc::new).zip(requests);
                        st.held.extend(
                            (first..).zip(copies.map(|(fd, request)| Held { fd, request })),
                        );
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
}

//! The Node-protocol side of a slot: the server key, the window of handles
//! in flight and Node's acks of them, and whole writes on Node's stream
//! channel.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::Slot;
use crate::sys::fdpass::send_with_fds;

/// Node handles sent ahead of their NODE_HANDLE_ACK. Node's *sending* side
/// keeps one handle in flight (`_handleQueue` in internal/child_process);
/// its receiving side takes any number, one per `recvmsg`, as long as each
/// `sendmsg` carries one fd (verified live with 8, 64 and 200 back to back,
/// Node 20.20.2; see `fdpass::node` tests). A small window removes the
/// round trip per connection without letting a slow worker hoard handles.
pub const NODE_HANDLE_WINDOW: usize = 8;

/// Marks a handle in flight that is not a connection (see `send_node_handle`).
pub(super) const NOT_A_CONNECTION: u64 = u64::MAX;

impl Slot {
    /// Sends raw protocol bytes (Node replies) on the channel.
    pub fn send_raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        let _st = self.lock(); // keep whole messages from interleaving
        send_all(self.chan.as_fd(), bytes)
    }

    /// Node: the server key (from queryServer) used in newconn messages.
    pub fn set_node_key(&self, key: String) {
        let mut st = self.lock();
        st.node_key = Some(key);
        self.flush_locked(&mut st);
    }

    /// Node: whether the worker has a server on the app's port (its
    /// queryServer was for it). One that listens only on other ports (an
    /// `increment_var` PORT) is never in the rotation: connections could not
    /// be sent to it.
    pub fn has_node_key(&self) -> bool {
        self.lock().node_key.is_some()
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
        if accepted {
            self.done(1);
        } else {
            self.returned(1);
        }
        (!accepted).then_some(fd)
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
pub(super) fn send_all_with_fd(
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

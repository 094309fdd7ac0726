//! A ring that owns the connections it serves: each connection's socket,
//! input buffer and output buffer live in the ring's slab, so every request
//! it submits points only at memory it keeps in place until the request
//! completes. Its users (the io_uring hello worker, `bench::hello_uring`)
//! get a safe API: they read and fill a connection's buffers only while
//! none of its requests is in flight ([`ConnRing::conn`] says `None`
//! otherwise), and hand the socket to the ring to shut and close.
//!
//! One request per connection at a time: a `RECV` into the free part of its
//! input buffer, a `SEND` of the unsent part of its output, or a `SHUTDOWN`
//! hard-linked to a `CLOSE`. Besides connections, the ring polls other
//! descriptors for readability ([`ConnRing::poll`]), which name no memory.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};

use io_uring::{opcode, squeue, types, IoUring};

/// One connection: its socket and buffers, what its user keeps of it
/// (`meta`), and whether a request of it is in flight (then nothing here
/// may be touched, nor the slot reused).
pub struct Conn<T> {
    fd: Option<OwnedFd>,
    /// Bytes received: `input[..filled]`.
    pub input: Vec<u8>,
    /// How much of `input` holds data.
    pub filled: usize,
    /// Bytes to send: `output[sent..]` is still to go.
    pub output: Vec<u8>,
    /// How much of `output` is sent.
    pub sent: usize,
    /// The user's own state of this connection.
    pub meta: T,
    busy: bool,
}

/// What finished: a request of connection `slot`, or a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// A receive: bytes read (0: EOF), or a negative errno.
    Recv { slot: usize, res: i32 },
    /// A send: bytes sent, or a negative errno.
    Send { slot: usize, res: i32 },
    /// The poll with this token fired (or failed: `res` < 0).
    Poll { token: u64, res: i32 },
    /// A failed shutdown or close (a reset peer): nothing to do.
    Closed,
}

const OP_POLL: u64 = 0;
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;
const OP_CLOSE: u64 = 3;

fn user_data(slot: u64, op: u64) -> u64 {
    (slot << 2) | op
}

/// The ring and its connections (each with a `T` of its user's).
pub struct ConnRing<T> {
    ring: IoUring,
    conns: Vec<Option<Conn<T>>>,
    free: Vec<usize>,
    open: usize,
}

impl<T> ConnRing<T> {
    /// A ring of `entries` (single issuer with deferred task work where the
    /// kernel has them).
    pub fn new(entries: u32) -> io::Result<ConnRing<T>> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| IoUring::new(entries))?;
        Ok(ConnRing {
            ring,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
        })
    }

    /// Connections added and not closed yet.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Takes `fd` in, with an input buffer of `input` bytes, room for
    /// `output` bytes of output and the user's `meta`; returns its slot.
    pub fn add(&mut self, fd: OwnedFd, input: usize, output: usize, meta: T) -> usize {
        let conn = Conn {
            fd: Some(fd),
            input: vec![0u8; input],
            filled: 0,
            output: Vec::with_capacity(output),
            sent: 0,
            meta,
            busy: false,
        };
        self.open += 1;
        match self.free.pop() {
            Some(s) => {
                self.conns[s] = Some(conn);
                s
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        }
    }

    /// Connection `slot`, while none of its requests is in flight.
    pub fn conn(&mut self, slot: usize) -> Option<&mut Conn<T>> {
        self.conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| !c.busy)
    }

    /// Receives into the free part of `slot`'s input buffer.
    pub fn recv(&mut self, slot: usize) -> io::Result<()> {
        let c = self.idle(slot)?;
        let free = &mut c.input[c.filled..];
        let fd = c.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
        let e = opcode::Recv::new(types::Fd(fd), free.as_mut_ptr(), free.len() as u32)
            .build()
            .user_data(user_data(slot as u64, OP_RECV));
        c.busy = true;
        self.push(e)
    }

    /// Sends the unsent part of `slot`'s output.
    pub fn send(&mut self, slot: usize) -> io::Result<()> {
        let c = self.idle(slot)?;
        let rest = &c.output[c.sent..];
        let fd = c.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
        let e = opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(slot as u64, OP_SEND));
        c.busy = true;
        self.push(e)
    }

    /// Shuts `slot` down (`SHUT_WR`) and closes it through the ring, and
    /// frees the slot: the socket is the ring's to close now. Returns the
    /// connection's `meta`.
    pub fn close(&mut self, slot: usize) -> io::Result<T> {
        self.idle(slot)?;
        let mut c = self.conns[slot].take().expect("checked by idle");
        self.free.push(slot);
        self.open -= 1;
        let fd =
            c.fd.take()
                .expect("a live connection has its socket")
                .into_raw_fd();
        // The close runs whether or not the shutdown worked (a hard link).
        let shut = opcode::Shutdown::new(types::Fd(fd), libc::SHUT_WR)
            .build()
            .user_data(user_data(slot as u64, OP_CLOSE))
            .flags(squeue::Flags::IO_HARDLINK | squeue::Flags::SKIP_SUCCESS);
        let close = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(user_data(slot as u64, OP_CLOSE))
            .flags(squeue::Flags::SKIP_SUCCESS);
        self.push(shut)?;
        self.push(close)?;
        Ok(c.meta)
    }

    /// Polls `fd` for readability once; [`Done::Poll`] with `token` when it
    /// is. The caller keeps `fd` open until then.
    pub fn poll(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(user_data(token, OP_POLL));
        self.push(e)
    }

    /// Submits what is queued and waits for at least one completion
    /// (`EINTR` counts as one); returns what finished.
    pub fn wait(&mut self) -> io::Result<Vec<Done>> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        Ok(done
            .into_iter()
            .map(|(ud, res)| {
                let (slot, op) = (ud >> 2, ud & 3);
                if matches!(op, OP_RECV | OP_SEND) {
                    if let Some(c) = self.conns.get_mut(slot as usize).and_then(Option::as_mut) {
                        c.busy = false;
                    }
                }
                let slot = slot as usize;
                match op {
                    OP_POLL => Done::Poll {
                        token: ud >> 2,
                        res,
                    },
                    OP_RECV => Done::Recv { slot, res },
                    OP_SEND => Done::Send { slot, res },
                    _ => Done::Closed,
                }
            })
            .collect())
    }

    /// Submits what is queued without waiting (the closes queued last).
    pub fn submit(&mut self) -> io::Result<()> {
        self.ring.submit().map(|_| ())
    }

    fn idle(&mut self, slot: usize) -> io::Result<&mut Conn<T>> {
        self.conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| !c.busy)
            .ok_or_else(|| io::Error::other(format!("connection {slot} is gone or busy")))
    }

    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry this type builds points only at the input
            // or output buffer of a connection in `self.conns` (or at no
            // memory: poll, shutdown, close). A connection with a request in
            // flight is `busy`: `conn` and `idle` refuse it, so its buffers
            // are neither touched nor resized, and its slot is neither freed
            // nor reused, until `wait` reaps that request. The slab's
            // `Vec<Option<Conn>>` may move `Conn` values when it grows, but
            // the buffers are separate heap allocations that do not move.
            // On drop, the ring goes before the slab (field order), and
            // dropping an io_uring waits for nothing: so the last requests
            // are not outstanding when it is dropped only if the caller
            // reaped them; `Drop` below makes sure of it.
            let pushed = unsafe { self.ring.submission().push(&e) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }
}

impl<T> Drop for ConnRing<T> {
    /// Requests still in flight would write into buffers about to be
    /// freed: cancel them and wait until the kernel is done with them.
    fn drop(&mut self) {
        let busy = self.conns.iter().flatten().filter(|c| c.busy).count();
        if busy == 0 {
            return;
        }
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(u64::MAX);
        // SAFETY: a cancel request names no memory of ours.
        let _ = unsafe { self.ring.submission().push(&cancel) };
        let mut left = busy;
        while left > 0 {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            for c in self.ring.completion() {
                let op = c.user_data() & 3;
                if c.user_data() != u64::MAX && matches!(op, OP_RECV | OP_SEND) {
                    left -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fdpass::{socketpair, PairKind};
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_connection_is_out_of_reach_while_its_request_is_in_flight() {
        if crate::sys::uring::probe().is_err() {
            crate::testing::skip("uring", "io_uring is not available here");
            return;
        }
        let (ours, theirs) = socketpair(PairKind::Stream).unwrap();
        let mut peer = std::os::unix::net::UnixStream::from(theirs);
        let mut ring = ConnRing::<()>::new(8).unwrap();
        let slot = ring.add(ours, 64, 64, ());
        ring.recv(slot).unwrap();
        assert!(ring.conn(slot).is_none(), "busy while the receive is out");
        assert!(ring.send(slot).is_err() && ring.close(slot).is_err());
        peer.write_all(b"ping").unwrap();
        let done = ring.wait().unwrap();
        assert_eq!(done, vec![Done::Recv { slot, res: 4 }]);
        let c = ring.conn(slot).expect("idle again");
        c.filled += 4;
        assert_eq!(&c.input[..4], b"ping");
        c.output.extend_from_slice(b"pong");
        ring.send(slot).unwrap();
        assert_eq!(ring.wait().unwrap(), vec![Done::Send { slot, res: 4 }]);
        let () = ring.close(slot).unwrap();
        ring.submit().unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"pong", "sent, then shut and closed");
        assert_eq!(ring.open(), 0);
        // A poll names no memory; a ring dropped with a receive in flight
        // cancels it and waits for it instead of leaving it to write into
        // freed memory.
        let (a, _b) = socketpair(PairKind::Stream).unwrap();
        ring.poll(a.as_fd(), 7).unwrap();
        let (c, _d) = socketpair(PairKind::Stream).unwrap();
        let s = ring.add(c, 64, 0, ());
        ring.recv(s).unwrap();
        ring.submit().unwrap();
        drop(ring);
    }
}

//! The hello worker on one io_uring ring instead of tokio (epoll), for
//! issue #4's "measure which is faster": `HERD_HELLO_IO=uring` in the
//! worker's environment, fdpass mode only (connections from herd's
//! channel). Same responses, same framing ([`super::hello::answer`]), same
//! close counting and drain; no artificial delay (`--skew-ms` keeps the
//! tokio worker).
//!
//! Each connection has one request in flight at a time: a `RECV` into its
//! buffer, then a `SEND` of the responses, then either another `RECV` or a
//! `SHUTDOWN` linked to a `CLOSE`. The channel is watched with a `POLL_ADD`
//! and read with the worker library's `Channel::recv`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use super::hello::{answer, Responses, DRAINING, READ_BUF};
use crate::worker::{Channel, Received};

const OP_CHAN: u64 = 0;
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;
const OP_CLOSE: u64 = 3;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

struct Conn {
    fd: OwnedFd,
    id: u64,
    received: Instant,
    buf: Vec<u8>,
    filled: usize,
    skip: u64,
    out: Vec<u8>,
    sent: usize,
    close: bool,
}

fn user_data(slot: usize, op: u64) -> u64 {
    ((slot as u64) << 2) | op
}

struct Worker {
    ring: IoUring,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
}

impl Worker {
    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: for every caller, each entry points only at the
            // buffers of a connection in `self.conns`, whose heap storage
            // does not move (`buf` is never resized, `out` is not touched
            // while its send is in flight) and stays until that
            // connection's last request has completed: a connection is
            // removed only when its close is submitted, and nothing of it
            // is in flight then but the shutdown and close, which name
            // only its fd.
            let pushed = unsafe { self.ring.submission().push(&e) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn recv(&mut self, slot: usize) -> io::Result<()> {
        let c = self.conns[slot].as_mut().expect("live connection");
        let free = &mut c.buf[c.filled..];
        let e = opcode::Recv::new(
            types::Fd(c.fd.as_raw_fd()),
            free.as_mut_ptr(),
            free.len() as u32,
        )
        .build()
        .user_data(user_data(slot, OP_RECV));
        self.push(e)
    }

    fn send(&mut self, slot: usize) -> io::Result<()> {
        let c = self.conns[slot].as_mut().expect("live connection");
        let rest = &c.out[c.sent..];
        let e = opcode::Send::new(
            types::Fd(c.fd.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data(slot, OP_SEND));
        self.push(e)
    }

    /// Shuts the connection down and closes it through the ring; reports
    /// the close to the daemon.
    fn close(&mut self, slot: usize, chan: &Channel) -> io::Result<()> {
        let c = self.conns[slot].take().expect("live connection");
        self.free.push(slot);
        self.open -= 1;
        chan.closed(c.id, c.received.elapsed());
        let fd = c.fd.into_raw_fd();
        // The close runs whether or not the shutdown worked (a hard link);
        // the fd is the ring's to close now.
        let shut = opcode::Shutdown::new(types::Fd(fd), libc::SHUT_WR)
            .build()
            .user_data(user_data(slot, OP_CLOSE))
            .flags(squeue::Flags::IO_HARDLINK | squeue::Flags::SKIP_SUCCESS);
        let close = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(user_data(slot, OP_CLOSE))
            .flags(squeue::Flags::SKIP_SUCCESS);
        self.push(shut)?;
        self.push(close)
    }

    fn add(&mut self, fd: OwnedFd, id: u64, responses: &Responses) -> io::Result<()> {
        let conn = Conn {
            fd,
            id,
            received: Instant::now(),
            buf: vec![0u8; READ_BUF],
            filled: 0,
            skip: 0,
            out: Vec::with_capacity(4 * responses.close.len()),
            sent: 0,
            close: false,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.conns[s] = Some(conn);
                s
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        self.open += 1;
        self.recv(slot)
    }
}

/// Serves connections from herd's channel on one io_uring ring until the
/// daemon closes the channel, after a `Stop` once open connections are
/// done, or on SIGINT/SIGTERM (drained the same way).
pub fn serve_channel(chan: Channel) -> io::Result<()> {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    chan.set_nonblocking(true)?;
    let responses = Responses::new(std::process::id());
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(1024)
        .or_else(|_| IoUring::new(1024))?;
    let mut w = Worker {
        ring,
        conns: Vec::new(),
        free: Vec::new(),
        open: 0,
    };
    let chan_fd = types::Fd(chan.as_fd().as_raw_fd());
    let poll_chan = || {
        opcode::PollAdd::new(chan_fd, libc::POLLIN as u32)
            .build()
            .user_data(OP_CHAN)
    };
    chan.ready()?;
    w.push(poll_chan())?;
    let mut draining_since: Option<Instant> = None;
    loop {
        match w.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        if SIGNALLED.load(Ordering::Relaxed) && draining_since.is_none() {
            DRAINING.store(true, Ordering::Relaxed);
            draining_since = Some(Instant::now());
        }
        let done: Vec<(u64, i32)> = w
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in done {
            let (slot, op) = ((ud >> 2) as usize, ud & 3);
            match op {
                OP_CHAN => loop {
                    match chan.recv(true)? {
                        Received::Conns(conns) => {
                            for c in conns {
                                w.add(OwnedFd::from(c.stream), c.id, &responses)?;
                            }
                        }
                        Received::WouldBlock => {
                            w.push(poll_chan())?;
                            break;
                        }
                        Received::Closed => return Ok(()),
                        Received::Stop => {
                            DRAINING.store(true, Ordering::Relaxed);
                            draining_since.get_or_insert_with(Instant::now);
                            w.push(poll_chan())?;
                            break;
                        }
                    }
                },
                OP_RECV => {
                    if res <= 0 {
                        w.close(slot, &chan)?;
                        continue;
                    }
                    let c = w.conns[slot].as_mut().expect("live connection");
                    c.filled += res as usize;
                    c.close = answer(
                        &mut c.buf,
                        &mut c.filled,
                        &mut c.skip,
                        &responses,
                        &mut c.out,
                    );
                    if !c.out.is_empty() {
                        c.sent = 0;
                        w.send(slot)?;
                    } else if c.close {
                        w.close(slot, &chan)?;
                    } else {
                        w.recv(slot)?;
                    }
                }
                OP_SEND => {
                    if res < 0 {
                        w.close(slot, &chan)?;
                        continue;
                    }
                    let c = w.conns[slot].as_mut().expect("live connection");
                    c.sent += res as usize;
                    if c.sent < c.out.len() {
                        w.send(slot)?;
                    } else if c.close {
                        w.close(slot, &chan)?;
                    } else {
                        c.out.clear();
                        w.recv(slot)?;
                    }
                }
                // A failed shutdown or close (a reset peer): nothing to do.
                _ => {}
            }
        }
        if !chan.counts_closes() {
            chan.flush()?;
        }
        if let Some(t) = draining_since {
            if w.open == 0 || t.elapsed() > Duration::from_secs(10) {
                // Let the ring finish the closes it has queued.
                let _ = w.ring.submit();
                return Ok(());
            }
        }
    }
}

//! The hello worker on one io_uring ring instead of tokio (epoll), for
//! issue #4's "measure which is faster": `HERD_HELLO_IO=uring` in the
//! worker's environment, fdpass mode only (connections from herd's
//! channel). Same responses, same framing ([`super::hello::answer`]), same
//! close counting and drain; no artificial delay (`--skew-ms` keeps the
//! tokio worker).
//!
//! Each connection has one request in flight at a time: a `RECV` into its
//! buffer, then a `SEND` of the responses, then either another `RECV` or a
//! `SHUTDOWN` linked to a `CLOSE` ([`crate::sys::uring::conns::ConnRing`],
//! which owns the buffers those requests point at). The channel is watched
//! with a poll and read with the worker library's `Channel::recv`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::hello::{answer, Responses, DRAINING, READ_BUF};
use crate::sys::uring::conns::{ConnRing, Done};
use crate::worker::{Channel, Received};

/// The poll token of the channel.
const CHAN: u64 = 0;

/// What the worker keeps of a connection besides its buffers (the ring's).
struct Meta {
    id: u64,
    received: Instant,
    skip: u64,
    close: bool,
}

/// Closes `slot` through the ring and reports the close to the daemon.
fn close(ring: &mut ConnRing<Meta>, slot: usize, chan: &Channel) -> io::Result<()> {
    let m = ring.close(slot)?;
    chan.closed(m.id, m.received.elapsed());
    Ok(())
}

/// Adds connections received from the channel to the ring, each with a
/// receive queued.
fn take(
    ring: &mut ConnRing<Meta>,
    conns: Vec<crate::worker::Conn>,
    responses: &Responses,
) -> io::Result<()> {
    for c in conns {
        let meta = Meta {
            id: c.id,
            received: Instant::now(),
            skip: 0,
            close: false,
        };
        let slot = ring.add(
            OwnedFd::from(c.stream),
            READ_BUF,
            4 * responses.close.len(),
            meta,
        );
        ring.recv(slot)?;
    }
    Ok(())
}

/// Serves connections from herd's channel on one io_uring ring until the
/// daemon closes the channel, after a `Stop` once open connections are
/// done, or on SIGINT/SIGTERM (drained the same way).
pub fn serve_channel(chan: Channel) -> io::Result<()> {
    let signalled = crate::sys::process::term_flag();
    chan.set_nonblocking(true)?;
    let responses = Responses::new(std::process::id());
    let mut ring = ConnRing::<Meta>::new(1024)?;
    chan.ready()?;
    ring.poll(chan.as_fd(), CHAN)?;
    let mut draining_since: Option<Instant> = None;
    loop {
        let done = ring.wait()?;
        if signalled.load(Ordering::Relaxed) && draining_since.is_none() {
            DRAINING.store(true, Ordering::Relaxed);
            draining_since = Some(Instant::now());
        }
        for d in done {
            match d {
                Done::Poll { .. } => loop {
                    match chan.recv(true)? {
                        Received::Conns(conns) => take(&mut ring, conns, &responses)?,
                        Received::WouldBlock => {
                            ring.poll(chan.as_fd(), CHAN)?;
                            break;
                        }
                        Received::Closed => return Ok(()),
                        Received::Stop => {
                            DRAINING.store(true, Ordering::Relaxed);
                            draining_since.get_or_insert_with(Instant::now);
                            ring.poll(chan.as_fd(), CHAN)?;
                            break;
                        }
                    }
                },
                Done::Recv { slot, res } => {
                    if res <= 0 {
                        close(&mut ring, slot, &chan)?;
                        continue;
                    }
                    let Some(c) = ring.conn(slot) else { continue };
                    c.filled += res as usize;
                    c.meta.close = answer(
                        &mut c.input,
                        &mut c.filled,
                        &mut c.meta.skip,
                        &responses,
                        &mut c.output,
                    )
                    .0;
                    if !c.output.is_empty() {
                        c.sent = 0;
                        ring.send(slot)?;
                    } else if c.meta.close {
                        close(&mut ring, slot, &chan)?;
                    } else {
                        ring.recv(slot)?;
                    }
                }
                Done::Send { slot, res } => {
                    if res < 0 {
                        close(&mut ring, slot, &chan)?;
                        continue;
                    }
                    let Some(c) = ring.conn(slot) else { continue };
                    c.sent += res as usize;
                    if c.sent < c.output.len() {
                        ring.send(slot)?;
                    } else if c.meta.close {
                        close(&mut ring, slot, &chan)?;
                    } else {
                        c.output.clear();
                        ring.recv(slot)?;
                    }
                }
                Done::Closed => {}
            }
        }
        if !chan.counts_closes() {
            chan.flush()?;
        }
        if let Some(t) = draining_since {
            // A signal can overtake connections the daemon already sent:
            // serve what is still queued in the channel before leaving
            // (closing it unread would reset them).
            if ring.open() == 0 && t.elapsed() <= Duration::from_secs(10) {
                if let Ok(Received::Conns(conns)) = chan.recv(true) {
                    take(&mut ring, conns, &responses)?;
                    continue;
                }
            }
            if ring.open() == 0 || t.elapsed() > Duration::from_secs(10) {
                // Let the ring finish the closes it has queued.
                let _ = ring.submit();
                return Ok(());
            }
        }
    }
}

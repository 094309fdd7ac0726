//! The portable acceptor backend: `epoll` on a listening socket, serving
//! the contract in [`super::acceptor`] (sink, stopper, stats, error
//! classes). Its io_uring sibling has the same `accept_loop` shape and is
//! preferred where its probe says io_uring works; this one is the fallback
//! that works everywhere (and under `HERD_IO=epoll`).
//!
//! Several acceptor threads (one per core, each with its own epoll instance)
//! wait on one listening socket. The listener is registered with
//! `EPOLLEXCLUSIVE`, so a new connection wakes one waiter (occasionally a few)
//! instead of the whole herd.
//!
//! **The listener is made non-blocking** (`O_NONBLOCK`, once, idempotently).
//! It has to be: with several threads on one listener a wake-up can be
//! raced away by a sibling thread, and a blocking `accept4` would then sleep
//! inside the kernel where the [`Stopper`] cannot reach it. `O_NONBLOCK` lives
//! on the open file description, so every thread, every `dup` of the listener
//! and the io_uring backend see it; that is harmless for io_uring (it issues
//! accepts non-blocking anyway and arms a poll on `EAGAIN`) and Linux does not
//! copy `O_NONBLOCK` to accepted sockets, so accepted fds stay blocking and the
//! worker decides. The one consequence: do not run an acceptor on a listener
//! that is also handed to workers that expect it blocking (`shared` mode).
//!
//! Accepted fds are created with `SOCK_CLOEXEC` only, so they never leak into
//! a worker forked meanwhile and are blocking.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::acceptor::{
    annotate, check_listening, classify_accept_error, poll_readable, AcceptError, AcceptSink,
    AcceptStats, Stopper, BACKOFF,
};
use super::cvt;

/// Sets `O_NONBLOCK` on the open file description behind `fd` if it is not
/// set yet (see the module doc for why the listener must be non-blocking).
fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and touches no memory of ours.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
        .map_err(|e| annotate("fcntl(F_GETFL)", e))?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL takes an int argument and touches no memory of ours.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })
            .map_err(|e| annotate("fcntl(F_SETFL)", e))?;
    }
    Ok(())
}

/// `accept4(listener, NULL, NULL, SOCK_CLOEXEC)`: a blocking, close-on-exec
/// connected socket (the peer address is not wanted here).
fn accept_cloexec(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address and length pointers are allowed by accept4 and
    // mean "do not report the peer address".
    let fd = cvt(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 just created `fd` for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An epoll instance of one acceptor thread.
struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; it returns a new fd or -1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
            .map_err(|e| annotate("epoll_create1", e))?;
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event that outlives the call; the
        // kernel copies it. `fd` stays open for the duration of accept_loop,
        // which also owns (and closes) this epoll instance.
        cvt(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })
        .map(drop)
        .map_err(|e| annotate("epoll_ctl(ADD)", e))
    }

    /// Waits for events; an interrupted wait returns 0 events.
    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: libc::c_int) -> io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the kernel writes at most `max` events into `events`,
        // which is a valid, exclusively borrowed buffer of that length.
        match cvt(unsafe {
            libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms)
        }) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0),
            Err(e) => Err(annotate("epoll_wait", e)),
        }
    }
}

const TOKEN_LISTENER: u64 = 1;
const TOKEN_STOP: u64 = 2;
/// Connections accepted per wake-up before looking at `stop` again, so a
/// flood neither starves the stop check nor keeps sibling threads idle.
const MAX_BATCH: usize = 64;

/// Accepts connections on `listener` until `stop` is stopped, handing each
/// one (blocking, `SOCK_CLOEXEC`) to `sink`. Several threads may run this
/// on the same listener at once; each accepts until `EAGAIN` per wake-up (up
/// to a batch limit). Sets `O_NONBLOCK` on the listener (see module doc).
/// Transient accept errors are counted in [`AcceptStats::errors`] and
/// survived; any other error ends the loop with `Err`. Connections still
/// queued when `stop` fires stay in the listener's backlog.
pub fn accept_loop(
    listener: BorrowedFd<'_>,
    stop: &Stopper,
    mut sink: impl AcceptSink,
) -> io::Result<AcceptStats> {
    check_listening(listener)?;
    set_nonblocking(listener)?;
    let ep = Epoll::new()?;
    ep.add(
        listener,
        (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
        TOKEN_LISTENER,
    )?;
    ep.add(stop.as_fd(), libc::EPOLLIN as u32, TOKEN_STOP)?;

    let mut stats = AcceptStats::default();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    loop {
        let n = ep.wait(&mut events, -1)?;
        let mut readable = false;
        for ev in &events[..n] {
            match ev.u64 {
                TOKEN_STOP => return Ok(stats),
                TOKEN_LISTENER => readable = true,
                _ => {}
            }
        }
        if !readable {
            continue;
        }
        stats.rearms += 1;
        for _ in 0..MAX_BATCH {
            match accept_cloexec(listener) {
                Ok(fd) => {
                    stats.accepted += 1;
                    sink.conn(fd);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => match classify_accept_error(e.raw_os_error().unwrap_or(0)) {
                    AcceptError::Retry => stats.errors += 1,
                    AcceptError::BackOff => {
                        stats.errors += 1;
                        // Sleep on the stopper, not in thread::sleep, so a
                        // stop during the pause is seen at once.
                        if poll_readable(stop.as_fd(), BACKOFF.as_millis() as libc::c_int)? {
                            return Ok(stats);
                        }
                        break;
                    }
                    AcceptError::Fatal => return Err(annotate("accept4", e)),
                },
            }
        }
        sink.batch_end(None);
    }
}

#[cfg(test)]
pub(crate) mod tests;

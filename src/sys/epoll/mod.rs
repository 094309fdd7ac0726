//! The portable acceptor backend: `epoll` on a listening socket, and the
//! pieces both acceptor backends share ([`Stopper`], [`AcceptStats`], how an
//! `accept` error is classified). `uring.rs` has the same `accept_loop` shape
//! and is preferred where [`super::uring::probe`] says io_uring works; this one
//! is the fallback that works everywhere (and under `HERD_IO=epoll`).
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
use std::time::Duration;

use super::cvt;

/// An eventfd that tells acceptor threads to exit. [`Stopper::stop`] makes it
/// readable for good (nothing ever reads it back), so one `Stopper` shared by
/// many threads (`Arc<Stopper>` or a plain reference in a scope) stops them
/// all, whichever backend they run.
#[derive(Debug)]
pub struct Stopper {
    fd: OwnedFd,
}

impl Stopper {
    /// Creates a stopper that is not stopped yet (a non-blocking,
    /// close-on-exec eventfd with counter 0).
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; it returns a new fd or -1.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just created by eventfd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Tells every thread waiting on this stopper to exit. Idempotent and
    /// cannot fail in practice: the only error eventfd `write` has for a
    /// valid 8-byte write is `EAGAIN` at a counter near 2^64, which would
    /// mean it is already readable.
    pub fn stop(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one`, which lives across the call, to
        // the eventfd we own.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Whether [`Stopper::stop`] has been called.
    pub fn is_stopped(&self) -> bool {
        poll_readable(self.fd.as_fd(), 0).unwrap_or(false)
    }
}

impl AsFd for Stopper {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Where an accept loop puts what it accepts: every connection, then a
/// mark at the end of each wake-up's batch, so a sink may hold the
/// connections of one batch back and hand them on together (one message per
/// worker rather than one per connection). A plain `FnMut(OwnedFd)` is a
/// sink that hands each on at once.
pub trait AcceptSink {
    /// One accepted connection (blocking, `SOCK_CLOEXEC`).
    fn conn(&mut self, fd: OwnedFd);
    /// The connections of this wake-up have all been given to [`Self::conn`];
    /// the loop is about to sleep. The io_uring loop offers an outbox whose
    /// messages its ring sends with the next wait (their outcome comes back
    /// through [`Self::sent`]); epoll offers none.
    fn batch_end(&mut self, _out: Option<&mut crate::sys::uring::Outbox>) {}
    /// How the outbox message `token` went: on success the ring has closed
    /// its descriptors; on failure they are handed back in `fds` (none for
    /// a [`crate::sys::uring::Outbox::send_shared`] message: the sink holds
    /// its own references).
    fn sent(&mut self, _token: u64, _result: io::Result<()>, _fds: Vec<OwnedFd>) {}
}

impl<F: FnMut(OwnedFd)> AcceptSink for F {
    fn conn(&mut self, fd: OwnedFd) {
        self(fd)
    }
}

/// What an acceptor thread did, returned when its loop ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AcceptStats {
    /// Connections handed to the callback.
    pub accepted: u64,
    /// io_uring: accept requests submitted again after the previous one
    /// ended (multishot: it ended without `IORING_CQE_F_MORE`; single-shot:
    /// after every completion). epoll: wake-ups that found the listener
    /// readable, so `accepted / rearms` is the mean batch size.
    pub rearms: u64,
    /// Transient accept errors that were counted and survived
    /// (`EMFILE`, `ENFILE`, `ECONNABORTED`, `ENOBUFS`, `ENOMEM`, …).
    pub errors: u64,
}

/// How an acceptor reacts to a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// One connection failed (aborted before we took it, network error,
    /// signal): count it and accept again at once.
    Retry,
    /// Out of descriptors or memory: count it and wait [`BACKOFF`] before
    /// accepting again, or we would spin on a full backlog.
    BackOff,
    /// The listener itself is unusable: end the loop with the error.
    Fatal,
}

/// How long an acceptor pauses after `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM`.
pub(crate) const BACKOFF: Duration = Duration::from_millis(10);

/// Classifies an `accept` errno. Linux passes pending network errors of the
/// new connection through `accept` (see accept(2), "Error handling"); those
/// are per-connection and retried like `ECONNABORTED`.
pub(crate) fn classify_accept_error(errno: i32) -> AcceptError {
    match errno {
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => AcceptError::BackOff,
        libc::ECONNABORTED
        | libc::EINTR
        | libc::EAGAIN
        | libc::EPROTO
        | libc::EPERM
        | libc::ENETDOWN
        | libc::ENETUNREACH
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::EHOSTUNREACH
        | libc::ENONET
        | libc::ETIMEDOUT => AcceptError::Retry,
        _ => AcceptError::Fatal,
    }
}

/// Checks that `fd` is a listening socket, so a wrong fd fails at once with
/// a clear error instead of deep inside a backend.
pub(crate) fn check_listening(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut accepting: libc::c_int = 0;
    if let Err(e) = super::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN, &mut accepting) {
        return Err(io::Error::new(
            e.kind(),
            format!("acceptor: fd {} is not a socket: {e}", fd.as_raw_fd()),
        ));
    }
    if accepting == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "acceptor: fd {} is a socket but not listening (call listen first)",
                fd.as_raw_fd()
            ),
        ));
    }
    Ok(())
}

/// Prefixes an OS error with the call that failed, keeping its kind.
pub(crate) fn annotate(call: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}

/// Waits up to `timeout_ms` (0: just look, -1: forever) for `fd` to be
/// readable. `EINTR` counts as "not yet".
fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd that outlives the call.
    match cvt(unsafe { libc::poll(&mut pfd, 1, timeout_ms) }) {
        Ok(n) => Ok(n > 0 && pfd.revents & libc::POLLIN != 0),
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(false),
        Err(e) => Err(annotate("poll", e)),
    }
}

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

//! The acceptor contract both backends serve ([`super::epoll`] and
//! [`super::uring`] are siblings that depend on this module only, never on
//! each other): where an accept loop puts what it accepts ([`AcceptSink`],
//! with the [`Outbox`] of messages an io_uring loop sends for its sink), how
//! a loop is told to stop ([`Stopper`]), what it reports ([`AcceptStats`]),
//! and how an `accept` error is classified. The data plane implements the
//! sink and picks the backend.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::cvt;

#[cfg(test)]
pub(crate) mod scenarios;

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
    fn batch_end(&mut self, _out: Option<&mut Outbox>) {}
    /// How the outbox message `token` went: on success the ring has closed
    /// its descriptors; on failure they are handed back in `fds` (none for
    /// an [`Outbox::send_shared`] message: the sink holds
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
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: libc::c_int) -> io::Result<bool> {
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

/// One message the ring sends for the sink: boxed, because the kernel reads
/// the header, the iovec and the control data by address until the send
/// completes.
pub(crate) struct RingSend {
    pub(crate) msg: libc::msghdr,
    iov: libc::iovec,
    rights: crate::sys::fdpass::RightsBuf,
    data: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    /// Descriptors the sink keeps as well: not closed, only let go of
    /// here once the send is done.
    pub(crate) shared: Vec<Arc<OwnedFd>>,
    pub(crate) chan: i32,
    pub(crate) token: u64,
}

/// Messages with descriptors that the acceptor's ring sends for its sink
/// (see [`AcceptSink::batch_end`]). Each is a `SENDMSG` (`MSG_DONTWAIT`:
/// a full channel fails at once with `EAGAIN` rather than wait in the
/// kernel) linked to a `CLOSE` of every descriptor it carries, all submitted
/// by the acceptor's next `io_uring_enter`, the one it sleeps in anyway.
/// The sink gets each message's outcome in [`AcceptSink::sent`]: on success
/// the ring has closed the descriptors; on failure the links were cancelled
/// and the descriptors come back. A message sent with
/// [`Outbox::send_shared`] has no closes: the sink keeps its own reference
/// to each descriptor (the daemon's copy of a connection, without a `dup`).
pub struct Outbox {
    // Boxed: the kernel reads each one by address, and the Vec may move
    // its elements when it grows.
    #[allow(clippy::vec_box)]
    pub(crate) new: Vec<Box<RingSend>>,
    /// Submission entries still free for this batch.
    pub(crate) room: usize,
}

impl Outbox {
    /// Whether a message with `fds` descriptors fits in this batch.
    pub fn has_room(&self, fds: usize) -> bool {
        self.room > fds
    }

    /// Queues `data` with `fds` (`SCM_RIGHTS`) for `chan`. The caller must
    /// keep `chan` open until [`AcceptSink::sent`] reports `token`; `Err`
    /// gives everything back when the batch has no room (see
    /// [`Outbox::has_room`]), or there are no descriptors or too many. (A
    /// message without descriptors has no linked closes whose cancellation
    /// would wake the loop at once if it failed; send those with `sendmsg`.)
    #[allow(clippy::type_complexity)]
    pub fn send(
        &mut self,
        token: u64,
        chan: BorrowedFd<'_>,
        data: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> Result<(), (Vec<u8>, Vec<OwnedFd>)> {
        if fds.is_empty()
            || !self.has_room(fds.len())
            || fds.len() > crate::sys::fdpass::MAX_FDS_PER_MSG
        {
            return Err((data, fds));
        }
        self.room -= 1 + fds.len();
        self.push(token, chan, data, fds, Vec::new());
        Ok(())
    }

    /// Queues `data` with `fds` for `chan` as [`Outbox::send`] does, but
    /// without closing them: the sink keeps its own references, and the
    /// ring lets go of its own once the send is done. [`AcceptSink::sent`]
    /// reports the outcome with no descriptors; on failure the sink takes
    /// them back from its references. `Err` as for [`Outbox::send`].
    #[allow(clippy::type_complexity)]
    pub fn send_shared(
        &mut self,
        token: u64,
        chan: BorrowedFd<'_>,
        data: Vec<u8>,
        fds: Vec<Arc<OwnedFd>>,
    ) -> Result<(), (Vec<u8>, Vec<Arc<OwnedFd>>)> {
        if fds.is_empty() || self.room < 1 || fds.len() > crate::sys::fdpass::MAX_FDS_PER_MSG {
            return Err((data, fds));
        }
        self.room -= 1;
        self.push(token, chan, data, Vec::new(), fds);
        Ok(())
    }

    fn push(
        &mut self,
        token: u64,
        chan: BorrowedFd<'_>,
        data: Vec<u8>,
        fds: Vec<OwnedFd>,
        shared: Vec<Arc<OwnedFd>>,
    ) {
        let mut b = Box::new(RingSend {
            // SAFETY: msghdr is plain data; zeroed is an empty header.
            msg: unsafe { std::mem::zeroed() },
            // SAFETY: iovec is plain data; zeroed is an empty slice.
            iov: unsafe { std::mem::zeroed() },
            rights: [0; crate::sys::fdpass::RIGHTS_WORDS],
            data,
            fds,
            shared,
            chan: chan.as_raw_fd(),
            token,
        });
        let b_ref = &mut *b;
        b_ref.iov.iov_base = b_ref.data.as_mut_ptr().cast();
        b_ref.iov.iov_len = b_ref.data.len();
        b_ref.msg.msg_iov = &mut b_ref.iov;
        b_ref.msg.msg_iovlen = 1;
        let raw: Vec<i32> = (b_ref.fds.iter().map(|f| f.as_raw_fd()))
            .chain(b_ref.shared.iter().map(|f| f.as_raw_fd()))
            .collect();
        crate::sys::fdpass::set_rights(&mut b_ref.msg, &mut b_ref.rights, raw.into_iter());
        self.new.push(b);
    }
}

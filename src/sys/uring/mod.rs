//! The io_uring acceptor backend: one ring per acceptor thread (the caller
//! runs one thread per core, pinned), a multishot `IORING_OP_ACCEPT` on the
//! daemon's listening socket, and a poll on the [`Stopper`] eventfd so the
//! loop wakes up to exit. It serves the contract in [`super::acceptor`] with
//! the same shape as its sibling `epoll`, which is the
//! fallback when [`probe`] says io_uring cannot be used (Docker's default
//! seccomp profile, `kernel.io_uring_disabled`, kernels before 5.19).
//!
//! One multishot accept request keeps producing a completion per connection
//! until something ends it (an error, a full completion queue); every
//! completion without `IORING_CQE_F_MORE` is re-armed, so the steady state is
//! one `io_uring_enter` per batch of connections and no submission at all.
//! Single-shot mode ([`AcceptOptions::multishot`] = false) re-submits an
//! `Accept` after every completion; it exists to measure what multishot buys.
//!
//! **Setup flags.** Each ring tries, in order, `SINGLE_ISSUER|DEFER_TASKRUN`,
//! `SINGLE_ISSUER|COOP_TASKRUN`, `COOP_TASKRUN`, then none, taking the first
//! the kernel accepts. `SINGLE_ISSUER` (6.0) promises that only the creating
//! thread submits, which lets the kernel drop some cross-thread
//! synchronisation and is what `DEFER_TASKRUN` builds on; herd keeps the
//! promise because `accept_loop` creates, uses and drops its ring on one
//! thread. `DEFER_TASKRUN` (6.1) runs completion work (installing the
//! accepted fd, posting the CQE) only when the thread asks for completions
//! (`io_uring_enter` with `GETEVENTS`, which every wait here passes), so a
//! burst of connections is completed in one batch on the acceptor's own
//! core and the thread is never interrupted for it — the best fit for a
//! pinned thread that only waits on its ring. `COOP_TASKRUN` (5.19) is the
//! weaker fallback: no inter-processor interrupt to push that work onto a
//! thread running in user space; it runs at the thread's next kernel entry.
//! On the 6.18 kernel this was written on, [`probe`] reports all three flags
//! accepted and multishot accept available, so rings run with
//! `SINGLE_ISSUER|DEFER_TASKRUN`.
//!
//! Accepted fds carry `SOCK_CLOEXEC` and are left blocking: workers decide.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

pub mod conns;

pub use super::acceptor::Outbox;
use super::acceptor::{
    annotate, check_listening, classify_accept_error, AcceptError, AcceptSink, AcceptStats,
    RingSend, Stopper, BACKOFF,
};

/// What io_uring features this kernel offers the acceptor, from [`probe`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UringFeatures {
    /// `IORING_OP_ACCEPT` with `IORING_ACCEPT_MULTISHOT` (Linux 5.19+).
    pub multishot_accept: bool,
    /// `IORING_SETUP_SINGLE_ISSUER` was accepted (Linux 6.0+).
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` (with `SINGLE_ISSUER`) was accepted (6.1+).
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN` was accepted (5.19+).
    pub coop_taskrun: bool,
    /// `IOSQE_CQE_SKIP_SUCCESS` (5.17+), which sends through the ring
    /// ([`AcceptOptions::ring_send`]) need.
    pub skip_success: bool,
}

impl fmt::Display for UringFeatures {
    /// One line for `herd show` and logs, e.g.
    /// `multishot accept; setup flags SINGLE_ISSUER DEFER_TASKRUN COOP_TASKRUN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accept = if self.multishot_accept {
            "multishot"
        } else {
            "single-shot only"
        };
        write!(f, "{accept} accept; setup flags")?;
        let flags = [
            (self.single_issuer, " SINGLE_ISSUER"),
            (self.defer_taskrun, " DEFER_TASKRUN"),
            (self.coop_taskrun, " COOP_TASKRUN"),
        ];
        let mut any = false;
        for (on, name) in flags {
            if on {
                f.write_str(name)?;
                any = true;
            }
        }
        if !any {
            f.write_str(" (none)")?;
        }
        Ok(())
    }
}

/// How [`accept_loop`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptOptions {
    /// `true`: one multishot accept, re-armed only when the kernel ends it.
    /// `false`: re-submit a single-shot accept after every completion (for
    /// comparison, and for kernels without multishot accept).
    pub multishot: bool,
    /// Submission queue size (the completion queue is twice that); clamped
    /// to 8..=4096. The loop keeps at most three requests in flight, so this
    /// mostly sizes how many completions one wake-up can batch.
    pub ring_entries: u32,
    /// Offer the sink an [`Outbox`] at each batch end, so its messages (and
    /// the close of the daemon's copies) go out through the ring with the
    /// next wait instead of a `sendmsg` and a `close` each.
    pub ring_send: bool,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        Self {
            multishot: true,
            ring_entries: 256,
            ring_send: true,
        }
    }
}

/// The ring's messages in flight, by slot (`user_data` is
/// `TAG_SEND_BASE + index`).
#[derive(Default)]
struct Sends {
    slots: Vec<Option<Box<RingSend>>>,
    in_flight: usize,
    /// Of those, sent with [`Outbox::send_shared`]: until reaped, the ring
    /// holds a reference to each of their connections (the sink's copy is
    /// not the last one, so a connection the worker closed stays open),
    /// and a failed one posts no extra completion to wake the loop.
    shared: usize,
}

/// Setup flags to try, as our own bits (the crate's are private).
const SINGLE_ISSUER: u8 = 1;
const DEFER_TASKRUN: u8 = 2 | SINGLE_ISSUER; // the kernel requires both
const COOP_TASKRUN: u8 = 4;
/// What an acceptor ring tries, best first.
const RING_SETUPS: [u8; 4] = [DEFER_TASKRUN, SINGLE_ISSUER | COOP_TASKRUN, COOP_TASKRUN, 0];
const PROBE_ENTRIES: u32 = 4;

fn build_ring(entries: u32, flags: u8) -> io::Result<IoUring> {
    let mut b = IoUring::<squeue::Entry, cqueue::Entry>::builder();
    // The daemon forks workers while acceptors run: keep the ring's
    // mappings out of the children.
    b.dontfork();
    if flags & SINGLE_ISSUER != 0 {
        b.setup_single_issuer();
    }
    if flags & DEFER_TASKRUN == DEFER_TASKRUN {
        b.setup_defer_taskrun();
    }
    if flags & COOP_TASKRUN != 0 {
        b.setup_coop_taskrun();
    }
    b.build(entries)
}

/// Explains an `io_uring_setup` failure, naming the likely cause.
fn setup_error(e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled");
            match sysctl.as_deref().map(str::trim) {
                Ok("2") => " (sysctl kernel.io_uring_disabled=2)",
                Ok("1") => " (kernel.io_uring_disabled=1 and not in kernel.io_uring_group)",
                _ => " (seccomp? Docker's default profile blocks io_uring)",
            }
        }
        Some(libc::ENOSYS) => " (kernel built without io_uring, or a seccomp filter)",
        Some(libc::ENOMEM) => " (RLIMIT_MEMLOCK too low? kernels before 5.12 charge rings to it)",
        _ => "",
    };
    format!("io_uring_setup: {e}{hint}")
}

/// The running kernel's release string, e.g. `6.18.44-fc-v657`.
fn kernel_release() -> String {
    // SAFETY: utsname is plain data (char arrays); all-zero is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills `u`, which outlives the call.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::from("unknown");
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `(major, minor)` of a release string like `6.18.44-fc-v657`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split('.');
    let num = |s: Option<&str>| -> Option<u32> {
        let s = s?;
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    Some((num(parts.next())?, num(parts.next())?))
}

/// Why io_uring cannot be used here, or `Ok` with what the kernel supports.
///
/// Creates a small ring (the call seccomp or `kernel.io_uring_disabled`
/// refuse), asks the kernel which opcodes it knows (the accept loop needs
/// `ACCEPT`, `POLL_ADD`, `TIMEOUT` and `ASYNC_CANCEL`; multishot accept
/// additionally needs Linux 5.19, which the opcode probe cannot tell), and
/// tries each setup flag on a throwaway ring.
pub fn probe() -> Result<UringFeatures, String> {
    let ring = build_ring(PROBE_ENTRIES, 0).map_err(|e| setup_error(&e))?;
    let release = kernel_release();
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("io_uring_register(PROBE): {e} (kernel {release} older than 5.6?)"))?;
    let needed = [
        (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
        (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
        (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    ];
    for (code, name) in needed {
        if !p.is_supported(code) {
            return Err(format!("io_uring on kernel {release} lacks {name}"));
        }
    }
    let multishot_accept = p.is_supported(opcode::AcceptMulti::CODE)
        && kernel_version(&release).is_some_and(|v| v >= (5, 19));
    let accepts = |flags| build_ring(PROBE_ENTRIES, flags).is_ok();
    Ok(UringFeatures {
        multishot_accept,
        skip_success: ring.params().is_feature_skip_cqe_on_success(),
        single_issuer: accepts(SINGLE_ISSUER),
        defer_taskrun: accepts(DEFER_TASKRUN),
        coop_taskrun: accepts(COOP_TASKRUN),
    })
}

const TAG_ACCEPT: u64 = 1;
const TAG_STOP: u64 = 2;
const TAG_BACKOFF: u64 = 3;
const TAG_CANCEL: u64 = 4;
const TAG_CLOSE: u64 = 5;
const TAG_SEND_BASE: u64 = 1 << 32;
/// How long a stopping loop waits for its cancelled accept to report back
/// (it hands over connections accepted meanwhile rather than leak them).
const STOP_DRAIN: Duration = Duration::from_secs(2);

/// The requests an acceptor ring ever submits.
#[derive(Debug, Clone, Copy)]
enum Op {
    Accept,
    StopPoll,
    Backoff,
    CancelAccept,
}

/// Where the one accept request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptState {
    Armed,
    BackingOff,
    Ended,
}

/// A ring plus the only entries it submits, all built up front so the
/// memory they point at is owned here.
struct AcceptRing<'a> {
    // Dropped first: tearing the ring down cancels whatever is in flight.
    ring: IoUring,
    accept: squeue::Entry,
    stop_poll: squeue::Entry,
    backoff: squeue::Entry,
    cancel: squeue::Entry,
    /// Read by the kernel when `backoff` is submitted; boxed so its address
    /// survives moves of this struct.
    _backoff_ts: Box<types::Timespec>,
    /// The listener and stop eventfd named by the entries stay open as long
    /// as this ring exists.
    _fds: PhantomData<BorrowedFd<'a>>,
}

impl<'a> AcceptRing<'a> {
    fn new(listener: BorrowedFd<'a>, stop: &'a Stopper, opts: AcceptOptions) -> io::Result<Self> {
        let entries = opts.ring_entries.clamp(8, 4096);
        let mut last = io::Error::from_raw_os_error(libc::EINVAL);
        let mut built = None;
        for f in RING_SETUPS {
            match build_ring(entries, f) {
                Ok(r) => {
                    built = Some(r);
                    break;
                }
                // EINVAL: this kernel does not know a flag; try fewer.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
                Err(e) => return Err(io::Error::new(e.kind(), setup_error(&e))),
            }
        }
        let ring = built.ok_or_else(|| io::Error::new(last.kind(), setup_error(&last)))?;
        let lfd = types::Fd(listener.as_raw_fd());
        let accept = if opts.multishot {
            opcode::AcceptMulti::new(lfd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(lfd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        let backoff_ts = Box::new(types::Timespec::from(BACKOFF));
        let stop_fd = types::Fd(stop.as_fd().as_raw_fd());
        Ok(Self {
            ring,
            accept: accept.user_data(TAG_ACCEPT),
            stop_poll: opcode::PollAdd::new(stop_fd, libc::POLLIN as u32)
                .build()
                .user_data(TAG_STOP),
            backoff: opcode::Timeout::new(&*backoff_ts)
                .build()
                .user_data(TAG_BACKOFF),
            cancel: opcode::AsyncCancel::new(TAG_ACCEPT)
                .build()
                .user_data(TAG_CANCEL),
            _backoff_ts: backoff_ts,
            _fds: PhantomData,
        })
    }

    /// Queues one request; it reaches the kernel with the next [`Self::wait`].
    fn push(&mut self, op: Op) -> io::Result<()> {
        let e = match op {
            Op::Accept => &self.accept,
            Op::StopPoll => &self.stop_poll,
            Op::Backoff => &self.backoff,
            Op::CancelAccept => &self.cancel,
        };
        // SAFETY: the entries were built in `new` and point at no memory but
        // `_backoff_ts`, a heap Timespec owned by `self` (the kernel copies
        // it when the timeout is submitted anyway). The fds they name are
        // borrowed for `'a`, which outlives `self` and hence the ring, whose
        // drop cancels anything still in flight. Accept passes null address
        // pointers, which the kernel treats as "no peer address".
        unsafe { self.ring.submission().push(e) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Queues the outbox's messages, each linked to the closes of its
    /// descriptors, into `sends`.
    fn push_sends(&mut self, out: &mut Outbox, sends: &mut Sends) -> io::Result<()> {
        for b in out.new.drain(..) {
            let idx = match sends.slots.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    sends.slots.push(None);
                    sends.slots.len() - 1
                }
            };
            let n = b.fds.len();
            let mut entries = Vec::with_capacity(1 + n);
            let send = opcode::SendMsg::new(types::Fd(b.chan), &b.msg)
                .flags((libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as u32)
                .build()
                .user_data(TAG_SEND_BASE + idx as u64);
            entries.push(if n > 0 {
                send.flags(squeue::Flags::IO_LINK)
            } else {
                send
            });
            for (i, fd) in b.fds.iter().enumerate() {
                // Silent on success. If the send fails, the kernel cancels
                // these and, the send's own completion having no skip
                // flag, posts each cancellation.
                let flags = if i + 1 < n {
                    squeue::Flags::SKIP_SUCCESS | squeue::Flags::IO_LINK
                } else {
                    squeue::Flags::SKIP_SUCCESS
                };
                entries.push(
                    opcode::Close::new(types::Fd(fd.as_raw_fd()))
                        .build()
                        .user_data(TAG_CLOSE)
                        .flags(flags),
                );
            }
            // SAFETY: the send entry points at `b.msg`, whose iovec, data
            // and control buffer live in the same box; the box stays in
            // `sends` until the send's completion is reaped (`reap_send`),
            // and the loop reaps every one before it returns (the ring's
            // drop would cancel any left). The sink keeps `b.chan` open
            // until then (Outbox::send's contract); the closes name fds
            // the box owns, which it gives up only once the send succeeded
            // (the kernel then closes them).
            unsafe { self.ring.submission().push_multiple(&entries) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            sends.shared += usize::from(!b.shared.is_empty());
            sends.slots[idx] = Some(b);
            sends.in_flight += 1;
        }
        Ok(())
    }

    /// Free submission entries.
    fn sq_room(&mut self) -> usize {
        let sq = self.ring.submission();
        sq.capacity() - sq.len()
    }

    /// Submits what is queued and waits for at least one completion, or
    /// until `timeout` passes. Interruptions count as a (spurious) wake-up.
    /// `want` counts completions already in the queue: the loop passes
    /// one more than its sends' outstanding completions, so finishing a
    /// send is not a wake-up of its own.
    fn wait(&self, want: usize, timeout: Option<&types::Timespec>) -> io::Result<()> {
        let r = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(ts) => {
                let args = types::SubmitArgs::new().timespec(ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::ETIME | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(annotate("io_uring_enter", e)),
        }
    }
}

/// Hands a finished send's outcome to the sink.
fn reap_send(sends: &mut Sends, idx: usize, res: i32, sink: &mut impl AcceptSink) {
    let Some(mut b) = sends.slots.get_mut(idx).and_then(Option::take) else {
        return;
    };
    sends.in_flight -= 1;
    if !b.shared.is_empty() {
        sends.shared -= 1;
        // Shared descriptors: the sink holds its own references.
        b.shared.clear();
    }
    if res >= 0 {
        // The linked closes own the descriptors now.
        for fd in b.fds.drain(..) {
            let _ = fd.into_raw_fd();
        }
        sink.sent(b.token, Ok(()), Vec::new());
    } else {
        // The closes were cancelled: the descriptors are still ours.
        let fds = std::mem::take(&mut b.fds);
        sink.sent(b.token, Err(io::Error::from_raw_os_error(-res)), fds);
    }
}

/// Accepts connections on `listener` until `stop` is stopped, handing each
/// one (blocking, `SOCK_CLOEXEC`) to `sink`. Builds its own ring, so
/// call it on the thread that should own the ring (one per core). Several
/// threads may run it on one listener; each connection goes to exactly one.
///
/// All completions of a wake-up are handled as one batch. Transient accept
/// errors (`EMFILE`, `ENFILE`, `ECONNABORTED`, `ENOBUFS`, `ENOMEM`, …) are
/// counted in [`AcceptStats::errors`] and survived — after a 10 ms pause
/// (an io_uring timeout, so a stop is still seen) for the resource ones —
/// then the accept is re-armed; any other error ends the loop with `Err`
/// (`EINVAL` from a multishot accept means the kernel lacks it: see
/// [`probe`]). On stop the accept is cancelled and connections the kernel
/// accepted meanwhile are still handed over; connections not yet accepted
/// stay in the listener's backlog.
pub fn accept_loop(
    listener: BorrowedFd<'_>,
    stop: &Stopper,
    opts: AcceptOptions,
    mut sink: impl AcceptSink,
) -> io::Result<AcceptStats> {
    check_listening(listener)?;
    let mut r = AcceptRing::new(listener, stop, opts)?;
    let drain_tick = types::Timespec::from(Duration::from_millis(100));
    r.push(Op::StopPoll)?;
    r.push(Op::Accept)?;
    let mut state = AcceptState::Armed;
    let mut stop_deadline: Option<Instant> = None;
    let mut stats = AcceptStats::default();
    let mut sends = Sends::default();
    // The send accounting needs silent successful closes (Linux 5.17+).
    let ring_send = opts.ring_send && r.ring.params().is_feature_skip_cqe_on_success();
    loop {
        // A send that succeeds completes once (its closes post nothing);
        // one that fails completes once more for each close it cancels.
        // Waiting for one completion more than the sends in flight keeps
        // the acceptor asleep until a new connection comes, and wakes it
        // at once when a send failed (its connections must go back to the
        // worker's queue now, not at the next connection).
        // Shared sends are reaped at once, not at the next connection: a
        // connection's last reference must not wait in the ring (its
        // client would wait for the EOF), nor a failed send's connections
        // for their retry. A send on a channel completes while it is
        // submitted (MSG_DONTWAIT: it succeeds or fails with EAGAIN), so
        // waiting for one completion returns at once with them; the next
        // round sleeps.
        let outstanding = if sends.shared > 0 { 0 } else { sends.in_flight };
        let timeout = stop_deadline.map(|_| &drain_tick);
        r.wait(1 + outstanding, timeout)?;
        let mut stop_seen = false;
        let mut back_off = false;
        for cqe in r.ring.completion() {
            let res = cqe.result();
            match cqe.user_data() {
                // A close cancelled by its failed send (handled there), or
                // one that failed itself (nothing to do: the send went).
                TAG_CLOSE => {}
                tag if tag >= TAG_SEND_BASE => {
                    reap_send(&mut sends, (tag - TAG_SEND_BASE) as usize, res, &mut sink)
                }
                TAG_ACCEPT => {
                    if !cqueue::more(cqe.flags()) {
                        state = AcceptState::Ended;
                    }
                    if res >= 0 {
                        stats.accepted += 1;
                        // SAFETY: a non-negative accept result is a new fd
                        // the kernel just installed for us; nothing else
                        // owns it.
                        sink.conn(unsafe { OwnedFd::from_raw_fd(res) });
                        continue;
                    }
                    let errno = -res;
                    if errno == libc::ECANCELED {
                        // Our own cancel when stopping; otherwise unexpected
                        // but harmless: count it and re-arm.
                        stats.errors += u64::from(stop_deadline.is_none());
                        continue;
                    }
                    match classify_accept_error(errno) {
                        AcceptError::Retry => stats.errors += 1,
                        AcceptError::BackOff => {
                            stats.errors += 1;
                            back_off = true;
                        }
                        AcceptError::Fatal => {
                            let e = io::Error::from_raw_os_error(errno);
                            let call = match (errno, opts.multishot) {
                                (libc::EINVAL, true) => "io_uring multishot accept (Linux 5.19+)",
                                _ => "io_uring accept",
                            };
                            return Err(annotate(call, e));
                        }
                    }
                }
                TAG_STOP if res < 0 => {
                    let e = io::Error::from_raw_os_error(-res);
                    return Err(annotate("io_uring poll on the stop eventfd", e));
                }
                TAG_STOP => stop_seen = true,
                TAG_BACKOFF if state == AcceptState::BackingOff => state = AcceptState::Ended,
                // The cancel's own result does not matter: the accept's final
                // completion says when it is gone.
                _ => {}
            }
        }
        if ring_send {
            let mut out = Outbox {
                new: Vec::new(),
                // Keep a few entries for the loop's own requests.
                room: r.sq_room().saturating_sub(4),
            };
            sink.batch_end(Some(&mut out));
            r.push_sends(&mut out, &mut sends)?;
        } else {
            sink.batch_end(None);
        }

        if stop_seen && stop_deadline.is_none() {
            stop_deadline = Some(Instant::now() + STOP_DRAIN);
            if state == AcceptState::Armed {
                r.push(Op::CancelAccept)?;
            }
        }
        if let Some(deadline) = stop_deadline {
            // Past the deadline (never seen in practice) the ring's drop
            // cancels the accept instead.
            let sending = sends.in_flight > 0;
            if (state != AcceptState::Armed && !sending) || Instant::now() >= deadline {
                return Ok(stats);
            }
            continue;
        }
        if state == AcceptState::Ended {
            if back_off {
                r.push(Op::Backoff)?;
                state = AcceptState::BackingOff;
            } else {
                r.push(Op::Accept)?;
                state = AcceptState::Armed;
                stats.rearms += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;

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
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `accepting`, which
    // outlives the call; a non-socket fd only yields an error.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
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
/// one (blocking, `SOCK_CLOEXEC`) to `on_accept`. Several threads may run this
/// on the same listener at once; each accepts until `EAGAIN` per wake-up (up
/// to a batch limit). Sets `O_NONBLOCK` on the listener (see module doc).
/// Transient accept errors are counted in [`AcceptStats::errors`] and
/// survived; any other error ends the loop with `Err`. Connections still
/// queued when `stop` fires stay in the listener's backlog.
pub fn accept_loop(
    listener: BorrowedFd<'_>,
    stop: &Stopper,
    mut on_accept: impl FnMut(OwnedFd),
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
                    on_accept(fd);
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
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The acceptor test harness, shared with `uring.rs`: acceptor threads
    //! on one listener, a loopback client, bounded waits, and a guard that
    //! always stops and joins the threads.

    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// Runs one backend's accept loop with a type-erased callback.
    pub(crate) type Runner = Arc<
        dyn Fn(BorrowedFd<'_>, &Stopper, &mut dyn FnMut(OwnedFd)) -> io::Result<AcceptStats>
            + Send
            + Sync,
    >;

    /// A loopback listener with a deep backlog (so a fast client never
    /// waits for SYN retransmits).
    pub(crate) fn listener() -> TcpListener {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        s.listen(4096).unwrap();
        s.into()
    }

    /// Whether `fd` is blocking and close-on-exec, as accepted fds must be.
    fn blocking_and_cloexec(fd: BorrowedFd<'_>) -> bool {
        // SAFETY: F_GETFL/F_GETFD take no argument and touch no memory.
        let (fl, fdfl) = unsafe {
            (
                libc::fcntl(fd.as_raw_fd(), libc::F_GETFL),
                libc::fcntl(fd.as_raw_fd(), libc::F_GETFD),
            )
        };
        fl >= 0 && fl & libc::O_NONBLOCK == 0 && fdfl >= 0 && fdfl & libc::FD_CLOEXEC != 0
    }

    /// CPU time the calling thread has used.
    pub(crate) fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into `ts`, which outlives
        // the call.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Where an acceptor thread sends its result and CPU time when it ends.
    type Done = mpsc::Receiver<(io::Result<AcceptStats>, Duration)>;

    /// Acceptor threads on one listener; stopped and joined on drop.
    pub(crate) struct Acceptors {
        stop: Arc<Stopper>,
        threads: Vec<(Done, JoinHandle<()>)>,
        /// Connections each thread accepted and found valid.
        pub(crate) counts: Vec<Arc<AtomicU64>>,
        /// Accepted fds that were not a blocking, close-on-exec socket
        /// connected to the listener's address.
        pub(crate) bad: Arc<AtomicU64>,
    }

    impl Acceptors {
        pub(crate) fn spawn(listener: &TcpListener, threads: usize, run: Runner) -> Self {
            let stop = Arc::new(Stopper::new().unwrap());
            let addr = listener.local_addr().unwrap();
            let bad = Arc::new(AtomicU64::new(0));
            let mut me = Acceptors {
                stop,
                threads: Vec::new(),
                counts: Vec::new(),
                bad,
            };
            for _ in 0..threads {
                let l = listener.try_clone().unwrap(); // same socket, another fd
                let (stop, run, bad) = (me.stop.clone(), run.clone(), me.bad.clone());
                let count = Arc::new(AtomicU64::new(0));
                let c = count.clone();
                let (tx, rx) = mpsc::channel();
                let h = std::thread::spawn(move || {
                    let cpu0 = thread_cpu();
                    let mut cb = |fd: OwnedFd| {
                        let ok = blocking_and_cloexec(fd.as_fd());
                        let s = TcpStream::from(fd);
                        if ok && s.local_addr().ok() == Some(addr) {
                            c.fetch_add(1, Ordering::Relaxed);
                        } else {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    };
                    let r = run(l.as_fd(), &stop, &mut cb);
                    let _ = tx.send((r, thread_cpu() - cpu0));
                });
                me.counts.push(count);
                me.threads.push((rx, h));
            }
            me
        }

        pub(crate) fn total(&self) -> u64 {
            self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
        }

        /// Polls until `n` connections were accepted or `timeout` passed.
        pub(crate) fn wait_for(&self, n: u64, timeout: Duration) -> bool {
            let deadline = Instant::now() + timeout;
            while self.total() < n {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            true
        }

        /// Stops the threads and returns each one's result and CPU time;
        /// panics if one does not exit within 10 s.
        pub(crate) fn finish(mut self) -> Vec<(io::Result<AcceptStats>, Duration)> {
            self.stop.stop();
            let mut out = Vec::new();
            for (rx, h) in std::mem::take(&mut self.threads) {
                let r = rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("acceptor thread did not exit within 10 s of stop");
                h.join().unwrap();
                out.push(r);
            }
            out
        }
    }

    impl Drop for Acceptors {
        fn drop(&mut self) {
            self.stop.stop();
            for (rx, h) in self.threads.drain(..) {
                if rx.recv_timeout(Duration::from_secs(10)).is_ok() {
                    let _ = h.join();
                }
            }
        }
    }

    /// Connects to `addr` `n` times, closing each connection at once.
    pub(crate) fn connect_n(addr: SocketAddr, n: u64) {
        for i in 0..n {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect #{i} to {addr}: {e}"));
        }
    }

    /// Connects `n` times from `clients` threads at once (`n` split evenly).
    pub(crate) fn connect_parallel(addr: SocketAddr, n: u64, clients: u64) {
        std::thread::scope(|s| {
            for c in 0..clients {
                let share = n / clients + u64::from(c < n % clients);
                s.spawn(move || connect_n(addr, share));
            }
        });
    }

    /// `threads` acceptors on one listener take `n` connections made by as
    /// many client threads, none lost, every one a valid socket; then all
    /// stop on one `Stopper`.
    pub(crate) fn count_test(name: &str, l: &TcpListener, threads: usize, n: u64, run: Runner) {
        let acc = Acceptors::spawn(l, threads, run);
        connect_parallel(l.local_addr().unwrap(), n, threads as u64);
        let arrived = acc.wait_for(n, Duration::from_secs(20));
        let per_thread: Vec<u64> = acc
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let bad = acc.bad.load(Ordering::Relaxed);
        let results = acc.finish();
        let mut accepted = 0;
        for (r, _) in &results {
            accepted += r.as_ref().expect("accept loop failed").accepted;
        }
        eprintln!("{name}: per thread {per_thread:?}, stats {results:?}");
        assert!(
            arrived,
            "{name}: only {} of {n} arrived in 20 s",
            per_thread.iter().sum::<u64>()
        );
        assert_eq!(
            bad, 0,
            "{name}: accepted fds that were not valid blocking CLOEXEC sockets"
        );
        assert_eq!(
            per_thread.iter().sum::<u64>(),
            n,
            "{name}: connections lost or duplicated"
        );
        assert_eq!(accepted, n, "{name}: stats disagree with the callback");
    }

    /// Stops an acceptor while a client is still connecting: every
    /// connection is either handed to the callback or still in the backlog
    /// afterwards, never lost in between (the io_uring cancel path).
    pub(crate) fn stop_midstream_test(name: &str, run: Runner) {
        const N: u64 = 3000;
        let l = listener();
        let addr = l.local_addr().unwrap();
        let acc = Acceptors::spawn(&l, 1, run);
        let client = std::thread::spawn(move || connect_n(addr, N));
        let some = acc.wait_for(N / 4, Duration::from_secs(20));
        let counts = acc.counts.clone();
        let bad = acc.bad.clone();
        let results = acc.finish();
        client.join().expect("client failed");
        let handed: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        l.set_nonblocking(true).unwrap();
        let mut left = 0;
        while l.accept().is_ok() {
            left += 1;
        }
        eprintln!("{name}: {handed} handed over, {left} left in the backlog, {results:?}");
        assert!(some, "{name}: nothing arrived");
        assert_eq!(bad.load(Ordering::Relaxed), 0);
        assert_eq!(results[0].0.as_ref().unwrap().accepted, handed);
        assert_eq!(handed + left, N, "{name}: connections lost across stop");
    }

    const EMFILE_CHILD: &str = "HERD_TEST_EMFILE_CHILD";

    /// Runs out of descriptors while a connection waits to be accepted: the
    /// loop must count `EMFILE`, back off, and accept the connection once
    /// descriptors are free again. Exhausting the fd table would break
    /// tests running beside it, so the parent re-runs this very test (named
    /// `test_path`) alone in a child process and checks that it passed.
    pub(crate) fn emfile_test(test_path: &str, run: Runner) {
        if std::env::var_os(EMFILE_CHILD).is_none() {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([test_path, "--exact", "--nocapture", "--test-threads=1"])
                .env(EMFILE_CHILD, "1")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let status = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break st;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{test_path}: EMFILE child hung");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(
                status.success(),
                "{test_path}: EMFILE child failed: {status}"
            );
            return;
        }
        let l = listener();
        let addr = l.local_addr().unwrap();
        let acc = Acceptors::spawn(&l, 1, run);
        connect_n(addr, 1); // proves the loop (and its ring) is up
        assert!(acc.wait_for(1, Duration::from_secs(10)));
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let mut filler = Vec::new();
        loop {
            match l.as_fd().try_clone_to_owned() {
                Ok(fd) => filler.push(fd),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("dup: {e}"),
            }
        }
        // Queued in the backlog; accepting it now fails with EMFILE. There
        // is no readiness to poll for: give the loop ~10 back-off rounds.
        client.connect(&addr.into()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(acc.total(), 1, "accepted without a free descriptor?");
        drop(filler);
        assert!(
            acc.wait_for(2, Duration::from_secs(10)),
            "not accepted after EMFILE"
        );
        let (r, _) = acc.finish().pop().unwrap();
        let stats = r.expect("EMFILE must not end the loop");
        eprintln!("after EMFILE: {stats:?}");
        assert_eq!(stats.accepted, 2);
        assert!(stats.errors >= 1, "EMFILE not counted: {stats:?}");
    }

    #[test]
    fn epoll_survives_emfile() {
        emfile_test("sys::epoll::tests::epoll_survives_emfile", epoll_runner());
    }

    fn epoll_runner() -> Runner {
        Arc::new(|l, s, cb| accept_loop(l, s, cb))
    }

    #[test]
    fn epoll_two_threads_accept_all() {
        count_test("epoll x2", &listener(), 2, 2000, epoll_runner());
    }

    #[test]
    fn epoll_leaves_accepted_fds_blocking_on_nonblocking_listener() {
        let l = listener();
        l.set_nonblocking(true).unwrap();
        count_test("epoll x1", &l, 1, 200, epoll_runner());
    }

    #[test]
    fn epoll_stop_midstream_loses_nothing() {
        stop_midstream_test("epoll", epoll_runner());
    }

    #[test]
    fn stopper_is_level_and_shared() {
        let s = Stopper::new().unwrap();
        assert!(!s.is_stopped());
        s.stop();
        s.stop();
        assert!(
            s.is_stopped() && s.is_stopped(),
            "stays readable for every thread"
        );
    }

    #[test]
    fn not_a_listener_is_refused_clearly() {
        let l = listener();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let stop = Stopper::new().unwrap();
        stop.stop();
        let e = accept_loop(c.as_fd(), &stop, |_| {}).unwrap_err();
        assert!(e.to_string().contains("not listening"), "{e}");
        let e = accept_loop(stop.as_fd(), &stop, |_| {}).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
    }

    #[test]
    fn error_classes() {
        assert_eq!(classify_accept_error(libc::EMFILE), AcceptError::BackOff);
        assert_eq!(classify_accept_error(libc::ENFILE), AcceptError::BackOff);
        assert_eq!(
            classify_accept_error(libc::ECONNABORTED),
            AcceptError::Retry
        );
        assert_eq!(classify_accept_error(libc::EBADF), AcceptError::Fatal);
        assert_eq!(classify_accept_error(libc::EINVAL), AcceptError::Fatal);
    }
}

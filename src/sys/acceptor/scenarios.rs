//! The acceptor test harness both backends' tests run (`sys::epoll` and
//! `sys::uring`): acceptor threads on one listener, a loopback client,
//! bounded waits, and a guard that always stops and joins the threads.

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
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
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

/// A sink that counts connections and batch ends, shared with the test.
pub(crate) struct BatchSink {
    /// Connections given to the sink.
    pub conns: Arc<AtomicU64>,
    /// Connections given since the last `batch_end` (must be 0 whenever
    /// the loop sleeps).
    pub pending: Arc<AtomicU64>,
    /// `batch_end` calls that closed a non-empty batch.
    pub batches: Arc<AtomicU64>,
    held: Vec<OwnedFd>,
}

impl AcceptSink for BatchSink {
    fn conn(&mut self, fd: OwnedFd) {
        self.held.push(fd);
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.conns.fetch_add(1, Ordering::SeqCst);
    }
    fn batch_end(&mut self, _out: Option<&mut Outbox>) {
        if !self.held.is_empty() {
            self.batches.fetch_add(1, Ordering::SeqCst);
        }
        self.held.clear();
        self.pending.store(0, Ordering::SeqCst);
    }
}

/// Every connection a loop accepts is followed by a `batch_end` before the
/// loop sleeps (a corked acceptor flushes there: a missing call would
/// leave connections unsent until the next one arrived), and parallel
/// clients make batches of more than one.
pub(crate) fn batch_end_test<F>(name: &str, run: F)
where
    F: FnOnce(BorrowedFd<'_>, &Stopper, BatchSink) -> io::Result<AcceptStats> + Send + 'static,
{
    const N: u64 = 2000;
    let l = listener();
    let addr = l.local_addr().unwrap();
    let (conns, pending, batches) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let sink = BatchSink {
        conns: conns.clone(),
        pending: pending.clone(),
        batches: batches.clone(),
        held: Vec::new(),
    };
    let stop = Arc::new(Stopper::new().unwrap());
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || run(l.as_fd(), &stop2, sink).map(|_| ()));
    connect_parallel(addr, N, 8);
    let t0 = Instant::now();
    while conns.load(Ordering::SeqCst) < N && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The loop is idle now: the last batch must have been closed.
    let t1 = Instant::now();
    while pending.load(Ordering::SeqCst) != 0 && t1.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (n, left, b) = (
        conns.load(Ordering::SeqCst),
        pending.load(Ordering::SeqCst),
        batches.load(Ordering::SeqCst),
    );
    stop.stop();
    t.join().unwrap().expect("accept loop failed");
    eprintln!("{name}: {n} connections in {b} batches");
    assert_eq!(n, N, "{name}: connections lost");
    assert_eq!(
        left, 0,
        "{name}: {left} connections never closed by batch_end"
    );
    assert!(
        (1..=N).contains(&b),
        "{name}: {b} batches for {N} connections"
    );
}

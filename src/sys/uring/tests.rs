//! Tests of `uring`.
use super::*;
use crate::sys::acceptor::scenarios::{
    batch_end_test, connect_n, count_test, emfile_test, listener, stop_midstream_test, thread_cpu,
    Acceptors, Runner,
};
use std::net::TcpStream;
use std::sync::Arc;

/// Skips the test loudly when io_uring (or multishot accept, when
/// `multishot` is asked for) is not available here.
macro_rules! require_uring {
    ($multishot:expr) => {
        match probe() {
            Err(why) => {
                crate::testing::skip("uring", &format!("io_uring unavailable: {why}"));
                return;
            }
            Ok(f) if $multishot && !f.multishot_accept => {
                crate::testing::skip(
                    "uring",
                    &format!(
                        "multishot accept unavailable on kernel {}",
                        kernel_release()
                    ),
                );
                return;
            }
            Ok(f) => f,
        }
    };
}

fn runner(multishot: bool) -> Runner {
    Arc::new(move |l, s, cb| {
        accept_loop(
            l,
            s,
            AcceptOptions {
                multishot,
                ring_entries: 64,
                ..AcceptOptions::default()
            },
            cb,
        )
    })
}

#[test]
fn probe_reports_features() {
    let f = require_uring!(false);
    let release = kernel_release();
    eprintln!("io_uring on {release}: {f} ({f:?})");
    if kernel_version(&release).is_some_and(|v| v >= (6, 1)) {
        assert!(
            f.multishot_accept && f.single_issuer && f.defer_taskrun && f.coop_taskrun,
            "{f:?}"
        );
    }
}

#[test]
fn setup_errors_say_why() {
    let e = setup_error(&io::Error::from_raw_os_error(libc::EPERM));
    assert!(
        e.starts_with("io_uring_setup: Operation not permitted"),
        "{e}"
    );
    assert!(
        e.contains("seccomp") || e.contains("io_uring_disabled"),
        "{e}"
    );
    let e = setup_error(&io::Error::from_raw_os_error(libc::ENOSYS));
    assert!(e.contains("without io_uring"), "{e}");
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
    assert_eq!(kernel_version("5.19.0"), Some((5, 19)));
    assert_eq!(kernel_version("6.1-rc3"), Some((6, 1)));
    assert_eq!(kernel_version("garbage"), None);
}

#[test]
fn multishot_accepts_1000() {
    require_uring!(true);
    count_test("uring multishot x1", &listener(), 1, 1000, runner(true));
}

#[test]
fn single_shot_accepts_1000() {
    require_uring!(false);
    count_test("uring single-shot x1", &listener(), 1, 1000, runner(false));
}

#[test]
fn two_multishot_rings_share_one_listener() {
    require_uring!(true);
    count_test("uring multishot x2", &listener(), 2, 2000, runner(true));
}

#[test]
fn works_on_a_nonblocking_listener() {
    // The epoll backend makes the shared listener O_NONBLOCK; io_uring
    // must still wait for connections (not fail with EAGAIN) and hand
    // out blocking fds.
    require_uring!(true);
    let l = listener();
    l.set_nonblocking(true).unwrap();
    count_test(
        "uring multishot on O_NONBLOCK listener",
        &l,
        1,
        200,
        runner(true),
    );
    count_test(
        "uring single-shot on O_NONBLOCK listener",
        &l,
        1,
        200,
        runner(false),
    );
}

#[test]
fn stop_midstream_loses_nothing() {
    require_uring!(true);
    stop_midstream_test("uring multishot", runner(true));
    stop_midstream_test("uring single-shot", runner(false));
}

#[test]
fn survives_emfile() {
    require_uring!(true);
    emfile_test("sys::uring::tests::survives_emfile", runner(true));
}

#[test]
fn single_shot_survives_emfile() {
    require_uring!(false);
    emfile_test(
        "sys::uring::tests::single_shot_survives_emfile",
        runner(false),
    );
}

#[test]
fn stops_when_idle() {
    require_uring!(true);
    let acc = Acceptors::spawn(&listener(), 2, runner(true));
    for (r, _) in acc.finish() {
        assert_eq!(r.unwrap(), AcceptStats::default());
    }
}

#[test]
fn not_a_listener_is_refused_clearly() {
    require_uring!(false);
    let l = listener();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let stop = Stopper::new().unwrap();
    let e = accept_loop(c.as_fd(), &stop, AcceptOptions::default(), |_| {}).unwrap_err();
    assert!(e.to_string().contains("not listening"), "{e}");
}

/// Pins the calling thread to `cpu` (benchmark only).
fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; all-zero is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE on any machine this runs on; `set` is
    // initialised and we pass its real size.
    unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One benchmark run's measurements.
struct Measured {
    /// Client start (streaming) or acceptor start (burst) to last accept.
    wall: Duration,
    /// Acceptor thread CPU up to the last accept, closes included.
    cpu: Duration,
    /// The part of `cpu` spent closing accepted fds.
    close_cpu: Duration,
    stats: AcceptStats,
}

/// One acceptor thread pinned to CPU 1 and a client (this thread)
/// pinned to CPU 0 that connects and closes `n` times: while the
/// acceptor runs (`burst` false), or all before it starts, filling the
/// backlog (`burst` true, n <= somaxconn), which makes the acceptor the
/// bottleneck. The acceptor keeps the fds and closes them in batches of
/// 512, timing the closes separately, so the accept path's own CPU can
/// be told apart from `close` (which a real dispatcher also pays).
fn bench_one(run: &Runner, n: u64, burst: bool) -> Measured {
    let l = listener();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(Stopper::new().unwrap());
    let (stop2, run) = (stop.clone(), run.clone());
    let (go_tx, go_rx) = std::sync::mpsc::channel::<Instant>();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        pin(1);
        let t0 = go_rx.recv().unwrap();
        let mut held = Vec::with_capacity(512);
        let (mut close_cpu, mut count, mut last) = (Duration::ZERO, 0, None);
        let cpu0 = thread_cpu();
        let r = run(l.as_fd(), &stop2, &mut |fd| {
            held.push(fd);
            count += 1;
            if held.len() == 512 || count == n {
                let t = thread_cpu();
                held.clear();
                close_cpu += thread_cpu() - t;
            }
            if count == n {
                last = Some((t0.elapsed(), thread_cpu() - cpu0));
                stop2.stop();
            }
        });
        let _ = tx.send((r, last, close_cpu));
    });
    pin(0);
    if burst {
        connect_n(addr, n);
        go_tx.send(Instant::now()).unwrap();
    } else {
        go_tx.send(Instant::now()).unwrap();
        connect_n(addr, n);
    }
    let got = rx.recv_timeout(Duration::from_secs(60));
    stop.stop();
    let (r, last, close_cpu) = got.expect("acceptor did not finish in 60 s");
    h.join().unwrap();
    let (wall, cpu) = last.expect("not all connections accepted");
    Measured {
        wall,
        cpu,
        close_cpu,
        stats: r.unwrap(),
    }
}

/// Not a timed test: prints connections/s and acceptor CPU per
/// connection for each backend, streaming (20k connect+close from one
/// client thread) and burst (drain a backlog of 4000). Run with
/// `cargo test --release --lib sys::uring::tests::accept_throughput
/// -- --ignored --nocapture --test-threads=1` on an idle machine.
#[test]
#[ignore]
fn accept_throughput() {
    require_uring!(true);
    let opts = |multishot| AcceptOptions {
        multishot,
        ..AcceptOptions::default()
    };
    let epoll: Runner = Arc::new(|l, s, cb| crate::sys::epoll::accept_loop(l, s, cb));
    let modes: [(&str, Runner); 3] = [
        (
            "uring multishot",
            Arc::new(move |l, s, cb| accept_loop(l, s, opts(true), cb)),
        ),
        (
            "uring single-shot",
            Arc::new(move |l, s, cb| accept_loop(l, s, opts(false), cb)),
        ),
        ("epoll", epoll),
    ];
    for (burst, n) in [(false, 20_000), (true, 4_000)] {
        for round in 1..=3 {
            for (name, run) in &modes {
                let m = bench_one(run, n, burst);
                let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
                eprintln!(
                    "{} {round} {name:>17}: {:>6.0} conn/s, acceptor CPU {:.2} us/conn \
                     (accept path {:.2}, close {:.2}), rearms {}, errors {}",
                    if burst { "burst " } else { "stream" },
                    n as f64 / m.wall.as_secs_f64(),
                    per(m.cpu),
                    per(m.cpu - m.close_cpu),
                    per(m.close_cpu),
                    m.stats.rearms,
                    m.stats.errors
                );
            }
        }
    }
}

#[test]
fn uring_ends_every_batch() {
    require_uring!(true);
    batch_end_test("uring multishot", |l, s, sink| {
        accept_loop(l, s, AcceptOptions::default(), sink)
    });
}

/// Each ring send's outcome: succeeded, descriptors handed back.
type Outcomes = Arc<std::sync::Mutex<Vec<(bool, Vec<OwnedFd>)>>>;

/// A sink that sends every batch through the ring's outbox to one
/// channel, recording each outcome.
struct RingSink {
    chan: OwnedFd,
    pending: Vec<OwnedFd>,
    /// In completion order.
    results: Outcomes,
    next: u64,
    /// Sent with `send_shared`, the sink keeping these references (else the
    /// ring closes what it sent).
    kept: Option<Kept>,
}

type Kept = Arc<std::sync::Mutex<Vec<Arc<OwnedFd>>>>;

impl crate::sys::acceptor::AcceptSink for RingSink {
    fn conn(&mut self, fd: OwnedFd) {
        self.pending.push(fd);
    }
    fn batch_end(&mut self, out: Option<&mut Outbox>) {
        let out = out.expect("the io_uring loop offers an outbox");
        assert!(
            out.send(0, self.chan.as_fd(), b"S".to_vec(), Vec::new())
                .is_err(),
            "a message without descriptors is refused"
        );
        if self.pending.is_empty() {
            return;
        }
        let fds = std::mem::take(&mut self.pending);
        self.next += 1;
        if let Some(kept) = &self.kept {
            let fds: Vec<_> = fds.into_iter().map(Arc::new).collect();
            kept.lock().unwrap().extend(fds.iter().cloned());
            assert!(out
                .send_shared(self.next, self.chan.as_fd(), b"C".to_vec(), fds)
                .is_ok());
        } else if let Err((_, fds)) = out.send(self.next, self.chan.as_fd(), b"C".to_vec(), fds) {
            self.pending = fds;
        }
    }
    fn sent(&mut self, _token: u64, result: io::Result<()>, fds: Vec<OwnedFd>) {
        self.results.lock().unwrap().push((result.is_ok(), fds));
    }
}

/// Runs a [`RingSink`] loop on a fresh listener; returns the listener's
/// address, the stopper, the loop's thread and the outcome list.
#[allow(clippy::type_complexity)]
fn ring_sink_loop(
    chan: OwnedFd,
    kept: Option<Kept>,
) -> (
    std::net::SocketAddr,
    Arc<Stopper>,
    std::thread::JoinHandle<io::Result<AcceptStats>>,
    Outcomes,
) {
    let l = listener();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(Stopper::new().unwrap());
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = RingSink {
        chan,
        pending: Vec::new(),
        results: results.clone(),
        next: 0,
        kept,
    };
    let stop2 = stop.clone();
    let t =
        std::thread::spawn(move || accept_loop(l.as_fd(), &stop2, AcceptOptions::default(), sink));
    (addr, stop, t, results)
}

fn wait_results(r: &std::sync::Mutex<Vec<(bool, Vec<OwnedFd>)>>, n: usize) -> bool {
    let t0 = Instant::now();
    while r.lock().unwrap().len() < n {
        if t0.elapsed() > Duration::from_secs(5) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// The client reads EOF within 5 s.
fn assert_eof(client: &mut TcpStream, what: &str) {
    use std::io::Read;
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0, "{what}");
}

#[test]
fn ring_sends_pass_the_connection_and_close_the_daemons_copy() {
    require_uring!(true);
    use crate::sys::fdpass::{recv_with_fds, socketpair, PairKind};
    let (ours, worker) = socketpair(PairKind::SeqPacket).unwrap();
    let (addr, stop, t, results) = ring_sink_loop(ours, None);
    let mut client = TcpStream::connect(addr).unwrap();
    let mut buf = [0u8; 16];
    let mut fds = Vec::new();
    // Blocking: the ring sends it with the acceptor's next wait.
    let (n, _) = recv_with_fds(worker.as_fd(), &mut buf, &mut fds, false).unwrap();
    assert_eq!((&buf[..n], fds.len()), (&b"C"[..], 1));
    // The worker closes its copy: the client sees EOF only if the ring
    // closed the daemon's.
    drop(fds);
    assert_eof(&mut client, "EOF once the worker closed");
    // A success is reported lazily (it wakes nobody): by the time the
    // loop has stopped, at the latest.
    stop.stop();
    t.join().unwrap().unwrap();
    let r = results.lock().unwrap();
    assert_eq!(r.len(), 1);
    assert!(
        r[0].0 && r[0].1.is_empty(),
        "succeeded, nothing handed back"
    );
}

#[test]
fn a_shared_ring_send_leaves_the_connection_to_the_senders_reference() {
    require_uring!(true);
    use crate::sys::fdpass::{recv_with_fds, socketpair, PairKind};
    let (ours, worker) = socketpair(PairKind::SeqPacket).unwrap();
    let kept = Kept::default();
    let (addr, stop, t, results) = ring_sink_loop(ours, Some(kept.clone()));
    let mut client = TcpStream::connect(addr).unwrap();
    let mut buf = [0u8; 16];
    let mut fds = Vec::new();
    let (n, _) = recv_with_fds(worker.as_fd(), &mut buf, &mut fds, false).unwrap();
    assert_eq!((&buf[..n], fds.len()), (&b"C"[..], 1));
    drop(fds);
    // With no further connection and no stop, the ring lets go of its
    // reference soon (else the client of a connection the worker closed
    // would wait for its EOF until the next connection came).
    assert!(
        wait_results(&results, 1),
        "the shared send was never reaped while the acceptor idled"
    );
    assert_eq!(Arc::strong_count(&kept.lock().unwrap()[0]), 1);
    stop.stop();
    t.join().unwrap().unwrap();
    let (ok, back) = results.lock().unwrap().pop().unwrap();
    assert!(ok && back.is_empty(), "sent, nothing handed back");
    let mut kept = std::mem::take(&mut *kept.lock().unwrap());
    assert_eq!(kept.len(), 1);
    let copy = Arc::try_unwrap(kept.pop().unwrap()).expect("the ring let go of its reference");
    // The worker closed its end; the copy still holds the connection open.
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut b = [0u8; 1];
    use std::io::Read;
    assert!(
        client.read(&mut b).is_err(),
        "no EOF while the copy is held"
    );
    drop(copy);
    assert_eof(&mut client, "EOF once the copy goes");
}

#[test]
fn a_failed_ring_send_hands_the_connections_back_without_waiting_for_more() {
    require_uring!(true);
    use crate::sys::fdpass::{send_with_fds, set_nonblocking, socketpair, PairKind};
    let (ours, _worker) = socketpair(PairKind::SeqPacket).unwrap();
    set_nonblocking(ours.as_fd(), true).unwrap();
    // The worker never reads: fill its channel.
    while send_with_fds(ours.as_fd(), &[0u8; 512], &[], true).is_ok() {}
    let (addr, stop, t, results) = ring_sink_loop(ours, None);
    let _client = TcpStream::connect(addr).unwrap();
    // No second connection comes to wake the acceptor: the failure must.
    assert!(
        wait_results(&results, 1),
        "the failed send was never reaped"
    );
    let (ok, back) = results.lock().unwrap().pop().unwrap();
    assert!(!ok, "a full channel fails the send");
    assert_eq!(back.len(), 1, "the connection comes back to the sender");
    stop.stop();
    t.join().unwrap().unwrap();
}

//! Socket activation both ways: the test plays systemd. It binds listeners
//! itself and passes them to a foreground `herd daemon` as fds 3… with
//! `LISTEN_FDS` / `LISTEN_PID` (the child's own pid, written by herd's own
//! spawner in the child) / `LISTEN_FDNAMES`, and it binds a datagram socket
//! as `NOTIFY_SOCKET` to receive what herd puts in the fd store.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::reuseport::start_hello_mode;

const T: Duration = Duration::from_secs(10);

/// A foreground daemon this test started; killed and reaped on drop.
struct Daemon {
    pid: i32,
    log: PathBuf,
}

impl Daemon {
    /// `herd daemon` for `h`, with `fds` as 3, 4, …, and `env` on top of
    /// the test's environment. With fds, `LISTEN_FDS`/`LISTEN_PID` are set.
    fn start(h: &TestHome, tag: &str, fds: &[BorrowedFd<'_>], env: &[(&str, &str)]) -> Daemon {
        let log = h.root.join(format!("daemon-{tag}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.as_bytes();
                !k.starts_with(b"LISTEN_")
                    && !matches!(k, b"NOTIFY_SOCKET" | b"HERD_IO" | b"PORT" | b"HERD_HOME")
            })
            .collect();
        vars.push(("HERD_HOME".into(), h.root.clone().into()));
        if !fds.is_empty() {
            vars.push(("LISTEN_FDS".into(), fds.len().to_string().into()));
        }
        for (k, v) in env {
            vars.push((k.into(), v.into()));
        }
        let plan = herd::sys::spawn::SpawnPlan {
            program: HERD.as_ref(),
            args: vec![HERD.as_ref(), "daemon".as_ref()],
            env: vars
                .iter()
                .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
                .collect(),
            cwd: h.root.as_os_str(),
            stdout: out.as_fd(),
            stderr: out.as_fd(),
            extra: fds.to_vec(),
            listen_pid: !fds.is_empty(),
            cpu: None,
        };
        let pid = herd::sys::spawn::spawn(&plan)
            .expect("spawn herd daemon")
            .pid;
        let d = Daemon { pid, log };
        d.wait_log("listening on");
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + T;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "daemon log lacks {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` and waits (bounded) until the daemon is gone, reaped.
    fn stop(&mut self, sig: i32) {
        if self.pid <= 0 {
            return;
        }
        let _ = herd::sys::process::kill_pid(self.pid, sig);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = herd::sys::process::try_reap(self.pid) {
                break;
            }
            if Instant::now() > deadline {
                let _ = herd::sys::process::kill_pid(self.pid, libc::SIGKILL);
                let _ = herd::sys::process::reap_blocking(self.pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.pid = 0;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        }
        // Its workers die with it (PR_SET_PDEATHSIG), and TestHome's drop
        // kills what is left by pid.
        self.stop(libc::SIGKILL);
    }
}

/// A TCP listener on 127.0.0.1, ephemeral port, with a large backlog.
fn listener() -> (socket2::Socket, u16) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.listen(4096).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (s, port)
}

/// The inode of a socket (as `/proc/PID/fd` shows it: `socket:[ino]`).
fn inode(fd: BorrowedFd<'_>) -> u64 {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .ino()
}

/// Whether process `pid` holds the socket with inode `ino`.
fn holds(pid: i32, ino: u64) -> bool {
    let want = format!("socket:[{ino}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
        })
        .unwrap_or(false)
}

#[test]
fn a_passed_listener_is_used_for_the_app_and_kept_across_delete() {
    let h = TestHome::new();
    let (sock, port) = listener();
    let ino = inode(sock.as_fd());
    let d = Daemon::start(&h, "1", &[sock.as_fd()], &[("LISTEN_FDNAMES", "web")]);
    d.wait_log(&format!(
        "adopted fd 3 `web`, a TCP listener on 127.0.0.1:{port}"
    ));
    // systemd would close its copy only when the socket unit stops; the
    // test closes its own so that only the daemon keeps the port open.
    drop(sock);
    assert!(holds(d.pid, ino), "the daemon lacks the passed socket");

    // fdpass (the default): the port was held before herd ran, so a bind
    // of its own would have failed; the log says it used the passed one.
    start_hello_mode(&h, port, "fdpass", &["-i", "2"]);
    d.wait_log(&format!("port {port} uses the passed listener `web`"));
    let (status, _, _) = http_get(port).unwrap();
    assert!(status.contains(" 200 "), "{status}");

    // Deleted: the listener stays open (a connection waits in its backlog)
    // and the next start on the port serves it.
    h.run(&["delete", "hello"]).ok();
    assert!(holds(d.pid, ino), "delete closed the passed listener");
    d.wait_log(&format!(
        "kept listener `web` on 127.0.0.1:{port}: waiting for an app"
    ));
    let mut waiting =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), T).unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    waiting.set_read_timeout(Some(T)).unwrap();
    start_hello_mode(&h, port, "shared", &["-i", "2"]);
    let mut resp = Vec::new();
    waiting.read_to_end(&mut resp).unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );

    // reuseport: the passed socket has no SO_REUSEPORT, so the instances
    // share it (logged); restart keeps it too.
    h.run(&["delete", "hello"]).ok();
    start_hello_mode(&h, port, "reuseport", &["-i", "2"]);
    d.wait_log("has no SO_REUSEPORT, so the 2 instances");
    h.run(&["restart", "hello"]).ok();
    h.wait_for("restarted", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    wait_http(port, T);
    assert!(holds(d.pid, ino));
    // A second app on the same port is refused, as a bound port would be.
    h.run(&[
        "start",
        HERD,
        "--interpreter",
        "none",
        "--name",
        "other",
        "--port",
        &port.to_string(),
        "--host",
        "127.0.0.1",
        "-i",
        "1",
        "--",
        "hello",
    ])
    .fails_with("already in use");
}

/// What the load saw, by kind.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    timeout: AtomicU64,
    other: AtomicU64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "ok={} refused={} reset={} timeout={} other={}",
            self.ok.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.reset.load(Ordering::Relaxed),
            self.timeout.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed)
        )
    }
    fn done(&self) -> u64 {
        [
            &self.ok,
            &self.refused,
            &self.reset,
            &self.timeout,
            &self.other,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// One connection-per-request GET, classified.
fn one_request(port: u16, c: &Counts) {
    use std::io::ErrorKind as K;
    let classify = |e: std::io::Error| match e.kind() {
        K::ConnectionRefused => &c.refused,
        K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted | K::UnexpectedEof => &c.reset,
        K::TimedOut | K::WouldBlock => &c.timeout,
        _ => &c.other,
    };
    let r = (|| {
        let mut s = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_secs(5),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        if buf.starts_with(b"HTTP/1.1 200") {
            Ok(())
        } else {
            Err(std::io::Error::from(K::UnexpectedEof))
        }
    })();
    match r {
        Ok(()) => &c.ok,
        Err(e) => classify(e),
    }
    .fetch_add(1, Ordering::Relaxed);
}

/// 2,000 connection-per-request requests over 8 threads against a passed
/// listener while the daemon is killed with `sig` and started again with
/// the same fd: no connection attempt may be refused.
fn restart_under_load(sig: i32, tag: &str) {
    const TOTAL: u64 = 2000;
    const THREADS: u64 = 8;
    let h = TestHome::new();
    let (sock, port) = listener();
    let names = [("LISTEN_FDNAMES", "web")];
    let mut d = Daemon::start(&h, "a", &[sock.as_fd()], &names);
    start_hello_mode(&h, port, "fdpass", &["-i", "2"]);
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs(90);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let c = counts.clone();
            std::thread::spawn(move || {
                for _ in 0..TOTAL / THREADS {
                    if Instant::now() > deadline {
                        break;
                    }
                    one_request(port, &c);
                }
            })
        })
        .collect();
    let wait_done = |n: u64| {
        let until = Instant::now() + Duration::from_secs(30);
        while counts.done() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    wait_done(TOTAL / 4);
    let before = counts.done();
    let t0 = Instant::now();
    d.stop(sig);
    // herd.sock and herd.pid of a killed daemon are stale; the new one
    // replaces them (it holds the lock).
    d = Daemon::start(&h, "b", &[sock.as_fd()], &names);
    start_hello_mode(&h, port, "fdpass", &["-i", "2"]);
    let gap = t0.elapsed();
    for t in threads {
        t.join().unwrap();
    }
    let line = counts.line();
    println!(
        "activation restart ({tag}): {TOTAL} requests, {THREADS} threads, conn-per-request; restart after {before} done, {} ms to serve again; {line}",
        gap.as_millis()
    );
    assert_eq!(counts.done(), TOTAL, "{line}");
    assert_eq!(counts.refused.load(Ordering::Relaxed), 0, "{line}");
    assert_eq!(counts.timeout.load(Ordering::Relaxed), 0, "{line}");
    assert_eq!(counts.other.load(Ordering::Relaxed), 0, "{line}");
    // Only requests in flight at the kill may be cut (at most one per
    // client thread, plus what the daemon had accepted and not handed on).
    // A SIGTERM stops the acceptors before the workers, which finish what
    // they hold: nothing is cut. A SIGKILL cuts what was in flight.
    let max_reset = if sig == libc::SIGTERM { 0 } else { 64 };
    assert!(counts.reset.load(Ordering::Relaxed) <= max_reset, "{line}");
    assert!(counts.ok.load(Ordering::Relaxed) >= TOTAL - 64, "{line}");
    d.wait_log(&format!("port {port} uses the passed listener `web`"));
    drop(sock);
}

#[test]
fn a_herd_restart_by_sigterm_with_a_passed_listener_refuses_no_connection() {
    restart_under_load(libc::SIGTERM, "SIGTERM");
}

#[test]
fn a_herd_crash_by_sigkill_with_a_passed_listener_refuses_no_connection() {
    restart_under_load(libc::SIGKILL, "SIGKILL");
}

/// Receives one datagram on the fake systemd socket (bounded).
fn recv_notify(rx: &std::os::unix::net::UnixDatagram) -> (String, Vec<OwnedFd>) {
    let mut buf = [0u8; 4096];
    let mut fds = Vec::new();
    let (n, _) = herd::sys::fdpass::recv_with_fds(rx.as_fd(), &mut buf, &mut fds, false)
        .expect("no datagram from herd on NOTIFY_SOCKET");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), fds)
}

/// The next `FDSTORE=1` datagram (others, such as `READY=1`, skipped).
fn recv_fdstore(rx: &std::os::unix::net::UnixDatagram) -> (String, OwnedFd) {
    for _ in 0..16 {
        let (msg, mut fds) = recv_notify(rx);
        if msg.lines().any(|l| l == "FDSTORE=1") {
            assert_eq!(fds.len(), 1, "{msg}: {} fds", fds.len());
            return (msg, fds.remove(0));
        }
    }
    panic!("no FDSTORE=1 datagram among 16");
}

fn fake_systemd(h: &TestHome) -> (std::os::unix::net::UnixDatagram, String) {
    let path: PathBuf = h.root.join("systemd-notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(T)).unwrap();
    (rx, Path::new(&path).to_string_lossy().into_owned())
}

#[test]
fn listeners_go_to_the_fd_store_and_come_back() {
    let h = TestHome::new();
    let (rx, notify) = fake_systemd(&h);
    let port = free_port();
    let env = [("NOTIFY_SOCKET", notify.as_str())];
    let mut d = Daemon::start(&h, "a", &[], &env);
    start_hello_mode(&h, port, "fdpass", &["-i", "2"]);
    let (msg, fd) = recv_fdstore(&rx);
    let name = format!("herd-port-{port}");
    assert!(msg.lines().any(|l| l == format!("FDNAME={name}")), "{msg}");
    let addr = herd::sys::activation::local_addr(fd.as_fd()).unwrap();
    assert_eq!(addr.port(), port, "stored fd is bound to {addr}");

    // A crash: systemd passes the stored fd back with its name.
    d.stop(libc::SIGKILL);
    let env2 = [
        ("NOTIFY_SOCKET", notify.as_str()),
        ("LISTEN_FDNAMES", name.as_str()),
    ];
    let d2 = Daemon::start(&h, "b", &[fd.as_fd()], &env2);
    d2.wait_log(&format!("adopted fd 3 `{name}`"));
    // It is stored again (systemd ignores one it already holds).
    let (msg2, again) = recv_fdstore(&rx);
    assert!(msg2.contains(&format!("FDNAME={name}")), "{msg2}");
    assert_eq!(inode(again.as_fd()), inode(fd.as_fd()));
    start_hello_mode(&h, port, "fdpass", &["-i", "2"]);
    d2.wait_log(&format!("port {port} uses the passed listener `{name}`"));
    let (status, _, _) = http_get(port).unwrap();
    assert!(status.contains(" 200 "), "{status}");
}

#[test]
fn bad_passed_fds_are_logged_and_ignored() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let cases: [(&str, BorrowedFd<'_>, &str); 3] = [
        ("file", file.as_fd(), "not a socket"),
        ("udp", udp.as_fd(), "a UDP socket"),
        ("tcp", tcp.as_fd(), "a TCP socket that is not listening"),
    ];
    for (tag, fd, why) in cases {
        let h = TestHome::new();
        let d = Daemon::start(&h, tag, &[fd], &[("LISTEN_FDNAMES", tag)]);
        d.wait_log(&format!("socket activation: ignored fd 3 ({tag}): {why}"));
        let port = free_port();
        start_hello_mode(&h, port, "fdpass", &["-i", "1"]);
        assert!(!d.log().contains("uses the passed listener"), "{}", d.log());
    }
    // LISTEN_PID of another process: nothing is taken.
    let h = TestHome::new();
    let d = Daemon::start(&h, "pid", &[], &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")]);
    d.wait_log("is not this process");
    let port = free_port();
    start_hello_mode(&h, port, "fdpass", &["-i", "1"]);
}

//! The built-in hello worker: a tiny HTTP/1.1 server that `herd bench` runs
//! as a cluster so herd's own overhead and fairness can be measured without
//! depending on Node, Python or any other runtime being installed.
//!
//! Each response names the worker's pid (`X-Worker` header and body), which
//! is how the load generator ([`crate::bench::load`]) tallies requests per
//! worker for the fairness indexes in [`crate::metrics::fairness`].
//!
//! The worker is one process pinned to one core by herd, so it runs a
//! current-thread tokio runtime: one thread per worker is the design, and a
//! second thread would only compete with the neighbouring worker's core.
//! The hot path is allocation-free: responses are built once at start-up and
//! each connection reuses one read buffer and one write buffer.
//!
//! This module touches sockets only. It never sees fd 3 of the `LISTEN_FDS`
//! protocol as a raw descriptor: wrapping one is `unsafe`, so `src/sys`
//! turns it into a `TcpListener` and hands that to [`serve`].

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

/// Bytes buffered per connection. A request head that does not fit is
/// refused with 431; our GETs are ~40 bytes, and 8 KiB also matches the
/// common header limit of other servers.
pub(crate) const READ_BUF: usize = 8 * 1024;

/// Sent (then the connection closed) for a request we cannot frame.
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Sent (then the connection closed) when a request head overflows [`READ_BUF`].
const HEAD_TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Binds `0.0.0.0:port` and serves on it until SIGINT or SIGTERM.
///
/// Used when the worker runs outside herd (`PORT=8080 herd hello`) or under
/// a launcher that does not pass sockets.
pub fn run_on_port(port: u16) -> io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = StdTcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    serve(listener)
}

/// Serves hello responses on an already bound and listening socket until
/// SIGINT or SIGTERM. Then it accepts what is already queued, closes the
/// listener, answers the requests in flight with `Connection: close`, and
/// returns `Ok(())` once they are done (at most 10 s).
///
/// Builds its own current-thread runtime, so call it from plain (non-async)
/// code, as a worker's `main` does.
pub fn serve(listener: StdTcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(accept_loop(listener))
}

/// Serves hello responses on connections handed over by herd's `fdpass`
/// data plane (`HERD_CHANNEL_FD`), reporting each close (counted in the
/// daemon's shared page, `HERD_COUNTERS_FD`) so least-connections dispatch
/// sees this worker's real load. Returns when the daemon closes the
/// channel, after a `Stop` once open connections are done, or on
/// SIGINT/SIGTERM.
pub fn serve_channel(chan: crate::worker::Channel) -> io::Result<()> {
    chan.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, channel_loop(chan))
}

async fn channel_loop(chan: crate::worker::Channel) -> io::Result<()> {
    use crate::worker::Received;
    use std::os::fd::AsFd;
    let readiness = crate::sys::fd::async_fd(
        chan.as_fd().try_clone_to_owned()?,
        tokio::io::Interest::READABLE,
    )?;
    let chan = std::rc::Rc::new(chan);
    let responses = Arc::new(Responses::new(std::process::id()));
    let open = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // Test knob: while this file exists, a starting worker never says ready
    // (reload tests use it to make a replacement that fails).
    if let Some(f) = std::env::var_os("HERD_HELLO_NEVER_READY_IF") {
        if std::path::Path::new(&f).exists() {
            tokio::select! {
                _ = sigint.recv() => return Ok(()),
                _ = sigterm.recv() => return Ok(()),
            }
        }
    }
    chan.ready()?;
    // Without the daemon's counters page, closes are reported once per turn
    // of the event loop: this task runs after the connection tasks that
    // woke it, so one `D` carries all of that turn's closes.
    let closed = std::rc::Rc::new(tokio::sync::Notify::new());
    {
        let (chan, closed) = (chan.clone(), closed.clone());
        tokio::task::spawn_local(async move {
            loop {
                closed.notified().await;
                if chan.flush().is_err() {
                    return;
                }
            }
        });
    }
    // Request latencies go to the daemon 4 times a second at most, and
    // not at all while idle: the first request after a report wakes this.
    let served = std::rc::Rc::new(tokio::sync::Notify::new());
    {
        let (chan, served) = (chan.clone(), served.clone());
        tokio::task::spawn_local(async move {
            loop {
                served.notified().await;
                tokio::time::sleep(Duration::from_millis(250)).await;
                if chan.flush_requests().is_err() {
                    return;
                }
            }
        });
    }
    let serve = |conns: Vec<crate::worker::Conn>| -> io::Result<()> {
        for c in conns {
            let id = c.id;
            c.stream.set_nonblocking(true)?;
            let sock = TcpStream::from_std(c.stream)?;
            let _ = sock.set_nodelay(true);
            let (chan, responses, open, closed, served) = (
                chan.clone(),
                responses.clone(),
                open.clone(),
                closed.clone(),
                served.clone(),
            );
            let received = std::time::Instant::now();
            open.set(open.get() + 1);
            tokio::task::spawn_local(async move {
                let report = |n: usize, took: Duration| {
                    let mut first = false;
                    for _ in 0..n {
                        first |= chan.request_served(took);
                    }
                    if first {
                        served.notify_one();
                    }
                };
                connection(sock, responses, report).await;
                open.set(open.get() - 1);
                chan.closed(id, received.elapsed());
                if !chan.counts_closes() {
                    closed.notify_one();
                }
            });
        }
        Ok(())
    };
    // SIGINT/SIGTERM (`herd stop`) drains like `Stop` does. A signal can
    // overtake connections the daemon already sent: they sit unread in the
    // channel and would be reset when it closes with us, so take them
    // first (the daemon stops dispatching before it signals).
    let drain = |signalled: bool| {
        let open = open.clone();
        let queued = if signalled {
            let mut queued = Vec::new();
            while let Ok(Received::Conns(conns)) = chan.recv(true) {
                queued.extend(conns);
            }
            queued
        } else {
            Vec::new()
        };
        let served = serve(queued);
        async move {
            served?;
            DRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
            // Finish what we have (bounded), then exit.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while open.get() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        }
    };
    loop {
        let mut guard = tokio::select! {
            g = readiness.readable() => g?,
            _ = sigint.recv() => return drain(true).await,
            _ = sigterm.recv() => return drain(true).await,
        };
        loop {
            match chan.recv(true)? {
                Received::Conns(conns) => serve(conns)?,
                Received::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Received::Closed => return Ok(()),
                Received::Stop => return drain(false).await,
            }
        }
    }
}

/// Set when the daemon sends `Stop` (reload, scale down): every connection
/// finishes its current request with `Connection: close`.
pub(crate) static DRAINING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The two canned responses, built once: the pid never changes.
pub(crate) struct Responses {
    pub(crate) keep_alive: Box<[u8]>,
    pub(crate) close: Box<[u8]>,
    /// Artificial service time per response batch (`herd bench --skew-ms`):
    /// set on one instance to model a slow worker.
    delay: Option<Duration>,
}

impl Responses {
    pub(crate) fn new(pid: u32) -> Self {
        let body = format!("hello from {pid}\n");
        let build = |extra: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\
                 X-Worker: {pid}\r\n{extra}\r\n{body}",
                body.len()
            )
            .into_bytes()
            .into_boxed_slice()
        };
        Responses {
            keep_alive: build(""),
            close: build("Connection: close\r\n"),
            delay: slow_delay(),
        }
    }
}

/// `HERD_HELLO_DELAY_MS=N` with `HERD_HELLO_SLOW_INSTANCE=I`: instance I
/// (its `NODE_APP_INSTANCE`) waits N ms before each response.
pub(crate) fn slow_delay() -> Option<Duration> {
    let ms: u64 = std::env::var("HERD_HELLO_DELAY_MS").ok()?.parse().ok()?;
    let slow = std::env::var("HERD_HELLO_SLOW_INSTANCE").ok()?;
    let me = std::env::var("NODE_APP_INSTANCE").ok()?;
    (slow == me && ms > 0).then(|| Duration::from_millis(ms))
}

/// `HERD_HELLO_LEAK_MB_PER_SEC=N`: a thread keeps N MB a second of touched
/// memory alive, forever (the bench's memory scenario, as
/// bench-apps/node/leak.js does for Node).
pub(crate) fn start_leak() {
    let Some(rate) = std::env::var("HERD_HELLO_LEAK_MB_PER_SEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&r| r > 0)
    else {
        return;
    };
    const TICK: Duration = Duration::from_millis(50);
    let chunk = (rate << 20) / (1000 / TICK.as_millis() as u64);
    std::thread::spawn(move || {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            // Filled, so every page is resident.
            kept.push(vec![1u8; chunk as usize]);
            std::hint::black_box(&kept);
            std::thread::sleep(TICK);
        }
    });
}

async fn accept_loop(listener: StdTcpListener) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let responses = Arc::new(Responses::new(std::process::id()));
    // Registered before the first accept so a signal sent right after start-up
    // is not lost to the default disposition (which would kill us uncleanly).
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let serve = |sock: TcpStream| {
        // Responses are one small write each; Nagle would hold them back
        // waiting for the client's delayed ACK.
        let _ = sock.set_nodelay(true);
        let (responses, open) = (Arc::clone(&responses), Arc::clone(&open));
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            connection(sock, responses, |_, _| {}).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    };
    // Under herd with a listener (reuseport/shared): say we serve now.
    let _ = crate::worker::notify_ready();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, _peer)) => serve(sock),
                // Out of fds or memory, or the peer gave up before we
                // accepted: none of these is the listener's fault. Back off
                // briefly so EMFILE does not become a busy loop.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Stop: what the kernel already queued for us would be reset when the
    // listener closes, so take it first; then finish what is in flight.
    DRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
    let std_listener = listener.into_std()?;
    while let Ok((sock, _)) = std_listener.accept() {
        sock.set_nonblocking(true)?;
        serve(TcpStream::from_std(sock)?);
    }
    drop(std_listener);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while open.load(std::sync::atomic::Ordering::Relaxed) > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// What the bytes at the front of a connection's buffer hold.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// No full head yet: read more.
    Incomplete,
    /// A full head of `head_len` bytes, followed by `body_len` body bytes to
    /// discard; `close` when the client asked us to close after responding.
    Complete {
        head_len: usize,
        body_len: u64,
        close: bool,
    },
    /// Not a request we can frame (garbage, bad Content-Length, chunked).
    Invalid,
}

/// Parses one request head at the start of `buf`.
fn parse_request(buf: &[u8]) -> Request {
    let Some(end) = find_head_end(buf) else {
        return Request::Incomplete;
    };
    let head = &buf[..end];
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let request_line = lines.next().unwrap_or_default();
    let Some(version) = request_line.rsplit(|&b| b == b' ').next() else {
        return Request::Invalid;
    };
    // HTTP/1.1 keeps the connection open unless told otherwise; 1.0 closes
    // unless told otherwise.
    let mut close = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Request::Invalid,
    };
    let mut body_len = 0u64;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Request::Invalid;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                Some(n) => body_len = n,
                None => return Request::Invalid,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // We cannot find the end of a chunked body without decoding it;
            // refusing is safer than misreading the next request.
            return Request::Invalid;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    Request::Complete {
        head_len: end,
        body_len,
        close,
    }
}

/// The length of the head including its terminating blank line, if present.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Answers the complete requests at the start of `buf[..*filled]`: their
/// responses are appended to `out` (pipelined requests: one write for the
/// batch), the rest of the buffer moves to the front, and body bytes still
/// to come are counted in `skip`. Returns whether to close once `out` is
/// written (the client asked, herd is draining this worker, a request we
/// cannot frame, or a head larger than the buffer).
pub(crate) fn answer(
    buf: &mut [u8],
    filled: &mut usize,
    skip: &mut u64,
    responses: &Responses,
    out: &mut Vec<u8>,
) -> (bool, usize) {
    let mut pos = 0usize;
    let mut close = false;
    let mut n = 0usize;
    loop {
        if *skip > 0 {
            let avail = *filled - pos;
            let take = usize::try_from(*skip).map_or(avail, |s| s.min(avail));
            pos += take;
            *skip -= take as u64;
            if *skip > 0 {
                break;
            }
        }
        match parse_request(&buf[pos..*filled]) {
            Request::Incomplete => break,
            Request::Complete {
                head_len,
                body_len,
                close: wants_close,
            } => {
                pos += head_len;
                *skip = body_len;
                // Draining (herd asked this worker to stop): answer the
                // request in flight with `Connection: close`, then close,
                // so keep-alive clients reconnect to another worker
                // instead of seeing a reset.
                n += 1;
                if wants_close || DRAINING.load(std::sync::atomic::Ordering::Relaxed) {
                    out.extend_from_slice(&responses.close);
                    close = true;
                    break;
                }
                out.extend_from_slice(&responses.keep_alive);
            }
            Request::Invalid => {
                out.extend_from_slice(BAD_REQUEST);
                close = true;
                break;
            }
        }
    }
    if pos == *filled {
        *filled = 0;
    } else if pos > 0 {
        buf.copy_within(pos..*filled, 0);
        *filled -= pos;
    }
    if *filled == buf.len() && !close {
        out.extend_from_slice(HEAD_TOO_LARGE);
        close = true;
    }
    (close, n)
}

/// Serves one connection: every full request in the buffer (pipelining)
/// gets its response appended to one write, so a batch costs one syscall.
/// `served(n, took)`: `n` requests answered, `took` from their bytes'
/// arrival to the response written.
async fn connection(
    mut sock: TcpStream,
    responses: Arc<Responses>,
    mut served: impl FnMut(usize, Duration),
) {
    let mut buf = vec![0u8; READ_BUF];
    let mut out: Vec<u8> = Vec::with_capacity(4 * responses.close.len());
    let mut filled = 0usize;
    // Body bytes of the last request not yet received; they are discarded
    // as they arrive so they are never parsed as a request.
    let mut skip = 0u64;
    loop {
        match sock.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        let arrived = std::time::Instant::now();
        let (close, n) = answer(&mut buf, &mut filled, &mut skip, &responses, &mut out);
        if !out.is_empty() {
            if let Some(d) = responses.delay {
                tokio::time::sleep(d).await;
            }
            if sock.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
            served(n, arrived.elapsed());
        }
        if close {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_keep_alive_by_default() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            parse_request(req),
            Request::Complete {
                head_len: req.len(),
                body_len: 0,
                close: false
            }
        );
    }

    #[test]
    fn connection_close_and_http10() {
        let req = b"GET / HTTP/1.1\r\nconnection: Close\r\n\r\n";
        assert!(matches!(
            parse_request(req),
            Request::Complete { close: true, .. }
        ));
        let req = b"GET / HTTP/1.0\r\n\r\n";
        assert!(matches!(
            parse_request(req),
            Request::Complete { close: true, .. }
        ));
        let req = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        assert!(matches!(
            parse_request(req),
            Request::Complete { close: false, .. }
        ));
    }

    #[test]
    fn pipelined_head_and_body_length() {
        let buf = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n";
        let Request::Complete {
            head_len, body_len, ..
        } = parse_request(buf)
        else {
            panic!("expected a full head");
        };
        assert_eq!(body_len, 3);
        let next = &buf[head_len + 3..];
        assert!(matches!(parse_request(next), Request::Complete { .. }));
    }

    #[test]
    fn partial_and_invalid() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHo"), Request::Incomplete);
        assert_eq!(parse_request(b"hello\r\n\r\n"), Request::Invalid);
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Request::Invalid
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Request::Invalid
        );
    }

    #[test]
    fn response_is_well_formed() {
        let r = Responses::new(42);
        let text = std::str::from_utf8(&r.keep_alive).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\nX-Worker: 42\r\n"));
        assert!(text.ends_with("\r\n\r\nhello from 42\n"));
        assert!(text.contains("Content-Length: 14\r\n"));
        assert!(std::str::from_utf8(&r.close)
            .unwrap()
            .contains("Connection: close\r\n"));
    }
}

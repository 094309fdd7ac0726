//! The bounded load generator behind `herd bench`: N concurrent HTTP/1.1
//! clients against one address, counting requests per worker (`X-Worker`),
//! errors by kind, and latency in a histogram.
//!
//! It is built in so a benchmark needs nothing but herd (no wrk, no ab), and
//! so it can read the `X-Worker` header that fairness is computed from.
//! Every run is bounded three ways: by `duration`, by the optional
//! `max_requests` budget, and by a per-request timeout; it always stops by
//! itself. It touches only client sockets and its own tokio runtime.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metrics::fairness;

const KEEP_ALIVE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const CLOSE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
/// Largest response head we accept; hello's is ~100 bytes.
const MAX_HEAD: usize = 16 * 1024;
/// Largest whole response we buffer; a bigger one is counted as `other`
/// rather than letting a bad server exhaust our memory.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// A request (including its connect, if any) not answered within this is
/// abandoned and counted as `timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed connect, so a dead server is not hammered in a loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Latency histogram range in microseconds: 1 µs to 60 s, 3 significant figures.
const LATENCY_MAX_US: u64 = 60_000_000;

/// How each client uses its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// One long-lived connection per client, requests sent back to back
    /// (reconnecting after an error): measures the workers' serving speed.
    KeepAlive,
    /// A fresh connection per request (`Connection: close`): measures how
    /// connections are accepted and spread across the workers.
    ConnPerRequest,
}

/// What to run: where, how many clients, for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Address of the server (or cluster) under test.
    pub addr: SocketAddr,
    /// Concurrent clients, each with at most one connection open; at least 1.
    pub connections: usize,
    /// Wall-clock length of the run; requests in flight at the end are dropped
    /// and counted neither as done nor as errors.
    pub duration: Duration,
    /// Keep-alive or one connection per request.
    pub mode: LoadMode,
    /// Stop after this many request attempts in total (successes plus errors).
    pub max_requests: Option<u64>,
    /// Runtime worker threads for the clients; at least 1.
    pub threads: usize,
}

/// Failed requests by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// The connection could not be opened (refused, unreachable, no local port).
    pub connect: u64,
    /// The peer reset the connection or it broke while writing.
    pub reset: u64,
    /// No full response within the per-request timeout (5 s).
    pub timeout: u64,
    /// The connection closed before a full response arrived.
    pub early_eof: u64,
    /// A full response with a non-2xx status (not in `per_worker` or `latency`).
    pub bad_status: u64,
    /// Anything else: malformed responses, unexpected io errors.
    pub other: u64,
}

impl ErrorCounts {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.timeout + self.early_eof + self.bad_status + self.other
    }

    fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.early_eof += o.early_eof;
        self.bad_status += o.bad_status;
        self.other += o.other;
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// The mode the run used.
    pub mode: LoadMode,
    /// Requests answered with a full 2xx response.
    pub requests: u64,
    /// Failed requests by cause.
    pub errors: ErrorCounts,
    /// Wall-clock time from the first client's start to the last one's stop.
    pub elapsed: Duration,
    /// Successful requests per `X-Worker` value (`"?"` for responses without
    /// one); the counts add up to `requests`.
    pub per_worker: BTreeMap<String, u64>,
    /// Latency of successful requests in microseconds, from the start of the
    /// attempt (including the connect, when one was needed) to the last body byte.
    pub latency: Histogram<u64>,
}

impl LoadResult {
    /// Successful requests per second over `elapsed` (0 for an empty run).
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The per-worker counts of named workers, for the fairness indexes; the
    /// `"?"` bucket is not a worker and would skew them.
    pub fn worker_counts(&self) -> Vec<f64> {
        self.per_worker
            .iter()
            .filter(|(k, _)| k.as_str() != "?")
            .map(|(_, &v)| v as f64)
            .collect()
    }

    /// The result as JSON, the raw data a benchmark report keeps.
    pub fn to_json(&self) -> serde_json::Value {
        let h = &self.latency;
        let counts = self.worker_counts();
        let mut errors = serde_json::to_value(self.errors).unwrap_or_default();
        errors["total"] = self.errors.total().into();
        json!({
            "mode": self.mode,
            "requests": self.requests,
            "errors": errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "rps": self.rps(),
            "per_worker": self.per_worker,
            "latency_us": {
                "p50": h.value_at_quantile(0.50),
                "p90": h.value_at_quantile(0.90),
                "p99": h.value_at_quantile(0.99),
                "p999": h.value_at_quantile(0.999),
                "max": h.max(),
                "mean": if h.is_empty() { 0.0 } else { h.mean() },
            },
            "fairness": {
                "workers": counts.len(),
                "jain": fairness::jain(&counts),
                "max_over_mean": fairness::max_over_mean(&counts),
            },
        })
    }
}

/// Runs the load described by `spec` on a runtime of its own and returns
/// what it measured. Blocks for at most about `spec.duration`.
///
/// Errors only for an unusable spec (`connections` or `threads` of 0) or
/// when the runtime cannot start; failed requests are counted, not returned.
pub fn run(spec: &LoadSpec) -> io::Result<LoadResult> {
    if spec.connections == 0 || spec.threads == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "load spec needs at least 1 connection and 1 thread (got connections={}, threads={})",
                spec.connections, spec.threads
            ),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.threads)
        .thread_name("herd-load")
        .enable_all()
        .build()?;
    runtime.block_on(run_clients(spec.clone()))
}

/// State shared by all clients of one run.
struct Shared {
    spec: LoadSpec,
    deadline: Instant,
    /// Request attempts handed out so far, checked against `max_requests`.
    tickets: AtomicU64,
}

impl Shared {
    /// Claims one request attempt; false once the budget is spent.
    fn take_ticket(&self) -> bool {
        self.spec
            .max_requests
            .is_none_or(|max| self.tickets.fetch_add(1, Ordering::Relaxed) < max)
    }
}

impl LoadResult {
    fn empty(mode: LoadMode) -> io::Result<Self> {
        Ok(LoadResult {
            mode,
            requests: 0,
            errors: ErrorCounts::default(),
            elapsed: Duration::ZERO,
            per_worker: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).map_err(io::Error::other)?,
        })
    }

    /// Adds one client's tallies to the run's.
    fn merge(&mut self, client: LoadResult) -> io::Result<()> {
        self.requests += client.requests;
        self.errors.add(&client.errors);
        for (worker, n) in client.per_worker {
            *self.per_worker.entry(worker).or_default() += n;
        }
        self.latency.add(&client.latency).map_err(io::Error::other)
    }
}

async fn run_clients(spec: LoadSpec) -> io::Result<LoadResult> {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        deadline: start + spec.duration,
        tickets: AtomicU64::new(0),
        spec,
    });
    let handles: Vec<_> = (0..shared.spec.connections)
        .map(|_| tokio::spawn(client(Arc::clone(&shared))))
        .collect();
    let mut result = LoadResult::empty(shared.spec.mode)?;
    for handle in handles {
        result.merge(handle.await.map_err(io::Error::other)??)?;
    }
    result.elapsed = start.elapsed();
    Ok(result)
}

/// One client: requests until the deadline or the budget ends it.
async fn client(shared: Arc<Shared>) -> io::Result<LoadResult> {
    let mut stats = LoadResult::empty(shared.spec.mode)?;
    // The deadline cancels whatever is in flight, so a run never outlasts
    // `duration` by more than a scheduling delay.
    tokio::select! {
        _ = client_loop(&shared, &mut stats) => {}
        _ = tokio::time::sleep_until(shared.deadline) => {}
    }
    Ok(stats)
}

async fn client_loop(shared: &Shared, stats: &mut LoadResult) {
    let spec = &shared.spec;
    let keep_alive = spec.mode == LoadMode::KeepAlive;
    let request = if keep_alive {
        KEEP_ALIVE_REQUEST
    } else {
        CLOSE_REQUEST
    };
    let mut conn: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    while Instant::now() < shared.deadline && shared.take_ticket() {
        let began = Instant::now();
        let attempt = tokio::time::timeout(
            REQUEST_TIMEOUT,
            one_request(
                spec.addr,
                &mut conn,
                &mut buf,
                request,
                &mut stats.per_worker,
            ),
        )
        .await;
        let outcome = attempt.unwrap_or(Err(Failure::Timeout));
        match outcome {
            Ok(response) => {
                if response.ok {
                    let us = began.elapsed().as_micros().clamp(1, LATENCY_MAX_US as u128);
                    stats.latency.saturating_record(us as u64);
                    stats.requests += 1;
                } else {
                    stats.errors.bad_status += 1;
                }
                if !keep_alive || response.server_closes {
                    if let Some(mut sock) = conn.take() {
                        drain_to_eof(&mut sock, REQUEST_TIMEOUT).await;
                    }
                }
            }
            Err(failure) => {
                conn = None;
                let counter = match failure {
                    Failure::Connect => &mut stats.errors.connect,
                    Failure::Reset => &mut stats.errors.reset,
                    Failure::Timeout => &mut stats.errors.timeout,
                    Failure::EarlyEof => &mut stats.errors.early_eof,
                    Failure::Other => &mut stats.errors.other,
                };
                *counter += 1;
                if matches!(failure, Failure::Connect) {
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                }
            }
        }
    }
}

/// Waits for the server to close first after `Connection: close`, so the
/// TIME_WAIT state lands on the server and a long run does not exhaust the
/// client's ephemeral ports. Bounded by `limit`; errors do not matter here.
async fn drain_to_eof(sock: &mut TcpStream, limit: Duration) {
    let mut scratch = [0u8; 512];
    let _ = tokio::time::timeout(limit, async {
        while let Ok(n) = sock.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Why a request failed; maps one-to-one onto [`ErrorCounts`] fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Reset,
    Timeout,
    EarlyEof,
    Other,
}

fn classify(e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Failure::Reset,
        io::ErrorKind::UnexpectedEof => Failure::EarlyEof,
        io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Other,
    }
}

/// What the caller needs to know about a full response.
#[derive(Debug)]
struct Response {
    /// The status was 2xx.
    ok: bool,
    /// The server said `Connection: close` or gave no length (body ends at EOF).
    server_closes: bool,
}

/// Sends one request on `conn` (connecting first if it is `None`) and reads
/// one full response, counting a 2xx one in `per_worker`. `buf` keeps bytes
/// across calls on the same connection.
async fn one_request(
    addr: SocketAddr,
    conn: &mut Option<TcpStream>,
    buf: &mut Vec<u8>,
    request: &[u8],
    per_worker: &mut BTreeMap<String, u64>,
) -> Result<Response, Failure> {
    if conn.is_none() {
        buf.clear();
        let sock = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Connect,
        })?;
        let _ = sock.set_nodelay(true);
        *conn = Some(sock);
    }
    let Some(sock) = conn.as_mut() else {
        return Err(Failure::Other);
    };
    sock.write_all(request).await.map_err(|e| classify(&e))?;
    let head = loop {
        match parse_head(buf) {
            Ok(Some(head)) => break head,
            Ok(None) if buf.len() >= MAX_HEAD => return Err(Failure::Other),
            Ok(None) => read_more(sock, buf).await?,
            Err(()) => return Err(Failure::Other),
        }
    };
    let response = Response {
        ok: (200..300).contains(&head.status),
        server_closes: head.close || head.runs_to_eof(),
    };
    let end = if head.runs_to_eof() {
        while sock.read_buf(buf).await.map_err(|e| classify(&e))? > 0 {
            if buf.len() > MAX_RESPONSE {
                return Err(Failure::Other);
            }
        }
        buf.len()
    } else {
        loop {
            match response_end(&head, buf) {
                Ok(Some(end)) => break end,
                Ok(None) => read_more(sock, buf).await?,
                Err(()) => return Err(Failure::Other),
            }
        }
    };
    if response.ok {
        // Look up by borrowed bytes so only a worker's first response allocates.
        let worker = match head.worker {
            Some((a, b)) => std::str::from_utf8(&buf[a..b]).unwrap_or("?"),
            None => "?",
        };
        match per_worker.get_mut(worker) {
            Some(n) => *n += 1,
            None => {
                per_worker.insert(worker.to_owned(), 1);
            }
        }
    }
    buf.drain(..end);
    Ok(response)
}

/// Sends `GET path` requests one after the other on one keep-alive
/// connection (blocking, each read bounded by the time left) until
/// `at_most` responses, `deadline`, the server closes, or an error;
/// returns how many full responses came back, and how many of them 2xx. The daemon warms a fresh worker with it (`warmup`):
/// a just-started JIT answers its first thousands of requests slowly.
pub fn warm(
    stream: &mut std::net::TcpStream,
    path: &str,
    deadline: std::time::Instant,
    at_most: u64,
) -> (u64, u64) {
    use std::io::{Read, Write};
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: herd-warmup\r\n\r\n");
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let (mut done, mut ok) = (0, 0);
    let mut read_more = |stream: &mut std::net::TcpStream, buf: &mut Vec<u8>| -> bool {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                buf.len() <= MAX_RESPONSE
            }
        }
    };
    while done < at_most && std::time::Instant::now() < deadline {
        if stream.write_all(request.as_bytes()).is_err() {
            break;
        }
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(head)) => break Some(head),
                Ok(None) if buf.len() < MAX_HEAD && read_more(stream, &mut buf) => {}
                _ => break None,
            }
        };
        let Some(head) = head else { break };
        // A body that runs to EOF means one request is all this connection
        // gives: stop there.
        let end = loop {
            match response_end(&head, &buf) {
                Ok(Some(end)) => break Some(end),
                Ok(None) if read_more(stream, &mut buf) => {}
                _ => break None,
            }
        };
        let Some(end) = end else { break };
        done += 1;
        if (200..300).contains(&head.status) {
            ok += 1;
        }
        if head.close {
            break;
        }
        buf.drain(..end);
    }
    (done, ok)
}

/// Appends whatever the socket has to `buf`; EOF here means the response
/// was cut short.
async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), Failure> {
    buf.reserve(1024);
    match sock.read_buf(buf).await {
        Ok(0) => Err(Failure::EarlyEof),
        Ok(_) => Ok(()),
        Err(e) => Err(classify(&e)),
    }
}

/// A parsed response head; `worker` is a byte range into the buffer so the
/// parse itself allocates nothing.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    head_len: usize,
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    worker: Option<(usize, usize)>,
    close: bool,
}

/// Where the response whose head is `head` ends in `buf`, for a chunked
/// body (Node's default for `res.end(body)` without a length) or one with
/// a `Content-Length`: `Ok(None)` if it is not all there yet, `Err` if it
/// is malformed, longer than [`MAX_RESPONSE`], or has neither (see
/// [`Head::runs_to_eof`]).
fn response_end(head: &Head, buf: &[u8]) -> Result<Option<usize>, ()> {
    if head.chunked {
        return match chunked_end(buf, head.head_len)? {
            None if buf.len() > MAX_RESPONSE => Err(()),
            end => Ok(end),
        };
    }
    let end = head
        .content_length
        .and_then(|len| usize::try_from(len).ok())
        .and_then(|len| len.checked_add(head.head_len))
        .filter(|&end| end <= MAX_RESPONSE)
        .ok_or(())?;
    Ok((buf.len() >= end).then_some(end))
}

impl Head {
    /// Neither chunked nor with a length: the body runs to EOF.
    fn runs_to_eof(&self) -> bool {
        self.content_length.is_none() && !self.chunked
    }
}

/// Where a chunked body starting at `from` ends (after the last chunk and
/// its terminating blank line; trailers are skipped): `Ok(None)` if it is
/// not all there yet, `Err` if it is malformed.
fn chunked_end(buf: &[u8], mut from: usize) -> Result<Option<usize>, ()> {
    loop {
        let Some(nl) = buf[from..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[from..from + nl];
        let hex = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size =
            usize::from_str_radix(std::str::from_utf8(hex).map_err(|_| ())?, 16).map_err(|_| ())?;
        from += nl + 2;
        if size == 0 {
            // Trailers (usually none), then an empty line.
            loop {
                let Some(nl) = buf[from..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                from += nl + 2;
                if nl == 0 {
                    return Ok(Some(from));
                }
            }
        }
        let next = from
            .checked_add(size)
            .and_then(|e| e.checked_add(2))
            .ok_or(())?;
        if buf.len() < next {
            return Ok(None);
        }
        if &buf[next - 2..next] != b"\r\n" {
            return Err(());
        }
        from = next;
    }
}

/// Parses the response head at the start of `buf`: `Ok(None)` if it is not
/// all there yet, `Err` if it is not HTTP/1.x.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head_len = end + 4;
    let mut offset = 0usize;
    let mut lines = buf[..end].split(|&b| b == b'\n').map(|line| {
        let start = offset;
        offset += line.len() + 1;
        (start, line.strip_suffix(b"\r").unwrap_or(line))
    });
    let (_, status_line) = lines.next().ok_or(())?;
    // "HTTP/1.1 200 OK": the status is the three digits after the first space.
    if !status_line.starts_with(b"HTTP/1.") {
        return Err(());
    }
    let code = status_line.get(9..12).ok_or(())?;
    let status = std::str::from_utf8(code)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(())?;
    let mut head = Head {
        head_len,
        status,
        content_length: None,
        chunked: false,
        worker: None,
        close: status_line.starts_with(b"HTTP/1.0"),
    };
    for (start, line) in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let raw = &line[colon + 1..];
        let value = raw.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(())?;
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"x-worker") {
            let lead = raw.len() - raw.trim_ascii_start().len();
            let from = start + colon + 1 + lead;
            head.worker = Some((from, from + value.len()));
        } else if name.eq_ignore_ascii_case(b"connection") {
            head.close = value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests;

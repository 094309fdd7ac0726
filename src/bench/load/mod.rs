//! The bounded load generator behind `herd bench`: N concurrent HTTP/1.1
//! clients against one address, counting requests per worker (`X-Worker`),
//! errors by kind, and latency in a histogram.
//!
//! It is built in so a benchmark needs nothing but herd (no wrk, no ab), and
//! so it can read the `X-Worker` header that fairness is computed from.
//! Every run is bounded three ways: by `duration`, by the optional
//! `max_requests` budget, and by a per-request timeout; it always stops by
//! itself. It touches only client sockets and its own tokio runtime.
//!
//! Closed loop (the default): each client sends its next request when the
//! last one is answered, so a stalled server also stalls the clients and
//! the stall shows in one request's latency only. Open loop (`rate`):
//! requests are due at a fixed arrival rate, and each one's latency is
//! counted from when it was due, not from when the client got round to
//! sending it: wrk2's correction for coordinated omission, under which a
//! 500 ms stall shows as the half second of requests it delayed.

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

use crate::http::{parse_head, response_end, MAX_HEAD, MAX_RESPONSE};
use crate::metrics::fairness;

const KEEP_ALIVE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const CLOSE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
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
    /// Open loop: requests per second over all clients, each due at its
    /// time whatever became of the ones before; `None` for closed loop.
    pub rate: Option<f64>,
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
    /// attempt (including the connect, when one was needed) to the last body
    /// byte; in open loop, from when the request was due.
    pub latency: Histogram<u64>,
    /// Open loop only: the same requests timed from when each was sent
    /// (what a closed-loop generator reports; wrk2's "uncorrected").
    pub service: Option<Histogram<u64>>,
    /// Open loop: the arrival rate asked for.
    pub rate: Option<f64>,
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
        let cdf: Vec<serde_json::Value> = [
            0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
        ]
        .iter()
        .map(|&p| json!([p, h.value_at_quantile(p / 100.0)]))
        .collect();
        let mut v = json!({
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
            // The latency CDF, for `--report`'s chart: (percentile, µs).
            "latency_cdf_us": cdf,
            "fairness": {
                "workers": counts.len(),
                "jain": fairness::jain(&counts),
                "max_over_mean": fairness::max_over_mean(&counts),
            },
        });
        if let (Some(rate), Some(sv)) = (self.rate, &self.service) {
            v["open_loop"] = json!({
                "rate": rate,
                "service_us": {
                    "p50": sv.value_at_quantile(0.50),
                    "p90": sv.value_at_quantile(0.90),
                    "p99": sv.value_at_quantile(0.99),
                    "p999": sv.value_at_quantile(0.999),
                    "max": sv.max(),
                },
            });
        }
        v
    }
}

/// Runs the load described by `spec` on a runtime of its own and returns
/// what it measured. Blocks for at most about `spec.duration`.
///
/// Errors only for an unusable spec (`connections` or `threads` of 0) or
/// when the runtime cannot start; failed requests are counted, not returned.
pub fn run(spec: &LoadSpec) -> io::Result<LoadResult> {
    if spec.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "load rate must be a positive number of requests per second (got {:?})",
                spec.rate
            ),
        ));
    }
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
    fn empty(mode: LoadMode, rate: Option<f64>) -> io::Result<Self> {
        let histogram =
            || Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).map_err(io::Error::other);
        Ok(LoadResult {
            mode,
            requests: 0,
            errors: ErrorCounts::default(),
            elapsed: Duration::ZERO,
            per_worker: BTreeMap::new(),
            latency: histogram()?,
            service: rate.map(|_| histogram()).transpose()?,
            rate,
        })
    }

    /// Adds one client's tallies to the run's.
    fn merge(&mut self, client: LoadResult) -> io::Result<()> {
        self.requests += client.requests;
        self.errors.add(&client.errors);
        for (worker, n) in client.per_worker {
            *self.per_worker.entry(worker).or_default() += n;
        }
        if let (Some(mine), Some(theirs)) = (self.service.as_mut(), client.service.as_ref()) {
            mine.add(theirs).map_err(io::Error::other)?;
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
        .map(|i| tokio::spawn(client(Arc::clone(&shared), start, i)))
        .collect();
    let mut result = LoadResult::empty(shared.spec.mode, shared.spec.rate)?;
    for handle in handles {
        result.merge(handle.await.map_err(io::Error::other)??)?;
    }
    result.elapsed = start.elapsed();
    Ok(result)
}

/// Open loop: when client `index` of `spec` has its requests due, one every
/// `connections / rate` seconds, the clients' schedules evenly interleaved.
struct Schedule {
    next: Instant,
    every: Duration,
}

impl Schedule {
    fn new(spec: &LoadSpec, start: Instant, index: usize) -> Option<Schedule> {
        let rate = spec.rate?;
        let every = Duration::from_secs_f64(spec.connections as f64 / rate);
        let offset = every.mul_f64(index as f64 / spec.connections as f64);
        Some(Schedule {
            next: start + offset,
            every,
        })
    }

    /// Waits until the next request is due (not at all when behind) and
    /// returns when it was due.
    async fn due(&mut self) -> Instant {
        let due = self.next;
        tokio::time::sleep_until(due).await;
        self.next += self.every;
        due
    }
}

/// One client: requests until the deadline or the budget ends it.
async fn client(shared: Arc<Shared>, start: Instant, index: usize) -> io::Result<LoadResult> {
    let mut stats = LoadResult::empty(shared.spec.mode, shared.spec.rate)?;
    let schedule = Schedule::new(&shared.spec, start, index);
    // The deadline cancels whatever is in flight, so a run never outlasts
    // `duration` by more than a scheduling delay.
    tokio::select! {
        _ = client_loop(&shared, &mut stats, schedule) => {}
        _ = tokio::time::sleep_until(shared.deadline) => {}
    }
    Ok(stats)
}

async fn client_loop(shared: &Shared, stats: &mut LoadResult, mut schedule: Option<Schedule>) {
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
        let due = match schedule.as_mut() {
            Some(s) => Some(s.due().await),
            None => None,
        };
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
                    let us = |from: Instant| {
                        from.elapsed().as_micros().clamp(1, LATENCY_MAX_US as u128) as u64
                    };
                    stats.latency.saturating_record(us(due.unwrap_or(began)));
                    if let Some(service) = stats.service.as_mut() {
                        service.saturating_record(us(began));
                    }
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

#[cfg(test)]
mod tests;

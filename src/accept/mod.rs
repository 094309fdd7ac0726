//! How connections reach workers.
//!
//! * `fdpass` ([`DataPlane`]): the daemon owns the listener; acceptor threads
//!   (one per core, pinned) accept with io_uring multishot accept (epoll when
//!   io_uring is unavailable) and [`pool`] hands each connection to a worker
//!   chosen by the dispatch policy, over the worker's channel (`crate::fdpass`).
//! * `reuseport` / `shared` ([`reuseport`]): listeners handed to the workers
//!   as fd 3; the kernel (or the workers' accept race) distributes.

pub mod activation;
pub mod channel;
pub mod pool;
pub mod reuseport;
mod warmup;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use socket2::Socket;

pub use crate::protocol::{Mode, PlaneConfig};
use crate::sys::acceptor::Stopper;
use pool::{Policy, Pool};

impl Mode {
    /// Parses `fdpass|reuseport|shared`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "fdpass" => Some(Mode::Fdpass),
            "reuseport" => Some(Mode::Reuseport),
            "shared" => Some(Mode::Shared),
            _ => None,
        }
    }

    /// The flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fdpass => "fdpass",
            Mode::Reuseport => "reuseport",
            Mode::Shared => "shared",
        }
    }
}

/// The accept backend in use, and why.
#[derive(Debug, Clone)]
pub enum Io {
    /// io_uring with multishot accept.
    Uring(crate::sys::uring::UringFeatures),
    /// epoll, with the reason io_uring is not used.
    Epoll(String),
}

impl Io {
    /// One line for `herd show`.
    pub fn describe(&self) -> String {
        match self {
            Io::Uring(f) => format!(
                "io_uring (multishot accept{}{}{})",
                if f.single_issuer {
                    ", single issuer"
                } else {
                    ""
                },
                if f.defer_taskrun {
                    ", defer taskrun"
                } else {
                    ""
                },
                if f.coop_taskrun { ", coop taskrun" } else { "" },
            ),
            Io::Epoll(why) => format!("epoll ({why})"),
        }
    }
}

/// Probes once per process: `HERD_IO=epoll|uring` forces a backend; else
/// io_uring when it works (and has multishot accept), epoll otherwise.
pub fn io_backend() -> Result<Io, String> {
    static CHOICE: OnceLock<Result<Io, String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| match std::env::var("HERD_IO").ok().as_deref() {
            Some("epoll") => Ok(Io::Epoll("forced by HERD_IO=epoll".into())),
            Some("uring") => match crate::sys::uring::probe() {
                Ok(f) if f.multishot_accept => Ok(Io::Uring(f)),
                Ok(_) => Err(
                    "HERD_IO=uring but this kernel lacks multishot accept (needs Linux 5.19+)"
                        .into(),
                ),
                Err(e) => Err(format!("HERD_IO=uring but io_uring is unavailable: {e}")),
            },
            Some(other) if !other.is_empty() => {
                Err(format!("HERD_IO=`{other}`: expected `uring` or `epoll`"))
            }
            _ => match crate::sys::uring::probe() {
                Ok(f) if f.multishot_accept => Ok(Io::Uring(f)),
                Ok(_) => Ok(Io::Epoll(
                    "kernel lacks multishot accept (needs Linux 5.19+)".into(),
                )),
                Err(e) => {
                    // Said once per process: Docker's default seccomp
                    // profile is the usual cause, and it costs throughput.
                    log::info!(
                        "io_uring unavailable ({e}): fdpass acceptors use epoll (a container's seccomp profile blocks io_uring by default; docs/DEPLOY.md)"
                    );
                    Ok(Io::Epoll(format!("io_uring unavailable: {e}")))
                }
            },
        })
        .clone()
}

/// An on/off switch from the environment, for measuring what a data-plane
/// technique buys: unset or `1` is on, `0` off, anything else an error.
/// * `HERD_CORK`: the connections one wake-up accepted reach each worker in
///   one message (off: one message per connection);
/// * `HERD_RING_SEND`: those messages, and the close of the daemon's
///   copies, go out through the acceptor's io_uring ring (off: `sendmsg`
///   and `close` calls);
/// * `HERD_KEEP_COPIES`: the daemon keeps a copy of each connection it
///   sends until the worker closes or starts on it, so a worker's death
///   loses none it had not touched (off: the copy closes once sent);
/// * `HERD_REPLAY`: with each copy a Node worker's connection keeps its
///   request when it is a whole idempotent one, replayed to another worker
///   should this one die having read it and written nothing (`pool`'s
///   `replay`; off: such a request is lost with the worker);
/// * `HERD_DEFER_ACCEPT`: once a worker says its server speaks HTTP (`H`),
///   the listeners accept a connection only when its request has arrived
///   (`TCP_DEFER_ACCEPT`), so the request is there to keep for a replay
///   (off: a connection goes out at its handshake, often before its
///   request, which then cannot be replayed).
pub fn env_switch(name: &str) -> Result<bool, String> {
    match std::env::var(name).ok().as_deref() {
        None | Some("") | Some("1") => Ok(true),
        Some("0") => Ok(false),
        Some(other) => Err(format!("{name}=`{other}`: expected `1` or `0`")),
    }
}

/// Requests on each warm-up connection before the next one.
const WARMUP_PER_CONN: u64 = 8;

/// Default hung-worker threshold.
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 5000;

impl Default for PlaneConfig {
    fn default() -> Self {
        PlaneConfig {
            policy: Policy::LeastConn,
            acceptors: None,
            backlog: None,
            multishot: true,
            ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS,
            warmup_ms: 0,
            warmup_path: crate::protocol::spec::default_warmup_path(),
        }
    }
}

/// An acceptor thread's hand-off of what it accepts to the pool.
struct Handoff {
    pool: Arc<Pool>,
    plane: std::sync::Weak<DataPlane>,
    accepted: Arc<AtomicU64>,
    /// Hold a wake-up's connections in the workers' queues until the batch
    /// ends, then send each worker its share in one message.
    cork: bool,
    /// The workers given connections since the batch began (corked).
    touched: Vec<Arc<pool::Slot>>,
    /// Messages the ring is sending: token, worker (its channel stays open
    /// while this holds it), first id, how many.
    in_ring: Vec<(u64, Arc<pool::Slot>, u64, usize)>,
    next_token: u64,
    /// When each connection of the batch under way was taken (corked,
    /// with hand-off times recorded): timed at the batch's end.
    taken: Vec<std::time::Instant>,
    /// Hand-off times are recorded (`HERD_METRICS` not off).
    timed: bool,
}

impl Handoff {
    fn new(
        pool: Arc<Pool>,
        plane: std::sync::Weak<DataPlane>,
        accepted: Arc<AtomicU64>,
        cork: bool,
    ) -> Handoff {
        let timed = pool.metrics.on;
        Handoff {
            pool,
            plane,
            accepted,
            cork,
            touched: Vec::new(),
            in_ring: Vec::new(),
            next_token: 0,
            taken: Vec::new(),
            timed,
        }
    }

    /// Hand-off times of the connections taken since the batch began.
    fn record_taken(&mut self) {
        if self.taken.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        for t in self.taken.drain(..) {
            self.pool
                .metrics
                .handoff
                .record(now.saturating_duration_since(t).as_nanos() as u64);
        }
    }
}

impl crate::sys::acceptor::AcceptSink for Handoff {
    fn conn(&mut self, fd: std::os::fd::OwnedFd) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if self.timed {
            self.taken.push(std::time::Instant::now());
        }
        let plane = self.plane.upgrade();
        // Fresh in-flight counts for the pick: one worker in turn before,
        // the chosen one after. (Not the channels of workers that count
        // their closes in the shared page: nothing to read there.)
        let drain = |slot: Option<&Arc<pool::Slot>>| {
            if let (Some(slot), Some(plane)) = (slot, &plane) {
                if !slot.counts_closes() {
                    crate::accept::channel::drain_from_acceptor(slot, plane);
                }
            }
        };
        drain(self.pool.next_to_drain().as_ref());
        if !self.cork {
            let chosen = self.pool.dispatch(fd);
            self.record_taken();
            drain(chosen.as_ref());
            return;
        }
        let chosen = self.pool.dispatch_corked(fd);
        drain(chosen.as_ref());
        if let Some(s) = chosen {
            if !self.touched.iter().any(|t| Arc::ptr_eq(t, &s)) {
                self.touched.push(s);
            }
        }
    }

    fn batch_end(&mut self, out: Option<&mut crate::sys::acceptor::Outbox>) {
        let Some(out) = out else {
            for s in self.touched.drain(..) {
                s.flush();
            }
            self.record_taken();
            return;
        };
        for s in std::mem::take(&mut self.touched) {
            while out.has_room(crate::fdpass::herd::MAX_IDS) {
                let Some(batch) = s.take_batch() else {
                    break;
                };
                let (first, n) = (batch.first, batch.len());
                let token = self.next_token;
                self.next_token += 1;
                let refused = match batch.fds {
                    pool::BatchFds::Owned(fds) => out
                        .send(token, s.send_chan(), batch.msg, fds)
                        .err()
                        .map(|(_, fds)| fds),
                    // The slot keeps its copies: nothing comes back.
                    pool::BatchFds::Shared(fds) => out
                        .send_shared(token, s.send_chan(), batch.msg, fds)
                        .err()
                        .map(|_| Vec::new()),
                };
                if let Some(fds) = refused {
                    // No room after all: back to the queue, sent below.
                    let e = std::io::Error::from(std::io::ErrorKind::WouldBlock);
                    let _ = s.send_failed(first, n, fds, &e);
                    break;
                }
                self.in_ring.push((token, s.clone(), first, n));
            }
            // Node workers, and whatever did not fit in the ring.
            s.flush();
        }
        self.record_taken();
    }

    fn sent(&mut self, token: u64, result: std::io::Result<()>, fds: Vec<std::os::fd::OwnedFd>) {
        let Some(i) = self.in_ring.iter().position(|(t, ..)| *t == token) else {
            return;
        };
        let (_, slot, first, n) = self.in_ring.swap_remove(i);
        if let Err(e) = result {
            let back = slot.send_failed(first, n, fds, &e);
            if !back.is_empty() {
                self.pool.redispatch(back);
            }
        }
    }
}

struct Acceptor {
    stopper: Arc<Stopper>,
    thread: Option<JoinHandle<()>>,
}

/// The fdpass data plane of one app: its listener, acceptor threads and pool.
pub struct DataPlane {
    /// The workers and the dispatch policy.
    pub pool: Arc<Pool>,
    /// The accept backend.
    pub io: Io,
    /// Acceptors send a wake-up's connections as one message per worker.
    pub cork: bool,
    /// io_uring acceptors send those messages through their ring.
    pub ring_send: bool,
    /// The listeners may defer accepting to the first data
    /// (`HERD_DEFER_ACCEPT`), once a worker says its clients send first.
    defer_accept: bool,
    /// They do: a worker said so ([`Self::clients_send_first`]).
    deferred: std::sync::atomic::AtomicBool,
    /// The settings it was made with.
    pub cfg: PlaneConfig,
    /// Default address for listeners a Node worker asks for.
    pub host: String,
    cpus: Vec<usize>,
    listener: Mutex<Option<(SocketAddr, Vec<Arc<Socket>>)>>,
    /// Further ports (Node side servers), shared with the workers.
    extra: Mutex<std::collections::BTreeMap<u16, Arc<Socket>>>,
    acceptors: Mutex<Vec<Acceptor>>,
    /// Connections accepted.
    pub accepted: Arc<AtomicU64>,
    /// Acceptor threads hold this weak handle (a strong one would keep the
    /// plane, and so the threads, alive forever).
    me: std::sync::Weak<DataPlane>,
}

impl DataPlane {
    /// A plane with no listener yet.
    pub fn new(
        cfg: PlaneConfig,
        cpus: Vec<usize>,
        host: String,
        metrics: Arc<crate::metrics::app::AppMetrics>,
    ) -> Result<Arc<DataPlane>, String> {
        let io = io_backend()?;
        let cork = env_switch("HERD_CORK")?;
        let ring_send = env_switch("HERD_RING_SEND")?;
        let defer_accept = env_switch("HERD_DEFER_ACCEPT")?;
        let pool = Arc::new(Pool::with_metrics(cfg.policy, metrics));
        pool.set_keep_copies(env_switch("HERD_KEEP_COPIES")?);
        pool.set_replay(env_switch("HERD_REPLAY")?);
        Ok(Arc::new_cyclic(|me| DataPlane {
            cork,
            ring_send,
            defer_accept,
            deferred: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
            host,
            pool,
            io,
            cfg,
            cpus,
            listener: Mutex::new(None),
            extra: Mutex::new(Default::default()),
            acceptors: Mutex::new(Vec::new()),
            accepted: Arc::new(AtomicU64::new(0)),
        }))
    }

    /// The bound address, once listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(a, _)| *a)
    }

    /// Binds `host:port` and starts the acceptors, once; asking again for
    /// the same port returns the same address (every Node worker's
    /// `listen(PORT)` arrives here). Port 0 binds an ephemeral port.
    pub fn listen(&self, host: &str, port: u16) -> Result<SocketAddr, reuseport::BindError> {
        let mut l = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((addr, _)) = l.as_ref() {
            if port == 0 || addr.port() == port {
                return Ok(*addr);
            }
            return Err(reuseport::BindError::SecondPort {
                bound: addr.port(),
                wanted: port,
            });
        }
        // One SO_REUSEPORT listener per acceptor thread: the kernel spreads
        // connections over the acceptors, so accept work is shared by the
        // cores instead of landing on whichever ring wins a shared socket.
        let n = self.cfg.acceptors.unwrap_or(self.cpus.len()).max(1);
        // A listener systemd passed (or one herd stored) serves every
        // acceptor instead (`activation`).
        let group = activation::acceptor_group(host, port, n, self.cfg.backlog)?;
        let addr = group[0]
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or_else(|| ([0, 0, 0, 0], port).into());
        self.start_acceptors(&group);
        *l = Some((addr, group));
        Ok(addr)
    }

    fn start_acceptors(&self, group: &[Arc<Socket>]) {
        let mut acceptors = self.acceptors.lock().unwrap_or_else(|p| p.into_inner());
        for (i, sock) in group.iter().enumerate() {
            let stopper = match Stopper::new() {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    log::info!("cannot create an acceptor stopper: {e}");
                    continue;
                }
            };
            let (sock, pool, stop, io, accepted, me) = (
                sock.clone(),
                self.pool.clone(),
                stopper.clone(),
                self.io.clone(),
                self.accepted.clone(),
                self.me.clone(),
            );
            let cpu = (!self.cpus.is_empty()).then(|| self.cpus[i % self.cpus.len()]);
            if let Some(c) = cpu {
                // The kernel then prefers, among the group's listeners, the
                // one whose CPU handled the connection's packets: the
                // acceptor is woken on its own core, not by an IPI (daemon
                // CPU per connection 18.9 → 14.4 µs measured, README).
                use std::os::fd::AsFd;
                if let Err(e) = crate::sys::set_incoming_cpu(sock.as_fd(), c) {
                    log::info!("acceptor {i}: SO_INCOMING_CPU: {e}");
                }
            }
            let multishot = self.cfg.multishot;
            let cork = self.cork;
            let ring_send = self.ring_send;
            let thread = std::thread::Builder::new()
                .name(format!("herd-accept-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        crate::sys::pin_current_thread(cpu);
                    }
                    use std::os::fd::AsFd;
                    let sink = Handoff::new(pool, me, accepted, cork);
                    let res = match io {
                        Io::Uring(_) => crate::sys::uring::accept_loop(
                            sock.as_fd(),
                            &stop,
                            crate::sys::uring::AcceptOptions {
                                multishot,
                                ring_entries: 256,
                                ring_send,
                            },
                            sink,
                        ),
                        Io::Epoll(_) => crate::sys::epoll::accept_loop(sock.as_fd(), &stop, sink),
                    };
                    if let Err(e) = res {
                        log::info!("acceptor {i} stopped: {e}");
                    }
                });
            match thread {
                Ok(t) => acceptors.push(Acceptor {
                    stopper,
                    thread: Some(t),
                }),
                Err(e) => log::info!("cannot start acceptor thread {i}: {e}"),
            }
        }
    }

    /// A worker said it is ready (herd `R`, Node `listening`/`ready`): it
    /// joins the rotation, after the warm-up when the app has one.
    pub fn slot_ready(&self, slot: &pool::Slot) {
        if self.cfg.warmup_ms == 0 {
            return self.pool.slot_ready(slot);
        }
        match slot.begin_warmup() {
            pool::Warmup::Start => {}
            pool::Warmup::Running => return, // the warm-up thread finishes it
            pool::Warmup::Done => return self.pool.slot_ready(slot),
        }
        if let Err(e) = self.warm_up(slot) {
            log::info!(
                "instance {} (pid {}): no warm-up ({e}); it joins the rotation now",
                slot.instance_id,
                slot.pid
            );
            slot.end_warmup();
            self.pool.slot_ready(slot);
        }
    }

    /// Sends the worker requests over loopback connections whose server
    /// ends it alone gets (it is not in the rotation yet), from a thread of
    /// its own, for `warmup_ms`; then puts it into the rotation. Each
    /// connection carries [`WARMUP_PER_CONN`] requests, so the code that
    /// sets up and tears down connections warms up too, not only the
    /// request path.
    fn warm_up(&self, slot: &pool::Slot) -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        let first = self.warmup_conn(&listener, slot)?;
        let (pool, pid, id) = (self.pool.clone(), slot.pid, slot.instance_id);
        let path = self.cfg.warmup_path.clone();
        let limit = std::time::Duration::from_millis(self.cfg.warmup_ms);
        let me = self.me.clone();
        std::thread::Builder::new()
            .name("herd-warmup".into())
            .spawn(move || {
                let t0 = std::time::Instant::now();
                let deadline = t0 + limit;
                let (mut answered, mut ok, mut conns) = (0, 0, 0);
                let mut client = Some(first);
                while let Some(mut c) = client.take() {
                    conns += 1;
                    let (n, n_ok) =
                        warmup::warm(&mut c, &path, deadline, WARMUP_PER_CONN);
                    (answered, ok) = (answered + n, ok + n_ok);
                    drop(c);
                    if n < WARMUP_PER_CONN || std::time::Instant::now() >= deadline {
                        break;
                    }
                    let (Some(plane), Some(slot)) = (
                        me.upgrade(),
                        pool.slots().into_iter().find(|s| s.pid == pid),
                    ) else {
                        break;
                    };
                    client = plane.warmup_conn(&listener, &slot).ok();
                }
                log::info!(
                    "instance {id} (pid {pid}) warmed up: {answered} requests for GET {path} ({ok} answered 2xx) on {conns} connections in {} ms",
                    t0.elapsed().as_millis()
                );
                if let Some(slot) = pool.slots().into_iter().find(|s| s.pid == pid) {
                    slot.end_warmup();
                    pool.slot_ready(&slot);
                }
            })?;
        Ok(())
    }

    /// One warm-up connection: its server end goes to `slot`; returns the
    /// client end.
    fn warmup_conn(
        &self,
        listener: &std::net::TcpListener,
        slot: &pool::Slot,
    ) -> std::io::Result<std::net::TcpStream> {
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        let _ = client.set_nodelay(true);
        self.pool.deliver_to(slot, server.into());
        Ok(client)
    }

    /// A plain listener for a *second* port a Node worker asks for. It is
    /// handed to the workers themselves (Node's shared-handle scheduling):
    /// herd dispatches only the app's first port. Bound once per port.
    pub fn shared_listener(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Arc<Socket>, reuseport::BindError> {
        let mut extra = self.extra.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = extra.get(&port) {
            return Ok(s.clone());
        }
        let s = activation::one(host, port, self.cfg.backlog)?;
        // Every worker accepts on it: a blocking accept in the worker that
        // loses the race would freeze its whole event loop.
        s.set_nonblocking(true)
            .map_err(|e| reuseport::BindError::Other {
                addr: (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
                source: e,
            })?;
        extra.insert(port, s.clone());
        Ok(s)
    }

    /// A worker's server speaks HTTP (its clients send first): from now on
    /// the listeners hand the acceptors a connection only once its request
    /// has arrived (`TCP_DEFER_ACCEPT`, 1 s: a client that sends nothing is
    /// accepted after one SYN-ACK retransmit, as without it), so the
    /// request is there to peek at and keep for a replay; and the pool
    /// starts keeping requests (only an HTTP app's are worth a peek). Once per plane;
    /// never for a server that has not said so (a protocol whose server
    /// speaks first would wait that second).
    pub fn clients_send_first(&self) {
        self.pool.set_http();
        if !self.defer_accept || self.deferred.swap(true, Ordering::AcqRel) {
            return;
        }
        let l = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        let Some((addr, group)) = l.as_ref() else {
            self.deferred.store(false, Ordering::Release);
            return;
        };
        use std::os::fd::AsFd;
        for s in group {
            if let Err(e) = crate::sys::set_defer_accept(s.as_fd(), 1) {
                log::info!("{addr}: TCP_DEFER_ACCEPT: {e}");
            }
        }
    }

    /// Stops the acceptors and closes the listener.
    pub fn shutdown(&self) {
        let mut acceptors =
            std::mem::take(&mut *self.acceptors.lock().unwrap_or_else(|p| p.into_inner()));
        for a in &acceptors {
            a.stopper.stop();
        }
        for a in &mut acceptors {
            if let Some(t) = a.thread.take() {
                let _ = t.join();
            }
        }
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// `herd show`'s `accept io`: the backend, and how connections are
    /// sent (`HERD_CORK`, `HERD_RING_SEND`).
    pub fn describe_io(&self) -> String {
        let sends = match (&self.io, self.cork, self.ring_send) {
            (_, false, _) => "a message per connection",
            (Io::Uring(f), true, true) if f.skip_success => "batched, through the ring",
            (_, true, _) => "batched, sendmsg",
        };
        let deferred = if self.deferred.load(Ordering::Acquire) {
            "; accepts on the request (HTTP)"
        } else {
            ""
        };
        format!("{}; sends {sends}{deferred}", self.io.describe())
    }

    /// Acceptor thread count.
    pub fn acceptor_count(&self) -> usize {
        self.acceptors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

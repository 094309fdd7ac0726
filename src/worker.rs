//! The worker side of herd's `fdpass` protocol, for Rust workers (and a
//! reference for any other language: docs/PROTOCOL.md).
//!
//! herd starts the worker with `HERD_CHANNEL_FD=3`, a `SOCK_SEQPACKET` unix
//! socket. The worker says it is ready, then receives accepted TCP
//! connections as descriptors and reports when it closes them (so
//! least-connections dispatch knows its load). An event loop can report
//! the closes of one turn together ([`Channel::close_later`], then
//! [`Channel::flush`]).
//!
//! ```no_run
//! let chan = herd::worker::Channel::from_env()?.expect("run me under herd --mode fdpass");
//! loop {
//!     match chan.recv(false)? {
//!         herd::worker::Received::Conns(conns) => for c in conns {
//!             // serve c.stream …, then:
//!             chan.done(&[c.id])?;
//!         },
//!         herd::worker::Received::WouldBlock => {}
//!         herd::worker::Received::Stop | herd::worker::Received::Closed => break,
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cell::{Cell, RefCell};
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::fdpass::herd::{counters, Msg, MAX_MSG};
use crate::sys::fdpass::{recv_with_fds, send_with_fds};
use crate::sys::shm::SharedPage;
use std::sync::atomic::Ordering;

/// The environment variable naming the channel's descriptor.
pub const CHANNEL_ENV: &str = "HERD_CHANNEL_FD";

/// sd_notify(3) `READY=1`: tells herd (or systemd) that this process is
/// ready, for workers that take a listener (`LISTEN_FDS`) rather than a
/// channel. Returns false when no `NOTIFY_SOCKET` is set.
pub fn notify_ready() -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    sock.send_to(b"READY=1", path)?;
    Ok(true)
}

/// One connection handed over by the daemon.
#[derive(Debug)]
pub struct Conn {
    /// The daemon's id for it; report it to [`Channel::done`] (or
    /// [`Channel::close_later`]) when closed.
    pub id: u64,
    /// The accepted socket (blocking mode, close-on-exec).
    pub stream: TcpStream,
}

/// What one [`Channel::recv`] got.
#[derive(Debug)]
pub enum Received {
    /// New connections (already acknowledged to the daemon).
    Conns(Vec<Conn>),
    /// Non-blocking receive found nothing.
    WouldBlock,
    /// The daemon asks the worker to stop taking connections and exit once
    /// the ones it has are finished.
    Stop,
    /// The daemon closed the channel.
    Closed,
}

/// The worker's end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
    ready_sent: Cell<bool>,
    /// The counters page (`HERD_COUNTERS_FD`), when the daemon gave one:
    /// closes are counted there instead of sent.
    counters: Option<SharedPage>,
    /// Closes recorded by [`Channel::close_later`], not yet reported.
    closed: RefCell<Vec<u64>>,
    /// Requests recorded by [`Channel::request_served`], not yet
    /// reported: how many at each (quantized) latency in µs.
    requests: RefCell<std::collections::BTreeMap<u64, u64>>,
}

impl Channel {
    /// Takes the channel named by `HERD_CHANNEL_FD`, if set.
    pub fn from_env() -> io::Result<Option<Channel>> {
        let Some(v) = std::env::var_os(CHANNEL_ENV) else {
            return Ok(None);
        };
        let n: i32 = v.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{CHANNEL_ENV}={v:?} is not a descriptor number"),
            )
        })?;
        let fd = crate::sys::fd::take_inherited_socket(n, libc::SOCK_SEQPACKET)?;
        let mut chan = Channel::from_fd(fd);
        // Without a usable page the closes go as `D` messages: slower, same
        // result.
        if let Some(page) = std::env::var_os(counters::ENV)
            .and_then(|v| v.to_str()?.parse().ok())
            .and_then(|n| SharedPage::take_inherited(n).ok())
        {
            chan = chan.with_counters(page);
        }
        Ok(Some(chan))
    }

    /// Wraps an already-open channel descriptor (tests, custom launchers).
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel {
            fd,
            ready_sent: Cell::new(false),
            counters: None,
            closed: RefCell::new(Vec::new()),
            requests: RefCell::new(Default::default()),
        }
    }

    /// Counts closes in the daemon's shared counters page from now on (see
    /// [`Channel::closed`]).
    pub fn with_counters(self, page: SharedPage) -> Channel {
        page.word(counters::FLAGS)
            .fetch_or(counters::COUNTS_CLOSES, Ordering::Release);
        Channel {
            counters: Some(page),
            ..self
        }
    }

    /// Puts the channel in non-blocking mode (for event loops).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        crate::sys::fdpass::set_nonblocking(self.fd.as_fd(), on)
    }

    /// Tells the daemon the worker is ready. [`Channel::recv`] does this on
    /// first use; call it earlier if readiness comes before the first receive.
    pub fn ready(&self) -> io::Result<()> {
        if !self.ready_sent.replace(true) {
            self.send(&Msg::Ready)?;
        }
        Ok(())
    }

    fn send(&self, m: &Msg) -> io::Result<()> {
        send_with_fds(self.fd.as_fd(), &m.encode(), &[], false).map(|_| ())
    }

    /// Receives the next message. The connections it brings are the
    /// worker's alone: the daemon kept no copies.
    pub fn recv(&self, nonblocking: bool) -> io::Result<Received> {
        self.ready()?;
        let mut buf = [0u8; MAX_MSG + 1];
        let mut fds = Vec::new();
        let (n, truncated) = match recv_with_fds(self.fd.as_fd(), &mut buf, &mut fds, nonblocking) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::WouldBlock),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Received::Closed);
        }
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        if truncated {
            return Err(bad("oversized message from the daemon".into()));
        }
        match Msg::decode(&buf[..n]).map_err(|e| bad(e.to_string()))? {
            Msg::Conns(ids) => {
                if ids.len() != fds.len() {
                    return Err(bad(format!(
                        "{} ids but {} descriptors",
                        ids.len(),
                        fds.len()
                    )));
                }
                Ok(Received::Conns(
                    ids.into_iter()
                        .zip(fds)
                        .map(|(id, fd)| Conn {
                            id,
                            stream: TcpStream::from(fd),
                        })
                        .collect(),
                ))
            }
            Msg::Stop => Ok(Received::Stop),
            other => Err(bad(format!(
                "unexpected message from the daemon: {other:?}"
            ))),
        }
    }

    /// Reports connections closed.
    pub fn done(&self, ids: &[u64]) -> io::Result<()> {
        for chunk in ids.chunks(crate::fdpass::herd::MAX_IDS) {
            self.send(&Msg::Done(chunk.to_vec()))?;
        }
        Ok(())
    }

    /// Reports a connection closed after being open for `open_for`. With
    /// the daemon's counters page this is two atomic adds and no message;
    /// otherwise it is recorded for the next [`Channel::flush`], so an
    /// event loop sends one `D` for all the closes of a turn.
    pub fn closed(&self, id: u64, open_for: std::time::Duration) {
        match &self.counters {
            Some(c) => {
                // Time first: the daemon reads the count, then the time.
                c.word(counters::CLOSED_NS)
                    .fetch_add(open_for.as_nanos() as u64, Ordering::Relaxed);
                c.word(counters::CLOSED).fetch_add(1, Ordering::Release);
            }
            None => self.closed.borrow_mut().push(id),
        }
    }

    /// Sends the closes recorded by [`Channel::closed`] (none when they are
    /// counted in the shared page).
    pub fn flush(&self) -> io::Result<()> {
        let ids = std::mem::take(&mut *self.closed.borrow_mut());
        self.done(&ids)
    }

    /// Records a request served in `took` (from its arrival to its
    /// response written), for `herd metrics`' request latency. Nothing is
    /// sent until [`Channel::flush_requests`]: call that a few times a
    /// second at most (the daemon wants aggregates, not a message per
    /// request). Returns whether this is the first request since the last
    /// flush (a cue to schedule one).
    pub fn request_served(&self, took: std::time::Duration) -> bool {
        let mut r = self.requests.borrow_mut();
        let first = r.is_empty();
        let us = crate::metrics::hist::quantize_us(took.as_micros() as u64);
        *r.entry(us).or_default() += 1;
        first
    }

    /// Sends the requests recorded since the last flush as `L` messages.
    pub fn flush_requests(&self) -> io::Result<()> {
        let r = std::mem::take(&mut *self.requests.borrow_mut());
        let pairs: Vec<(u64, u64)> = r.into_iter().collect();
        for chunk in pairs.chunks(crate::fdpass::herd::MAX_TIMED) {
            self.send(&Msg::Latency(chunk.to_vec()))?;
        }
        Ok(())
    }

    /// Whether closes are counted in the daemon's shared page.
    pub fn counts_closes(&self) -> bool {
        self.counters.is_some()
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fdpass::{socketpair, PairKind};

    fn pair() -> (Channel, OwnedFd) {
        let (daemon, worker) = socketpair(PairKind::SeqPacket).unwrap();
        let chan = Channel::from_fd(worker);
        chan.set_nonblocking(true).unwrap();
        crate::sys::fdpass::set_nonblocking(daemon.as_fd(), true).unwrap();
        (chan, daemon)
    }

    fn next(daemon: &OwnedFd) -> Option<Msg> {
        let mut buf = [0u8; MAX_MSG];
        let mut fds = Vec::new();
        let (n, _) = recv_with_fds(daemon.as_fd(), &mut buf, &mut fds, true).ok()?;
        Some(Msg::decode(&buf[..n]).unwrap())
    }

    #[test]
    fn closes_go_as_one_d_per_flush_without_a_page() {
        let (chan, daemon) = pair();
        chan.closed(4, std::time::Duration::from_millis(1));
        chan.closed(9, std::time::Duration::from_millis(1));
        assert_eq!(next(&daemon), None, "nothing before the flush");
        chan.flush().unwrap();
        assert_eq!(next(&daemon), Some(Msg::Done(vec![4, 9])));
        chan.flush().unwrap();
        assert_eq!(next(&daemon), None, "an empty flush sends nothing");
    }

    #[test]
    fn requests_are_aggregated_and_sent_on_flush() {
        let (chan, daemon) = pair();
        assert!(chan.request_served(std::time::Duration::from_micros(100)));
        assert!(!chan.request_served(std::time::Duration::from_micros(100)));
        chan.request_served(std::time::Duration::from_millis(5));
        assert_eq!(next(&daemon), None, "nothing before the flush");
        chan.flush_requests().unwrap();
        let q = crate::metrics::hist::quantize_us;
        assert_eq!(
            next(&daemon),
            Some(Msg::Latency(vec![(q(100), 2), (q(5000), 1)]))
        );
        chan.flush_requests().unwrap();
        assert_eq!(next(&daemon), None, "an empty flush sends nothing");
    }

    #[test]
    fn closes_are_counted_in_the_page_and_never_sent() {
        let (chan, daemon) = pair();
        let page = SharedPage::new("herd-test").unwrap();
        let mine = SharedPage::from_fd(page.as_fd().try_clone_to_owned().unwrap()).unwrap();
        let chan = chan.with_counters(mine);
        assert!(chan.counts_closes());
        assert_eq!(
            page.word(counters::FLAGS).load(Ordering::Relaxed),
            counters::COUNTS_CLOSES
        );
        chan.closed(1, std::time::Duration::from_micros(250));
        chan.closed(2, std::time::Duration::from_micros(750));
        chan.flush().unwrap();
        assert_eq!(next(&daemon), None);
        assert_eq!(page.word(counters::CLOSED).load(Ordering::Relaxed), 2);
        assert_eq!(
            page.word(counters::CLOSED_NS).load(Ordering::Relaxed),
            1_000_000
        );
    }
}

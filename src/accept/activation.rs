//! Listeners that outlive the daemon: sockets systemd passed in
//! (`LISTEN_FDS`, from a `.socket` unit or from its fd store) and sockets
//! herd bound and handed to systemd's fd store (when `NOTIFY_SOCKET` is
//! set). Both are *kept*: the daemon holds them for its whole life, an app
//! on their port uses them instead of binding, and deleting or restarting
//! the app leaves them open (connections wait in their backlog for the next
//! start on that port).
//!
//! Matching: a kept listener serves an app whose port equals the
//! listener's, and whose host equals the listener's address, where
//! `0.0.0.0` or `::` on either side matches any. Per mode:
//! * `fdpass`: every acceptor thread accepts on the kept listener (no
//!   extra `SO_REUSEPORT` listeners, whose queues a herd restart would
//!   reset);
//! * `reuseport`: the kept listener is instance 0's; the others join its
//!   group when it has `SO_REUSEPORT`, and otherwise every instance shares
//!   it, as in `shared` mode (logged);
//! * `shared`, and a Node app's second port: the kept listener itself.
//!
//! Of the listeners herd binds itself, one per port goes to the fd store
//! (`herd-port-<port>`): a reuseport group's other members are herd's own.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, OnceLock};

use socket2::Socket;

use super::reuseport::{self, BindError};
use crate::sys::activation::{Passed, Taken};

/// The fd store name of herd's listener on `port`.
pub fn store_name(port: u16) -> String {
    format!("herd-port-{port}")
}

struct Entry {
    sock: Arc<Socket>,
    name: String,
    addr: SocketAddr,
    reuseport: bool,
}

impl Entry {
    /// Whether an app holds it (the table's own reference aside).
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.sock) > 1
    }
}

/// A kept listener handed to an app.
#[derive(Clone)]
pub struct Claim {
    /// The listener (the table keeps its own reference).
    pub sock: Arc<Socket>,
    /// It has `SO_REUSEPORT`: herd may join its group.
    pub reuseport: bool,
    /// Its fd name.
    pub name: String,
}

/// The kept listeners of one daemon.
pub struct Kept {
    entries: Mutex<Vec<Entry>>,
    /// systemd's notify socket, where listeners go to the fd store.
    notify: Option<String>,
}

static KEPT: OnceLock<Kept> = OnceLock::new();

/// Sets up the daemon's table from what `LISTEN_FDS` held and systemd's
/// `NOTIFY_SOCKET` (once per process; later calls only log), and logs one
/// line per descriptor taken or refused.
pub fn install(taken: Taken, notify: Option<String>) {
    for why in &taken.refused {
        log::info!("socket activation: ignored {why}");
    }
    let kept = Kept::new(notify);
    kept.adopt(taken.passed);
    if KEPT.set(kept).is_err() {
        log::info!("socket activation: already set up in this process; new descriptors ignored");
    }
}

/// The daemon's table, once installed.
pub fn kept() -> Option<&'static Kept> {
    KEPT.get()
}

/// Whether `want` (an app's host) is served by a listener bound to `have`.
pub fn host_matches(have: IpAddr, want: IpAddr) -> bool {
    have.is_unspecified() || want.is_unspecified() || have == want
}

impl Kept {
    /// An empty table; `notify` is systemd's `NOTIFY_SOCKET`, if any.
    pub fn new(notify: Option<String>) -> Kept {
        Kept {
            entries: Mutex::new(Vec::new()),
            notify: notify.filter(|n| !n.is_empty()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps passed listeners (each logged, and stored again in systemd's
    /// fd store when there is one: systemd ignores one it already holds).
    pub fn adopt(&self, passed: Vec<Passed>) {
        for p in passed {
            log::info!(
                "socket activation: adopted fd {} `{}`, a TCP listener on {}{}; kept until an app on port {} uses it",
                p.num,
                p.name,
                p.addr,
                if p.reuseport { " (SO_REUSEPORT)" } else { "" },
                p.addr.port()
            );
            let e = Entry {
                sock: Arc::new(Socket::from(p.fd)),
                name: p.name,
                addr: p.addr,
                reuseport: p.reuseport,
            };
            self.store(&e);
            self.lock().push(e);
        }
    }

    fn store(&self, e: &Entry) {
        let Some(notify) = &self.notify else {
            return;
        };
        match crate::sys::activation::store_fd(notify, &e.name, e.sock.as_fd()) {
            Ok(()) => log::info!(
                "socket activation: listener {} stored in systemd's fd store as `{}`",
                e.addr,
                e.name
            ),
            Err(err) => log::info!(
                "socket activation: cannot store listener {} in systemd's fd store ({notify}): {err}",
                e.addr
            ),
        }
    }

    /// The kept listener for `host:port` that no app uses, if any. A kept
    /// listener an app already uses is `InUse`, as a bound port would be.
    pub fn claim(&self, host: &str, port: u16) -> Result<Option<Claim>, BindError> {
        if port == 0 {
            return Ok(None);
        }
        let want: IpAddr = host
            .parse()
            .map_err(|_| BindError::BadHost(host.to_string()))?;
        let entries = self.lock();
        let mut matching = entries
            .iter()
            .filter(|e| e.addr.port() == port && host_matches(e.addr.ip(), want))
            .peekable();
        if matching.peek().is_none() {
            return Ok(None);
        }
        let Some(e) = matching.find(|e| !e.in_use()) else {
            return Err(BindError::InUse {
                host: host.to_string(),
                port,
            });
        };
        log::info!(
            "socket activation: port {port} uses the passed listener `{}` on {} instead of binding",
            e.name,
            e.addr
        );
        Ok(Some(Claim {
            sock: e.sock.clone(),
            reuseport: e.reuseport,
            name: e.name.clone(),
        }))
    }

    /// A listener herd bound itself on `port`: with systemd's fd store, it
    /// goes there and is kept (so the next start on the port finds it, and
    /// a herd restart finds it passed back). Without one, nothing happens.
    pub fn keep_bound(&self, sock: &Arc<Socket>, port: u16) {
        if self.notify.is_none() || port == 0 {
            return;
        }
        let Ok(addr) = crate::sys::activation::local_addr(sock.as_fd()) else {
            return;
        };
        let e = Entry {
            sock: sock.clone(),
            name: store_name(port),
            addr,
            reuseport: crate::sys::activation::check_listener(sock.as_fd()).is_ok_and(|(_, rp)| rp),
        };
        self.store(&e);
        self.lock().push(e);
    }

    /// Whether `sock` is one of the kept listeners.
    pub fn is_kept(&self, sock: &Arc<Socket>) -> bool {
        self.lock().iter().any(|e| Arc::ptr_eq(&e.sock, sock))
    }

    /// A kept listener on `host:port` without `SO_REUSEPORT` (which a
    /// reuseport app shares instead of joining), whether in use or not.
    fn unjoinable(&self, host: &str, port: u16) -> Option<Arc<Socket>> {
        let want: IpAddr = host.parse().ok()?;
        self.lock()
            .iter()
            .find(|e| e.addr.port() == port && host_matches(e.addr.ip(), want) && !e.reuseport)
            .map(|e| e.sock.clone())
    }

    /// One line per kept listener, for the daemon log.
    pub fn describe(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|e| {
                format!(
                    "`{}` on {}: {}",
                    e.name,
                    e.addr,
                    if e.in_use() {
                        "in use"
                    } else {
                        "waiting for an app"
                    }
                )
            })
            .collect()
    }
}

fn claim(host: &str, port: u16) -> Result<Option<Claim>, BindError> {
    kept().map_or(Ok(None), |k| k.claim(host, port))
}

fn keep_bound(sock: &Arc<Socket>, port: u16) {
    if let Some(k) = kept() {
        k.keep_bound(sock, port);
    }
}

/// One listener on `host:port` (`shared` mode, a Node app's second port):
/// a kept one, or a fresh plain bind.
pub fn one(host: &str, port: u16, backlog: Option<i32>) -> Result<Arc<Socket>, BindError> {
    if let Some(c) = claim(host, port)? {
        return Ok(c.sock);
    }
    let s = Arc::new(reuseport::bind_one(host, port, backlog)?);
    keep_bound(&s, port);
    Ok(s)
}

/// `n` listeners for a `reuseport` app, instance i's at index i.
pub fn reuseport_group(host: &str, port: u16, n: usize) -> Result<Vec<Arc<Socket>>, BindError> {
    let n = n.max(1);
    if let Some(c) = claim(host, port)? {
        if !c.reuseport {
            if n > 1 {
                log::info!(
                    "socket activation: the passed listener `{}` has no SO_REUSEPORT, so the {n} instances on port {port} share it (as --mode shared) instead of one listener each",
                    c.name
                );
            }
            return Ok(vec![c.sock; n]);
        }
        let mut group = vec![c.sock];
        for _ in 1..n {
            group.push(Arc::new(reuseport::join_group(host, port)?));
        }
        return Ok(group);
    }
    let group: Vec<Arc<Socket>> = reuseport::bind_group(host, port, n)?
        .into_iter()
        .map(Arc::new)
        .collect();
    keep_bound(&group[0], port);
    Ok(group)
}

/// The listeners of an `fdpass` app's `n` acceptor threads: the kept
/// listener for each of them, or a fresh reuseport group.
pub fn acceptor_group(
    host: &str,
    port: u16,
    n: usize,
    backlog: Option<i32>,
) -> Result<Vec<Arc<Socket>>, BindError> {
    let n = n.max(1);
    if let Some(c) = claim(host, port)? {
        return Ok(vec![c.sock; n]);
    }
    let group: Vec<Arc<Socket>> = reuseport::bind_group_with(host, port, n, backlog)?
        .into_iter()
        .map(Arc::new)
        .collect();
    keep_bound(&group[0], port);
    Ok(group)
}

/// One more listener for a reuseport app (`herd scale`, a reload's
/// replacement): `current` again when it is kept (a kept listener must
/// keep being accepted on, or what the kernel queues on it waits for
/// nobody), the shared kept listener when it cannot be joined, else a new
/// member of the group.
pub fn join(
    host: &str,
    port: u16,
    current: Option<&Arc<Socket>>,
) -> Result<Arc<Socket>, BindError> {
    if let Some(k) = kept() {
        if let Some(c) = current.filter(|c| k.is_kept(c)) {
            return Ok(c.clone());
        }
        if let Some(s) = k.unjoinable(host, port) {
            return Ok(s);
        }
    }
    Ok(Arc::new(reuseport::join_group(host, port)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(l: std::net::TcpListener, name: &str) -> Passed {
        let addr = l.local_addr().unwrap();
        Passed {
            fd: l.into(),
            num: 3,
            name: name.into(),
            addr,
            reuseport: false,
        }
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(host_matches(any4, lo));
        assert!(host_matches(any6, lo));
        assert!(host_matches(lo, any4));
        assert!(host_matches(lo, lo));
        assert!(!host_matches(lo, other));
    }

    #[test]
    fn a_kept_listener_is_claimed_once_at_a_time_and_kept_after() {
        let k = Kept::new(None);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        k.adopt(vec![passed(l, "web")]);
        assert!(k
            .claim("127.0.0.1", port.wrapping_add(1))
            .unwrap()
            .is_none());
        assert!(k.claim("10.0.0.1", port).unwrap().is_none());
        let c = k.claim("0.0.0.0", port).unwrap().unwrap();
        assert_eq!(c.name, "web");
        assert!(k.is_kept(&c.sock));
        // In use: a second app on the port is refused, as a bind would be.
        assert!(matches!(
            k.claim("127.0.0.1", port),
            Err(BindError::InUse { .. })
        ));
        drop(c);
        // Released (the app deleted): still listening, claimable again.
        let again = k.claim("127.0.0.1", port).unwrap().unwrap();
        assert_eq!(
            crate::sys::activation::local_addr(again.sock.as_fd())
                .unwrap()
                .port(),
            port
        );
        assert!(k.describe()[0].contains("in use"));
    }
}

//! Per-instance `SO_REUSEPORT` listeners.
//!
//! The daemon keeps each listener open for the life of the app, not of the
//! process: when a worker dies, connections already queued on its listener
//! wait there for the replacement instead of being reset (closing one socket
//! of a reuseport group drops its queue).

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Fallback backlog when `/proc/sys/net/core/somaxconn` cannot be read.
const DEFAULT_BACKLOG: i32 = 4096;

/// The kernel's accept-queue cap, which `listen()` silently clamps to anyway.
pub fn somaxconn() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_BACKLOG)
}

/// Why the listeners could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// `host` is not an IP address.
    #[error("invalid --host `{0}`: expected an IP address such as 0.0.0.0, 127.0.0.1 or ::")]
    BadHost(String),
    /// Something else already listens on the port.
    #[error("port {port} on {host} is already in use")]
    InUse {
        /// The address.
        host: String,
        /// The port.
        port: u16,
    },
    /// An fdpass app asked for a second port (one listener per app for now).
    #[error("the app already listens on port {bound}; a second server on port {wanted} is not supported in fdpass mode yet")]
    SecondPort {
        /// The port already bound.
        bound: u16,
        /// The port asked for.
        wanted: u16,
    },
    /// Any other socket error.
    #[error("cannot listen on {addr}: {source}")]
    Other {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

fn socket_for(addr: SocketAddr, reuseport: bool) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    if reuseport {
        sock.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `::` accepts IPv4 too, as Node's default listen does.
        sock.set_only_v6(false)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// Creates `n` listening sockets in one reuseport group on `host:port`.
///
/// First checks that nobody else holds the port: a plain (non-reuseport)
/// bind fails with EADDRINUSE if any socket is bound there, whereas a
/// reuseport bind would silently *join* another process's group and steal
/// part of its traffic.
pub fn bind_group(host: &str, port: u16, n: usize) -> Result<Vec<Socket>, BindError> {
    bind_group_with(host, port, n, None)
}

/// [`bind_group`] with a backlog (default somaxconn). Port 0 picks a free
/// port for the first socket and binds the rest of the group to it.
pub fn bind_group_with(
    host: &str,
    port: u16,
    n: usize,
    backlog: Option<i32>,
) -> Result<Vec<Socket>, BindError> {
    let (addr, map) = target(host, port)?;
    if port != 0 {
        drop(socket_for(addr, false).map_err(&map)?);
    }
    let backlog = backlog.unwrap_or_else(somaxconn);
    let mut group: Vec<Socket> = Vec::with_capacity(n.max(1));
    let mut at = addr;
    for _ in 0..n.max(1) {
        let s = socket_for(at, true).map_err(&map)?;
        s.listen(backlog).map_err(&map)?;
        if let Some(bound) = s.local_addr().ok().and_then(|a| a.as_socket()) {
            at = bound;
        }
        group.push(s);
    }
    Ok(group)
}

/// One more listener for a reuseport group herd already owns on
/// `host:port` (`herd scale` adding an instance).
pub fn join_group(host: &str, port: u16) -> Result<Socket, BindError> {
    let (addr, map) = target(host, port)?;
    let s = socket_for(addr, true).map_err(&map)?;
    s.listen(somaxconn()).map_err(&map)?;
    Ok(s)
}

/// The address for `host:port`, and how to turn a socket error on it into a
/// [`BindError`] that names the port.
fn target(
    host: &str,
    port: u16,
) -> Result<(SocketAddr, impl Fn(io::Error) -> BindError + '_), BindError> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| BindError::BadHost(host.to_string()))?;
    let addr = SocketAddr::new(ip, port);
    let map = move |e: io::Error| {
        if e.kind() == io::ErrorKind::AddrInUse {
            BindError::InUse {
                host: host.to_string(),
                port,
            }
        } else {
            BindError::Other { addr, source: e }
        }
    };
    Ok((addr, map))
}

/// One plain listener (no SO_REUSEPORT): `fdpass` mode's listener owned by
/// the daemon, and `shared` mode's listener inherited by every worker.
pub fn bind_one(host: &str, port: u16, backlog: Option<i32>) -> Result<Socket, BindError> {
    let (addr, map) = target(host, port)?;
    let s = socket_for(addr, false).map_err(&map)?;
    s.listen(backlog.unwrap_or_else(somaxconn)).map_err(&map)?;
    Ok(s)
}

/// Whether the kernel moves the queue of a closing reuseport listener to
/// another listener of its group (`net.ipv4.tcp_migrate_req`, Linux ≥ 5.14)
/// instead of resetting it. `None` when the kernel has no such setting.
pub fn migrate_req() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .ok()
        .map(|v| v.trim() != "0")
}

/// The reload note for reuseport apps on a kernel that resets the queue of
/// a closing listener.
pub const MIGRATE_NOTE: &str = "reuseport: net.ipv4.tcp_migrate_req is 0, so connections queued on an old listener as it closes are reset (a few per thousand reloads under load); `sysctl -w net.ipv4.tcp_migrate_req=1` makes reuseport reloads lossless (fdpass and shared lose nothing either way)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_port_someone_else_holds() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = other.local_addr().unwrap().port();
        let err = bind_group("127.0.0.1", port, 2).unwrap_err();
        assert!(
            matches!(err, BindError::InUse { port: p, .. } if p == port),
            "{err}"
        );
        drop(other);
        let group = bind_group("127.0.0.1", port, 2).unwrap();
        assert_eq!(group.len(), 2);
        assert!(matches!(
            bind_group("localhost", port, 1),
            Err(BindError::BadHost(_))
        ));
    }
}

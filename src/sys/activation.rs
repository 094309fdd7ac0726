//! systemd socket activation, the daemon's side: listening sockets passed
//! in with `LISTEN_FDS` (sd_listen_fds(3)), and sockets handed to systemd's
//! file descriptor store (sd_pid_notify_with_fds(3), `FDSTORE=1`).
//!
//! Only the syscalls live here; which app gets which socket is decided in
//! `accept::activation`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// A listening TCP socket passed to this process.
#[derive(Debug)]
pub struct Passed {
    /// The socket, close-on-exec (apps never inherit it by accident).
    pub fd: OwnedFd,
    /// The descriptor number it came as (3, 4, …).
    pub num: i32,
    /// Its `LISTEN_FDNAMES` entry (systemd's default is `unknown`).
    pub name: String,
    /// Its `getsockname`.
    pub addr: SocketAddr,
    /// Whether `SO_REUSEPORT` is set on it (others may join its group).
    pub reuseport: bool,
}

/// Copies of the TCP listeners process `pid` holds (`pidfd_getfd(2)`:
/// the same sockets, so both processes accept from one queue), to take
/// over another process manager's ports without closing them. Needs the
/// right to ptrace `pid` (same user, or CAP_SYS_PTRACE). Each comes as a
/// [`Passed`] named `taken-<pid>`, `num` its descriptor number there.
pub fn take_listeners_of(pid: i32) -> std::io::Result<Vec<Passed>> {
    let pidfd = super::process::pidfd_open(pid)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Some(num) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: pidfd_getfd takes a pidfd, a descriptor number in that
        // process and flags (0); it returns a new close-on-exec fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), num, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBADF) {
                continue; // closed meanwhile
            }
            return Err(e);
        }
        // SAFETY: the syscall returned a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        if let Ok((addr, reuseport)) = check_listener(fd.as_fd()) {
            out.push(Passed {
                fd,
                num,
                name: format!("taken-{pid}"),
                addr,
                reuseport,
            });
        }
    }
    Ok(out)
}

/// What `LISTEN_FDS` held.
#[derive(Debug, Default)]
pub struct Taken {
    /// The listening TCP sockets.
    pub passed: Vec<Passed>,
    /// One line per descriptor (or variable) refused, naming it and why.
    pub refused: Vec<String>,
}

/// Takes the descriptors `LISTEN_FDS` passes (fds 3 … 3+N-1) if
/// `LISTEN_PID` is this process, keeping the listening TCP sockets and
/// closing the rest (a file, a UDP or unix socket, a socket that does not
/// listen: each gets a line in `refused`). Removes `LISTEN_FDS`,
/// `LISTEN_PID` and `LISTEN_FDNAMES` from the environment in every case,
/// so apps never inherit them. Never fails: bad input is only reported.
pub fn take_listen_fds() -> Taken {
    let mut out = Taken::default();
    let fds = std::env::var("LISTEN_FDS").ok();
    let pid = std::env::var("LISTEN_PID").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for v in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    let Some(fds) = fds else {
        return out;
    };
    let n = match fds.trim().parse::<u32>() {
        Ok(n) if n <= 1024 => n as i32,
        _ => {
            out.refused.push(format!(
                "LISTEN_FDS=`{fds}`: expected a count of descriptors (0–1024); none taken"
            ));
            return out;
        }
    };
    let ours = pid
        .as_deref()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !ours {
        out.refused.push(format!(
            "LISTEN_PID=`{}` is not this process ({}): the {n} descriptor(s) of LISTEN_FDS are not ours; none taken",
            pid.unwrap_or_default(),
            std::process::id()
        ));
        return out;
    }
    let names: Vec<&str> = names
        .as_deref()
        .map_or(Vec::new(), |s| s.split(':').collect());
    for i in 0..n {
        let num = super::fd::LISTEN_FDS_START + i;
        let name = names
            .get(i as usize)
            .copied()
            .unwrap_or("unknown")
            .to_string();
        match take_one(num) {
            Ok(Ok((fd, addr, reuseport))) => out.passed.push(Passed {
                fd,
                num,
                name,
                addr,
                reuseport,
            }),
            Ok(Err(why)) => out
                .refused
                .push(format!("fd {num} ({name}): {why}; closed")),
            Err(why) => out.refused.push(format!("fd {num} ({name}): {why}")),
        }
    }
    out
}

type Listener = (OwnedFd, SocketAddr, bool);

/// Checks descriptor `num`. The outer error: it is not open (nothing to
/// close); the inner: open but not a listening TCP socket (it is closed).
fn take_one(num: i32) -> Result<Result<Listener, String>, String> {
    // SAFETY: F_SETFD on a descriptor number: an fd that is not open only
    // yields EBADF; it changes no memory.
    if unsafe { libc::fcntl(num, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(format!("not open ({})", io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is open (fcntl succeeded) and the LISTEN_FDS
    // protocol passed it to this process to own; nothing else holds it.
    let fd = unsafe { OwnedFd::from_raw_fd(num) };
    Ok(check_listener(fd.as_fd()).map(|(addr, rp)| (fd, addr, rp)))
}

/// `(getsockname, SO_REUSEPORT)` of a listening TCP socket, or why `fd`
/// is not one.
pub fn check_listener(fd: BorrowedFd<'_>) -> Result<(SocketAddr, bool), String> {
    let opt = |name| {
        let mut v: libc::c_int = 0;
        super::getsockopt(fd, libc::SOL_SOCKET, name, &mut v).map(|()| v)
    };
    let ty = opt(libc::SO_TYPE).map_err(|e| format!("not a socket ({e})"))?;
    let domain = opt(libc::SO_DOMAIN).map_err(|e| format!("not a socket ({e})"))?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(format!(
            "not a TCP socket (address family {domain}, expected AF_INET or AF_INET6)"
        ));
    }
    if ty != libc::SOCK_STREAM {
        let what = if ty == libc::SOCK_DGRAM {
            "UDP"
        } else {
            "not stream"
        };
        return Err(format!(
            "a {what} socket (type {ty}), expected a TCP listener"
        ));
    }
    if opt(libc::SO_ACCEPTCONN).map_err(|e| e.to_string())? == 0 {
        return Err("a TCP socket that is not listening (no listen() call)".into());
    }
    let reuseport = opt(libc::SO_REUSEPORT).is_ok_and(|v| v != 0);
    let addr = local_addr(fd).map_err(|e| format!("getsockname: {e}"))?;
    Ok((addr, reuseport))
}

/// `getsockname` of an IPv4 or IPv6 socket.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `ss`, which
    // outlives the call.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let a = unsafe { *(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Ok(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { *(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
        }
        f => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("address family {f}, expected AF_INET or AF_INET6"),
        )),
    }
}

/// Hands `fd` to systemd's file descriptor store under `name`: one
/// datagram `FDSTORE=1\nFDNAME=<name>` with the descriptor attached
/// (`SCM_RIGHTS`) to `notify_socket` (a path, or `@name` for the abstract
/// namespace), as sd_pid_notify_with_fds(3) sends it. systemd passes it back
/// with `LISTEN_FDS` when it starts the service again. It ignores a
/// descriptor it already stores, so storing one twice is harmless.
pub fn store_fd(notify_socket: &str, name: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.bytes().any(|b| b == b':' || b.is_ascii_control())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("FDNAME `{name}`: expected 1–255 printable characters, no `:`"),
        ));
    }
    let sock = connect_notify(notify_socket)?;
    let msg = format!("FDSTORE=1\nFDNAME={name}");
    super::fdpass::send_with_fds(sock.as_fd(), msg.as_bytes(), &[fd], false).map(drop)
}

/// A datagram socket connected to `notify_socket` (a path, or `@name`).
fn connect_notify(notify_socket: &str) -> io::Result<std::os::unix::net::UnixDatagram> {
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let addr = match notify_socket.strip_prefix('@') {
        Some(abs) => {
            use std::os::linux::net::SocketAddrExt;
            UnixAddr::from_abstract_name(abs.as_bytes())?
        }
        None => UnixAddr::from_pathname(notify_socket)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.connect_addr(&addr)?;
    Ok(sock)
}

/// Sends one sd_notify(3) datagram (`READY=1\nSTATUS=…`, `STOPPING=1`)
/// to `notify_socket`.
pub fn notify(notify_socket: &str, msg: &str) -> io::Result<()> {
    connect_notify(notify_socket)?
        .send(msg.as_bytes())
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_recognised_and_others_are_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (addr, rp) = check_listener(l.as_fd()).unwrap();
        assert_eq!(addr, l.local_addr().unwrap());
        assert!(!rp);
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(check_listener(u.as_fd()).unwrap_err().contains("UDP"));
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(check_listener(f.as_fd())
            .unwrap_err()
            .contains("not a socket"));
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        assert!(check_listener(s.as_fd())
            .unwrap_err()
            .contains("not listening"));
        let v6 = std::net::TcpListener::bind("[::1]:0");
        if let Ok(v6) = v6 {
            assert_eq!(local_addr(v6.as_fd()).unwrap(), v6.local_addr().unwrap());
        }
    }

    #[test]
    fn store_fd_sends_the_fd_with_its_name() {
        let path = std::env::temp_dir().join(format!("herd-fdstore-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        store_fd(path.to_str().unwrap(), "herd-port-1", l.as_fd()).unwrap();
        let mut buf = [0u8; 256];
        let mut fds = Vec::new();
        let (n, _) =
            super::super::fdpass::recv_with_fds(rx.as_fd(), &mut buf, &mut fds, true).unwrap();
        assert_eq!(&buf[..n], b"FDSTORE=1\nFDNAME=herd-port-1");
        assert_eq!(fds.len(), 1);
        assert_eq!(local_addr(fds[0].as_fd()).unwrap(), l.local_addr().unwrap());
        assert!(store_fd(path.to_str().unwrap(), "a:b", l.as_fd()).is_err());
        let _ = std::fs::remove_file(path);
    }
}

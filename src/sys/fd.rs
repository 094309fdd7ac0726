//! Descriptors: the systemd `LISTEN_FDS` protocol, async registration, pipes.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// The first descriptor of the `LISTEN_FDS` protocol.
pub const LISTEN_FDS_START: i32 = 3;

/// Takes fd 3 as a listening TCP socket if `LISTEN_FDS` / `LISTEN_PID` say it
/// is ours. Returns `Ok(None)` when no socket was passed. The fd is checked
/// to really be a listening socket before we own it, so a stray fd 3 (say, a
/// file the shell left open) is refused instead of misused.
pub fn listen_fds_listener() -> io::Result<Option<TcpListener>> {
    let passed = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    if passed.is_none_or(|n| n < 1) {
        return Ok(None);
    }
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !pid_ok {
        return Ok(None);
    }
    let accepting = sockopt_int(LISTEN_FDS_START, libc::SO_ACCEPTCONN);
    let accepting = match accepting {
        Ok(v) => v,
        Err(e) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("LISTEN_FDS is set but fd 3 is not a socket: {e}"),
            ))
        }
    };
    if accepting == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "LISTEN_FDS is set but fd 3 is not a listening socket",
        ));
    }
    // SAFETY: fd 3 is open (getsockopt succeeded), is a listening socket, and
    // by the LISTEN_FDS protocol it was passed to this process to own.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    Ok(Some(TcpListener::from(fd)))
}

/// Takes ownership of an inherited descriptor number named by an environment
/// variable (e.g. `HERD_CHANNEL_FD=3`), after checking that it is an
/// `AF_UNIX` socket of type `sock_type` (`libc::SOCK_SEQPACKET`, …). Removes
/// nothing from the environment; the caller decides.
pub fn take_inherited_socket(fd: i32, sock_type: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad fd number {fd}"),
        ));
    }
    let ty = sockopt_int(fd, libc::SO_TYPE).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket: {e}"),
        )
    })?;
    if ty != sock_type {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} has socket type {ty}, expected {sock_type}"),
        ));
    }
    // SAFETY: the fd is open (getsockopt succeeded) and was passed to this
    // process to own by the protocol that named it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads an integer `SOL_SOCKET` option of `fd` (which need not be open:
/// a bad fd is an error, not undefined behaviour).
fn sockopt_int(fd: i32, opt: i32) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`, which outlives
    // the call; an fd that is not open or not a socket only yields an error.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Registers an owned descriptor with the current tokio runtime.
pub fn async_fd(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of `fd`, so it stays open and refers
    // to the same object for as long as it is registered.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }
        .map_err(|e| e.into_parts().1)
}

/// Reads `afd` (registered readable, non-blocking) until EOF or an error,
/// handing each chunk to `on_chunk`; an interrupted read is retried.
pub async fn read_chunks(
    afd: &tokio::io::unix::AsyncFd<OwnedFd>,
    buf: &mut [u8],
    mut on_chunk: impl FnMut(&[u8]),
) {
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return;
        };
        match guard.try_io(|a| read(a.get_ref(), buf)) {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => on_chunk(&buf[..n]),
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}

/// `read(2)` into `buf`.
pub fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid, writable memory of `buf.len()` bytes and `fd`
    // is an open descriptor for the duration of the call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A pipe `(read end, write end)`, both close-on-exec, the read end
/// non-blocking (the daemon's side; the write end becomes a child's
/// stdout or stderr, where dup2 clears close-on-exec).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the 2-element array.
    super::cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded: both descriptors are new and owned by us.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    super::fdpass::set_nonblocking(r.as_fd(), true)?;
    Ok((r, w))
}

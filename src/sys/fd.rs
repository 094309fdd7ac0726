//! Descriptors handed to us by a parent: the systemd `LISTEN_FDS` protocol.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};

/// The first descriptor of the `LISTEN_FDS` protocol.
pub const LISTEN_FDS_START: i32 = 3;

/// Takes fd 3 as a listening TCP socket if `LISTEN_FDS` / `LISTEN_PID` say it
/// is ours. Returns `Ok(None)` when no socket was passed. The fd is checked
/// to really be a listening socket before we own it, so a stray fd 3 (say, a
/// file the shell left open) is refused instead of misused.
pub fn listen_fds_listener() -> io::Result<Option<TcpListener>> {
    let fds: u32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) if n >= 1 => n,
        _ => return Ok(None),
    };
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !pid_ok {
        return Ok(None);
    }
    let _ = fds;
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `accepting`, which
    // lives across the call; an invalid fd only yields EBADF.
    let rc = unsafe {
        libc::getsockopt(
            LISTEN_FDS_START,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "LISTEN_FDS is set but fd 3 is not a socket: {}",
                io::Error::last_os_error()
            ),
        ));
    }
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

//! The daemon's side of sd_notify(3): a datagram socket whose path every app
//! gets as `NOTIFY_SOCKET`, and receiving a message with the sender's pid
//! (SCM_CREDENTIALS, filled in by the kernel, so a process cannot claim to
//! be another).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use super::cvt;

/// Binds the notify socket at `path` (non-blocking, close-on-exec), with
/// credentials passing on.
pub fn bind(path: &Path) -> io::Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let sock = UnixDatagram::bind(path)?;
    sock.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` (an int of the size given) during the call.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(sock.into())
}

/// Receives one datagram into `buf`: its length and the sender's pid.
/// Descriptors sent along (never expected here) are closed at once.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
    let mut fds = Vec::new();
    let r = super::fdpass::recv_msg(sock, buf, &mut fds, libc::MSG_DONTWAIT)?;
    Ok((r.len, r.pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_carries_the_senders_pid() {
        let path = std::env::temp_dir().join(format!("herd-notify-{}.sock", std::process::id()));
        let sock = bind(&path).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1\nSTATUS=ok", &path).unwrap();
        let mut buf = [0u8; 256];
        let (n, pid) = recv(std::os::fd::AsFd::as_fd(&sock), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");
        assert_eq!(pid, Some(std::process::id() as i32));
        let _ = std::fs::remove_file(path);
    }
}

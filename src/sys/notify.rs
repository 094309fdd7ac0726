//! The daemon's side of sd_notify(3): a datagram socket whose path every app
//! gets as `NOTIFY_SOCKET`, and receiving a message with the sender's pid
//! (SCM_CREDENTIALS, filled in by the kernel, so a process cannot claim to
//! be another).

use std::io::{self, IoSliceMut};
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
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
    // Room for one ucred message (and a few passed fds, which we close).
    let mut cmsg_buf = [0u64; 16];
    let mut iov = [IoSliceMut::new(buf)];
    // SAFETY: a zeroed msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr() as *mut libc::iovec;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg_buf);
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut pid = None;
    // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR/NXTHDR stay within
    // it. A ucred payload is read unaligned; SCM_RIGHTS fds (unexpected here)
    // become owned and are closed at once.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len - libc::CMSG_LEN(0) as usize;
                if (*c).cmsg_type == libc::SCM_CREDENTIALS
                    && len >= std::mem::size_of::<libc::ucred>()
                {
                    let cred = (data as *const libc::ucred).read_unaligned();
                    pid = Some(cred.pid);
                } else if (*c).cmsg_type == libc::SCM_RIGHTS {
                    let fds = data as *const libc::c_int;
                    for i in 0..len / std::mem::size_of::<libc::c_int>() {
                        use std::os::fd::FromRawFd;
                        drop(OwnedFd::from_raw_fd(fds.add(i).read_unaligned()));
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, pid))
}

/// The parent pid of `pid`, from /proc.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: fields start after the last `)`.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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
        assert_eq!(
            parent_of(std::process::id() as i32).map(|p| p > 0),
            Some(true)
        );
        let _ = std::fs::remove_file(path);
    }
}

//! Passing descriptors over unix sockets (`SCM_RIGHTS`), and the socket
//! pairs that carry them between the daemon and its workers.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// Most descriptors one message may carry (the kernel's SCM_MAX_FD is 253).
pub const MAX_FDS_PER_MSG: usize = 64;

/// Which kind of socket pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairKind {
    /// Message boundaries kept: herd's own worker protocol.
    SeqPacket,
    /// A byte stream: Node's IPC channel (libuv reads it as a pipe).
    Stream,
}

/// A connected `AF_UNIX` pair, both ends close-on-exec (the child's end is
/// `dup2`ed into place, which clears the flag on the copy).
pub fn socketpair(kind: PairKind) -> io::Result<(OwnedFd, OwnedFd)> {
    let ty = match kind {
        PairKind::SeqPacket => libc::SOCK_SEQPACKET,
        PairKind::Stream => libc::SOCK_STREAM,
    };
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two fds into the 2-element array.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears `O_NONBLOCK`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a valid borrowed fd.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// Sends `data` with `fds` attached in one `sendmsg` (`MSG_NOSIGNAL`: a dead
/// peer is an `EPIPE` error, not a signal). Returns bytes sent. With
/// `dontwait`, a full socket buffer is `WouldBlock`.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    dontwait: bool,
) -> io::Result<usize> {
    assert!(fds.len() <= MAX_FDS_PER_MSG, "too many fds for one message");
    let mut cmsg_buf: RightsBuf = [0u64; RIGHTS_WORDS];
    let iov = [IoSlice::new(data)];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = 1;
    set_rights(&mut msg, &mut cmsg_buf, fds.iter().map(|f| f.as_raw_fd()));
    let flags = libc::MSG_NOSIGNAL | if dontwait { libc::MSG_DONTWAIT } else { 0 };
    loop {
        // SAFETY: msg points at live iov and control buffers for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

const fn cmsg_words(nfds: usize) -> usize {
    // Header (16 bytes on 64-bit) + fds, rounded up, in u64 words; generous.
    (16 + nfds * 4) / 8 + 2
}

/// Words of a [`RightsBuf`].
pub const RIGHTS_WORDS: usize = cmsg_words(MAX_FDS_PER_MSG);

/// Room for one `SCM_RIGHTS` control message of up to [`MAX_FDS_PER_MSG`]
/// descriptors (u64 words: aligned as `cmsghdr` needs).
pub type RightsBuf = [u64; RIGHTS_WORDS];

/// Points `msg`'s control data at `buf`, filled with an `SCM_RIGHTS` header
/// carrying `fds` (none: no control data). At most [`MAX_FDS_PER_MSG`].
pub fn set_rights(
    msg: &mut libc::msghdr,
    buf: &mut RightsBuf,
    fds: impl ExactSizeIterator<Item = RawFd>,
) {
    let n = fds.len();
    assert!(n <= MAX_FDS_PER_MSG, "too many fds for one message");
    if n == 0 {
        msg.msg_control = std::ptr::null_mut();
        msg.msg_controllen = 0;
        return;
    }
    let fd_bytes = (n * std::mem::size_of::<RawFd>()) as u32;
    msg.msg_control = buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    // SAFETY: msg_control points at `buf`, at least CMSG_SPACE bytes for
    // MAX_FDS_PER_MSG fds (cmsg_words), so the first header and its data
    // fit; exactly `n` RawFds are written into CMSG_DATA.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
        let dst = libc::CMSG_DATA(c) as *mut RawFd;
        for (i, fd) in fds.enumerate() {
            dst.add(i).write_unaligned(fd);
        }
    }
}

/// Receives one message into `buf`, appending any passed descriptors to
/// `fds` (owned: they close if dropped). Returns bytes read; 0 means EOF on a
/// stream or an empty datagram. `truncated` reports MSG_TRUNC/MSG_CTRUNC (a
/// peer sent more than we accept: treat as a protocol error).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    dontwait: bool,
) -> io::Result<(usize, bool)> {
    let flags = if dontwait { libc::MSG_DONTWAIT } else { 0 };
    let r = recv_msg(sock, buf, fds, flags)?;
    Ok((r.len, r.truncated))
}

/// Copies the start of the next message queued on `sock` into `buf`
/// without taking it off the queue (descriptors attached stay queued).
/// `None` when nothing is queued.
pub fn peek(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes. Without a control
        // buffer the kernel installs none of the message's descriptors.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// What [`recv_msg`] got besides the bytes.
pub(crate) struct Received {
    /// Bytes read into the buffer.
    pub len: usize,
    /// The sender's pid, when credentials came along (SO_PASSCRED).
    pub pid: Option<i32>,
    /// MSG_TRUNC or MSG_CTRUNC: the message or its control data was cut.
    pub truncated: bool,
}

/// `recvmsg` of one message with room for [`MAX_FDS_PER_MSG`] descriptors
/// and the sender's credentials; descriptors go to `fds`, close-on-exec.
pub(crate) fn recv_msg(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: libc::c_int,
) -> io::Result<Received> {
    // SCM_RIGHTS for the most descriptors we accept, plus one ucred.
    let mut cmsg_buf = [0u64; cmsg_words(MAX_FDS_PER_MSG) + 4];
    let mut iov = [IoSliceMut::new(buf)];
    // SAFETY: zeroed msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr() as *mut libc::iovec;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg_buf);
    let flags = libc::MSG_CMSG_CLOEXEC | flags;
    let n = loop {
        // SAFETY: msg points at live buffers for the duration of the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut pid = None;
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR and
    // CMSG_NXTHDR walk only within it. Each SCM_RIGHTS payload holds
    // (cmsg_len - CMSG_LEN(0)) / 4 fds that are now ours; a ucred payload is
    // read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let len = (*c).cmsg_len - libc::CMSG_LEN(0) as usize;
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    let data = data as *const RawFd;
                    for i in 0..len / std::mem::size_of::<RawFd>() {
                        fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                    if len >= std::mem::size_of::<libc::ucred>() =>
                {
                    pid = Some((data as *const libc::ucred).read_unaligned().pid);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: n,
        pid,
        truncated: msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0,
    })
}

/// `shutdown(SHUT_RDWR)`: the peer sees EOF even while other copies of the
/// descriptor stay open (e.g. one registered with the runtime).
pub fn shutdown(sock: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown on a valid borrowed fd.
    cvt(unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) }).map(|_| ())
}

/// Waits up to `timeout_ms` for `sock` to become writable.
pub fn poll_writable(sock: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let n = cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn passes_fds_and_bytes() {
        let (a, b) = socketpair(PairKind::SeqPacket).unwrap();
        let (p1, p2) = socketpair(PairKind::Stream).unwrap();
        send_with_fds(a.as_fd(), b"hi", &[p1.as_fd(), p2.as_fd()], false).unwrap();
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let (n, trunc) = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!((&buf[..n], trunc, fds.len()), (&b"hi"[..], false, 2));
        // The received fd is a working copy of p1.
        let mut f = std::fs::File::from(fds.remove(0));
        std::io::Write::write_all(&mut f, b"x").unwrap();
        let mut got = [0u8; 1];
        std::io::Read::read_exact(&mut std::fs::File::from(p2), &mut got).unwrap();
        assert_eq!(&got, b"x");
        drop(a);
        let (n, _) = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!(n, 0, "EOF after the peer closed");
    }
}

//! What the kernel says about an accepted TCP connection: whether a
//! process has started on it (read a byte from it, written one to it, or
//! shut or lost it). The daemon asks this of the copies it keeps of the
//! connections it handed to a worker, to decide when a worker dies which
//! of them another worker can still answer, and (for a request the worker
//! had read and not answered) what it had read: [`peek`] keeps the bytes
//! before the worker has them, [`consumed`] says how many it took.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// How far a process got on a connection, by the kernel's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Established, nothing read from it, nothing written to it: the
    /// request (if any) is still all in the receive queue.
    Untouched,
    /// Something was read from it (`tcpi_bytes_received` beyond what
    /// `FIONREAD` still has queued).
    Read,
    /// Something was written to it (`tcpi_bytes_acked` or `SIOCOUTQ`).
    Written,
    /// Shut down by a process (our FIN is sent: the answer is complete).
    Finished,
    /// Closed or reset by the peer (the client gave up).
    PeerGone,
}

impl Progress {
    /// Whether a process has started on it.
    pub fn started(self) -> bool {
        self != Progress::Untouched
    }
}

fn ioctl_int(fd: BorrowedFd<'_>, req: libc::Ioctl) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD/SIOCOUTQ write one int through the pointer, which
    // is valid for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as u64)
}

/// `TCP_INFO` of `fd`.
fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    super::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info)?;
    Ok(info)
}

/// Reads `TCP_INFO`, `FIONREAD` and (when needed) `SIOCOUTQ` of `fd`.
pub fn progress(fd: BorrowedFd<'_>) -> io::Result<Progress> {
    let info = tcp_info(fd)?;
    // include/net/tcp_states.h
    const ESTABLISHED: u8 = 1;
    const FIN_WAIT1: u8 = 4;
    const FIN_WAIT2: u8 = 5;
    const TIME_WAIT: u8 = 6;
    const LAST_ACK: u8 = 9;
    const CLOSING: u8 = 11;
    match info.tcpi_state {
        ESTABLISHED => {}
        FIN_WAIT1 | FIN_WAIT2 | TIME_WAIT | LAST_ACK | CLOSING => return Ok(Progress::Finished),
        _ => return Ok(Progress::PeerGone),
    }
    if info.tcpi_bytes_acked > 0 || ioctl_int(fd, libc::TIOCOUTQ)? > 0 {
        return Ok(Progress::Written);
    }
    if info.tcpi_bytes_received > ioctl_int(fd, libc::FIONREAD)? {
        return Ok(Progress::Read);
    }
    Ok(Progress::Untouched)
}

/// How many bytes of the stream processes have read from `fd`
/// (`tcpi_bytes_received` less what `FIONREAD` still has queued), and how
/// many the peer has sent in all (`tcpi_bytes_received`).
pub fn consumed(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let info = tcp_info(fd)?;
    let queued = ioctl_int(fd, libc::FIONREAD)?;
    Ok((
        info.tcpi_bytes_received.saturating_sub(queued),
        info.tcpi_bytes_received,
    ))
}

/// Copies what the peer has sent so far into `buf` without taking it off
/// the socket (`MSG_PEEK`, never waits): 0 when nothing has arrived yet.
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call;
    // the kernel writes at most that many.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(0),
            _ => Err(e),
        };
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsFd;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn settle() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    #[test]
    fn tells_untouched_read_written_and_ended_apart() {
        let (mut c, mut s) = pair();
        assert_eq!(progress(s.as_fd()).unwrap(), Progress::Untouched);
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        settle();
        assert_eq!(
            progress(s.as_fd()).unwrap(),
            Progress::Untouched,
            "queued, unread"
        );
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(progress(s.as_fd()).unwrap(), Progress::Read);

        let (_c, mut s) = pair();
        s.write_all(b"x").unwrap();
        settle();
        assert_eq!(progress(s.as_fd()).unwrap(), Progress::Written);

        let (_c, s) = pair();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(progress(s.as_fd()).unwrap(), Progress::Finished);

        let (c, s) = pair();
        drop(c);
        settle();
        assert_eq!(
            progress(s.as_fd()).unwrap(),
            Progress::PeerGone,
            "peer closed"
        );
    }

    #[test]
    fn peeks_without_taking_and_counts_what_was_read() {
        let (mut c, mut s) = pair();
        let mut buf = [0u8; 64];
        assert_eq!(peek(s.as_fd(), &mut buf).unwrap(), 0, "nothing sent yet");
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        settle();
        assert_eq!(peek(s.as_fd(), &mut buf).unwrap(), 18);
        assert_eq!(&buf[..18], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            consumed(s.as_fd()).unwrap(),
            (0, 18),
            "a peek takes nothing"
        );
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        assert_eq!(consumed(s.as_fd()).unwrap(), (5, 18));
        assert_eq!(progress(s.as_fd()).unwrap(), Progress::Read);
    }
}

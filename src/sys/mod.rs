//! Every syscall and `unsafe` block of herd lives here, each with a `// SAFETY:`
//! comment. The rest of the crate sees safe functions taking and returning
//! `OwnedFd`/`BorrowedFd`, never raw descriptors it must remember to close.
//!
//! We call `libc` directly instead of pulling in `nix`: the surface is small
//! (fork/exec, pidfd, flock, affinity, a few ids) and the fork child must use
//! only async-signal-safe calls on memory prepared before the fork, which is
//! easiest to audit as plain libc.

pub mod acceptor;
pub mod activation;
pub mod epoll;
pub mod fd;
pub mod fdpass;
pub mod lock;
pub mod notify;
pub mod process;
pub mod reap;
pub mod shm;
pub mod spawn;
pub mod tcp;
pub mod uring;

use std::io;

/// Turns a libc `-1 + errno` return into an `io::Error`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Socket option values the kernel may fill with any bytes.
pub(crate) trait SockOptValue: Copy {}
impl SockOptValue for libc::c_int {}
impl SockOptValue for libc::tcp_info {}

/// `getsockopt(fd, level, name)` into `value`, which holds its initial
/// value (the kernel writes at most its size, and may write less).
pub(crate) fn getsockopt<T: SockOptValue>(
    fd: std::os::fd::BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut T,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is valid for `len` bytes for the call; the kernel
    // writes at most `len`, and any bytes are a valid T (SockOptValue:
    // plain integers only). A non-socket fd only yields an error.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *mut T).cast(),
            &mut len,
        )
    };
    cvt(rc).map(drop)
}

/// The effective uid of this process (the daemon only serves this uid).
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sets the process umask, returning the previous one. Used around binding
/// the control socket so it is never briefly world-accessible.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// `TCP_DEFER_ACCEPT`: the listener's `accept` returns a connection only
/// once its first data has arrived (or, after about `secs` seconds of
/// SYN-ACK retransmits, without it).
pub fn set_defer_accept(sock: std::os::fd::BorrowedFd<'_>, secs: u32) -> io::Result<()> {
    let v = secs.min(i32::MAX as u32) as libc::c_int;
    setsockopt_int(sock, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, v)
}

/// `SO_INCOMING_CPU`: in a reuseport group, steer connections whose packets
/// this CPU handles to this socket.
pub fn set_incoming_cpu(sock: std::os::fd::BorrowedFd<'_>, cpu: usize) -> io::Result<()> {
    setsockopt_int(
        sock,
        libc::SOL_SOCKET,
        libc::SO_INCOMING_CPU,
        cpu as libc::c_int,
    )
}

/// `setsockopt(sock, level, name)` to the int `v`.
fn setsockopt_int(
    sock: std::os::fd::BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads `v` (an int of the size given) during the call.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Makes fd 2 refer to `file` (the daemon log after rotation).
pub fn redirect_stderr(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto fd 2 with a descriptor that is open for the duration
    // of the call; fd 2 is replaced atomically.
    cvt(unsafe { libc::dup2(file.as_raw_fd(), 2) }).map(drop)
}

/// Kernel clock ticks per second (for /proc/<pid>/stat CPU times).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// This process's limits on open descriptors, `None` if unknown.
fn nofile() -> Option<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0).then_some(r)
}

/// This process's soft limit on open descriptors (0 if unknown).
pub fn max_fds() -> u64 {
    nofile().map_or(0, |r| r.rlim_cur)
}

/// Raises this process's soft limit on open descriptors to its hard limit
/// (children inherit it: `herd bench`'s daemon and workers); returns the
/// soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    let Some(r) = nofile() else { return 0 };
    if r.rlim_cur < r.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit we own; raising the soft
        // limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    r.rlim_cur
}

/// Page size in bytes (for /proc/<pid>/statm).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// The CPUs this process may run on (its affinity mask), in ascending order.
/// Workers are pinned round-robin over this list, so a herd started under
/// `taskset` or a cpuset cgroup stays inside it.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: we pass the correct size of `set`, which outlives the call.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE, and `set` is initialised.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// Pins the calling thread to `cpu` (best effort: a CPU outside the mask is
/// simply not applied).
pub fn pin_current_thread(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; `cpu` is bounded.
    unsafe { libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set) };
    // SAFETY: `set` is initialised and its size is passed; 0 = this thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

#[cfg(test)]
mod incoming_cpu_tests {
    #[test]
    fn incoming_cpu_is_set_on_the_socket() {
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        super::set_incoming_cpu(l.as_fd(), 1).unwrap();
        let mut v: libc::c_int = -1;
        super::getsockopt(l.as_fd(), libc::SOL_SOCKET, libc::SO_INCOMING_CPU, &mut v).unwrap();
        assert_eq!(v, 1);
    }
}

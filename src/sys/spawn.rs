//! fork + exec of a worker with everything prepared before the fork.
//!
//! Why not `std::process::Command`: the systemd socket protocol needs
//! `LISTEN_PID` to be the child's own pid, which only the child knows, and
//! Command builds the final environment before its `pre_exec` hooks run. So
//! we build argv/envp ourselves, reserve a buffer for `LISTEN_PID=<pid>`, and
//! in the child do only async-signal-safe work (no allocation, no locks):
//! signal reset, new process group, parent-death signal, CPU affinity,
//! chdir, dup2 onto 0..=3, fill the pid digits, execve. An exec failure
//! travels back over a CLOEXEC pipe, as std does it.

use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::cvt;

/// Everything a worker needs, prepared before `fork`.
pub struct SpawnPlan<'a> {
    /// Absolute path of the executable.
    pub program: &'a OsStr,
    /// argv, `argv[0]` included.
    pub args: Vec<&'a OsStr>,
    /// Environment as `KEY=VALUE` pairs (no `LISTEN_PID`: it is added here).
    pub env: Vec<(&'a OsStr, &'a OsStr)>,
    /// Working directory.
    pub cwd: &'a OsStr,
    /// Becomes fd 1.
    pub stdout: BorrowedFd<'a>,
    /// Becomes fd 2.
    pub stderr: BorrowedFd<'a>,
    /// Become fds 3, 4, … in order (a listener, a channel to the daemon).
    pub extra: Vec<BorrowedFd<'a>>,
    /// Add `LISTEN_PID=<the child's pid>` (systemd protocol, with a listener as fd 3).
    pub listen_pid: bool,
    /// Pin the child to this CPU.
    pub cpu: Option<usize>,
}

/// A started child: its pid (= its process group id) and a pidfd.
#[derive(Debug)]
pub struct Spawned {
    /// The child's pid, which is also its process group id.
    pub pid: i32,
    /// Readable when the child exits.
    pub pidfd: OwnedFd,
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL byte"),
        )
    })
}

/// Room for "LISTEN_PID=" + up to 10 digits + NUL.
const LISTEN_PID_BUF: usize = 32;
const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

/// Forks and execs according to `plan`. Returns once exec has succeeded, or
/// the exec error (the failed child is reaped before returning).
pub fn spawn(plan: &SpawnPlan<'_>) -> io::Result<Spawned> {
    let program = cstr(plan.program)?;
    let cwd = cstr(plan.cwd)?;
    let args: Vec<CString> = plan
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<io::Result<_>>()?;
    let mut env: Vec<CString> = Vec::with_capacity(plan.env.len() + 1);
    for (k, v) in &plan.env {
        if k.as_bytes() == b"LISTEN_PID" {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        env.push(CString::new(kv).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("env {k:?} contains a NUL byte"),
            )
        })?);
    }
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    // The child writes its pid into this buffer; envp points at it.
    let mut listen_pid = [0u8; LISTEN_PID_BUF];
    if plan.listen_pid {
        envp.push(listen_pid.as_ptr().cast());
    }
    envp.push(std::ptr::null());

    let devnull = std::fs::File::open("/dev/null")?;
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut cpuset: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if let Some(cpu) = plan.cpu {
        // SAFETY: CPU_SET writes one bit inside `cpuset`; we bound `cpu`.
        unsafe { libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut cpuset) };
    }
    // SAFETY: an all-zero sigset_t is valid storage for sigemptyset.
    let mut empty_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `empty_mask` is valid, writable storage.
    unsafe { libc::sigemptyset(&mut empty_mask) };

    let mut pipe_fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the 2-element array.
    cvt(unsafe { libc::pipe2(pipe_fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are fresh and owned by us.
    let (err_rd, err_wr) = unsafe {
        (
            OwnedFd::from_raw_fd(pipe_fds[0]),
            OwnedFd::from_raw_fd(pipe_fds[1]),
        )
    };

    let parent_pid = std::process::id() as libc::pid_t;
    // The child moves extra[i] onto 3 + i in order; a source numbered below
    // 3 + extra.len() could be overwritten before it is moved, so those get
    // a higher number first.
    let high = 3 + plan.extra.len() as libc::c_int;
    let mut lifted: Vec<OwnedFd> = Vec::new();
    let mut extra = [0 as libc::c_int; MAX_EXTRA];
    if plan.extra.len() > MAX_EXTRA {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for the child",
        ));
    }
    for (slot, fd) in extra.iter_mut().zip(&plan.extra) {
        *slot = if fd.as_raw_fd() < high {
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor we borrow; the result is
            // a new descriptor that we own.
            let dup = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, high) })?;
            // SAFETY: `dup` was just returned by fcntl and is owned by nobody else.
            lifted.push(unsafe { OwnedFd::from_raw_fd(dup) });
            dup
        } else {
            fd.as_raw_fd()
        };
    }
    // The exec-error pipe too: the child's dup2 onto 3 + i must not close
    // it, or the parent would take that EOF for a successful exec.
    let err_wr = if err_wr.as_raw_fd() < high {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; the result is a
        // new descriptor that we own.
        let dup = cvt(unsafe { libc::fcntl(err_wr.as_raw_fd(), libc::F_DUPFD_CLOEXEC, high) })?;
        // SAFETY: `dup` was just returned by fcntl and is owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(dup) }
    } else {
        err_wr
    };
    let fds = ChildFds {
        stdin: devnull.as_raw_fd(),
        stdout: plan.stdout.as_raw_fd(),
        stderr: plan.stderr.as_raw_fd(),
        extra,
        n_extra: plan.extra.len(),
    };

    // SAFETY: fork is sound here because the child runs only
    // async-signal-safe calls on memory prepared above, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see `child_after_fork`.
        unsafe {
            child_after_fork(
                &fds,
                parent_pid,
                plan.cpu.map(|_| &cpuset),
                &empty_mask,
                cwd.as_ptr(),
                program.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                plan.listen_pid.then_some(&mut listen_pid),
                err_wr.as_raw_fd(),
            )
        }
    }
    super::reap::own(pid);
    drop(err_wr);
    let mut errno_buf = [0u8; 4];
    let mut rd = std::fs::File::from(err_rd);
    let n = loop {
        match rd.read(&mut errno_buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if n == 0 {
        let pidfd = super::process::pidfd_open(pid)?;
        return Ok(Spawned { pid, pidfd });
    }
    let _ = super::process::reap_blocking(pid);
    Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno_buf)))
}

/// Descriptors beyond 0..=2 a child can get.
const MAX_EXTRA: usize = 4;

struct ChildFds {
    stdin: libc::c_int,
    stdout: libc::c_int,
    stderr: libc::c_int,
    extra: [libc::c_int; MAX_EXTRA],
    n_extra: usize,
}

/// Moves `src` to `dst` and makes sure `dst` survives exec.
///
/// # Safety
/// Only async-signal-safe calls; safe to run in a forked child.
unsafe fn move_fd(src: libc::c_int, dst: libc::c_int) -> bool {
    if src == dst {
        // SAFETY: fcntl on an fd we hold; clearing CLOEXEC keeps it over exec.
        unsafe { libc::fcntl(dst, libc::F_SETFD, 0) >= 0 }
    } else {
        // SAFETY: dup2 onto a descriptor number; the new fd has no CLOEXEC.
        unsafe { libc::dup2(src, dst) >= 0 }
    }
}

/// Writes the decimal `n` after the `LISTEN_PID=` prefix, NUL-terminated.
fn write_listen_pid(buf: &mut [u8; LISTEN_PID_BUF], n: libc::pid_t) {
    buf[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
    let mut digits = [0u8; 12];
    let mut len = 0;
    let mut v = n.max(0) as u32;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut at = LISTEN_PID_PREFIX.len();
    for i in (0..len).rev() {
        buf[at] = digits[i];
        at += 1;
    }
    buf[at] = 0;
}

/// The child side of `spawn`. Never returns.
///
/// # Safety
/// Must be called only in a freshly forked child. All pointers must point to
/// memory prepared before the fork; only async-signal-safe functions run.
#[allow(clippy::too_many_arguments)]
unsafe fn child_after_fork(
    fds: &ChildFds,
    parent_pid: libc::pid_t,
    cpuset: Option<&libc::cpu_set_t>,
    empty_mask: &libc::sigset_t,
    cwd: *const libc::c_char,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    listen_pid: Option<&mut [u8; LISTEN_PID_BUF]>,
    err_fd: libc::c_int,
) -> ! {
    let fail = |err_fd: libc::c_int| -> ! {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL);
        let bytes = errno.to_ne_bytes();
        // SAFETY: write and _exit are async-signal-safe; `bytes` is on our stack.
        unsafe {
            libc::write(err_fd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    };
    // SAFETY: each call below is async-signal-safe and only touches memory
    // prepared before the fork (see the function's contract).
    unsafe {
        // Rust ignores SIGPIPE and the runtime may block signals: undo both so
        // the app starts with a clean slate, as it would from a shell.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, empty_mask, std::ptr::null_mut());
        // Own process group: stop/kill reach everything the app forks.
        if libc::setpgid(0, 0) != 0 {
            fail(err_fd);
        }
        // If the daemon dies abruptly, do not leave orphan workers behind.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent_pid {
            libc::_exit(1);
        }
        if let Some(set) = cpuset {
            // Best effort: a CPU that left our mask must not stop the start.
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
        }
        if libc::chdir(cwd) != 0 {
            fail(err_fd);
        }
        if !move_fd(fds.stdin, 0) || !move_fd(fds.stdout, 1) || !move_fd(fds.stderr, 2) {
            fail(err_fd);
        }
        for (i, &fd) in fds.extra[..fds.n_extra].iter().enumerate() {
            if !move_fd(fd, 3 + i as libc::c_int) {
                fail(err_fd);
            }
        }
        if let Some(buf) = listen_pid {
            write_listen_pid(buf, libc::getpid());
        }
        libc::execve(program, argv, envp);
        fail(err_fd)
    }
}

/// Finds `prog` in `path_var` (a `PATH` value) unless it already has a `/`.
pub fn which(prog: &str, path_var: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = cwd.join(prog);
        return is_executable(&p).then_some(p);
    }
    let path_var = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    std::env::split_paths(path_var)
        .map(|d| d.join(prog))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_pid_digits() {
        let mut buf = [0xffu8; LISTEN_PID_BUF];
        write_listen_pid(&mut buf, 4194304);
        let s = std::ffi::CStr::from_bytes_until_nul(&buf).unwrap();
        assert_eq!(s.to_str().unwrap(), "LISTEN_PID=4194304");
        write_listen_pid(&mut buf, 7);
        let s = std::ffi::CStr::from_bytes_until_nul(&buf).unwrap();
        assert_eq!(s.to_str().unwrap(), "LISTEN_PID=7");
    }
}

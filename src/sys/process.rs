//! Signals, pidfds and reaping for the processes the daemon started.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// How a child ended, as `waitpid` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {}", signal_name(*s)),
        }
    }
}

/// Signal names herd knows, with their numbers on this platform.
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSYS", libc::SIGSYS),
];

/// `SIGUSR2`, `USR2`, `sigusr2` or `12` → 12; `None` for anything else
/// (0 and numbers past the real-time range included).
pub fn signal_number(s: &str) -> Option<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return (1..=libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    let up = t.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    SIGNALS.iter().find(|(n, _)| *n == full).map(|&(_, v)| v)
}

/// `SIGKILL` → "SIGKILL"; unknown numbers stay numbers.
pub fn signal_name(sig: i32) -> String {
    SIGNALS
        .iter()
        .find(|&&(_, v)| v == sig)
        .map_or_else(|| sig.to_string(), |(n, _)| n.to_string())
}

/// Opens a pidfd for `pid`: readable once the process has exited, so the
/// daemon learns of a death at once, without polling or a SIGCHLD handler.
/// Race-free for our own unreaped children (their pid cannot be reused).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reaps `pid` if it has exited (`WNOHANG`). `Ok(None)`: still running.
pub fn try_reap(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` outlives the call; WNOHANG makes it non-blocking.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 {
        return Ok(None);
    }
    super::reap::disown(pid);
    Ok(Some(decode_status(status)))
}

/// Blocks until `pid` exits and reaps it (used right after a failed exec).
pub fn reap_blocking(pid: i32) -> io::Result<ExitStatus> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` outlives the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 {
            super::reap::disown(pid);
            return Ok(decode_status(status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn decode_status(status: libc::c_int) -> ExitStatus {
    if libc::WIFSIGNALED(status) {
        ExitStatus::Signal(libc::WTERMSIG(status))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    }
}

/// Sends `sig` to the whole process group `pgid` (every worker leads its
/// own group, so this reaches what the app forked too). ESRCH is not an error:
/// the group is already gone.
pub fn kill_group(pgid: i32, sig: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal pgid <= 1",
        ));
    }
    // SAFETY: kill has no memory preconditions; a negative pid targets a group.
    let rc = unsafe { libc::kill(-pgid, sig) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Sends `sig` to one process. ESRCH is not an error.
pub fn kill_pid(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal pid <= 1",
        ));
    }
    // SAFETY: kill has no memory preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True if a process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the last ')' (the command may contain one).
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// How long (ns) the main thread of `pid` has waited on a run queue, ready
/// but not running, since it started (`/proc/PID/schedstat`, second field).
pub fn runqueue_wait_ns(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// Turns the calling process into the leader of a new session, detached
/// from the terminal. Used by `herd daemon` when started in the background.
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid has no memory preconditions.
    let rc = unsafe { libc::setsid() };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether the process behind `pidfd` has exited (its pidfd is readable
/// now).
pub fn pidfd_has_exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// Waits until the process behind `pidfd` has exited (the pidfd becomes
/// readable). Consumes the pidfd.
pub async fn pidfd_exited(pidfd: OwnedFd) -> io::Result<()> {
    let afd = super::fd::async_fd(pidfd, tokio::io::Interest::READABLE)?;
    let _guard = afd.readable().await?;
    Ok(())
}

static TERM_FLAG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn raise_term_flag(_: libc::c_int) {
    TERM_FLAG.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM only raise a flag, and returns it: for a
/// worker loop that checks it between waits (an interrupted wait returns
/// early, so the loop sees it at once).
pub fn term_flag() -> &'static std::sync::atomic::AtomicBool {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; `signal` takes no memory of ours.
    unsafe {
        libc::signal(
            libc::SIGINT,
            raise_term_flag as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            raise_term_flag as *const () as libc::sighandler_t,
        );
    }
    &TERM_FLAG
}

//! PID 1 duties of `herd run`: herd becomes the child subreaper, so the
//! orphans of its apps' children (a daemonizing grandchild) are reparented
//! to herd instead of escaping it, and [`reap_orphans`] reaps those that
//! exit. herd's own children are reaped where they are watched (their
//! pidfd, then `waitpid(pid)`): [`own`] records them at spawn so the orphan
//! scan never takes an exit status the supervisor is waiting for.

use std::collections::HashSet;
use std::io;
use std::sync::Mutex;

static OWN: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn with_own<T>(f: impl FnOnce(&mut HashSet<i32>) -> T) -> T {
    let mut g = OWN.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(HashSet::new))
}

/// `pid` is a child herd spawned and will reap itself.
pub fn own(pid: i32) {
    with_own(|s| s.insert(pid));
}

/// `pid` was reaped by its owner.
pub fn disown(pid: i32) {
    with_own(|s| s.remove(&pid));
}

/// Makes this process the child subreaper (`PR_SET_CHILD_SUBREAPER`):
/// descendants orphaned below it are reparented to it, not to init.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The state and parent pid in a `/proc/<pid>/stat` line (the command
/// name, in parentheses, may itself hold spaces and parentheses).
fn state_and_ppid(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Reaps every exited child of this process that herd did not spawn (an
/// orphan reparented to it); returns how many. Only zombies are waited
/// for, each by pid and without blocking.
pub fn reap_orphans() -> usize {
    reap_where(|_| true)
}

/// [`reap_orphans`] among the pids `pick` accepts.
fn reap_where(pick: impl Fn(i32) -> bool) -> usize {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut reaped = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        match state_and_ppid(&stat) {
            Some(('Z', ppid)) if ppid == me && pick(pid) && !with_own(|s| s.contains(&pid)) => {
                let mut status = 0;
                // SAFETY: `status` outlives the call; WNOHANG never blocks.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    reaped += 1;
                }
            }
            _ => {}
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        assert_eq!(state_and_ppid("42 (a) b (c)) Z 7 42 42 0"), Some(('Z', 7)));
        assert_eq!(state_and_ppid("1 (init) S 0 1"), Some(('S', 0)));
        assert_eq!(state_and_ppid("garbage"), None);
    }

    #[test]
    // The test reaps both children itself, by pid: that is what it tests.
    #[allow(clippy::zombie_processes)]
    fn an_exited_child_not_spawned_by_herd_is_reaped_and_an_owned_one_is_not() {
        let stray = std::process::Command::new("true").spawn().unwrap();
        let mine = std::process::Command::new("true").spawn().unwrap();
        let (stray, mine) = (stray.id() as i32, mine.id() as i32);
        own(mine);
        let zombie = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| state_and_ppid(&s))
                .is_some_and(|(st, _)| st == 'Z')
        };
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(zombie(stray) && zombie(mine)) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(zombie(stray) && zombie(mine), "both children exited");
        // Only these two: other tests of this binary wait for their own.
        assert_eq!(reap_where(|p| p == stray || p == mine), 1);
        assert!(!zombie(stray), "the stray child was reaped");
        assert!(zombie(mine), "herd's own child is left to its owner");
        disown(mine);
        assert!(crate::sys::process::try_reap(mine).ok().flatten().is_some());
    }
}

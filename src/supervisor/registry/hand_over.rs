//! A process leaving without cutting a request (a reload's old process, a
//! scaled-down instance), the stop request every leaving process gets, and
//! the SIGKILL deadline that makes sure it goes.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::accept::pool::Slot;
use crate::config::{AppSpec, ExecMode};
use crate::supervisor::ready;
use crate::sys::process;

/// How long a leaving Node worker answers with `Connection: close` before
/// its servers close (keep-alive clients move on between two requests).
const NODE_DRAIN: Duration = Duration::from_millis(300);

/// Takes a leaving process (a reload's old process, a scaled-down instance)
/// out of service without cutting a request, then makes sure it exits:
/// * fdpass: out of the rotation first; a herd worker gets `S` (it answers
///   what is in flight with `Connection: close` and exits); a Node worker
///   gets the preload's drain, then Node's own `disconnect`;
/// * reuseport/shared Node apps: drain, then the preload closes the servers
///   and reports when their requests are done;
/// * then SIGINT (or `shutdown`), and SIGKILL after `kill_timeout`.
pub(super) async fn hand_over(
    pid: i32,
    pidfd: Option<Arc<OwnedFd>>,
    app: &AppSpec,
    slot: Option<&Arc<Slot>>,
    ipc: Option<&ready::Ipc>,
) {
    use crate::accept::pool::SlotProto;
    use crate::supervisor::ready::preload;
    let kill_timeout = Duration::from_millis(app.kill_timeout_ms);
    let drain = NODE_DRAIN.min(kill_timeout / 2);
    // The launch's pidfd: the process may be reaped while this runs (a
    // reload's old process has left the table), and its pid then reused.
    let pidfd = match pidfd {
        Some(fd) => Some(fd),
        None => process::pidfd_open(pid).ok().map(Arc::new),
    };
    let wait_gone = |limit| wait_gone(pid, pidfd.as_deref(), limit);
    match (slot, ipc) {
        (Some(slot), _) => {
            slot.set_inactive();
            let gone = match slot.proto() {
                SlotProto::Herd => {
                    let _ = slot.send_raw(&crate::fdpass::herd::Msg::Stop.encode());
                    wait_gone(kill_timeout).await
                }
                SlotProto::Node => {
                    let _ = slot.send_raw(preload::DRAIN);
                    if wait_gone(drain).await {
                        return;
                    }
                    let _ = slot.send_raw(&crate::fdpass::node::disconnect());
                    // Node closes its servers as their connections end; an
                    // app its own timers keep alive then stays up serving
                    // nothing (a leaking app over its memory cap, too): it
                    // is asked to stop, as PM2 asks, once nothing it was
                    // given is open.
                    gone_or_idle(pid, pidfd.as_deref(), slot, kill_timeout).await
                }
            };
            if gone {
                return;
            }
        }
        (None, Some(chan)) if app.exec_mode == ExecMode::Cluster => {
            let _ = ready::send_raw(chan, preload::DRAIN);
            if wait_gone(drain).await {
                return;
            }
            if ready::send_raw(chan, preload::CLOSE).is_ok() {
                let _ = tokio::time::timeout(kill_timeout, chan.closed.notified()).await;
            }
        }
        _ => {}
    }
    if pidfd.as_deref().is_some_and(process::pidfd_has_exited) {
        return;
    }
    ask_to_stop(pid, app, ipc, slot.map(|s| &**s));
    wait_gone_or_kill(pid, pidfd, kill_timeout).await;
}

/// Asks process group `pid` to stop: the IPC message `shutdown` when the app
/// wants it (`shutdown_with_message`) and has a channel, else SIGINT.
pub(super) fn ask_to_stop(pid: i32, app: &AppSpec, ipc: Option<&ready::Ipc>, slot: Option<&Slot>) {
    if app.shutdown_with_message {
        let msg = serde_json::Value::from("shutdown");
        let sent = match (ipc, slot) {
            (Some(chan), _) => ready::send(chan, &msg).is_ok(),
            (None, Some(slot)) if slot.proto() == crate::accept::pool::SlotProto::Node => {
                slot.send_raw(&crate::fdpass::node::message(&msg)).is_ok()
            }
            _ => false,
        };
        if sent {
            return;
        }
    }
    let _ = process::kill_group(pid, libc::SIGINT);
}

/// Waits until the process has exited (a zombie counts), at most `limit`:
/// on its pidfd, which becomes readable at the exit, so nothing polls
/// `/proc`. `true`: gone.
async fn wait_gone(pid: i32, pidfd: Option<&OwnedFd>, limit: Duration) -> bool {
    match pidfd {
        Some(pidfd) => exited_within(pidfd, limit).await,
        // No pidfd (gone before one could be opened): judge by /proc.
        None => !process::alive(pid),
    }
}

/// How often [`gone_or_idle`] looks at the process and its connections.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// Waits, at most `limit`, until the process has exited (`true`) or has
/// nothing in flight that herd gave it (`false`).
async fn gone_or_idle(pid: i32, pidfd: Option<&OwnedFd>, slot: &Slot, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let gone = match pidfd {
            Some(fd) => exited_within(fd, IDLE_POLL).await,
            None => {
                tokio::time::sleep(IDLE_POLL).await;
                !process::alive(pid)
            }
        };
        if gone {
            return true;
        }
        if slot.load() == 0 || tokio::time::Instant::now() >= deadline {
            return false;
        }
    }
}

async fn exited_within(pidfd: &OwnedFd, limit: Duration) -> bool {
    match pidfd.try_clone() {
        Ok(dup) => tokio::time::timeout(limit, process::pidfd_exited(dup))
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// [`wait_gone`], then SIGKILL to the process group if it still runs. The
/// pidfd (the launch's, else one opened now) is held throughout, and the
/// kill goes only while it says the process has not exited: a live process
/// keeps its pid, so the signal cannot reach another process that was
/// given the same pid.
pub(super) async fn wait_gone_or_kill(pid: i32, pidfd: Option<Arc<OwnedFd>>, limit: Duration) {
    let pidfd = match pidfd {
        Some(fd) => fd,
        None => match process::pidfd_open(pid) {
            Ok(fd) => Arc::new(fd),
            Err(_) => return, // gone already
        },
    };
    if !exited_within(&pidfd, limit).await && !process::pidfd_has_exited(&pidfd) {
        let _ = process::kill_group(pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// The SIGKILL goes by the launch's pidfd, not by a pid looked up
    /// later: handed the pidfd of a process that is gone (reaped) and the
    /// pid of another, live process group (a reused pid), it kills nothing.
    #[test]
    fn a_gone_process_s_pidfd_spares_the_process_that_got_its_pid() {
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let pidfd = process::pidfd_open(gone.id() as i32).unwrap();
        gone.wait().unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(wait_gone_or_kill(
            other.id() as i32,
            Some(Arc::new(pidfd)),
            Duration::from_millis(50),
        ));
        std::thread::sleep(Duration::from_millis(200)); // a SIGKILL would land
        let alive = other.try_wait().unwrap().is_none();
        let _ = other.kill();
        let _ = other.wait();
        assert!(alive, "the live process group was killed");
    }
}

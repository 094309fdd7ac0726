//! Noticing an exit (pidfd, no polling), reaping it, applying the state
//! machine's decision, and the scheduled restart that may follow.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Supervisor;
use crate::supervisor::{AfterExit, RestartReason, Status};
use crate::sys::process::{self, ExitStatus};
use crate::sys::spawn::Spawned;

impl Supervisor {
    /// Waits for the process to exit (pidfd readable), reaps it, and applies
    /// the state machine's decision.
    pub(super) async fn watch_exit(self: Rc<Self>, id: u32, spawned: Spawned) {
        let Spawned { pid, pidfd } = spawned;
        let _ = process::pidfd_exited(pidfd).await;
        // pidfd readable means exited; the loop only guards the fallback path
        // where the pidfd could not be registered.
        let status = loop {
            match process::try_reap(pid) {
                Ok(Some(s)) => break s,
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => break ExitStatus::Code(-1),
            }
        };
        self.on_exit(id, pid, status);
    }

    fn on_exit(self: &Rc<Self>, id: u32, pid: i32, status: ExitStatus) {
        // Whatever the app left in its process group goes with it.
        let _ = process::kill_group(pid, libc::SIGKILL);
        let mut table = self.table.borrow_mut();
        let Some(inst) = table.current_mut(id, pid) else {
            return;
        };
        // Connections it never read go to the other workers.
        let slot = inst.running.as_mut().and_then(|r| r.slot.take());
        if let (Some(slot), Some(plane)) = (slot, &inst.plane) {
            crate::accept::channel::retire(&slot, plane);
        }
        let after = inst.on_exit(status, Instant::now());
        log::info!(
            "{} [{id}] pid {pid} exited ({status}), now {}",
            inst.app.name,
            inst.status.pm2_name()
        );
        let generation = inst.generation;
        drop(table);
        self.bump();
        if let AfterExit::RestartIn(delay) = after {
            let this = self.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(delay).await;
                this.restart_due(id, generation);
            });
        }
    }

    fn restart_due(self: &Rc<Self>, id: u32, generation: u64) {
        {
            let mut table = self.table.borrow_mut();
            let Some(inst) = table.instances.get_mut(&id) else {
                return;
            };
            if inst.status != Status::WaitingRestart || inst.generation != generation {
                return; // stopped or deleted meanwhile
            }
            inst.count_restart(RestartReason::Crash);
            inst.status = Status::Launching;
        }
        let _ = self.launch_instance(id);
    }
}

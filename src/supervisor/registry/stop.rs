//! `herd stop` (SIGINT, or `shutdown`, then SIGKILL after `kill_timeout`)
//! and `herd delete`, which stops and forgets.

use std::rc::Rc;
use std::time::Duration;

use super::hand_over::ask_to_stop;
use super::{hooks, Supervisor};
use crate::protocol::InstanceInfo;
use crate::supervisor::{Status, StopAction};
use crate::sys::process;

impl Supervisor {
    /// Stops `ids`: SIGINT to each process group, SIGKILL after the app's
    /// kill_timeout; returns once none of them is still stopping.
    pub async fn stop(self: &Rc<Self>, ids: &[u32]) {
        let mut waiting = Vec::new();
        {
            let mut table = self.table.borrow_mut();
            for id in ids {
                let Some(inst) = table.instances.get_mut(id) else {
                    continue;
                };
                match inst.begin_stop() {
                    StopAction::Signal(pid) => {
                        ask_to_stop(pid, &inst.app, inst.ipc(), inst.slot().map(|s| &**s));
                        let timeout = Duration::from_millis(inst.app.kill_timeout_ms);
                        let generation = inst.generation;
                        let this = self.clone();
                        let id = *id;
                        tokio::task::spawn_local(async move {
                            tokio::time::sleep(timeout).await;
                            this.kill_if_still_stopping(id, pid, generation);
                        });
                        waiting.push(id);
                    }
                    StopAction::InProgress => waiting.push(*id),
                    StopAction::AlreadyStopped => {}
                }
            }
        }
        self.bump();
        self.wait_until(|t| {
            waiting.iter().all(|id| {
                t.instances
                    .get(id)
                    .is_none_or(|i| i.status != Status::Stopping)
            })
        })
        .await;
    }

    fn kill_if_still_stopping(&self, id: u32, pid: i32, generation: u64) {
        let table = self.table.borrow();
        if let Some(inst) = table.instances.get(&id) {
            if inst.status == Status::Stopping
                && inst.generation == generation
                && inst.pid() == Some(pid)
            {
                log::info!(
                    "{} [{id}] pid {pid} ignored SIGINT for {} ms, sending SIGKILL",
                    inst.app.name,
                    inst.app.kill_timeout_ms
                );
                let _ = process::kill_group(pid, libc::SIGKILL);
            }
        }
    }

    /// `herd sendSignal`: `sig` to the running process of each of `ids`
    /// (the process, not its group, as PM2's `process.kill(pid, sig)`);
    /// one line per process signalled.
    pub fn send_signal(&self, ids: &[u32], sig: i32) -> Vec<String> {
        let table = self.table.borrow();
        let mut sent = Vec::new();
        for id in ids {
            let Some(inst) = table.instances.get(id) else {
                continue;
            };
            let Some(pid) = inst.pid().filter(|_| inst.status.is_running()) else {
                continue;
            };
            match process::kill_pid(pid, sig) {
                Ok(()) => sent.push(format!(
                    "sent {} to {} [{id}] pid {pid}",
                    process::signal_name(sig),
                    inst.app.name
                )),
                Err(e) => log::info!(
                    "{} [{id}] pid {pid}: cannot send signal {sig}: {e}",
                    inst.app.name
                ),
            }
        }
        sent
    }

    /// The daemon is exiting: every fdpass app's acceptors stop first, so
    /// connections not yet accepted stay queued on the listener (a kept
    /// listener outlives herd: the next herd serves them) instead of being
    /// accepted and then cut when the workers stop.
    pub fn stop_accepting(&self) {
        let planes: Vec<_> = {
            let table = self.table.borrow();
            table
                .instances
                .values()
                .filter_map(|i| i.plane.clone())
                .collect()
        };
        for p in planes {
            p.shutdown();
        }
    }

    /// Stops `ids` and removes them (their listeners close, except kept
    /// ones, which are listed in the log; an app left without instances
    /// loses its watcher and cron task).
    pub async fn delete(self: &Rc<Self>, ids: &[u32]) -> Vec<InstanceInfo> {
        self.stop(ids).await;
        let infos = self.info(ids);
        let mut table = self.table.borrow_mut();
        for id in ids {
            table.instances.remove(id);
        }
        drop(table);
        // Kept listeners (systemd's) stay open for the next app on their
        // port: say so, with what each is waiting for.
        if let Some(k) = crate::accept::activation::kept() {
            for line in k.describe() {
                log::info!("socket activation: kept listener {line}");
            }
        }
        self.auto.borrow_mut().release(ids);
        self.sync_auto(&hooks::app_names(&infos));
        self.bump();
        infos
    }
}

//! `herd restart` (stop, then start again) and `herd reset` of the restart
//! counters.

use std::rc::Rc;

use super::Supervisor;
use crate::supervisor::Status;

impl Supervisor {
    /// Stops then starts `ids` again (not zero-downtime; that is `reload`).
    /// An instance the user stops meanwhile stays stopped, and one that a
    /// concurrent restart (watch and cron at once, two `herd restart`s)
    /// already started again is left to it rather than launched twice.
    pub async fn restart(self: &Rc<Self>, ids: &[u32]) -> Vec<String> {
        // Starting a stopped or errored instance again is not a restart
        // (PM2 counts none).
        let was_running: Vec<u32> = {
            let table = self.table.borrow();
            ids.iter()
                .copied()
                .filter(|id| {
                    table.instances.get(id).is_some_and(|i| {
                        i.status.is_running() || i.status == Status::WaitingRestart
                    })
                })
                .collect()
        };
        self.stop(ids).await;
        let mut notes = Vec::new();
        for &id in ids {
            if self.auto.borrow().is_held(id) {
                continue;
            }
            {
                let mut table = self.table.borrow_mut();
                let Some(inst) = table.instances.get_mut(&id) else {
                    continue;
                };
                if inst.status.is_running() {
                    continue;
                }
                if was_running.contains(&id) {
                    inst.restarts += 1;
                }
                inst.unstable_restarts = 0;
                inst.status = Status::Launching;
            }
            if let Err(e) = self.launch_instance(id) {
                notes.push(format!("instance {id} failed to start: {e}"));
            }
        }
        notes
    }

    /// Zeroes the restart counters of `ids` (PM2's `reset`).
    pub fn reset(&self, ids: &[u32]) {
        let mut table = self.table.borrow_mut();
        for id in ids {
            if let Some(i) = table.instances.get_mut(id) {
                i.restarts = 0;
                i.unstable_restarts = 0;
                i.memory_restarts = 0;
                i.last_memory_rss = None;
                i.backoff_ms = 0;
            }
        }
        drop(table);
        self.bump();
    }
}

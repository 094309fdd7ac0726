//! `max_memory_restart`: sampling an instance's tree RSS and restarting it
//! over the cap.

use std::rc::Rc;
use std::time::Duration;

use super::Supervisor;
use crate::config::ExecMode;
use crate::supervisor::{procstat, Status};

impl Supervisor {
    /// Samples the RSS of the instance's process tree every `every` and
    /// restarts it when it exceeds `cap`. Ends with the process.
    pub(super) async fn watch_memory(self: Rc<Self>, id: u32, pid: i32, cap: u64, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            {
                let table = self.table.borrow();
                match table.instances.get(&id) {
                    Some(i) if i.pid() == Some(pid) && i.status == Status::Online => {}
                    _ => return,
                }
            }
            let rss = procstat::tree_rss(pid);
            if rss <= cap {
                continue;
            }
            {
                let mut table = self.table.borrow_mut();
                let Some(inst) = table.instances.get_mut(&id) else {
                    return;
                };
                inst.memory_restarts += 1;
                inst.last_memory_rss = Some(rss);
                inst.next_cause = Some(crate::supervisor::RestartReason::Memory);
                log::info!(
                    "{} [{id}] pid {pid} uses {} MiB (cap {} MiB): restarting (memory restart #{})",
                    inst.app.name,
                    rss >> 20,
                    cap >> 20,
                    inst.memory_restarts
                );
            }
            // Cluster apps: a replacement first, as a reload does, so the
            // instance keeps serving; if that fails, a plain restart.
            let cluster = self
                .table
                .borrow()
                .instances
                .get(&id)
                .is_some_and(|i| i.app.exec_mode == ExecMode::Cluster);
            if cluster {
                self.replace_now(id, pid).await;
            }
            if self.is_current(id, pid) {
                self.restart(&[id]).await;
            }
            return;
        }
    }
}

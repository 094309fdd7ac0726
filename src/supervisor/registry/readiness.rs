//! Readiness as the table sees it: the signals `supervisor/ready.rs`
//! reports (Node preload, `process.send('ready')`, `READY=1`), and the
//! `wait_ready` warning when none comes.

use std::rc::Rc;
use std::time::Duration;

use super::Supervisor;
use crate::supervisor::{procstat, ready, Status};

impl Supervisor {
    /// `wait_ready`: says in the daemon log (and `herd show` says `ready:
    /// false`) when the app has not signalled within `listen_timeout`. The
    /// instance keeps running and joins the rotation whenever it does.
    pub(super) async fn warn_if_not_ready(self: Rc<Self>, id: u32, pid: i32, limit: Duration) {
        tokio::time::sleep(limit).await;
        let table = self.table.borrow();
        let Some(inst) = table.current(id, pid) else {
            return;
        };
        if !inst.is_ready() && inst.status == Status::Online {
            log::info!(
                "{} [{id}] pid {pid} has not said it is ready after {} ms (wait_ready: process.send('ready') or READY=1 on NOTIFY_SOCKET); it gets no connections until it does",
                inst.app.name,
                limit.as_millis()
            );
        }
    }

    /// Whether `pid` is still instance `id`'s process.
    pub fn is_current(&self, id: u32, pid: i32) -> bool {
        self.table.borrow().current(id, pid).is_some()
    }

    /// A readiness signal from process `pid` of instance `id`.
    pub fn on_signal(&self, id: u32, pid: i32, signal: ready::Signal) {
        let mut table = self.table.borrow_mut();
        let Some(inst) = table.current_mut(id, pid) else {
            return;
        };
        let Some(running) = inst.running.as_mut() else {
            return;
        };
        if running.ready || (inst.app.wait_ready && signal != ready::Signal::Ready) {
            return;
        }
        running.ready = true;
        drop(table);
        self.bump();
    }

    /// `READY=1` on the notify socket from `pid`: the instance whose
    /// process is `pid` or one of its ancestors.
    pub fn on_notify_ready(&self, pid: i32) {
        let owner = {
            let table = self.table.borrow();
            let mut p = pid;
            let mut found = None;
            for _ in 0..16 {
                if let Some(i) = table.instances.values().find(|i| i.pid() == Some(p)) {
                    found = Some((i.id, p));
                    break;
                }
                match procstat::parent(p) {
                    Some(pp) if pp > 1 => p = pp,
                    _ => break,
                }
            }
            found
        };
        if let Some((id, p)) = owner {
            self.on_signal(id, p, ready::Signal::Ready);
        }
    }
}

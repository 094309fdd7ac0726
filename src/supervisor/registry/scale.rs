//! `herd scale`: instances added like the existing ones, or the highest
//! indexes retired (out of rotation, finish, stop) and deleted.

use std::rc::Rc;

use super::hand_over::hand_over;
use super::{refuse, Supervisor};
use crate::accept::{activation, Mode};
use crate::config::ExecMode;
use crate::error::Error;
use crate::supervisor::Status;

impl Supervisor {
    /// Lets instances leaving for good (scale down) finish what they have,
    /// as a reload does with its old process ([`hand_over`]).
    async fn retire(&self, ids: &[u32]) {
        let mut leaving = Vec::new();
        {
            let mut table = self.table.borrow_mut();
            for id in ids {
                let Some(i) = table.instances.get_mut(id) else {
                    continue;
                };
                let Some(pid) = i.pid().filter(|_| i.status == Status::Online) else {
                    continue;
                };
                // Stopping: its exit is not a crash to restart.
                i.status = Status::Stopping;
                i.generation += 1;
                leaving.push((
                    pid,
                    i.running.as_ref().and_then(|r| r.pidfd.clone()),
                    i.app.clone(),
                    i.slot().cloned(),
                    i.ipc().cloned(),
                ));
            }
        }
        self.bump();
        let tasks: Vec<_> = leaving
            .into_iter()
            .map(|(pid, pidfd, app, slot, ipc)| {
                tokio::task::spawn_local(async move {
                    hand_over(pid, pidfd, &app, slot.as_ref(), ipc.as_ref()).await
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Sets the number of instances of app `name` to `target` (at least 1).
    /// New instances start like the existing ones (same spec, same port or
    /// data plane). Removal takes the highest indexes out of rotation
    /// first, then stops and deletes them. Returns the ids added or removed.
    pub async fn scale(
        self: &Rc<Self>,
        name: &str,
        target: u32,
    ) -> Result<(Vec<u32>, Vec<u32>), Error> {
        if target == 0 {
            return Err(refuse(
                "cannot scale to 0 instances",
                format!("`herd stop {name}` stops the app"),
            ));
        }
        let current: Vec<(u32, u32)> = {
            let table = self.table.borrow();
            let mut v: Vec<(u32, u32)> = table
                .instances
                .values()
                .filter(|i| i.app.name == name)
                .map(|i| (i.index, i.id))
                .collect();
            v.sort();
            v
        };
        let Some(&(_, first_id)) = current.first() else {
            return Err(refuse(
                format!("no app named `{name}`"),
                "see `herd list` for names",
            ));
        };
        let n = current.len() as u32;
        if target < n {
            let gone: Vec<u32> = current[target as usize..]
                .iter()
                .map(|&(_, id)| id)
                .collect();
            // Not in the middle of a reload: it would replace what leaves.
            let _no_reload = self.reload_lock.lock().await;
            self.retire(&gone).await;
            self.delete(&gone).await;
            self.set_app_instances(name, target);
            return Ok((Vec::new(), gone));
        }
        let (app, plane, shared, port) = {
            let table = self.table.borrow();
            let f = &table.instances[&first_id];
            let shared = (f.app.mode == Mode::Shared)
                .then(|| f.listener.clone())
                .flatten();
            (f.app.clone(), f.plane.clone(), shared, f.port)
        };
        let mut added = Vec::new();
        for index in n..target {
            let listener = match (&app.exec_mode, app.mode, port) {
                (ExecMode::Cluster, Mode::Reuseport, Some(port)) => Some(
                    activation::join(&app.host, port, None)
                        .map_err(|e| refuse(e.to_string(), "free the port"))?,
                ),
                (ExecMode::Cluster, Mode::Shared, _) => shared.clone(),
                _ => None,
            };
            let id = {
                let mut table = self.table.borrow_mut();
                let id = table.next_id;
                table.next_id += 1;
                let mut inst = self.new_instance(id, &app, index, target, listener);
                inst.plane = plane.clone();
                table.instances.insert(id, inst);
                id
            };
            if let Err(e) = self.launch_instance(id) {
                log::info!("{name} [{id}] failed to start while scaling: {e}");
            }
            added.push(id);
        }
        self.set_app_instances(name, target);
        self.sync_auto(&[name.to_string()]);
        Ok((added, Vec::new()))
    }

    fn set_app_instances(&self, name: &str, n: u32) {
        let mut table = self.table.borrow_mut();
        for i in table.instances.values_mut().filter(|i| i.app.name == name) {
            i.app_instances = n;
        }
    }
}

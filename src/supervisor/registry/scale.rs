//! `herd scale`: instances added like the existing ones (at the lowest free
//! indexes), or instances retired (out of rotation, finish, stop) and
//! deleted: PM2's lowest ids first, or the highest indexes (`keep_indexes`).

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
    /// data plane). Removal ([`leaving`]) takes instances out of rotation
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
        // (index, id) of the app's instances, and its spec's choice.
        let (current, keep_indexes): (Vec<(u32, u32)>, bool) = {
            let table = self.table.borrow();
            let mut v: Vec<(u32, u32)> = table
                .instances
                .values()
                .filter(|i| i.app.name == name)
                .map(|i| (i.index, i.id))
                .collect();
            v.sort();
            let keep = table
                .instances
                .values()
                .any(|i| i.app.name == name && i.app.keep_indexes);
            (v, keep)
        };
        let Some(&(_, first_id)) = current.first() else {
            return Err(refuse(
                format!("no app named `{name}`"),
                "see `herd list` for names",
            ));
        };
        let n = current.len() as u32;
        if target < n {
            let gone = leaving(&current, (n - target) as usize, keep_indexes);
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
        for index in free_indexes(&current, (target - n) as usize) {
            let listener = match (&app.exec_mode, app.mode, port) {
                _ if crate::config::binds_own_reuseport(&app) => None,
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

/// The ids scale-down removes, `count` of `current` ((index, id) pairs):
/// PM2's rule, the lowest ids first; with `keep_indexes`, the highest
/// indexes, so the rest keep 0..n-1.
fn leaving(current: &[(u32, u32)], count: usize, keep_indexes: bool) -> Vec<u32> {
    let mut v: Vec<(u32, u32)> = current.to_vec();
    if keep_indexes {
        v.sort_by(|a, b| b.cmp(a));
    } else {
        v.sort_by_key(|&(_, id)| id);
    }
    v.into_iter().take(count).map(|(_, id)| id).collect()
}

/// The `count` lowest instance indexes that no instance of `current` has
/// (PM2 gives an added instance the lowest free `NODE_APP_INSTANCE`).
fn free_indexes(current: &[(u32, u32)], count: usize) -> Vec<u32> {
    let used: std::collections::BTreeSet<u32> = current.iter().map(|&(i, _)| i).collect();
    (0..).filter(|i| !used.contains(i)).take(count).collect()
}

#[cfg(test)]
mod tests {
    use super::{free_indexes, leaving};

    #[test]
    fn scale_down_takes_pm2s_lowest_ids_or_the_highest_indexes() {
        // Scaled 4 → 3 → 4 the PM2 way: index 0 came back as id 4.
        let cur = [(0, 4), (1, 1), (2, 2), (3, 3)];
        assert_eq!(leaving(&cur, 2, false), vec![1, 2]);
        assert_eq!(leaving(&cur, 2, true), vec![3, 2]);
        assert_eq!(leaving(&cur, 0, false), Vec::<u32>::new());
    }

    #[test]
    fn added_instances_take_the_lowest_free_indexes() {
        assert_eq!(free_indexes(&[(2, 2), (3, 3)], 3), vec![0, 1, 4]);
        assert_eq!(free_indexes(&[(0, 0), (1, 1)], 2), vec![2, 3]);
        assert_eq!(free_indexes(&[], 1), vec![0]);
    }
}

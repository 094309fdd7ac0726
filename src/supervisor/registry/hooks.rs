//! The registry's side of watch and cron restarts (`crate::supervisor::auto`):
//! which instances the user holds stopped, arming each app's watcher and
//! cron task to match its spec, and the restart they trigger.

use std::rc::Rc;

use super::Supervisor;
use crate::protocol::InstanceInfo;
use crate::supervisor::auto::{Cause, Trigger, Wanted};
use crate::supervisor::Instance;

impl Supervisor {
    /// The user stops `ids`: watch and cron leave them alone (an app with
    /// none left running loses its watcher and cron task) until they are
    /// started, restarted or reloaded.
    pub fn hold(self: &Rc<Self>, ids: &[u32]) {
        self.auto.borrow_mut().hold(ids);
        self.sync_auto(&self.names_of(ids));
    }

    /// `herd stop`: as PM2, the stopped processes stop watching for good
    /// (their spec loses `watch`; `restart --watch` turns it on again).
    /// Instances of the app that keep running keep their watcher.
    pub fn unwatch(self: &Rc<Self>, ids: &[u32]) {
        let watching: Vec<u32> = {
            let table = self.table.borrow();
            ids.iter()
                .copied()
                .filter(|id| {
                    table
                        .instances
                        .get(id)
                        .is_some_and(|i| !i.app.watch.is_empty())
                })
                .collect()
        };
        let cleared = self.respec(&watching, |a| {
            a.watch.clear();
            Ok(())
        });
        debug_assert!(cleared.is_ok(), "clearing watch cannot fail");
    }

    /// The user starts `ids` again (restart, reload): watch and cron apply
    /// to them again.
    pub fn release(self: &Rc<Self>, ids: &[u32]) {
        self.auto.borrow_mut().release(ids);
        self.sync_auto(&self.names_of(ids));
    }

    /// The distinct app names of `ids`.
    fn names_of(&self, ids: &[u32]) -> Vec<String> {
        let table = self.table.borrow();
        let mut names: Vec<String> = ids
            .iter()
            .filter_map(|id| table.instances.get(id).map(|i| i.app.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Arms, rearms or drops the watcher and cron task of each app in
    /// `names` to match its spec and its instances (see `auto.rs`).
    pub(super) fn sync_auto(self: &Rc<Self>, names: &[String]) {
        for name in names {
            let wanted = {
                let table = self.table.borrow();
                let auto = self.auto.borrow();
                let mine: Vec<&Instance> = table
                    .instances
                    .values()
                    .filter(|i| i.app.name == *name)
                    .collect();
                let logs = mine
                    .iter()
                    .flat_map(|i| {
                        i.log_paths()
                            .map(std::path::Path::to_path_buf)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                mine.iter()
                    .find(|i| !auto.is_held(i.id))
                    .and_then(|i| Wanted::of(&i.app, &self.home, logs))
            };
            let this = Rc::downgrade(self);
            self.auto
                .borrow_mut()
                .arm(name, wanted, || trigger(&this, name));
        }
    }

    /// Restarts the instances of app `name` the user has not stopped.
    async fn auto_restart(self: Rc<Self>, name: String, cause: Cause) {
        let ids: Vec<u32> = {
            let table = self.table.borrow();
            let auto = self.auto.borrow();
            table
                .instances
                .values()
                .filter(|i| i.app.name == name && !auto.is_held(i.id))
                .map(|i| i.id)
                .collect()
        };
        if ids.is_empty() {
            return;
        }
        {
            let why = match cause {
                Cause::Watch => crate::supervisor::RestartReason::Watch,
                Cause::Cron => crate::supervisor::RestartReason::Cron,
            };
            let mut table = self.table.borrow_mut();
            for id in &ids {
                if let Some(i) = table.instances.get_mut(id) {
                    i.next_cause = Some(why);
                }
            }
        }
        for note in self.restart(&ids).await {
            log::info!("{name}: {cause:?} restart: {note}");
        }
    }
}

/// The trigger of app `name`'s watcher or cron task. The restart runs as a
/// task of its own, so that dropping the watcher or cron task (the app is
/// stopped or deleted meanwhile) cannot cut a restart in half.
fn trigger(sup: &std::rc::Weak<Supervisor>, name: &str) -> Trigger {
    let sup = sup.clone();
    let name = name.to_string();
    Rc::new(move |cause| {
        let sup = sup.upgrade();
        let name = name.clone();
        Box::pin(async move {
            if let Some(sup) = sup {
                let _ = tokio::task::spawn_local(sup.auto_restart(name, cause)).await;
            }
        })
    })
}

/// The distinct app names of `infos`.
pub(super) fn app_names(infos: &[InstanceInfo]) -> Vec<String> {
    let mut names: Vec<String> = infos.iter().map(|i| i.name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

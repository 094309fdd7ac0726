//! `herd restart` (stop, then start again) and `herd reset` of the restart
//! counters.

use std::rc::Rc;

use super::Supervisor;

use crate::config::AppSpec;
use crate::error::Error;
use crate::protocol::SpecPatch;
use crate::supervisor::{RestartReason, Status};

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
                    inst.count_restart(RestartReason::Manual);
                }
                inst.next_cause = None;
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
                i.restarts_by.clear();
                i.unstable_restarts = 0;
                i.memory_restarts = 0;
                i.last_memory_rss = None;
                i.backoff_ms = 0;
            }
        }
        drop(table);
        self.bump();
    }

    /// `herd restart|reload` with settings (`--node-args`, `--env K=V`,
    /// `--max-memory-restart`, `--kill-timeout`, `--watch`): each app of
    /// `ids` gets a new spec first; checked whole before any is changed.
    pub fn patch_spec(self: &Rc<Self>, ids: &[u32], p: &SpecPatch) -> Result<(), Error> {
        if p.is_empty() {
            return Ok(());
        }
        for r in &p.remove {
            if !matches!(r.as_str(), "node_args" | "max_memory_restart") {
                return Err(Error::InvalidArg {
                    what: "setting to remove".into(),
                    value: r.clone(),
                    expected: "`node_args` or `max_memory_restart`".into(),
                });
            }
        }
        let names = self.respec(ids, |a| {
            apply_patch(a, p);
            crate::config::limits::check_spec(a)
        })?;
        // Watchers follow the new `watch`.
        self.sync_auto(&names);
        Ok(())
    }
}

fn apply_patch(a: &mut AppSpec, p: &SpecPatch) {
    if let Some(v) = &p.interpreter_args {
        a.interpreter_args = v.clone();
    }
    if let Some(m) = p.max_memory_restart {
        a.max_memory_restart = Some(m);
    }
    if let Some(k) = p.kill_timeout_ms {
        a.kill_timeout_ms = k;
    }
    let on = match (p.watch, p.toggle_watch) {
        (Some(on), _) => Some(on),
        (None, true) => Some(a.watch.is_empty()),
        (None, false) => None,
    };
    match on {
        Some(true) if a.watch.is_empty() => a.watch = vec![a.cwd.clone()],
        Some(false) => a.watch.clear(),
        _ => {}
    }
    a.env
        .extend(p.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    a.env_types.retain(|k, _| !p.env.contains_key(k));
    for r in &p.remove {
        match r.as_str() {
            "node_args" => a.interpreter_args.clear(),
            "max_memory_restart" => a.max_memory_restart = None,
            _ => {}
        }
    }
}

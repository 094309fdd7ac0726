//! The daemon's table of instances and the async machinery around it:
//! launching, noticing exits (pidfd, no polling), scheduled restarts, stops
//! with a SIGKILL deadline. Runs on the daemon's single control-plane thread
//! (a tokio `LocalSet`), so state is a `RefCell` that is never borrowed
//! across an `.await`.
//!
//! One file per verb or concern, as pueue's `daemon/process_handler/*`:
//! `resolve.rs` (naming targets), `start.rs`, `spawn.rs` (bringing a
//! process up), `exit.rs` (noticing its exit), `readiness.rs`, `memory.rs`
//! (memory caps), `stop.rs` (and delete), `restart.rs` (and reset),
//! `reload.rs`, `scale.rs`, `hand_over.rs` (how a process leaves),
//! `info.rs` (snapshots), `metrics.rs` (live figures), `health.rs` (what `/readyz` judges), `hooks.rs` (watch and cron), `dump.rs` (save,
//! resurrect, autosave).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::watch;

use super::auto::Auto;
use super::Instance;
use crate::config::AppSpec;
use crate::error::Error;
use crate::home::Home;
use crate::logs::file::LogFiles;

mod dump;
mod exit;
mod hand_over;
mod health;
mod hooks;
mod info;
mod memory;
mod metrics;
mod readiness;
mod reload;
mod resolve;
mod restart;
mod scale;
mod spawn;
mod start;
mod stop;

pub use dump::Resurrected;
pub use health::AppHealth;
pub use metrics::TICK as METRICS_TICK;
pub use reload::Reloaded;

/// A refusal the client sees as `error: …` / `hint: …`.
fn refuse(message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Remote {
        message: message.into(),
        hint: Some(hint.into()),
    }
}

/// What a start did: instances launched, running instances that now carry a
/// new spec and must be restarted by the caller (`--update-env`), notes.
#[derive(Debug, Default)]
pub struct Started {
    /// Instances launched.
    pub ids: Vec<u32>,
    /// Running instances to restart with their new spec.
    pub restart: Vec<u32>,
    /// One line per thing worth telling.
    pub notes: Vec<String>,
}

/// Owns every instance of every app.
pub struct Supervisor {
    home: Home,
    /// CPUs we may pin to (the daemon's affinity mask).
    cpus: Vec<usize>,
    /// What `-i max` means here: affinity mask and cgroup quota.
    max_instances: usize,
    table: RefCell<Table>,
    /// Bumped on every state change; waiters re-check their condition.
    changed: watch::Sender<u64>,
    /// Reloads run one at a time: a second `herd reload` waits for the
    /// first instead of interleaving replacements of the same instances.
    reload_lock: tokio::sync::Mutex<()>,
    /// Instances whose process a replacement is under way for (a reload,
    /// a memory restart): a second replacement of one of them is skipped.
    replacing: RefCell<std::collections::BTreeSet<u32>>,
    /// Log files open for the instances' output.
    pub log_files: LogFiles,
    /// Watchers and cron tasks per app, and the instances the user stopped.
    auto: RefCell<Auto>,
    /// Autosave and the dump's guards (`dump.rs`).
    dump: dump::DumpState,
    /// Each app's live figures, by name (`metrics.rs`).
    metrics: RefCell<BTreeMap<String, Arc<crate::metrics::app::AppMetrics>>>,
}

#[derive(Default)]
struct Table {
    instances: BTreeMap<u32, Instance>,
    next_id: u32,
}

impl Table {
    /// Instance `id`, if `pid` is still its current process (a late event
    /// of an earlier process finds nothing).
    fn current(&self, id: u32, pid: i32) -> Option<&Instance> {
        self.instances.get(&id).filter(|i| i.pid() == Some(pid))
    }

    /// [`Table::current`], to change.
    fn current_mut(&mut self, id: u32, pid: i32) -> Option<&mut Instance> {
        self.instances.get_mut(&id).filter(|i| i.pid() == Some(pid))
    }
}

impl Supervisor {
    /// An empty supervisor for the daemon at `home`.
    pub fn new(home: Home) -> Rc<Supervisor> {
        let cpus = crate::sys::allowed_cpus();
        let max_instances = std::thread::available_parallelism()
            .map_or(cpus.len(), |n| n.get())
            .max(1);
        Rc::new(Supervisor {
            home,
            cpus,
            max_instances,
            table: RefCell::new(Table::default()),
            changed: watch::channel(0).0,
            reload_lock: tokio::sync::Mutex::new(()),
            replacing: RefCell::default(),
            log_files: LogFiles::default(),
            auto: RefCell::new(Auto::default()),
            dump: dump::DumpState::default(),
            metrics: RefCell::new(BTreeMap::new()),
        })
    }

    /// The daemon's home.
    pub fn home(&self) -> &Home {
        &self.home
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Every id, ascending.
    pub fn all_ids(&self) -> Vec<u32> {
        self.table.borrow().instances.keys().copied().collect()
    }

    async fn wait_until(&self, mut done: impl FnMut(&Table) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            if done(&self.table.borrow()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// `--update-env`: the instances run with `env` as their inherited
    /// environment from their next start on.
    /// Gives each of `ids` a new spec: `change` applied to a copy of its
    /// own. Instances that shared a spec share the new one. Checked whole
    /// first: if `change` fails for any, nothing changes. Returns the names
    /// of the apps changed (in `ids` order, once each).
    pub(super) fn respec(
        &self,
        ids: &[u32],
        change: impl Fn(&mut AppSpec) -> Result<(), Error>,
    ) -> Result<Vec<String>, Error> {
        let mut new: Vec<(u32, Arc<AppSpec>)> = Vec::new();
        {
            let table = self.table.borrow();
            let mut by_app: Vec<(*const AppSpec, Arc<AppSpec>)> = Vec::new();
            for id in ids {
                let Some(inst) = table.instances.get(id) else {
                    continue;
                };
                let key = Arc::as_ptr(&inst.app);
                let spec = match by_app.iter().find(|(k, _)| *k == key) {
                    Some((_, s)) => s.clone(),
                    None => {
                        let mut a = (*inst.app).clone();
                        change(&mut a)?;
                        let a = Arc::new(a);
                        by_app.push((key, a.clone()));
                        a
                    }
                };
                new.push((*id, spec));
            }
        }
        let mut names = Vec::new();
        let mut table = self.table.borrow_mut();
        for (id, spec) in new {
            if let Some(inst) = table.instances.get_mut(&id) {
                if !names.contains(&spec.name) {
                    names.push(spec.name.clone());
                }
                inst.app = spec;
            }
        }
        Ok(names)
    }

    pub fn update_env(&self, ids: &[u32], env: BTreeMap<String, String>) {
        let mut table = self.table.borrow_mut();
        for id in ids {
            if let Some(inst) = table.instances.get_mut(id) {
                let mut app = (*inst.app).clone();
                app.base_env = env.clone();
                inst.app = Arc::new(app);
            }
        }
    }
}

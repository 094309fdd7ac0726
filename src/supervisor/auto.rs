//! Restarts herd makes on its own: on file changes (`watch.rs`) and at cron
//! times (`cron.rs`). This file keeps, per app name, the watcher and the
//! cron task that are armed, and which instances the user stopped.
//!
//! Rules (PM2's): a watcher and a cron task live while the app has an
//! instance the user has not stopped. `herd stop` of every instance disarms
//! both; `herd start` / `restart` / `reload` arm them again; `herd delete`
//! drops them. A watch or cron restart restarts every instance of the app
//! except those the user stopped, including instances that exited on their
//! own or are `errored`; it counts in `restarts` like `herd restart`.
//!
//! May touch: the protocol's `InstanceInfo` (to describe itself).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use super::{cron, watch};
use crate::config::AppSpec;
use crate::home::Home;
use crate::protocol::InstanceInfo;

/// Why herd restarts an app by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A watched file changed.
    Watch,
    /// The cron pattern matched.
    Cron,
}

/// Restarts one app's instances (those the user has not stopped); the
/// future ends when the restart is done. Built by the registry.
pub type Trigger = Rc<dyn Fn(Cause) -> Pin<Box<dyn Future<Output = ()>>>>;

/// What an app asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// Watching, if on.
    pub watch: Option<watch::Plan>,
    /// The cron pattern, if any.
    pub cron: Option<String>,
}

impl Wanted {
    /// What `app` asks for; a watcher never counts what herd writes in
    /// `home` nor the app's `logs`. `None` when neither watch nor cron is on.
    pub fn of(app: &AppSpec, home: &Home, logs: Vec<PathBuf>) -> Option<Wanted> {
        let watch = (!app.watch.is_empty()).then(|| watch::Plan {
            roots: app.watch.clone(),
            cwd: app.cwd.clone(),
            patterns: app.ignore_watch.clone(),
            always: [
                Some(home.logs()),
                home.node_preload().parent().map(PathBuf::from),
                Some(home.notify_dir()),
            ]
            .into_iter()
            .flatten()
            .collect(),
            flat: vec![home.root().to_path_buf()],
            logs,
            delay: Duration::from_millis(app.watch_delay_ms),
        });
        let cron = app.cron_restart.clone();
        (watch.is_some() || cron.is_some()).then_some(Wanted { watch, cron })
    }
}

/// The automatic restarts of every app.
#[derive(Default)]
pub struct Auto {
    apps: BTreeMap<String, Armed>,
    /// Instances the user stopped: left alone until started again.
    held: BTreeSet<u32>,
}

#[derive(Default)]
struct Armed {
    watch: Option<(watch::Plan, watch::Handle)>,
    cron: Option<(String, cron::Handle)>,
}

impl Auto {
    /// The user stopped `ids`.
    pub fn hold(&mut self, ids: &[u32]) {
        self.held.extend(ids);
    }

    /// The user started `ids` again (or they are gone).
    pub fn release(&mut self, ids: &[u32]) {
        for id in ids {
            self.held.remove(id);
        }
    }

    /// Whether the user stopped `id`.
    pub fn is_held(&self, id: u32) -> bool {
        self.held.contains(&id)
    }

    /// Brings app `name`'s watcher and cron task in line with `wanted`
    /// (`None`: neither). A watcher or task whose settings did not change
    /// is kept as it is (its debounce, its next cron time).
    pub fn arm(&mut self, name: &str, wanted: Option<Wanted>, trigger: impl Fn() -> Trigger) {
        let Some(wanted) = wanted else {
            // Dropping the handles stops the tasks and the notify thread.
            self.apps.remove(name);
            return;
        };
        let armed = self.apps.entry(name.to_string()).or_default();
        if armed.watch.as_ref().map(|(p, _)| p) != wanted.watch.as_ref() {
            armed.watch = None;
            armed.watch = wanted
                .watch
                .map(|plan| (plan.clone(), watch::start(name, &plan, trigger())));
        }
        if armed.cron.as_ref().map(|(p, _)| p) != wanted.cron.as_ref() {
            armed.cron = None;
            armed.cron = wanted
                .cron
                .and_then(|p| match cron::start(name, &p, trigger()) {
                    Ok(h) => Some((p, h)),
                    Err(why) => {
                        // The CLI and start_app check patterns; this is a guard.
                        log::info!("{name}: cron `{p}` not armed: {why}");
                        None
                    }
                });
        }
    }

    /// Fills in the live part of an instance's watch and cron fields.
    pub fn describe(&self, info: &mut InstanceInfo) {
        let Some(armed) = self.apps.get(&info.name) else {
            return;
        };
        if self.is_held(info.id) {
            return;
        }
        if let Some((_, h)) = &armed.watch {
            info.watching = true;
            info.watch_error = h.error.borrow().clone();
        }
        if let Some((_, h)) = &armed.cron {
            info.cron_next_ms = h
                .next
                .get()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64);
        }
    }
}

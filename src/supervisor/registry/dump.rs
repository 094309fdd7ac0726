//! `herd save`, `herd resurrect`, `herd cleardump` and autosave: what of
//! the table goes into the dump (`supervisor::dump` reads and writes it),
//! and bringing a dump's apps back.
//!
//! An app in the dump is one start's instances: the instances of a name,
//! in id order, until an index repeats (a second copy started with `-f`
//! is an app of its own). Stopped means what `herd stop` leaves (or an
//! exit that is not restarted): such instances are created stopped, never
//! launched.
//!
//! Autosave guards, against PM2's dump emptied after a reboot: nothing is
//! written while the daemon shuts down (`herd kill`, SIGTERM stop every app
//! first); a daemon writes over a dump that holds apps only once it has
//! saved or resurrected (a fresh daemon after a reboot does not replace the
//! list it has not restored); and an empty list never replaces one with
//! apps (only `herd save --force` does).

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;

use super::{refuse, Started, Supervisor};
use crate::config::limits::MAX_INSTANCES;
use crate::error::Error;
use crate::protocol::{InstanceInfo, OnExisting, Status};
use crate::supervisor::dump::{self, Dump, SavedApp, Stored};
use crate::supervisor::Instance;

/// The dump's switches in a daemon.
#[derive(Default)]
pub(super) struct DumpState {
    /// Save after every change.
    autosave: Cell<bool>,
    /// This daemon saved or resurrected: the dump describes its list.
    adopted: Cell<bool>,
    /// Shutting down: its stops are not the user's, nothing is saved.
    closing: Cell<bool>,
}

/// What [`Supervisor::resurrect`] did.
#[derive(Debug, Default)]
pub struct Resurrected {
    /// The instances it created (running or stopped, as saved).
    pub instances: Vec<InstanceInfo>,
    /// One line per thing worth telling (a fallback to the backup, apps
    /// already running and left alone).
    pub notes: Vec<String>,
    /// One line per saved app that could not be restored, and why.
    pub failed: Vec<String>,
}

impl Supervisor {
    /// The dump of the current list.
    pub fn snapshot(&self) -> Dump {
        let table = self.table.borrow();
        let auto = self.auto.borrow();
        let mut groups: Vec<Vec<&Instance>> = Vec::new();
        for inst in table.instances.values() {
            let home = groups.iter_mut().find(|g| {
                g[0].app.name == inst.app.name && g.iter().all(|m| m.index != inst.index)
            });
            match home {
                Some(g) => g.push(inst),
                None => groups.push(vec![inst]),
            }
        }
        let apps = groups
            .into_iter()
            .map(|mut g| {
                g.sort_by_key(|i| i.index);
                let stopped = (g.iter().enumerate())
                    .filter(|(_, i)| i.status == Status::Stopped || auto.is_held(i.id))
                    .map(|(k, _)| k as u32)
                    .collect();
                SavedApp {
                    spec: (*g[0].app).clone(),
                    instances: g.len() as u32,
                    stopped,
                }
            })
            .collect();
        Dump::new(apps, self.dump.autosave.get())
    }

    /// Whether autosave is on.
    pub fn autosave(&self) -> bool {
        self.dump.autosave.get()
    }

    /// Turns autosave on or off for this daemon's life (`HERD_AUTOSAVE=1`,
    /// `herd save --autosave`).
    pub fn set_autosave(&self, on: bool) {
        self.dump.autosave.set(on);
    }

    /// The daemon is shutting down: saves stop (its stops are not the
    /// user's). `herd kill` and SIGTERM call it before stopping the apps.
    pub fn begin_shutdown(&self) {
        self.dump.closing.set(true);
    }

    /// Whether [`Supervisor::begin_shutdown`] was called.
    pub fn is_closing(&self) -> bool {
        self.dump.closing.get()
    }

    fn refuse_closing(&self) -> Result<(), Error> {
        if self.dump.closing.get() {
            return Err(refuse(
                "the herd daemon is shutting down: the dump is left as it was",
                "retry once the daemon is back (any herd command starts it)",
            ));
        }
        Ok(())
    }

    /// `herd save [--force] [--autosave|--no-autosave]`: writes the list
    /// to the dump. Returns lines for the user.
    pub fn save(&self, force: bool, autosave: Option<bool>) -> Result<Vec<String>, Error> {
        self.refuse_closing()?;
        let on = autosave.unwrap_or(self.dump.autosave.get());
        let mut d = self.snapshot();
        d.autosave = on;
        let mut notes = Vec::new();
        let stored = dump::store(&self.home, &d, force, &mut notes)?;
        self.dump.autosave.set(on);
        self.dump.adopted.set(true);
        let file = self.home.dump_file();
        notes.push(match stored {
            Stored::Written => format!(
                "saved {} app(s), {} instance(s) to {}",
                d.apps.len(),
                d.instance_count(),
                file.display()
            ),
            Stored::Unchanged => format!(
                "{} already holds these {} app(s): unchanged",
                file.display(),
                d.apps.len()
            ),
        });
        match autosave {
            Some(true) => notes.push(
                "autosave on: the dump follows every change (start, stop, restart, reload, delete, scale) while this daemon runs, and resurrect turns it on again".into(),
            ),
            Some(false) => notes.push("autosave off".into()),
            None => {}
        }
        Ok(notes)
    }

    /// After a change: saves the list if autosave is on (and the guards
    /// allow). Never fails the change; returns lines for the user, also
    /// logged.
    pub fn autosave_now(&self) -> Vec<String> {
        if !self.dump.autosave.get() || self.dump.closing.get() {
            return Vec::new();
        }
        let mut notes = Vec::new();
        if !self.dump.adopted.get() {
            if dump::holds_apps(&self.home) {
                notes.push(format!(
                    "autosave: {} holds apps this daemon has not resurrected; left as it is (`herd resurrect` restores them, `herd save` replaces them)",
                    self.home.dump_file().display()
                ));
            } else {
                self.dump.adopted.set(true);
            }
        }
        if self.dump.adopted.get() {
            let d = self.snapshot();
            if let Err(e) = dump::store(&self.home, &d, false, &mut notes) {
                let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
                notes.push(format!("autosave: {e}{hint}"));
            }
        }
        for n in &notes {
            log::info!("{n}");
        }
        notes
    }

    /// `herd cleardump`: moves the dump aside and turns autosave off (it
    /// would write a new one at the next change).
    pub fn clear_dump(&self) -> Result<Vec<String>, Error> {
        let file = self.home.dump_file();
        let mut notes = vec![if dump::clear(&self.home)? {
            format!(
                "removed {} (the last one stays as {} until the next save)",
                file.display(),
                self.home.dump_bak().display()
            )
        } else {
            format!("no dump at {}: nothing to clear", file.display())
        }];
        if self.dump.autosave.replace(false) {
            notes.push("autosave off (`herd save --autosave` turns it on again)".into());
        }
        Ok(notes)
    }

    /// `herd resurrect`: starts the saved apps as they were: instance
    /// counts, env, options, stopped instances created stopped. An app
    /// whose name is already in the list is left alone (no duplicates); an
    /// app that cannot start is reported in `failed` and the others still
    /// start. A dump that is unusable falls back to its backup (noted).
    pub async fn resurrect(self: &Rc<Self>) -> Result<Resurrected, Error> {
        self.refuse_closing()?;
        let file = self.home.dump_file();
        let Some(loaded) = dump::load(&self.home)? else {
            return Ok(Resurrected {
                notes: vec![format!(
                    "no dump at {}: nothing to resurrect (`herd save` writes one)",
                    file.display()
                )],
                ..Resurrected::default()
            });
        };
        let mut out = Resurrected {
            notes: loaded.notes,
            ..Resurrected::default()
        };
        let present: BTreeSet<String> = (self.table.borrow().instances.values())
            .map(|i| i.app.name.clone())
            .collect();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut ids = Vec::new();
        let (mut apps, mut instances) = (0, 0);
        for app in loaded.dump.apps {
            let name = app.spec.name.clone();
            if present.contains(&name) {
                if done.insert(name.clone()) {
                    out.notes
                        .push(format!("`{name}` is already in the list: left as it is"));
                }
                continue;
            }
            let copy = !done.insert(name.clone());
            match self.restore_app(app, copy) {
                Ok(started) => {
                    apps += 1;
                    instances += started.ids.len();
                    ids.extend(started.ids);
                    out.notes.extend(started.notes);
                }
                Err(e) => out.failed.push(format!("`{name}`: {e}")),
            }
        }
        if loaded.dump.autosave && !self.dump.autosave.replace(true) {
            out.notes
                .push("autosave on, as when the dump was saved".into());
        }
        self.dump.adopted.set(true);
        self.bump();
        out.instances = self.info(&ids);
        out.notes.push(format!(
            "resurrected {apps} app(s), {instances} instance(s) from {}",
            file.display()
        ));
        Ok(out)
    }

    /// Starts one saved app (`copy`: another app of that name came first).
    fn restore_app(self: &Rc<Self>, app: SavedApp, copy: bool) -> Result<Started, Error> {
        crate::config::limits::check_spec(&app.spec)?;
        if app.instances == 0 || app.instances > MAX_INSTANCES {
            return Err(refuse(
                format!(
                    "the dump says {} instances, expected 1 to {MAX_INSTANCES}",
                    app.instances
                ),
                "start the app again and `herd save`",
            ));
        }
        let stopped: Vec<u32> = app
            .stopped
            .into_iter()
            .filter(|&k| k < app.instances)
            .collect();
        self.start_app_with(
            app.spec,
            copy,
            OnExisting::Refuse,
            Some(app.instances),
            &stopped,
        )
    }
}

//! `watch`: restart an app when files under its watched paths change.
//!
//! **Bridge.** notify's inotify backend runs its own thread and calls a
//! closure there for every event. That closure drops what cannot matter
//! (reads and opens, ignored paths) and `try_send`s the rest into a small
//! bounded tokio channel, so a burst never blocks notify's thread. When the
//! channel is full the app's task already holds changes to act on; a flag
//! tells it to look for new directories it may have missed. The task runs
//! on the daemon's control plane and owns the notify watcher: aborting the
//! task (app stopped by the user, or deleted) drops the watcher, which ends
//! notify's thread.
//!
//! **Directories one by one.** herd adds one non-recursive inotify watch per
//! directory and skips ignored trees while walking, so `node_modules` costs
//! no inotify watch at all (a recursive notify watch would add one per
//! directory in it, and can exhaust `fs.inotify.max_user_watches`).
//! Directories created later are added when their creation is seen. A watched
//! *file* is watched through its directory, so editors that save by
//! renaming a new file over the old one are seen too. Symlinks are not
//! followed.
//!
//! **Debounce** ([`debounce`]): a burst of changes gives one restart, once
//! the files have been quiet for `watch_delay` (PM2's default: 0; at least
//! [`SETTLE`]). Changes seen while that restart is under way belong to it.
//!
//! **Ignore rules** ([`ignore`]): `node_modules`, `__pycache__`, hidden
//! names, herd's own files and the app's logs, then `ignore_watch` (names,
//! paths from the cwd, `*`/`?`/`**` globs).
//!
//! May touch: notify, the daemon log; restarts go through the `Trigger` the
//! registry hands in.

mod debounce;
mod ignore;

pub use debounce::{Burst, Debounce, MAX_HOLD, SETTLE};
pub use ignore::Ignore;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::auto::{Cause, Trigger};

/// Changes waiting for the app's task; beyond this the overflow flag is set.
const CHANNEL: usize = 256;

/// What to watch for one app, and how (compared to decide whether a
/// running watcher must be replaced).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Watched paths (absolute): directories, or files.
    pub roots: Vec<PathBuf>,
    /// The app's cwd: where relative `ignore_watch` paths start.
    pub cwd: PathBuf,
    /// `ignore_watch`, as written.
    pub patterns: Vec<String>,
    /// Paths never counted, with everything under them: herd's `logs/`,
    /// `node/` and `notify/` folders.
    pub always: Vec<PathBuf>,
    /// Folders whose files (not subfolders) never count: herd's home
    /// (`herd.log`, `herd.sock`, `herd.pid`, the saved process list).
    pub flat: Vec<PathBuf>,
    /// The app's log files, never counted; nor are files beside them whose
    /// names start with theirs (rotated copies).
    pub logs: Vec<PathBuf>,
    /// `watch_delay`.
    pub delay: Duration,
}

/// A live watcher. Dropping it stops its task, which drops the notify
/// watcher and so ends notify's thread.
pub struct Handle {
    task: tokio::task::AbortHandle,
    /// The last problem (a missing path, the inotify limit), for `herd show`.
    pub error: Rc<RefCell<Option<String>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What notify's thread passes on.
#[derive(Debug)]
enum Note {
    /// A change that counts; `dir` when it may be a new directory to watch.
    Change { path: PathBuf, dir: bool },
    /// The kernel's queue overflowed: anything may have changed.
    Rescan,
    /// notify reported an error.
    Failed(String),
}

/// Whether an event kind is a change (reads and opens are not).
fn counts(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Starts watching for app `name`; `trigger` restarts it. Problems (a path
/// that does not exist, no inotify) are logged as one line each and kept in
/// the handle; the app runs on regardless. Must run inside the LocalSet.
pub fn start(name: &str, plan: &Plan, trigger: Trigger) -> Handle {
    let error = Rc::new(RefCell::new(None));
    let ignore = Arc::new(Ignore::new(plan));
    let overflow = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel(CHANNEL);
    let handler = {
        let ignore = ignore.clone();
        let overflow = overflow.clone();
        move |res: notify::Result<notify::Event>| {
            let send = |note| {
                if tx.try_send(note).is_err() {
                    overflow.store(true, Ordering::Relaxed);
                }
            };
            match res {
                Ok(ev) if ev.need_rescan() => send(Note::Rescan),
                Ok(ev) if counts(&ev.kind) => {
                    let dir = matches!(
                        ev.kind,
                        EventKind::Create(CreateKind::Folder | CreateKind::Any)
                            | EventKind::Modify(ModifyKind::Name(_))
                    );
                    for path in ev.paths {
                        if !ignore.is_ignored(&path) {
                            send(Note::Change { path, dir });
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => send(Note::Failed(e.to_string())),
            }
        }
    };
    let task = match notify::recommended_watcher(handler) {
        Ok(mut watcher) => {
            for root in &plan.roots {
                if let Err(why) = watch_root(&mut watcher, &ignore, root) {
                    note_error(name, &error, why);
                }
            }
            let run = Run {
                name: name.to_string(),
                cwd: plan.cwd.clone(),
                roots: plan.roots.clone(),
                watcher,
                ignore,
                overflow,
                error: error.clone(),
            };
            tokio::task::spawn_local(run.run(rx, Debounce::new(plan.delay), trigger))
        }
        Err(e) => {
            note_error(name, &error, format!("cannot watch: {e}"));
            tokio::task::spawn_local(async {})
        }
    };
    Handle {
        task: task.abort_handle(),
        error,
    }
}

/// Logs a watch problem (one line) and keeps it for `herd show`.
fn note_error(name: &str, error: &RefCell<Option<String>>, why: String) {
    log::info!("{name}: watch: {why}");
    *error.borrow_mut() = Some(why);
}

/// Watches `root`: a directory and the directories below it that are not
/// ignored, or a file (through its directory).
fn watch_root(
    watcher: &mut notify::RecommendedWatcher,
    ignore: &Ignore,
    root: &Path,
) -> Result<(), String> {
    let meta = std::fs::metadata(root)
        .map_err(|e| format!("{}: {e}; changes there are not seen", root.display()))?;
    if meta.is_dir() {
        watch_tree(watcher, ignore, root)
    } else {
        let dir = root.parent().unwrap_or(Path::new("/"));
        add(watcher, dir)
    }
}

/// Adds a watch on `dir` and on every directory below it that is not
/// ignored (no symlinks followed). Stops at the first failure that would
/// repeat (the inotify limit); directories that vanish meanwhile are fine.
fn watch_tree(
    watcher: &mut notify::RecommendedWatcher,
    ignore: &Ignore,
    dir: &Path,
) -> Result<(), String> {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        match add(watcher, &d) {
            Ok(()) => {}
            Err(_) if !d.is_dir() => continue,
            Err(e) => return Err(e),
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                if !ignore.is_ignored(&p) {
                    todo.push(p);
                }
            }
        }
    }
    Ok(())
}

fn add(watcher: &mut notify::RecommendedWatcher, dir: &Path) -> Result<(), String> {
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| match e.kind {
            notify::ErrorKind::MaxFilesWatch => format!(
                "{}: the inotify watch limit is reached (fs.inotify.max_user_watches); changes below it are not all seen",
                dir.display()
            ),
            _ => format!("{}: {e}", dir.display()),
        })
}

/// The app's task: owns the notify watcher, debounces, restarts.
struct Run {
    name: String,
    cwd: PathBuf,
    roots: Vec<PathBuf>,
    watcher: notify::RecommendedWatcher,
    ignore: Arc<Ignore>,
    overflow: Arc<AtomicBool>,
    error: Rc<RefCell<Option<String>>>,
}

impl Run {
    async fn run(mut self, mut rx: mpsc::Receiver<Note>, mut debounce: Debounce, trigger: Trigger) {
        loop {
            // Take everything already queued before deciding anything.
            while let Ok(note) = rx.try_recv() {
                self.take(note, Some(&mut debounce));
            }
            self.check_overflow(Some(&mut debounce));
            if let Some(burst) = debounce.take_due(Instant::now()) {
                self.log_burst(&burst);
                trigger(Cause::Watch).await;
                // Changes made while it restarted are part of this burst;
                // only new directories still need their watches.
                while let Ok(note) = rx.try_recv() {
                    self.take(note, None);
                }
                self.check_overflow(None);
                continue;
            }
            let note = match debounce.due() {
                Some(at) => tokio::select! {
                    n = rx.recv() => n,
                    () = tokio::time::sleep_until(at.into()) => continue,
                },
                None => rx.recv().await,
            };
            match note {
                Some(note) => self.take(note, Some(&mut debounce)),
                None => return, // notify's thread is gone
            }
        }
    }

    /// One note: watches new directories; counts the change when a
    /// debouncer is given.
    fn take(&mut self, note: Note, debounce: Option<&mut Debounce>) {
        match note {
            Note::Change { path, dir } => {
                if dir && path.is_dir() {
                    if let Err(why) = watch_tree(&mut self.watcher, &self.ignore, &path) {
                        note_error(&self.name, &self.error, why);
                    }
                }
                if let Some(d) = debounce {
                    d.change(Instant::now(), &path);
                }
            }
            Note::Rescan => {
                self.rescan();
                if let (Some(d), Some(root)) = (debounce, self.roots.first()) {
                    d.change(Instant::now(), root);
                }
            }
            Note::Failed(why) => note_error(&self.name, &self.error, why),
        }
    }

    /// Changes were dropped (channel full): find directories made meanwhile,
    /// and count it as a change.
    fn check_overflow(&mut self, debounce: Option<&mut Debounce>) {
        if self.overflow.swap(false, Ordering::Relaxed) {
            self.take(Note::Rescan, debounce);
        }
    }

    /// Walks the watched paths again (adding a watch twice is harmless).
    fn rescan(&mut self) {
        for root in self.roots.clone() {
            if let Err(why) = watch_root(&mut self.watcher, &self.ignore, &root) {
                note_error(&self.name, &self.error, why);
            }
        }
    }

    fn log_burst(&self, b: &Burst) {
        let shown = b.path.strip_prefix(&self.cwd).unwrap_or(&b.path);
        let more = match b.changes {
            1 => String::new(),
            n => format!(" (and {} more changes)", n - 1),
        };
        log::info!(
            "{}: {} changed{more}: restarting (watch)",
            self.name,
            shown.display()
        );
    }
}

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
//! **Debounce.** A burst of changes gives one restart: [`Debounce`] is due
//! once no change has come for `watch_delay` (PM2's default: 0), but never
//! less than [`SETTLE`] (saving one file is several events, and a writer can
//! be descheduled between them), and at the latest [`MAX_HOLD`] after the
//! burst's first change, so a file written without pause cannot hold a
//! restart back forever. Changes seen while that restart is under way
//! belong to it.
//!
//! **Ignore rules** ([`Ignore`]): always `node_modules`, `__pycache__`,
//! hidden names (`.git`, editor swap files), what herd writes in its home
//! (the files directly in it, such as `herd.log`, and its `logs/` and
//! `node/` folders) and the app's own log files (with rotated copies beside
//! them); then each `ignore_watch` pattern. A pattern without `/` is
//! matched against every name below the watched path (`logs`, `*.log`); a
//! pattern with `/` is a path from the app's cwd (or absolute) and covers
//! everything under it (`./tmp`, `public/uploads`, `src/**/*.gen.js`).
//! `*` and `?` match within one name, `**` any number of directories.
//! Regular expressions are not supported (PM2's chokidar takes strings as
//! globs too).
//!
//! May touch: notify, the daemon log; restarts go through the `Trigger` the
//! registry hands in.

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::auto::{Cause, Trigger};

/// Names ignored anywhere below a watched path, besides hidden names.
const ALWAYS_IGNORED_NAMES: &[&str] = &["node_modules", "__pycache__"];

/// The shortest quiet time that ends a burst, whatever `watch_delay` says.
pub const SETTLE: Duration = Duration::from_millis(100);

/// A burst that never goes quiet still restarts the app this long after
/// the quiet time has passed since its first change.
pub const MAX_HOLD: Duration = Duration::from_secs(10);

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
    /// Paths never counted, with everything under them: herd's `logs/` and
    /// `node/` folders.
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

// ---------------------------------------------------------------- ignore

/// One `ignore_watch` pattern.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    /// No `/`: matched against each name below the watched path.
    Name(String),
    /// With `/`: matched against the path's leading components, as segments
    /// of an absolute path (`**` spans directories).
    Path(Vec<String>),
}

/// Which changed paths count. Built from a [`Plan`]; shared with notify's
/// thread, so it is plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct Ignore {
    /// Watched paths, longest first (the innermost root names a path).
    roots: Vec<PathBuf>,
    always: Vec<PathBuf>,
    flat: Vec<PathBuf>,
    logs: Vec<PathBuf>,
    rules: Vec<Rule>,
}

impl Ignore {
    /// The rules for `plan`.
    pub fn new(plan: &Plan) -> Ignore {
        let mut roots = plan.roots.clone();
        roots.sort_by_key(|r| std::cmp::Reverse(r.components().count()));
        let rules = plan
            .patterns
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.contains('/') {
                    let abs = crate::config::ecosystem::units::normalize(&plan.cwd.join(p));
                    Rule::Path(names(&abs).into_iter().map(str::to_string).collect())
                } else {
                    Rule::Name(p.to_string())
                }
            })
            .collect();
        Ignore {
            roots,
            always: plan.always.clone(),
            flat: plan.flat.clone(),
            logs: plan.logs.clone(),
            rules,
        }
    }

    /// Whether a change at `path` (absolute) is ignored. Paths outside every
    /// watched path (siblings of a watched file) are.
    pub fn is_ignored(&self, path: &Path) -> bool {
        let Some(root) = self.roots.iter().find(|r| path.starts_with(r)) else {
            return true;
        };
        if self.always.iter().any(|a| path.starts_with(a))
            || (self.flat.iter().any(|f| path.parent() == Some(f)) && !path.is_dir())
            || self.logs.iter().any(|l| path == l || same_stem(path, l))
        {
            return true;
        }
        let below = path.strip_prefix(root).unwrap_or(Path::new(""));
        for name in names(below) {
            if name.starts_with('.') || ALWAYS_IGNORED_NAMES.contains(&name) {
                return true;
            }
            let by_name = |r: &Rule| matches!(r, Rule::Name(p) if wildcard(p, name));
            if self.rules.iter().any(by_name) {
                return true;
            }
        }
        let all = names(path);
        self.rules.iter().any(|r| match r {
            Rule::Path(segs) => (1..=all.len()).any(|k| glob_path(segs, &all[..k])),
            Rule::Name(_) => false,
        })
    }
}

/// `app-out-0.log.1` beside `app-out-0.log`: a log file's rotated copy.
fn same_stem(path: &Path, log: &Path) -> bool {
    let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_string);
    path.parent() == log.parent()
        && matches!((name(path), name(log)), (Some(p), Some(l)) if p.starts_with(&l))
}

/// The normal components of a path, as text.
fn names(p: &Path) -> Vec<&str> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect()
}

/// `*` (any run of characters) and `?` (one) within one name.
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            // Let the last `*` take one more character.
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Segments against whole path components; `**` matches any number of them.
fn glob_path(segs: &[String], path: &[&str]) -> bool {
    match segs.split_first() {
        None => path.is_empty(),
        Some((s, rest)) if s == "**" => (0..=path.len()).any(|k| glob_path(rest, &path[k..])),
        Some((s, rest)) => match path.split_first() {
            Some((p, tail)) => wildcard(s, p) && glob_path(rest, tail),
            None => false,
        },
    }
}

// -------------------------------------------------------------- debounce

/// Changes folded into one restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    /// When the first change came.
    pub first: Instant,
    /// When the latest change came.
    pub last: Instant,
    /// How many changes.
    pub changes: u32,
    /// The first changed path.
    pub path: PathBuf,
}

/// Turns changes into restarts: one per burst, due once no change has come
/// for `delay` (at least [`SETTLE`]), or that + [`MAX_HOLD`] after the
/// burst's first change, whichever is sooner. Pure state: the caller
/// supplies the clock.
#[derive(Debug)]
pub struct Debounce {
    delay: Duration,
    burst: Option<Burst>,
}

impl Debounce {
    /// No change yet.
    pub fn new(delay: Duration) -> Debounce {
        Debounce {
            delay: delay.max(SETTLE),
            burst: None,
        }
    }

    /// A change at `path`, seen at `now`.
    pub fn change(&mut self, now: Instant, path: &Path) {
        match &mut self.burst {
            Some(b) => {
                b.last = now;
                b.changes += 1;
            }
            None => {
                self.burst = Some(Burst {
                    first: now,
                    last: now,
                    changes: 1,
                    path: path.to_path_buf(),
                })
            }
        }
    }

    /// When the restart for the current burst is due; `None` without one.
    pub fn due(&self) -> Option<Instant> {
        self.burst
            .as_ref()
            .map(|b| (b.last + self.delay).min(b.first + self.delay + MAX_HOLD))
    }

    /// The burst, if its restart is due at `now`; the next change starts a
    /// new one.
    pub fn take_due(&mut self, now: Instant) -> Option<Burst> {
        match self.due() {
            Some(at) if at <= now => self.burst.take(),
            _ => None,
        }
    }
}

// --------------------------------------------------------------- watcher

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
    crate::daemon::log(format_args!("{name}: watch: {why}"));
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
        crate::daemon::log(format_args!(
            "{}: {} changed{more}: restarting (watch)",
            self.name,
            shown.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(patterns: &[&str]) -> Plan {
        Plan {
            roots: vec!["/srv/app".into(), "/etc/app.conf".into()],
            cwd: "/srv/app".into(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            always: vec!["/srv/app/herd-home/logs".into()],
            flat: vec!["/srv/app/herd-home".into()],
            logs: vec!["/srv/app/logs/out-0.log".into()],
            delay: Duration::ZERO,
        }
    }

    #[test]
    fn defaults_ignore_node_modules_hidden_names_and_logs() {
        let i = Ignore::new(&plan(&[]));
        for seen in [
            "/srv/app/app.js",
            "/srv/app/src/lib/x.js",
            "/srv/app/logs/other.log",
            "/srv/app",
            "/etc/app.conf",
            "/srv/app/herd-home/apps/api.js",
        ] {
            assert!(!i.is_ignored(Path::new(seen)), "{seen} ignored");
        }
        for ignored in [
            "/srv/app/node_modules/x/index.js",
            "/srv/app/packages/a/node_modules/b",
            "/srv/app/.git/index",
            "/srv/app/src/.app.js.swp",
            "/srv/app/logs/out-0.log",
            "/srv/app/logs/out-0.log.1",
            "/srv/app/__pycache__/app.cpython-311.pyc",
            "/srv/app/herd-home/logs/api-out-0.log",
            "/srv/app/herd-home/herd.log",
            "/etc/passwd",
            "/srv/other/file",
        ] {
            assert!(i.is_ignored(Path::new(ignored)), "{ignored} seen");
        }
    }

    #[test]
    fn hidden_names_above_the_watched_path_do_not_count() {
        let mut p = plan(&[]);
        p.roots = vec!["/home/u/.apps/api".into()];
        let i = Ignore::new(&p);
        assert!(!i.is_ignored(Path::new("/home/u/.apps/api/app.js")));
        assert!(i.is_ignored(Path::new("/home/u/.apps/api/.env")));
        // A hidden file watched by name is a root, so it counts.
        p.roots = vec!["/srv/app/.env".into()];
        assert!(!Ignore::new(&p).is_ignored(Path::new("/srv/app/.env")));
    }

    #[test]
    fn name_patterns_match_any_name_below_the_watched_path() {
        let i = Ignore::new(&plan(&["tmp", "*.log", "cache-?"]));
        for ignored in [
            "/srv/app/tmp",
            "/srv/app/tmp/a.js",
            "/srv/app/src/tmp/b.js",
            "/srv/app/debug.log",
            "/srv/app/src/x/y.log",
            "/srv/app/cache-1/z",
        ] {
            assert!(i.is_ignored(Path::new(ignored)), "{ignored} seen");
        }
        for seen in [
            "/srv/app/tmpl.js",
            "/srv/app/log.js",
            "/srv/app/cache-12/z",
            "/srv/app/a.log.js",
        ] {
            assert!(!i.is_ignored(Path::new(seen)), "{seen} ignored");
        }
    }

    #[test]
    fn path_patterns_start_at_cwd_and_cover_what_is_under_them() {
        let i = Ignore::new(&plan(&[
            "public/uploads",
            "./build/",
            "src/**/*.gen.js",
            "/etc/app.conf",
            "data/*/cache",
        ]));
        for ignored in [
            "/srv/app/public/uploads",
            "/srv/app/public/uploads/a/b.png",
            "/srv/app/build/out.js",
            "/srv/app/src/x.gen.js",
            "/srv/app/src/a/b/x.gen.js",
            "/etc/app.conf",
            "/srv/app/data/eu/cache/k",
        ] {
            assert!(i.is_ignored(Path::new(ignored)), "{ignored} seen");
        }
        for seen in [
            "/srv/app/public/index.html",
            "/srv/app/src/public/uploads/x",
            "/srv/app/builder/x",
            "/srv/app/src/x.js",
            "/srv/app/data/eu/x/cache",
        ] {
            assert!(!i.is_ignored(Path::new(seen)), "{seen} ignored");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("*.log", ".log"));
        assert!(wildcard("a*b*c", "axxbyyc"));
        assert!(wildcard("a*b*c", "abcbc"));
        assert!(!wildcard("a*b*c", "axxbyy"));
        assert!(wildcard("?.js", "a.js"));
        assert!(!wildcard("?.js", "ab.js"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exactly"));
        let segs = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        assert!(glob_path(&segs("a/**/z"), &["a", "z"]));
        assert!(glob_path(&segs("a/**/z"), &["a", "b", "c", "z"]));
        assert!(!glob_path(&segs("a/**/z"), &["a", "b"]));
        assert!(glob_path(&segs("**"), &["x", "y"]));
    }

    #[test]
    fn a_burst_is_one_restart_once_quiet_for_the_delay() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(500));
        assert_eq!(d.due(), None);
        d.change(t0, Path::new("/a"));
        d.change(t0 + ms(200), Path::new("/b"));
        d.change(t0 + ms(400), Path::new("/c"));
        assert_eq!(d.due(), Some(t0 + ms(900)));
        assert_eq!(d.take_due(t0 + ms(899)), None, "not quiet long enough");
        let b = d.take_due(t0 + ms(900)).expect("due");
        assert_eq!(b.changes, 3);
        assert_eq!(b.path, Path::new("/a"));
        assert_eq!(d.due(), None, "the next change starts a new burst");
        assert_eq!(d.take_due(t0 + ms(5000)), None);
        d.change(t0 + ms(6000), Path::new("/d"));
        assert_eq!(d.take_due(t0 + ms(6500)).map(|b| b.changes), Some(1));
    }

    #[test]
    fn a_burst_that_never_goes_quiet_is_held_back_at_most_max_hold() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(1000));
        let mut t = t0;
        while t < t0 + MAX_HOLD + ms(5000) {
            d.change(t, Path::new("/busy.log"));
            t += ms(100);
        }
        assert_eq!(d.due(), Some(t0 + ms(1000) + MAX_HOLD));
    }

    #[test]
    fn zero_delay_still_waits_for_the_burst_to_settle() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Duration::ZERO);
        d.change(t0, Path::new("/a"));
        d.change(t0 + Duration::from_millis(3), Path::new("/a"));
        assert_eq!(d.take_due(t0 + Duration::from_millis(50)), None);
        assert_eq!(d.due(), Some(t0 + Duration::from_millis(3) + SETTLE));
        assert_eq!(d.take_due(t0 + SETTLE * 2).map(|b| b.changes), Some(2));
    }
}

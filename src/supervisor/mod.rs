//! Instances and their lifecycle: one [`Status`] enum per instance with
//! explicit transitions ([`Instance::on_exit`], [`Instance::begin_stop`]),
//! how a process is launched ([`launch`]), what it costs ([`procstat`]), the
//! restarts herd makes by itself ([`auto`]: [`watch`], [`cron`]), the saved
//! process list ([`dump`]), and the registry that drives it all from the
//! daemon ([`registry`]).

pub mod auto;
pub mod cron;
pub mod dump;
pub mod launch;
pub mod procstat;
pub mod ready;
pub mod registry;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use socket2::Socket;

use crate::config::AppSpec;
pub use crate::protocol::metrics::RestartReason;
use crate::sys::process::ExitStatus;

/// Where an instance is in its life (the wire type is the state machine's
/// own: the CLI shows it as is).
pub use crate::protocol::Status;

/// Longest exponential-backoff restart delay (PM2: 15 s).
pub const BACKOFF_CAP_MS: u64 = 15_000;
/// Uptime after which the backoff starts over (PM2: 30 s).
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// What to do after a process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Leave it stopped.
    Stay,
    /// Start it again after this delay.
    RestartIn(Duration),
}

/// What stopping an instance takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAction {
    /// Signal this process group and wait for the exit.
    Signal(i32),
    /// Nothing runs (or only a pending restart, now cancelled).
    AlreadyStopped,
    /// A stop is already under way.
    InProgress,
}

/// One process slot of an app: survives restarts, keeps its id.
pub struct Instance {
    /// Global id.
    pub id: u32,
    /// The app's spec, shared by its instances.
    pub app: Arc<AppSpec>,
    /// Index within the app.
    pub index: u32,
    /// Instances in the app when it started.
    pub app_instances: u32,
    /// Current state.
    pub status: Status,
    /// The process it runs now, with what exists only while it does: an
    /// exit drops the whole value.
    pub running: Option<Running>,
    /// Pinned CPU.
    pub core: Option<usize>,
    /// This instance's listener (reuseport: its own; shared: the app's);
    /// lives as long as the instance, across restarts.
    pub listener: Option<Arc<Socket>>,
    /// The app's fdpass data plane (shared by its instances).
    pub plane: Option<Arc<crate::accept::DataPlane>>,
    /// Bound port.
    pub port: Option<u16>,
    /// Restarts (automatic and manual).
    pub restarts: u32,
    /// The same, by reason.
    pub restarts_by: BTreeMap<RestartReason, u32>,
    /// Why the restart under way happens, when it is not the default of
    /// the path that counts it (a memory cap's reload, a watcher's restart).
    pub next_cause: Option<RestartReason>,
    /// Consecutive runs shorter than min_uptime.
    pub unstable_restarts: u32,
    /// When the instance was created.
    pub created_at: SystemTime,
    /// When the current process started.
    pub started: Option<(SystemTime, Instant)>,
    /// How the last process ended.
    pub last_exit: Option<ExitStatus>,
    /// Why the last launch failed, if it did.
    pub last_error: Option<String>,
    /// Restarts caused by `max_memory_restart`.
    pub memory_restarts: u32,
    /// Current exponential-backoff delay (0: none yet).
    pub backoff_ms: u64,
    /// The tree RSS that caused the last memory restart.
    pub last_memory_rss: Option<u64>,
    /// Bumped on every launch and stop, so stale timers can tell they are stale.
    pub generation: u64,
    /// CPU/memory bookkeeping.
    pub stats: procstat::Sampler,
    /// stdout log.
    pub out_log: PathBuf,
    /// stderr log.
    pub err_log: PathBuf,
    /// Combined stdout+stderr log (`log_file`).
    pub combined_log: Option<PathBuf>,
}

/// An instance's current process.
pub struct Running {
    /// OS pid (= process group id).
    pub pid: i32,
    /// Its pidfd (from its launch): waits for its exit and guards signals
    /// after it may have been reaped, where its pid could already name
    /// another process.
    pub pidfd: Option<Arc<std::os::fd::OwnedFd>>,
    /// Its place in the plane's pool (fdpass).
    pub slot: Option<Arc<crate::accept::pool::Slot>>,
    /// The daemon's end of a Node app's IPC channel (outside fdpass mode).
    pub ipc: Option<ready::Ipc>,
    /// It said it is ready (Node preload `listening`, `process.send('ready')`,
    /// `READY=1`); fdpass apps: see the slot.
    pub ready: bool,
}

impl Running {
    /// A process just started: nothing known of it but its pid.
    pub fn new(pid: i32) -> Running {
        Running {
            pid,
            pidfd: None,
            slot: None,
            ipc: None,
            ready: false,
        }
    }
}

impl Instance {
    /// A new, not yet launched instance; its logs go to `logs`.
    pub fn new(
        id: u32,
        app: Arc<AppSpec>,
        index: u32,
        app_instances: u32,
        core: Option<usize>,
        listener: Option<Arc<Socket>>,
        logs: &std::path::Path,
    ) -> Instance {
        let port = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .and_then(|a| a.as_socket())
            .map(|a| a.port());
        // PM2: one file per instance unless merged (or only one instance).
        let per_instance = |p: &PathBuf| {
            if app.merge_logs || app_instances == 1 || crate::logs::is_null(p) {
                p.clone()
            } else {
                with_suffix(p, id)
            }
        };
        let log = |custom: &Option<PathBuf>, kind: &str| match custom {
            Some(p) => per_instance(p),
            None if app.merge_logs => logs.join(format!("{}-{kind}.log", app.name)),
            None => logs.join(format!("{}-{kind}-{id}.log", app.name)),
        };
        Instance {
            id,
            out_log: log(&app.out_file, "out"),
            err_log: log(&app.error_file, "error"),
            combined_log: app.logs.log_file.as_ref().map(per_instance),
            app,
            index,
            app_instances,
            status: Status::Launching,
            running: None,
            core,
            listener,
            plane: None,
            port,
            restarts: 0,
            restarts_by: BTreeMap::new(),
            next_cause: None,
            unstable_restarts: 0,
            created_at: SystemTime::now(),
            started: None,
            last_exit: None,
            last_error: None,
            memory_restarts: 0,
            backoff_ms: 0,
            last_memory_rss: None,
            generation: 0,
            stats: Default::default(),
        }
    }

    /// Counts a restart: for the reason set in `next_cause`, else `default`.
    pub fn count_restart(&mut self, default: RestartReason) {
        self.restarts += 1;
        let why = self.next_cause.take().unwrap_or(default);
        *self.restarts_by.entry(why).or_default() += 1;
    }

    /// The current process said it is ready, or (fdpass) is in rotation.
    pub fn is_ready(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.ready || r.slot.as_ref().is_some_and(|s| s.is_active()))
    }

    /// The status `herd list` shows: as PM2, a `wait_ready` instance is
    /// `launching` until it says it is ready or `listen_timeout` passes.
    pub fn shown_status(&self) -> Status {
        if self.status == Status::Online
            && self.app.wait_ready
            && !self.is_ready()
            && self.uptime_ms() < self.app.listen_timeout_ms
        {
            Status::Launching
        } else {
            self.status
        }
    }

    /// The current process's pid.
    pub fn pid(&self) -> Option<i32> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// The port it serves on: its own listener's (reuseport, shared), else
    /// its app's fdpass plane's once bound (a Node app's at its first
    /// `listen`).
    pub fn bound_port(&self) -> Option<u16> {
        self.port.or_else(|| {
            self.plane
                .as_ref()
                .and_then(|p| p.local_addr())
                .map(|a| a.port())
        })
    }

    /// The current process's place in the pool (fdpass).
    pub fn slot(&self) -> Option<&Arc<crate::accept::pool::Slot>> {
        self.running.as_ref().and_then(|r| r.slot.as_ref())
    }

    /// The current process's IPC channel (a Node app outside fdpass mode).
    pub fn ipc(&self) -> Option<&ready::Ipc> {
        self.running.as_ref().and_then(|r| r.ipc.as_ref())
    }

    /// Every file this instance's output goes to (not /dev/null).
    pub fn log_paths(&self) -> impl Iterator<Item = &std::path::Path> {
        [
            Some(&self.out_log),
            Some(&self.err_log),
            self.combined_log.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .filter(|p| !crate::logs::is_null(p))
    }

    /// A process was started.
    pub fn on_launched(&mut self, pid: i32) {
        self.running = Some(Running::new(pid));
        self.status = Status::Online;
        self.started = Some((SystemTime::now(), Instant::now()));
        self.last_error = None;
        self.stats = procstat::Sampler::default();
    }

    /// The process exited with `status`; decides what comes next.
    pub fn on_exit(&mut self, exit: ExitStatus, now: Instant) -> AfterExit {
        let uptime = self
            .started
            .map_or(Duration::ZERO, |(_, t)| now.duration_since(t));
        self.running = None;
        self.last_exit = Some(exit);
        self.generation += 1;
        let was = self.status;
        let done = matches!(exit, ExitStatus::Code(c) if self.app.stop_exit_codes.contains(&c));
        if was == Status::Stopping || !self.app.autorestart || done {
            self.status = Status::Stopped;
            return AfterExit::Stay;
        }
        if uptime < Duration::from_millis(self.app.min_uptime_ms) {
            self.unstable_restarts += 1;
            if self.unstable_restarts > self.app.max_restarts {
                self.status = Status::Errored;
                return AfterExit::Stay;
            }
        } else {
            self.unstable_restarts = 0;
        }
        self.status = Status::WaitingRestart;
        let mut delay = self.app.restart_delay_ms;
        if let Some(base) = self.app.exp_backoff_restart_delay_ms {
            // PM2's exponential backoff: base, ×1.5 per restart, at most 15 s,
            // back to the base after 30 s of stable running.
            if uptime >= BACKOFF_RESET_AFTER {
                self.backoff_ms = 0;
            }
            self.backoff_ms = match self.backoff_ms {
                0 => base,
                b => (b + b / 2).min(BACKOFF_CAP_MS),
            };
            delay = delay.max(self.backoff_ms);
        }
        AfterExit::RestartIn(Duration::from_millis(delay))
    }

    /// Asks the instance to stop.
    pub fn begin_stop(&mut self) -> StopAction {
        match (self.status, self.pid()) {
            (Status::Stopping, _) => StopAction::InProgress,
            (Status::Launching | Status::Online, Some(pid)) => {
                self.status = Status::Stopping;
                self.generation += 1;
                StopAction::Signal(pid)
            }
            _ => {
                self.status = Status::Stopped;
                self.generation += 1;
                StopAction::AlreadyStopped
            }
        }
    }

    /// Milliseconds the current process has been up.
    pub fn uptime_ms(&self) -> u64 {
        match (self.status.is_running(), self.started) {
            (true, Some((_, t))) => t.elapsed().as_millis() as u64,
            _ => 0,
        }
    }
}

/// `app.log` → `app-3.log` (PM2's per-instance naming of custom log paths).
fn with_suffix(p: &std::path::Path, id: u32) -> std::path::PathBuf {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match p.extension() {
        Some(ext) => format!("{stem}-{id}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{id}"),
    };
    p.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(autorestart: bool) -> Instance {
        let mut app = AppSpec::new("t".into(), "/bin/true".into(), "/".into());
        app.autorestart = autorestart;
        app.max_restarts = 2;
        app.pin = false;
        Instance::new(
            0,
            Arc::new(app),
            0,
            1,
            None,
            None,
            std::path::Path::new("/nonexistent"),
        )
    }

    /// Everything that exists only while a process runs is one value: the
    /// exit drops it whole (no stale pid, readiness or channel is left).
    #[test]
    fn an_exit_drops_the_running_process_whole() {
        let mut i = inst(true);
        assert!(i.pid().is_none() && !i.is_ready());
        i.on_launched(10);
        i.running.as_mut().unwrap().ready = true;
        assert_eq!((i.pid(), i.is_ready()), (Some(10), true));
        let _ = i.on_exit(ExitStatus::Signal(9), Instant::now());
        assert!(i.running.is_none());
        assert!(i.pid().is_none() && !i.is_ready() && i.slot().is_none() && i.ipc().is_none());
        i.on_launched(11);
        assert!(!i.is_ready(), "a new process starts not ready");
    }

    #[test]
    fn crash_loop_ends_errored_after_max_restarts() {
        let mut i = inst(true);
        let now = Instant::now();
        for _ in 0..2 {
            i.on_launched(10);
            assert!(matches!(
                i.on_exit(ExitStatus::Code(1), now),
                AfterExit::RestartIn(_)
            ));
            assert_eq!(i.status, Status::WaitingRestart);
        }
        i.on_launched(10);
        assert_eq!(i.on_exit(ExitStatus::Code(1), now), AfterExit::Stay);
        assert_eq!(i.status, Status::Errored);
        assert_eq!(i.last_exit, Some(ExitStatus::Code(1)));
    }

    #[test]
    fn exponential_backoff_grows_caps_and_resets() {
        let mut i = inst(true);
        Arc::get_mut(&mut i.app)
            .unwrap()
            .exp_backoff_restart_delay_ms = Some(100);
        Arc::get_mut(&mut i.app).unwrap().max_restarts = 100;
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..16 {
            i.on_launched(7);
            match i.on_exit(ExitStatus::Code(1), t0) {
                AfterExit::RestartIn(d) => delays.push(d.as_millis() as u64),
                AfterExit::Stay => panic!("stopped"),
            }
        }
        assert_eq!(&delays[..4], &[100, 150, 225, 337]);
        assert_eq!(*delays.last().unwrap(), BACKOFF_CAP_MS);
        // 30 s of stable running: back to the base.
        i.on_launched(8);
        let later = i.started.unwrap().1 + BACKOFF_RESET_AFTER;
        assert_eq!(
            i.on_exit(ExitStatus::Code(1), later),
            AfterExit::RestartIn(Duration::from_millis(100))
        );
    }

    #[test]
    fn stop_exit_codes_mean_done() {
        let mut i = inst(true);
        Arc::get_mut(&mut i.app).unwrap().stop_exit_codes = vec![0, 3];
        i.on_launched(5);
        assert_eq!(
            i.on_exit(ExitStatus::Code(3), Instant::now()),
            AfterExit::Stay
        );
        assert_eq!(i.status, Status::Stopped);
        i.on_launched(6);
        assert!(matches!(
            i.on_exit(ExitStatus::Code(1), Instant::now()),
            AfterExit::RestartIn(_)
        ));
        assert_eq!(
            with_suffix(std::path::Path::new("/l/api.log"), 3),
            std::path::Path::new("/l/api-3.log")
        );
    }

    #[test]
    fn stop_wins_over_autorestart_and_no_autorestart_stays_stopped() {
        let mut i = inst(true);
        i.on_launched(42);
        assert_eq!(i.begin_stop(), StopAction::Signal(42));
        assert_eq!(i.begin_stop(), StopAction::InProgress);
        assert_eq!(
            i.on_exit(ExitStatus::Signal(2), Instant::now()),
            AfterExit::Stay
        );
        assert_eq!(i.status, Status::Stopped);
        assert_eq!(i.begin_stop(), StopAction::AlreadyStopped);

        let mut j = inst(false);
        j.on_launched(43);
        assert_eq!(
            j.on_exit(ExitStatus::Code(0), Instant::now()),
            AfterExit::Stay
        );
        assert_eq!(j.status, Status::Stopped);
    }
}

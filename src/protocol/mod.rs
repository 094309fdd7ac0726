//! What the CLI and the daemon say to each other.
//!
//! A connection starts with a [`Hello`] each way; then the client sends one
//! [`Request`] per frame and gets one [`Response`] per frame. Frames are a
//! 4-byte big-endian length and a JSON body (see [`frame`]). JSON keeps the
//! wire readable (`socat` works for debugging) and lets newer fields be added
//! without breaking older readers; [`PROTOCOL_VERSION`] changes only when an
//! old reader would misunderstand.

pub mod frame;
pub mod spec;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use spec::{AppSpec, Instances, LogSettings, Mode, PlaneConfig, SpecPatch};

/// Bumped on any change an older peer would misread (2: typed targets and
/// scale).
pub const PROTOCOL_VERSION: u32 = 2;

/// The crate version, shown by `herd ping` and in version errors.
pub const HERD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first frame in each direction. Its shape never changes, so any two
/// herd versions can at least tell each other apart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Always `"herd"`: anything else on the socket is not a herd peer.
    pub herd: String,
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// [`HERD_VERSION`] of the sender.
    pub version: String,
}

impl Hello {
    /// This build's hello.
    pub fn ours() -> Hello {
        Hello {
            herd: "herd".into(),
            protocol: PROTOCOL_VERSION,
            version: HERD_VERSION.into(),
        }
    }
}

/// Defines a wire enum whose JSON form is its kebab-case name, with that
/// name as `as_str` and `Display`.
macro_rules! wire_names {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $s)] $v),+
        }
        impl $name {
            /// The name on the wire and on screen.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_names! {
    /// PM2's exec modes.
    ExecMode {
        /// One process that binds its own sockets.
        Fork = "fork",
        /// Instances whose connections herd hands out.
        Cluster = "cluster",
    }
}

wire_names! {
    /// How connections reach an instance.
    Distribution {
        /// The daemon accepts and passes each connection.
        Fdpass = "fdpass",
        /// One `SO_REUSEPORT` listener per instance.
        Reuseport = "reuseport",
        /// One listener shared by every instance.
        Shared = "shared",
        /// The app binds its own sockets.
        None = "none",
    }
}

wire_names! {
    /// How an fdpass app's daemon picks a worker for each connection
    /// (`--policy`; the rules themselves are in `accept::pool::policy`).
    Policy {
        /// Each worker in turn, skipping the ones that are behind (an
        /// outlier, whose every connection lately took 4× and 2.5 ms longer
        /// than the fastest worker's fastest, gets only a probe now and
        /// then; a stuck one, holding more than a few connections beyond
        /// the least loaded worker with no close for 50 ms, none). When
        /// every worker is behind, the least loaded. So uniform load is
        /// split exactly evenly however in-flight counts jitter, and a slow
        /// or blocked worker gets almost nothing. The default.
        LeastConn = "least-conn",
        /// Strictly in turn.
        RoundRobin = "round-robin",
        /// Two workers at random, the less loaded one wins.
        P2c = "p2c",
        /// The least expected wait: (in flight + 1) × the worker's recent
        /// service time, among those that are not outliers; the estimate
        /// decays while unmeasured (half-life 500 ms).
        LeastTime = "least-time",
    }
}

// `wire_names!` derives a fixed list, without `Default`.
#[allow(clippy::derivable_impls)]
impl Default for Policy {
    fn default() -> Policy {
        Policy::LeastConn
    }
}

wire_names! {
    /// How connections reach an fdpass worker.
    Channel {
        /// herd's protocol, closes reported by id.
        Herd = "herd",
        /// herd's protocol, closes counted in a shared page.
        HerdCounters = "herd-counters",
        /// A Node app through herd's preload (herd's protocol).
        NodePreload = "node-preload",
        /// A Node app through Node's own `newconn` messages.
        NodeCluster = "node-cluster",
    }
}

/// How a process ended, as `waitpid` reported it (the daemon's
/// `sys::process::ExitStatus` on the wire: `{"code": 1}`, `{"signal": 9}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

/// One thing a request acts on, as the CLI read it (PM2's forms): `all`,
/// an instance id, or an app name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every instance.
    All,
    /// One instance.
    Id(u32),
    /// Every instance of the app with this name.
    Name(String),
}

impl Target {
    /// `all`, a number that fits an id, or else a name.
    pub fn parse(s: &str) -> Target {
        match s {
            "all" => Target::All,
            _ => match s.parse::<u32>() {
                Ok(id) if s.bytes().all(|b| b.is_ascii_digit()) => Target::Id(id),
                _ => Target::Name(s.to_string()),
            },
        }
    }

    /// [`Target::parse`] of each.
    pub fn parse_all(v: &[String]) -> Vec<Target> {
        v.iter().map(|s| Target::parse(s)).collect()
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        spec::redact_envs(&mut v);
        write!(f, "Request {v}")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Id(id) => write!(f, "{id}"),
            Target::Name(n) => f.write_str(n),
        }
    }
}

/// How `herd scale` changes an app's instance count: `N`, `+N`, `-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleTo {
    /// To exactly this many.
    Set(u32),
    /// This many more.
    Add(u32),
    /// This many fewer.
    Remove(u32),
}

impl ScaleTo {
    /// `N`, `+N` or `-N`; `None` for anything else.
    pub fn parse(s: &str) -> Option<ScaleTo> {
        let s = s.trim();
        let num = |d: &str| {
            (!d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .then(|| d.parse::<u32>().ok())
                .flatten()
        };
        if let Some(d) = s.strip_prefix('+') {
            num(d).map(ScaleTo::Add)
        } else if let Some(d) = s.strip_prefix('-') {
            num(d).map(ScaleTo::Remove)
        } else {
            num(s).map(ScaleTo::Set)
        }
    }
}

impl ScaleTo {
    /// The new count from `current` (`None` where it would over- or
    /// underflow; the daemon also bounds it by its instance limit).
    pub fn apply(self, current: u32) -> Option<u32> {
        match self {
            ScaleTo::Set(n) => Some(n),
            ScaleTo::Add(n) => current.checked_add(n),
            ScaleTo::Remove(n) => current.checked_sub(n),
        }
    }
}

impl std::fmt::Display for ScaleTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaleTo::Set(n) => write!(f, "{n}"),
            ScaleTo::Add(n) => write!(f, "+{n}"),
            ScaleTo::Remove(n) => write!(f, "-{n}"),
        }
    }
}

/// A CLI request. Targets are ids, app names or `all`, as in PM2. Its
/// `Debug` leaves out environment values (`--update-env` sends the CLI's
/// whole environment).
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon alive?
    Ping,
    /// Start an app (or start its stopped instances again).
    Start {
        /// What to run.
        spec: Box<AppSpec>,
        /// Start another copy even if an app with this script runs (`-f`).
        force: bool,
        /// What to do when the app already runs.
        #[serde(default)]
        existing: OnExisting,
    },
    /// Every instance.
    List,
    /// The instances one target names.
    Show {
        /// Id or name.
        target: Target,
    },
    /// Stop instances (SIGINT, then SIGKILL after the kill timeout).
    Stop {
        /// Ids, names or `all`.
        targets: Vec<Target>,
        /// An app name that is not in the list is a note, not an error
        /// (`herd stop api` before the first deploy).
        #[serde(default)]
        missing_ok: bool,
    },
    /// Stop then start instances.
    Restart {
        /// Ids, names or `all`.
        targets: Vec<Target>,
        /// `--update-env`: the CLI's environment replaces the inherited one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<BTreeMap<String, String>>,
        /// Settings to change first (`--node-args`, `--env K=V`, …).
        #[serde(default, skip_serializing_if = "SpecPatch::is_empty")]
        patch: SpecPatch,
    },
    /// Rolling zero-downtime reload, replacement first, in every mode.
    Reload {
        /// Ids, names or `all`.
        targets: Vec<Target>,
        /// `--update-env`: the CLI's environment replaces the inherited one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<BTreeMap<String, String>>,
        /// Instances replaced at a time (`--parallel`, default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parallel: Option<u32>,
        /// Settings to change first (`--node-args`, `--env K=V`, …).
        #[serde(default, skip_serializing_if = "SpecPatch::is_empty")]
        patch: SpecPatch,
    },
    /// Stop instances and forget them.
    Delete {
        /// Ids, names or `all`.
        targets: Vec<Target>,
    },
    /// Change the number of instances of an app (`herd scale api 4|+2|-1`).
    Scale {
        /// App name.
        app: String,
        /// `N`, `+N` or `-N`.
        to: ScaleTo,
    },
    /// Zero the restart counters of instances (`herd reset`).
    Reset {
        /// Ids, names or `all`.
        targets: Vec<Target>,
    },
    /// Empty the log files of instances (all when no target).
    Flush {
        /// Ids, names or `all`; empty: everything, the daemon log included.
        #[serde(default)]
        targets: Vec<Target>,
    },
    /// Reopen every open log file (after an external logrotate moved them).
    ReloadLogs,
    /// Write the process list to `$HERD_HOME/dump.json` (`herd save`).
    Save {
        /// Also replace a dump that holds apps by an empty list, or a newer
        /// herd's dump.
        #[serde(default)]
        force: bool,
        /// Turn autosave on or off (absent: as it is).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        autosave: Option<bool>,
    },
    /// Start the saved apps as they were (`herd resurrect`).
    Resurrect,
    /// Move the dump aside (`herd cleardump`).
    ClearDump,
    /// Stop everything, then the daemon exits.
    Kill,
    /// Take copies of the TCP listeners process `pid` holds (another
    /// process manager's, `herd import-pm2 --from-running`) and keep them:
    /// an app started on one of their ports accepts from the same socket,
    /// so nothing queued on it is lost when the other process lets go.
    TakeListeners {
        /// The process holding them (checked by the daemon: > 1, alive).
        pid: i32,
    },
    /// Send a signal to the running process of each instance
    /// (`herd sendSignal SIGUSR2 api`).
    Signal {
        /// The signal number (1 to SIGRTMAX; checked by the daemon).
        signal: i32,
        /// Ids, names or `all`.
        targets: Vec<Target>,
    },
}

/// What `start` does with an app of that name that already runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnExisting {
    /// Refuse: "already running" (`herd start app.js`, as PM2).
    #[default]
    Refuse,
    /// Leave it alone, start only its stopped instances (ecosystem files).
    Skip,
    /// Restart it with the new spec (`--update-env`, `startOrRestart`).
    Update,
    /// Reload it with the new spec, replacement first (`startOrReload`).
    Reload,
}

/// The daemon's answer to one [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// Daemon pid.
        pid: u32,
        /// Daemon crate version.
        version: String,
        /// Milliseconds since the daemon started.
        uptime_ms: u64,
    },
    /// Answer to start/stop/restart/delete: what was done, per instance.
    Done {
        /// Instances acted on, with their state afterwards.
        instances: Vec<InstanceInfo>,
        /// One line per thing worth telling ("app `api` already running").
        notes: Vec<String>,
    },
    /// Answer to list/show.
    Instances {
        /// The instances.
        instances: Vec<InstanceInfo>,
    },
    /// Answer to kill: the daemon exits after sending this.
    Killed {
        /// Daemon pid, so the CLI can wait for it to be gone.
        pid: u32,
        /// How many instances were stopped.
        stopped: usize,
    },
    /// The request failed; nothing was changed.
    Error {
        /// One line: what and why.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// Answer to resurrect: the instances created, and the saved apps that
    /// could not be (the others were restored all the same).
    Resurrected {
        /// Instances created, running or stopped as saved.
        instances: Vec<InstanceInfo>,
        /// One line per thing worth telling.
        notes: Vec<String>,
        /// One line per app not restored, and why.
        failed: Vec<String>,
    },
}

/// Where an instance is in its life. PM2's names, one enum, no flag soup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Being started.
    Launching,
    /// Running.
    Online,
    /// Asked to stop; waiting for it to exit (SIGKILL after kill_timeout).
    Stopping,
    /// Not running, and not coming back unless asked.
    Stopped,
    /// Exited; an automatic restart is scheduled.
    WaitingRestart,
    /// Crashed too often (more than max_restarts runs under min_uptime).
    Errored,
}

impl Status {
    /// PM2's spelling, for `jlist` and the table.
    pub fn pm2_name(self) -> &'static str {
        match self {
            Status::Launching => "launching",
            Status::Online => "online",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::WaitingRestart => "waiting restart",
            Status::Errored => "errored",
        }
    }

    /// Has a live process (or is about to).
    pub fn is_running(self) -> bool {
        matches!(self, Status::Launching | Status::Online | Status::Stopping)
    }
}

/// One instance as `herd list --json` prints it. This shape is documented
/// (README, "Scripting") and only grows: fields are added, never renamed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Global id (0, 1, 2 … like PM2's pm_id).
    pub id: u32,
    /// App name.
    pub name: String,
    /// Index within its app (`NODE_APP_INSTANCE`).
    pub instance: u32,
    /// `fork` or `cluster`.
    pub exec_mode: ExecMode,
    /// How connections reach it: `fdpass`, `reuseport`, `shared`, or `none`
    /// when the app binds its own sockets.
    pub distribution: Distribution,
    /// fdpass: the accept backend and why (`io_uring (…)`, `epoll (reason)`).
    pub io: Option<String>,
    /// fdpass: the dispatch policy.
    pub policy: Option<Policy>,
    /// fdpass: acceptor threads of the app.
    pub acceptors: Option<usize>,
    /// fdpass: connections dispatched to the current process.
    pub dispatched: u64,
    /// fdpass: connections its dead processes had received but not
    /// touched, answered by another worker from the daemon's copies.
    #[serde(default)]
    pub saved_on_death: u64,
    /// fdpass: connections lost with its dead processes because they had
    /// started on them (read or written a byte).
    #[serde(default)]
    pub lost_started: u64,
    /// fdpass: connections dispatched and not yet closed (herd workers, and
    /// Node workers through herd's preload) or not yet accepted (Node
    /// workers on Node's `newconn` path).
    pub in_flight: u32,
    /// fdpass: how connections reach the current process: `herd-counters`
    /// (herd protocol, closes counted in the shared page), `herd` (closes
    /// sent as `D`), `node-preload` (a Node app through herd's preload on
    /// herd's protocol) or `node-cluster` (Node's `newconn` messages).
    #[serde(default)]
    pub channel: Option<Channel>,
    /// fdpass: the current process is ready and receives connections.
    pub in_rotation: bool,
    /// fdpass, least-conn and least-time: the current process was last
    /// judged too slow (the outlier rule) and gets no new connections
    /// except probes until it is measured fast again.
    #[serde(default)]
    pub left_out_slow: bool,
    /// Current state.
    pub status: Status,
    /// OS pid while running.
    pub pid: Option<i32>,
    /// CPU it is pinned to.
    pub core: Option<usize>,
    /// The port its listener is bound to (cluster apps).
    pub port: Option<u16>,
    /// The address the listener is bound to.
    pub host: Option<String>,
    /// Restarts since start (automatic and manual).
    pub restarts: u32,
    /// Restarts of runs shorter than min_uptime.
    pub unstable_restarts: u32,
    /// When the app was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the current process started, ms since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// Milliseconds the current process has been up.
    pub uptime_ms: u64,
    /// CPU use since the previous sample, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory of the process, bytes.
    pub memory_bytes: u64,
    /// How the last process ended.
    pub last_exit: Option<Exit>,
    /// Why the last launch failed, if it did.
    pub last_error: Option<String>,
    /// Absolute script path.
    pub script: String,
    /// Executable actually run (interpreter or the script).
    pub exec: String,
    /// Interpreter, when one is used.
    pub interpreter: Option<String>,
    /// Interpreter arguments (`node_args`).
    pub interpreter_args: Vec<String>,
    /// Script arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Env set for this app (`--env`), not the inherited environment.
    pub env: BTreeMap<String, String>,
    /// The variables of `env` an ecosystem file wrote as numbers or
    /// booleans, with their JSON value (`jlist` shows them typed).
    #[serde(default)]
    pub env_types: BTreeMap<String, serde_json::Value>,
    /// Number of inherited environment variables (not listed).
    pub inherited_env: usize,
    /// Restart when the process exits.
    pub autorestart: bool,
    /// SIGINT → SIGKILL delay.
    pub kill_timeout_ms: u64,
    /// Runs shorter than this are unstable.
    pub min_uptime_ms: u64,
    /// RSS cap of the process tree, bytes.
    pub max_memory_restart: Option<u64>,
    /// Restarts caused by the RSS cap.
    pub memory_restarts: u32,
    /// The tree RSS seen at the last memory restart, bytes.
    pub last_memory_rss: Option<u64>,
    /// Unstable restarts before `errored`.
    pub max_restarts: u32,
    /// Delay before an automatic restart.
    pub restart_delay_ms: u64,
    /// Instances in the app.
    pub instances: u32,
    /// The ecosystem file the app came from.
    pub config_file: Option<String>,
    /// Ecosystem keys read but not acted on yet, with their values.
    pub pending_config: BTreeMap<String, serde_json::Value>,
    /// Exit codes that end the app without a restart.
    pub stop_exit_codes: Vec<i32>,
    /// The variable holding the instance number (`instance_var`), when not
    /// `NODE_APP_INSTANCE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_var: Option<String>,
    /// `increment_var` and this instance's value of it (the app's base
    /// value + the instance number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment_var: Option<(String, i64)>,
    /// stdout log path.
    pub out_log: String,
    /// stderr log path.
    pub err_log: String,
    /// Combined stdout+stderr log path (`log_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined_log: Option<String>,
    /// How lines are written: `plain`, `time` (with `log_date_format`), `json`.
    #[serde(default)]
    pub log_format: String,
    /// The `log_date_format` in use, if lines are stamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_date_format: Option<String>,
    /// Rotate at this size (`log_max_size`), keeping `log_retain` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_max_size: Option<u64>,
    /// Rotated files kept.
    #[serde(default)]
    pub log_retain: u32,
    /// Output bytes the daemon could not write to this instance's log
    /// files (disk full, permissions), since they were opened.
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// The current process said it is ready (or, fdpass, is in rotation).
    #[serde(default)]
    pub ready: bool,
    /// `wait_ready`: connections and reload hand-over wait for the app's
    /// own ready signal.
    #[serde(default)]
    pub wait_ready: bool,
    /// `shutdown_with_message`: stopped with the IPC message `shutdown`.
    #[serde(default)]
    pub shutdown_with_message: bool,
    /// `listen_timeout`: how long a reload waits for a replacement to be
    /// ready (ms).
    #[serde(default)]
    pub listen_timeout_ms: u64,
    /// Why writing a log file fails now, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
    /// Paths whose changes restart the app (`watch`); absent when off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
    /// `ignore_watch` patterns (herd also ignores `node_modules`,
    /// `__pycache__`, hidden names and its own logs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_watch: Vec<String>,
    /// `watch_delay`, when watching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_delay_ms: Option<u64>,
    /// A watcher is live for this instance (not when the user stopped it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watching: bool,
    /// Why watching does not see everything (a missing path, the inotify
    /// limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_error: Option<String>,
    /// `cron_restart` pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_restart: Option<String>,
    /// The next cron restart, ms since the Unix epoch (absent while the
    /// user has the instance stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_next_ms: Option<u64>,
}

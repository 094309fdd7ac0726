//! What the CLI and the daemon say to each other.
//!
//! A connection starts with a [`Hello`] each way; then the client sends one
//! [`Request`] per frame and gets one [`Response`] per frame. Frames are a
//! 4-byte big-endian length and a JSON body (see [`frame`]). JSON keeps the
//! wire readable (`socat` works for debugging) and lets newer fields be added
//! without breaking older readers; [`PROTOCOL_VERSION`] changes only when an
//! old reader would misunderstand.

pub mod frame;
mod info;
pub mod metrics;
pub mod spec;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use info::InstanceInfo;
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
    /// Live figures (`herd metrics`, `herd monit`): the daemon's, every
    /// app's and every instance's, or one app's.
    Metrics {
        /// Only this app (a name; unknown names are an error).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<String>,
        /// Also ask the `app_metrics` apps for their own metrics (up to a
        /// second; `herd monit` does not).
        #[serde(default)]
        app_metrics: bool,
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
    /// Answer to [`Request::Metrics`].
    Metrics {
        /// The figures.
        snapshot: Box<metrics::Snapshot>,
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

//! What an app is, as a `start` request carries it and the daemon keeps it:
//! [`AppSpec`] and the settings inside it. Plain data and its serde form;
//! the code that builds, checks and uses it lives with that code
//! (`config` parses PM2's forms into it, `accept` runs its data plane,
//! `logs` its log settings), as inherent `impl` blocks there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ExecMode, Policy};

/// `-i`: how many instances. Resolved by the daemon, against the CPUs *it*
/// may use (affinity mask and cgroup quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Instances {
    /// `max` or `0`: one per usable CPU.
    Max,
    /// `-k`: one per usable CPU, minus k (never below 1).
    MaxMinus(u32),
    /// An exact count.
    Count(u32),
}

/// Everything herd needs to run one app. Its `Debug` leaves out the
/// values of its environments ([`redact_envs`]).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct AppSpec {
    /// App name (unique per script; `-f` allows a second copy).
    pub name: String,
    /// Absolute path of the script or executable.
    pub script: PathBuf,
    /// Interpreter (`node`, `python3`, a path); `None` runs the script itself.
    pub interpreter: Option<String>,
    /// Arguments for the interpreter (`node_args`).
    pub interpreter_args: Vec<String>,
    /// Arguments for the script.
    pub args: Vec<String>,
    /// Working directory (absolute).
    pub cwd: PathBuf,
    /// Variables set for this app (`--env`), shown by `herd show`.
    pub env: BTreeMap<String, String>,
    /// Those of `env` an ecosystem file wrote as numbers or booleans, with
    /// their JSON value (`jlist` shows them typed, as PM2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_types: BTreeMap<String, serde_json::Value>,
    /// The CLI's environment when the app was started (inherited, like PM2).
    pub base_env: BTreeMap<String, String>,
    /// Fork or cluster.
    pub exec_mode: ExecMode,
    /// Instance count (cluster mode).
    pub instances: Instances,
    /// Port herd listens on for the app (cluster mode).
    pub port: Option<u16>,
    /// Address to bind the port on.
    pub host: String,
    /// How connections reach a cluster app's instances (`--mode`).
    pub mode: Mode,
    /// fdpass settings: policy, acceptors, backlog, multishot.
    pub plane: PlaneConfig,
    /// Pin instance i to CPU i mod N.
    pub pin: bool,
    /// reuseport: set `SO_INCOMING_CPU` on each pinned worker's listener, so
    /// the kernel prefers the worker on the CPU that handled the packets.
    #[serde(default)]
    pub incoming_cpu: bool,
    /// Scale-down retires the highest indexes, so the instance variable
    /// stays 0..n-1 (`keep_indexes`, herd's rule); otherwise PM2's: the
    /// lowest ids go first.
    #[serde(default)]
    pub keep_indexes: bool,
    /// A reload's replacement that runs but is not ready within
    /// `listen_timeout` is killed and the old process stays (herd's rule,
    /// `listen_timeout_keeps_old`); otherwise PM2's: the replacement is kept
    /// and the old process stopped, with a warning. A replacement that dies
    /// always leaves the old one serving.
    #[serde(default)]
    pub listen_timeout_keeps_old: bool,
    /// Restart on exit.
    pub autorestart: bool,
    /// SIGINT → SIGKILL delay.
    pub kill_timeout_ms: u64,
    /// Runs shorter than this are unstable.
    pub min_uptime_ms: u64,
    /// Unstable restarts before `errored`.
    pub max_restarts: u32,
    /// Delay before an automatic restart.
    pub restart_delay_ms: u64,
    /// Exit codes that mean "done": no automatic restart (`stop_exit_codes`).
    #[serde(default)]
    pub stop_exit_codes: Vec<i32>,
    /// stdout log path (`out_file`); default `$HERD_HOME/logs/<name>-out-<id>.log`.
    #[serde(default)]
    pub out_file: Option<PathBuf>,
    /// stderr log path (`error_file`).
    #[serde(default)]
    pub error_file: Option<PathBuf>,
    /// All instances write the same `out_file`/`error_file` (no `-<id>`).
    #[serde(default)]
    pub merge_logs: bool,
    /// Combined log, timestamps, JSON lines, rotation.
    #[serde(default)]
    pub logs: LogSettings,
    /// Name of the variable holding the instance index (`instance_var`,
    /// default `NODE_APP_INSTANCE`).
    #[serde(default)]
    pub instance_var: Option<String>,
    /// A numeric variable incremented per instance (`increment_var`: e.g.
    /// `PORT` → 3000, 3001, …).
    #[serde(default)]
    pub increment_var: Option<String>,
    /// Ecosystem keys that were read but that herd does not act on yet,
    /// with their resolved values (shown by `herd show`).
    #[serde(default)]
    pub pending: BTreeMap<String, serde_json::Value>,
    /// The ecosystem file the app came from, if any.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// Restart an instance whose process tree's RSS exceeds this.
    #[serde(default)]
    pub max_memory_restart: Option<u64>,
    /// The app says when it is ready (`process.send('ready')`, or
    /// `READY=1` on `NOTIFY_SOCKET`); until then it gets no connections and
    /// a reload waits (`wait_ready`).
    #[serde(default)]
    pub wait_ready: bool,
    /// Stop by sending the message `shutdown` over the Node IPC channel
    /// instead of SIGINT (`shutdown_with_message`).
    #[serde(default)]
    pub shutdown_with_message: bool,
    /// Gather the app's own Prometheus metrics (its prom-client registry)
    /// from every instance into `herd metrics` (`app_metrics`).
    #[serde(default)]
    pub app_metrics: bool,
    /// How long a reload waits for a replacement to be ready (`listen_timeout`).
    #[serde(default = "default_listen_timeout_ms")]
    pub listen_timeout_ms: u64,
    /// Exponential backoff base for automatic restarts (×1.5, cap 15 s).
    #[serde(default)]
    pub exp_backoff_restart_delay_ms: Option<u64>,
    /// How often that RSS is sampled.
    #[serde(default = "default_memory_check_ms")]
    pub memory_check_ms: u64,
    /// Paths (absolute) whose changes restart the app (`watch`); empty: not
    /// watched. `watch: true` is the app's cwd.
    #[serde(default)]
    pub watch: Vec<PathBuf>,
    /// `ignore_watch` patterns, as written; added to what herd always
    /// ignores (see `supervisor::watch`).
    #[serde(default)]
    pub ignore_watch: Vec<String>,
    /// `watch_delay`: how long the watched files must be quiet before a
    /// watch restart.
    #[serde(default)]
    pub watch_delay_ms: u64,
    /// `cron_restart`: restart the app whenever this pattern matches
    /// (local time).
    #[serde(default)]
    pub cron_restart: Option<String>,
}

/// Default RSS sampling period for `max_memory_restart`: fast enough to act
/// within a few hundred ms (PM2 samples every 30 s), cheap (a few /proc reads).
pub const DEFAULT_MEMORY_CHECK_MS: u64 = 250;

/// Default wait for a reload's replacement to become ready (PM2's 3000 ms).
pub const DEFAULT_LISTEN_TIMEOUT_MS: u64 = 3000;

fn default_listen_timeout_ms() -> u64 {
    DEFAULT_LISTEN_TIMEOUT_MS
}

fn default_memory_check_ms() -> u64 {
    DEFAULT_MEMORY_CHECK_MS
}

/// How an app's connections are distributed (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The daemon accepts and passes each connection to a chosen worker.
    #[default]
    Fdpass,
    /// One SO_REUSEPORT listener per worker; the kernel hashes.
    Reuseport,
    /// One listener inherited by every worker; they race to accept.
    Shared,
}

/// Data-plane settings of one app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlaneConfig {
    /// Dispatch policy.
    pub policy: Policy,
    /// Acceptor threads (default: one per usable CPU).
    pub acceptors: Option<usize>,
    /// Listen backlog (default: somaxconn).
    pub backlog: Option<i32>,
    /// Multishot accept (false: single-shot, for comparison).
    pub multishot: bool,
    /// A worker leaving a connection unread (Node: unaccepted) this long is
    /// hung.
    pub ack_timeout_ms: u64,
    /// `warmup`: before a new worker joins the rotation, the daemon sends it
    /// `GET warmup_path` requests (8 per loopback connection) for this
    /// long (0: off), so its JIT is warm when real traffic comes.
    #[serde(default)]
    pub warmup_ms: u64,
    /// The path the warm-up requests ask for.
    #[serde(default = "default_warmup_path")]
    pub warmup_path: String,
}

/// The warm-up asks for `/` unless told otherwise.
pub fn default_warmup_path() -> String {
    "/".into()
}

/// An app's log settings beyond its file paths.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogSettings {
    /// `log_file`: stdout and stderr of the app together (per instance
    /// unless `merge_logs`, like `out_file`).
    pub log_file: Option<PathBuf>,
    /// `log_date_format` (day.js tokens; `time: true` gives PM2's
    /// `YYYY-MM-DDTHH:mm:ss`): each line starts with the date and `: `.
    pub date_format: Option<String>,
    /// `log_type: json`: one JSON object per line.
    pub json: bool,
    /// `log_max_size`: rotate a file when it reaches this many bytes.
    pub max_size: Option<u64>,
    /// `log_retain`: rotated files kept (default: 5, `logs::DEFAULT_RETAIN`).
    pub retain: Option<u32>,
}

/// Replaces, at any depth of `v`, every `env` / `base_env` object by the
/// count of its variables: for `Debug` output that may reach a log, where
/// environment values (tokens, passwords) must not.
pub fn redact_envs(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                match val {
                    serde_json::Value::Object(env) if k == "env" || k == "base_env" => {
                        *val = serde_json::Value::String(format!("<{} variables>", env.len()));
                    }
                    _ => redact_envs(val),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_envs),
        _ => {}
    }
}

impl std::fmt::Debug for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        redact_envs(&mut v);
        write!(f, "AppSpec {v}")
    }
}

/// Settings `herd restart` and `herd reload` change in the stored spec
/// before acting, as PM2's `pm2 restart api --node-args=…` does; the value
/// `null` on the command line removes a setting (`remove`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecPatch {
    /// `--node-args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter_args: Option<Vec<String>>,
    /// `--max-memory-restart` (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_restart: Option<u64>,
    /// `--kill-timeout` (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_timeout_ms: Option<u64>,
    /// `--no-watch` (false); true turns watching on whatever it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<bool>,
    /// `--watch` on restart or reload: watching toggles (on if it was off,
    /// off if it was on), as PM2's `restart --watch` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub toggle_watch: bool,
    /// `--env KEY=VALUE`, added over the app's env.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Settings to remove (`--node-args=null`): `node_args`,
    /// `max_memory_restart`; the daemon refuses others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl std::fmt::Debug for SpecPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        redact_envs(&mut v);
        write!(f, "SpecPatch {v}")
    }
}

impl SpecPatch {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == SpecPatch::default()
    }
}

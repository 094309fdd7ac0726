//! [`InstanceInfo`]: one instance as `list`, `show` and `jlist` see it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Channel, Distribution, ExecMode, Exit, Policy, Status};

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
    /// fdpass: connections whose idempotent request its dead processes
    /// had read and not answered, sent again to another worker (Node apps
    /// on herd's preload; `HERD_REPLAY`).
    #[serde(default)]
    pub replayed_on_death: u64,
    /// fdpass: connections lost with its dead processes because they had
    /// started on them (read a byte, written none: no answer).
    #[serde(default)]
    pub lost_started: u64,
    /// fdpass: connections its dead processes had written to (usually the
    /// whole answer) and not yet shut down, closed with them.
    #[serde(default)]
    pub cut_after_write: u64,
    /// fdpass: connections its current process closed (Node's own
    /// `newconn` path: accepted).
    #[serde(default)]
    pub closed: u64,
    /// fdpass: connections its current process gave back untouched for
    /// another worker (a failed send, a refusal, unread when it stopped
    /// reading).
    #[serde(default)]
    pub handed_on: u64,
    /// Requests its workers reported (herd workers, herd's Node preload).
    #[serde(default)]
    pub requests: u64,
    /// CPU time of its current process, seconds.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Restarts by reason (`crash`, `memory`, `watch`, `cron`, `reload`,
    /// `manual`); reasons with none are left out.
    #[serde(default)]
    pub restarts_by_reason: BTreeMap<String, u32>,
    /// Its app's fairness over the last 10 s: Jain's index of connections
    /// dispatched per instance (fdpass) or requests reported (other modes);
    /// the same on every instance of the app; null until measured.
    #[serde(default)]
    pub fairness: Option<f64>,
    /// The same window's busiest instance over the mean, or null.
    #[serde(default)]
    pub max_over_mean: Option<f64>,
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
    /// fdpass, least-conn and least-time: the service time per connection
    /// (µs) the outlier rule judges the current process by (the RANKth
    /// fastest of its recent close times), while it has recent samples.
    #[serde(default)]
    pub service_floor_us: Option<u64>,
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
    /// `app_metrics`: the app's own Prometheus metrics are gathered into
    /// `herd metrics`.
    #[serde(default)]
    pub app_metrics: bool,
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

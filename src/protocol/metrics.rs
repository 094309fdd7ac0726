//! The figures `herd metrics`, `herd monit` and the `/metrics` endpoint
//! read ([`Request::Metrics`](super::Request::Metrics)): plain numbers in
//! base units (seconds, bytes), so any renderer (Prometheus text, a table,
//! a dashboard) needs nothing but these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A histogram as the wire carries it: count, exact sum, percentiles and
/// cumulative counts at fixed bounds, all in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Their sum, seconds.
    pub sum_seconds: f64,
    /// Median, seconds.
    pub p50: f64,
    /// 90th percentile, seconds.
    pub p90: f64,
    /// 99th percentile, seconds.
    pub p99: f64,
    /// 99.9th percentile, seconds.
    pub p999: f64,
    /// Largest, seconds.
    pub max: f64,
    /// (upper bound in seconds, values at or below it), ascending.
    pub buckets: Vec<(f64, u64)>,
}

/// How evenly an app's instances shared the work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    /// What was counted: `connections` (fdpass: dispatched by herd) or
    /// `requests` (reported by the workers).
    pub of: String,
    /// Jain's index over the per-instance counts, 1/n to 1.
    pub jain: f64,
    /// The busiest instance's count over the mean, 1 to n.
    pub max_over_mean: f64,
    /// Counted in all.
    pub total: u64,
    /// Over how many seconds.
    pub seconds: f64,
    /// `total / seconds`.
    pub per_second: f64,
}

/// The daemon's own process (Prometheus's standard `process_*` series).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonFigures {
    /// Its pid.
    pub pid: u32,
    /// herd's version.
    pub version: String,
    /// When it started, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Its file descriptor limit (soft).
    pub max_fds: u64,
    /// Threads.
    pub threads: u64,
}

/// One app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppFigures {
    /// Its name.
    pub name: String,
    /// `fdpass`, `reuseport`, `shared` or `none`.
    pub distribution: String,
    /// fdpass: connections accepted on its port.
    pub accepted: Option<u64>,
    /// fdpass: connections closed because no worker was ready and the
    /// holding queue was full.
    pub dropped: u64,
    /// fdpass: connections the daemon holds because no worker is ready.
    pub held: u64,
    /// Fairness over the last 10 s (`None` until two ticks passed).
    pub window: Option<Fairness>,
    /// Fairness since the app's instances were created.
    pub total: Option<Fairness>,
    /// fdpass: accept to the worker's channel.
    pub handoff: Option<Summary>,
    /// Connection open time, as the workers report it (herd workers and
    /// herd's Node preload in fdpass mode).
    pub connection_duration: Option<Summary>,
    /// Request latency, as the workers report it (herd's hello worker,
    /// herd's Node preload: `request` to the response's `finish`).
    pub requests: Option<Summary>,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceFigures {
    /// Global id.
    pub id: u32,
    /// Its app.
    pub app: String,
    /// Index within the app (`NODE_APP_INSTANCE`).
    pub instance: u32,
    /// Its process, while one runs.
    pub pid: Option<i32>,
    /// Status (PM2's names).
    pub status: String,
    /// fdpass: connections handed to it, over all its processes.
    pub dispatched: u64,
    /// fdpass: of those, closed (herd workers, the Node preload's channel)
    /// or accepted (Node's own `newconn` path, which reports no close).
    pub closed: u64,
    /// fdpass: in its hands or on their way now.
    pub in_flight: u64,
    /// fdpass: given back for another worker (its process died or stopped
    /// reading, or a send failed): untouched, or its idempotent request
    /// replayed.
    pub handed_on: u64,
    /// fdpass: lost with a dead process that had read from them and
    /// written nothing.
    pub lost_started: u64,
    /// fdpass: closed with a dead process that had written to them and
    /// not shut down (the client keeps what was written).
    #[serde(default)]
    pub cut_after_write: u64,
    /// Requests its workers reported.
    pub requests: u64,
    /// CPU time of its current process, seconds.
    pub cpu_seconds: f64,
    /// Resident memory of its current process, bytes.
    pub memory_bytes: u64,
    /// `max_memory_restart`, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// Restarts by reason: crash, memory, watch, cron, reload, manual.
    pub restarts: BTreeMap<String, u32>,
    /// Seconds its current process has run.
    pub uptime_seconds: f64,
}

/// Everything, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The daemon.
    pub daemon: DaemonFigures,
    /// Apps, by name.
    pub apps: Vec<AppFigures>,
    /// Instances, by id.
    pub instances: Vec<InstanceFigures>,
    /// `app_metrics` apps: each instance's own Prometheus text (asked for
    /// with `Request::Metrics { app_metrics: true }`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_texts: Vec<AppText>,
}

/// One instance's own metrics, or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppText {
    /// Its app.
    pub app: String,
    /// Its index within the app.
    pub instance: u32,
    /// The Prometheus text it gave.
    pub text: Option<String>,
    /// Why it gave none (no prom-client, no answer within a second, …).
    pub error: Option<String>,
}

/// Why an instance restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// Its process exited and autorestart brought it back.
    Crash,
    /// It went over `max_memory_restart`.
    Memory,
    /// A watched file changed.
    Watch,
    /// Its `cron_restart` came due.
    Cron,
    /// `herd reload` (or a start that reloads it).
    Reload,
    /// `herd restart` (or a start that restarts it).
    Manual,
}

impl RestartReason {
    /// Every reason, in the order they are shown.
    pub const ALL: [RestartReason; 6] = [
        RestartReason::Crash,
        RestartReason::Memory,
        RestartReason::Watch,
        RestartReason::Cron,
        RestartReason::Reload,
        RestartReason::Manual,
    ];

    /// Its name (the `reason` label).
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Memory => "memory",
            RestartReason::Watch => "watch",
            RestartReason::Cron => "cron",
            RestartReason::Reload => "reload",
            RestartReason::Manual => "manual",
        }
    }
}

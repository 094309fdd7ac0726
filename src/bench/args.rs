//! The options of `herd bench` (parsed by the CLI with clap).

use clap::Args;

/// Options of `herd bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Instances of the app: a number, `max`, 0 or -N (as `start -i`).
    #[arg(
        short = 'i',
        long = "instances",
        default_value = "max",
        allow_hyphen_values = true
    )]
    pub instances: String,
    /// Seconds of load per scenario.
    #[arg(short = 'd', long, default_value = "3", value_name = "SECONDS")]
    pub duration: String,
    /// Concurrent client connections.
    #[arg(short = 'c', long, default_value_t = 32)]
    pub connections: usize,
    /// Load-generator threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Scenarios, comma-separated: `close` (a connection per request),
    /// `keepalive`, `crash` (connection per request while a random worker
    /// is killed with SIGKILL every `--crash-every`), `reload` (while the
    /// target reloads every `--reload-every`: herd's rolling reload,
    /// `pm2 reload`, nginx's SIGHUP), `scale` (while the target goes to
    /// twice its instances and back every `--scale-every`: herd scale, `pm2
    /// scale`), `memory` (while every worker leaks `--leak` MB/s under a
    /// `--max-memory` cap: herd's and PM2's `max_memory_restart`; the
    /// built-in hello worker leaks by itself, an app must read
    /// `LEAK_MB_PER_SEC` as bench-apps/node/leak.js does), or `all` (close
    /// and keepalive).
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// The crash scenario's interval between two kills.
    #[arg(long = "crash-every", default_value = "400ms", value_name = "DURATION")]
    pub crash_every: String,
    /// The reload scenario's interval between two reloads (each runs to
    /// its end first).
    #[arg(long = "reload-every", default_value = "1s", value_name = "DURATION")]
    pub reload_every: String,
    /// The scale scenario's interval between two steps (to twice the
    /// instances, then back).
    #[arg(long = "scale-every", default_value = "1s", value_name = "DURATION")]
    pub scale_every: String,
    /// The memory scenario's RSS cap per worker (`max_memory_restart`).
    #[arg(long = "max-memory", default_value = "64M", value_name = "SIZE")]
    pub max_memory: String,
    /// The memory scenario's leak, MB a second in each worker.
    #[arg(long, default_value_t = 40, value_name = "MB_PER_S")]
    pub leak: u32,
    /// Distribution mode: `fdpass`, `reuseport`, `shared`, or `all` (side by side).
    #[arg(long, default_value = "fdpass")]
    pub mode: String,
    /// fdpass dispatch policy: `least-conn`, `round-robin`, `p2c`,
    /// `least-time`; several, comma-separated, run one fdpass target each.
    #[arg(long, default_value = "least-conn")]
    pub policy: String,
    /// Compare herd with its peers on the same app, instances and load, one
    /// after another in one sitting: a comma list of `fdpass`, `reuseport`,
    /// `shared`, `pm2`, `node-cluster`, `node`, `nginx`, or `all` (the
    /// default). Peers that are missing, or do not fit the app, are skipped
    /// with the reason (bench-apps/install-peers.sh installs them).
    #[arg(long, value_name = "TARGETS", num_args = 0..=1, default_missing_value = "all",
          conflicts_with_all = ["mode", "target"])]
    pub compare: Option<String>,
    /// Also write DIR/report.json, DIR/report.md and SVG charts
    /// (throughput, latency CDF, per-worker counts) of the run.
    #[arg(long, value_name = "DIR")]
    pub report: Option<std::path::PathBuf>,
    /// fdpass: single-shot accept instead of multishot.
    #[arg(long = "no-multishot")]
    pub no_multishot: bool,
    /// Make instance 0 of the hello worker this many ms slower per response
    /// (the skewed scenario: does dispatch route around a slow worker?).
    #[arg(long = "skew-ms", default_value_t = 0)]
    pub skew_ms: u64,
    /// Benchmark this app instead of the built-in hello worker (e.g.
    /// `bench-apps/node/app.js`); it must serve HTTP on `PORT`.
    #[arg(long, value_name = "SCRIPT")]
    pub app: Option<String>,
    /// Only load an already running server at HOST:PORT (e.g. one started
    /// by PM2), with the same load generator and report.
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["app", "skew_ms"])]
    pub target: Option<String>,
    /// Do not pin workers to cores.
    #[arg(long = "no-pin")]
    pub no_pin: bool,
    /// reuseport: `SO_INCOMING_CPU` on the pinned workers' listeners.
    #[arg(long = "incoming-cpu")]
    pub incoming_cpu: bool,
    /// Run the modes this many times, alternating (fdpass, reuseport, …,
    /// fdpass, …), and summarize each by its median: on a noisy machine
    /// one pass in a row compares moments as much as modes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Open loop: send this many requests per second in all, each due at
    /// its time, and count latency from when it was due (wrk2's correction
    /// for coordinated omission); without it, each connection sends its
    /// next request when the last is answered.
    #[arg(long, value_name = "REQ_PER_S", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// After each scenario's closed-loop run, open-loop runs (as `--rate`)
    /// find the highest rate whose p99 stays within this bound (e.g.
    /// `10ms`): one at half the closed-loop rate, then a bisection, six
    /// runs of `--duration` each.
    #[arg(long, value_name = "P99", conflicts_with = "rate")]
    pub sweep: Option<String>,
    /// A scaling curve: the whole benchmark once per point, with `-i`
    /// (`workers`: 2,4,…,256 by default, oversubscribing the cores) or `-c`
    /// (`connections`: 64,256,1000,4000,10000, the fd limit raised) set to
    /// it; `workers=2,8,32` names the points. The report says where each
    /// cost per connection stays flat and where it grows.
    #[arg(long, value_name = "AXIS[=LIST]", conflicts_with = "check")]
    pub curve: Option<String>,
    /// Print the raw results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Judge the results against a thresholds file (one table per
    /// scenario: `[conn_per_request]` `min_jain = 0.99`; see
    /// docs/BENCHMARKS.md): exits non-zero naming each threshold that
    /// failed and by how much.
    #[arg(long, value_name = "THRESHOLDS.toml")]
    pub check: Option<std::path::PathBuf>,
    /// With `--check` or `--report`: judge or chart a report saved with
    /// `--json` instead of running the benchmark.
    #[arg(long, value_name = "REPORT.json")]
    pub results: Option<std::path::PathBuf>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 10_000_000.0 => Ok(r),
        _ => Err(format!(
            "`{s}`: expected requests per second, a number above 0 and at most 10000000"
        )),
    }
}

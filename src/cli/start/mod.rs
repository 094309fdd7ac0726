//! `herd start <script> [options] [-- args…]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

mod requests;

use crate::config::{self, ecosystem, AppSpec, ExecMode, Instances};
use crate::error::{Error, Result};
pub(crate) use requests::send;
pub use requests::{
    file_requests, requests, requests_without_daemon, run, spec_from_args, specs_from_file,
};

/// Options of `herd start`, named as in PM2.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Script or executable to run, or an ecosystem file
    /// (`ecosystem.config.js`, `.json`, `.yaml`, `herd.toml`).
    #[arg(required = true, index = 1)]
    pub script: Option<String>,
    /// More scripts, each started with the same options
    /// (`herd start a.js b.js -i 2`).
    #[arg(index = 2, value_name = "MORE")]
    pub more: Vec<String>,
    /// Instances: a number, `max` (one per CPU), 0 (= max) or -N (= max - N).
    /// Implies cluster mode.
    #[arg(
        short = 'i',
        long = "instances",
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub instances: Option<String>,
    /// App name (default: the script's file name without extension).
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Interpreter (default by extension: .js → node, .py → python3, .sh →
    /// bash; `none` runs the file itself).
    #[arg(long)]
    pub interpreter: Option<String>,
    /// Arguments for the interpreter (e.g. `--node-args="--max-old-space-size=512"`).
    #[arg(
        long = "node-args",
        visible_alias = "interpreter-args",
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub node_args: Option<String>,
    /// Working directory of the app (default: the current directory).
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable for the app (`--env KEY=VAL`, repeatable),
    /// or pick an ecosystem file's environment (`--env production` merges
    /// `env_production` over `env`).
    #[arg(long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    /// Port herd listens on for the app (cluster mode, one SO_REUSEPORT
    /// listener per instance passed as fd 3). Default: PORT from --env.
    #[arg(long, value_name = "PORT", allow_hyphen_values = true)]
    pub port: Option<String>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    /// How connections reach the instances of a cluster app: `fdpass` (the
    /// daemon accepts and passes each connection to a worker), `reuseport`
    /// (a SO_REUSEPORT listener per worker) or `shared` (one listener, the
    /// workers race).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// fdpass dispatch policy: `least-conn`, `round-robin`, `p2c` or `least-time`.
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<String>,
    /// fdpass acceptor threads (default: one per usable CPU).
    #[arg(long, value_name = "N")]
    pub acceptors: Option<String>,
    /// Listen backlog (default: /proc/sys/net/core/somaxconn).
    #[arg(long, value_name = "N")]
    pub backlog: Option<String>,
    /// fdpass: a worker that leaves a connection unread this long is hung:
    /// out of rotation, killed, its connections re-dispatched.
    #[arg(long = "ack-timeout", value_name = "DURATION")]
    pub ack_timeout: Option<String>,
    /// fdpass: use single-shot accept instead of multishot (for comparison).
    #[arg(long = "no-multishot")]
    pub no_multishot: bool,
    /// Do not pin instance i to CPU i mod N.
    #[arg(long = "no-pin")]
    pub no_pin: bool,
    /// Scale-down retires the highest instance indexes, so
    /// NODE_APP_INSTANCE stays 0..n-1 (default: PM2's, lowest ids first).
    #[arg(long = "keep-indexes")]
    pub keep_indexes: bool,
    /// A reload's replacement not ready within --listen-timeout is killed
    /// and the old process keeps serving (default: PM2's, the replacement
    /// is kept and the old one stopped).
    #[arg(long = "listen-timeout-keeps-old")]
    pub listen_timeout_keeps_old: bool,
    /// Do not restart the app when it exits.
    #[arg(long = "no-autorestart")]
    pub no_autorestart: bool,
    /// Delay between SIGINT and SIGKILL on stop (ms or `2s`).
    #[arg(long = "kill-timeout", value_name = "DURATION")]
    pub kill_timeout: Option<String>,
    /// Runs shorter than this count as unstable (ms or `1s`).
    #[arg(long = "min-uptime", value_name = "DURATION")]
    pub min_uptime: Option<String>,
    /// Unstable restarts before the app is marked errored.
    #[arg(long = "max-restarts", value_name = "N")]
    pub max_restarts: Option<String>,
    /// Delay before an automatic restart (ms or `1s`).
    #[arg(long = "restart-delay", value_name = "DURATION")]
    pub restart_delay: Option<String>,
    /// The app says when it is ready: `process.send('ready')` (Node) or
    /// `READY=1` on `$NOTIFY_SOCKET` (sd_notify); no connections and no
    /// reload hand-over before that.
    #[arg(long = "wait-ready")]
    pub wait_ready: bool,
    /// Stop with the IPC message `shutdown` instead of SIGINT (Node apps).
    #[arg(long = "shutdown-with-message")]
    pub shutdown_with_message: bool,
    /// Gather the app's own Prometheus metrics (its prom-client registry,
    /// from every instance, through herd's Node preload) into
    /// `herd metrics` and `/metrics`, labelled by app and instance.
    #[arg(long = "app-metrics")]
    pub app_metrics: bool,
    /// How long `herd reload` waits for a replacement to be ready (default
    /// 3000 ms, as PM2); one still running then is kept, the old one stops.
    #[arg(long = "listen-timeout", value_name = "DURATION")]
    pub listen_timeout: Option<String>,
    /// Exponential backoff for automatic restarts: this delay, ×1.5 after
    /// each restart, at most 15 s (PM2's `--exp-backoff-restart-delay`).
    #[arg(long = "exp-backoff-restart-delay", value_name = "DURATION")]
    pub exp_backoff_restart_delay: Option<String>,
    /// Restart an instance when the RSS of its whole process tree exceeds
    /// this (`300M`, `1G`); checked every --memory-check-interval.
    #[arg(long = "max-memory-restart", value_name = "SIZE")]
    pub max_memory_restart: Option<String>,
    /// How often --max-memory-restart samples the RSS (default 250ms).
    #[arg(long = "memory-check-interval", value_name = "DURATION")]
    pub memory_check_interval: Option<String>,
    /// reuseport: steer each connection to the pinned worker on the CPU
    /// that handled its packets (`SO_INCOMING_CPU`).
    #[arg(long = "incoming-cpu")]
    pub incoming_cpu: bool,
    /// fdpass: before a new worker joins the rotation, send it `GET /`
    /// requests (8 per loopback connection) for this long (its JIT warms
    /// up on them, not on your clients). Off by default.
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<String>,
    /// The path the warm-up requests ask for (default `/`).
    #[arg(long = "warmup-path", value_name = "PATH")]
    pub warmup_path: Option<String>,
    /// Log files, timestamps, rotation.
    #[command(flatten)]
    pub logs: super::logs::LogFlags,
    /// Restart the app when a file under its cwd changes (an ecosystem
    /// file's `watch` paths, if it names some).
    #[arg(long)]
    pub watch: bool,
    /// Changes that do not restart the app: names (`logs`, `*.log`) or
    /// paths from the cwd (`./tmp`); comma- or space-separated, repeatable.
    /// node_modules, __pycache__, hidden names and herd's logs are always
    /// ignored.
    #[arg(long = "ignore-watch", value_name = "PATTERNS")]
    pub ignore_watch: Vec<String>,
    /// How long watched files must be quiet before the restart: seconds,
    /// as in PM2 (`4`), or a duration (`500ms`, `2s`). Default 0.
    #[arg(long = "watch-delay", value_name = "DURATION")]
    pub watch_delay: Option<String>,
    /// Restart the app whenever this cron pattern matches, in local time:
    /// 5 fields, or 6 with seconds first, or `@daily`-style; `0` turns it off.
    #[arg(
        short = 'c',
        long = "cron-restart",
        visible_alias = "cron",
        value_name = "PATTERN"
    )]
    pub cron_restart: Option<String>,
    /// Start another copy even if this app already runs.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Exit codes after which the app is not restarted (`--stop-exit-codes 0 3`
    /// or `0,3`).
    #[arg(long = "stop-exit-codes", value_name = "CODE", num_args = 1.., value_delimiter = ',')]
    pub stop_exit_codes: Vec<String>,
    /// Fork mode (PM2's `-x`): the instances are plain processes, with no
    /// port of herd's, even with `-i`.
    #[arg(short = 'x', long = "execute-command")]
    pub execute_command: bool,
    /// With an ecosystem file: start only these apps (comma-separated).
    #[arg(long, value_name = "APPS")]
    pub only: Vec<String>,
    /// A script's app that already runs: restart it with the new spec and
    /// environment. (An ecosystem file's running apps always get the
    /// file's spec, by a zero-downtime reload; PM2 restarts them.)
    #[arg(long = "update-env")]
    pub update_env: bool,
    /// Print the resulting instances as JSON.
    #[arg(long)]
    pub json: bool,
    /// Arguments passed to the script (after `--`).
    #[arg(last = true, index = 3, value_name = "ARGS")]
    pub args: Vec<String>,
}

impl StartArgs {
    /// The script or file argument (`herd run --resurrect` may have none).
    pub fn script(&self) -> &str {
        self.script.as_deref().unwrap_or_default()
    }
}

/// The flags of `herd start`, parsed and checked; `None` where not given,
/// so an ecosystem file's value is only overridden by a flag the user typed.
#[derive(Debug, Default)]
pub struct Overrides {
    instances: Option<Instances>,
    name: Option<String>,
    /// `Some(None)`: `--interpreter none`.
    interpreter: Option<Option<String>>,
    interpreter_args: Option<Vec<String>>,
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
    port: Option<u16>,
    host: Option<String>,
    mode: Option<crate::accept::Mode>,
    policy: Option<crate::accept::pool::Policy>,
    acceptors: Option<usize>,
    backlog: Option<i32>,
    multishot: Option<bool>,
    ack_timeout_ms: Option<u64>,
    pin: Option<bool>,
    keep_indexes: Option<bool>,
    listen_timeout_keeps_old: Option<bool>,
    autorestart: Option<bool>,
    kill_timeout_ms: Option<u64>,
    min_uptime_ms: Option<u64>,
    max_restarts: Option<u32>,
    restart_delay_ms: Option<u64>,
    max_memory_restart: Option<u64>,
    memory_check_ms: Option<u64>,
    exp_backoff_ms: Option<u64>,
    listen_timeout_ms: Option<u64>,
    wait_ready: bool,
    shutdown_with_message: bool,
    app_metrics: bool,
    fork: bool,
    stop_exit_codes: Option<Vec<i32>>,
    incoming_cpu: bool,
    warmup_ms: Option<u64>,
    warmup_path: Option<String>,
    logs: super::logs::LogOverrides,
    watch: bool,
    ignore_watch: Option<Vec<String>>,
    watch_delay_ms: Option<u64>,
    /// `Some(None)`: `--cron-restart 0`.
    cron_restart: Option<Option<String>>,
    args: Vec<String>,
}

fn bad(what: &str, value: &str, expected: &str) -> Error {
    Error::InvalidArg {
        what: what.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// `--env` values: `KEY=VALUE` pairs, and ecosystem environment names
/// (`production`), apart.
pub(crate) fn env_flags(v: &[String]) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut env = BTreeMap::new();
    let mut names = Vec::new();
    for pair in v {
        if pair.contains('=') {
            let (k, v) = config::parse_env_pair(pair)?;
            env.insert(k, v);
        } else if !pair.is_empty()
            && pair
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            names.push(pair.clone());
        } else {
            return Err(bad(
                "--env",
                pair,
                "KEY=VALUE, or an ecosystem environment name like `production`",
            ));
        }
    }
    Ok((env, names))
}

fn positive(what: &str, v: &Option<String>, max: i64) -> Result<Option<i64>> {
    v.as_deref()
        .map(|s| match s.trim().parse::<i64>() {
            Ok(n) if n >= 1 && n <= max => Ok(n),
            _ => Err(bad(what, s, &format!("a whole number from 1 to {max}"))),
        })
        .transpose()
}

/// `--watch-delay`: a bare number is seconds, as in PM2 (`4`, `1.5`).
fn watch_delay(v: &Option<String>) -> Result<Option<u64>> {
    let Some(s) = v.as_deref() else {
        return Ok(None);
    };
    let t = s.trim();
    let bare = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    let ms = if bare {
        ecosystem::units::duration_str_ms(&format!("{t}s"))
    } else {
        ecosystem::units::duration_str_ms(t)
    };
    ms.map(Some).ok_or_else(|| {
        bad(
            "--watch-delay",
            s,
            "seconds (`4`, `1.5`, as in PM2) or a duration like `500ms`, `2s`",
        )
    })
}

/// `--ignore-watch`: comma- or space-separated, repeatable.
fn ignore_watch(v: &[String]) -> Option<Vec<String>> {
    let all: Vec<String> = v
        .iter()
        .flat_map(|s| s.split([',', ' ', '\t']))
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    for p in all.iter().filter(|p| ecosystem::units::looks_like_regex(p)) {
        eprintln!(
            "warning: --ignore-watch: `{p}` looks like a regular expression; herd matches names, paths and `*`, `?`, `**` globs (e.g. `*.log`), so it is taken literally"
        );
    }
    (!v.is_empty()).then_some(all)
}

fn duration(what: &str, v: &Option<String>) -> Result<Option<u64>> {
    v.as_deref()
        .map(|s| config::parse_duration_ms(what, s))
        .transpose()
}

impl Overrides {
    /// Parses and checks every flag. `env_names` collects `--env NAME`
    /// (an ecosystem environment) apart from `--env KEY=VALUE`.
    pub fn parse(a: &StartArgs, env_names: &mut Vec<String>) -> Result<Overrides> {
        let cur = super::current_dir()?;
        let cwd = a.cwd.as_ref().map(|c| cur.join(c));
        if let Some(c) = &cwd {
            if !c.is_dir() {
                return Err(bad(
                    "--cwd",
                    &c.display().to_string(),
                    "an existing directory",
                ));
            }
        }
        if let Some(n) = &a.name {
            config::validate_name(n)?;
        }
        let (env, names) = env_flags(&a.env)?;
        env_names.extend(names);
        let port = match (&a.port, env.get("PORT")) {
            (Some(p), _) => Some(config::parse_port(p)?),
            (None, Some(p)) => Some(
                config::parse_port(p)
                    .map_err(|_| bad("--env PORT", p, "a port number from 1 to 65535"))?,
            ),
            (None, None) => None,
        };
        let interpreter = match a.interpreter.as_deref() {
            Some("none") => Some(None),
            Some(i) if !i.is_empty() => Some(Some(i.to_string())),
            Some(_) => {
                return Err(bad(
                    "--interpreter",
                    "",
                    "an interpreter name or path, or `none`",
                ))
            }
            None => None,
        };
        let mode = a
            .mode
            .as_deref()
            .map(|m| {
                crate::accept::Mode::parse(m)
                    .ok_or_else(|| bad("--mode", m, "`fdpass`, `reuseport` or `shared`"))
            })
            .transpose()?;
        let policy = a
            .policy
            .as_deref()
            .map(|p| {
                crate::accept::pool::Policy::parse(p).ok_or_else(|| {
                    bad(
                        "--policy",
                        p,
                        "`least-conn`, `round-robin`, `p2c` or `least-time`",
                    )
                })
            })
            .transpose()?;
        if let Some(h) = &a.host {
            if h.parse::<std::net::IpAddr>().is_err() {
                return Err(bad(
                    "--host",
                    h,
                    "an IP address such as 0.0.0.0, 127.0.0.1 or ::",
                ));
            }
        }
        let logs = super::logs::LogOverrides::parse(&a.logs, cwd.as_deref().unwrap_or(&cur))?;
        Ok(Overrides {
            instances: a.instances.as_deref().map(Instances::parse).transpose()?,
            name: a.name.clone(),
            interpreter,
            interpreter_args: a
                .node_args
                .as_deref()
                .map(|s| s.split_whitespace().map(String::from).collect()),
            cwd,
            env,
            port,
            host: a.host.clone(),
            mode,
            policy,
            acceptors: positive(
                "--acceptors",
                &a.acceptors,
                crate::config::limits::MAX_ACCEPTORS as i64,
            )?
            .map(|n| n as usize),
            backlog: positive("--backlog", &a.backlog, i32::MAX as i64)?.map(|n| n as i32),
            multishot: a.no_multishot.then_some(false),
            ack_timeout_ms: duration("--ack-timeout", &a.ack_timeout)?.map(|ms| ms.max(1)),
            pin: a.no_pin.then_some(false),
            keep_indexes: a.keep_indexes.then_some(true),
            listen_timeout_keeps_old: a.listen_timeout_keeps_old.then_some(true),
            autorestart: a.no_autorestart.then_some(false),
            kill_timeout_ms: duration("--kill-timeout", &a.kill_timeout)?,
            min_uptime_ms: duration("--min-uptime", &a.min_uptime)?,
            max_restarts: a
                .max_restarts
                .as_deref()
                .map(|s| {
                    s.trim()
                        .parse::<u32>()
                        .map_err(|_| bad("--max-restarts", s, "a whole number (0 or more)"))
                })
                .transpose()?,
            restart_delay_ms: duration("--restart-delay", &a.restart_delay)?,
            max_memory_restart: a
                .max_memory_restart
                .as_deref()
                .map(|s| config::parse_size("--max-memory-restart", s))
                .transpose()?,
            listen_timeout_ms: duration("--listen-timeout", &a.listen_timeout)?.map(|ms| ms.max(1)),
            exp_backoff_ms: duration("--exp-backoff-restart-delay", &a.exp_backoff_restart_delay)?
                .map(|ms| ms.max(1)),
            memory_check_ms: duration("--memory-check-interval", &a.memory_check_interval)?
                .map(|ms| ms.max(10)),
            wait_ready: a.wait_ready,
            incoming_cpu: a.incoming_cpu,
            warmup_ms: duration("--warmup", &a.warmup)?,
            warmup_path: a
                .warmup_path
                .as_deref()
                .map(|p| config::parse_warmup_path("--warmup-path", p))
                .transpose()?,
            shutdown_with_message: a.shutdown_with_message,
            app_metrics: a.app_metrics,
            logs,
            watch: a.watch,
            ignore_watch: ignore_watch(&a.ignore_watch),
            watch_delay_ms: watch_delay(&a.watch_delay)?,
            cron_restart: a
                .cron_restart
                .as_deref()
                .map(|c| config::parse_cron("--cron-restart", c))
                .transpose()?,
            args: a.args.clone(),
            fork: a.execute_command,
            stop_exit_codes: (!a.stop_exit_codes.is_empty())
                .then(|| {
                    a.stop_exit_codes
                        .iter()
                        .map(|c| match c.trim().parse::<i32>() {
                            Ok(n) if (0..=255).contains(&n) => Ok(n),
                            _ => Err(bad("--stop-exit-codes", c, "exit codes from 0 to 255")),
                        })
                        .collect::<Result<Vec<i32>>>()
                })
                .transpose()?,
        })
    }

    /// Applies the flags the user gave over `spec` (file values or defaults).
    pub fn apply(&self, spec: &mut AppSpec) {
        if let Some(i) = self.instances {
            spec.instances = i;
            spec.exec_mode = ExecMode::Cluster;
        }
        if let Some(n) = &self.name {
            spec.name = n.clone();
        }
        if let Some(i) = &self.interpreter {
            spec.interpreter = i.clone();
        }
        if let Some(a) = &self.interpreter_args {
            spec.interpreter_args = a.clone();
        }
        spec.env
            .extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        // A value typed on the command line is a string.
        spec.env_types.retain(|k, _| !self.env.contains_key(k));
        if let Some(p) = self.port {
            spec.port = Some(p);
            spec.exec_mode = ExecMode::Cluster;
        }
        if let Some(h) = &self.host {
            spec.host = h.clone();
        }
        if let Some(m) = self.mode {
            spec.mode = m;
        }
        if let Some(p) = self.policy {
            spec.plane.policy = p;
        }
        if self.acceptors.is_some() {
            spec.plane.acceptors = self.acceptors;
        }
        if self.backlog.is_some() {
            spec.plane.backlog = self.backlog;
        }
        if let Some(m) = self.multishot {
            spec.plane.multishot = m;
        }
        if let Some(t) = self.ack_timeout_ms {
            spec.plane.ack_timeout_ms = t;
        }
        if let Some(p) = self.pin {
            spec.pin = p;
        }
        if let Some(k) = self.keep_indexes {
            spec.keep_indexes = k;
        }
        if let Some(k) = self.listen_timeout_keeps_old {
            spec.listen_timeout_keeps_old = k;
        }
        if let Some(a) = self.autorestart {
            spec.autorestart = a;
        }
        if let Some(t) = self.kill_timeout_ms {
            spec.kill_timeout_ms = t;
        }
        if let Some(t) = self.min_uptime_ms {
            spec.min_uptime_ms = t;
        }
        if let Some(n) = self.max_restarts {
            spec.max_restarts = n;
        }
        if let Some(t) = self.restart_delay_ms {
            spec.restart_delay_ms = t;
        }
        if self.max_memory_restart.is_some() {
            spec.max_memory_restart = self.max_memory_restart;
        }
        if let Some(ms) = self.listen_timeout_ms {
            spec.listen_timeout_ms = ms;
        }
        if self.exp_backoff_ms.is_some() {
            spec.exp_backoff_restart_delay_ms = self.exp_backoff_ms;
        }
        if let Some(ms) = self.memory_check_ms {
            spec.memory_check_ms = ms;
        }
        spec.wait_ready |= self.wait_ready;
        spec.incoming_cpu |= self.incoming_cpu;
        if let Some(ms) = self.warmup_ms {
            spec.plane.warmup_ms = ms;
        }
        if let Some(p) = &self.warmup_path {
            spec.plane.warmup_path = p.clone();
        }
        spec.shutdown_with_message |= self.shutdown_with_message;
        spec.app_metrics |= self.app_metrics;
        self.logs.apply(spec);
        if self.watch && spec.watch.is_empty() {
            spec.watch = vec![spec.cwd.clone()];
        }
        if let Some(i) = &self.ignore_watch {
            spec.ignore_watch = i.clone();
        }
        if let Some(ms) = self.watch_delay_ms {
            spec.watch_delay_ms = ms;
        }
        if let Some(c) = &self.cron_restart {
            spec.cron_restart = c.clone();
        }
        if !self.args.is_empty() {
            spec.args = self.args.clone();
        }
        if self.fork {
            spec.exec_mode = ExecMode::Fork;
        }
        if let Some(c) = &self.stop_exit_codes {
            spec.stop_exit_codes = c.clone();
        }
    }
}

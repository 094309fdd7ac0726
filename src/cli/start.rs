//! `herd start <script> [options] [-- args…]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::client;
use crate::config::{self, AppSpec, ExecMode, Instances};
use crate::error::{Error, Result};
use crate::protocol::{Request, Response};

/// Options of `herd start`, named as in PM2.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Script or executable to run.
    pub script: String,
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
    /// Set an environment variable for the app (repeatable).
    #[arg(long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    /// Port herd listens on for the app (cluster mode, one SO_REUSEPORT
    /// listener per instance passed as fd 3). Default: PORT from --env.
    #[arg(long, value_name = "PORT", allow_hyphen_values = true)]
    pub port: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// How connections reach the instances of a cluster app: `fdpass` (the
    /// daemon accepts and passes each connection to a worker), `reuseport`
    /// (a SO_REUSEPORT listener per worker) or `shared` (one listener, the
    /// workers race).
    #[arg(long, default_value = "fdpass", value_name = "MODE")]
    pub mode: String,
    /// fdpass dispatch policy: `least-conn`, `round-robin` or `p2c`.
    #[arg(long, default_value = "least-conn", value_name = "POLICY")]
    pub policy: String,
    /// fdpass acceptor threads (default: one per usable CPU).
    #[arg(long, value_name = "N")]
    pub acceptors: Option<String>,
    /// Listen backlog (default: /proc/sys/net/core/somaxconn).
    #[arg(long, value_name = "N")]
    pub backlog: Option<String>,
    /// fdpass: a worker that holds a connection unacknowledged this long is
    /// hung: out of rotation, killed, its connections re-dispatched.
    #[arg(long = "ack-timeout", value_name = "DURATION", default_value = "5s")]
    pub ack_timeout: String,
    /// fdpass: use single-shot accept instead of multishot (for comparison).
    #[arg(long = "no-multishot")]
    pub no_multishot: bool,
    /// Do not pin instance i to CPU i mod N.
    #[arg(long = "no-pin")]
    pub no_pin: bool,
    /// Do not restart the app when it exits.
    #[arg(long = "no-autorestart")]
    pub no_autorestart: bool,
    /// Delay between SIGINT and SIGKILL on stop (ms or `2s`).
    #[arg(long = "kill-timeout", value_name = "DURATION", default_value = "1600")]
    pub kill_timeout: String,
    /// Runs shorter than this count as unstable (ms or `1s`).
    #[arg(long = "min-uptime", value_name = "DURATION", default_value = "1000")]
    pub min_uptime: String,
    /// Unstable restarts before the app is marked errored.
    #[arg(long = "max-restarts", value_name = "N", default_value_t = config::DEFAULT_MAX_RESTARTS)]
    pub max_restarts: u32,
    /// Delay before an automatic restart (ms or `1s`).
    #[arg(long = "restart-delay", value_name = "DURATION", default_value = "0")]
    pub restart_delay: String,
    /// Start another copy even if this app already runs.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Print the resulting instances as JSON.
    #[arg(long)]
    pub json: bool,
    /// Arguments passed to the script (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Builds the [`AppSpec`] from flags and the caller's environment.
pub fn spec_from_args(a: &StartArgs) -> Result<AppSpec> {
    let cur = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
    let cwd = match &a.cwd {
        Some(c) => cur.join(c),
        None => cur,
    };
    if !cwd.is_dir() {
        return Err(Error::InvalidArg {
            what: "--cwd".into(),
            value: cwd.display().to_string(),
            expected: "an existing directory".into(),
        });
    }
    let script = cwd.join(&a.script);
    if !script.is_file() {
        return Err(Error::ScriptNotFound { path: script });
    }
    let script = script
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", script.display()), e))?;
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| config::default_name(&script));
    config::validate_name(&name)?;
    let instances = a.instances.as_deref().map(Instances::parse).transpose()?;
    let mut env = BTreeMap::new();
    for pair in &a.env {
        let (k, v) = config::parse_env_pair(pair)?;
        env.insert(k, v);
    }
    let port = match (&a.port, env.get("PORT")) {
        (Some(p), _) => Some(config::parse_port(p)?),
        (None, Some(p)) => Some(config::parse_port(p).map_err(|_| Error::InvalidArg {
            what: "--env PORT".into(),
            value: p.clone(),
            expected: "a port number from 1 to 65535".into(),
        })?),
        (None, None) => None,
    };
    let interpreter = match a.interpreter.as_deref() {
        Some("none") => None,
        Some(i) if !i.is_empty() => Some(i.to_string()),
        Some(_) => {
            return Err(Error::InvalidArg {
                what: "--interpreter".into(),
                value: String::new(),
                expected: "an interpreter name or path, or `none`".into(),
            })
        }
        None => config::interpreter_for(&script).map(str::to_string),
    };
    let mode = crate::accept::Mode::parse(&a.mode).ok_or_else(|| Error::InvalidArg {
        what: "--mode".into(),
        value: a.mode.clone(),
        expected: "`fdpass`, `reuseport` or `shared`".into(),
    })?;
    let policy =
        crate::accept::pool::Policy::parse(&a.policy).ok_or_else(|| Error::InvalidArg {
            what: "--policy".into(),
            value: a.policy.clone(),
            expected: "`least-conn`, `round-robin` or `p2c`".into(),
        })?;
    let positive = |what: &str, v: &Option<String>, max: i64| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| match s.trim().parse::<i64>() {
                Ok(n) if n >= 1 && n <= max => Ok(n),
                _ => Err(Error::InvalidArg {
                    what: what.into(),
                    value: s.into(),
                    expected: format!("a whole number from 1 to {max}"),
                }),
            })
            .transpose()
    };
    let acceptors = positive("--acceptors", &a.acceptors, 1024)?.map(|n| n as usize);
    let backlog = positive("--backlog", &a.backlog, i32::MAX as i64)?.map(|n| n as i32);
    let exec_mode = if instances.is_some() || port.is_some() {
        ExecMode::Cluster
    } else {
        ExecMode::Fork
    };
    Ok(AppSpec {
        name,
        script,
        interpreter,
        interpreter_args: a
            .node_args
            .as_deref()
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        args: a.args.clone(),
        cwd,
        env,
        base_env: std::env::vars().collect(),
        exec_mode,
        instances: instances.unwrap_or(Instances::Count(1)),
        port,
        host: a.host.clone(),
        mode,
        plane: crate::accept::PlaneConfig {
            policy,
            acceptors,
            backlog,
            multishot: !a.no_multishot,
            ack_timeout_ms: config::parse_duration_ms("--ack-timeout", &a.ack_timeout)?.max(1),
        },
        pin: !a.no_pin,
        autorestart: !a.no_autorestart,
        kill_timeout_ms: config::parse_duration_ms("--kill-timeout", &a.kill_timeout)?,
        min_uptime_ms: config::parse_duration_ms("--min-uptime", &a.min_uptime)?,
        max_restarts: a.max_restarts,
        restart_delay_ms: config::parse_duration_ms("--restart-delay", &a.restart_delay)?,
    })
}

/// Runs `herd start`.
pub fn run(a: StartArgs) -> Result<()> {
    let spec = spec_from_args(&a)?;
    let name = spec.name.clone();
    match client::call(&Request::Start {
        spec: Box::new(spec),
        force: a.force,
    })? {
        Response::Done { instances, notes } => {
            if a.json {
                return super::output::print_json(&instances);
            }
            for n in &notes {
                eprintln!("[herd] {n}");
            }
            let ids: Vec<String> = instances.iter().map(|i| i.id.to_string()).collect();
            println!("[herd] started `{name}` (id {})", ids.join(", "));
            super::list::print_table()
        }
        other => Err(client::unexpected(&other)),
    }
}

//! `herd run <script|ecosystem file> [start flags]`: herd in the
//! foreground, for containers and systemd (see `daemon/foreground.rs`),
//! and the `--health` / `--metrics` flags it shares with `herd daemon`.

use std::net::SocketAddr;

use clap::Args;

use super::start::{self, StartArgs};
use crate::daemon::foreground::RunPlan;
use crate::daemon::DaemonOptions;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::logs::capture::ConsoleFormat;

/// `--health [ADDR]`, `--metrics [ADDR]` and their `-public` switches.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Serve `/healthz` and `/readyz` for probes on ADDR (default
    /// 127.0.0.1:9615; a bare port means 127.0.0.1). Also `HERD_HEALTH`.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::daemon::health::DEFAULT_ADDR)]
    pub health: Option<String>,
    /// Allow a non-loopback `--health` address (e.g. `0.0.0.0:9615` in a
    /// pod). Also `HERD_HEALTH_PUBLIC=1`.
    #[arg(long = "health-public")]
    pub health_public: bool,
    /// Serve Prometheus metrics at `/metrics` on ADDR (default
    /// 127.0.0.1:9209; a bare port means 127.0.0.1; the same address as
    /// `--health` serves both). Also `HERD_METRICS_ADDR`.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::daemon::health::DEFAULT_METRICS_ADDR)]
    pub metrics: Option<String>,
    /// Allow a non-loopback `--metrics` address. Also
    /// `HERD_METRICS_PUBLIC=1`.
    #[arg(long = "metrics-public")]
    pub metrics_public: bool,
}

impl HealthArgs {
    /// The address to serve probes on, from the flags or `HERD_HEALTH`.
    pub fn addr(&self) -> Result<Option<SocketAddr>> {
        endpoint(&self.health, self.health_public, "health")
    }

    /// The address to serve metrics on, from the flags or `HERD_METRICS_ADDR`.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>> {
        endpoint(&self.metrics, self.metrics_public, "metrics")
    }
}

/// `--NAME` (or `HERD_NAME[_ADDR]`), checked: loopback unless public.
fn endpoint(flag: &Option<String>, public: bool, name: &str) -> Result<Option<SocketAddr>> {
    let upper = name.to_uppercase();
    let public = public || crate::config::env_flag(&format!("HERD_{upper}_PUBLIC"));
    let var = if name == "health" {
        "HERD_HEALTH".to_string()
    } else {
        format!("HERD_{upper}_ADDR")
    };
    let value = flag
        .clone()
        .or_else(|| std::env::var(&var).ok().filter(|v| !v.trim().is_empty()));
    value
        .map(|v| crate::daemon::health::parse_endpoint(&v, public, name))
        .transpose()
}

/// Options of `herd run`: every `herd start` flag, and these.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to start, as `herd start` takes it.
    #[command(flatten)]
    pub start: StartArgs,
    /// Start the saved apps first (`herd save`), as `herd resurrect`:
    /// with no script, only them.
    #[arg(long)]
    pub resurrect: bool,
    /// Keep running when every app has stopped (apps can be added with
    /// `herd start`); by default `herd run` exits then.
    #[arg(long = "no-auto-exit")]
    pub no_auto_exit: bool,
    /// Probe endpoints.
    #[command(flatten)]
    pub health: HealthArgs,
}

/// Runs `herd run`: checks everything it was given, then becomes the
/// daemon in the foreground; exits with its status.
pub fn run(a: RunArgs) -> Result<()> {
    let requests = match a.start.script.as_deref() {
        Some(_) => start::requests_without_daemon(&a.start)?,
        None if a.resurrect => Vec::new(),
        None => {
            return Err(Error::InvalidArg {
                what: "SCRIPT".into(),
                value: "(none)".into(),
                expected: "a script or ecosystem file to run, or --resurrect".into(),
            })
        }
    };
    let health = a.health.addr()?;
    let metrics = a.health.metrics_addr()?;
    let home = Home::from_env().map_err(|e| Error::io("locating HERD_HOME", e))?;
    let plan = RunPlan {
        resurrect: a.resurrect,
        requests,
        auto_exit: !a.no_auto_exit,
        console: if a.start.json {
            ConsoleFormat::Json
        } else {
            ConsoleFormat::Prefixed
        },
    };
    let code = crate::daemon::run(
        home,
        DaemonOptions {
            background: false,
            run: Some(plan),
            health,
            metrics,
        },
    )?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

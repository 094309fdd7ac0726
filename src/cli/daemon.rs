//! `herd ping`, `herd kill`, `herd daemon`.

use std::time::{Duration, Instant};

use clap::Args;

use super::client::{self, Autostart};
use crate::daemon::DaemonOptions;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::protocol::{Request, Response};

/// Options of `herd ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// Options of `herd daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Detach (used when a CLI starts the daemon on demand).
    #[arg(long, hide = true)]
    pub background: bool,
    /// Probe endpoints.
    #[command(flatten)]
    pub health: super::run::HealthArgs,
}

fn home() -> Result<Home> {
    Home::from_env().map_err(|e| Error::io("locating HERD_HOME", e))
}

/// Runs `herd ping`.
pub fn ping(a: PingArgs) -> Result<()> {
    match client::call(&Request::Ping)? {
        Response::Pong {
            pid,
            version,
            uptime_ms,
        } => {
            if a.json {
                super::output::print_json(
                    &serde_json::json!({"pid": pid, "version": version, "uptime_ms": uptime_ms}),
                )
            } else {
                super::output::write_stdout(&format!(
                    "pong: herd daemon {version}, pid {pid}, up {uptime_ms} ms"
                ))
            }
        }
        other => Err(client::unexpected(&other)),
    }
}

/// Runs `herd kill`: stops everything, waits until the daemon is gone.
pub fn kill() -> Result<()> {
    let home = home()?;
    let mut c = match client::connect(&home, Autostart::No) {
        Ok(c) => c,
        Err(Error::DaemonUnreachable { .. }) => {
            return super::output::write_stdout("[herd] no daemon running");
        }
        Err(e) => return Err(e),
    };
    match c.request(&Request::Kill)? {
        Response::Killed { pid, stopped } => {
            let deadline = Instant::now() + Duration::from_secs(10);
            while crate::sys::process::alive(pid as i32) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            super::output::write_stdout(&format!(
                "[herd] stopped {stopped} instance(s); daemon {pid} exited"
            ))
        }
        other => Err(client::unexpected(&other)),
    }
}

/// Runs `herd daemon`.
pub fn run(a: DaemonArgs) -> Result<()> {
    let health = a.health.addr()?;
    let metrics = a.health.metrics_addr()?;
    let code = crate::daemon::run(
        home()?,
        DaemonOptions {
            background: a.background,
            run: None,
            health,
            metrics,
        },
    )?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

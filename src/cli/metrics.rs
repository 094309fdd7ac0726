//! `herd metrics [app]`: the live figures as Prometheus text (the same
//! text `--metrics ADDR` serves at `/metrics`), or as JSON.

use clap::Args;

use crate::client;
use crate::error::Result;
use crate::protocol::metrics::Snapshot;
use crate::protocol::{Request, Response};

/// Options of `herd metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Only this app's series (and the daemon's).
    pub app: Option<String>,
    /// The figures as JSON (every field of docs/METRICS.md's snapshot).
    #[arg(long)]
    pub json: bool,
}

/// The daemon's figures now (one app's, with `app`).
pub fn fetch(app: Option<String>) -> Result<Snapshot> {
    match client::call(&Request::Metrics { app })? {
        Response::Metrics { snapshot } => Ok(*snapshot),
        other => Err(client::unexpected(&other)),
    }
}

/// Runs `herd metrics`.
pub fn metrics(a: MetricsArgs) -> Result<()> {
    let snap = fetch(a.app)?;
    if a.json {
        return super::output::print_json(&snap);
    }
    let text = crate::metrics::prom::render(&snap);
    super::output::write_stdout(text.trim_end_matches('\n'))
}

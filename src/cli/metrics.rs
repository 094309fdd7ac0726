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

/// The daemon's figures now (one app's, with `app`); `app_metrics`: with
/// the `app_metrics` apps' own.
pub fn fetch(app: Option<String>, app_metrics: bool) -> Result<Snapshot> {
    match client::call(&Request::Metrics { app, app_metrics })? {
        Response::Metrics { snapshot } => Ok(*snapshot),
        other => Err(client::unexpected(&other)),
    }
}

/// Runs `herd metrics`.
pub fn metrics(a: MetricsArgs) -> Result<()> {
    let snap = fetch(a.app, true)?;
    if a.json {
        return super::output::print_json(&snap);
    }
    for t in &snap.app_texts {
        if let Some(e) = &t.error {
            eprintln!(
                "note: app {} instance {}: no metrics of its own: {e}",
                t.app, t.instance
            );
        }
    }
    let text = crate::metrics::prom::render(&snap);
    super::output::write_stdout(text.trim_end_matches('\n'))
}

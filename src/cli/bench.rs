//! `herd bench`: flags only; the work is in `crate::bench`.

use clap::Args;

use crate::error::Result;

/// Options of `herd bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Instances of the hello worker: a number, `max`, 0 or -N (as `start -i`).
    #[arg(
        short = 'i',
        long = "instances",
        default_value = "max",
        allow_hyphen_values = true
    )]
    pub instances: String,
    /// Seconds of load per scenario (connection-per-request, then keep-alive).
    #[arg(short = 'd', long, default_value = "3", value_name = "SECONDS")]
    pub duration: String,
    /// Concurrent client connections.
    #[arg(short = 'c', long, default_value_t = 32)]
    pub connections: usize,
    /// Load-generator threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Scenarios to run: `close` (a connection per request), `keepalive`, or `all`.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Do not pin workers to cores.
    #[arg(long = "no-pin")]
    pub no_pin: bool,
    /// Print the raw results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `herd bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    crate::bench::run(&a)
}

//! `herd stop|restart|delete <id|name|all>…`.

use clap::Args;

use super::client;
use crate::error::Result;
use crate::protocol::{Request, Response};

/// Targets: ids, app names or `all`, several allowed (as in PM2).
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Ids, names or `all`.
    #[arg(required = true, value_name = "ID|NAME|all")]
    pub targets: Vec<String>,
    /// Print the affected instances as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which lifecycle verb.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    /// `herd stop`.
    Stop,
    /// `herd restart`.
    Restart,
    /// `herd delete`.
    Delete,
}

/// Runs a lifecycle verb.
pub fn run(verb: Verb, a: TargetArgs) -> Result<()> {
    let targets = a.targets.clone();
    let (req, done) = match verb {
        Verb::Stop => (Request::Stop { targets }, "stopped"),
        Verb::Restart => (Request::Restart { targets }, "restarted"),
        Verb::Delete => (Request::Delete { targets }, "deleted"),
    };
    match client::call(&req)? {
        Response::Done { instances, notes } => {
            if a.json {
                return super::output::print_json(&instances);
            }
            for n in &notes {
                eprintln!("[herd] {n}");
            }
            for i in &instances {
                println!("[herd] {done} {} [{}]", i.name, i.id);
            }
            super::list::print_table()
        }
        other => Err(client::unexpected(&other)),
    }
}

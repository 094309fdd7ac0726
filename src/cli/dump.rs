//! `herd save` (alias `dump`), `herd resurrect`, `herd cleardump`: the
//! saved process list, `$HERD_HOME/dump.json` (docs/CONFIG.md, "Save and
//! resurrect").

use clap::Args;

use super::client;
use crate::error::{Error, Result};
use crate::protocol::{Request, Response};

/// Options of `herd save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Save even an empty list over a dump that holds apps (or over a
    /// newer herd's dump).
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Keep the dump current after every change while the daemon runs
    /// (recorded in the dump: resurrect turns it on again).
    #[arg(long, conflicts_with = "no_autosave")]
    pub autosave: bool,
    /// Turn autosave off.
    #[arg(long = "no-autosave")]
    pub no_autosave: bool,
}

/// Options of `herd resurrect`.
#[derive(Debug, Args)]
pub struct ResurrectArgs {
    /// Print the restored instances as JSON.
    #[arg(long)]
    pub json: bool,
}

fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("[herd] {n}");
    }
}

/// Runs `herd save`.
pub fn save(a: SaveArgs) -> Result<()> {
    let autosave = match (a.autosave, a.no_autosave) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let req = Request::Save {
        force: a.force,
        autosave,
    };
    match client::call(&req)? {
        Response::Done { notes, .. } => {
            print_notes(&notes);
            Ok(())
        }
        other => Err(client::unexpected(&other)),
    }
}

/// Runs `herd resurrect`: non-zero exit when a saved app could not be
/// restored (the others are restored all the same).
pub fn resurrect(a: ResurrectArgs) -> Result<()> {
    match client::call(&Request::Resurrect)? {
        Response::Resurrected {
            instances,
            notes,
            failed,
        } => {
            print_notes(&notes);
            if a.json {
                super::output::print_json(&instances)?;
            } else {
                super::list::print_table()?;
            }
            if failed.is_empty() {
                return Ok(());
            }
            Err(Error::Remote {
                message: format!("{} saved app(s) not restored: {}", failed.len(), failed.join("; ")),
                hint: Some("fix what is named, then `herd resurrect` again: apps already running are left alone".into()),
            })
        }
        other => Err(client::unexpected(&other)),
    }
}

/// Runs `herd cleardump`.
pub fn cleardump() -> Result<()> {
    match client::call(&Request::ClearDump)? {
        Response::Done { notes, .. } => {
            print_notes(&notes);
            Ok(())
        }
        other => Err(client::unexpected(&other)),
    }
}

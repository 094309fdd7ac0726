//! The `pm2` alias: `herd install-alias` links `pm2` to herd (explicitly,
//! never as a side effect of anything else), and a herd started under the
//! name `pm2` answers PM2's command lines, with `PM2_HOME` honoured like
//! `HERD_HOME`, so deploy scripts and CI jobs that call `pm2` run unchanged.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Result};

/// Options of `herd install-alias`.
#[derive(Debug, Args)]
pub struct AliasArgs {
    /// Directory for the `pm2` link (default: the directory of the `herd`
    /// on PATH).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Replace a `pm2` that is there already (PM2's own, say).
    #[arg(long)]
    pub force: bool,
    /// Remove the link instead (only a link to this herd).
    #[arg(long)]
    pub remove: bool,
}

/// Called first thing in `main`: run as `pm2`, `PM2_HOME` (when set, and
/// `HERD_HOME` is not) is the home. Returns whether herd runs as `pm2`.
pub fn adopt_argv0() -> bool {
    let as_pm2 = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == "pm2"))
        .unwrap_or(false);
    if as_pm2 && std::env::var_os("HERD_HOME").is_none_or(|h| h.is_empty()) {
        if let Some(h) = std::env::var_os("PM2_HOME").filter(|h| !h.is_empty()) {
            // Single-threaded still: nothing else reads the environment yet.
            std::env::set_var("HERD_HOME", h);
        }
    }
    as_pm2
}

/// Runs `herd install-alias`.
pub fn install(a: AliasArgs) -> Result<()> {
    let (herd, on_path) = super::startup::herd_path()?;
    let dir = match (&a.dir, on_path) {
        (Some(d), _) => d.clone(),
        (None, true) => herd.parent().map(Path::to_path_buf).unwrap_or_default(),
        (None, false) => {
            return Err(Error::Remote {
                message: format!(
                    "this herd ({}) is not on PATH: where should `pm2` go?",
                    herd.display()
                ),
                hint: Some(
                    "name a directory on PATH: herd install-alias --dir ~/.local/bin".into(),
                ),
            })
        }
    };
    let link = dir.join("pm2");
    let ours = std::fs::read_link(&link).is_ok() && super::startup::same_file(&link, &herd);
    if a.remove {
        if !ours {
            return Err(Error::Remote {
                message: format!("{} is not a link to this herd: left alone", link.display()),
                hint: None,
            });
        }
        std::fs::remove_file(&link)
            .map_err(|e| Error::io(format!("cannot remove {}", link.display()), e))?;
        println!("[herd] removed {}", link.display());
        return Ok(());
    }
    if ours {
        println!("[herd] {} already runs herd", link.display());
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        if !a.force {
            return Err(Error::Remote {
                message: format!("{} exists (PM2's own?): not replaced", link.display()),
                hint: Some("--force replaces it; --dir puts the alias elsewhere".into()),
            });
        }
        std::fs::remove_file(&link)
            .map_err(|e| Error::io(format!("cannot replace {}", link.display()), e))?;
    }
    std::os::unix::fs::symlink(&herd, &link)
        .map_err(|e| Error::io(format!("cannot create {}", link.display()), e))?;
    println!(
        "[herd] {} → {}: `pm2 …` command lines now run herd (PM2_HOME is honoured as HERD_HOME); `herd install-alias --remove` undoes it",
        link.display(),
        herd.display()
    );
    Ok(())
}

//! `herd stop|restart|delete|reset <id|name|all|ecosystem file>…`.

use clap::Args;

use super::client;
use crate::config::ecosystem;
use crate::error::{Error, Result};
use crate::protocol::{OnExisting, Request, Response};

/// Targets: ids, app names, `all`, or ecosystem files (several allowed).
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Ids, names, `all`, or an ecosystem file (acts on the apps it names).
    #[arg(required = true, value_name = "ID|NAME|all|FILE")]
    pub targets: Vec<String>,
    /// With a file: only these apps (comma-separated).
    #[arg(long, value_name = "APPS")]
    pub only: Vec<String>,
    /// Print the affected instances as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Settings `restart` and `reload` change before acting (PM2's
/// `pm2 restart api --node-args=…`); `null` removes one.
#[derive(Debug, Args, Default)]
pub struct PatchArgs {
    /// New interpreter arguments (`--node-args=null` removes them).
    #[arg(
        long = "node-args",
        visible_alias = "interpreter-args",
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub node_args: Option<String>,
    /// New memory cap (`300M`; `null` removes it).
    #[arg(long = "max-memory-restart", value_name = "SIZE")]
    pub max_memory_restart: Option<String>,
    /// New delay between SIGINT and SIGKILL on stop.
    #[arg(long = "kill-timeout", value_name = "DURATION")]
    pub kill_timeout: Option<String>,
    /// Toggle watching: on if it was off, off if it was on (PM2's
    /// `restart --watch`).
    #[arg(long, conflicts_with = "no_watch")]
    pub watch: bool,
    /// Stop watching (whatever it was).
    #[arg(long = "no-watch")]
    pub no_watch: bool,
    /// `KEY=VALUE` added to the app's env (repeatable); with an ecosystem
    /// file target, an environment name (`--env production`).
    #[arg(long = "env", value_name = "KEY=VAL|NAME")]
    pub env: Vec<String>,
}

impl PatchArgs {
    /// The patch, and the ecosystem environment name if one was given.
    pub(crate) fn parse(&self) -> Result<(crate::protocol::SpecPatch, Option<String>)> {
        let mut p = crate::protocol::SpecPatch::default();
        let is_null = |v: &str| v.trim() == "null";
        match self.node_args.as_deref() {
            Some(v) if is_null(v) => p.remove.push("node_args".into()),
            Some(v) => p.interpreter_args = Some(v.split_whitespace().map(String::from).collect()),
            None => {}
        }
        match self.max_memory_restart.as_deref() {
            Some(v) if is_null(v) => p.remove.push("max_memory_restart".into()),
            Some(v) => {
                p.max_memory_restart = Some(crate::config::parse_size("--max-memory-restart", v)?)
            }
            None => {}
        }
        if let Some(v) = self.kill_timeout.as_deref() {
            p.kill_timeout_ms = Some(crate::config::parse_duration_ms("--kill-timeout", v)?);
        }
        p.toggle_watch = self.watch;
        p.watch = self.no_watch.then_some(false);
        let (env, mut names) = super::start::env_flags(&self.env)?;
        p.env = env;
        if let Some(second) = names.get(1) {
            return Err(Error::InvalidArg {
                what: "--env".into(),
                value: second.clone(),
                expected: "KEY=VALUE, or one ecosystem environment name".into(),
            });
        }
        let name = names.pop();
        Ok((p, name))
    }
}

/// `herd restart`: targets, and `--update-env`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Which instances.
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Run with this shell's environment instead of the one they were
    /// started with (PM2's `--update-env`).
    #[arg(long = "update-env")]
    pub update_env: bool,
    /// Settings to change first.
    #[command(flatten)]
    pub patch: PatchArgs,
}

/// `herd reload`: targets, `--update-env`, `--parallel N`.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Which instances.
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Run with this shell's environment instead of the one they were
    /// started with (PM2's `--update-env`).
    #[arg(long = "update-env")]
    pub update_env: bool,
    /// Replace this many instances at a time (default 1).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub parallel: Option<String>,
    /// Settings to change first.
    #[command(flatten)]
    pub patch: PatchArgs,
}

/// Runs `herd restart`.
pub fn restart(a: RestartArgs) -> Result<()> {
    let env = a.update_env.then(|| std::env::vars().collect());
    let (patch, env_name) = a.patch.parse()?;
    if let Some(done) = from_files(&a.targets, env_name.as_deref(), OnExisting::Update)? {
        return done;
    }
    run_opts(Verb::Restart, a.targets, env, None, patch)
}

/// `restart|reload <ecosystem file> [--env X]`: the file's current
/// settings (and environment) for its apps, started where not running, as
/// PM2 does; `None` when no target is a file.
fn from_files(
    t: &TargetArgs,
    env_name: Option<&str>,
    existing: OnExisting,
) -> Result<Option<Result<()>>> {
    let files: Vec<&String> = t
        .targets
        .iter()
        .filter(|f| {
            let p = std::path::Path::new(f.as_str());
            ecosystem::is_config_file(p) && p.is_file()
        })
        .collect();
    if files.is_empty() {
        if let Some(n) = env_name {
            return Err(Error::InvalidArg {
                what: "--env".into(),
                value: n.into(),
                expected: "KEY=VALUE (an environment name needs an ecosystem file target)".into(),
            });
        }
        return Ok(None);
    }
    if files.len() != t.targets.len() {
        return Err(Error::InvalidArg {
            what: "targets".into(),
            value: t.targets.join(" "),
            expected: "ecosystem files, or ids and names, not both".into(),
        });
    }
    let mut reqs = Vec::new();
    for f in files {
        reqs.extend(super::start::file_requests(
            std::path::Path::new(f),
            env_name,
            &t.only,
            existing,
        )?);
    }
    Ok(Some(super::start::send(reqs, t.json)))
}

/// Runs `herd reload`.
pub fn reload(a: ReloadArgs) -> Result<()> {
    let parallel = a
        .parallel
        .as_deref()
        .map(|s| match s.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Error::InvalidArg {
                what: "--parallel".into(),
                value: s.into(),
                expected: "a whole number of instances, 1 or more".into(),
            }),
        })
        .transpose()?;
    let env = a.update_env.then(|| std::env::vars().collect());
    let (patch, env_name) = a.patch.parse()?;
    if let Some(done) = from_files(&a.targets, env_name.as_deref(), OnExisting::Reload)? {
        return done;
    }
    run_opts(Verb::Reload, a.targets, env, parallel, patch)
}

/// Which lifecycle verb.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    /// `herd stop`.
    Stop,
    /// `herd restart`.
    Restart,
    /// `herd reload`.
    Reload,
    /// `herd delete`.
    Delete,
    /// `herd reset`.
    Reset,
}

/// Replaces each ecosystem file among `targets` by the names of its apps.
pub fn expand_files(targets: &[String], only: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut list: Option<Vec<crate::protocol::InstanceInfo>> = None;
    for t in targets {
        let path = std::path::Path::new(t);
        if ecosystem::is_config_file(path) && path.is_file() {
            let loaded = ecosystem::load(path, None, only).map_err(config_error)?;
            out.extend(loaded.apps.into_iter().map(|a| a.name));
        } else if path.is_file() && t != "all" && t.parse::<u32>().is_err() {
            // A script path (PM2: `pm2 stop app.js`): every instance whose
            // script is that file, unless an app has that very name.
            if list.is_none() {
                list = Some(super::list::fetch(&Request::List)?);
            }
            let all = list.as_deref().unwrap_or_default();
            let canon = path.canonicalize().ok();
            let ids: Vec<String> = all
                .iter()
                .filter(|i| canon.as_deref() == Some(std::path::Path::new(&i.script)))
                .map(|i| i.id.to_string())
                .collect();
            if all.iter().any(|i| i.name == *t) || ids.is_empty() {
                out.push(t.clone());
            } else {
                out.extend(ids);
            }
        } else {
            out.push(t.clone());
        }
    }
    Ok(out)
}

/// An ecosystem file's errors as one reportable error (every line shown).
pub fn config_error(e: ecosystem::ConfigError) -> Error {
    Error::Remote {
        message: e.to_string(),
        hint: e.hint.clone(),
    }
}

/// Runs a lifecycle verb.
pub fn run(verb: Verb, a: TargetArgs) -> Result<()> {
    run_opts(verb, a, None, None, Default::default())
}

fn run_opts(
    verb: Verb,
    a: TargetArgs,
    env: Option<std::collections::BTreeMap<String, String>>,
    parallel: Option<u32>,
    patch: crate::protocol::SpecPatch,
) -> Result<()> {
    let targets = crate::protocol::Target::parse_all(&expand_files(&a.targets, &a.only)?);
    let (req, done) = match verb {
        Verb::Stop => (
            Request::Stop {
                targets,
                // PM2 fails on a name it does not know (a deploy script
                // goes on to its `start` all the same).
                missing_ok: false,
            },
            "stopped",
        ),
        Verb::Restart => (
            Request::Restart {
                targets,
                env,
                patch,
            },
            "restarted",
        ),
        Verb::Reload => (
            Request::Reload {
                targets,
                env,
                parallel,
                patch,
            },
            "reloaded",
        ),
        Verb::Delete => (Request::Delete { targets }, "deleted"),
        Verb::Reset => (Request::Reset { targets }, "reset counters of"),
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

/// Options of `herd scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// App name.
    pub app: String,
    /// `N` instances, or `+N` / `-N`.
    #[arg(allow_hyphen_values = true)]
    pub to: String,
    /// Print the app's instances as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `herd scale`.
pub fn scale(a: ScaleArgs) -> Result<()> {
    let to =
        crate::protocol::ScaleTo::parse(&a.to).ok_or_else(|| crate::error::Error::InvalidArg {
            what: "scale".into(),
            value: a.to.clone(),
            expected: "a number of instances N, or +N / -N to add or remove".into(),
        })?;
    match client::call(&Request::Scale { app: a.app, to })? {
        Response::Done { instances, notes } => {
            if a.json {
                return super::output::print_json(&instances);
            }
            for n in &notes {
                println!("[herd] {n}");
            }
            super::list::print_table()
        }
        other => Err(client::unexpected(&other)),
    }
}

/// Runs `herd startOrRestart` (`existing`: Update) or `startOrReload`
/// (Reload): apps not running start, running ones take the new settings.
pub fn start_or(a: super::start::StartArgs, existing: crate::protocol::OnExisting) -> Result<()> {
    let reqs = super::start::requests(&a)?
        .into_iter()
        .map(|r| match r {
            crate::protocol::Request::Start { spec, force, .. } => {
                crate::protocol::Request::Start {
                    spec,
                    force,
                    existing,
                }
            }
            other => other,
        })
        .collect();
    super::start::send(reqs, a.json)
}

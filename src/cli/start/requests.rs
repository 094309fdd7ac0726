//! From `herd start`'s arguments to start requests: scripts, command
//! strings, ecosystem files (standard input too), then sending them.

use super::{bad, Overrides, StartArgs};
use crate::cli::client;
use crate::config::{self, ecosystem, AppSpec};
use crate::error::{Error, Result};
use crate::protocol::{OnExisting, Request, Response};

/// Builds the [`AppSpec`] for `herd start`'s script from flags and the
/// caller's environment.
pub fn spec_from_args(a: &StartArgs) -> Result<AppSpec> {
    spec_from_script(a, a.script())
}

/// `herd start <name|id>`: the app in the list that `script` names, when no
/// file has that name and it is not a command string.
fn existing_app(a: &StartArgs, script: &str) -> Result<Option<crate::protocol::Target>> {
    let cwd = match &a.cwd {
        Some(c) => c.clone(),
        None => crate::cli::current_dir()?,
    };
    if script == "-" || script.contains(char::is_whitespace) || cwd.join(script).exists() {
        return Ok(None);
    }
    let list = crate::cli::list::fetch(&Request::List)?;
    let target = crate::protocol::Target::parse(script);
    let known = match &target {
        crate::protocol::Target::Id(id) => list.iter().any(|i| i.id == *id),
        crate::protocol::Target::Name(n) => list.iter().any(|i| i.name == *n),
        crate::protocol::Target::All => !list.is_empty(),
    };
    Ok(known.then_some(target))
}

/// The [`AppSpec`] for one script (or command string).
fn spec_from_script(a: &StartArgs, script_arg: &str) -> Result<AppSpec> {
    let mut env_names = Vec::new();
    let o = Overrides::parse(a, &mut env_names)?;
    if let Some(n) = env_names.first() {
        return Err(bad(
            "--env",
            n,
            "KEY=VALUE (environment names like `production` select an `env_<name>` block of an ecosystem file)",
        ));
    }
    let cwd = match &o.cwd {
        Some(c) => c.clone(),
        None => crate::cli::current_dir()?,
    };
    if config::is_command(script_arg, &cwd) {
        // `herd start "python3 -m http.server 8000"`: run by the shell.
        let cmd = script_arg.trim();
        let mut spec = AppSpec::new(config::command_name(cmd), config::command_shell(), cwd);
        spec.interpreter = None;
        o.apply(&mut spec);
        spec.args = config::command_args(cmd, &spec.name, std::mem::take(&mut spec.args));
        return Ok(spec);
    }
    let script = cwd.join(script_arg);
    if !script.is_file() {
        return Err(Error::ScriptNotFound { path: script });
    }
    let script = script
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", script.display()), e))?;
    let mut spec = AppSpec::new(config::default_name(&script), script, cwd);
    o.apply(&mut spec);
    Ok(spec)
}

/// The apps of an ecosystem file as specs: file values, then the flags the
/// user typed. Prints the file's warnings (unknown keys, keys read but not
/// acted on yet) to stderr.
/// `file` `None`: a JSON ecosystem file on standard input (`herd start -`).
pub fn specs_from_file(
    a: &StartArgs,
    file: Option<&std::path::Path>,
) -> Result<(Vec<AppSpec>, bool)> {
    let mut env_names = Vec::new();
    let o = Overrides::parse(a, &mut env_names)?;
    if env_names.len() > 1 {
        return Err(bad("--env", &env_names.join(", "), "one environment name"));
    }
    let env = env_names.first().map(String::as_str);
    let loaded = match file {
        Some(f) => ecosystem::load(f, env, &a.only),
        None => {
            use std::io::Read;
            let mut text = String::new();
            std::io::stdin()
                .take(crate::protocol::frame::MAX_REQUEST as u64)
                .read_to_string(&mut text)
                .map_err(|e| Error::io("reading the ecosystem file from standard input", e))?;
            let cwd = crate::cli::current_dir()?;
            ecosystem::load_stdin(&text, &cwd, env, &a.only)
        }
    }
    .map_err(crate::cli::lifecycle::config_error)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if o.name.is_some() && loaded.apps.len() > 1 {
        return Err(bad(
            "--name",
            o.name.as_deref().unwrap_or(""),
            "no --name with a file of several apps (use --only)",
        ));
    }
    let mut force = a.force;
    let specs = loaded
        .apps
        .iter()
        .map(|c| {
            if !c.pending.is_empty() {
                eprintln!(
                    "warning: {}: app `{}`: {} read but not acted on yet",
                    loaded.file.display(),
                    c.name,
                    c.pending
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            force |= c.force.unwrap_or(false);
            let mut spec = AppSpec::from_config(c, &loaded.file);
            o.apply(&mut spec);
            spec
        })
        .collect();
    Ok((specs, force))
}

/// The start requests for an ecosystem file's apps as the file says, with
/// `existing` for those already in the list (`herd restart|reload <file>`).
pub fn file_requests(
    file: &std::path::Path,
    env_name: Option<&str>,
    only: &[String],
    existing: OnExisting,
) -> Result<Vec<Request>> {
    let loaded =
        ecosystem::load(file, env_name, only).map_err(crate::cli::lifecycle::config_error)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded
        .apps
        .iter()
        .map(|c| Request::Start {
            spec: Box::new(AppSpec::from_config(c, &loaded.file)),
            force: false,
            existing,
        })
        .collect())
}

/// The start requests for `herd start`'s arguments: one per app, for each
/// script given (`herd start a.js b.js` starts both with the same options).
pub fn requests(a: &StartArgs) -> Result<Vec<Request>> {
    requests_with(a, true)
}

/// [`requests`] for `herd run`, which has no daemon to ask yet: an app
/// name is never taken for an app in the list.
pub fn requests_without_daemon(a: &StartArgs) -> Result<Vec<Request>> {
    requests_with(a, false)
}

fn requests_with(a: &StartArgs, smart: bool) -> Result<Vec<Request>> {
    if !a.more.is_empty() && a.name.is_some() {
        return Err(bad(
            "--name",
            a.name.as_deref().unwrap_or_default(),
            "no --name with several scripts (each is named after its file)",
        ));
    }
    let mut all = requests_for(a, a.script(), smart)?;
    for s in &a.more {
        all.extend(requests_for(a, s, smart)?);
    }
    Ok(all)
}

fn requests_for(a: &StartArgs, script: &str, smart: bool) -> Result<Vec<Request>> {
    let path = std::path::Path::new(script);
    let stdin = script == "-";
    if let Some(target) = smart
        .then(|| existing_app(a, script))
        .transpose()?
        .flatten()
    {
        // PM2's smart start: `start api` or `start 3` of an app in the
        // list restarts it, with the options given merged into its spec
        // (`--watch` toggles watching, as `restart --watch`).
        let (patch, env_name) = crate::cli::lifecycle::PatchArgs {
            node_args: a.node_args.clone(),
            max_memory_restart: a.max_memory_restart.clone(),
            kill_timeout: a.kill_timeout.clone(),
            watch: a.watch,
            no_watch: false,
            env: a.env.clone(),
        }
        .parse()?;
        if let Some(n) = env_name {
            return Err(bad(
                "--env",
                &n,
                "KEY=VALUE (an environment name selects an `env_<name>` block of an ecosystem file: `herd restart <file> --env <name>`)",
            ));
        }
        return Ok(vec![Request::Restart {
            targets: vec![target],
            env: None,
            patch,
        }]);
    }
    let (specs, force, existing) = if stdin || (ecosystem::is_config_file(path) && path.is_file()) {
        let (specs, force) = specs_from_file(a, (!stdin).then_some(path))?;
        // PM2 restarts the file's apps that already run, with the file's
        // current spec and env; herd reloads them (same outcome, replacement
        // first, so no request in flight is cut) and starts the rest.
        (specs, force, OnExisting::Reload)
    } else {
        if !a.only.is_empty() {
            return Err(bad(
                "--only",
                &a.only.join(","),
                "an ecosystem file to pick apps from",
            ));
        }
        let existing = if a.update_env {
            OnExisting::Update
        } else {
            OnExisting::Refuse
        };
        (vec![spec_from_script(a, script)?], a.force, existing)
    };
    Ok(specs
        .into_iter()
        .map(|spec| Request::Start {
            spec: Box::new(spec),
            force,
            existing,
        })
        .collect())
}

/// Runs `herd start`.
pub fn run(a: StartArgs) -> Result<()> {
    send(requests(&a)?, a.json)
}

/// Sends start requests one by one, then prints what runs.
pub(crate) fn send(reqs: Vec<Request>, json: bool) -> Result<()> {
    let mut all = Vec::new();
    for req in reqs {
        let name = match &req {
            Request::Start { spec, .. } => spec.name.clone(),
            _ => String::new(),
        };
        match client::call(&req)? {
            Response::Done { instances, notes } => {
                for n in &notes {
                    eprintln!("[herd] {n}");
                }
                if !instances.is_empty() && !json {
                    let ids: Vec<String> = instances.iter().map(|i| i.id.to_string()).collect();
                    println!("[herd] started `{name}` (id {})", ids.join(", "));
                }
                all.extend(instances);
            }
            other => return Err(client::unexpected(&other)),
        }
    }
    if json {
        return crate::cli::output::print_json(&all);
    }
    crate::cli::list::print_table()
}

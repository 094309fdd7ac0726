//! `herd import-pm2 [dump.pm2]`: a PM2 setup taken over in one command.
//! PM2's dump (`pm2 save`, `$PM2_HOME/dump.pm2`) is a JSON list with one
//! `pm2_env` object per process (PM2's `API.dump` drops `instances` and
//! `pm_id`); its entries are grouped by app name (the count is the
//! instance count), mapped to ecosystem keys, and started through the same
//! path as an ecosystem file. What has no herd meaning is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Map, Value};

use crate::config::{ecosystem, AppSpec};
use crate::error::{Error, Result};
use crate::protocol::{OnExisting, Request, Response};

/// Options of `herd import-pm2`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// PM2's dump file (default `$PM2_HOME/dump.pm2`, else `~/.pm2/dump.pm2`).
    pub path: Option<PathBuf>,
    /// Take over a running PM2: its list (`pm2 jlist`), its listening
    /// sockets (herd accepts from the same ones), each app ready under
    /// herd before PM2's copy is deleted, then PM2 stopped. `PM2_BIN`
    /// names PM2's command (default `pm2` on PATH).
    #[arg(long = "from-running", conflicts_with = "path")]
    pub from_running: bool,
    /// Print the ecosystem file the dump maps to and start nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// `pm2_env` keys mapped to the ecosystem key of the same meaning.
const SAME: &[&str] = &[
    "args",
    "node_args",
    "kill_timeout",
    "restart_delay",
    "max_restarts",
    "min_uptime",
    "autorestart",
    "max_memory_restart",
    "wait_ready",
    "listen_timeout",
    "shutdown_with_message",
    "cron_restart",
    "exp_backoff_restart_delay",
    "merge_logs",
    "log_date_format",
    "instance_var",
    "stop_exit_codes",
];

/// PM2's bookkeeping in a dump: state of its own, not settings.
const PM2_OWN: &[&str] = &[
    "name",
    "pm_exec_path",
    "pm_cwd",
    "exec_interpreter",
    "exec_mode",
    "env",
    "status",
    "pm_uptime",
    "created_at",
    "restart_time",
    "unstable_restarts",
    "pm_id",
    "instances",
    "NODE_APP_INSTANCE",
    "unique_id",
    "axm_actions",
    "axm_monitor",
    "axm_options",
    "axm_dynamic",
    "vizion",
    "vizion_running",
    "versioning",
    "km_link",
    "pm_pid_path",
    "pm_out_log_path",
    "pm_err_log_path",
    "pm_log_path",
    "prev_restart_delay",
    "watch",
    "ignore_watch",
    "namespace",
    "filter_env",
    "treekill",
    "automation",
    "pmx",
    "instance_id",
    "exit_code",
    "username",
    "windowsHide",
    "_pm2_version",
    "node_version",
    "version",
    "kill_retry_time",
];

/// Variables of a dumped `env` that are the environment PM2 ran in, not
/// the app's settings (PM2 stores the whole environment).
fn inherited(k: &str, v: &Value, here: &BTreeMap<String, String>) -> bool {
    k.starts_with("PM2_")
        || k == "pm_id"
        || k == "NODE_APP_INSTANCE"
        || k == "unique_id"
        || k == "name"
        || v.as_str()
            .is_some_and(|s| here.get(k).map(String::as_str) == Some(s))
        || matches!(
            k,
            "PATH"
                | "HOME"
                | "PWD"
                | "OLDPWD"
                | "SHELL"
                | "USER"
                | "LOGNAME"
                | "SHLVL"
                | "_"
                | "TERM"
                | "MAIL"
                | "LANG"
                | "HOSTNAME"
        )
}

/// Maps a dump to an ecosystem document, with one note per thing left out.
pub fn map_dump(dump: &Value) -> Result<(Value, Vec<String>)> {
    let Value::Array(entries) = dump else {
        return Err(Error::Remote {
            message: "not a PM2 dump: expected a JSON list of processes".into(),
            hint: Some("`pm2 save` writes one to ~/.pm2/dump.pm2".into()),
        });
    };
    let here: BTreeMap<String, String> = std::env::vars().collect();
    let mut apps: Vec<(String, Map<String, Value>, u32, bool)> = Vec::new();
    let mut notes = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let env = e.get("pm2_env").unwrap_or(e);
        let Some(name) = env.get("name").and_then(Value::as_str) else {
            notes.push(format!("process #{}: no name: skipped", i + 1));
            continue;
        };
        if env.get("pmx_module").and_then(Value::as_bool) == Some(true) {
            notes.push(format!("`{name}`: a PM2 module: skipped"));
            continue;
        }
        let stopped = env.get("status").and_then(Value::as_str) == Some("stopped");
        if let Some(a) = apps.iter_mut().find(|a| a.0 == name) {
            a.2 += 1;
            continue;
        }
        let mut app = Map::new();
        app.insert("name".into(), json!(name));
        match env.get("pm_exec_path").and_then(Value::as_str) {
            Some(s) => app.insert("script".into(), json!(s)),
            None => {
                notes.push(format!("`{name}`: no pm_exec_path: skipped"));
                continue;
            }
        };
        if let Some(c) = env.get("pm_cwd").and_then(Value::as_str) {
            app.insert("cwd".into(), json!(c));
        }
        if let Some(i) = env.get("exec_interpreter").and_then(Value::as_str) {
            app.insert("interpreter".into(), json!(i));
        }
        if env.get("exec_mode").and_then(Value::as_str) == Some("cluster_mode") {
            app.insert("exec_mode".into(), json!("cluster"));
        }
        if let Some(w) = env.get("watch") {
            if w.as_bool() == Some(true) || w.is_array() {
                app.insert("watch".into(), w.clone());
                if let Some(iw) = env.get("ignore_watch") {
                    app.insert("ignore_watch".into(), iw.clone());
                }
            }
        }
        for k in SAME {
            if let Some(v) = env.get(*k).filter(|v| !v.is_null()) {
                app.insert((*k).into(), v.clone());
            }
        }
        if let Some(Value::Object(vars)) = env.get("env") {
            let own: Map<String, Value> = vars
                .iter()
                .filter(|(k, v)| !inherited(k, v, &here) && !v.is_object())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            app.insert("env".into(), Value::Object(own));
        }
        if let Value::Object(m) = env {
            // A live list (`pm2 jlist`) also spreads the process's
            // environment over pm2_env: those are env, not settings.
            let vars = env.get("env").and_then(Value::as_object);
            let left: Vec<&str> = m
                .keys()
                .map(String::as_str)
                .filter(|k| !SAME.contains(k) && !PM2_OWN.contains(k) && !k.starts_with("axm"))
                .filter(|k| !vars.is_some_and(|v| v.contains_key(*k)))
                .collect();
            if !left.is_empty() {
                notes.push(format!("`{name}`: not mapped: {}", left.join(", ")));
            }
        }
        apps.push((name.to_string(), app, 1, stopped));
    }
    let mut list = Vec::new();
    for (name, mut app, n, stopped) in apps {
        if n > 1 {
            app.insert("instances".into(), json!(n));
        }
        if stopped {
            notes.push(format!("`{name}` was stopped in PM2: imported and started (stop it with `herd stop {name}`)"));
        }
        list.push(Value::Object(app));
    }
    Ok((json!({ "apps": list }), notes))
}

fn default_path() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("PM2_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h).join("dump.pm2"));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| Error::Remote {
        message: "no HOME to find ~/.pm2/dump.pm2 in".into(),
        hint: Some("name the dump: herd import-pm2 /path/to/dump.pm2".into()),
    })?;
    Ok(Path::new(&home).join(".pm2/dump.pm2"))
}

/// Runs `herd import-pm2`.
pub fn run(a: ImportArgs) -> Result<()> {
    if a.from_running {
        return from_running(a.dry_run);
    }
    let path = match a.path {
        Some(p) => p,
        None => default_path()?,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let dump: Value = serde_json::from_str(&text).map_err(|e| Error::Remote {
        message: format!("{}: not valid JSON: {e}", path.display()),
        hint: Some("`pm2 save` writes the dump as JSON".into()),
    })?;
    let (doc, notes) = map_dump(&dump)?;
    for n in &notes {
        eprintln!("[herd] {n}");
    }
    if a.dry_run {
        return super::output::print_json(&doc);
    }
    super::start::send(start_requests(&doc)?, false)
}

/// The start requests for a mapped dump (apps already in herd's list are
/// left alone).
fn start_requests(doc: &Value) -> Result<Vec<Request>> {
    let cwd = super::current_dir()?;
    let text = serde_json::to_string(&doc).map_err(|e| Error::Protocol(e.to_string()))?;
    let loaded =
        ecosystem::load_stdin(&text, &cwd, None, &[]).map_err(super::lifecycle::config_error)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let reqs = loaded
        .apps
        .iter()
        .map(|c| Request::Start {
            spec: Box::new(AppSpec::from_config(c, &loaded.file)),
            force: false,
            existing: OnExisting::Skip,
        })
        .collect();
    Ok(reqs)
}

/// PM2's command: `PM2_BIN`, else `pm2` on PATH, never herd itself (the
/// `pm2` alias).
fn pm2_command() -> Result<PathBuf> {
    let named = std::env::var_os("PM2_BIN").map(PathBuf::from);
    let path = std::env::var("PATH").ok();
    let found = match named {
        Some(p) => Some(p),
        None => crate::sys::spawn::which("pm2", path.as_deref(), Path::new("/")),
    };
    let Some(pm2) = found else {
        return Err(Error::Remote {
            message: "no `pm2` command on PATH to ask for the running list".into(),
            hint: Some("set PM2_BIN to PM2's bin/pm2".into()),
        });
    };
    let me = std::env::current_exe().unwrap_or_default();
    if super::startup::same_file(&pm2, &me) {
        return Err(Error::Remote {
            message: format!("{} is herd's own `pm2` alias, not PM2", pm2.display()),
            hint: Some("set PM2_BIN to PM2's bin/pm2".into()),
        });
    }
    Ok(pm2)
}

/// Runs PM2 with `args`; its stdout, or an error with its stderr.
fn pm2(cmd: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("cannot run {}", cmd.display()), e))?;
    if !out.status.success() {
        return Err(Error::Remote {
            message: format!(
                "`pm2 {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            hint: None,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pid of PM2's daemon (its God process, which holds the cluster
/// apps' listening sockets), from `$PM2_HOME/pm2.pid`, if it runs.
fn pm2_daemon_pid() -> Result<i32> {
    let pid_file = default_path()?.with_file_name("pm2.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| crate::sys::process::alive(p));
    pid.ok_or_else(|| Error::Remote {
        message: format!("no running PM2: no live pid in {}", pid_file.display()),
        hint: Some("PM2_HOME names PM2's home (default ~/.pm2)".into()),
    })
}

/// Longest wait for the imported apps to be ready under herd.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `herd import-pm2 --from-running`.
fn from_running(dry_run: bool) -> Result<()> {
    let cmd = pm2_command()?;
    let god = pm2_daemon_pid()?;
    let list: Value = serde_json::from_str(pm2(&cmd, &["jlist"])?.trim())
        .map_err(|e| Error::Protocol(format!("`pm2 jlist` did not print a JSON list: {e}")))?;
    let (doc, notes) = map_dump(&list)?;
    for n in &notes {
        eprintln!("[herd] {n}");
    }
    if dry_run {
        return super::output::print_json(&doc);
    }
    let names: Vec<String> = doc["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str().map(String::from))
        .collect();
    if names.is_empty() {
        return Err(Error::Remote {
            message: "PM2 runs no app herd can take over".into(),
            hint: None,
        });
    }
    // PM2's listening sockets first: herd's apps accept from the same ones.
    match crate::client::call(&Request::TakeListeners { pid: god })? {
        Response::Done { notes, .. } => notes.iter().for_each(|n| eprintln!("[herd] {n}")),
        other => return Err(crate::client::unexpected(&other)),
    }
    for req in start_requests(&doc)? {
        match crate::client::call(&req)? {
            Response::Done { notes, .. } => notes.iter().for_each(|n| eprintln!("[herd] {n}")),
            other => return Err(crate::client::unexpected(&other)),
        }
    }
    wait_ready(&names)?;
    // PM2 runs nothing else: end it without cutting a request.
    let all_taken = list.as_array().into_iter().flatten().all(|p| {
        p["name"]
            .as_str()
            .is_some_and(|n| names.iter().any(|m| m == n))
    });
    if all_taken {
        let workers: Vec<i32> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["pid"].as_i64().map(|p| p as i32))
            .filter(|&p| p > 0)
            .collect();
        end_pm2(god, &workers)?;
        for name in &names {
            eprintln!("[herd] `{name}` serves under herd");
        }
        eprintln!(
            "[herd] PM2 had nothing else: its daemon was paused until its workers were idle, then ended"
        );
        return crate::cli::list::print_table();
    }
    for name in &names {
        pm2(&cmd, &["delete", name])?;
        eprintln!("[herd] `{name}` serves under herd; deleted from PM2");
    }
    let left: Value = serde_json::from_str(pm2(&cmd, &["jlist"])?.trim()).unwrap_or(Value::Null);
    match left.as_array().map(Vec::len) {
        Some(0) => {
            pm2(&cmd, &["kill"])?;
            eprintln!("[herd] PM2 had nothing left: stopped it (`pm2 kill`)");
        }
        Some(n) => eprintln!("[herd] PM2 keeps running: {n} process(es) herd did not take over"),
        None => eprintln!("[herd] PM2 left running (its list could not be read)"),
    }
    crate::cli::list::print_table()
}

/// How long PM2's workers get to finish what they hold once its daemon is
/// paused (it hands them nothing more).
const DRAIN: std::time::Duration = std::time::Duration::from_millis(300);

/// Ends a PM2 that runs only apps herd took over, without cutting a
/// request: its daemon (PM2's cluster primary) is paused (SIGSTOP), so it
/// accepts and hands out nothing more and herd takes every new connection
/// from the shared sockets; its workers finish what they hold; then the
/// daemon is killed, and its workers, whose channel to it closes, exit.
/// (`pm2 delete` stopped workers with requests in flight: 0–5 of 3,000
/// failed across the switch; this way 0 in each of 3 runs of 6,000.)
/// A worker still there after a few seconds gets SIGKILL.
fn end_pm2(god: i32, workers: &[i32]) -> Result<()> {
    use crate::sys::process::{alive, kill_pid};
    kill_pid(god, libc::SIGSTOP)
        .map_err(|e| Error::io(format!("cannot pause PM2's daemon (pid {god})"), e))?;
    std::thread::sleep(DRAIN);
    kill_pid(god, libc::SIGKILL)
        .map_err(|e| Error::io(format!("cannot end PM2's daemon (pid {god})"), e))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while workers.iter().any(|&w| alive(w)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for &w in workers.iter().filter(|&&w| alive(w)) {
        let _ = kill_pid(w, libc::SIGKILL);
    }
    Ok(())
}

/// Waits until every instance of `names` is online, and in the rotation
/// where herd dispatches (fdpass): only then may PM2's copy go.
fn wait_ready(names: &[String]) -> Result<()> {
    let deadline = std::time::Instant::now() + READY_WAIT;
    loop {
        let instances = match crate::client::call(&Request::List)? {
            Response::Instances { instances } => instances,
            other => return Err(crate::client::unexpected(&other)),
        };
        let mine: Vec<_> = instances
            .iter()
            .filter(|i| names.contains(&i.name))
            .collect();
        let ready = |i: &&crate::protocol::InstanceInfo| {
            i.status == crate::protocol::Status::Online && (i.channel.is_none() || i.in_rotation)
        };
        if !mine.is_empty() && mine.iter().all(ready) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            let late: Vec<String> = mine
                .iter()
                .filter(|i| !ready(i))
                .map(|i| format!("{} [{}]", i.name, i.id))
                .collect();
            return Err(Error::Remote {
                message: format!(
                    "not ready under herd within {} s: {}; PM2 keeps serving them",
                    READY_WAIT.as_secs(),
                    late.join(", ")
                ),
                hint: Some("`herd logs` shows why; `herd delete` them to retry".into()),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

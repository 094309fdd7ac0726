//! Turns an [`Instance`] into a running process: resolves the executable,
//! builds argv and the environment (PM2's variables plus herd's), opens the
//! log files, hands over the listener as fd 3, and forks.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Instance;
use crate::home::Home;
use crate::sys::spawn::{spawn, SpawnPlan, Spawned};

/// The Node preload that makes `server.listen(PORT)` use the inherited fd 3.
/// Shipped inside the binary, written to `$HERD_HOME/node/` at daemon start.
pub const NODE_PRELOAD: &str = include_str!("../../bench-apps/node/herd-listen.js");

/// Writes [`NODE_PRELOAD`] where `node -r` can find it.
pub fn install_node_preload(home: &Home) -> io::Result<()> {
    let path = home.node_preload();
    std::fs::create_dir_all(path.parent().expect("preload path has a parent"))?;
    crate::home::write_atomic(&path, NODE_PRELOAD.as_bytes())
}

/// Finds `prog` in `path_var` (a `PATH` value) unless it already has a `/`.
pub fn which(prog: &str, path_var: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = cwd.join(prog);
        return is_executable(&p).then_some(p);
    }
    let path_var = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    std::env::split_paths(path_var)
        .map(|d| d.join(prog))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The full environment of an instance: inherited, then the app's `--env`,
/// then what herd sets (PM2's names first, so unmodified apps find them).
pub fn environment(inst: &Instance) -> Vec<(String, String)> {
    let app = &inst.app;
    let mut env: std::collections::BTreeMap<String, String> = app.base_env.clone();
    env.extend(app.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Variables that belong to another process's socket activation or
    // cluster must not leak into ours.
    for k in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NODE_UNIQUE_ID",
        "NODE_CHANNEL_FD",
    ] {
        env.remove(k);
    }
    env.insert("NODE_APP_INSTANCE".into(), inst.index.to_string());
    env.insert("pm_id".into(), inst.id.to_string());
    env.insert("name".into(), app.name.clone());
    env.insert("HERD_APP_NAME".into(), app.name.clone());
    env.insert("HERD_INSTANCE".into(), inst.index.to_string());
    env.insert("HERD_ID".into(), inst.id.to_string());
    if let Some(port) = inst.port {
        env.insert("PORT".into(), port.to_string());
        env.insert("HERD_PORT".into(), port.to_string());
        env.insert("LISTEN_FDS".into(), "1".into());
        env.insert("LISTEN_FDNAMES".into(), app.name.clone());
    }
    env.into_iter().collect()
}

/// The executable and argv for an instance.
pub fn command(inst: &Instance, home: &Home) -> io::Result<(PathBuf, Vec<String>)> {
    let app = &inst.app;
    let script = app.script.to_string_lossy().into_owned();
    let path_var = app
        .env
        .get("PATH")
        .or_else(|| app.base_env.get("PATH"))
        .map(String::as_str);
    match &app.interpreter {
        None => {
            if !is_executable(&app.script) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{script} is not executable; give --interpreter or chmod +x it"),
                ));
            }
            let mut argv = vec![script];
            argv.extend(app.args.iter().cloned());
            Ok((app.script.clone(), argv))
        }
        Some(interp) => {
            let exe = which(interp, path_var, &app.cwd).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interpreter `{interp}` not found in PATH"),
                )
            })?;
            let mut argv = vec![interp.clone()];
            argv.extend(app.interpreter_args.iter().cloned());
            if inst.listener.is_some() && is_node(interp) {
                argv.push("-r".into());
                argv.push(home.node_preload().to_string_lossy().into_owned());
            }
            argv.push(script);
            argv.extend(app.args.iter().cloned());
            Ok((exe, argv))
        }
    }
}

fn is_node(interp: &str) -> bool {
    let base = Path::new(interp)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("");
    base == "node" || base == "nodejs"
}

fn open_log(path: &Path) -> io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Starts the instance's process.
pub fn launch(inst: &Instance, home: &Home) -> io::Result<Spawned> {
    let (exe, argv) = command(inst, home)?;
    let env = environment(inst);
    let out = open_log(&inst.out_log)?;
    let err = open_log(&inst.err_log)?;
    let plan = SpawnPlan {
        program: exe.as_os_str(),
        args: argv.iter().map(OsStr::new).collect(),
        env: env
            .iter()
            .map(|(k, v)| (OsStr::new(k), OsStr::new(v)))
            .collect(),
        cwd: inst.app.cwd.as_os_str(),
        stdout: out.as_fd(),
        stderr: err.as_fd(),
        fd3: inst.listener.as_deref().map(|s| s.as_fd()),
        listen_pid: inst.listener.is_some(),
        cpu: inst.core,
    };
    spawn(&plan)
}

//! The daemon: one per `$HERD_HOME`, started on demand by the first CLI call
//! (or in the foreground with `herd daemon`). It holds the single-instance
//! lock, serves the control socket, and owns the [`Supervisor`].
//!
//! Threads: the control plane is a tokio current-thread runtime with a
//! `LocalSet` (so the state is a plain `RefCell`); besides it run the
//! per-core acceptor threads of each `fdpass` app and short-lived helper
//! threads (warm-ups). The rest of herd logs through the `log` facade; the
//! daemon installs its sink ([`logger`]).

pub mod foreground;
pub mod handlers;
pub mod health;
mod logger;
pub mod server;

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use crate::error::{Error, Result};
use crate::home::Home;
use crate::supervisor::registry::Supervisor;

/// Options of `herd daemon` and `herd run`.
#[derive(Debug, Default)]
pub struct DaemonOptions {
    /// Started by a CLI: detach into a new session, and exit quietly if
    /// another daemon won the race for the lock.
    pub background: bool,
    /// `herd run`: what to start, and when to exit.
    pub run: Option<foreground::RunPlan>,
    /// `--health ADDR`: serve `/healthz` and `/readyz` there.
    pub health: Option<SocketAddr>,
    /// `--metrics ADDR`: serve `/metrics` there.
    pub metrics: Option<SocketAddr>,
}

/// The daemon log rotates at this size (`HERD_DAEMON_LOG_MAX_SIZE` changes
/// it), keeping [`DAEMON_LOG_RETAIN`] old files: PM2's pm2.log grows forever.
pub const DAEMON_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Rotated daemon logs kept (`herd.log.1` … `herd.log.3`).
pub const DAEMON_LOG_RETAIN: u32 = 3;

fn rotate_daemon_log(path: &Path) {
    if crate::logs::file::shift(path, DAEMON_LOG_RETAIN).is_err() {
        return;
    }
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = crate::sys::redirect_stderr(&f);
    }
}

/// `2026-11-25T10:00:00.123Z`.
pub fn utc_timestamp(t: SystemTime) -> String {
    crate::logs::date::iso_utc(t)
}

/// `HERD_AUTOSAVE=1` (or `true`, `on`, `yes`) in the daemon's environment
/// turns autosave on (`herd save --autosave` does it for a running daemon).
fn autosave_from_env() -> bool {
    crate::config::env_flag("HERD_AUTOSAVE")
}

/// Shared by every connection task.
pub struct Context {
    /// The instances.
    pub sup: Rc<Supervisor>,
    /// When the daemon started.
    pub started: Instant,
    /// Notified to make the daemon stop everything and exit.
    pub shutdown: tokio::sync::Notify,
    /// The process's exit status once it has stopped (`herd run`: 1 when
    /// an app could not start or crashed past `max_restarts`).
    pub exit_code: Cell<i32>,
    /// systemd's `NOTIFY_SOCKET`, when it started herd (`Type=notify`).
    pub notify_socket: Option<String>,
}

/// Runs the daemon until `herd kill`, SIGTERM or SIGINT (`herd run`: also
/// until its apps are gone); returns the exit status.
pub fn run(home: Home, opts: DaemonOptions) -> Result<i32> {
    home.ensure()
        .map_err(|e| Error::io(format!("cannot create {}", home.root().display()), e))?;
    let Some(_lock) = crate::sys::lock::try_lock(&home.lock_file())
        .map_err(|e| Error::io(format!("cannot open {}", home.lock_file().display()), e))?
    else {
        if opts.background {
            // Another CLI started a daemon at the same moment; it serves.
            return Ok(0);
        }
        return Err(Error::Remote {
            message: format!("a herd daemon already runs for {}", home.root().display()),
            hint: Some("`herd ping` talks to it; `herd kill` stops it".into()),
        });
    };
    if opts.background {
        let _ = crate::sys::process::setsid();
    }
    logger::install(opts.background.then(|| home.daemon_log()));
    let notify_socket = std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty());
    // Listeners systemd passed (sd_listen_fds semantics): taken before
    // anything else, the variables cleared so apps never inherit them.
    crate::accept::activation::install(
        crate::sys::activation::take_listen_fds(),
        notify_socket.clone(),
    );
    if opts.run.is_some() {
        // PID 1's duty, and a supervisor's anywhere: orphans of the apps'
        // children come to herd, which reaps them.
        if let Err(e) = crate::sys::reap::become_subreaper() {
            log::info!("cannot become the child subreaper ({e}); orphans go to init");
        }
    }
    let endpoints = health::bind_all(opts.health, opts.metrics)?;
    // We hold the lock, so any socket or pid file left is from a dead daemon.
    let sock_path = home.sock();
    match std::fs::remove_file(&sock_path) {
        Ok(()) => log::info!("removed stale socket {}", sock_path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format!("cannot remove stale {}", sock_path.display()),
                e,
            ))
        }
    }
    crate::supervisor::launch::install_node_preload(&home)
        .map_err(|e| Error::io("cannot write the node preload script", e))?;
    let old = crate::sys::umask(0o177);
    let bound = std::os::unix::net::UnixListener::bind(&sock_path);
    crate::sys::umask(old);
    let listener =
        bound.map_err(|e| Error::io(format!("cannot bind {}", sock_path.display()), e))?;
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("cannot chmod the socket", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("socket", e))?;
    crate::home::write_atomic(
        &home.pid_file(),
        format!("{}\n", std::process::id()).as_bytes(),
    )
    .map_err(|e| Error::io("cannot write the pid file", e))?;
    log::info!(
        "herd daemon {} pid {} listening on {}",
        crate::protocol::HERD_VERSION,
        std::process::id(),
        sock_path.display()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the runtime", e))?;
    let local = tokio::task::LocalSet::new();
    let ctx = Rc::new(Context {
        sup: Supervisor::new(home.clone()),
        started: Instant::now(),
        shutdown: tokio::sync::Notify::new(),
        exit_code: Cell::new(0),
        notify_socket,
    });
    let run_plan = opts.run;
    let task_ctx = ctx.clone();
    let result = local.block_on(&rt, async move {
        let ctx = task_ctx;
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(|e| Error::io("socket", e))?;
        if autosave_from_env() {
            ctx.sup.set_autosave(true);
            log::info!("HERD_AUTOSAVE: the dump follows every change");
        }
        // Per-process sockets go here; any left by a dead daemon are stale.
        let dir = ctx.sup.home().notify_dir();
        let _ = std::fs::remove_dir_all(&dir);
        let made = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)));
        if let Err(e) = made {
            log::info!("cannot create {}: {e}", dir.display());
        }
        match crate::sys::notify::bind(&ctx.sup.home().notify_sock()) {
            Ok(sock) => {
                tokio::task::spawn_local(crate::supervisor::ready::serve_notify(
                    ctx.sup.clone(),
                    sock,
                ));
            }
            Err(e) => {
                log::info!("cannot bind the notify socket: {e}; apps' READY=1 will not be heard")
            }
        }
        for (l, serves) in endpoints {
            tokio::task::spawn_local(health::serve(l, serves, ctx.clone()));
        }
        {
            // The metrics windows' samples (a few µs a second).
            let sup = ctx.sup.clone();
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(crate::supervisor::registry::METRICS_TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    sup.metrics_tick();
                }
            });
        }
        match run_plan {
            Some(plan) => {
                ctx.sup.log_files.set_console(Some(plan.console));
                tokio::task::spawn_local(foreground::drive(ctx.clone(), plan));
            }
            None => {
                if let Some(sock) = &ctx.notify_socket {
                    // `herd daemon` as a Type=notify service: it serves now.
                    let _ = crate::sys::activation::notify(sock, "READY=1");
                }
            }
        }
        server::serve(listener, ctx).await
    });
    let _ = std::fs::remove_file(home.sock());
    let _ = std::fs::remove_file(home.pid_file());
    let _ = std::fs::remove_file(home.notify_sock());
    let _ = std::fs::remove_dir_all(home.notify_dir());
    log::info!("herd daemon {} exits", std::process::id());
    result.map(|()| ctx.exit_code.get())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps() {
        assert_eq!(super::utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_600_800_250);
        assert_eq!(super::utc_timestamp(t), "2026-11-25T10:00:00.250Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(super::utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}

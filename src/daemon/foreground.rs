//! `herd run`: the daemon in the foreground as a container's PID 1 or a
//! systemd `Type=notify` service (pm2-runtime's job). It is a whole daemon
//! (control socket in `HERD_HOME`, so `herd list`, `logs`, `reload`,
//! `scale` work against it); on top of that it
//!
//! * starts what it was given (a script, an ecosystem file, the dump),
//! * copies app output to its own stdout/stderr ([`ConsoleFormat`]),
//! * reaps every zombie reparented to it (see [`crate::sys::reap`]),
//! * tells systemd `READY=1` once every app is online and ready,
//! * and exits: 0 after SIGTERM/SIGINT once every app stopped gracefully,
//!   or once every app has exited by itself; 1 when something could not be
//!   started, or when every instance of an app crashed past
//!   `max_restarts` (so the orchestrator restarts or reports the pod).

use std::rc::Rc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::{handlers, health, Context};
use crate::logs::capture::ConsoleFormat;
use crate::protocol::{Request, Response};

/// What `herd run` was asked to do.
#[derive(Debug)]
pub struct RunPlan {
    /// Resurrect the dump first (`--resurrect`).
    pub resurrect: bool,
    /// Start requests, in order.
    pub requests: Vec<Request>,
    /// Exit once every app has stopped (off: `--no-auto-exit`).
    pub auto_exit: bool,
    /// How app output is shown.
    pub console: ConsoleFormat,
}

/// How often orphans are looked for even without SIGCHLD (a signal can
/// coalesce with one for a child of herd's own).
const REAP_EVERY: Duration = Duration::from_secs(2);

fn say(line: &str) {
    eprintln!("[herd] {line}");
}

/// Runs the plan, then watches the apps until it is time to exit.
pub async fn drive(ctx: Rc<Context>, plan: RunPlan) {
    tokio::task::spawn_local(reap_orphans());
    let fail = |why: &str| {
        say(why);
        ctx.exit_code.set(1);
        ctx.shutdown.notify_one();
    };
    if plan.resurrect {
        match handlers::handle(&ctx, Request::Resurrect).await {
            Response::Resurrected { notes, failed, .. } => {
                notes.iter().for_each(|n| say(n));
                if !failed.is_empty() {
                    failed
                        .iter()
                        .for_each(|f| say(&format!("not restored: {f}")));
                    return fail("resurrect: some saved apps could not be started; stopping");
                }
            }
            Response::Error { message, hint } => {
                let hint = hint.map(|h| format!(" ({h})")).unwrap_or_default();
                return fail(&format!("resurrect: {message}{hint}; stopping"));
            }
            other => return fail(&format!("resurrect: unexpected answer {other:?}")),
        }
    }
    for req in plan.requests {
        match handlers::handle(&ctx, req).await {
            Response::Done { instances, notes } => {
                notes.iter().for_each(|n| say(n));
                if let Some(first) = instances.first() {
                    let ids: Vec<String> = instances.iter().map(|i| i.id.to_string()).collect();
                    say(&format!("started `{}` (id {})", first.name, ids.join(", ")));
                }
            }
            Response::Error { message, hint } => {
                let hint = hint.map(|h| format!(" ({h})")).unwrap_or_default();
                return fail(&format!("error: {message}{hint}; stopping"));
            }
            other => return fail(&format!("unexpected answer {other:?}")),
        }
    }
    let mut changed = ctx.sup.subscribe();
    let mut had_apps = false;
    let mut announced = false;
    loop {
        if ctx.sup.is_closing() {
            return;
        }
        let apps = ctx.sup.health();
        had_apps |= !apps.is_empty();
        if let Some(a) = apps
            .iter()
            .find(|a| a.instances > 0 && a.errored == a.instances)
        {
            return fail(&format!(
                "app `{}`: every instance crashed past max_restarts (errored); stopping",
                a.name
            ));
        }
        let (ready, _) = health::readiness(&apps, false);
        if ready && !announced {
            announced = true;
            let online: u32 = apps.iter().map(|a| a.ready).sum();
            let status = format!("{} app(s), {online} instance(s) online", apps.len());
            say(&status);
            if let Some(sock) = &ctx.notify_socket {
                if let Err(e) =
                    crate::sys::activation::notify(sock, &format!("READY=1\nSTATUS={status}"))
                {
                    log::info!("cannot tell systemd READY=1 on {sock}: {e}");
                }
            }
        }
        if plan.auto_exit && had_apps && apps.iter().all(|a| a.alive == 0) {
            say("every app has stopped: exiting");
            if apps.iter().any(|a| a.errored > 0) {
                ctx.exit_code.set(1);
            }
            ctx.shutdown.notify_one();
            return;
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// Reaps zombies reparented to herd, on each SIGCHLD and every
/// [`REAP_EVERY`].
async fn reap_orphans() {
    let mut chld = match signal(SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::info!("cannot watch SIGCHLD ({e}): orphans are reaped every {REAP_EVERY:?}");
            None
        }
    };
    loop {
        match chld.as_mut() {
            Some(s) => {
                let _ = tokio::time::timeout(REAP_EVERY, s.recv()).await;
            }
            None => tokio::time::sleep(REAP_EVERY).await,
        }
        let n = crate::sys::reap::reap_orphans();
        if n > 0 {
            log::info!("reaped {n} orphaned process(es)");
        }
    }
}

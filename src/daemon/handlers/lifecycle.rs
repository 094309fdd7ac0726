//! `herd stop|restart|reload|delete|reset <targets…>`.

use std::collections::BTreeMap;

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

pub(super) async fn stop(
    ctx: &Context,
    targets: &[crate::protocol::Target],
    missing_ok: bool,
) -> Result<Response, Error> {
    let (ids, missing) = ctx.sup.resolve_lenient(targets, missing_ok)?;
    // Before stopping: a watch or cron restart under way must not start
    // them again (PM2: `stop` also stops watching).
    ctx.sup.unwatch(&ids);
    ctx.sup.hold(&ids);
    ctx.sup.stop(&ids).await;
    let notes = missing
        .iter()
        .map(|n| format!("no app named `{n}` is running: nothing to stop"))
        .collect();
    Ok(Response::Done {
        instances: ctx.sup.info(&ids),
        notes,
    })
}

/// What `restart` and `reload` do before acting: the targets' ids, with
/// the patch applied (checked whole first), watch and cron holds released,
/// and `--update-env`'s environment taken.
fn prepare(
    ctx: &Context,
    targets: &[crate::protocol::Target],
    env: Option<BTreeMap<String, String>>,
    patch: &crate::protocol::SpecPatch,
) -> Result<Vec<u32>, Error> {
    let ids = ctx.sup.resolve(targets)?;
    ctx.sup.patch_spec(&ids, patch)?;
    ctx.sup.release(&ids);
    if let Some(env) = env {
        ctx.sup.update_env(&ids, env);
    }
    Ok(ids)
}

pub(super) async fn restart(
    ctx: &Context,
    targets: &[crate::protocol::Target],
    env: Option<BTreeMap<String, String>>,
    patch: &crate::protocol::SpecPatch,
) -> Result<Response, Error> {
    let ids = prepare(ctx, targets, env, patch)?;
    let notes = ctx.sup.restart(&ids).await;
    Ok(Response::Done {
        instances: ctx.sup.info(&ids),
        notes,
    })
}

pub(super) async fn delete(
    ctx: &Context,
    targets: &[crate::protocol::Target],
) -> Result<Response, Error> {
    let ids = ctx.sup.resolve(targets)?;
    let instances = ctx.sup.delete(&ids).await;
    Ok(Response::Done {
        instances,
        notes: vec![],
    })
}

pub(super) fn reset(ctx: &Context, targets: &[crate::protocol::Target]) -> Result<Response, Error> {
    let ids = ctx.sup.resolve(targets)?;
    ctx.sup.reset(&ids);
    Ok(Response::Done {
        instances: ctx.sup.info(&ids),
        notes: vec![],
    })
}

pub(super) async fn reload(
    ctx: &Context,
    targets: &[crate::protocol::Target],
    env: Option<BTreeMap<String, String>>,
    parallel: Option<u32>,
    patch: &crate::protocol::SpecPatch,
) -> Result<Response, Error> {
    let ids = prepare(ctx, targets, env, patch)?;
    let done = ctx.sup.reload(&ids, parallel.unwrap_or(1) as usize).await;
    if !done.failed.is_empty() {
        return Err(Error::Remote {
            message: done.failed.join("; "),
            hint: Some(
                "the old processes keep serving; `herd logs <app> --err` shows why the replacement failed"
                    .into(),
            ),
        });
    }
    let mut notes = done.warnings;
    notes.extend(ctx.sup.reuseport_note(&ids));
    Ok(Response::Done {
        instances: ctx.sup.info(&ids),
        notes,
    })
}

pub(super) fn signal(
    ctx: &Context,
    signal: i32,
    targets: &[crate::protocol::Target],
) -> Result<Response, Error> {
    if !(1..=libc::SIGRTMAX()).contains(&signal) {
        return Err(Error::InvalidArg {
            what: "signal".into(),
            value: signal.to_string(),
            expected: format!("a signal number from 1 to {}", libc::SIGRTMAX()),
        });
    }
    let ids = ctx.sup.resolve(targets)?;
    let sent = ctx.sup.send_signal(&ids, signal);
    if sent.is_empty() {
        return Err(Error::Remote {
            message: "no running process to signal among the targets".into(),
            hint: Some("`herd list` shows which instances run".into()),
        });
    }
    Ok(Response::Done {
        instances: ctx.sup.info(&ids),
        notes: sent,
    })
}

//! One handler per verb (pueue's layout): each turns a [`Request`] into a
//! [`Response`] using the supervisor. Errors become `Response::Error`, never a
//! dropped connection.

mod dump;
mod kill;
mod lifecycle;
mod list;
mod logs;
mod ping;
mod scale;
mod start;

use super::Context;
use crate::error::Error;
use crate::protocol::{Request, Response};

/// Answers one request; with autosave on, a request that changes the list
/// saves it after (its notes say when that could not be done).
pub async fn handle(ctx: &Context, req: Request) -> Response {
    let changes = matches!(
        req,
        Request::Start { .. }
            | Request::Stop { .. }
            | Request::Restart { .. }
            | Request::Reload { .. }
            | Request::Delete { .. }
            | Request::Scale { .. }
            | Request::Resurrect
    );
    let mut resp = answer(ctx, req).await;
    if changes {
        let more = ctx.sup.autosave_now();
        match &mut resp {
            Response::Done { notes, .. } | Response::Resurrected { notes, .. } => {
                notes.extend(more)
            }
            _ => {}
        }
    }
    resp
}

async fn answer(ctx: &Context, req: Request) -> Response {
    let result = match req {
        Request::Ping => Ok(ping::ping(ctx)),
        Request::Start {
            spec,
            force,
            existing,
        } => start::start(ctx, *spec, force, existing).await,
        Request::List => Ok(list::list(ctx)),
        Request::Metrics { app, app_metrics } => {
            list::metrics(ctx, app.as_deref(), app_metrics).await
        }
        Request::Show { target } => list::show(ctx, &target),
        Request::Stop {
            targets,
            missing_ok,
        } => lifecycle::stop(ctx, &targets, missing_ok).await,
        Request::Restart {
            targets,
            env,
            patch,
        } => lifecycle::restart(ctx, &targets, env, &patch).await,
        Request::Reload {
            targets,
            env,
            parallel,
            patch,
        } => lifecycle::reload(ctx, &targets, env, parallel, &patch).await,
        Request::Delete { targets } => lifecycle::delete(ctx, &targets).await,
        Request::Scale { app, to } => scale::scale(ctx, &app, to).await,
        Request::Reset { targets } => lifecycle::reset(ctx, &targets),
        Request::Flush { targets } => logs::flush(ctx, &targets),
        Request::ReloadLogs => Ok(logs::reload_logs(ctx)),
        Request::Save { force, autosave } => dump::save(ctx, force, autosave),
        Request::Resurrect => dump::resurrect(ctx).await,
        Request::ClearDump => dump::clear(ctx),
        Request::Kill => Ok(kill::kill(ctx).await),
        Request::Signal { signal, targets } => lifecycle::signal(ctx, signal, &targets),
        Request::TakeListeners { pid } => take_listeners(pid),
    };
    result.unwrap_or_else(|e: Error| Response::Error {
        message: e.to_string(),
        hint: e.hint(),
    })
}

/// `TakeListeners`: the listeners of `pid` join the kept ones.
fn take_listeners(pid: i32) -> Result<Response, Error> {
    if pid <= 1 || pid == std::process::id() as i32 || !crate::sys::process::alive(pid) {
        return Err(Error::InvalidArg {
            what: "pid".into(),
            value: pid.to_string(),
            expected: "the pid of another running process".into(),
        });
    }
    let Some(kept) = crate::accept::activation::kept() else {
        return Err(Error::Remote {
            message: "this daemon keeps no listeners".into(),
            hint: None,
        });
    };
    let taken = crate::sys::activation::take_listeners_of(pid).map_err(|e| Error::Remote {
        message: format!("cannot take the listeners of pid {pid}: {e}"),
        hint: Some("herd needs the right to ptrace it: the same user, or CAP_SYS_PTRACE".into()),
    })?;
    let notes = taken
        .iter()
        .map(|p| format!("took the listener on {} from pid {pid}", p.addr))
        .collect();
    kept.adopt(taken);
    Ok(Response::Done {
        instances: Vec::new(),
        notes,
    })
}

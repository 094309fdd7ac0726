//! `herd flush [targets…]` and `herd reloadLogs`.

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

/// Truncates the targets' log files through the daemon's own handles, so
/// apps keep writing (at offset 0 from then on). No target: every app's
/// files and the daemon's log, as `pm2 flush`.
pub(super) fn flush(ctx: &Context, targets: &[crate::protocol::Target]) -> Result<Response, Error> {
    let everything = targets.is_empty();
    let ids = if everything {
        ctx.sup.all_ids()
    } else {
        ctx.sup.resolve(targets)?
    };
    let mut paths = ctx.sup.log_paths(&ids);
    if everything {
        paths.push(ctx.sup.home().daemon_log());
    }
    let mut notes = Vec::new();
    let mut flushed = 0;
    for p in &paths {
        match ctx.sup.log_files.truncate(p) {
            Ok(()) => flushed += 1,
            Err(e) => notes.push(format!("cannot flush {}: {e}", p.display())),
        }
    }
    notes.insert(0, format!("flushed {flushed} log file(s)"));
    Ok(Response::Done {
        instances: ctx.sup.info(&ids),
        notes,
    })
}

/// Reopens every log file the daemon writes (after an external logrotate
/// renamed them).
pub(super) fn reload_logs(ctx: &Context) -> Response {
    let n = ctx.sup.log_files.reopen_all();
    log::info!("reopened {n} log file(s)");
    Response::Done {
        instances: Vec::new(),
        notes: vec![format!("reopened {n} log file(s)")],
    }
}

//! `herd start`.

use crate::config::AppSpec;
use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::{OnExisting, Response};

pub(super) async fn start(
    ctx: &Context,
    spec: AppSpec,
    force: bool,
    existing: OnExisting,
) -> Result<Response, Error> {
    crate::config::limits::check_spec(&spec)?;
    let mut started = ctx.sup.start_app(spec, force, existing)?;
    if !started.restart.is_empty() {
        if existing == OnExisting::Reload {
            ctx.sup.release(&started.restart);
            let done = ctx.sup.reload(&started.restart, 1).await;
            started.notes.extend(done.failed);
            started.notes.extend(done.warnings);
        } else {
            started
                .notes
                .extend(ctx.sup.restart(&started.restart).await);
        }
        started.ids.extend(&started.restart);
    }
    Ok(Response::Done {
        instances: ctx.sup.info(&started.ids),
        notes: started.notes,
    })
}

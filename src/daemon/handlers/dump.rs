//! `herd save`, `herd resurrect`, `herd cleardump`.

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

pub(super) fn save(ctx: &Context, force: bool, autosave: Option<bool>) -> Result<Response, Error> {
    Ok(Response::Done {
        instances: Vec::new(),
        notes: ctx.sup.save(force, autosave)?,
    })
}

pub(super) async fn resurrect(ctx: &Context) -> Result<Response, Error> {
    let r = ctx.sup.resurrect().await?;
    Ok(Response::Resurrected {
        instances: r.instances,
        notes: r.notes,
        failed: r.failed,
    })
}

pub(super) fn clear(ctx: &Context) -> Result<Response, Error> {
    Ok(Response::Done {
        instances: Vec::new(),
        notes: ctx.sup.clear_dump()?,
    })
}

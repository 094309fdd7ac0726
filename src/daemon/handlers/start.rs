//! `herd start`.

use crate::config::AppSpec;
use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

pub(super) fn start(ctx: &Context, spec: AppSpec, force: bool) -> Result<Response, Error> {
    let (ids, notes) = ctx.sup.start_app(spec, force)?;
    Ok(Response::Done {
        instances: ctx.sup.info(&ids),
        notes,
    })
}

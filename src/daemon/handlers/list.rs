//! `herd list` / `jlist` / `show`.

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

pub(super) fn list(ctx: &Context) -> Response {
    Response::Instances {
        instances: ctx.sup.info(&ctx.sup.all_ids()),
    }
}

pub(super) fn show(ctx: &Context, target: &crate::protocol::Target) -> Result<Response, Error> {
    let ids = ctx.sup.resolve(std::slice::from_ref(target))?;
    Ok(Response::Instances {
        instances: ctx.sup.info(&ids),
    })
}

//! `herd list` / `jlist` / `show`.

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

pub(super) fn list(ctx: &Context) -> Response {
    Response::Instances {
        instances: ctx.sup.info(&ctx.sup.all_ids()),
    }
}

pub(super) fn metrics(ctx: &Context, app: Option<&str>) -> Result<Response, Error> {
    if let Some(name) = app {
        // Names an app, as `show` would (an unknown one is an error).
        ctx.sup
            .resolve(&[crate::protocol::Target::Name(name.to_string())])?;
    }
    Ok(Response::Metrics {
        snapshot: Box::new(ctx.sup.metrics_snapshot(app)),
    })
}

pub(super) fn show(ctx: &Context, target: &crate::protocol::Target) -> Result<Response, Error> {
    let ids = ctx.sup.resolve(std::slice::from_ref(target))?;
    Ok(Response::Instances {
        instances: ctx.sup.info(&ids),
    })
}

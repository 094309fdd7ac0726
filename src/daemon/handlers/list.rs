//! `herd list` / `jlist` / `show`.

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

pub(super) fn list(ctx: &Context) -> Response {
    Response::Instances {
        instances: ctx.sup.info(&ctx.sup.all_ids()),
    }
}

pub(super) async fn metrics(
    ctx: &Context,
    app: Option<&str>,
    app_metrics: bool,
) -> Result<Response, Error> {
    if let Some(name) = app {
        // Names an app, as `show` would (an unknown one is an error).
        ctx.sup
            .resolve(&[crate::protocol::Target::Name(name.to_string())])?;
    }
    let texts = if app_metrics {
        ctx.sup.gather_app_metrics(app).await
    } else {
        Vec::new()
    };
    let mut snapshot = ctx.sup.metrics_snapshot(app);
    snapshot.app_texts = texts;
    Ok(Response::Metrics {
        snapshot: Box::new(snapshot),
    })
}

pub(super) fn show(ctx: &Context, target: &crate::protocol::Target) -> Result<Response, Error> {
    let ids = ctx.sup.resolve(std::slice::from_ref(target))?;
    Ok(Response::Instances {
        instances: ctx.sup.info(&ids),
    })
}

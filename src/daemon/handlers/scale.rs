//! `herd scale <app> N|+N|-N`.

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

pub(super) async fn scale(ctx: &Context, app: &str, to: &str) -> Result<Response, Error> {
    let current = ctx.sup.resolve(&[app.to_string()])?.len() as u32;
    let target = crate::config::limits::scale_target(current, to)?;
    let (added, removed) = ctx.sup.scale(app, target).await?;
    let notes = vec![format!(
        "`{app}`: {current} → {target} instances ({} added, {} removed)",
        added.len(),
        removed.len()
    )];
    Ok(Response::Done {
        instances: ctx.sup.info(&ctx.sup.resolve(&[app.to_string()])?),
        notes,
    })
}

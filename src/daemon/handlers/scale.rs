//! `herd scale <app> N|+N|-N`.

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::{Response, ScaleTo, Target};

pub(super) async fn scale(ctx: &Context, app: &str, to: ScaleTo) -> Result<Response, Error> {
    let name = [Target::Name(app.to_string())];
    let current = ctx.sup.resolve(&name)?.len() as u32;
    let target = crate::config::limits::scale_target(current, &to.to_string(), to.apply(current))?;
    let (added, removed) = ctx.sup.scale(app, target).await?;
    let notes = vec![format!(
        "`{app}`: {current} → {target} instances ({} added, {} removed)",
        added.len(),
        removed.len()
    )];
    Ok(Response::Done {
        instances: ctx.sup.info(&ctx.sup.resolve(&name)?),
        notes,
    })
}

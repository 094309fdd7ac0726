//! `herd scale <app> N|+N|-N`.

use crate::daemon::Context;
use crate::error::Error;
use crate::protocol::Response;

pub(super) async fn scale(ctx: &Context, app: &str, to: &str) -> Result<Response, Error> {
    let current = ctx.sup.resolve(&[app.to_string()])?.len() as i64;
    let bad = || Error::InvalidArg {
        what: "scale".into(),
        value: to.into(),
        expected: "a number of instances N, or +N / -N to add or remove".into(),
    };
    let t = to.trim();
    let target = if let Some(d) = t.strip_prefix('+') {
        current + d.parse::<i64>().map_err(|_| bad())?
    } else if let Some(d) = t.strip_prefix('-') {
        current - d.parse::<i64>().map_err(|_| bad())?
    } else {
        t.parse::<i64>().map_err(|_| bad())?
    };
    if !(0..=4096).contains(&target) {
        return Err(bad());
    }
    let (added, removed) = ctx.sup.scale(app, target as u32).await?;
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

//! `herd ping`.

use crate::daemon::Context;
use crate::protocol::{Response, HERD_VERSION};

pub(super) fn ping(ctx: &Context) -> Response {
    Response::Pong {
        pid: std::process::id(),
        version: HERD_VERSION.into(),
        uptime_ms: ctx.started.elapsed().as_millis() as u64,
    }
}

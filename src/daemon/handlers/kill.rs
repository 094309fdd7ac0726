//! `herd kill`: stop everything; the server exits after replying.

use crate::daemon::Context;
use crate::protocol::Response;

pub(super) async fn kill(ctx: &Context) -> Response {
    // Its stops are not the user's: the dump keeps the apps as they were.
    ctx.sup.begin_shutdown();
    let ids = ctx.sup.all_ids();
    ctx.sup.stop(&ids).await;
    Response::Killed {
        pid: std::process::id(),
        stopped: ids.len(),
    }
}

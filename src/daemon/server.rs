//! The control socket: accept, check the peer, handshake, then one response
//! per request frame. A connection can only ever hurt itself: bad frames get
//! an error reply and a close, and each connection is its own task.

use std::rc::Rc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};

use super::{handlers, Context};
use crate::error::{Error, Result};
use crate::protocol::frame::{self, FrameError, MAX_REQUEST};
use crate::protocol::{Hello, Request, Response};

/// A peer gets this long to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Serves until shutdown is requested (kill, SIGTERM, SIGINT), then stops
/// every instance.
pub async fn serve(listener: UnixListener, ctx: Rc<Context>) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::io("signal", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::io("signal", e))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::task::spawn_local(connection(stream, ctx.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::info!("accept on control socket failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = term.recv() => { log::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { log::info!("SIGINT: stopping"); break; }
            _ = ctx.shutdown.notified() => break,
        }
    }
    // Stopping for shutdown is not the user's stop: autosave keeps the
    // dump as it was.
    ctx.sup.begin_shutdown();
    if let Some(sock) = &ctx.notify_socket {
        let _ = crate::sys::activation::notify(sock, "STOPPING=1");
    }
    ctx.sup.stop_accepting();
    let ids = ctx.sup.all_ids();
    ctx.sup.stop(&ids).await;
    Ok(())
}

async fn connection(mut stream: UnixStream, ctx: Rc<Context>) {
    if let Err(e) = frame::write_async(&mut stream, &Hello::ours()).await {
        log::info!("client went away before hello: {e}");
        return;
    }
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == crate::sys::euid() => {}
        Ok(cred) => {
            log::info!("refused a client with uid {}", cred.uid());
            let _ = reply_error(
                &mut stream,
                "permission denied: this daemon serves only its own user",
                None,
            )
            .await;
            return;
        }
        Err(e) => {
            log::info!("cannot read peer credentials: {e}");
            return;
        }
    }
    let hello = tokio::time::timeout(
        HELLO_TIMEOUT,
        frame::read_async::<Hello>(&mut stream, MAX_REQUEST),
    )
    .await;
    match hello {
        Ok(Ok(h)) if h.herd == "herd" && h.protocol == crate::protocol::PROTOCOL_VERSION => {}
        Ok(Ok(h)) => {
            let msg = format!(
                "protocol mismatch: client {} speaks protocol {}, this daemon ({}) speaks {}",
                h.version,
                h.protocol,
                crate::protocol::HERD_VERSION,
                crate::protocol::PROTOCOL_VERSION
            );
            let _ = reply_error(
                &mut stream,
                &msg,
                Some("use the herd binary that matches the daemon, or `herd kill` it"),
            )
            .await;
            return;
        }
        Ok(Err(e)) => {
            let _ = reply_bad_frame(&mut stream, &e).await;
            return;
        }
        Err(_) => return,
    }
    loop {
        let req = match tokio::time::timeout(
            IDLE_TIMEOUT,
            frame::read_async::<Request>(&mut stream, MAX_REQUEST),
        )
        .await
        {
            Ok(Ok(req)) => req,
            Ok(Err(e)) => {
                let _ = reply_bad_frame(&mut stream, &e).await;
                return;
            }
            Err(_) => return,
        };
        let kill = matches!(req, Request::Kill);
        let resp = handlers::handle(&ctx, req).await;
        let written = frame::write_async(&mut stream, &resp).await;
        if kill {
            ctx.shutdown.notify_one();
            return;
        }
        if written.is_err() {
            return;
        }
    }
}

async fn reply_error(
    stream: &mut UnixStream,
    message: &str,
    hint: Option<&str>,
) -> std::io::Result<()> {
    let resp = Response::Error {
        message: message.into(),
        hint: hint.map(Into::into),
    };
    frame::write_async(stream, &resp).await
}

/// Tells the peer why its frame was refused (unless it is gone), then the
/// caller closes the connection.
async fn reply_bad_frame(stream: &mut UnixStream, e: &FrameError) -> std::io::Result<()> {
    match e {
        FrameError::Closed | FrameError::Io(_) => Ok(()),
        FrameError::TooLarge { .. } | FrameError::Malformed(_) => {
            log::info!("bad frame from client: {e}");
            reply_error(
                stream,
                &format!("bad request: {e}"),
                Some("is this client a herd CLI of the same version?"),
            )
            .await
        }
    }
}

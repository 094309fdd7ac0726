//! How an instance tells the daemon it is ready, outside the fdpass channel:
//!
//! * a Node app gets a plain IPC channel (as under PM2): the herd preload
//!   reports that the app's server listens on herd's socket, and the app's
//!   own `process.send('ready')` is PM2's `wait_ready` signal. The same
//!   channel carries `shutdown` for `shutdown_with_message`.
//! * any app may send `READY=1` to `$NOTIFY_SOCKET` (sd_notify(3)); the
//!   kernel tells us the sender's pid, which is the instance's process or
//!   one of its descendants.

use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use tokio::io::unix::AsyncFd;

use super::registry::Supervisor;
use crate::fdpass::node::{self, FromWorker, LineDecoder};
use crate::sys::fd;

/// A readiness signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The app's server listens on herd's socket (the Node preload saw it).
    Listening,
    /// The app said it is ready: `process.send('ready')` or `READY=1`.
    Ready,
}

/// The daemon's end of a Node app's IPC channel (outside fdpass mode).
pub type Ipc = Rc<IpcChan>;

/// A Node app's IPC channel, and what it said about closing.
pub struct IpcChan {
    fd: AsyncFd<OwnedFd>,
    /// Notified when the preload reports its servers closed (NODE_HERD_CLOSED).
    pub closed: tokio::sync::Notify,
}

/// Registers the channel with the runtime.
pub fn ipc(chan: OwnedFd) -> std::io::Result<Ipc> {
    Ok(Rc::new(IpcChan {
        fd: fd::async_fd(chan, tokio::io::Interest::READABLE)?,
        closed: tokio::sync::Notify::new(),
    }))
}

/// Sends `value` as a message the app's `process.on('message')` receives.
pub fn send(chan: &Ipc, value: &serde_json::Value) -> std::io::Result<()> {
    send_raw(chan, &node::message(value))
}

/// Sends one encoded line.
pub fn send_raw(chan: &Ipc, line: &[u8]) -> std::io::Result<()> {
    crate::sys::fdpass::send_with_fds(chan.fd.as_fd(), line, &[], true).map(drop)
}

/// Internal messages for herd's Node preload (bench-apps/node/herd-listen.js).
pub mod preload {
    /// From now on, every HTTP response says `Connection: close`.
    pub const DRAIN: &[u8] = b"{\"cmd\":\"NODE_HERD_DRAIN\"}\n";
    /// Close the servers; report NODE_HERD_CLOSED when their requests are done.
    pub const CLOSE: &[u8] = b"{\"cmd\":\"NODE_HERD_CLOSE\"}\n";

    /// Answer scrape `seq` with the app's own Prometheus text (`app_metrics`).
    pub fn metrics_request(seq: u64) -> Vec<u8> {
        format!("{{\"cmd\":\"NODE_HERD_METRICS_REQ\",\"seq\":{seq}}}\n").into_bytes()
    }
}

/// Reads a Node app's IPC channel until it closes, turning its messages
/// into readiness signals for instance `id` (process `pid`).
pub async fn read_node_ipc(sup: Rc<Supervisor>, id: u32, pid: i32, chan: Ipc) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut decoder = LineDecoder::new();
    fd::read_chunks(&chan.fd, &mut buf, |chunk| {
        decoder.feed(chunk);
        for msg in decoder.by_ref() {
            match msg {
                Ok(FromWorker::Ready) => sup.on_signal(id, pid, Signal::Ready),
                Ok(FromWorker::Latency(pairs)) => {
                    if let Some(m) = sup.metrics_of(id) {
                        m.report_requests(id, pairs);
                    }
                }
                Ok(FromWorker::AppMetrics { seq, answer }) => {
                    if let Some(m) = sup.metrics_of(id) {
                        m.scraped(seq, answer);
                    }
                }
                Ok(FromWorker::Other(v)) => match v.get("cmd").and_then(|c| c.as_str()) {
                    Some("NODE_HERD_LISTENING") => sup.on_signal(id, pid, Signal::Listening),
                    Some("NODE_HERD_CLOSED") => chan.closed.notify_one(),
                    _ => {}
                },
                // Node waits for this before sending anything else.
                Ok(FromWorker::Handle { .. }) => {
                    let _ = send_raw(&chan, &node::handle_ack());
                }
                _ => {}
            }
        }
    })
    .await;
}

/// Whether an sd_notify datagram has the line `READY=1`.
fn says_ready(msg: &[u8]) -> bool {
    String::from_utf8_lossy(msg)
        .lines()
        .any(|l| l.trim() == "READY=1")
}

/// Serves one process's own notify socket (see `launch::own_notify_socket`)
/// while that process is the instance's: `READY=1` on it is the process's
/// ready signal, whoever sent it. Removes the socket file at the end.
pub async fn serve_own_notify(
    sup: Rc<Supervisor>,
    id: u32,
    pid: i32,
    sock: OwnedFd,
    path: std::path::PathBuf,
) {
    if let Ok(sock) = fd::async_fd(sock, tokio::io::Interest::READABLE) {
        let mut buf = [0u8; 4096];
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            let readable = tokio::select! {
                g = sock.readable() => g.ok(),
                _ = tick.tick() => None,
            };
            if !sup.is_current(id, pid) {
                break;
            }
            let Some(mut guard) = readable else { continue };
            while let Ok(Ok((n, _))) =
                guard.try_io(|s| crate::sys::notify::recv(s.get_ref().as_fd(), &mut buf))
            {
                if says_ready(&buf[..n]) {
                    sup.on_signal(id, pid, Signal::Ready);
                }
            }
        }
    }
    let _ = std::fs::remove_file(path);
}

/// Serves `$HERD_HOME/notify.sock` for the daemon's lifetime.
pub async fn serve_notify(sup: Rc<Supervisor>, sock: OwnedFd) {
    let sock = match fd::async_fd(sock, tokio::io::Interest::READABLE) {
        Ok(s) => s,
        Err(e) => {
            log::info!("notify socket: {e}; READY=1 is not heard");
            return;
        }
    };
    let mut buf = [0u8; 4096];
    loop {
        let Ok(mut guard) = sock.readable().await else {
            return;
        };
        if let Ok(Ok((n, Some(pid)))) =
            guard.try_io(|s| crate::sys::notify::recv(s.get_ref().as_fd(), &mut buf))
        {
            if says_ready(&buf[..n]) {
                sup.on_notify_ready(pid);
            }
        }
    }
}

//! The daemon's reader for one worker channel: a task on the control-plane
//! runtime that turns the worker's messages into pool updates (ready,
//! closes, Node's acks), answers Node's `queryServer`, notices a dead or
//! misbehaving worker, and takes a hung one out of service.
//!
//! Sending is not done here: acceptor threads send directly (see
//! `accept::pool`); this task only retries what a full channel left queued.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;

use crate::accept::pool::{Slot, SlotProto};
use crate::accept::DataPlane;
use crate::fdpass::herd::{Msg, MAX_MSG};
use crate::fdpass::node::{self, FromWorker, LineDecoder};
use crate::sys::fdpass::recv_with_fds;

/// Why a channel ended.
#[derive(Debug)]
pub enum Ended {
    /// The worker closed it (exit, crash).
    Closed,
    /// The worker broke the protocol; the channel was shut.
    Protocol(String),
    /// The worker left a connection unread (or, Node, unaccepted) for the
    /// ack timeout and was killed.
    Hung,
    /// A socket error.
    Io(std::io::Error),
}

/// How long the control-plane task waits after handling a burst before it
/// looks at the channel again. Under load, acceptor threads drain channels
/// right after each dispatch (they are awake anyway), so this bounds the
/// control-plane wakeups to about one per millisecond per worker instead of
/// two per connection.
const COALESCE: Duration = Duration::from_millis(1);

/// How often the control-plane task reads a channel while acceptor threads
/// are reading it after each dispatch anyway.
const BUSY_POLL: Duration = Duration::from_millis(10);

/// How often, at most, acceptor threads read one worker's channel. Reading
/// it after every dispatch (once for the chosen worker, once for one in
/// turn) mostly found nothing: `strace -c` of the daemon, Node app under
/// wrk, counted 2.65 `recvmsg` per connection, 1.63 of them `EAGAIN`; with
/// this gap 1.62 and 0.61 (docs/BENCHMARKS.md). Least-conn's counts lag by
/// this much more, for every worker alike; a fresh daemon's uniform split
/// stayed within 1.05×.
const ACCEPTOR_DRAIN_GAP: Duration = Duration::from_micros(500);

/// The per-slot read state: receive buffer and Node's line decoder. Held by
/// whoever is draining the channel (the slot's task or an acceptor thread).
pub struct Reader {
    decoder: LineDecoder,
    buf: Box<[u8]>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            decoder: LineDecoder::new(),
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
        }
    }
}

/// Serves one slot until its channel ends or its process exits
/// (`exited`: the worker's pidfd), then removes it from the pool
/// (re-dispatching what it held).
///
/// The exit matters on its own: the daemon keeps a copy of the worker's end
/// of the channel (to take back what it never read), so a dead worker's
/// channel never reads as closed. Nor can the supervisor's exit handling
/// always do it: a reload's old process has left the instance's table
/// entry by the time it exits, and a connection sent to it just before it
/// left the rotation would otherwise wait for the hung-worker timeout.
pub async fn serve(slot: Arc<Slot>, plane: Arc<DataPlane>, exited: OwnedFd) -> Ended {
    let ended = run(&slot, &plane, exited).await;
    report(&slot, &plane, &ended);
    retire(&slot, &plane);
    ended
}

/// Takes a worker that died or ended out of the pool: first reads what it
/// had sent and the daemon had not read yet (a dead worker's close
/// reports stay in the daemon's end of its channel), so each connection it
/// had is judged by what it reported, then re-dispatches what it held.
pub fn retire(slot: &Arc<Slot>, plane: &DataPlane) {
    {
        // Waits for an acceptor that is reading it: what it reads counts.
        let mut reader = slot.reader.lock().unwrap_or_else(|p| p.into_inner());
        // Each side whatever the other says: a dead Node worker's cluster
        // channel reads as closed, while its close reports wait in the
        // preload's.
        let _ = drain_one(slot, plane, &mut reader, Side::Main);
        if slot.fast_chan().is_some() {
            let _ = drain_one(slot, plane, &mut reader, Side::Fast);
        }
    }
    plane.pool.remove(slot);
}

fn report(slot: &Slot, plane: &DataPlane, ended: &Ended) {
    match ended {
        Ended::Closed => {}
        Ended::Protocol(why) => log::info!(
            "instance {} (pid {}) broke the channel protocol: {why}; channel closed",
            slot.instance_id, slot.pid
        ),
        Ended::Hung => log::info!(
            "instance {} (pid {}) left a connection unread for {} ms: killed, its connections re-dispatched",
            slot.instance_id, slot.pid, plane.cfg.ack_timeout_ms
        ),
        Ended::Io(e) => log::info!("instance {} channel error: {e}", slot.instance_id),
    }
}

/// Called by an acceptor thread right after it dispatched to `slot`: reads
/// whatever the worker sent meanwhile on the channel its closes come by
/// (`D`, or Node's acks), without waiting, unless an acceptor did less
/// than `ACCEPTOR_DRAIN_GAP` ago. The rest (a Node app's own
/// messages beside herd's preload channel) is the slot task's. A broken
/// channel is shut and removed here; the slot's task then sees EOF.
pub fn drain_from_acceptor(slot: &Arc<Slot>, plane: &DataPlane) {
    if !slot.claim_acceptor_drain(ACCEPTOR_DRAIN_GAP) {
        return;
    }
    let side = if slot.is_fast() {
        Side::Fast
    } else {
        Side::Main
    };
    let res = match slot.reader.try_lock() {
        Ok(mut reader) => drain_one(slot, plane, &mut reader, side),
        Err(_) => Ok(()), // someone else is reading it
    };
    if let Err(ended) = res {
        if !matches!(ended, Ended::Closed) {
            report(slot, plane, &ended);
            retire(slot, plane);
        }
    }
}

/// Reads and handles every message available now, on the slot's channel
/// and (Node) on its herd-protocol channel. `Ok` when they are empty (or
/// someone else is draining them).
pub fn drain(slot: &Slot, plane: &DataPlane) -> Result<(), Ended> {
    let Ok(mut guard) = slot.reader.try_lock() else {
        return Ok(());
    };
    let reader: &mut Reader = &mut guard;
    drain_one(slot, plane, reader, Side::Main)?;
    if slot.fast_chan().is_some() {
        drain_one(slot, plane, reader, Side::Fast)?;
    }
    Ok(())
}

/// Which of a slot's channels.
#[derive(Clone, Copy)]
enum Side {
    /// `slot.chan()`, in the slot's protocol.
    Main,
    /// A Node slot's herd-protocol channel (herd's preload).
    Fast,
}

fn drain_one(slot: &Slot, plane: &DataPlane, reader: &mut Reader, side: Side) -> Result<(), Ended> {
    let chan = match side {
        Side::Main => slot.chan(),
        Side::Fast => slot.fast_chan().expect("checked by the caller"),
    };
    loop {
        let mut fds = Vec::new();
        let (n, truncated) = match recv_with_fds(chan, &mut reader.buf, &mut fds, true) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(Ended::Closed),
            Err(e) => return Err(Ended::Io(e)),
        };
        let result = match (side, slot.proto()) {
            // The daemon holds the worker's end of this one, so no EOF
            // comes; an empty message says nothing.
            (Side::Fast, _) if n == 0 => return Ok(()),
            (_, _) if n == 0 => return Err(Ended::Closed),
            (Side::Fast, _) => on_fast(slot, plane, &reader.buf[..n], truncated, fds.len()),
            (Side::Main, SlotProto::Herd) => {
                on_herd(slot, plane, &reader.buf[..n], truncated, fds.len())
            }
            (Side::Main, SlotProto::Node) => {
                // Node workers never send us descriptors; any arriving are closed.
                drop(fds);
                reader.decoder.feed(&reader.buf[..n]);
                on_node(slot, plane, &mut reader.decoder)
            }
        };
        result.map_err(Ended::Protocol)?;
    }
}

async fn run(slot: &Arc<Slot>, plane: &Arc<DataPlane>, exited: OwnedFd) -> Ended {
    let exited = crate::sys::process::pidfd_exited(exited);
    tokio::pin!(exited);
    // It exited: apply what it sent last (closes), then end.
    let gone = |slot: &Slot| drain(slot, plane).err().unwrap_or(Ended::Closed);
    let mut dup = match slot.chan().try_clone_to_owned() {
        Ok(d) => d,
        Err(e) => return Ended::Io(e),
    };
    let mut fast_dup = match slot.fast_chan().map(|f| f.try_clone_to_owned()) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return Ended::Io(e),
        None => None,
    };
    let ack_timeout = Duration::from_millis(plane.cfg.ack_timeout_ms);
    let mut tick = tokio::time::interval(
        (ack_timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(500)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_check = std::time::Instant::now();
    loop {
        // Connections the full channel would not take wait in the slot:
        // nothing from the worker announces that it has read (no message
        // per connection comes back), so retry every COALESCE until they
        // are all sent, whether or not another connection arrives.
        let queued = slot.has_queued();
        // Under load the acceptors read this worker's closes after every
        // dispatch: wake only every BUSY_POLL for the rest (and the hung
        // check) instead of once per COALESCE on every close.
        if queued || slot.acceptor_drained_within(BUSY_POLL) {
            tokio::select! {
                _ = &mut exited => return gone(slot),
                () = tokio::time::sleep(if queued { COALESCE } else { BUSY_POLL }) => {}
            }
            slot.flush();
            if let Err(ended) = drain(slot, plane) {
                return ended;
            }
            if last_check.elapsed() < tick.period() {
                continue;
            }
            last_check = std::time::Instant::now();
            if let Some(ended) = hung_or_dead(slot, ack_timeout) {
                return ended;
            }
            continue;
        }
        // Registered only while waiting: the runtime's epoll is edge
        // triggered, so a registration left in place would wake this thread
        // for every message even while we deliberately wait (COALESCE).
        let afd = match crate::sys::fd::async_fd(dup, Interest::READABLE) {
            Ok(a) => a,
            Err(e) => return Ended::Io(e),
        };
        let fast_afd = match fast_dup
            .take()
            .map(|d| crate::sys::fd::async_fd(d, Interest::READABLE))
        {
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => return Ended::Io(e),
            None => None,
        };
        let fast_readable = async {
            match &fast_afd {
                Some(a) => a.readable().await.map(|_| true),
                None => std::future::pending().await,
            }
        };
        let readable = tokio::select! {
            g = afd.readable() => g.map(|_| true),
            g = fast_readable => g,
            // The channel filled up: loop round to the retry above.
            () = slot.queued.notified() => Ok(true),
            _ = tick.tick() => Ok(false),
            _ = &mut exited => return gone(slot),
        };
        dup = afd.into_inner();
        fast_dup = fast_afd.map(|a| a.into_inner());
        match readable {
            Ok(true) => {
                if let Err(ended) = drain(slot, plane) {
                    return ended;
                }
                tokio::time::sleep(COALESCE).await;
            }
            Ok(false) => {
                last_check = std::time::Instant::now();
                if let Some(ended) = hung_or_dead(slot, ack_timeout) {
                    return ended;
                }
            }
            Err(e) => return Ended::Io(e),
        }
    }
}

/// A worker that left a connection unread for `ack_timeout` is taken out
/// of rotation and killed; a slot the acceptors found dead ends too. (The
/// slot task's tick, which also sweeps the copies the worker started on.)
fn hung_or_dead(slot: &Slot, ack_timeout: Duration) -> Option<Ended> {
    slot.sweep_started();
    if slot
        .stalled_for(std::time::Instant::now())
        .is_some_and(|age| age > ack_timeout)
    {
        slot.set_inactive();
        let _ = crate::sys::process::kill_group(slot.pid, libc::SIGKILL);
        return Some(Ended::Hung);
    }
    // The acceptor may have seen the end first.
    slot.is_dead().then_some(Ended::Closed)
}

/// A valid herd-protocol message from a worker (no descriptors, not too
/// long, well formed).
fn worker_msg(msg: &[u8], truncated: bool, nfds: usize) -> Result<Msg, String> {
    if truncated || msg.len() > MAX_MSG {
        return Err("oversized message".into());
    }
    if nfds > 0 {
        return Err(format!(
            "worker sent {nfds} descriptor(s); workers never send descriptors"
        ));
    }
    Msg::decode(msg).map_err(|e| e.to_string())
}

/// herd's Node preload on a Node slot's herd-protocol channel: `R` switches
/// the slot's connections to it; `T` (or `D`) reports closes. Readiness itself comes
/// from Node's `listening` (and `ready`) on the cluster channel; replays
/// that waited for a worker that takes them go once one can.
fn on_fast(
    slot: &Slot,
    plane: &DataPlane,
    msg: &[u8],
    truncated: bool,
    nfds: usize,
) -> Result<(), String> {
    match worker_msg(msg, truncated, nfds)? {
        Msg::Ready => {
            slot.set_fast_ready();
            plane.pool.flush_replays();
        }
        Msg::Http => plane.clients_send_first(),
        Msg::Done(ids) => slot.closed(&ids),
        Msg::Timed(pairs) => slot.closed_timed(&pairs),
        Msg::Latency(pairs) => slot.requests(&pairs),
        Msg::Acked(_) => {}
        other => return Err(format!("{other:?} is not a worker message")),
    }
    Ok(())
}

fn on_herd(
    slot: &Slot,
    plane: &DataPlane,
    msg: &[u8],
    truncated: bool,
    nfds: usize,
) -> Result<(), String> {
    match worker_msg(msg, truncated, nfds)? {
        Msg::Ready => plane.slot_ready(slot),
        Msg::Http => plane.clients_send_first(),
        // Optional since the daemon keeps no copies: a chance to send more.
        Msg::Acked(_) => slot.flush(),
        Msg::Done(ids) => slot.closed(&ids),
        Msg::Timed(pairs) => slot.closed_timed(&pairs),
        Msg::Latency(pairs) => slot.requests(&pairs),
        other => return Err(format!("{other:?} is not a worker message")),
    }
    Ok(())
}

fn on_node(slot: &Slot, plane: &DataPlane, decoder: &mut LineDecoder) -> Result<(), String> {
    let host = plane.host.as_str();
    for msg in decoder.by_ref() {
        let msg = match msg {
            Ok(m) => m,
            // A line we cannot read is the app's own `process.send` payload
            // (an over-long or non-JSON message): skip it, the decoder
            // resynchronises at the next newline.
            Err(e) => {
                log::info!(
                    "instance {}: skipped a channel message: {e}",
                    slot.instance_id
                );
                continue;
            }
        };
        let reply = match msg {
            FromWorker::QueryServer {
                seq,
                port,
                address,
                data,
                raw,
                ..
            } => {
                let bind_host = address.as_deref().filter(|a| !a.is_empty()).unwrap_or(host);
                // Node's own key form, unique per server in the worker.
                let key = node::server_key(&raw);
                match plane.listen(bind_host, port) {
                    Ok(addr) => {
                        slot.set_node_key(key.clone());
                        Some(node::query_server_reply(seq, &key, &data, addr))
                    }
                    Err(crate::accept::reuseport::BindError::SecondPort { .. }) => {
                        match plane.shared_listener(bind_host, port) {
                            Ok(sock) => {
                                let reply = node::query_server_reply_shared(seq, &key, &data);
                                use std::os::fd::AsFd;
                                slot.send_node_handle(&reply, sock.as_fd())
                                    .map_err(|e| format!("cannot hand over listener: {e}"))?;
                                None
                            }
                            Err(e) => Some(node::query_server_error(seq, errno_of(&e))),
                        }
                    }
                    Err(e) => {
                        log::info!("instance {}: listen({port}) failed: {e}", slot.instance_id);
                        Some(node::query_server_error(seq, errno_of(&e)))
                    }
                }
            }
            FromWorker::QueryUnsupported {
                seq, address_type, ..
            } => {
                log::info!(
                    "instance {}: listen on {address_type:?} is not supported in fdpass mode",
                    slot.instance_id
                );
                Some(node::query_server_error(seq, libc::EINVAL))
            }
            // Ready for the app's port only with a server on it (another
            // port's `listening` does not count).
            FromWorker::Listening { .. } => {
                if slot.note_signal(Slot::LISTENING) && slot.has_node_key() {
                    plane.slot_ready(slot);
                }
                None
            }
            FromWorker::Ready => {
                if slot.note_signal(Slot::READY) && slot.has_node_key() {
                    plane.slot_ready(slot);
                }
                None
            }
            FromWorker::HandleAck => {
                slot.node_handle_acked();
                None
            }
            FromWorker::HandleNack => {
                slot.node_handle_nacked();
                None
            }
            FromWorker::Accepted { ack, accepted } => {
                if let Some(fd) = slot.node_accepted(ack, accepted) {
                    plane.pool.redispatch(vec![fd]);
                }
                None
            }
            // The worker closed its server: it takes no more connections,
            // and those still unread on herd's preload channel go elsewhere.
            FromWorker::Close { .. } => {
                slot.set_inactive();
                let fds = slot.reclaim();
                if !fds.is_empty() {
                    plane.pool.redispatch(fds);
                }
                None
            }
            FromWorker::ExitedAfterDisconnect { seq } => Some(node::ack(seq)),
            FromWorker::Latency(pairs) => {
                slot.requests(&pairs);
                None
            }
            FromWorker::AppMetrics { seq, answer } => {
                plane.pool.metrics.scraped(seq, answer);
                None
            }
            // A handle we never asked for: its fd is already closed; Node
            // stalls every later message until it is acknowledged.
            FromWorker::Handle { .. } => Some(node::handle_ack()),
            FromWorker::Online | FromWorker::Message(_) | FromWorker::Other(_) => None,
        };
        if let Some(bytes) = reply {
            slot.send_raw(&bytes)
                .map_err(|e| format!("cannot answer the worker: {e}"))?;
        }
    }
    Ok(())
}

fn errno_of(e: &crate::accept::reuseport::BindError) -> i32 {
    match e {
        crate::accept::reuseport::BindError::InUse { .. } => libc::EADDRINUSE,
        crate::accept::reuseport::BindError::BadHost(_) => libc::EINVAL,
        crate::accept::reuseport::BindError::SecondPort { .. } => libc::EADDRINUSE,
        crate::accept::reuseport::BindError::Other { source, .. } => {
            source.raw_os_error().unwrap_or(libc::EINVAL)
        }
    }
}

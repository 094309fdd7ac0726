//! Node's cluster IPC protocol, spoken from the primary's side, so that an
//! unmodified `node app.js` started with `NODE_UNIQUE_ID=<n>` and
//! `NODE_CHANNEL_FD=3` believes herd is its cluster primary.
//!
//! A pure codec: bytes in ([`LineDecoder`]), lines out (the encoders below);
//! no I/O, no descriptors. The caller owns the channel (an `AF_UNIX`
//! `SOCK_STREAM` pair, [`crate::sys::fdpass`]) and attaches the connection's
//! fd to the line [`newconn`] returns, in the same `sendmsg`.
//!
//! The wire format (Node 20 `internal/child_process/serialization`, "json"
//! mode): one `JSON.stringify` value per line, `\n`-terminated. What a
//! primary has to know, read from `internal/cluster/{child,primary,utils}`
//! and `internal/child_process`, and checked against a live Node 20.20.2:
//!
//! - The worker opens with `act:"online"`. `server.listen()` sends
//!   `act:"queryServer"` and waits for a reply carrying `ack:<its seq>`;
//!   round-robin style means no handle, just `key` and `sockname`. The reply
//!   must echo the query's `data` (`tls.Server` puts its ticket keys there
//!   and throws on `null`). `errno` is a negative libuv code.
//! - `key` is opaque to the worker but must be unique per server in that
//!   worker (it asserts so); Node's `address:port:addressType:fd:index`
//!   ([`server_key`]) includes the per-worker `index`.
//! - Each connection is one `sendmsg`: the [`newconn`] line plus exactly one
//!   fd. The worker answers `NODE_HANDLE_ACK` (or `NODE_HANDLE_NACK` if the
//!   line came without an fd) and then `{ack:<seq>, accepted}`. With
//!   `accepted:false` (server closed, `maxConnections`) the worker closed its
//!   copy: the primary should hand its own copy to another worker, so it
//!   keeps it until this reply. Two fds in one `sendmsg` lose the second.
//! - "One handle in flight until ACK" binds Node as a *sender* only: as a
//!   receiver it took 200 `newconn`s back to back with no loss (each
//!   `recvmsg` stops after one `SCM_RIGHTS` message). A *worker* that sends
//!   us a handle (`process.send(m, socket)`), though, queues every later
//!   message, acks included, until we answer [`handle_ack`].
//! - `act:"listening"` follows once the server listens (readiness);
//!   `process.send('ready')` arrives as the line `"ready"`, often before it.
//! - [`disconnect`]: the worker closes its servers (`act:"close"` per key),
//!   waits for their connections to end, then closes the channel (EOF). It
//!   exits only when its event loop empties: a timer keeps it alive, so
//!   follow up with a signal. Plain channel EOF makes a worker exit at once.
//! - `cluster.worker.disconnect()` in the worker sends
//!   `act:"exitedAfterDisconnect"` and hangs until [`ack`] answers it.
//! - The worker is only a cluster worker when it runs a script
//!   (`process.argv[1]` set): `node -e` without arguments sends no `online`.

use std::collections::VecDeque;
use std::net::SocketAddr;

use serde_json::Value;

/// Longest line accepted from a worker; longer ones are dropped with an error.
pub const MAX_LINE: usize = 1 << 20;

/// What a worker's server listens on (`addressType` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    /// TCP over IPv4 (`4`).
    Tcp4,
    /// TCP over IPv6 (`6`).
    Tcp6,
    /// A unix socket path (`-1`; `port` is `-1`, `address` the path).
    Pipe,
    /// A `dgram` socket (`"udp4"`/`"udp6"`): Node shares the socket itself.
    Udp,
    /// Anything else.
    Unknown,
}

impl AddressType {
    fn of(raw: &Value) -> AddressType {
        match raw.get("addressType") {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(4) => AddressType::Tcp4,
                Some(6) => AddressType::Tcp6,
                Some(-1) => AddressType::Pipe,
                _ => AddressType::Unknown,
            },
            Some(Value::String(s)) if s.starts_with("udp") => AddressType::Udp,
            _ => AddressType::Unknown,
        }
    }
}

/// Node's key for the server a `queryServer` message describes,
/// `${address}:${port}:${addressType}:${fd}:${index}` rendered as JavaScript
/// would (`null`, `undefined`), e.g. `null:0:4:undefined:0` for `listen(0)`.
/// Unique per server within a worker, as the worker requires. (A
/// `listening` message carries the bound port, so its key can differ.)
pub fn server_key(raw: &Value) -> String {
    let js = |name: &str| match raw.get(name) {
        None => "undefined".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    ["address", "port", "addressType", "fd", "index"]
        .map(js)
        .join(":")
}

/// One message from a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum FromWorker {
    /// The worker started (`act:"online"`).
    Online,
    /// `server.listen()` on TCP: answer with [`query_server_reply`] (or
    /// [`query_server_error`]) carrying `ack: seq`.
    QueryServer {
        /// The worker's sequence number, echoed as `ack`.
        seq: u64,
        /// Which of the worker's servers with this address it is (0, 1, …).
        index: u64,
        /// Host to bind; `None` for any address (`listen(port)`).
        address: Option<String>,
        /// Port asked for; 0 means any.
        port: u16,
        /// [`AddressType::Tcp4`] or [`AddressType::Tcp6`].
        address_type: AddressType,
        /// Requested backlog (0 or absent: the default).
        backlog: Option<i64>,
        /// Server data that the reply must echo (TLS ticket keys; usually `null`).
        data: Value,
        /// The whole message (`flags`, …; see [`server_key`]).
        raw: Value,
    },
    /// A `queryServer` herd cannot serve round-robin: a unix socket path, a
    /// `dgram` socket, `listen({fd})`. Answer [`query_server_error`].
    QueryUnsupported {
        /// The worker's sequence number, echoed as `ack`.
        seq: u64,
        /// What it asked to listen on.
        address_type: AddressType,
        /// The whole message.
        raw: Value,
    },
    /// The server listens: the worker is ready for connections.
    Listening {
        /// The host asked for, if any (a path for pipes).
        address: Option<String>,
        /// The port in use (the reply's `sockname`); -1 for pipes.
        port: i64,
        /// The whole message.
        raw: Value,
    },
    /// The worker closed the server with this key: stop sending it connections.
    Close {
        /// The key from the `queryServer` reply.
        key: String,
    },
    /// The worker is leaving on its own; it waits for [`ack`]`(seq)`.
    ExitedAfterDisconnect {
        /// The sequence number to acknowledge.
        seq: u64,
    },
    /// The answer to the [`newconn`] whose `seq` is `ack`.
    Accepted {
        /// The `seq` of the `newconn` this answers.
        ack: u64,
        /// `false`: the worker closed its copy; give the connection to another.
        accepted: bool,
    },
    /// The worker received the last handle sent.
    HandleAck,
    /// A `NODE_HANDLE` line arrived without its fd (Node resends up to 3 times).
    HandleNack,
    /// The worker sent a handle (its fd came with the bytes): close the fd and
    /// answer [`handle_ack`], or the worker stalls all later messages.
    Handle {
        /// The message wrapped around the handle.
        msg: Value,
    },
    /// `process.send('ready')` (PM2's `wait_ready` convention).
    Ready,
    /// Any other `process.send(value)` from the app.
    Message(Value),
    /// herd's preload reports requests served: (latency in µs, how many)
    /// pairs (`{"cmd":"NODE_HERD_LAT","h":[µs, n, µs, n, …]}`).
    Latency(Vec<(u64, u64)>),
    /// herd's preload answers an `app_metrics` scrape: the app's own
    /// Prometheus text, or why there is none.
    AppMetrics {
        /// The scrape's seq.
        seq: u64,
        /// The text, or the reason.
        answer: Result<String, String>,
    },
    /// An internal (`NODE_*`) message this codec does not know.
    Other(Value),
}

/// A line from a worker that is not valid protocol. The decoder stays usable
/// after each; whether to close the channel is the caller's choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeProtoError {
    /// A line exceeded the decoder's limit; it was dropped up to its `\n`.
    #[error("line longer than {limit} bytes from the worker (dropped)")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The line is not JSON.
    #[error("invalid JSON from the worker ({error}), line starts {start:?}")]
    InvalidJson {
        /// What serde_json said.
        error: String,
        /// The start of the line, lossily decoded.
        start: String,
    },
    /// A known message lacks a field the primary needs.
    #[error("`{act}` message from the worker lacks `{field}`, line starts {start:?}")]
    Malformed {
        /// Which message.
        act: &'static str,
        /// Which field is missing or of the wrong type.
        field: &'static str,
        /// The start of the line.
        start: String,
    },
}

/// `h` of a `NODE_HERD_LAT` report: an even-length array of non-negative
/// integers, at most [`crate::metrics::app::MAX_REPORT_PAIRS`] pairs.
fn latency_pairs(v: &Value) -> Option<Vec<(u64, u64)>> {
    let h = v.get("h")?.as_array()?;
    if h.len() % 2 != 0 || h.len() / 2 > crate::metrics::app::MAX_REPORT_PAIRS {
        return None;
    }
    h.chunks_exact(2)
        .map(|p| Some((p[0].as_u64()?, p[1].as_u64()?)))
        .collect()
}

fn start_of(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
}

impl FromWorker {
    /// Parses one line (without its `\n`).
    pub fn parse(line: &[u8]) -> Result<FromWorker, NodeProtoError> {
        if let Some(fast) = parse_hot(line) {
            return Ok(fast);
        }
        let v: Value = serde_json::from_slice(line).map_err(|e| NodeProtoError::InvalidJson {
            error: e.to_string(),
            start: start_of(line),
        })?;
        let malformed = |act, field| NodeProtoError::Malformed {
            act,
            field,
            start: start_of(line),
        };
        let cmd = match v.get("cmd").and_then(Value::as_str) {
            Some(cmd) if cmd.starts_with("NODE_") && cmd.len() > 5 => cmd,
            _ if v.as_str() == Some("ready") => return Ok(FromWorker::Ready),
            _ => return Ok(FromWorker::Message(v)),
        };
        let u64_field = |name| v.get(name).and_then(Value::as_u64);
        match cmd {
            "NODE_HANDLE_ACK" => return Ok(FromWorker::HandleAck),
            "NODE_HANDLE_NACK" => return Ok(FromWorker::HandleNack),
            "NODE_HANDLE" => {
                let msg = v.get("msg").cloned().unwrap_or(Value::Null);
                return Ok(FromWorker::Handle { msg });
            }
            "NODE_CLUSTER" => {}
            "NODE_HERD_METRICS" => {
                let seq = u64_field("seq").ok_or_else(|| malformed("NODE_HERD_METRICS", "seq"))?;
                let answer = match (v.get("text").and_then(Value::as_str), v.get("error")) {
                    (Some(t), _) => Ok(t.to_string()),
                    (None, Some(Value::String(e))) => Err(e.clone()),
                    _ => Err("no text in the answer".to_string()),
                };
                return Ok(FromWorker::AppMetrics { seq, answer });
            }
            "NODE_HERD_LAT" => {
                return latency_pairs(&v)
                    .map(FromWorker::Latency)
                    .ok_or_else(|| malformed("NODE_HERD_LAT", "h"))
            }
            _ => return Ok(FromWorker::Other(v)),
        }
        if let Some(ack) = u64_field("ack") {
            return match v.get("accepted").and_then(Value::as_bool) {
                Some(accepted) => Ok(FromWorker::Accepted { ack, accepted }),
                None => Ok(FromWorker::Other(v)),
            };
        }
        match v.get("act").and_then(Value::as_str) {
            Some("online") => Ok(FromWorker::Online),
            Some("queryServer") => parse_query(v).map_err(|f| malformed("queryServer", f)),
            Some("listening") => Ok(FromWorker::Listening {
                address: v.get("address").and_then(Value::as_str).map(str::to_string),
                port: v.get("port").and_then(Value::as_i64).unwrap_or(-1),
                raw: v,
            }),
            Some("close") => match v.get("key").and_then(Value::as_str) {
                Some(key) => Ok(FromWorker::Close {
                    key: key.to_string(),
                }),
                None => Err(malformed("close", "key")),
            },
            Some("exitedAfterDisconnect") => match u64_field("seq") {
                Some(seq) => Ok(FromWorker::ExitedAfterDisconnect { seq }),
                None => Err(malformed("exitedAfterDisconnect", "seq")),
            },
            _ => Ok(FromWorker::Other(v)),
        }
    }
}

/// The two messages every connection brings back, in the exact form Node
/// writes them, without building a JSON value: `NODE_HANDLE_ACK` and
/// `{"cmd":"NODE_CLUSTER","ack":N,"accepted":B,"seq":M}`. Anything else
/// (other spellings included) takes the general path.
fn parse_hot(line: &[u8]) -> Option<FromWorker> {
    if line == b"{\"cmd\":\"NODE_HANDLE_ACK\"}" {
        return Some(FromWorker::HandleAck);
    }
    let rest = line.strip_prefix(b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let ack: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = &rest[digits..];
    let (accepted, rest) = if let Some(r) = rest.strip_prefix(b",\"accepted\":true,\"seq\":") {
        (true, r)
    } else {
        (false, rest.strip_prefix(b",\"accepted\":false,\"seq\":")?)
    };
    let tail = rest.strip_suffix(b"}")?;
    if tail.is_empty() || !tail.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(FromWorker::Accepted { ack, accepted })
}

/// Lifts the fields of a `queryServer` message; `Err` names the missing field.
fn parse_query(raw: Value) -> Result<FromWorker, &'static str> {
    let seq = raw.get("seq").and_then(Value::as_u64).ok_or("seq")?;
    let address_type = AddressType::of(&raw);
    let port = raw
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok());
    let tcp = matches!(address_type, AddressType::Tcp4 | AddressType::Tcp6);
    let by_fd = raw.get("fd").is_some();
    let (Some(port), true, false) = (port, tcp, by_fd) else {
        return Ok(FromWorker::QueryUnsupported {
            seq,
            address_type,
            raw,
        });
    };
    Ok(FromWorker::QueryServer {
        seq,
        index: raw.get("index").and_then(Value::as_u64).unwrap_or(0),
        address: raw
            .get("address")
            .and_then(Value::as_str)
            .map(str::to_string),
        port,
        address_type,
        backlog: raw.get("backlog").and_then(Value::as_i64),
        data: raw.get("data").cloned().unwrap_or(Value::Null),
        raw,
    })
}

/// Splits a worker's byte stream into messages. Feed it what each read
/// returned, then drain it (it is an [`Iterator`]) until `None`.
///
/// Memory is bounded by the limit: at most one partial line of `limit` bytes
/// is kept (the rest of an overlong line is skipped up to its `\n`), plus
/// the parsed messages not yet taken out.
#[derive(Debug)]
pub struct LineDecoder {
    partial: Vec<u8>,
    /// Inside an overlong line: drop bytes up to the next `\n`.
    discarding: bool,
    limit: usize,
    out: VecDeque<Result<FromWorker, NodeProtoError>>,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LineDecoder {
    /// A decoder with the [`MAX_LINE`] limit.
    pub fn new() -> Self {
        Self::with_limit(MAX_LINE)
    }

    /// A decoder that rejects lines longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        LineDecoder {
            partial: Vec::new(),
            discarding: false,
            limit,
            out: VecDeque::new(),
        }
    }

    /// Bytes held of a line not yet complete (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Takes in bytes as they arrived; any number of lines, or part of one.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let nl = rest.iter().position(|&b| b == b'\n');
            let (seg, complete) = match nl {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            rest = nl.map_or(&[][..], |i| &rest[i + 1..]);
            if self.discarding {
                self.discarding = !complete;
                continue;
            }
            if self.partial.len() + seg.len() > self.limit {
                self.out
                    .push_back(Err(NodeProtoError::LineTooLong { limit: self.limit }));
                self.clear_partial();
                self.discarding = !complete;
                continue;
            }
            if !complete {
                self.partial.extend_from_slice(seg);
            } else if self.partial.is_empty() {
                self.out.push_back(FromWorker::parse(seg));
            } else {
                self.partial.extend_from_slice(seg);
                self.out.push_back(FromWorker::parse(&self.partial));
                self.clear_partial();
            }
        }
    }

    fn clear_partial(&mut self) {
        self.partial.clear();
        // A rare big line should not pin its buffer for the worker's lifetime.
        if self.partial.capacity() > 64 * 1024 {
            self.partial = Vec::new();
        }
    }
}

impl Iterator for LineDecoder {
    type Item = Result<FromWorker, NodeProtoError>;

    /// The next complete message, or `None` until more bytes are fed.
    fn next(&mut self) -> Option<Self::Item> {
        self.out.pop_front()
    }
}

/// `value` as a JSON string literal.
fn js(value: &str) -> String {
    Value::from(value).to_string()
}

/// The answer to a `queryServer` with sequence `seq`: the server is
/// listening (round-robin: the primary holds the socket) at `sockname`,
/// which `server.address()` will report. `key` names the server in later
/// [`newconn`]s ([`server_key`] is Node's choice). `data` must be the
/// query's `data` (the first worker's, for a server several workers share):
/// `tls.Server` throws on `null`.
pub fn query_server_reply(seq: u64, key: &str, data: &Value, sockname: SocketAddr) -> Vec<u8> {
    let family = if sockname.is_ipv4() { "IPv4" } else { "IPv6" };
    format!(
        "{{\"cmd\":\"NODE_CLUSTER\",\"errno\":0,\"key\":{},\"ack\":{seq},\"data\":{data},\
         \"sockname\":{{\"address\":\"{}\",\"family\":\"{family}\",\"port\":{}}}}}\n",
        js(key),
        sockname.ip(),
        sockname.port(),
    )
    .into_bytes()
}

/// The answer to a `queryServer` that cannot be served: `errno` is a
/// positive OS errno (e.g. `libc::EADDRINUSE`), sent negated as libuv wants;
/// the worker's server emits `error` (`bind EADDRINUSE`). (A `tls.Server`
/// throws on the `null` data instead; either way its `listen` fails.)
pub fn query_server_error(seq: u64, errno: i32) -> Vec<u8> {
    let errno = -errno.abs();
    format!("{{\"cmd\":\"NODE_CLUSTER\",\"errno\":{errno},\"ack\":{seq},\"data\":null}}\n")
        .into_bytes()
}

/// One connection for the server `key`: send this line with the connection's
/// fd attached, one fd per `sendmsg`. `seq` comes back as
/// [`FromWorker::Accepted`]`{ack}`; keep it below 2^53 (JavaScript numbers).
pub fn newconn(key: &str, seq: u64) -> Vec<u8> {
    format!(
        "{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":\
         {{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":{},\"seq\":{seq}}}}}\n",
        js(key)
    )
    .into_bytes()
}

/// A connection whose request a dead worker had read and not answered,
/// for herd's preload (`bench-apps/node/herd-listen.js`): send this line
/// with the connection's fd attached, as [`newconn`]. `data` (hex) is
/// what the dead worker had taken off the socket; the preload puts it back
/// in front of the stream and hands the connection to the app's server
/// under `id` (its close comes back as a `T` for `id`, like a `C`'s).
/// Node acknowledges the handle (`NODE_HANDLE_ACK`) and passes the inner
/// message, whose `cmd` starts with `NODE_`, to internal listeners only.
pub fn replay(id: u64, data: &[u8]) -> Vec<u8> {
    let mut line = format!(
        "{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":\
         {{\"cmd\":\"NODE_HERD_REPLAY\",\"id\":{id},\"data\":\""
    )
    .into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in data {
        line.extend([HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
    line.extend_from_slice(b"\"}}\n");
    line
}

/// The answer to a `queryServer` that hands the worker the listening socket
/// itself (Node's `SharedHandle` scheduling): sent with the listener's fd in
/// the same `sendmsg`. The worker then accepts on it directly. herd uses it
/// for a second port of one app, so apps with a side server (metrics,
/// websockets) keep working.
pub fn query_server_reply_shared(seq: u64, key: &str, data: &Value) -> Vec<u8> {
    format!(
        "{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":\
         {{\"cmd\":\"NODE_CLUSTER\",\"errno\":0,\"key\":{},\"ack\":{seq},\"data\":{data}}}}}\n",
        js(key)
    )
    .into_bytes()
}

/// Asks the worker to close its servers, finish its connections, close the
/// channel and (if nothing else keeps it alive) exit 0.
pub fn disconnect() -> Vec<u8> {
    b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"disconnect\"}\n".to_vec()
}

/// Acknowledges the worker's message `seq` (needed for `exitedAfterDisconnect`).
pub fn ack(seq: u64) -> Vec<u8> {
    format!("{{\"cmd\":\"NODE_CLUSTER\",\"ack\":{seq}}}\n").into_bytes()
}

/// Acknowledges a handle the worker sent ([`FromWorker::Handle`]).
pub fn handle_ack() -> Vec<u8> {
    b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n".to_vec()
}

/// Tells the worker a `NODE_HANDLE` arrived without its fd (it resends).
pub fn handle_nack() -> Vec<u8> {
    b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n".to_vec()
}

/// A plain message for the app: `process.on('message')` gets `value`
/// (PM2 sends `"shutdown"` this way). Must not have a `NODE_*` `cmd`.
pub fn message(value: &Value) -> Vec<u8> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests;

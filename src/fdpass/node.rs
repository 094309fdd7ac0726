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

fn start_of(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
}

impl FromWorker {
    /// Parses one line (without its `\n`).
    pub fn parse(line: &[u8]) -> Result<FromWorker, NodeProtoError> {
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
mod tests {
    use super::*;
    use crate::sys::fdpass::{recv_with_fds, send_with_fds, socketpair, PairKind};
    use crate::sys::process::{kill_pid, reap_blocking, try_reap, ExitStatus};
    use crate::sys::spawn::{spawn, SpawnPlan};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    // Recorded 2026-11-25 from Node v20.20.2 on this host by a throwaway Python
    // primary (socketpair + send_fds, node spawned with NODE_UNIQUE_ID=1,
    // NODE_CHANNEL_FD=3): `http.createServer(..).listen(0, () => {
    // process.send('ready'); process.send({type:'custom', n:1}) })`, one
    // connection, then `disconnect` (the worker closed the channel, exit 0).
    const KEY: &str = "null:0:4:undefined:0";
    const WORKER: &str = r#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}
{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":null,"port":0,"addressType":4,"backlog":0,"seq":1}
"ready"
{"type":"custom","n":1}
{"cmd":"NODE_CLUSTER","act":"listening","index":0,"data":null,"address":null,"port":43217,"addressType":4,"backlog":0,"seq":2}
{"cmd":"NODE_HANDLE_ACK"}
{"cmd":"NODE_CLUSTER","ack":0,"accepted":true,"seq":3}
{"cmd":"NODE_CLUSTER","act":"close","key":"null:0:4:undefined:0","seq":4}
"#;
    // What that primary sent: the reply, and the newconn (fd attached).
    const REPLY: &str = "{\"cmd\":\"NODE_CLUSTER\",\"errno\":0,\"key\":\"null:0:4:undefined:0\",\"ack\":1,\"data\":null,\"sockname\":{\"address\":\"127.0.0.1\",\"family\":\"IPv4\",\"port\":43217}}\n";
    const NEWCONN: &str = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":\"null:0:4:undefined:0\",\"seq\":0}}\n";
    // Other sessions, same way and day, one line each: a unix-socket server,
    // `listen(0, '::')`, a second server on one address (index 1), a newconn
    // sent without fd, one with an unknown key, `cluster.worker.disconnect()`
    // in the worker, a `tls.Server` (its 96-digit ticket keys shortened).
    const MORE: &str = r#"{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":"/tmp/rec/herd-test.sock","port":-1,"addressType":-1,"backlog":0,"seq":1}
{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":"::","port":0,"addressType":6,"flags":0,"backlog":0,"seq":2}
{"cmd":"NODE_CLUSTER","act":"listening","index":1,"data":null,"address":"127.0.0.1","port":1004,"addressType":4,"flags":0,"backlog":100,"seq":8}
{"cmd":"NODE_HANDLE_NACK"}
{"cmd":"NODE_CLUSTER","ack":7,"accepted":false,"seq":3}
{"cmd":"NODE_CLUSTER","act":"exitedAfterDisconnect","seq":4}
{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":{"ticketKeys":"c796"},"address":null,"port":0,"addressType":4,"backlog":0,"seq":1}
"#;

    fn decode(bytes: &[u8]) -> Vec<FromWorker> {
        let mut dec = LineDecoder::new();
        dec.feed(bytes);
        dec.map(Result::unwrap).collect()
    }

    /// One short line per message, so a session compares as a list.
    fn brief(m: &FromWorker) -> String {
        match m {
            FromWorker::QueryServer {
                seq,
                port,
                address_type: t,
                backlog,
                address,
                raw,
                ..
            } => {
                let key = server_key(raw);
                format!("query {seq} {t:?} {address:?} port={port} backlog={backlog:?} key={key}")
            }
            FromWorker::QueryUnsupported {
                seq,
                address_type,
                raw,
            } => {
                format!("unsupported {seq} {address_type:?} key={}", server_key(raw))
            }
            FromWorker::Listening { port, raw, .. } => {
                format!("listening {port} key={}", server_key(raw))
            }
            FromWorker::Message(v) => format!("message {v}"),
            FromWorker::Other(v) => format!("other {v}"),
            m => format!("{m:?}"),
        }
    }

    #[test]
    fn recorded_session_decodes_and_replies_match_bytes() {
        let m = decode(WORKER.as_bytes());
        let want = [
            "Online",
            "query 1 Tcp4 None port=0 backlog=Some(0) key=null:0:4:undefined:0",
            "Ready",
            r#"message {"n":1,"type":"custom"}"#,
            "listening 43217 key=null:43217:4:undefined:0", // the bound port, not 0
            "HandleAck",
            "Accepted { ack: 0, accepted: true }",
            r#"Close { key: "null:0:4:undefined:0" }"#,
        ];
        assert_eq!(m.iter().map(brief).collect::<Vec<_>>(), want);
        let FromWorker::QueryServer { data, .. } = &m[1] else {
            unreachable!()
        };
        let addr: SocketAddr = "127.0.0.1:43217".parse().unwrap();
        assert_eq!(query_server_reply(1, KEY, data, addr), REPLY.as_bytes());
        assert_eq!(newconn(KEY, 0), NEWCONN.as_bytes());
        // Made the recorded worker throw `bind EADDRINUSE` (with and without key).
        let err = "{\"cmd\":\"NODE_CLUSTER\",\"errno\":-98,\"ack\":1,\"data\":null}\n";
        assert_eq!(query_server_error(1, libc::EADDRINUSE), err.as_bytes());
        assert_eq!(
            disconnect(),
            b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"disconnect\"}\n"
        );
        assert_eq!(ack(4), b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":4}\n");
        let quoted = String::from_utf8(newconn("a\"b", 9)).unwrap();
        assert!(
            quoted.ends_with("\"key\":\"a\\\"b\",\"seq\":9}}\n"),
            "{quoted}"
        );
    }

    #[test]
    fn recorded_variants_decode() {
        let m = decode(MORE.as_bytes());
        let want = [
            "unsupported 1 Pipe key=/tmp/rec/herd-test.sock:-1:-1:undefined:0",
            r#"query 2 Tcp6 Some("::") port=0 backlog=Some(0) key=:::0:6:undefined:0"#,
            "listening 1004 key=127.0.0.1:1004:4:undefined:1",
            "HandleNack",
            "Accepted { ack: 7, accepted: false }",
            "ExitedAfterDisconnect { seq: 4 }",
            "query 1 Tcp4 None port=0 backlog=Some(0) key=null:0:4:undefined:0",
        ];
        assert_eq!(m.iter().map(brief).collect::<Vec<_>>(), want);
        let FromWorker::QueryServer { data, .. } = &m[6] else {
            unreachable!()
        };
        let reply = String::from_utf8(query_server_reply(1, "k", data, "[::1]:9".parse().unwrap()));
        let tail = r#""data":{"ticketKeys":"c796"},"sockname":{"address":"::1","family":"IPv6","port":9}}"#;
        assert!(reply.unwrap().ends_with(&format!("{tail}\n")));
    }

    #[test]
    fn byte_by_byte_equals_one_feed() {
        let (mut dec, mut got) = (LineDecoder::new(), Vec::new());
        for b in WORKER.as_bytes() {
            dec.feed(std::slice::from_ref(b));
            got.extend(dec.by_ref().map(Result::unwrap));
        }
        assert_eq!((got, dec.buffered()), (decode(WORKER.as_bytes()), 0));
    }

    #[test]
    fn overlong_lines_are_dropped_with_bounded_memory() {
        let mut dec = LineDecoder::with_limit(64);
        dec.feed(b"\"ready\"\n");
        for _ in 0..1000 {
            dec.feed(&[b'x'; 50]); // an endless line, fed in pieces
            assert!(dec.buffered() <= 64);
        }
        dec.feed(b"xxx\n\"ready\"\n");
        dec.feed(&[b'y'; 100]); // overlong and complete in one feed
        dec.feed(b"\n{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
        let long = Err(NodeProtoError::LineTooLong { limit: 64 });
        let want = [
            Ok(FromWorker::Ready),
            long.clone(),
            Ok(FromWorker::Ready),
            long,
            Ok(FromWorker::HandleAck),
        ];
        assert_eq!(dec.collect::<Vec<_>>(), want);
    }

    #[test]
    fn invalid_and_unknown_lines() {
        let mut dec = LineDecoder::new();
        dec.feed(b"{\"cmd\":\n\xff\xfe\n\n{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\"}\n");
        dec.feed(
            b"{\"cmd\":\"NODE_FUTURE\"}\n{\"cmd\":\"NODE_CLUSTER\",\"act\":\"later\"}\n[1,2]\n",
        );
        dec.feed(b"{\"cmd\":\"app\"}\n{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":\"m\"}\n\"ready\"\n");
        let got: Vec<_> = dec.collect();
        for e in &got[..3] {
            assert!(
                matches!(e, Err(NodeProtoError::InvalidJson { .. })),
                "{e:?}"
            );
        }
        let start = "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\"}".to_string();
        assert_eq!(
            got[3],
            Err(NodeProtoError::Malformed {
                act: "queryServer",
                field: "seq",
                start
            })
        );
        let rest: Vec<_> = got[4..]
            .iter()
            .map(|m| brief(m.as_ref().unwrap()))
            .collect();
        let want = [
            r#"other {"cmd":"NODE_FUTURE"}"#,
            r#"other {"act":"later","cmd":"NODE_CLUSTER"}"#,
            "message [1,2]",
            r#"message {"cmd":"app"}"#,
            r#"Handle { msg: String("m") }"#,
            "Ready",
        ];
        assert_eq!(rest, want);
    }

    fn find_node() -> Option<std::path::PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("node"))
            .find(|p| p.is_file())
    }

    /// However the test ends: the worker killed and reaped, its script removed.
    struct Cleanup {
        pid: Option<i32>,
        script: std::path::PathBuf,
    }
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(pid) = self.pid {
                let _ = kill_pid(pid, libc::SIGKILL);
                let _ = reap_blocking(pid);
            }
            let _ = std::fs::remove_file(&self.script);
        }
    }

    /// The primary's end of the channel, every wait bounded.
    struct Chan {
        sock: UnixStream,
        dec: LineDecoder,
        eof: bool,
    }
    impl Chan {
        /// The next message, `None` at EOF; panics after 10 s of silence.
        fn recv(&mut self) -> Option<FromWorker> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(m) = self.dec.next() {
                    return Some(m.expect("valid protocol"));
                }
                if self.eof {
                    return None;
                }
                assert!(Instant::now() < deadline, "worker silent for 10 s");
                let (mut buf, mut fds) = ([0u8; 4096], Vec::new());
                match recv_with_fds(self.sock.as_fd(), &mut buf, &mut fds, false) {
                    Ok((0, _)) => self.eof = true,
                    Ok((n, _)) => self.dec.feed(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("channel: {e}"),
                }
                assert!(fds.is_empty(), "the worker sent descriptors");
            }
        }
        fn send(&self, line: &[u8], fd: Option<&TcpStream>) {
            let fds: Vec<_> = fd.iter().map(|s| s.as_fd()).collect();
            assert_eq!(
                send_with_fds(self.sock.as_fd(), line, &fds, false).unwrap(),
                line.len()
            );
        }
    }

    #[derive(Default)]
    struct Tally {
        acks: usize,
        accepted: Vec<u64>,
        others: Vec<FromWorker>,
    }
    impl Tally {
        fn add(&mut self, m: FromWorker) {
            match m {
                FromWorker::HandleAck => self.acks += 1,
                FromWorker::Accepted {
                    ack,
                    accepted: true,
                } => self.accepted.push(ack),
                m => self.others.push(m),
            }
        }
    }

    const APP: &str = "const cluster = require('cluster');\n\
        require('http').createServer((req, res) => res.end(`hello from node worker ${cluster.worker.id}`))\n\
        .listen(0, () => process.send('ready'));\n";

    /// Drives a real `node` worker: online, queryServer, listening, 5
    /// connections one in flight, 8 more back to back, HTTP answered by node,
    /// then `disconnect` and a clean exit.
    #[test]
    fn live_node_worker_serves_connections_we_pass() {
        let Some(node) = find_node() else {
            eprintln!("SKIPPED live_node_worker_serves_connections_we_pass: no `node` on PATH");
            return;
        };
        let dir = std::env::temp_dir();
        // A script file, not `node -e`: without process.argv[1] Node skips the worker setup.
        let script = dir.join(format!("herd-node-live-{}.js", std::process::id()));
        std::fs::write(&script, APP).unwrap();
        let mut cleanup = Cleanup {
            pid: None,
            script: script.clone(),
        };
        let (ours, theirs) = socketpair(PairKind::Stream).unwrap();
        let devnull = std::fs::File::create("/dev/null").unwrap();
        let stderr = std::io::stderr();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let spawned = spawn(&SpawnPlan {
            program: node.as_os_str(),
            args: vec!["node".as_ref(), script.as_os_str()],
            env: vec![
                ("NODE_UNIQUE_ID".as_ref(), "1".as_ref()),
                ("NODE_CHANNEL_FD".as_ref(), "3".as_ref()),
                ("PATH".as_ref(), &path),
            ],
            cwd: dir.as_os_str(),
            stdout: devnull.as_fd(),
            stderr: stderr.as_fd(),
            fd3: Some(theirs.as_fd()),
            listen_pid: false,
            cpu: None,
        })
        .unwrap();
        cleanup.pid = Some(spawned.pid);
        drop(theirs);
        let sock = UnixStream::from(ours);
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut chan = Chan {
            sock,
            dec: LineDecoder::new(),
            eof: false,
        };

        assert_eq!(chan.recv(), Some(FromWorker::Online));
        let q = chan.recv();
        let Some(FromWorker::QueryServer { seq, data, raw, .. }) = q else {
            panic!("not a queryServer: {q:?}")
        };
        let key = server_key(&raw);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        chan.send(&query_server_reply(seq, &key, &data, addr), None);
        let mut t = Tally::default();
        loop {
            match chan.recv().expect("EOF before listening") {
                FromWorker::Listening { port, .. } => {
                    break assert_eq!(port, i64::from(addr.port()))
                }
                m => t.others.push(m),
            }
        }
        let mut clients = Vec::new();
        for seq in 0..13u64 {
            let client = TcpStream::connect(addr).unwrap();
            let (conn, _) = listener.accept().unwrap();
            chan.send(&newconn(&key, seq), Some(&conn));
            clients.push(client);
            // The first 5 wait for their ACK, as Node itself would; the rest do not.
            while seq < 5 && t.acks <= seq as usize {
                t.add(chan.recv().expect("EOF"));
            }
        }
        while t.accepted.len() < 13 || t.acks < 13 {
            t.add(chan.recv().expect("EOF"));
        }
        t.accepted.sort_unstable();
        assert_eq!(t.accepted, (0..13).collect::<Vec<_>>());
        assert!(t.others.contains(&FromWorker::Ready), "{:?}", t.others);
        for mut c in clients {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut resp = String::new();
            c.read_to_string(&mut resp).unwrap();
            assert!(resp.ends_with("hello from node worker 1"), "{resp}");
        }

        chan.send(&disconnect(), None);
        assert_eq!(chan.recv(), Some(FromWorker::Close { key }));
        assert_eq!(
            chan.recv(),
            None,
            "the worker closes the channel after disconnect"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match try_reap(spawned.pid).unwrap() {
                Some(status) => break status,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                None => panic!("node still running 10 s after disconnect"),
            }
        };
        cleanup.pid = None;
        assert_eq!(status, ExitStatus::Code(0));
    }
}

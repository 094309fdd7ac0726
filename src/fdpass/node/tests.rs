//! Tests of `node`.
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
    assert_eq!(
        String::from_utf8(replay(7, b"GET /\r\n\xff")).unwrap(),
        "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_HERD_REPLAY\",\"id\":7,\"data\":\"474554202f0d0aff\"}}\n"
    );
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
    let tail =
        r#""data":{"ticketKeys":"c796"},"sockname":{"address":"::1","family":"IPv6","port":9}}"#;
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
    dec.feed(b"{\"cmd\":\"NODE_FUTURE\"}\n{\"cmd\":\"NODE_CLUSTER\",\"act\":\"later\"}\n[1,2]\n");
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
        crate::testing::skip(
            "node",
            "live_node_worker_serves_connections_we_pass: no `node` on PATH",
        );
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
        extra: vec![theirs.as_fd()],
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
            FromWorker::Listening { port, .. } => break assert_eq!(port, i64::from(addr.port())),
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

#[test]
fn hot_messages_parse_like_the_general_path() {
    for line in [
        &b"{\"cmd\":\"NODE_HANDLE_ACK\"}"[..],
        b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":0,\"accepted\":true,\"seq\":3}",
        b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":18446744073709551615,\"accepted\":false,\"seq\":12}",
    ] {
        let fast = super::parse_hot(line).expect("hot form");
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let general = match v.get("ack").and_then(serde_json::Value::as_u64) {
            Some(ack) => FromWorker::Accepted {
                ack,
                accepted: v["accepted"].as_bool().unwrap(),
            },
            None => FromWorker::HandleAck,
        };
        assert_eq!(fast, general);
    }
    // Other spellings fall through to the general parser.
    for line in [
        &b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":1,\"accepted\":true}"[..],
        b"{\"ack\":1,\"cmd\":\"NODE_CLUSTER\",\"accepted\":true,\"seq\":1}",
        b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":,\"accepted\":true,\"seq\":1}",
        b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":99999999999999999999,\"accepted\":true,\"seq\":1}",
        b"{\"cmd\":\"NODE_HANDLE_ACK\" }",
    ] {
        assert!(
            super::parse_hot(line).is_none(),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    assert_eq!(
        FromWorker::parse(b"{\"ack\":1,\"cmd\":\"NODE_CLUSTER\",\"accepted\":true,\"seq\":1}")
            .unwrap(),
        FromWorker::Accepted {
            ack: 1,
            accepted: true
        }
    );
}

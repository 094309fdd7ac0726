//! The control socket: permissions, version handshake, hostile clients,
//! daemon start races, stale files.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

fn frame(v: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(v).unwrap();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn read_frame(s: &mut UnixStream) -> Value {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn raw_client(h: &TestHome) -> UnixStream {
    let s = UnixStream::connect(h.sock()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn hello(protocol: u32) -> Value {
    json!({"herd": "herd", "protocol": protocol, "version": "test"})
}

#[test]
fn socket_and_home_are_private() {
    let h = TestHome::new();
    h.run(&["ping"]).ok();
    let sock_mode = std::fs::metadata(h.sock()).unwrap().permissions().mode() & 0o777;
    assert_eq!(sock_mode, 0o600);
    let dir_mode = std::fs::metadata(&h.root).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
}

#[test]
fn daemon_refuses_another_protocol_version_clearly() {
    let h = TestHome::new();
    h.run(&["ping"]).ok();
    let mut s = raw_client(&h);
    let daemon_hello = read_frame(&mut s);
    assert_eq!(daemon_hello["herd"], "herd");
    assert_eq!(daemon_hello["protocol"], herd::protocol::PROTOCOL_VERSION);
    s.write_all(&frame(&hello(999))).unwrap();
    let reply = read_frame(&mut s);
    assert_eq!(reply["reply"], "error");
    assert!(
        reply["message"].as_str().unwrap().contains("protocol 999"),
        "{reply}"
    );
}

#[test]
fn cli_reports_a_daemon_of_another_version_without_hanging() {
    let h = TestHome::new();
    // A fake "future" daemon on the socket.
    let listener = UnixListener::bind(h.sock()).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&frame(
            &json!({"herd": "herd", "protocol": herd::protocol::PROTOCOL_VERSION + 1, "version": "9.9.9"}),
        ))
        .unwrap();
        let mut sink = [0u8; 256];
        let _ = s.read(&mut sink);
    });
    let t0 = Instant::now();
    let v = herd::protocol::PROTOCOL_VERSION;
    h.run(&["list"]).fails_with(&format!(
        "speaks protocol {v} but the running daemon (9.9.9) speaks protocol {}",
        v + 1
    ));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the CLI must not hang"
    );
    server.join().unwrap();
}

#[test]
fn daemon_survives_garbage_oversized_and_truncated_frames() {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "keep"])
        .ok();
    let before = h.wait_for("online", Duration::from_secs(10), |l| {
        l[0]["status"] == "online"
    });
    let pid = before[0]["pid"].clone();

    // 1. Garbage instead of a hello.
    let mut s = raw_client(&h);
    read_frame(&mut s);
    s.write_all(&[0, 0, 0, 5, b'{', 0xff, b'x', b'y', b'z'])
        .unwrap();
    assert_eq!(read_frame(&mut s)["reply"], "error");

    // 2. A valid hello, then a frame over the size limit (no body sent).
    let mut s = raw_client(&h);
    read_frame(&mut s);
    s.write_all(&frame(&hello(herd::protocol::PROTOCOL_VERSION)))
        .unwrap();
    s.write_all(&(64u32 << 20).to_be_bytes()).unwrap();
    let r = read_frame(&mut s);
    assert!(r["message"].as_str().unwrap().contains("exceeds"), "{r}");

    // 3. A hello, then half a frame, then hang up.
    let mut s = raw_client(&h);
    read_frame(&mut s);
    s.write_all(&frame(&hello(herd::protocol::PROTOCOL_VERSION)))
        .unwrap();
    s.write_all(&[0, 0, 1, 0, b'{']).unwrap();
    drop(s);

    // 4. A well-formed frame with an unknown command.
    let mut s = raw_client(&h);
    read_frame(&mut s);
    s.write_all(&frame(&hello(herd::protocol::PROTOCOL_VERSION)))
        .unwrap();
    s.write_all(&frame(&json!({"cmd": "explode"}))).unwrap();
    assert_eq!(read_frame(&mut s)["reply"], "error");

    // 5. Connect and disconnect without a word.
    drop(UnixStream::connect(h.sock()).unwrap());

    // The daemon and the app are untouched.
    let after = h.list();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["pid"], pid);
    assert_eq!(after[0]["status"], "online");
}

#[test]
fn racing_clis_end_with_exactly_one_daemon() {
    let h = TestHome::new();
    let children: Vec<_> = (0..6)
        .map(|_| h.cmd(&["ping", "--json"]).output())
        .collect();
    let pids: std::collections::BTreeSet<i64> = children
        .into_iter()
        .map(|o| {
            let o = o.unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice::<Value>(&o.stdout).unwrap()["pid"]
                .as_i64()
                .unwrap()
        })
        .collect();
    // The calls above ran one after another; now race for real.
    let h2 = TestHome::new();
    let spawned: Vec<_> = (0..6)
        .map(|_| {
            h2.cmd(&["ping", "--json"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let raced: std::collections::BTreeSet<i64> = spawned
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success());
            serde_json::from_slice::<Value>(&o.stdout).unwrap()["pid"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 1);
    assert_eq!(
        raced.len(),
        1,
        "racing CLIs started several daemons: {raced:?}"
    );
    assert_eq!(
        *raced.iter().next().unwrap(),
        h2.daemon_pid().unwrap() as i64
    );
}

#[test]
fn stale_socket_and_pid_file_are_replaced() {
    let h = TestHome::new();
    // Leftovers of a daemon that died hard: a socket nobody listens on and
    // a pid file naming a dead process.
    drop(UnixListener::bind(h.sock()).unwrap());
    std::fs::write(h.root.join("herd.pid"), "999999999\n").unwrap();
    let out = h.run(&["ping", "--json"]).ok().json();
    let pid = out["pid"].as_i64().unwrap() as i32;
    assert_eq!(h.daemon_pid(), Some(pid));
    assert!(alive(pid));
}

/// One request from any client on the socket must not take the daemon
/// down: `start` asking for 4,000,000,000 instances (once: the daemon
/// allocated them and aborted, and every app died with it), absurd
/// acceptors, a scale that overflows. Each gets an error naming the field;
/// the running app keeps serving and keeps its pid.
#[test]
fn requests_beyond_the_limits_get_an_error_and_apps_keep_serving() {
    let h = TestHome::new();
    let port = free_port();
    let before = crate::reuseport::start_hello_mode(&h, port, "fdpass", &["-i", "1"]);
    let daemon = h.daemon_pid().unwrap();

    let spec = |f: &dyn Fn(&mut Value)| {
        let mut s = serde_json::to_value(herd::config::AppSpec::new(
            "huge".into(),
            app("scripts/sleep.sh").into(),
            std::env::temp_dir(),
        ))
        .unwrap();
        s["exec_mode"] = json!("cluster");
        f(&mut s);
        s
    };
    let requests = [
        (
            json!({"cmd": "start", "force": true, "spec": spec(&|s| s["instances"] = json!({"count": 4_000_000_000u64}))}),
            "instances",
        ),
        (
            json!({"cmd": "start", "force": true, "spec": spec(&|s| s["plane"]["acceptors"] = json!(1u64 << 40))}),
            "acceptors",
        ),
        (
            json!({"cmd": "start", "force": true, "spec": spec(&|s| s["listen_timeout_ms"] = json!(u64::MAX))}),
            "listen_timeout",
        ),
        (
            json!({"cmd": "scale", "app": "hello", "to": {"add": 4294967295u32}}),
            "scale",
        ),
        (
            json!({"cmd": "restart", "targets": ["all"], "patch": {"kill_timeout_ms": u64::MAX}}),
            "kill_timeout",
        ),
        (
            json!({"cmd": "reload", "targets": ["all"], "patch": {"remove": ["script"]}}),
            "script",
        ),
        (
            json!({"cmd": "signal", "signal": 4096, "targets": ["all"]}),
            "signal",
        ),
    ];
    for (req, field) in requests {
        let mut s = raw_client(&h);
        read_frame(&mut s);
        s.write_all(&frame(&hello(herd::protocol::PROTOCOL_VERSION)))
            .unwrap();
        s.write_all(&frame(&req)).unwrap();
        let r = read_frame(&mut s);
        assert_eq!(r["reply"], "error", "{field}: {r}");
        assert!(
            r["message"].as_str().unwrap().contains(field),
            "{field}: {r}"
        );
    }
    assert_eq!(h.daemon_pid(), Some(daemon), "the daemon survived");
    let after = h.list();
    assert_eq!(after.len(), 1, "nothing was started: {after:?}");
    assert_eq!(after[0]["pid"], before[0]["pid"]);
    http_get(port).expect("the app still serves");
}

//! Requests a dead Node worker had read and not answered (#15): the
//! idempotent ones are replayed to another worker, the rest lost and
//! counted. The worker is `bench-apps/node/stall-app.js`: its first process
//! reads every request and answers none; its replacement answers.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::harness::*;

const T: Duration = Duration::from_secs(20);

/// What the clients of a stalled worker got when it was killed holding
/// their requests: three GETs (`/get0`..`/get2`) and one POST.
struct Outcome {
    victim: i64,
    gets: Vec<std::io::Result<Resp>>,
    post: std::io::Result<Vec<u8>>,
}

fn post(port: u16) -> std::io::Result<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    // One write: the worker reads it whole.
    s.write_all(
        b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Starts the stalling app as the only instance, sends it the four
/// requests, waits until it has read all of them, and kills it.
fn kill_a_worker_holding_read_requests(h: &TestHome) -> (u16, Outcome) {
    if !node_available() {
        panic!("checked by the caller");
    }
    let port = free_port();
    start_lazy(h, "node/stall-app.js", port, &[]);
    let l = h.wait_for("preload", T, |l| {
        l.len() == 1 && l[0]["channel"] == "node-preload" && l[0]["in_rotation"] == true
    });
    let victim = pids(&l)[0];
    let gets: Vec<_> = (0..3)
        .map(|i| std::thread::spawn(move || http_get_path(port, &format!("/get{i}"))))
        .collect();
    let posted = std::thread::spawn(move || post(port));
    // The app notes each request it has read whole.
    let marker = h.root.join("lazy-marker");
    let deadline = Instant::now() + T;
    loop {
        let read = std::fs::read_to_string(&marker).unwrap_or_default();
        if read.lines().count() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the app read only: {read:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(victim, "-KILL");
    let outcome = Outcome {
        victim,
        gets: gets.into_iter().map(|g| g.join().unwrap()).collect(),
        post: posted.join().unwrap(),
    };
    (port, outcome)
}

fn no_answer(r: &std::io::Result<Vec<u8>>) -> bool {
    r.as_ref().map_or(true, |b| b.is_empty())
}

#[test]
fn killed_node_worker_replays_the_idempotent_requests_it_read_and_never_answered() {
    replays_on(None);
}

/// The epoll fallback defers its accepts and keeps requests alike.
#[test]
fn killed_node_worker_replays_its_read_requests_on_epoll_too() {
    replays_on(Some("epoll"));
}

fn replays_on(io: Option<&str>) {
    if !node_available() {
        return;
    }
    let mut h = TestHome::new();
    if let Some(io) = io {
        h = h.with_env("HERD_IO", io);
    }
    let (_, o) = kill_a_worker_holding_read_requests(&h);
    for (i, got) in o.gets.iter().enumerate() {
        let (status, _, body) = got.as_ref().expect("answered after the kill");
        assert!(status.contains(" 200 "), "{status}");
        // The replacement answered the request this client sent.
        assert!(body.contains(&format!("for GET /get{i}")), "{body}");
        assert!(!body.contains(&o.victim.to_string()), "{body}");
    }
    assert!(no_answer(&o.post), "a POST is not replayed: {:?}", o.post);
    let l = h.wait_for("the deaths counted", T, |l| {
        l[0]["replayed_on_death"].as_u64() == Some(3)
    });
    assert_eq!(l[0]["lost_started"], 1, "the POST: {l:#?}");
    assert_eq!(l[0]["saved_on_death"], 0, "{l:#?}");
    let shown = h.run(&["show", "0"]).ok().stdout;
    assert!(shown.contains("3 replayed (request read"), "{shown}");
    assert!(shown.contains("1 lost (read, not answered)"), "{shown}");
    // Replays need the request before the worker has it: the preload
    // said its server is HTTP, so accepts wait for the request.
    assert!(shown.contains("accepts on the request (HTTP)"), "{shown}");
    if let Some(io) = io {
        assert!(shown.contains(&format!("{io} (")), "{shown}");
    }
}

/// With `HERD_REPLAY=0` the same requests are lost: what the test above
/// sees answered is the replay's doing.
#[test]
fn with_replay_off_the_requests_a_dead_worker_read_are_lost() {
    if !node_available() {
        return;
    }
    let h = TestHome::new().with_env("HERD_REPLAY", "0");
    let (_, o) = kill_a_worker_holding_read_requests(&h);
    for got in &o.gets {
        assert!(
            !got.as_ref().is_ok_and(|(s, _, _)| s.contains(" 200 ")),
            "{got:?}"
        );
    }
    assert!(no_answer(&o.post));
    let l = h.wait_for("the deaths counted", T, |l| {
        l[0]["lost_started"].as_u64() == Some(4)
    });
    assert_eq!(l[0]["replayed_on_death"], 0, "{l:#?}");
}

/// A server that speaks first (a plain `net.Server`) never says `H`: its
/// connections are handed on at the handshake, and it greets a client that
/// has sent nothing. (With deferred accepts each would wait about a second
/// for data that never comes.)
#[test]
fn a_server_that_speaks_first_keeps_immediate_accepts() {
    if !node_available() {
        return;
    }
    let h = TestHome::new();
    let port = free_port();
    start_on(
        &h,
        &app("node/greet-app.js"),
        port,
        &["-i", "1", "--mode", "fdpass"],
    );
    h.wait_for("preload", T, |l| {
        l.len() == 1 && l[0]["channel"] == "node-preload" && l[0]["in_rotation"] == true
    });
    // Deferred, each greeting would come after a SYN-ACK retransmit (1 s):
    // three in a row would take 3 s; at once they take milliseconds.
    let t0 = Instant::now();
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("hello from "), "{got:?}");
    }
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "greetings took {:?}: accepts deferred?",
        t0.elapsed()
    );
    let shown = h.run(&["show", "0"]).ok().stdout;
    assert!(shown.contains("accept io"), "{shown}");
    assert!(!shown.contains("accepts on the request"), "{shown}");
}

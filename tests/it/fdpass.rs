//! fdpass mode: the daemon accepts (io_uring multishot, or epoll) and passes
//! each connection to a worker over its channel.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herd::bench::load::{self, LoadMode};
use herd::metrics::fairness;

use crate::harness::*;
use crate::reuseport::start_hello_mode;

const T: Duration = Duration::from_secs(15);

fn environ(pid: i64) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// `n` connection-per-request requests from 2 load threads.
fn load_n(port: u16, n: u64, connections: usize) -> load::LoadResult {
    crate::harness::load(port, LoadMode::ConnPerRequest, connections, 2, n)
}

fn both_workers_serve(h: &TestHome, expect_io: &str, expect_sends: &str) {
    let port = free_port();
    let l = start_hello_mode(h, port, "fdpass", &["-i", "2"]);
    for i in &l {
        assert_eq!(i["distribution"], "fdpass");
        let io = i["io"].as_str().unwrap();
        assert!(
            io.starts_with(expect_io) && io.ends_with(&format!("; sends {expect_sends}")),
            "io: {io}"
        );
        assert_eq!(i["policy"], "least-conn");
        let env = environ(i["pid"].as_i64().unwrap());
        assert!(env.contains(&"HERD_CHANNEL_FD=3".to_string()), "{env:?}");
        assert!(
            !env.iter().any(|e| e.starts_with("LISTEN_FDS=")),
            "no listener passed in fdpass mode"
        );
    }
    let want: BTreeSet<String> = pids(&l).iter().map(|p| p.to_string()).collect();
    let r = load_n(port, 2000, 8);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.requests, 2000);
    let seen: BTreeSet<String> = r.per_worker.keys().cloned().collect();
    assert_eq!(seen, want);
    let l = h.list();
    let dispatched: u64 = l.iter().map(|i| i["dispatched"].as_u64().unwrap()).sum();
    assert!(
        dispatched >= 2000,
        "every connection went through the daemon: {dispatched}"
    );
    assert!(l.iter().all(|i| i["in_rotation"] == true));
}

/// Whether io_uring is switched off on this host (then say so: SKIP).
fn io_uring_disabled() -> bool {
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        Ok(v) if v.trim() != "0" => {
            herd::testing::skip(
                "uring",
                &format!(
                    "io_uring is disabled on this host (io_uring_disabled={})",
                    v.trim()
                ),
            );
            true
        }
        _ => false,
    }
}

#[test]
fn hello_workers_serve_through_io_uring() {
    if io_uring_disabled() {
        return;
    }
    let h = TestHome::new();
    both_workers_serve(&h, "io_uring", "batched, through the ring");
}

#[test]
fn hello_workers_serve_through_epoll_fallback() {
    let h = TestHome::new().with_env("HERD_IO", "epoll");
    both_workers_serve(&h, "epoll (forced by HERD_IO=epoll)", "batched, sendmsg");
}

/// `HERD_CORK=0`: one message per connection instead of one per worker
/// per accept batch (kept for measuring what batching buys).
#[test]
fn hello_workers_serve_with_a_message_per_connection() {
    let h = TestHome::new().with_env("HERD_CORK", "0");
    both_workers_serve(&h, "", "a message per connection");
}

/// `HERD_RING_SEND=0`: batched messages go out with `sendmsg` and the
/// daemon's copies close with `close`, not through the acceptor's ring.
#[test]
fn hello_workers_serve_with_sends_outside_the_ring() {
    let h = TestHome::new().with_env("HERD_RING_SEND", "0");
    both_workers_serve(&h, "", "batched, sendmsg");
}

/// `HERD_HELLO_IO=uring`: the hello worker on one io_uring ring serves the
/// same way (issue #4 measures it against tokio's epoll).
#[test]
fn hello_workers_serve_on_io_uring_too() {
    if io_uring_disabled() {
        return;
    }
    let h = TestHome::new().with_env("HERD_HELLO_IO", "uring");
    both_workers_serve(&h, "", "batched, through the ring");
    for pid in pids(&h.list()) {
        let rings = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("io_uring"))
            })
            .count();
        assert_eq!(rings, 1, "worker {pid} runs on one ring");
    }
}

/// Regression guard for dispatch fairness: 10,000 connections over two
/// workers must spread evenly (wide margin: Jain ≥ 0.95).
fn fairness(policy: &str, io: &str) {
    let h = TestHome::exclusive().with_env("HERD_IO", io);
    let port = free_port();
    start_hello_mode(&h, port, "fdpass", &["-i", "2", "--policy", policy]);
    let r = load_n(port, 10_000, 16);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    let counts: Vec<f64> = r.per_worker.values().map(|&c| c as f64).collect();
    assert_eq!(counts.len(), 2, "{:?}", r.per_worker);
    let j = fairness::jain(&counts);
    eprintln!(
        "FAIRNESS {policy} {io}: Jain {j:.4} over {:?}",
        r.per_worker
    );
    assert!(j >= 0.95, "{policy}: Jain {j} over {:?}", r.per_worker);
}

#[test]
fn fairness_least_conn() {
    fairness("least-conn", "");
}

#[test]
fn fairness_round_robin() {
    fairness("round-robin", "");
}

#[test]
fn fairness_p2c() {
    fairness("p2c", "");
}

/// least-time balances latency, not counts: two equal workers on cores
/// shared with the load generator are not exactly equal, and it follows
/// that. It must still not starve a healthy worker.
#[test]
fn least_time_shares_between_equal_workers() {
    let h = TestHome::exclusive();
    let port = free_port();
    start_hello_mode(&h, port, "fdpass", &["-i", "2", "--policy", "least-time"]);
    let r = load_n(port, 10_000, 16);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    let counts: Vec<u64> = r.per_worker.values().copied().collect();
    assert_eq!(counts.len(), 2, "{:?}", r.per_worker);
    eprintln!("LEAST-TIME equal workers: {:?}", r.per_worker);
    assert!(
        counts.iter().all(|&c| c >= 2_500),
        "a healthy worker got less than a quarter: {:?}",
        r.per_worker
    );
}

/// least-conn and least-time leave a worker that is 5 ms slower per
/// response almost idle: under 2.5% (reuseport gives it half; least-conn
/// without the outlier rule gave it about 4%).
fn routes_around_a_slow_worker(policy: &str) {
    let h = TestHome::exclusive();
    let port = free_port();
    let l = start_hello_mode(
        &h,
        port,
        "fdpass",
        &[
            "-i",
            "2",
            "--policy",
            policy,
            "--env",
            "HERD_HELLO_DELAY_MS=5",
            "--env",
            "HERD_HELLO_SLOW_INSTANCE=0",
        ],
    );
    let slow = l
        .iter()
        .find(|i| i["instance"] == 0)
        .and_then(|i| i["pid"].as_i64())
        .unwrap()
        .to_string();
    let r = load_n(port, 6_000, 16);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    let to_slow = r.per_worker.get(&slow).copied().unwrap_or(0);
    eprintln!(
        "{policy}: slow worker got {to_slow} of 6000: {:?}",
        r.per_worker
    );
    assert!(
        to_slow < 150,
        "{policy}: slow worker got {to_slow} of 6000: {:?}",
        r.per_worker
    );
    if policy != "least-conn" {
        // least-time's costs kept the slow worker under the 16 samples the
        // rule needs before it judges a worker at all.
        return;
    }
    // `herd list --json` / `herd show` say which one is left out, and why.
    let l = h.list();
    for i in &l {
        let is_slow = i["pid"].as_i64().unwrap().to_string() == slow;
        assert_eq!(i["left_out_slow"], is_slow, "{l:#?}");
    }
    let shown = h.run(&["show", "0"]).ok().stdout;
    assert!(shown.contains("left out as slow"), "{shown}");
}

#[test]
fn least_time_routes_around_a_slow_worker() {
    routes_around_a_slow_worker("least-time");
}

#[test]
fn least_conn_routes_around_a_slow_worker() {
    routes_around_a_slow_worker("least-conn");
}

#[test]
fn fairness_least_conn_epoll() {
    fairness("least-conn", "epoll");
}

/// Connections sent to a worker that dies before reading them are
/// re-dispatched: a worker is frozen (SIGSTOP) so it holds some, then killed.
#[test]
fn killed_worker_loses_no_connection() {
    killed_worker_loses_nothing("");
}

#[test]
fn killed_worker_loses_no_connection_epoll() {
    killed_worker_loses_nothing("epoll");
}

fn killed_worker_loses_nothing(io: &str) {
    let h = TestHome::new().with_env("HERD_IO", io);
    let port = free_port();
    let l = start_hello_mode(&h, port, "fdpass", &["-i", "2", "--policy", "round-robin"]);
    let victim = l[0]["pid"].as_i64().unwrap();
    kill_a_frozen_worker_under_load(&h, port, victim);
}

/// The lazy worker of #15: it takes its connections and never touches
/// them; killed, it loses none (the daemon's copies are answered by its
/// replacement).
#[test]
fn killed_worker_that_never_read_its_connections_loses_none() {
    lazy_worker_killed("");
}

#[test]
fn killed_worker_that_never_read_its_connections_loses_none_epoll() {
    lazy_worker_killed("epoll");
}

fn lazy_worker_killed(io: &str) {
    let h = TestHome::new().with_env("HERD_IO", io);
    let port = free_port();
    start_lazy(
        &h,
        "scripts/lazy-worker.py",
        port,
        &["--env", "LAZY_TAKE=1"],
    );
    kill_a_worker_holding_untouched(&h, port, 4);
}

/// A worker that stops reading its channel is taken out of rotation and killed
/// after the ack timeout; what it held is served by the others.
#[test]
fn hung_worker_is_replaced_and_its_connections_served() {
    let h = TestHome::new();
    let port = free_port();
    let l = start_hello_mode(
        &h,
        port,
        "fdpass",
        &["-i", "2", "--policy", "round-robin", "--ack-timeout", "1s"],
    );
    let victim = l[0]["pid"].as_i64().unwrap();
    signal(victim, "-STOP");
    let t0 = Instant::now();
    let r = load_n(port, 40, 4);
    let log = std::fs::read_to_string(h.root.join("herd.log")).unwrap_or_default();
    assert_eq!(r.errors.total(), 0, "{:?}\n{log}", r.errors);
    assert_eq!(r.requests, 40);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "the held connections waited for the ack timeout"
    );
    let l = h.wait_for("replacement", T, |l| {
        l[0]["status"] == "online" && l[0]["pid"].as_i64().is_some_and(|p| p != victim)
    });
    assert_eq!(l[0]["restarts"], 1);
}

/// Workers that break the protocol get their channel closed; the daemon and
/// every other app keep going.
#[test]
fn bad_frames_from_a_worker_close_its_channel_only() {
    let h = TestHome::new();
    let port = free_port();
    start_hello_mode(&h, port, "fdpass", &["-i", "1"]);
    for how in [
        "garbage",
        "oversized",
        "fd-without-message",
        "ready-then-garbage",
    ] {
        h.run(&[
            "start",
            &app("scripts/bad-worker.py"),
            "-i",
            "1",
            "--name",
            how,
            "--port",
            &free_port().to_string(),
            "--host",
            "127.0.0.1",
            "--",
            how,
        ])
        .ok();
    }
    // Each bad worker reports that the daemon closed its channel.
    let deadline = Instant::now() + T;
    for how in [
        "garbage",
        "oversized",
        "fd-without-message",
        "ready-then-garbage",
    ] {
        let log = h.run(&["show", how, "--json"]).ok().json()[0]["out_log"]
            .as_str()
            .unwrap()
            .to_string();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("channel closed by daemon") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{how}: channel not closed; log: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let r = load_n(port, 100, 4);
    assert_eq!(r.errors.total(), 0);
    h.run(&["ping"]).ok();
}

#[test]
fn bad_mode_policy_and_io_values() {
    let h = TestHome::new();
    let script = app("scripts/sleep.sh");
    h.run(&["start", &script, "-i", "2", "--mode", "carrier-pigeon"])
        .fails_with("`carrier-pigeon` for --mode");
    h.run(&["start", &script, "-i", "2", "--policy", "random"])
        .fails_with("`random` for --policy");
    h.run(&["start", &script, "-i", "2", "--acceptors", "0"])
        .fails_with("`0` for --acceptors");
    h.run(&["start", &script, "-i", "2", "--backlog", "lots"])
        .fails_with("`lots` for --backlog");
    let bad = TestHome::new().with_env("HERD_IO", "smoke-signals");
    bad.run(&["start", &script, "-i", "2"])
        .fails_with("HERD_IO=`smoke-signals`");
    assert!(bad.list().is_empty());
    let bad = TestHome::new().with_env("HERD_CORK", "yes");
    bad.run(&["start", &script, "-i", "2"])
        .fails_with("HERD_CORK=`yes`: expected `1` or `0`");
    assert!(bad.list().is_empty());
    let bad = TestHome::new().with_env("HERD_RING_SEND", "on");
    bad.run(&["start", &script, "-i", "2"])
        .fails_with("HERD_RING_SEND=`on`: expected `1` or `0`");
    assert!(bad.list().is_empty());
    for var in ["HERD_REPLAY", "HERD_DEFER_ACCEPT"] {
        let bad = TestHome::new().with_env(var, "maybe");
        bad.run(&["start", &script, "-i", "2"])
            .fails_with(&format!("{var}=`maybe`: expected `1` or `0`"));
        assert!(bad.list().is_empty());
    }
}

/// More connections than the worker's channel holds arrive while it is
/// stopped: the daemon keeps the rest queued, and once the worker runs
/// again every one of them reaches it, with no new connection to prompt
/// the daemon.
#[test]
fn a_full_channel_drains_once_the_worker_reads_again() {
    let h = TestHome::new();
    let port = free_port();
    let l = start_hello_mode(&h, port, "fdpass", &["-i", "1", "--ack-timeout", "60s"]);
    let worker = l[0]["pid"].as_i64().unwrap();
    signal(worker, "-STOP");
    let n = 600;
    let burst = std::thread::spawn(move || load_n(port, n, n as usize));
    let deadline = Instant::now() + T;
    while h.list()[0]["in_flight"].as_u64().unwrap_or(0) < n {
        assert!(
            Instant::now() < deadline,
            "not all {n} reached the daemon: {}",
            h.list()[0]["in_flight"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(worker, "-CONT");
    let r = burst.join().unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.requests, n);
}

/// Chaos under load (#15): a worker of `-i 2` killed with SIGKILL every
/// 200 ms for 5 s while 8 clients send connection-per-request GETs. The
/// daemon keeps a copy of every connection it hands over, so the ones a
/// dead worker had received but not touched go to the other worker; the
/// only failures are connections the worker had read from and not
/// answered, and herd counts those (`lost_started`; the ones it had
/// written to go to `cut_after_write`). Before the copies: about 2.7 failures
/// per kill (hello, AMD EPYC 2-core), more than reuseport's 1.7.
fn chaos(extra_env: Option<(&str, &str)>) {
    let mut h = TestHome::exclusive();
    if let Some((k, v)) = extra_env {
        h = h.with_env(k, v);
    }
    let port = free_port();
    start_hello_mode(&h, port, "fdpass", &["-i", "2"]);
    chaos_on(&h, port, 1000);
}

/// The chaos run of [`chaos`] against `h`'s app of two fdpass instances,
/// serving on `port` (the Node app's test shares it), which must answer
/// more than `min_ok` requests meanwhile (Node's workers take longer to
/// come back than herd's hello: a few hundred ms each on a loaded 2-core
/// machine).
pub fn chaos_on(h: &TestHome, port: u16, min_ok: u64) {
    let stop_at = Instant::now() + Duration::from_secs(5);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u64, 0u64);
                while Instant::now() < stop_at {
                    match http_get(port) {
                        Ok((status, _, _)) if status.contains("200") => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let mut kills = 0;
    let mut turn = 0usize;
    // A fixed schedule, not a sleep after each `herd list`: on a slower
    // machine the list call itself took ticks away and the run fell short
    // of its kills.
    let mut next = Instant::now() + Duration::from_millis(200);
    while next < stop_at {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += Duration::from_millis(200);
        let live: Vec<i64> = pids(&h.list())
            .into_iter()
            .filter(|&p| p > 0 && alive(p as i32))
            .collect();
        if let Some(&victim) = live.get(turn % live.len().max(1)) {
            signal(victim, "-KILL");
            kills += 1;
        }
        turn += 1;
    }
    let (ok, failed) = clients
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    // Let the daemon see the last deaths.
    std::thread::sleep(Duration::from_millis(500));
    let list = h.list();
    let sum = |k: &str| list.iter().map(|i| i[k].as_u64().unwrap_or(0)).sum::<u64>();
    let (saved, lost, cut) = (
        sum("saved_on_death"),
        sum("lost_started"),
        sum("cut_after_write"),
    );
    eprintln!(
        "chaos: {kills} kills, {ok} ok, {failed} failed, {saved} saved, {lost} lost (started), {cut} cut after a write"
    );
    assert!(kills >= 15, "only {kills} kills");
    assert!(ok > min_ok, "only {ok} answered");
    assert!(
        saved > 0,
        "no connection was saved from a dead worker's copies"
    );
    // A connection read and not answered fails at the client; one written
    // to and cut with the worker was answered (Node shuts down a loop turn
    // after it writes). Measured: failed == lost in each of 8 runs.
    assert!(
        failed <= lost + 2,
        "{failed} failed but herd reports {lost} lost: it lost connections it could have saved"
    );
    assert!(
        lost <= failed + 2,
        "herd reports {lost} lost but only {failed} failed: it counts answered connections as lost ({cut} cut after a write)"
    );
    assert!(
        failed * 2 <= kills,
        "{failed} failures over {kills} kills: more than one per two kills"
    );
}

#[test]
fn killed_workers_lose_only_connections_they_had_started_on() {
    chaos(None);
}

#[test]
fn killed_workers_lose_only_started_connections_on_epoll_too() {
    chaos(Some(("HERD_IO", "epoll")));
}

//! Cluster apps in reuseport and shared mode with the built-in Rust hello worker
//! (`herd hello`): one SO_REUSEPORT listener per instance, passed as fd 3
//! with the systemd protocol, workers pinned one per core.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(10);

/// Starts the hello worker in reuseport mode (see `start_hello_mode`).
fn start_hello(h: &TestHome, port: u16, extra: &[&str]) -> Vec<serde_json::Value> {
    start_hello_mode(h, port, "reuseport", extra)
}

/// `herd start` arguments for `herd hello` as cluster app `hello` in
/// `mode` on `port`, with `extra` flags.
pub fn hello_start_args(port: u16, mode: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "start",
        HERD,
        "--interpreter",
        "none",
        "--name",
        "hello",
        "--mode",
        mode,
        "--port",
        &port.to_string(),
        "--host",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--".to_string(), "hello".to_string()]);
    args
}

/// Starts `herd hello` as a cluster app in `mode` and waits until it serves.
pub fn start_hello_mode(
    h: &TestHome,
    port: u16,
    mode: &str,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let args = hello_start_args(port, mode, extra);
    h.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    // fdpass: online is not yet ready; a test that freezes or kills a
    // worker needs it in the rotation first.
    let l = h.wait_for("hello online (fdpass: in rotation)", T, |l| {
        !l.is_empty()
            && l.iter()
                .all(|i| i["status"] == "online" && (mode != "fdpass" || i["in_rotation"] == true))
    });
    wait_http(port, T);
    l
}

fn cpus_allowed(pid: i64) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

fn environ(pid: i64) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn two_workers_both_serve_with_systemd_fds() {
    let h = TestHome::new();
    let port = free_port();
    let l = start_hello(&h, port, &["-i", "2"]);
    assert_eq!(l.len(), 2);
    for i in &l {
        assert_eq!(i["exec_mode"], "cluster");
        assert_eq!(i["distribution"], "reuseport");
        assert_eq!(i["port"], port);
        let pid = i["pid"].as_i64().unwrap();
        let env = environ(pid);
        assert!(
            env.contains(&format!("LISTEN_PID={pid}")),
            "LISTEN_PID is not the child's own pid: {env:?}"
        );
        assert!(env.contains(&"LISTEN_FDS=1".to_string()));
        assert!(env.contains(&"LISTEN_FDNAMES=hello".to_string()));
        assert!(env.contains(&format!("NODE_APP_INSTANCE={}", i["instance"])));
        assert!(env.contains(&format!("HERD_INSTANCE={}", i["instance"])));
        assert!(env.contains(&"HERD_APP_NAME=hello".to_string()));
    }
    let want: BTreeSet<String> = pids(&l).iter().map(|p| p.to_string()).collect();
    let seen = distinct_responders(port, 200, Some("x-worker"));
    assert_eq!(seen, want, "every worker serves, and only herd's workers");
}

#[test]
fn workers_are_pinned_one_per_core_unless_no_pin() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let h = TestHome::new();
    let port = free_port();
    let l = start_hello(&h, port, &["-i", "2"]);
    let cores: Vec<i64> = l
        .iter()
        .map(|i| i["core"].as_i64().expect("pinned core shown"))
        .collect();
    for (i, c) in l.iter().zip(&cores) {
        assert_eq!(
            cpus_allowed(i["pid"].as_i64().unwrap()),
            c.to_string(),
            "affinity matches the shown core"
        );
    }
    if cpus >= 2 {
        assert_ne!(cores[0], cores[1], "two instances on two cores");
    } else {
        herd::testing::skip(
            "cpus",
            &format!("only {cpus} CPU, cannot check distinct cores"),
        );
    }
    let show = h.run(&["show", "0"]).ok().stdout;
    assert!(show.contains("pinned core"), "{show}");

    let h2 = TestHome::new();
    let port2 = free_port();
    let l2 = start_hello(&h2, port2, &["-i", "1", "--no-pin"]);
    assert!(l2[0]["core"].is_null());
    assert_ne!(
        cpus_allowed(l2[0]["pid"].as_i64().unwrap()),
        cores[0].to_string().repeat(usize::from(cpus > 1))
    );
}

#[test]
fn killed_worker_is_replaced_and_serves() {
    let h = TestHome::new();
    let port = free_port();
    let l = start_hello(&h, port, &["-i", "2"]);
    let victim = l[0]["pid"].as_i64().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let l = h.wait_for("replacement online", T, |l| {
        l[0]["status"] == "online" && l[0]["pid"].as_i64().is_some_and(|p| p != victim)
    });
    let fresh = l[0]["pid"].as_i64().unwrap().to_string();
    // The replacement inherits the same listener, so it serves at once.
    let deadline = std::time::Instant::now() + T;
    loop {
        let seen = distinct_responders(port, 20, Some("x-worker"));
        assert!(!seen.contains(&victim.to_string()));
        if seen.contains(&fresh) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replacement {fresh} never served"
        );
    }
}

#[test]
fn port_in_use_is_refused_and_nothing_starts_in_every_mode() {
    let h = TestHome::new();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    for mode in ["fdpass", "reuseport", "shared"] {
        h.run(&[
            "start",
            HERD,
            "--interpreter",
            "none",
            "-i",
            "2",
            "--mode",
            mode,
            "--port",
            &port,
            "--host",
            "127.0.0.1",
            "--",
            "hello",
        ])
        .fails_with(&format!("port {port}"));
        assert!(
            h.list().is_empty(),
            "{mode}: nothing may start when the port is taken"
        );
    }
}

#[test]
fn shared_mode_passes_one_listener_to_all() {
    let h = TestHome::new();
    let port = free_port();
    let l = start_hello_mode(&h, port, "shared", &["-i", "2"]);
    for i in &l {
        assert_eq!(i["distribution"], "shared");
        let env = environ(i["pid"].as_i64().unwrap());
        assert!(env.contains(&"LISTEN_FDS=1".to_string()));
    }
    let want: BTreeSet<String> = pids(&l).iter().map(|p| p.to_string()).collect();
    let seen = distinct_responders(port, 50, Some("x-worker"));
    // The workers race for each accept; which one wins is up to the kernel.
    assert!(
        !seen.is_empty() && seen.is_subset(&want),
        "{seen:?} vs {want:?}"
    );
}

#[test]
fn port_from_env_makes_a_cluster_app() {
    let h = TestHome::new();
    let port = free_port();
    let p = format!("PORT={port}");
    h.run(&[
        "start",
        HERD,
        "--interpreter",
        "none",
        "--env",
        &p,
        "--host",
        "127.0.0.1",
        "--",
        "hello",
    ])
    .ok();
    let l = h.wait_for("online", T, |l| l.len() == 1 && l[0]["status"] == "online");
    assert_eq!(l[0]["exec_mode"], "cluster");
    assert_eq!(l[0]["port"], port);
    wait_http(port, T);
}

/// `herd scale` adds and removes instances live; the serving pids follow.
fn scale_in(mode: &str) {
    let h = TestHome::new();
    let port = free_port();
    start_hello_mode(&h, port, mode, &["-i", "1"]);
    h.run(&["scale", "hello", "+2"]).ok();
    let l = h.wait_for("3 serving", T, |l| {
        l.len() == 3
            && l.iter()
                .all(|i| i["status"] == "online" && (mode != "fdpass" || i["in_rotation"] == true))
    });
    assert!(l.iter().all(|i| i["instances"] == 3));
    let want: BTreeSet<String> = pids(&l).iter().map(|p| p.to_string()).collect();
    let deadline = std::time::Instant::now() + T;
    loop {
        let seen = distinct_responders(port, 60, Some("x-worker"));
        assert!(seen.is_subset(&want), "{seen:?} vs {want:?}");
        if seen == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all 3 serve: {seen:?}"
        );
    }
    h.run(&["scale", "hello", "1"]).ok();
    let l = h.list();
    assert_eq!(l.len(), 1, "{l:#?}");
    assert_eq!(
        (l[0]["id"].as_u64(), l[0]["instance"].as_u64()),
        (Some(2), Some(2)),
        "PM2's rule: the lowest ids were removed"
    );
    let only = l[0]["pid"].as_i64().unwrap().to_string();
    let seen = distinct_responders(port, 30, Some("x-worker"));
    assert_eq!(seen, BTreeSet::from([only]));
    h.run(&["scale", "hello", "0"])
        .fails_with("cannot scale to 0");
    h.run(&["scale", "hello", "lots"])
        .fails_with("`lots` for scale");
    h.run(&["scale", "nosuch", "2"])
        .fails_with("no app named `nosuch`");
}

#[test]
fn scale_fdpass() {
    scale_in("fdpass");
}

#[test]
fn scale_reuseport() {
    scale_in("reuseport");
}

#[test]
fn reuseport_with_incoming_cpu_serves() {
    let h = TestHome::new();
    let port = free_port();
    start_hello_mode(&h, port, "reuseport", &["-i", "2", "--incoming-cpu"]);
    let r = crate::harness::load(
        port,
        herd::bench::load::LoadMode::ConnPerRequest,
        4,
        2,
        2000,
    );
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.requests, 2000);
}

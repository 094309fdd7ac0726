//! start / list / show / stop / restart / delete / kill round trips.

use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn fork_mode_round_trip() {
    let h = TestHome::new();
    let out = h
        .run(&[
            "start",
            &app("scripts/sleep.sh"),
            "--name",
            "sleeper",
            "--",
            "one",
            "two",
        ])
        .ok();
    assert!(out.stdout.contains("sleeper"), "{}", out.stdout);
    let l = h.wait_for("online", T, |l| l.len() == 1 && l[0]["status"] == "online");
    assert_eq!(l[0]["id"], 0);
    assert_eq!(l[0]["exec_mode"], "fork");
    assert_eq!(l[0]["distribution"], "none");
    assert_eq!(l[0]["interpreter"], "bash", "`.sh` runs with bash");
    let pid = l[0]["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));

    // The app saw its instance variables and args (its first log line).
    let log = l[0]["out_log"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + T;
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains("started") || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        text.contains("instance=0 node_app_instance=0 name=sleeper args=one two"),
        "{text}"
    );

    // Table and show.
    let table = h.run(&["ls"]).ok().stdout;
    assert!(
        table.contains("sleeper") && table.contains("online") && table.contains("↺"),
        "{table}"
    );
    let show = h.run(&["show", "sleeper"]).ok().stdout;
    for needle in [
        "sleep.sh",
        "bash",
        "one two",
        "out log",
        "exec mode",
        "fork",
    ] {
        assert!(show.contains(needle), "show lacks {needle}: {show}");
    }

    // Stop: the process is gone, status stopped, pid cleared.
    h.run(&["stop", "sleeper"]).ok();
    let l = h.list();
    assert_eq!(l[0]["status"], "stopped");
    assert!(l[0]["pid"].is_null());
    assert!(!alive(pid), "stopped process still alive");

    // Restart brings it back with a new pid; starting a stopped process
    // again is no restart (PM2 counts none), restarting a running one is.
    h.run(&["restart", "0"]).ok();
    let l = h.wait_for("online again", T, |l| l[0]["status"] == "online");
    let pid1 = l[0]["pid"].as_i64().unwrap() as i32;
    assert_ne!(pid1, pid);
    assert_eq!(l[0]["restarts"], 0);
    h.run(&["restart", "0"]).ok();
    let l = h.wait_for("online again", T, |l| l[0]["status"] == "online");
    let pid2 = l[0]["pid"].as_i64().unwrap() as i32;
    assert_ne!(pid2, pid1);
    assert_eq!(l[0]["restarts"], 1);

    // Delete removes it and stops the process.
    h.run(&["delete", "sleeper"]).ok();
    assert!(h.list().is_empty());
    assert!(!alive(pid2));
}

#[test]
fn killed_worker_is_restarted_and_counted() {
    let h = TestHome::new();
    h.run(&[
        "start",
        &app("scripts/sleep.sh"),
        "-i",
        "2",
        "--name",
        "pair",
    ])
    .ok();
    let l = h.wait_for("2 online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    assert_eq!(l[0]["exec_mode"], "cluster");
    let victim = l[1]["pid"].as_i64().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let l = h.wait_for("replacement", T, |l| {
        l[1]["status"] == "online" && l[1]["pid"].as_i64().is_some_and(|p| p as i32 != victim)
    });
    assert_eq!(l[1]["restarts"], 1);
    assert_eq!(l[0]["restarts"], 0, "the other instance is untouched");
    assert_eq!(l[1]["last_exit"]["signal"], 9);
}

#[test]
fn no_autorestart_leaves_it_stopped() {
    let h = TestHome::new();
    h.run(&[
        "start",
        &app("scripts/crash.sh"),
        "--no-autorestart",
        "--",
        "3",
    ])
    .ok();
    let l = h.wait_for("stopped", T, |l| l[0]["status"] == "stopped");
    assert_eq!(l[0]["restarts"], 0);
    assert_eq!(l[0]["last_exit"]["code"], 3);
}

#[test]
fn crash_loop_ends_errored() {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/crash.sh"), "--max-restarts", "3"])
        .ok();
    let l = h.wait_for("errored", T, |l| l[0]["status"] == "errored");
    assert_eq!(l[0]["restarts"], 3);
    assert_eq!(l[0]["unstable_restarts"], 4);
}

#[test]
fn kill_timeout_escalates_to_sigkill() {
    let h = TestHome::new();
    h.run(&[
        "start",
        &app("scripts/ignore-sigint.sh"),
        "--kill-timeout",
        "300",
    ])
    .ok();
    let l = h.wait_for("online", T, |l| l[0]["status"] == "online");
    let pid = l[0]["pid"].as_i64().unwrap() as i32;
    // Give the shell a moment to install its trap before we signal it.
    std::thread::sleep(Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    h.run(&["stop", "0"]).ok();
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "stop returned before the kill timeout"
    );
    let l = h.list();
    assert_eq!(l[0]["status"], "stopped");
    assert_eq!(
        l[0]["last_exit"]["signal"], 9,
        "SIGINT was ignored, so SIGKILL ended it"
    );
    assert!(!alive(pid));
}

#[test]
fn several_targets_and_all() {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "a"])
        .ok();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "b"])
        .ok();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "c"])
        .ok();
    h.wait_for("3 online", T, |l| {
        l.len() == 3 && l.iter().all(|i| i["status"] == "online")
    });
    h.run(&["stop", "a", "2"]).ok();
    let l = h.list();
    let st: Vec<&str> = l.iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(st, ["stopped", "online", "stopped"]);
    // Starting a stopped app again starts it (PM2 behaviour), same id.
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "a"])
        .ok();
    let l = h.wait_for("a online", T, |l| l[0]["status"] == "online");
    assert_eq!(l.len(), 3);
    h.run(&["delete", "all"]).ok();
    assert!(h.list().is_empty());
}

#[test]
fn jlist_has_pm2_shape() {
    let h = TestHome::new();
    h.run(&[
        "start",
        &app("scripts/sleep.sh"),
        "--name",
        "j",
        "--env",
        "API_TOKEN=s3cret",
        "--env",
        "MODE=x",
    ])
    .ok();
    h.wait_for("online", T, |l| l[0]["status"] == "online");
    let raw = h.run(&["jlist"]).ok().stdout;
    // PM2's key order at the top level, for readers that rely on it.
    let at = |k: &str| {
        raw.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("no {k}: {raw}"))
    };
    let order = ["pid", "name", "pm2_env", "pm_id", "monit"];
    for w in order.windows(2) {
        assert!(at(w[0]) < at(w[1]), "{} before {}: {raw}", w[0], w[1]);
    }
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let p = &v[0];
    assert_eq!(p["name"], "j");
    assert_eq!(p["pm2_env"]["watch"], false);
    assert_eq!(p["pm2_env"]["vizion"], true);
    assert_eq!(p["pm2_env"]["axm_options"]["module_name"], "j");
    assert_eq!(p["pm_id"], 0);
    assert!(p["pid"].as_i64().unwrap() > 0);
    assert!(p["monit"]["memory"].as_u64().unwrap() > 0);
    assert!(p["monit"]["cpu"].is_number());
    let env = &p["pm2_env"];
    assert_eq!(env["status"], "online");
    assert_eq!(env["exec_mode"], "fork_mode");
    assert_eq!(env["restart_time"], 0);
    assert_eq!(env["NODE_APP_INSTANCE"], 0);
    assert!(env["pm_exec_path"].as_str().unwrap().ends_with("sleep.sh"));
    assert!(env["pm_out_log_path"].as_str().unwrap().contains("logs"));
    assert_eq!(env["env"]["MODE"], "x");
    for k in [
        "unstable_restarts",
        "pm_uptime",
        "created_at",
        "instances",
        "pm_cwd",
        "pm_err_log_path",
    ] {
        assert!(!env[k].is_null(), "pm2_env.{k} missing");
    }
    // show redacts secrets, JSON keeps them for scripts.
    let show = h.run(&["describe", "j"]).ok().stdout;
    assert!(
        show.contains("API_TOKEN") && show.contains("[redacted]") && !show.contains("s3cret"),
        "{show}"
    );
    assert!(show.contains("MODE") && show.contains(" x "), "{show}");
}

#[test]
fn kill_leaves_nothing_running() {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/sleep.sh"), "-i", "2", "--name", "k"])
        .ok();
    h.run(&[
        "start",
        &app("scripts/ignore-sigint.sh"),
        "--kill-timeout",
        "200",
    ])
    .ok();
    let l = h.wait_for("online", T, |l| {
        l.len() == 3 && l.iter().all(|i| i["status"] == "online")
    });
    let mut pids: Vec<i32> = pids(&l).into_iter().map(|p| p as i32).collect();
    let daemon = h.daemon_pid().unwrap();
    pids.push(daemon);
    h.run(&["kill"]).ok();
    for p in pids {
        assert!(!alive(p), "pid {p} survived herd kill");
    }
    assert!(!h.sock().exists(), "socket left behind");
    // And a second kill is a harmless no-op that does not start a daemon.
    h.run(&["kill"]).ok();
    assert!(h.daemon_pid().is_none());
}

#[test]
fn ping_starts_the_daemon_and_answers() {
    let h = TestHome::new();
    let out = h.run(&["ping", "--json"]).ok().json();
    assert_eq!(out["pid"].as_i64().unwrap() as i32, h.daemon_pid().unwrap());
    assert_eq!(out["version"], env!("CARGO_PKG_VERSION"));
}

/// max_memory_restart acts within a few samples (250 ms by default; PM2
/// checks every 30 s): a leaking app is restarted and the restart counted.
#[test]
fn memory_cap_restarts_a_leaking_app() {
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        herd::testing::skip("node", "node is not installed; the leaking app cannot run");
        return;
    }
    let h = TestHome::new();
    h.run(&[
        "start",
        &app("node/leak.js"),
        "--name",
        "leak",
        "--env",
        "LEAK_MB_PER_SEC=100",
        "--max-memory-restart",
        "120M",
    ])
    .ok();
    // The count goes up when the cap is crossed; the restart follows once
    // the old process has stopped.
    let l = h.wait_for("a memory restart", T, |l| {
        l[0]["memory_restarts"].as_u64().unwrap_or(0) >= 1
            && l[0]["restarts"].as_u64().unwrap_or(0) >= 1
    });
    let seen = l[0]["last_memory_rss"].as_u64().unwrap();
    assert!(seen > 120 << 20, "restarted only above the cap: {seen}");
    assert!(l[0]["restarts"].as_u64().unwrap() >= 1);
    assert_eq!(l[0]["max_memory_restart"], 120u64 << 20);
    let show = h.run(&["show", "leak"]).ok().stdout;
    assert!(show.contains("memory restarts"), "{show}");
    h.run(&[
        "start",
        &app("node/leak.js"),
        "--name",
        "x",
        "--max-memory-restart",
        "1X",
    ])
    .fails_with("`1X` for --max-memory-restart");
}

/// A crash loop under exponential backoff: the waits grow (50, 75, 112,
/// 168 ms …) and the app still ends `errored` after max_restarts.
#[test]
fn crash_loop_with_exponential_backoff() {
    let h = TestHome::new();
    let t0 = std::time::Instant::now();
    h.run(&[
        "start",
        &app("scripts/crash.sh"),
        "--max-restarts",
        "4",
        "--exp-backoff-restart-delay",
        "50",
    ])
    .ok();
    let l = h.wait_for("errored", T, |l| l[0]["status"] == "errored");
    assert_eq!(l[0]["restarts"], 4);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(50 + 75 + 112 + 168),
        "backoff waits: {waited:?}"
    );
    h.run(&[
        "start",
        &app("scripts/crash.sh"),
        "--name",
        "y",
        "--exp-backoff-restart-delay",
        "never",
    ])
    .fails_with("`never` for --exp-backoff-restart-delay");
}

/// 50 rapid crashes leave no zombie behind: every child is reaped as soon
/// as its pidfd says it exited.
#[test]
fn no_zombies_after_rapid_crashes() {
    let h = TestHome::new();
    h.run(&[
        "start",
        &app("scripts/crash.sh"),
        "--max-restarts",
        "50",
        "--min-uptime",
        "10s",
    ])
    .ok();
    let l = h.wait_for("errored after 50 restarts", Duration::from_secs(30), |l| {
        l[0]["status"] == "errored"
    });
    assert_eq!(l[0]["restarts"], 50);
    let daemon = h.daemon_pid().unwrap();
    let children = std::fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children"))
        .unwrap_or_default();
    for pid in children.split_whitespace() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .unwrap_or("");
        assert_ne!(state, "Z", "zombie child {pid} of the daemon");
    }
}

/// One app crash-looping does not disturb another app's serving.
#[test]
fn a_crash_loop_does_not_disturb_another_app() {
    let h = TestHome::new();
    let port = free_port();
    h.run(&[
        "start",
        HERD,
        "--interpreter",
        "none",
        "--name",
        "steady",
        "-i",
        "2",
        "--port",
        &port.to_string(),
        "--host",
        "127.0.0.1",
        "--",
        "hello",
    ])
    .ok();
    h.wait_for("steady", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["in_rotation"] == true)
    });
    h.run(&[
        "start",
        &app("scripts/crash.sh"),
        "--name",
        "loop",
        "--max-restarts",
        "1000",
    ])
    .ok();
    let r = load(
        port,
        herd::bench::load::LoadMode::ConnPerRequest,
        4,
        1,
        2000,
    );
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.requests, 2000);
    let l = h.list();
    let steady: Vec<_> = l.iter().filter(|i| i["name"] == "steady").collect();
    assert!(steady
        .iter()
        .all(|i| i["restarts"] == 0 && i["status"] == "online"));
    let crashing = l.iter().find(|i| i["name"] == "loop").unwrap();
    assert!(
        crashing["restarts"].as_u64().unwrap() > 0,
        "the loop did crash meanwhile"
    );
}

//! `watch` / `ignore_watch` / `watch_delay` and `cron_restart`: restarts
//! herd makes by itself, against a real daemon. Each test works in an app
//! directory of its own inside its temporary HERD_HOME.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const T: Duration = Duration::from_secs(8);

/// A fresh app directory holding a copy of `sleep.sh` and an empty `src/`
/// (made before the watcher starts, so that it is not itself a change).
fn app_dir(h: &TestHome) -> PathBuf {
    let dir = h.root.join("app");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::copy(app("scripts/sleep.sh"), dir.join("sleep.sh")).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// The one instance, once online.
#[track_caller]
fn online(h: &TestHome) -> Value {
    h.wait_for("online", T, |l| l.len() == 1 && l[0]["status"] == "online")[0].clone()
}

/// Waits until the instance runs again under a new pid with `restarts`.
#[track_caller]
fn restarted(h: &TestHome, old_pid: &Value, restarts: u64) -> Value {
    h.wait_for("a restart", T, |l| {
        l[0]["status"] == "online" && &l[0]["pid"] != old_pid && l[0]["restarts"] == restarts
    })[0]
        .clone()
}

/// The restarts count stays `n` for `quiet` (a negative check: bounded).
#[track_caller]
fn stays(h: &TestHome, n: u64, quiet: Duration) {
    let until = Instant::now() + quiet;
    while Instant::now() < until {
        let l = h.list();
        assert_eq!(l[0]["restarts"], n, "an unexpected restart: {l:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn daemon_log(h: &TestHome) -> String {
    std::fs::read_to_string(h.root.join("herd.log")).unwrap_or_default()
}

/// Threads of the daemon that are notify's inotify loops.
fn notify_threads(h: &TestHome) -> usize {
    let pid = h.daemon_pid().expect("daemon pid");
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.starts_with("notify-rs"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_change_restarts_the_app_and_counts() {
    let h = TestHome::new();
    let dir = app_dir(&h);
    let script = dir.join("sleep.sh");
    h.run(&[
        "start",
        script.to_str().unwrap(),
        "--cwd",
        dir.to_str().unwrap(),
        "--name",
        "w",
        "--watch",
    ])
    .ok();
    let before = online(&h);
    assert_eq!(before["watch"], serde_json::json!([dir.to_str().unwrap()]));
    assert_eq!(before["watching"], true);
    assert_eq!(before["watch_delay_ms"], 0);

    write(&dir.join("src/app.js"), "changed");
    let after = restarted(&h, &before["pid"], 1);
    assert!(!alive(before["pid"].as_i64().unwrap() as i32));
    assert_eq!(after["last_exit"]["signal"], 2, "a restart: SIGINT first");
    assert!(
        daemon_log(&h).contains("w: src/app.js changed"),
        "{}",
        daemon_log(&h)
    );
    let show = h.run(&["show", "w"]).ok().stdout;
    assert!(show.contains("on: ") && show.contains("(cwd)"), "{show}");

    // `herd stop` turns watching off for good (PM2): a plain `restart`
    // keeps it off, `restart --watch` toggles it.
    h.run(&["stop", "w"]).ok();
    assert_eq!(h.list()[0]["watching"], Value::Null);
    write(&dir.join("src/app.js"), "changed while stopped");
    stays(&h, 1, Duration::from_millis(500));
    assert_eq!(h.list()[0]["status"], "stopped");
    h.run(&["restart", "w"]).ok();
    let back = online(&h);
    // Starting a stopped app again is no restart (PM2 counts none).
    assert_eq!(back["restarts"], 1);
    assert_eq!(back["watching"], Value::Null, "{back}");
    assert!(back.get("watch").is_none(), "no paths left: {back}");
    write(&dir.join("src/app.js"), "changed unwatched");
    stays(&h, 1, Duration::from_millis(500));
    h.run(&["restart", "w", "--watch"]).ok();
    let back = restarted(&h, &back["pid"], 2);
    assert_eq!(back["watching"], true, "toggled on: {back}");
    write(&dir.join("src/app.js"), "changed again");
    let back = restarted(&h, &back["pid"], 3);
    h.run(&["restart", "w", "--watch"]).ok();
    let back = restarted(&h, &back["pid"], 4);
    assert_eq!(back["watching"], Value::Null, "toggled off: {back}");
    h.run(&["restart", "w", "--watch"]).ok();
    let back = restarted(&h, &back["pid"], 5);
    assert_eq!(back["watching"], true, "toggled on again: {back}");

    // A watcher turned off ends its notify thread (one is left, the new
    // one's); `delete` drops that one too.
    threads_down_to(&h, 1, "a watcher turned off");
    h.run(&["delete", "w"]).ok();
    threads_down_to(&h, 0, "`delete`");
}

/// Waits (bounded) until the daemon has `n` notify threads left.
#[track_caller]
fn threads_down_to(h: &TestHome, n: usize, after: &str) {
    let deadline = Instant::now() + T;
    while notify_threads(h) > n {
        assert!(
            Instant::now() < deadline,
            "notify's thread outlived {after}: {} left",
            notify_threads(h)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(notify_threads(h), n);
}

#[test]
fn a_burst_of_changes_within_the_delay_is_one_restart() {
    let h = TestHome::new();
    let dir = app_dir(&h);
    h.run(&[
        "start",
        dir.join("sleep.sh").to_str().unwrap(),
        "--cwd",
        dir.to_str().unwrap(),
        "--watch",
        "--watch-delay",
        "400ms",
    ])
    .ok();
    let before = online(&h);
    assert_eq!(before["watch_delay_ms"], 400);
    // Six changes, 50 ms apart: each within the delay of the one before.
    for i in 0..6 {
        write(&dir.join(format!("lib/f{i}.js")), "x");
        write(&dir.join("lib/f0.js"), &format!("v{i}"));
        std::thread::sleep(Duration::from_millis(50));
    }
    restarted(&h, &before["pid"], 1);
    // Longer than the delay: no second restart follows.
    stays(&h, 1, Duration::from_millis(700));
    assert!(
        daemon_log(&h).contains("more changes): restarting (watch)"),
        "{}",
        daemon_log(&h)
    );
}

#[test]
fn changes_in_ignored_paths_do_not_restart() {
    let h = TestHome::new();
    let dir = app_dir(&h);
    std::fs::create_dir_all(dir.join("node_modules/dep")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    // The PM2 key, from an ecosystem file: a name and a glob.
    let file = dir.join("ecosystem.json");
    write(
        &file,
        r#"{"apps": [{"name": "ign", "script": "sleep.sh", "watch": true,
            "ignore_watch": ["tmp", "*.log"], "watch_delay": 0}]}"#,
    );
    h.run(&["start", file.to_str().unwrap()]).ok();
    let before = online(&h);
    assert_eq!(before["ignore_watch"], serde_json::json!(["tmp", "*.log"]));
    assert!(
        before["pending_config"].get("ignore_watch").is_none(),
        "acted on now: {before:#?}"
    );

    write(&dir.join("node_modules/dep/index.js"), "x");
    write(&dir.join("node_modules/new-dep/index.js"), "x");
    write(&dir.join("tmp/cache.bin"), "x");
    write(&dir.join("src/tmp/nested.txt"), "x");
    write(&dir.join("debug.log"), "x");
    write(&dir.join(".git/HEAD"), "x");
    stays(&h, 0, Duration::from_millis(500));
    assert_eq!(h.list()[0]["pid"], before["pid"]);

    // The same app does see a change that is not ignored.
    write(&dir.join("src/real.js"), "x");
    restarted(&h, &before["pid"], 1);
    let log = daemon_log(&h);
    assert!(log.contains("ign: src/real.js changed"), "{log}");
}

#[test]
fn cron_every_second_restarts_and_counts() {
    let h = TestHome::new();
    h.run(&[
        "start",
        &app("scripts/sleep.sh"),
        "--name",
        "tick",
        "--cron-restart",
        "* * * * * *",
    ])
    .ok();
    let before = online(&h);
    assert_eq!(before["cron_restart"], "* * * * * *");
    let next = before["cron_next_ms"].as_u64().expect("next cron time");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        next + 1000 >= now_ms && next <= now_ms + 2000,
        "{next} vs {now_ms}"
    );

    let start = Instant::now();
    let after = h.wait_for("a cron restart", Duration::from_millis(2500), |l| {
        l[0]["restarts"].as_u64() >= Some(1) && l[0]["pid"] != before["pid"]
    });
    assert!(start.elapsed() <= Duration::from_millis(2500));
    assert_eq!(after[0]["unstable_restarts"], 0, "not a crash");
    assert!(daemon_log(&h).contains("tick: cron `* * * * * *`: restarting (cron)"));
    let show = h.run(&["show", "tick"]).ok().stdout;
    assert!(show.contains("* * * * * *, next: "), "{show}");

    // Stopped by the user: cron leaves it alone.
    h.run(&["stop", "tick"]).ok();
    let n = h.list()[0]["restarts"].as_u64().unwrap();
    stays(&h, n, Duration::from_millis(1500));
    assert_eq!(h.list()[0]["status"], "stopped");
}

#[test]
fn an_invalid_cron_pattern_is_refused_and_running_apps_are_untouched() {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "keep"])
        .ok();
    let keep = online(&h);

    for bad in ["61 * * * *", "* * * *", "every day", "@fortnightly"] {
        let r = h
            .run(&[
                "start",
                &app("scripts/sleep.sh"),
                "--name",
                "other",
                "--cron-restart",
                bad,
            ])
            .fails_with("--cron-restart");
        assert!(r.stderr.contains(bad), "{}", r.stderr);
        assert!(r.stderr.contains("expected a cron pattern"), "{}", r.stderr);
        let errors = r.stderr.lines().filter(|l| l.starts_with("error:")).count();
        assert_eq!(errors, 1, "one error line: {}", r.stderr);
    }
    // From an ecosystem file: the file, the app and the key are named.
    let dir = app_dir(&h);
    let file = dir.join("ecosystem.json");
    write(
        &file,
        r#"{"apps": [{"name": "job", "script": "sleep.sh", "cron_restart": "0 25 * * *"}]}"#,
    );
    h.run(&["start", file.to_str().unwrap()])
        .fails_with("app `job`: key `cron_restart`: value `\"0 25 * * *\"`");

    let l = h.list();
    assert_eq!(l.len(), 1, "nothing else started: {l:#?}");
    assert_eq!(l[0]["pid"], keep["pid"]);
    assert_eq!(l[0]["restarts"], 0);
    assert_eq!(l[0]["status"], "online");
}

#[test]
fn a_missing_watch_path_is_a_warning_and_the_app_runs() {
    let h = TestHome::new();
    let dir = app_dir(&h);
    let file = dir.join("ecosystem.json");
    write(
        &file,
        r#"{"apps": [{"name": "lost", "script": "sleep.sh", "watch": ["src", "not-there"]}]}"#,
    );
    h.run(&["start", file.to_str().unwrap()]).ok();
    let i = online(&h);
    assert!(
        i["watch_error"]
            .as_str()
            .is_some_and(|e| e.contains("not-there")),
        "{i:#?}"
    );
    assert!(
        daemon_log(&h).contains("lost: watch: "),
        "{}",
        daemon_log(&h)
    );
    // The path that exists is still watched.
    write(&dir.join("src/a.js"), "x");
    restarted(&h, &i["pid"], 1);
}

/// Processes whose command line mentions `needle`.
fn processes_running(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
                && alive(pid)
        })
        .collect()
}

// Regression: two restarts of one instance at once (a watch and a cron
// restart, or two `herd restart`s) both launched it after the stop, leaving
// an untracked second process running.
#[test]
fn concurrent_restarts_leave_one_process() {
    let h = TestHome::new();
    let dir = h.root.join("race");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("race.sh");
    std::fs::copy(app("scripts/ignore-sigint.sh"), &script).unwrap();
    let script = script.to_str().unwrap().to_string();
    // It ignores SIGINT: each stop lasts the whole kill timeout, so the two
    // restarts overlap.
    h.run(&["start", &script, "--kill-timeout", "300"]).ok();
    let before = online(&h);
    let a = h.cmd(&["restart", "race"]).spawn().unwrap();
    let b = h.cmd(&["restart", "race"]).spawn().unwrap();
    for mut c in [a, b] {
        assert!(c.wait().unwrap().success());
    }
    let after = h.wait_for("online again", T, |l| {
        l[0]["status"] == "online" && l[0]["pid"] != before["pid"]
    });
    let pid = after[0]["pid"].as_i64().unwrap() as i32;
    let running = processes_running(&script);
    assert_eq!(running, vec![pid], "one process for one instance");
}

#[test]
fn herds_own_files_never_restart_an_app_that_watches_them() {
    // The app watches HERD_HOME itself: herd.log, the pid file and the
    // app's own log in logs/ are written as it starts and restarts.
    let h = TestHome::new();
    std::fs::copy(app("scripts/sleep.sh"), h.root.join("sleep.sh")).unwrap();
    std::fs::create_dir_all(h.root.join("src")).unwrap();
    h.run(&[
        "start",
        h.root.join("sleep.sh").to_str().unwrap(),
        "--cwd",
        h.root.to_str().unwrap(),
        "--watch",
    ])
    .ok();
    let before = online(&h);
    stays(&h, 0, Duration::from_millis(600));
    // A file in a folder of its own still counts, once; the log lines that
    // restart writes do not start another. (Files directly in HERD_HOME
    // are herd's.)
    write(&h.root.join("src/config.json"), "{}");
    restarted(&h, &before["pid"], 1);
    stays(&h, 1, Duration::from_millis(600));
}

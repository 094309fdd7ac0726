//! `herd save` / `resurrect` / `cleardump` and autosave: what comes back
//! after `herd kill`, and the guards that keep a dump from being emptied or
//! lost (PM2's dump overwritten with `[]` after a reboot, stopped apps
//! started again, apps not restored).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const T: Duration = Duration::from_secs(10);

/// A long-running app that prints its pid and two variables, in `h`'s
/// temp dir (removed with it).
fn env_app(h: &TestHome) -> String {
    let dir = h.root.join("apps");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("env.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"pid=$$ greeting=$GREETING mode=$MODE\"\nwhile true; do sleep 1; done\n",
    )
    .unwrap();
    script.to_string_lossy().into_owned()
}

fn dump_path(h: &TestHome) -> PathBuf {
    h.root.join("dump.json")
}

/// The dump's app names, in order.
fn dumped(h: &TestHome) -> Vec<String> {
    let text = std::fs::read_to_string(dump_path(h)).expect("dump.json exists");
    let v: Value = serde_json::from_str(&text).expect("dump.json is JSON");
    v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["spec"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn of<'a>(l: &'a [Value], name: &str) -> Vec<&'a Value> {
    l.iter().filter(|i| i["name"] == name).collect()
}

/// Waits until `log` has a line with all of `needles`.
#[track_caller]
fn wait_log(log: &str, needles: &[&str]) {
    let deadline = Instant::now() + T;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
            return;
        }
        assert!(Instant::now() < deadline, "{log} lacks {needles:?}: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_then_resurrect_restores_apps_counts_env_and_stopped() {
    let h = TestHome::new();
    let script = env_app(&h);
    // A scaled cluster app with an --env variable.
    h.run(&[
        "start",
        &script,
        "--name",
        "web",
        "-i",
        "2",
        "--env",
        "GREETING=hello",
    ])
    .ok();
    h.run(&["scale", "web", "3"]).ok();
    // An ecosystem app started with one of its environments.
    let eco = h.root.join("apps").join("eco.json");
    std::fs::write(
        &eco,
        format!(
            r#"{{"apps": [{{"name": "eco", "script": "{script}", "env": {{"MODE": "dev"}}, "env_production": {{"MODE": "prod"}}}}]}}"#
        ),
    )
    .unwrap();
    h.run(&["start", eco.to_str().unwrap(), "--env", "production"])
        .ok();
    // An app the user stopped.
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "idle"])
        .ok();
    h.wait_for("all online", T, |l| {
        l.len() == 5 && l.iter().all(|i| i["status"] == "online")
    });
    h.run(&["stop", "idle"]).ok();

    let saved = h.run(&["save"]).ok();
    assert!(
        saved.stderr.contains("saved 3 app(s), 5 instance(s)"),
        "{}",
        saved.stderr
    );
    h.run(&["kill"]).ok();
    assert_eq!(dumped(&h), ["web", "eco", "idle"], "kill leaves the dump");

    let r = h.run(&["resurrect"]).ok();
    assert!(r.stderr.contains("resurrected 3 app(s)"), "{}", r.stderr);
    let l = h.wait_for("web and eco online", T, |l| {
        let online = |n| of(l, n).iter().all(|i| i["status"] == "online");
        of(l, "web").len() == 3 && online("web") && of(l, "eco").len() == 1 && online("eco")
    });
    // The stopped app is back stopped, and was never launched.
    let idle = of(&l, "idle");
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0]["status"], "stopped", "{:#?}", idle[0]);
    assert!(idle[0]["pid"].is_null() && idle[0]["started_at_ms"].is_null());
    // Env as started: the new processes see it.
    for i in of(&l, "web") {
        assert_eq!(i["env"]["GREETING"], "hello");
        let pid = i["pid"].as_i64().unwrap().to_string();
        wait_log(
            i["out_log"].as_str().unwrap(),
            &[&format!("pid={pid} "), "greeting=hello"],
        );
    }
    let e = of(&l, "eco")[0];
    assert_eq!(e["env"]["MODE"], "prod", "the --env production values");
    let pid = e["pid"].as_i64().unwrap().to_string();
    wait_log(
        e["out_log"].as_str().unwrap(),
        &[&format!("pid={pid} "), "mode=prod"],
    );
    // Started again by the user, it runs like any stopped app.
    h.run(&["restart", "idle"]).ok();
    h.wait_for("idle online", T, |l| {
        of(l, "idle").iter().all(|i| i["status"] == "online")
    });
}

#[test]
fn resurrect_leaves_running_apps_alone() {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "a"])
        .ok();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "b", "-f"])
        .ok();
    h.wait_for("online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    h.run(&["save"]).ok();
    h.run(&["delete", "b"]).ok();
    let a_pid = h.list()[0]["pid"].as_i64().unwrap();

    let r = h.run(&["resurrect"]).ok();
    assert!(
        r.stderr
            .contains("`a` is already in the list: left as it is"),
        "{}",
        r.stderr
    );
    let l = h.wait_for("b back", T, |l| {
        of(l, "b").len() == 1 && of(l, "b")[0]["status"] == "online"
    });
    assert_eq!(of(&l, "a").len(), 1, "a not duplicated");
    assert_eq!(
        of(&l, "a")[0]["pid"].as_i64().unwrap(),
        a_pid,
        "a untouched"
    );
    // Again: nothing to add.
    h.run(&["resurrect"]).ok();
    assert_eq!(h.list().len(), 2);
}

#[test]
fn corrupt_dump_falls_back_to_the_backup() {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "first"])
        .ok();
    h.run(&["save"]).ok();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "second", "-f"])
        .ok();
    h.run(&["save"]).ok();
    h.run(&["kill"]).ok();
    std::fs::write(dump_path(&h), "{\"herd_dump\": 1, \"apps\": [{\"spec\"").unwrap();

    let r = h.run(&["resurrect"]).ok();
    assert!(
        r.stderr.contains("dump.json is corrupt") && r.stderr.contains("dump.json.bak"),
        "says it fell back: {}",
        r.stderr
    );
    let l = h.wait_for("first online", T, |l| {
        l.len() == 1 && l[0]["status"] == "online"
    });
    assert_eq!(l[0]["name"], "first", "the previous save's apps");
}

#[test]
fn future_version_dump_is_a_clear_error() {
    let h = TestHome::new();
    let future = r#"{"herd_dump": 7, "apps": [{"something": "new"}]}"#;
    std::fs::write(dump_path(&h), future).unwrap();
    h.run(&["resurrect"]).fails_with(
        "dump.json is version 7; this herd reads up to 1 — upgrade herd or `herd cleardump`",
    );
    assert!(h.list().is_empty());
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "a"])
        .ok();
    h.run(&["save"]).fails_with("newer herd");
    assert_eq!(std::fs::read_to_string(dump_path(&h)).unwrap(), future);
}

#[test]
fn empty_save_needs_force_and_cleardump_removes_the_dump() {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "a"])
        .ok();
    h.run(&["dump"]).ok();
    h.run(&["delete", "a"]).ok();
    let before = std::fs::read(dump_path(&h)).unwrap();
    let r = h
        .run(&["save"])
        .fails_with("not saving an empty process list");
    assert!(
        r.stderr.contains("hint:") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(dump_path(&h)).unwrap(), before, "unchanged");

    h.run(&["save", "--force"]).ok();
    assert!(dumped(&h).is_empty());

    h.run(&["cleardump"]).ok();
    assert!(!dump_path(&h).exists());
    let r = h.run(&["resurrect"]).ok();
    assert!(r.stderr.contains("nothing to resurrect"), "{}", r.stderr);
    assert!(h.list().is_empty());
}

#[test]
fn autosave_follows_changes_and_kill_does_not_empty_it() {
    let h = TestHome::new();
    let on = h.run(&["save", "--autosave"]).ok();
    assert!(on.stderr.contains("autosave on"), "{}", on.stderr);
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "a"])
        .ok();
    assert_eq!(dumped(&h), ["a"], "after a start");
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "b", "-f"])
        .ok();
    assert_eq!(dumped(&h), ["a", "b"]);
    h.run(&["delete", "b"]).ok();
    assert_eq!(dumped(&h), ["a"], "after a delete");
    h.wait_for("a online", T, |l| l[0]["status"] == "online");

    h.run(&["kill"]).ok();
    assert_eq!(dumped(&h), ["a"], "kill stopped a, the dump keeps it");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dump_path(&h)).unwrap()).unwrap();
    assert_eq!(
        v["apps"][0]["stopped"],
        serde_json::json!([]),
        "not as stopped"
    );
    assert_eq!(v["autosave"], true);

    // Resurrect brings `a` back running, and autosave with it.
    let r = h.run(&["resurrect"]).ok();
    assert!(r.stderr.contains("autosave on"), "{}", r.stderr);
    h.wait_for("a online again", T, |l| {
        l.len() == 1 && l[0]["status"] == "online"
    });
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "c", "-f"])
        .ok();
    assert_eq!(dumped(&h), ["a", "c"]);
}

#[test]
fn autosave_from_env_never_replaces_a_dump_it_has_not_restored() {
    let h = TestHome::new().with_env("HERD_AUTOSAVE", "1");
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "a"])
        .ok();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "b", "-f"])
        .ok();
    assert_eq!(dumped(&h), ["a", "b"]);
    h.run(&["kill"]).ok();

    // A fresh daemon (after a reboot): a change before `resurrect` leaves
    // the saved list alone.
    let r = h
        .run(&["start", &app("scripts/sleep.sh"), "--name", "c", "-f"])
        .ok();
    assert!(
        r.stderr.contains("has not resurrected"),
        "says why it did not save: {}",
        r.stderr
    );
    assert_eq!(dumped(&h), ["a", "b"]);
    h.run(&["resurrect"]).ok();
    h.wait_for("all three", T, |l| {
        l.len() == 3 && l.iter().all(|i| i["status"] == "online")
    });
    let mut names = dumped(&h);
    names.sort();
    assert_eq!(names, ["a", "b", "c"], "resurrect adopted the dump");
}

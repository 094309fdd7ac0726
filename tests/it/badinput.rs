//! Every bad input: one `error:` line naming it, a `hint:`, a non-zero exit,
//! and nothing already running disturbed.

use std::time::Duration;

use crate::harness::*;

/// A home with one app running, to check that bad requests leave it alone.
fn with_running_app() -> (TestHome, serde_json::Value) {
    let h = TestHome::new();
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "keep"])
        .ok();
    let l = h.wait_for("online", Duration::from_secs(10), |l| {
        l.len() == 1 && l[0]["status"] == "online"
    });
    (h, l[0]["pid"].clone())
}

#[track_caller]
fn undisturbed(h: &TestHome, pid: &serde_json::Value) {
    let l = h.list();
    assert_eq!(l.len(), 1, "{l:#?}");
    assert_eq!(&l[0]["pid"], pid);
    assert_eq!(l[0]["status"], "online");
    assert_eq!(l[0]["restarts"], 0);
}

#[test]
fn bad_flags_and_values() {
    let (h, pid) = with_running_app();
    let script = app("scripts/sleep.sh");
    // clap's own errors: one `error:` line naming the flag, exit 2.
    let r = h.run(&["start", &script, "--bogus"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("error: ") && r.stderr.contains("--bogus"),
        "{}",
        r.stderr
    );
    let r = h.run(&["frobnicate"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("frobnicate"), "{}", r.stderr);

    h.run(&["start", &script, "-i", "abc", "--name", "x"])
        .fails_with("`abc` for --instances");
    h.run(&["start", &script, "-i", "0.5", "--name", "x"])
        .fails_with("`0.5` for --instances");
    h.run(&["start", &script, "--port", "0", "--name", "x"])
        .fails_with("`0` for --port");
    h.run(&["start", &script, "--port", "70000", "--name", "x"])
        .fails_with("`70000` for --port");
    h.run(&["start", &script, "--port", "-5", "--name", "x"])
        .fails_with("--port");
    h.run(&["start", &script, "--env", "NOEQUALS", "--name", "x"])
        .fails_with("`NOEQUALS` for --env");
    h.run(&["start", &script, "--kill-timeout", "soon", "--name", "x"])
        .fails_with("`soon` for --kill-timeout");
    h.run(&["start", &script, "--name", "42"])
        .fails_with("--name");
    h.run(&[
        "start",
        &script,
        "--name",
        "x",
        "--host",
        "nowhere",
        "--port",
        &free_port().to_string(),
    ])
    .fails_with("`nowhere` for --host");
    h.run(&["start", "does-not-exist.js"])
        .fails_with("does-not-exist.js` not found");
    h.run(&["start", &script, "--cwd", "/no/such/dir"])
        .fails_with("--cwd");
    let r = h.run(&["start", "does-not-exist.js"]);
    assert!(
        r.stderr.contains("\nhint: "),
        "a hint follows the error: {}",
        r.stderr
    );
    undisturbed(&h, &pid);
}

#[test]
fn bad_targets() {
    let (h, pid) = with_running_app();
    h.run(&["stop", "99"]).fails_with("no instance with id 99");
    h.run(&["restart", "nosuchapp"])
        .fails_with("no app named `nosuchapp`");
    h.run(&["delete", "keep", "nosuchapp"])
        .fails_with("nosuchapp");
    h.run(&["show", "7"]).fails_with("id 7");
    undisturbed(&h, &pid);
}

#[test]
fn name_rules() {
    let (h, pid) = with_running_app();
    // Same name, same script, running: reported as already running.
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "keep"])
        .fails_with("already running");
    // Same name, another script: refused.
    h.run(&["start", &app("scripts/crash.sh"), "--name", "keep"])
        .fails_with("taken by");
    undisturbed(&h, &pid);
    // -f forces a second copy.
    h.run(&["start", &app("scripts/sleep.sh"), "--name", "keep", "-f"])
        .ok();
    let l = h.wait_for("two copies", Duration::from_secs(10), |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    assert_eq!(l[1]["name"], "keep");
    assert_eq!(l[0]["pid"], pid);
}

#[test]
fn unexecutable_script_is_reported_and_not_kept() {
    let (h, pid) = with_running_app();
    let dir = h.root.join("scripts");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("plain-file");
    std::fs::write(&f, "not a program").unwrap();
    h.run(&["start", f.to_str().unwrap()])
        .fails_with("not executable");
    h.run(&[
        "start",
        f.to_str().unwrap(),
        "--interpreter",
        "no-such-interpreter",
    ])
    .fails_with("no-such-interpreter");
    undisturbed(&h, &pid);
}

#[test]
fn bad_log_reload_and_policy_values() {
    let (h, pid) = with_running_app();
    let script = app("scripts/sleep.sh");
    for (args, needle) in [
        (&["--log-type", "xml"][..], "`xml` for --log-type"),
        (&["--log-max-size", "10X"][..], "`10X` for --log-max-size"),
        (&["--log-retain", "-1"][..], "`-1` for --log-retain"),
        (&["--policy", "fastest"][..], "`fastest` for --policy"),
        (&["--cron-restart", "61 * * * *"][..], "--cron-restart"),
        (&["--watch-delay", "soon"][..], "--watch-delay"),
        (&["--warmup", "later"][..], "`later` for --warmup"),
        (
            &["--warmup-path", "health"][..],
            "`health` for --warmup-path",
        ),
        (&["--warmup-path", "/a b"][..], "`/a b` for --warmup-path"),
    ] {
        let mut a = vec!["start", script.as_str(), "--name", "x"];
        a.extend_from_slice(args);
        h.run(&a).fails_with(needle);
    }
    h.run(&["reload", "keep", "--parallel", "many"])
        .fails_with("`many` for --parallel");
    h.run(&["logs", "keep", "--lines", "ten"])
        .fails_with("`ten` for --lines");
    h.run(&["logs", "nobody", "--nostream"])
        .fails_with("nobody");
    h.run(&["flush", "nobody"]).fails_with("nobody");
    undisturbed(&h, &pid);
}

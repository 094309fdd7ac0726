//! Other JavaScript runtimes (#18): Bun in cluster mode (reuseport, each
//! process binding its own `SO_REUSEPORT` socket), Deno (reuseport and
//! shared, on herd's listener), and what herd refuses.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::harness::*;

const T: std::time::Duration = std::time::Duration::from_secs(20);

/// Bun, from `HERD_BUN`, PATH, or npm (bun@1.4.5); `None`: a loud SKIP.
fn bun() -> Option<PathBuf> {
    npm_tool("bun", "HERD_BUN", "bun@1.4.5", "bun", Some(&["--version"]))
}

/// Until every pid of `l` has answered on `port` (bounded).
fn all_answer(port: u16, l: &[serde_json::Value]) {
    let want: BTreeSet<String> = pids(l).iter().map(|p| p.to_string()).collect();
    let deadline = std::time::Instant::now() + T;
    loop {
        let seen = distinct_responders(port, 60, Some("x-worker"));
        assert!(seen.is_subset(&want), "{seen:?} vs {want:?}");
        if seen == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all serve: {seen:?}"
        );
    }
}

/// Starts `script` as app `rt` (`-i 2`, `mode`, `extra` flags) on `port`:
/// every process answers, before and after a replacement-first reload.
fn serves_and_reloads(h: &TestHome, script: &str, port: u16, mode: &str, extra: &[&str]) {
    let p = port.to_string();
    let mut args = vec![
        "start",
        script,
        "-i",
        "2",
        "--port",
        &p,
        "--mode",
        mode,
        "--name",
        "rt",
        "--host",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    h.run(&args).ok();
    let l = h.wait_for("2 online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    wait_http(port, T);
    all_answer(port, &l);
    // Replacement first: the new processes serve, then the old ones go.
    let before = pids(&l);
    h.run(&["reload", "rt"]).ok();
    let l = h.list();
    assert!(pids(&l).iter().all(|p| !before.contains(p)), "{l:#?}");
    all_answer(port, &l);
}

#[test]
fn bun_cluster_app_serves_from_every_process_reloads_and_scales() {
    let Some(bun) = bun() else {
        return;
    };
    let bun = bun.to_string_lossy().into_owned();
    let h = TestHome::new();
    let port = free_port();
    let p = port.to_string();
    let script = app("node/app.js");
    // fdpass (the default) cannot work under Bun: refused, naming reuseport.
    h.run(&[
        "start",
        &script,
        "--interpreter",
        &bun,
        "-i",
        "2",
        "--port",
        &p,
    ])
    .fails_with("--mode reuseport");
    let extra = ["--interpreter", bun.as_str()];
    serves_and_reloads(&h, &script, port, "reuseport", &extra);
    h.run(&["scale", "rt", "3"]).ok();
    let l = h.wait_for("3 online", T, |l| {
        l.len() == 3 && l.iter().all(|i| i["status"] == "online")
    });
    all_answer(port, &l);
}

/// Deno serves on herd's `{fd: 3}` listener through the preload, given
/// `--require` after `run` (herd adds both): reuseport and shared mode.
#[test]
fn deno_cluster_app_serves_on_herds_listener_in_reuseport_and_shared_mode() {
    let Some(deno) = npm_tool(
        "deno",
        "HERD_DENO",
        "deno@2.9.6",
        "deno",
        Some(&["--version"]),
    ) else {
        return;
    };
    let deno = deno.to_string_lossy().into_owned();
    let script = app("node/app.mjs");
    for mode in ["reuseport", "shared"] {
        let h = TestHome::new();
        let port = free_port();
        let extra = [
            "--interpreter",
            deno.as_str(),
            "--interpreter-args",
            "run --allow-net --allow-env",
        ];
        serves_and_reloads(&h, &script, port, mode, &extra);
    }
}

#[test]
fn deno_in_fdpass_and_bun_outside_reuseport_are_refused_and_fork_mode_is_not() {
    let h = TestHome::new();
    let a = app("scripts/sleep.sh");
    for (rt, mode) in [
        ("/opt/deno/bin/deno", "fdpass"),
        ("deno", "fdpass"),
        ("bun", "shared"),
    ] {
        h.run(&[
            "start",
            &a,
            "--interpreter",
            rt,
            "-i",
            "2",
            "--mode",
            mode,
            "--name",
            "rt",
        ])
        .fails_with("herd does not run");
    }
    assert!(h.list().is_empty(), "nothing started");
    // Fork mode is tried (the interpreter may be missing here: its own error).
    let o = h.run(&["start", &a, "--interpreter", "deno", "-x", "--name", "rt"]);
    assert!(!o.stderr.contains("herd does not run"), "{}", o.stderr);
}

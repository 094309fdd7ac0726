//! Unmodified Node apps (PM2 docs' app, and Express) in reuseport mode via
//! herd's `node -r` preload.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(20);

fn serve_by_both(h: &TestHome, script: &str, name: &str, mode: &str) {
    let port = free_port();
    let p = port.to_string();
    h.run(&[
        "start",
        script,
        "-i",
        "2",
        "--name",
        name,
        "--mode",
        mode,
        "--port",
        &p,
        "--host",
        "127.0.0.1",
    ])
    .ok();
    let l = h.wait_for("2 online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    assert!(l.iter().all(|i| i["interpreter"] == "node"));
    wait_http(port, T);
    let want: BTreeSet<String> = pids(&l).iter().map(|p| p.to_string()).collect();
    // Both workers must have reached listen() before both can answer.
    let deadline = std::time::Instant::now() + T;
    loop {
        let seen = distinct_responders(port, 100, Some("x-worker"));
        assert!(
            seen.is_subset(&want),
            "a response came from outside herd's workers: {seen:?} vs {want:?}"
        );
        if seen == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {seen:?} of {want:?} answered"
        );
    }
}

fn pm2_docs_app(mode: &str) {
    if !node_available() {
        return;
    }
    let h = TestHome::new();
    serve_by_both(&h, &app("node/app.js"), "api", mode);
    let l = h.list();
    assert_eq!(l[0]["distribution"], mode);
    // The app really served on herd's socket: no bind error of its own.
    let log = l[0]["err_log"].as_str().unwrap().to_string();
    let errors = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !errors.contains("EADDRINUSE") && !errors.contains("Error"),
        "{errors}"
    );
}

#[test]
fn pm2_docs_app_answered_by_both_pids_reuseport() {
    pm2_docs_app("reuseport");
}

#[test]
fn pm2_docs_app_answered_by_both_pids_fdpass() {
    pm2_docs_app("fdpass");
}

#[test]
fn express_app_answered_by_both_pids() {
    if !node_available() {
        return;
    }
    let dir = std::path::Path::new(&app("express")).to_path_buf();
    if !dir.join("node_modules/express").exists() {
        let out = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "SKIP: `npm install express` failed (no registry?): {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                return;
            }
            Err(e) => {
                eprintln!("SKIP: npm not available: {e}");
                return;
            }
        }
    }
    let h = TestHome::new();
    serve_by_both(&h, &app("express/app.js"), "express", "fdpass");
    let h2 = TestHome::new();
    serve_by_both(&h2, &app("express/app.js"), "express", "reuseport");
}

/// A second server in the app (a metrics or admin port) keeps working in
/// fdpass mode: herd hands that listener to the workers (Node's shared
/// handle) while it dispatches the main port itself.
#[test]
fn side_server_on_a_second_port_works_in_fdpass() {
    if !node_available() {
        return;
    }
    let h = TestHome::new();
    let (main, side) = (free_port(), free_port());
    let side_env = format!("SIDE_PORT={side}");
    h.run(&[
        "start",
        &app("node/two-servers.js"),
        "-i",
        "2",
        "--port",
        &main.to_string(),
        "--host",
        "127.0.0.1",
        "--env",
        &side_env,
    ])
    .ok();
    let l = h.wait_for("2 in rotation", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["in_rotation"] == true)
    });
    let want: BTreeSet<String> = pids(&l).iter().map(|p| p.to_string()).collect();
    wait_http(side, T);
    let main_seen = distinct_responders(main, 50, Some("x-worker"));
    assert_eq!(
        main_seen, want,
        "the main port is dispatched to both workers"
    );
    let side_seen = distinct_responders(side, 50, Some("x-worker"));
    assert!(
        side_seen.is_subset(&want) && !side_seen.is_empty(),
        "{side_seen:?}"
    );
    let errors = std::fs::read_to_string(l[0]["err_log"].as_str().unwrap()).unwrap_or_default();
    assert!(!errors.contains("Error"), "{errors}");
}

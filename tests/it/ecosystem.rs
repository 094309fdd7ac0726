//! Ecosystem files: PM2's own files start unchanged, `--env` picks an
//! environment, files never duplicate apps, bad files start nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(20);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecosystem")
}

/// A private copy of the fixtures (apps write their logs next to the file).
fn copy_fixtures(h: &TestHome) -> PathBuf {
    let dir = h.root.join("eco");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(fixtures())
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Node answers chunked without a length: take the chunk's data line.
    body.lines().nth(1).unwrap_or(&body).to_string()
}

#[test]
fn pm2_docs_cluster_file_starts_shows_and_serves() {
    if !node_available() {
        return;
    }
    let h = TestHome::new();
    let dir = copy_fixtures(&h);
    let port = free_port();
    let file = dir.join("my-cluster-app.config.js");
    let out = h
        .run(&[
            "start",
            file.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
        ])
        .ok();
    assert!(
        !out.stderr.contains("`log_file`") && !out.stderr.contains("`watch`"),
        "every key of this file is acted on: {}",
        out.stderr
    );
    let cpus = std::thread::available_parallelism().unwrap().get();
    let l = h.wait_for("all in rotation", T, |l| {
        l.len() == cpus && l.iter().all(|i| i["in_rotation"] == true)
    });
    assert!(l
        .iter()
        .all(|i| i["exec_mode"] == "cluster" && i["name"] == "my-cluster-app"));
    // out_file / error_file resolve against the file's directory, one per
    // instance (PM2's -<id> suffix).
    let out_log = l[0]["out_log"].as_str().unwrap();
    assert_eq!(
        Path::new(out_log),
        dir.join(format!("logs/out-{}.log", l[0]["id"]))
    );
    assert!(l[0]["err_log"]
        .as_str()
        .unwrap()
        .ends_with(&format!("logs/err-{}.log", l[0]["id"])));
    let want: std::collections::BTreeSet<String> = pids(&l).iter().map(|p| p.to_string()).collect();
    let seen = distinct_responders(port, 100, Some("x-worker"));
    assert!(seen.is_subset(&want) && !seen.is_empty());
    let show = h.run(&["show", "my-cluster-app"]).ok().stdout;
    for needle in [
        "watch",
        "max memory restart",
        "1.0gb",
        "NODE_ENV",
        "production",
        "my-cluster-app.config.js",
    ] {
        assert!(show.contains(needle), "show lacks {needle}: {show}");
    }
    assert_eq!(get(port, "/env/NODE_ENV"), "production");

    // The second file of PM2's docs, with --env production, beside it.
    let port2 = free_port();
    let api = dir.join("api-server.config.js");
    h.run(&[
        "start",
        api.to_str().unwrap(),
        "--env",
        "production",
        "--port",
        &port2.to_string(),
        "--host",
        "127.0.0.1",
    ])
    .ok();
    h.wait_for("api-server in rotation", T, |l| {
        l.iter()
            .filter(|i| i["name"] == "api-server" && i["in_rotation"] == true)
            .count()
            == cpus
    });
    assert_eq!(get(port2, "/env/NODE_ENV"), "production");
    let show = h.run(&["show", "api-server", "--json"]).ok().json();
    assert_eq!(show[0]["log_date_format"], "YYYY-MM-DD HH:mm:ss Z");
    assert_eq!(show[0]["log_format"], "time");
    assert_eq!(
        show[0]["ignore_watch"],
        serde_json::json!(["node_modules", "logs"])
    );
    assert!(show[0]["pending_config"].get("ignore_watch").is_none());
    assert_eq!(show[0]["instances"].as_u64().unwrap() as usize, cpus);
    assert_eq!(show[0]["min_uptime_ms"], 10_000);
    assert_eq!(show[0]["max_restarts"], 10);
}

#[test]
fn env_selects_a_block_and_files_never_duplicate() {
    if !node_available() {
        return;
    }
    let h = TestHome::new();
    let dir = copy_fixtures(&h);
    let port = free_port();
    std::fs::write(
        dir.join("envs.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'envs', script: 'app.js', instances: 2, \
             env: {{ NODE_ENV: 'development', PORT: {port} }}, \
             env_production: {{ NODE_ENV: 'production' }} }}] }};"
        ),
    )
    .unwrap();
    let file = dir.join("envs.config.js");
    let file = file.to_str().unwrap();
    h.run(&["start", file, "--env", "production", "--host", "127.0.0.1"])
        .ok();
    h.wait_for("2 in rotation", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["in_rotation"] == true)
    });
    assert_eq!(get(port, "/env/NODE_ENV"), "production");
    assert_eq!(
        get(port, "/env/PORT"),
        port.to_string(),
        "env (not env_production) keys still apply"
    );

    // Starting the file again (PM2: restarts what runs with the file's
    // spec and env) reloads the running app with the plain `env`: no
    // duplicates, one restart each.
    h.run(&["start", file, "--host", "127.0.0.1"]).ok();
    h.wait_for("reloaded", T, |l| {
        l.len() == 2
            && l.iter()
                .all(|i| i["in_rotation"] == true && i["restarts"] == 1)
    });
    assert_eq!(get(port, "/env/NODE_ENV"), "development");

    // And again with --env production (--update-env changes nothing here).
    h.run(&[
        "start",
        file,
        "--host",
        "127.0.0.1",
        "--env",
        "production",
        "--update-env",
    ])
    .ok();
    h.wait_for("reloaded again", T, |l| {
        l.len() == 2
            && l.iter()
                .all(|i| i["in_rotation"] == true && i["restarts"] == 2)
    });
    assert_eq!(get(port, "/env/NODE_ENV"), "production");

    // The deploy script of PM2's docs, with herd's verbs.
    h.run(&["stop", file]).ok();
    assert!(h.list().iter().all(|i| i["status"] == "stopped"));
    h.run(&["start", file, "--env", "production", "--host", "127.0.0.1"])
        .ok();
    let l = h.wait_for("back", T, |l| l.iter().all(|i| i["in_rotation"] == true));
    assert_eq!(
        l.len(),
        2,
        "a stopped app starts again, it is not added twice"
    );
    assert_eq!(get(port, "/env/NODE_ENV"), "production");
    h.run(&["status"]).ok();
    // reload <file> replaces every instance of the apps it names.
    let before = pids(&h.list());
    h.run(&["reload", file]).ok();
    let after = h.wait_for("reloaded", T, |l| {
        l.iter().all(|i| i["in_rotation"] == true)
    });
    assert!(
        pids(&after).iter().all(|p| !before.contains(p)),
        "{before:?} -> {:?}",
        pids(&after)
    );
    // It takes the file's settings as they are now, as PM2's does: without
    // --env, the file's `env`.
    assert_eq!(get(port, "/env/NODE_ENV"), "development");
    h.run(&["reload", file, "--env", "production"]).ok();
    h.wait_for("reloaded", T, |l| {
        l.iter().all(|i| i["in_rotation"] == true)
    });
    assert_eq!(get(port, "/env/NODE_ENV"), "production");
    h.run(&["delete", file]).ok();
    assert!(h.list().is_empty());
}

#[test]
fn stop_of_an_app_not_started_yet_fails_as_in_pm2() {
    let h = TestHome::new();
    // PM2's deploy script goes on to its `start` after this failure.
    h.run(&["stop", "api-server"])
        .fails_with("Process or Namespace api-server not found");
    // Ids stay strict.
    h.run(&["stop", "42"]).fails_with("no instance with id 42");
}

#[test]
fn only_picks_apps_from_a_file() {
    let h = TestHome::new();
    let dir = copy_fixtures(&h);
    let file = dir.join("two.json");
    let sleep = app("scripts/sleep.sh");
    std::fs::write(
        &file,
        format!(
            r#"{{"apps":[{{"name":"a","script":"{sleep}"}},{{"name":"b","script":"{sleep}"}}]}}"#
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    h.run(&["start", f, "--only", "b"]).ok();
    let l = h.wait_for("b online", T, |l| {
        l.len() == 1 && l[0]["status"] == "online"
    });
    assert_eq!(l[0]["name"], "b");
    h.run(&["start", f, "--only", "nope"]).fails_with("nope");
    h.run(&["start", f]).ok();
    h.wait_for("both", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    h.run(&["stop", f, "--only", "a"]).ok();
    let l = h.list();
    let a = l.iter().find(|i| i["name"] == "a").unwrap();
    let b = l.iter().find(|i| i["name"] == "b").unwrap();
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("stopped"), Some("online"))
    );
}

#[test]
fn bad_files_start_nothing_and_name_the_problem() {
    let h = TestHome::new();
    let dir = copy_fixtures(&h).join("bad");
    let cases: &[(&str, &[&str])] = &[
        (
            "instances-lots.json",
            &["instances-lots.json", "app `api`", "`instances`", "lots"],
        ),
        (
            "memory-1x.yaml",
            &["memory-1x.yaml", "`max_memory_restart`", "1X"],
        ),
        (
            "exec-mode-clusterr.toml",
            &["exec-mode-clusterr.toml", "`exec_mode`", "clusterr"],
        ),
        ("no-script.json", &["no-script.json", "script"]),
    ];
    for (file, needles) in cases {
        let r = h.run(&["start", dir.join(file).to_str().unwrap()]);
        let r = r.fails_with(needles[0]);
        for n in *needles {
            assert!(
                r.stderr.contains(n),
                "{file}: stderr lacks {n}: {}",
                r.stderr
            );
        }
        assert!(h.list().is_empty(), "{file}: nothing may start");
    }
    if node_available() {
        let r = h.run(&["start", dir.join("throws.config.js").to_str().unwrap()]);
        let r = r.fails_with("throws.config.js");
        assert!(r.stderr.contains("Error"), "{}", r.stderr);
        assert!(h.list().is_empty());
    }
    // Unknown keys warn with a suggestion but do not fail.
    let r = h
        .run(&[
            "config",
            "check",
            dir.join("unknown-key.json").to_str().unwrap(),
        ])
        .ok();
    assert!(
        r.stderr.contains("did you mean `instances`"),
        "{}",
        r.stderr
    );
    // config check on a bad file fails with the same error.
    h.run(&[
        "config",
        "check",
        dir.join("instances-lots.json").to_str().unwrap(),
    ])
    .fails_with("`instances`");
}

#[test]
fn config_check_prints_resolved_apps_for_every_format() {
    let h = TestHome::new();
    let mut seen = Vec::new();
    for f in ["api-server.json", "api-server.yaml", "api-server.toml"] {
        let out = h
            .run(&[
                "config",
                "check",
                fixtures().join(f).to_str().unwrap(),
                "--env",
                "production",
                "--json",
            ])
            .ok()
            .json();
        assert_eq!(out[0]["name"], "api-server");
        assert_eq!(out[0]["min_uptime_ms"], 10000);
        assert_eq!(out[0]["max_restarts"], 10);
        assert_eq!(out[0]["env"]["NODE_ENV"], "production");
        let mut out = out;
        out[0].as_object_mut().unwrap().remove("config_file");
        seen.push(out);
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "JSON, YAML and TOML resolve to the same apps"
    );
    // The table speaks the user's words, not Rust's Debug.
    let table = h
        .run(&[
            "config",
            "check",
            fixtures().join("api-server.json").to_str().unwrap(),
        ])
        .ok()
        .stdout;
    let row = table
        .lines()
        .find(|l| l.contains("instances"))
        .unwrap_or_else(|| panic!("no instances row: {table}"));
    assert!(!row.contains("Count(") && !row.contains("Max"), "{row}");
}

/// PM2's `instance_var` and `increment_var` in cluster mode: each instance
/// gets its number under the named variable and its own PORT (base + its
/// number), never taken for herd's port; one that listens only on its own
/// port is not in the rotation of the first's; `jlist` shows both as
/// numbers, as PM2 does, and no `NODE_APP_INSTANCE`.
#[test]
fn instance_var_and_an_incremented_port_are_each_instances_own() {
    if !node_available() {
        return;
    }
    let h = TestHome::new();
    // Two consecutive free ports.
    let base = loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let file = h.root.join("inc.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"apps":[{{"name":"inc","script":"{}","instances":2,"exec_mode":"cluster",
                "instance_var":"INSTANCE_ID","increment_var":"PORT","env":{{"PORT":{base}}}}}]}}"#,
            app("node/app.js")
        ),
    )
    .unwrap();
    h.run(&["start", &file.to_string_lossy()]).ok();
    h.wait_for("2 online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    wait_http(base, T);
    wait_http(base + 1, T);
    for _ in 0..10 {
        assert_eq!(
            get(base, "/env/INSTANCE_ID"),
            "0",
            "only instance 0 serves {base}"
        );
    }
    assert_eq!(get(base + 1, "/env/INSTANCE_ID"), "1");
    assert_eq!(get(base + 1, "/env/PORT"), (base + 1).to_string());
    let l = h.wait_for("instance 0 in rotation", T, |l| l[0]["in_rotation"] == true);
    assert_eq!(l[1]["in_rotation"], false, "no server on {base}: {l:#?}");
    assert_eq!(l[1]["instance_var"], "INSTANCE_ID");
    assert_eq!(l[1]["increment_var"], serde_json::json!(["PORT", base + 1]));
    let j = h.run(&["jlist"]).ok().json();
    for (k, p) in j.as_array().unwrap().iter().enumerate() {
        let (env, want) = (&p["pm2_env"], serde_json::json!(base as usize + k));
        assert_eq!(env["INSTANCE_ID"], serde_json::json!(k), "{env}");
        assert_eq!(env["PORT"], want, "{env}");
        assert_eq!(env["env"]["PORT"], want, "{env}");
        assert_eq!(env["env"]["INSTANCE_ID"], serde_json::json!(k), "{env}");
        assert!(env["env"].get("NODE_APP_INSTANCE").is_none(), "{env}");
    }
    let e = h.run(&["env", "1"]).ok().stdout;
    assert!(e.lines().any(|l| l == format!("PORT: {}", base + 1)), "{e}");
    assert!(e.lines().any(|l| l == "INSTANCE_ID: 1"), "{e}");
}

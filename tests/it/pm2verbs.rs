//! PM2's other verbs: `sendSignal`, `pid`, `id`, `env`, `prettylist`,
//! `startOrRestart`, `startOrReload`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

const T: Duration = Duration::from_secs(20);

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/bash\n{body}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

#[track_caller]
fn wait_file(p: &Path) {
    let deadline = Instant::now() + T;
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn send_signal_reaches_every_instance_of_a_name() {
    let h = TestHome::new();
    let dir = h.root.display().to_string();
    let app = script(
        &h.root,
        "usr2.sh",
        &format!(
            "trap 'touch {dir}/usr2-$NODE_APP_INSTANCE' USR2\nwhile true; do sleep 0.05; done\n"
        ),
    );
    h.run(&["start", &app, "-i", "2", "--name", "sig"]).ok();
    h.wait_for("both online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    // The bash trap is set once the script runs; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    // Extra arguments are ignored, as PM2 ignores them.
    let r = h.run(&["sendSignal", "SIGUSR2", "sig", "ignored"]).ok();
    assert_eq!(r.stdout.matches("sent SIGUSR2").count(), 2, "{}", r.stdout);
    wait_file(&h.root.join("usr2-0"));
    wait_file(&h.root.join("usr2-1"));
    // By id, and by a short name or number.
    h.run(&["sendSignal", "USR2", "0"]).ok();
    h.run(&["sendSignal", "12", "1"]).ok();
    // Nothing the signal could reach, or a signal that is not one: exit 1.
    h.run(&["sendSignal", "SIGNOPE", "sig"])
        .fails_with("`SIGNOPE`");
    h.run(&["sendSignal", "0", "sig"]).fails_with("signal");
    h.run(&["sendSignal", "SIGUSR2", "nope"]).fails_with("nope");
    h.run(&["stop", "sig"]).ok();
    h.run(&["sendSignal", "SIGUSR2", "sig"])
        .fails_with("no running process");
}

#[test]
fn pid_id_and_env_print_what_pm2_prints() {
    let h = TestHome::new();
    let app = script(&h.root, "idle.sh", "while true; do sleep 0.05; done\n");
    h.run(&[
        "start",
        &app,
        "-i",
        "2",
        "--name",
        "api",
        "--env",
        "COLOR=blue",
    ])
    .ok();
    let l = h.wait_for("both online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    let mut want: Vec<String> = pids(&l).iter().map(|p| p.to_string()).collect();
    want.sort();
    let mut got: Vec<String> = h
        .run(&["pid", "api"])
        .ok()
        .stdout
        .lines()
        .map(String::from)
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(h.run(&["pid", "nope"]).ok().stdout, "");
    assert_eq!(h.run(&["id", "api"]).ok().stdout.trim(), "[ 0, 1 ]");
    assert_eq!(h.run(&["id", "nope"]).ok().stdout.trim(), "[]");
    let env = h.run(&["env", "1"]).ok().stdout;
    assert!(env.lines().any(|l| l == "COLOR: blue"), "{env}");
    assert!(env.lines().any(|l| l == "NODE_APP_INSTANCE: 1"), "{env}");
    h.run(&["env", "7"]).fails_with("no instance with id 7");
    h.run(&["env", "x"]).fails_with("`x`");
}

#[test]
fn prettylist_prints_the_list_as_node_inspects_it() {
    if !node_available() {
        return;
    }
    let h = TestHome::new();
    let app = script(&h.root, "idle.sh", "while true; do sleep 0.05; done\n");
    h.run(&["start", &app, "--name", "pretty"]).ok();
    let out = h.run(&["prettylist"]).ok().stdout;
    assert!(out.starts_with("[\n  {"), "{out}");
    assert!(out.contains("name: 'pretty'"), "{out}");
    assert!(out.contains("status: 'online'"), "{out}");
}

#[test]
fn start_or_restart_and_start_or_reload_apply_the_files_settings() {
    let h = TestHome::new();
    let app = script(&h.root, "idle.sh", "while true; do sleep 0.05; done\n");
    let file = h.root.join("ecosystem.json");
    let write = |color: &str| {
        std::fs::write(
            &file,
            format!(
                r#"{{"apps":[{{"name":"eco","script":"{app}","interpreter":"none","env":{{"COLOR":"{color}"}}}}]}}"#
            ),
        )
        .unwrap();
    };
    let f = file.to_string_lossy().into_owned();
    let color = |h: &TestHome| {
        h.run(&["env", "0"])
            .ok()
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("COLOR: ").map(String::from))
    };
    let online = |h: &TestHome| {
        h.wait_for("online", T, |l| {
            l.len() == 1 && l[0]["status"] == "online" && l[0]["pid"].is_i64()
        })[0]["pid"]
            .as_i64()
            .unwrap()
    };
    // Not running: started.
    write("red");
    h.run(&["startOrRestart", &f]).ok();
    let p1 = online(&h);
    assert_eq!(color(&h).as_deref(), Some("red"));
    // Running: restarted with the file's new env (no --update-env needed).
    write("green");
    h.run(&["startOrRestart", &f]).ok();
    let p2 = online(&h);
    assert_ne!(p1, p2, "restarted");
    assert_eq!(color(&h).as_deref(), Some("green"));
    // Reload (and its PM2 alias): replaced, with the new env, one instance.
    write("blue");
    h.run(&["startOrGracefulReload", &f]).ok();
    let p3 = online(&h);
    assert_ne!(p2, p3, "reloaded");
    assert_eq!(color(&h).as_deref(), Some("blue"));
    write("violet");
    h.run(&["startOrReload", &f]).ok();
    assert_ne!(online(&h), p3);
    assert_eq!(color(&h).as_deref(), Some("violet"));
    assert_eq!(h.list().len(), 1, "never a second copy");
}

#[test]
fn start_takes_several_scripts_command_strings_and_stdin() {
    let h = TestHome::new();
    let a = script(&h.root, "a.sh", "while true; do sleep 0.05; done\n");
    let b = script(&h.root, "b.sh", "while true; do sleep 0.05; done\n");
    // Several scripts, the same options for each.
    h.run(&["start", &a, &b, "-i", "2"]).ok();
    let l = h.wait_for("four online", T, |l| {
        l.len() == 4 && l.iter().all(|i| i["status"] == "online")
    });
    for name in ["a", "b"] {
        assert_eq!(l.iter().filter(|i| i["name"] == name).count(), 2, "{l:?}");
    }
    h.run(&["start", &a, &b, "--name", "x"])
        .fails_with("--name");
    // A string with a space that is no file: a command, run by bash, named
    // after the whole string.
    let out = h.root.join("cmd.out");
    let cmd = format!("echo \"$1-$2\" > {} && sleep 30", out.display());
    h.run(&["start", &cmd, "--name", "cmd", "--", "x", "y"])
        .ok();
    let deadline = Instant::now() + T;
    while std::fs::read_to_string(&out).unwrap_or_default().trim() != "x-y" {
        assert!(
            Instant::now() < deadline,
            "the command did not run with its args"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run(&["start", "sleep 31"]).ok();
    h.wait_for("`sleep 31` online", T, |l| {
        l.iter()
            .any(|i| i["name"] == "sleep 31" && i["status"] == "online")
    });
    // An ecosystem file on standard input (`herd start -`).
    let json = format!(r#"{{"apps":[{{"name":"piped","script":"{a}","interpreter":"none"}}]}}"#);
    let mut c = h.cmd(&["start", "-"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    h.wait_for("`piped` online", T, |l| {
        l.iter()
            .any(|i| i["name"] == "piped" && i["status"] == "online")
    });
    let mut c = h.cmd(&["start", "-"]);
    c.stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: <stdin>: not valid JSON"), "{err}");
}

#[test]
fn execute_command_is_fork_mode_with_as_many_processes_as_asked() {
    let h = TestHome::new();
    let a = script(&h.root, "forked.sh", "while true; do sleep 0.05; done\n");
    h.run(&["start", &a, "-x", "-i", "3"]).ok();
    let l = h.wait_for("three online", T, |l| {
        l.len() == 3 && l.iter().all(|i| i["status"] == "online")
    });
    assert!(l.iter().all(|i| i["exec_mode"] == "fork"), "{l:?}");
}

#[test]
fn ecosystem_cmd_and_command_keys_and_command_strings() {
    let h = TestHome::new();
    let out = h.root.join("cmd.out");
    let file = h.root.join("ecosystem.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"apps":[
                {{"cmd":"sleep 41"}},
                {{"name":"said","command":"echo \"$1\" > {} && sleep 40","args":["hello"]}}
            ]}}"#,
            out.display()
        ),
    )
    .unwrap();
    h.run(&["start", &file.to_string_lossy()]).ok();
    let l = h.wait_for("both online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    assert!(l.iter().any(|i| i["name"] == "sleep 41"), "{l:?}");
    let deadline = Instant::now() + T;
    while std::fs::read_to_string(&out).unwrap_or_default().trim() != "hello" {
        assert!(
            Instant::now() < deadline,
            "the command did not run with its args"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn env_layers_follow_pm2s_order_and_objects_become_json() {
    let h = TestHome::new();
    let app = script(&h.root, "idle.sh", "while true; do sleep 0.05; done\n");
    let file = h.root.join("ecosystem.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"apps":[{{"name":"layers","script":"{app}","interpreter":"none",
                "env":{{"B":"env","C":"env","OBJ":{{"x":1,"y":[true]}},"ARR":[1,"a"]}},
                "env_production":{{"C":"production"}}}}],
              "deploy":{{"production":{{"env":{{"A":"deploy","B":"deploy","C":"deploy"}}}}}}}}"#
        ),
    )
    .unwrap();
    h.run(&["start", &file.to_string_lossy(), "--env", "production"])
        .ok();
    h.wait_for("online", T, |l| l.len() == 1 && l[0]["status"] == "online");
    let env = h.run(&["env", "0"]).ok().stdout;
    for want in [
        "A: deploy",
        "B: env",
        "C: production",
        r#"OBJ: {"x":1,"y":[true]}"#,
        r#"ARR: [1,"a"]"#,
    ] {
        assert!(env.lines().any(|l| l == want), "no `{want}` in\n{env}");
    }
}

#[test]
fn stop_exit_codes_from_the_command_line_end_the_app_without_a_restart() {
    let h = TestHome::new();
    let app = script(&h.root, "three.sh", "sleep 0.2\nexit 3\n");
    h.run(&["start", &app, "--stop-exit-codes", "0", "3"]).ok();
    let l = h.wait_for("stopped after exit 3", T, |l| {
        l.len() == 1 && l[0]["status"] == "stopped"
    });
    assert_eq!(l[0]["restarts"], 0, "{l:?}");
    h.run(&["start", &app, "--name", "x", "--stop-exit-codes", "300"])
        .fails_with("--stop-exit-codes");
}

#[test]
fn script_paths_are_targets_and_start_of_a_name_restarts_it() {
    let h = TestHome::new();
    let a = script(&h.root, "pathy.sh", "while true; do sleep 0.05; done\n");
    h.run(&["start", &a, "--name", "pathy", "-i", "2"]).ok();
    let pid_of = |h: &TestHome, id: usize| {
        h.wait_for("online", T, |l| {
            l.len() == 2 && l.iter().all(|i| i["status"] == "online")
        })[id]["pid"]
            .as_i64()
            .unwrap()
    };
    let p0 = pid_of(&h, 0);
    // A relative script path, from the caller's cwd, names every instance.
    let out = h
        .cmd(&["stop", "pathy.sh"])
        .current_dir(&h.root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h.list().iter().all(|i| i["status"] == "stopped"));
    // `start <path>` of a stopped app starts it again.
    h.run(&["start", &a]).ok();
    let p1 = pid_of(&h, 0);
    assert_ne!(p0, p1);
    // …of an online one, without -f: an error naming the app.
    h.run(&["start", &a]).fails_with("pathy");
    // `start <name>` and `start <id>` restart.
    h.run(&["start", "pathy"]).ok();
    let p2 = pid_of(&h, 0);
    assert_ne!(p1, p2, "start <name> restarted it");
    h.run(&["start", "1"]).ok();
    assert_eq!(pid_of(&h, 0), p2, "start 1 restarted only instance 1");
    // An absolute path works for every verb.
    h.run(&["restart", &a]).ok();
    assert_ne!(pid_of(&h, 0), p2);
    h.run(&["delete", &a]).ok();
    assert!(h.list().is_empty());
}

#[test]
fn nothing_to_act_on_is_an_error_and_starting_a_stopped_app_is_no_restart() {
    let h = TestHome::new();
    h.run(&["stop", "nope"])
        .fails_with("Process or Namespace nope not found");
    h.run(&["restart", "all"])
        .fails_with("Process or Namespace all not found");
    h.run(&["delete", "all"])
        .fails_with("Process or Namespace all not found");
    let a = script(&h.root, "count.sh", "while true; do sleep 0.05; done\n");
    h.run(&["start", &a, "--name", "count"]).ok();
    h.wait_for("online", T, |l| l.len() == 1 && l[0]["status"] == "online");
    h.run(&["stop", "count"]).ok();
    h.run(&["restart", "count"]).ok();
    let l = h.wait_for("online again", T, |l| l[0]["status"] == "online");
    assert_eq!(
        l[0]["restarts"], 0,
        "a stopped app started again: no restart"
    );
    h.run(&["restart", "count"]).ok();
    let l = h.wait_for("online again", T, |l| l[0]["status"] == "online");
    assert_eq!(l[0]["restarts"], 1, "a running app restarted: one");
}

#[test]
fn the_pm2_alias_runs_pm2s_deploy_flow_and_honours_pm2_home() {
    let h = TestHome::new().with_env("PATH", "/usr/bin:/bin");
    let bin = h.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let b = bin.to_string_lossy().into_owned();
    // Never silently: this herd is not on PATH, so a directory is needed.
    h.run(&["install-alias"]).fails_with("--dir");
    h.run(&["install-alias", "--dir", &b]).ok();
    let link = bin.join("pm2");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(HERD));
    h.run(&["install-alias", "--dir", &b]).ok();
    // PM2's own pm2 is not replaced without --force.
    let other = h.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("pm2"), "#!/bin/sh\n").unwrap();
    let o = other.to_string_lossy().into_owned();
    h.run(&["install-alias", "--dir", &o])
        .fails_with("not replaced");
    h.run(&["install-alias", "--dir", &o, "--remove"])
        .fails_with("left alone");

    // PM2's deploy flow, with `pm2`, PM2_HOME as the home.
    let dir = h.root.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    script(
        &dir,
        "app.sh",
        "echo \"NODE_ENV=$NODE_ENV\"\nwhile true; do sleep 0.05; done\n",
    );
    std::fs::write(
        dir.join("ecosystem.config.json"),
        r#"{"apps":[{"name":"api-server","script":"./app.sh","interpreter":"none","env":{"NODE_ENV":"development"},"env_production":{"NODE_ENV":"production"}}]}"#,
    )
    .unwrap();
    let flow =
        "pm2 stop api-server; pm2 start ecosystem.config.json --env production && pm2 status";
    for round in ["first", "second"] {
        let out = std::process::Command::new("bash")
            .args(["-c", flow])
            .current_dir(&dir)
            .env_remove("HERD_HOME")
            .env("PM2_HOME", &h.root)
            .env("PATH", format!("{b}:/usr/bin:/bin"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{round}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("api-server") && text.contains("online"),
            "{round}: {text}"
        );
    }
    // The same home as herd's: PM2_HOME was taken as HERD_HOME.
    let l = h.list();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["name"], "api-server");
    assert!(h
        .run(&["env", "0"])
        .ok()
        .stdout
        .contains("NODE_ENV: production"));
    h.run(&["install-alias", "--dir", &b, "--remove"]).ok();
    assert!(link.symlink_metadata().is_err());
}

#[test]
fn pm2s_environment_variables_set_herds_defaults() {
    let h = TestHome::new()
        .with_env("PM2_GRACEFUL_LISTEN_TIMEOUT", "1234")
        .with_env("PM2_KILL_USE_MESSAGE", "true");
    let a = script(&h.root, "env.sh", "while true; do sleep 0.05; done\n");
    h.run(&["start", &a, "--name", "envy"]).ok();
    let show = h.run(&["show", "envy", "--json"]).ok().json();
    assert_eq!(show[0]["listen_timeout_ms"], 1234, "{show}");
    assert_eq!(show[0]["shutdown_with_message"], true, "{show}");
    // A flag still wins over the variable.
    h.run(&["start", &a, "--name", "flagged", "--listen-timeout", "2s"])
        .ok();
    let show = h.run(&["show", "flagged", "--json"]).ok().json();
    assert_eq!(show[0]["listen_timeout_ms"], 2000, "{show}");
    let plain = h.run(&["jlist"]).ok().json();
    assert!(plain[0]["pm2_env"].get("deep_monitoring").is_none());
    let deep = h
        .cmd(&["jlist"])
        .env("PM2_DEEP_MONITORING", "true")
        .output()
        .unwrap();
    let deep: serde_json::Value = serde_json::from_slice(&deep.stdout).unwrap();
    assert_eq!(deep[0]["pm2_env"]["deep_monitoring"], true);
}

#[test]
fn restart_and_reload_take_settings_and_null_removes_one() {
    let h = TestHome::new();
    let a = script(&h.root, "opt.sh", "while true; do sleep 0.05; done\n");
    h.run(&["start", &a, "--name", "opt"]).ok();
    h.wait_for("online", T, |l| l.len() == 1 && l[0]["status"] == "online");
    let show = |h: &TestHome| h.run(&["show", "opt", "--json"]).ok().json()[0].clone();
    h.run(&[
        "restart",
        "opt",
        "--node-args=--norc",
        "--max-memory-restart",
        "300M",
        "--kill-timeout",
        "3s",
        "--env",
        "COLOR=red",
        "--watch",
    ])
    .ok();
    let s = show(&h);
    assert_eq!(s["interpreter_args"], serde_json::json!(["--norc"]), "{s}");
    assert_eq!(s["max_memory_restart"], 300 * 1024 * 1024, "{s}");
    assert_eq!(s["kill_timeout_ms"], 3000, "{s}");
    assert_eq!(s["env"]["COLOR"], "red", "{s}");
    assert_eq!(s["watching"], true, "{s}");
    assert_eq!(s["status"], "online", "{s}");
    h.run(&[
        "restart",
        "opt",
        "--node-args=null",
        "--max-memory-restart=null",
        "--no-watch",
    ])
    .ok();
    let s = show(&h);
    assert_eq!(s["interpreter_args"], serde_json::json!([]), "{s}");
    assert!(s["max_memory_restart"].is_null(), "{s}");
    assert!(s["watching"].is_null() || s["watching"] == false, "{s}");
    assert_eq!(s["env"]["COLOR"], "red", "kept");
    h.run(&["reload", "opt", "--env", "COLOR=blue"]).ok();
    assert_eq!(show(&h)["env"]["COLOR"], "blue");
    // A bad value changes nothing.
    let pid = show(&h)["pid"].clone();
    h.run(&["restart", "opt", "--kill-timeout", "soon"])
        .fails_with("--kill-timeout");
    h.run(&["restart", "opt", "--env", "production"])
        .fails_with("ecosystem file");
    let s = show(&h);
    assert_eq!(s["pid"], pid, "{s}");
    assert_eq!(s["kill_timeout_ms"], 3000, "{s}");
}

#[test]
fn restart_of_an_ecosystem_file_reapplies_its_current_settings() {
    let h = TestHome::new();
    let a = script(&h.root, "eco.sh", "while true; do sleep 0.05; done\n");
    let file = h.root.join("ecosystem.json");
    let write = |color: &str, kill: u64| {
        std::fs::write(
            &file,
            format!(
                r#"{{"apps":[{{"name":"re","script":"{a}","interpreter":"none","kill_timeout":{kill},
                    "env":{{"COLOR":"{color}"}},"env_production":{{"COLOR":"prod"}}}}]}}"#
            ),
        )
        .unwrap();
    };
    let f = file.to_string_lossy().into_owned();
    let show = |h: &TestHome| h.run(&["show", "re", "--json"]).ok().json()[0].clone();
    write("red", 1000);
    h.run(&["start", &f]).ok();
    h.wait_for("online", T, |l| l.len() == 1 && l[0]["status"] == "online");
    // The file changed: restart takes its settings, no --update-env needed.
    write("green", 2500);
    h.run(&["restart", &f]).ok();
    let s = show(&h);
    assert_eq!(s["env"]["COLOR"], "green", "{s}");
    assert_eq!(s["kill_timeout_ms"], 2500, "{s}");
    h.run(&["reload", &f, "--env", "production"]).ok();
    assert_eq!(show(&h)["env"]["COLOR"], "prod");
    assert_eq!(h.list().len(), 1, "never a second copy");
}

#[test]
fn jlist_keeps_the_json_types_the_file_gave_env_values() {
    let h = TestHome::new();
    let a = script(&h.root, "typed.sh", "while true; do sleep 0.05; done\n");
    let file = h.root.join("ecosystem.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"apps":[{{"name":"typed","script":"{a}","interpreter":"none","instances":2,
                "env":{{"PORT":3000,"DEBUG":false,"RATIO":1.5,"NAME":"x","QUOTED":"42"}}}}]}}"#
        ),
    )
    .unwrap();
    h.run(&["start", &file.to_string_lossy(), "--env", "OVER=1"])
        .ok();
    h.wait_for("online", T, |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "online")
    });
    let j = h.run(&["jlist"]).ok().json();
    let env = &j[1]["pm2_env"]["env"];
    assert_eq!(env["PORT"], serde_json::json!(3000), "{env}");
    assert_eq!(env["DEBUG"], serde_json::json!(false), "{env}");
    assert_eq!(env["RATIO"], serde_json::json!(1.5), "{env}");
    assert_eq!(env["NAME"], "x");
    assert_eq!(env["QUOTED"], "42", "a string in the file stays one");
    assert_eq!(env["OVER"], "1", "typed on the command line: a string");
    assert_eq!(env["NODE_APP_INSTANCE"], serde_json::json!(1));
    assert_eq!(j[1]["pm2_env"]["NODE_APP_INSTANCE"], serde_json::json!(1));
    // The process sees text, as always.
    let e = h.run(&["env", "0"]).ok().stdout;
    assert!(e.lines().any(|l| l == "PORT: 3000"), "{e}");
}

#[test]
fn import_pm2_takes_over_the_apps_of_a_pm2_dump() {
    let h = TestHome::new();
    let dir = h.root.join("apps");
    std::fs::create_dir_all(&dir).unwrap();
    script(&dir, "api.sh", "while true; do sleep 0.05; done\n");
    script(&dir, "worker.sh", "while true; do sleep 0.05; done\n");
    // A dump as PM2 7's `pm2 save` writes it (one `pm2_env` per process),
    // with this test's paths.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pm2/dump.pm2");
    let dump = std::fs::read_to_string(fixture)
        .unwrap()
        .replace("@DIR@", &dir.display().to_string());
    let path = h.root.join("dump.pm2");
    std::fs::write(&path, dump).unwrap();
    let p = path.to_string_lossy().into_owned();
    let dry = h.run(&["import-pm2", &p, "--dry-run"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(doc["apps"].as_array().unwrap().len(), 2, "{doc}");
    assert!(
        dry.stderr
            .contains("`pm2-logrotate`: a PM2 module: skipped"),
        "{}",
        dry.stderr
    );
    assert!(
        dry.stderr.contains("not mapped: source_map_support"),
        "{}",
        dry.stderr
    );
    assert!(h.daemon_pid().is_none(), "a dry run starts nothing");

    let r = h.run(&["import-pm2", &p]).ok();
    assert!(
        r.stderr.contains("`worker` was stopped in PM2"),
        "{}",
        r.stderr
    );
    let l = h.wait_for("three online", T, |l| {
        l.len() == 3 && l.iter().all(|i| i["status"] == "online")
    });
    let api: Vec<_> = l.iter().filter(|i| i["name"] == "api").collect();
    assert_eq!(api.len(), 2, "{l:?}");
    assert!(api.iter().all(|i| i["exec_mode"] == "cluster"));
    assert_eq!(api[0]["kill_timeout_ms"], 3000);
    assert_eq!(api[0]["max_memory_restart"], 314_572_800);
    assert_eq!(api[0]["env"]["API_COLOR"], "teal");
    assert!(
        api[0]["env"].get("PATH").is_none(),
        "PM2's environment is not the app's"
    );
    assert!(api[0]["env"].get("pm_id").is_none());
    let worker = l.iter().find(|i| i["name"] == "worker").unwrap();
    assert_eq!(worker["args"], serde_json::json!(["--queue", "default"]));
    assert_eq!(worker["exec_mode"], "fork");
    // Again: nothing is duplicated.
    h.run(&["import-pm2", &p]).ok();
    assert_eq!(h.list().len(), 3);
    let empty = h.root.join("no-pm2");
    std::fs::create_dir_all(&empty).unwrap();
    TestHome::new()
        .with_env("PM2_HOME", &empty.to_string_lossy())
        .with_env("PM2_BIN", "/bin/true")
        .run(&["import-pm2", "--from-running"])
        .fails_with("no running PM2");
    h.run(&["import-pm2", &h.root.join("nope").to_string_lossy()])
        .fails_with("cannot read");
}

#[test]
fn scale_down_removes_the_lowest_ids_unless_the_app_keeps_its_indexes() {
    let h = TestHome::new();
    let a = script(&h.root, "idx.sh", "while true; do sleep 0.05; done\n");
    // (id, instance) pairs of app `name`, in id order.
    let pairs = |h: &TestHome, name: &str| -> Vec<(u64, u64)> {
        h.list()
            .iter()
            .filter(|i| i["name"] == name)
            .map(|i| (i["id"].as_u64().unwrap(), i["instance"].as_u64().unwrap()))
            .collect()
    };
    let online = |h: &TestHome, n: usize| {
        h.wait_for("online", T, |l| {
            l.len() == n && l.iter().all(|i| i["status"] == "online")
        });
    };
    h.run(&["start", &a, "--name", "pm2", "-i", "3"]).ok();
    online(&h, 3);
    h.run(&["scale", "pm2", "1"]).ok();
    assert_eq!(pairs(&h, "pm2"), vec![(2, 2)], "PM2: lowest ids first");
    // Added instances take the lowest free NODE_APP_INSTANCE, as PM2's.
    h.run(&["scale", "pm2", "3"]).ok();
    online(&h, 3);
    assert_eq!(pairs(&h, "pm2"), vec![(2, 2), (3, 0), (4, 1)]);
    let j = h.run(&["jlist"]).ok().json();
    assert_eq!(j[1]["pm2_env"]["NODE_APP_INSTANCE"], serde_json::json!(0));
    h.run(&["delete", "pm2"]).ok();

    h.run(&["start", &a, "--name", "kept", "-i", "3", "--keep-indexes"])
        .ok();
    online(&h, 3);
    h.run(&["scale", "kept", "1"]).ok();
    assert_eq!(
        pairs(&h, "kept"),
        vec![(5, 0)],
        "keep_indexes: the highest go"
    );
    // The same from an ecosystem file's key.
    let file = h.root.join("eco.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"apps":[{{"name":"eco","script":"{a}","instances":2,"keep_indexes":true}}]}}"#
        ),
    )
    .unwrap();
    h.run(&["start", &file.to_string_lossy()]).ok();
    online(&h, 3);
    h.run(&["scale", "eco", "1"]).ok();
    assert_eq!(pairs(&h, "eco"), vec![(8, 0)]);
}

#[test]
fn smart_start_of_a_name_merges_the_options_given() {
    let h = TestHome::new();
    let a = script(&h.root, "smart.sh", "while true; do sleep 0.05; done\n");
    h.run(&["start", &a, "--name", "smart"]).ok();
    let l = h.wait_for("online", T, |l| l.len() == 1 && l[0]["status"] == "online");
    let show = |h: &TestHome| h.run(&["show", "smart", "--json"]).ok().json()[0].clone();
    h.run(&[
        "start",
        "smart",
        "--node-args=--norc",
        "--max-memory-restart",
        "300M",
        "--env",
        "COLOR=red",
        "--watch",
    ])
    .ok();
    let s = show(&h);
    assert_ne!(s["pid"], l[0]["pid"], "restarted: {s}");
    assert_eq!(s["interpreter_args"], serde_json::json!(["--norc"]), "{s}");
    assert_eq!(s["max_memory_restart"], 300 * 1024 * 1024, "{s}");
    assert_eq!(s["env"]["COLOR"], "red", "{s}");
    assert_eq!(s["watching"], true, "--watch toggled it on: {s}");
    h.run(&["start", "0", "--watch", "--node-args=null"]).ok();
    let s = show(&h);
    assert!(s["watching"].is_null() || s["watching"] == false, "{s}");
    assert_eq!(s["interpreter_args"], serde_json::json!([]), "{s}");
    h.run(&["start", "smart", "--env", "production"])
        .fails_with("--env");
}

//! `herd run`: herd in the foreground (containers, systemd), and the
//! `--health` endpoints.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const T: Duration = Duration::from_secs(20);

/// A `herd run` child whose output goes to files in the home; killed and
/// waited for on drop whatever the test did.
struct Foreground {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Foreground {
    fn start(h: &TestHome, args: &[&str], env: &[(&str, &str)]) -> Foreground {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = h.root.join(format!("run-{n}.out"));
        let err = h.root.join(format!("run-{n}.err"));
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        let mut c = h.cmd(&all);
        c.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut f = Foreground {
            child: c.spawn().expect("spawn herd run"),
            out,
            err,
        };
        // Until it serves, a `herd list` would start a background daemon
        // that takes the home from it.
        wait_serving(h, || f.child.try_wait().ok().flatten().is_some());
        f
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Its exit code, waiting at most `limit` (panics with its output).
    #[track_caller]
    fn exit_code(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                panic!(
                    "herd run still runs after {limit:?}\nstdout: {}\nstderr: {}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until its stdout or stderr holds `needle`.
    #[track_caller]
    fn wait_output(&self, needle: &str) {
        let deadline = Instant::now() + T;
        while !(self.stdout().contains(needle) || self.stderr().contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} from herd run\nstdout: {}\nstderr: {}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits until the home's control socket exists, or `gone()` (bounded).
fn wait_serving(h: &TestHome, mut gone: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !h.sock().exists() && !gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A bash app that says hello on stdout and stderr, and on SIGINT/SIGTERM
/// writes `bye-<instance>` into `dir` and exits 0.
fn polite_app(dir: &Path) -> String {
    let path = dir.join("polite.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/bash\n\
             trap 'touch {}/bye-$NODE_APP_INSTANCE; exit 0' INT TERM\n\
             echo \"hello from $NODE_APP_INSTANCE\"\n\
             echo \"complaint from $NODE_APP_INSTANCE\" >&2\n\
             while true; do sleep 0.05; done\n",
            dir.display()
        ),
    )
    .unwrap();
    chmod_x(&path);
    path.to_string_lossy().into_owned()
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn online(h: &TestHome, n: usize) -> Vec<serde_json::Value> {
    h.wait_for(&format!("{n} instances online"), T, |l| {
        l.len() == n && l.iter().all(|i| i["status"] == "online")
    })
}

#[test]
fn sigterm_stops_every_app_gracefully_and_exits_0_leaving_no_process() {
    let h = TestHome::new();
    let app = polite_app(&h.root);
    let mut run = Foreground::start(&h, &[&app, "-i", "2", "--name", "polite"], &[]);
    let list = online(&h, 2);
    let workers = pids(&list);
    run.wait_output("0|polite | hello from 0");
    run.wait_output("1|polite | complaint from 1");
    // Other herd commands work against it.
    let show = h.run(&["show", "polite"]).ok().stdout;
    assert!(show.contains("polite"), "{show}");
    signal(run.pid() as i64, "-TERM");
    assert_eq!(run.exit_code(T), 0, "stderr: {}", run.stderr());
    for i in 0..2 {
        assert!(
            h.root.join(format!("bye-{i}")).exists(),
            "instance {i} was not stopped gracefully"
        );
    }
    for p in workers {
        assert!(!alive(p as i32), "worker {p} outlived herd run");
    }
    assert!(!h.sock().exists(), "the control socket is left behind");
    // stdout lines went to stdout, stderr lines to stderr.
    assert!(run.stdout().contains("0|polite | hello from 0"));
    assert!(!run.stdout().contains("complaint"));
    assert!(run.stderr().contains("0|polite | complaint from 0"));
}

#[test]
fn an_app_that_cannot_start_makes_herd_run_exit_non_zero() {
    let h = TestHome::new();
    // No such script: refused before anything runs.
    let missing = h.root.join("nope.sh");
    let mut run = Foreground::start(&h, &[&missing.to_string_lossy()], &[]);
    assert_eq!(run.exit_code(T), 1);
    assert!(run.stderr().starts_with("error: "), "{}", run.stderr());
    assert!(run.stderr().contains("nope.sh"), "{}", run.stderr());
    assert!(h.daemon_pid().is_none(), "no daemon was started");
    // A script that dies at once: errored past max_restarts, then exit 1.
    let crash = h.root.join("crash.sh");
    std::fs::write(&crash, "#!/bin/bash\necho dying\nexit 3\n").unwrap();
    chmod_x(&crash);
    let mut run = Foreground::start(
        &h,
        &[
            &crash.to_string_lossy(),
            "--max-restarts",
            "2",
            "--min-uptime",
            "5s",
        ],
        &[],
    );
    assert_eq!(run.exit_code(Duration::from_secs(60)), 1);
    assert!(
        run.stderr().contains("crashed past max_restarts"),
        "{}",
        run.stderr()
    );
    assert!(run.stdout().contains("0|crash | dying"), "{}", run.stdout());
}

#[test]
fn a_bad_health_address_is_refused_before_anything_starts() {
    let h = TestHome::new();
    let app = polite_app(&h.root);
    h.run(&["run", &app, "--health", "0.0.0.0:9"])
        .fails_with("--health-public");
    h.run(&["run", &app, "--health", "here"])
        .fails_with("`here`");
    h.run(&["run"]).fails_with("<SCRIPT>");
    assert!(h.daemon_pid().is_none());
}

#[test]
fn herd_run_refuses_a_home_whose_daemon_already_runs() {
    let h = TestHome::new();
    h.run(&["ping"]).ok();
    let app = polite_app(&h.root);
    h.run(&["run", &app]).fails_with("already runs");
    assert!(h.list().is_empty(), "nothing was started");
}

#[test]
fn an_orphaned_grandchild_is_reaped() {
    let h = TestHome::new();
    // The app starts a grandchild through a shell that exits at once: the
    // grandchild is orphaned, comes to herd (subreaper), and exits later.
    let pidfile = h.root.join("grandchild.pid");
    let app = h.root.join("forker.sh");
    std::fs::write(
        &app,
        format!(
            "#!/bin/bash\n\
             bash -c 'sleep 1 & echo $! > {}'\n\
             while true; do sleep 0.05; done\n",
            pidfile.display()
        ),
    )
    .unwrap();
    chmod_x(&app);
    let run = Foreground::start(&h, &[&app.to_string_lossy()], &[]);
    online(&h, 1);
    let deadline = Instant::now() + T;
    let gc: i32 = loop {
        if let Some(p) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no grandchild pid");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Once the shell between them has exited, its parent is herd (the
    // shell writes the pid file before it exits: poll).
    let ppid = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(1)?.parse::<i32>().ok()
    };
    let deadline = Instant::now() + Duration::from_millis(900);
    loop {
        let p = ppid(gc);
        if p == Some(run.pid()) {
            break;
        }
        assert!(
            Instant::now() < deadline && p.is_some(),
            "the orphan was not reparented to herd run ({}): parent {p:?}",
            run.pid()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Once it exits it is reaped: gone from /proc, not a zombie.
    let deadline = Instant::now() + T;
    while Path::new(&format!("/proc/{gc}")).exists() {
        assert!(
            Instant::now() < deadline,
            "grandchild {gc} left unreaped: {}",
            std::fs::read_to_string(format!("/proc/{gc}/stat")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn herd_run_exits_0_once_every_app_has_exited_by_itself() {
    let h = TestHome::new();
    let job = h.root.join("job.sh");
    std::fs::write(&job, "#!/bin/bash\necho done\nexit 0\n").unwrap();
    chmod_x(&job);
    let mut run = Foreground::start(&h, &[&job.to_string_lossy(), "--no-autorestart"], &[]);
    assert_eq!(run.exit_code(T), 0, "{}", run.stderr());
    assert!(run.stdout().contains("0|job | done"), "{}", run.stdout());
    assert!(
        run.stderr().contains("every app has stopped"),
        "{}",
        run.stderr()
    );
}

#[test]
fn json_console_lines_are_one_record_each() {
    let h = TestHome::new();
    let app = polite_app(&h.root);
    let run = Foreground::start(&h, &[&app, "--json", "--name", "j"], &[]);
    run.wait_output("complaint from 0");
    run.wait_output("hello from 0");
    let recs: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let hello = recs
        .iter()
        .find(|r| r["message"] == "hello from 0")
        .unwrap();
    assert_eq!(hello["app_name"], "j");
    assert_eq!(hello["type"], "out");
    assert!(recs.iter().any(|r| r["type"] == "err"), "{recs:?}");
}

/// One GET to the health endpoint: (status code, JSON body).
fn probe(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n")?.1;
    Some((code, serde_json::from_str(body).ok()?))
}

#[track_caller]
fn wait_probe(port: u16, path: &str, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + T;
    loop {
        let got = probe(port, path);
        if let Some((code, body)) = &got {
            if *code == want {
                return body.clone();
            }
        }
        assert!(Instant::now() < deadline, "{path} never {want}: {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn readyz_flips_to_200_when_apps_are_online_and_to_503_when_one_is_down() {
    let h = TestHome::new();
    let app = polite_app(&h.root);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _run = Foreground::start(&h, &[&app, "--name", "a", "--health", &addr], &[]);
    let ok = wait_probe(port, "/readyz", 200);
    assert_eq!(ok["status"], "ready");
    let live = wait_probe(port, "/healthz", 200);
    assert_eq!(live["status"], "ok");
    assert_eq!(probe(port, "/nope").unwrap().0, 404);
    // A second app, added with `herd start` against herd run's socket; one
    // of its instances killed, and restarted only after a delay.
    h.run(&[
        "start",
        &app,
        "--name",
        "b",
        "-i",
        "2",
        "--restart-delay",
        "1500",
    ])
    .ok();
    online(&h, 3);
    wait_probe(port, "/readyz", 200);
    let b0 = h.list().iter().find(|i| i["name"] == "b").unwrap()["pid"]
        .as_i64()
        .unwrap();
    signal(b0, "-KILL");
    let down = wait_probe(port, "/readyz", 503);
    assert_eq!(down["status"], "not ready");
    let reason = down["reason"].as_str().unwrap();
    assert!(reason.starts_with("b: 1 of 2 instances ready"), "{reason}");
    // Liveness does not follow readiness.
    assert_eq!(probe(port, "/healthz").unwrap().0, 200);
    wait_probe(port, "/readyz", 200);
}

#[test]
fn the_background_daemon_serves_health_from_herd_health() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let h = TestHome::new().with_env("HERD_HEALTH", &addr);
    let (code, body) = {
        h.run(&["ping"]).ok();
        wait_probe(port, "/healthz", 200);
        probe(port, "/readyz").unwrap()
    };
    assert_eq!(code, 503);
    assert_eq!(body["reason"], "no apps");
}

/// The datagrams a fake systemd receives on its notify socket, until one
/// has `line` (bounded).
fn recv_until(rx: &std::os::unix::net::UnixDatagram, line: &str, run: &Foreground) -> String {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + T;
    loop {
        assert!(
            Instant::now() < deadline,
            "no {line} from herd; its stderr: {}",
            run.stderr()
        );
        if let Ok(n) = rx.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == line) {
                return msg;
            }
        }
    }
}

#[test]
fn systemd_hears_ready_once_the_apps_are_online_and_stopping_on_sigterm() {
    let h = TestHome::new();
    let sock = h.root.join("systemd-notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let app = polite_app(&h.root);
    let sock_s = sock.to_string_lossy().into_owned();
    let mut run = Foreground::start(
        &h,
        &[&app, "-i", "2", "--name", "svc"],
        &[("NOTIFY_SOCKET", &sock_s)],
    );
    let ready = recv_until(&rx, "READY=1", &run);
    assert!(
        ready.contains("STATUS=1 app(s), 2 instance(s) online"),
        "{ready}"
    );
    // READY=1 came once both were online.
    assert_eq!(
        h.list().iter().filter(|i| i["status"] == "online").count(),
        2
    );
    signal(run.pid() as i64, "-TERM");
    recv_until(&rx, "STOPPING=1", &run);
    assert_eq!(run.exit_code(T), 0);
}

#[test]
fn herd_run_starts_an_ecosystem_file_with_its_environment() {
    if !node_available() {
        return;
    }
    let h = TestHome::new();
    let app = h.root.join("env.sh");
    std::fs::write(
        &app,
        "#!/bin/bash\necho \"NODE_ENV=$NODE_ENV\"\nwhile true; do sleep 0.05; done\n",
    )
    .unwrap();
    chmod_x(&app);
    let eco = h.root.join("ecosystem.config.js");
    std::fs::write(
        &eco,
        format!(
            "module.exports = {{\n  apps : [{{\n    name: 'api-server',\n    script: '{}',\n    interpreter: 'none',\n    env: {{ NODE_ENV: 'development' }},\n    env_production: {{ NODE_ENV: 'production' }}\n  }}]\n}};\n",
            app.display()
        ),
    )
    .unwrap();
    let mut run = Foreground::start(&h, &[&eco.to_string_lossy(), "--env", "production"], &[]);
    run.wait_output("0|api-server | NODE_ENV=production");
    // Resurrect: a saved list comes back under `herd run --resurrect`.
    h.run(&["save"]).ok();
    signal(run.pid() as i64, "-TERM");
    assert_eq!(run.exit_code(T), 0);
    let again = Foreground::start(&h, &["--resurrect"], &[]);
    again.wait_output("0|api-server | NODE_ENV=production");
    let l = online(&h, 1);
    assert_eq!(l[0]["name"], "api-server");
}

#[test]
fn herd_run_serves_an_fdpass_app_with_script_args_and_is_ready_once_in_rotation() {
    let h = TestHome::new();
    let port = free_port();
    let health = free_port();
    let (p, hp) = (port.to_string(), format!("127.0.0.1:{health}"));
    let args = [
        HERD,
        "--interpreter",
        "none",
        "--name",
        "hello",
        "-i",
        "2",
        "--port",
        &p,
        "--host",
        "127.0.0.1",
        "--health",
        &hp,
        "--",
        "hello",
    ];
    let mut run = Foreground::start(&h, &args, &[]);
    let ready = wait_probe(health, "/readyz", 200);
    assert_eq!(ready["apps"][0]["ready"], 2, "{ready}");
    let l = h.list();
    assert!(
        l.iter()
            .all(|i| i["in_rotation"] == true && i["distribution"] == "fdpass"),
        "ready {ready} but {:?}\n{}",
        l,
        run.stderr()
    );
    wait_http(port, T);
    assert_eq!(distinct_responders(port, 20, Some("x-worker")).len(), 2);
    signal(run.pid() as i64, "-INT");
    assert_eq!(run.exit_code(T), 0, "{}", run.stderr());
}

#[test]
fn the_deploy_units_pass_systemd_analyze() {
    let ok = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        herd::testing::skip("systemd-analyze", "systemd-analyze is not installed");
        return;
    }
    let h = TestHome::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    // The examples name /usr/local/bin/herd and a user `app`: point them
    // at this build and at root for the check.
    let mut files = Vec::new();
    for name in ["herd.service", "herd.socket"] {
        let text = std::fs::read_to_string(root.join(name))
            .unwrap()
            .replace("/usr/local/bin/herd", HERD)
            .replace("User=app", "User=root");
        let f = h.root.join(name);
        std::fs::write(&f, text).unwrap();
        files.push(f);
    }
    let v = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("herd.s"), "warnings: {said}");
}

#[test]
fn the_pm2_deploy_flow_runs_unchanged_as_a_script() {
    let h = TestHome::new();
    let dir = h.root.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("app.sh");
    std::fs::write(
        &app,
        "#!/bin/bash\necho \"NODE_ENV=$NODE_ENV\"\nwhile true; do sleep 0.05; done\n",
    )
    .unwrap();
    chmod_x(&app);
    // JSON, so that the script needs no node: the same keys as the .js.
    std::fs::write(
        dir.join("ecosystem.config.json"),
        r#"{"apps":[{"name":"api-server","script":"./app.sh","interpreter":"none","env":{"NODE_ENV":"development"},"env_production":{"NODE_ENV":"production"}}]}"#,
    )
    .unwrap();
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/deploy-flow.sh"),
    )
    .unwrap()
    .replace("ecosystem.config.js", "ecosystem.config.json");
    let flow = dir.join("deploy-flow.sh");
    std::fs::write(&flow, script).unwrap();
    let herd_dir = Path::new(HERD).parent().unwrap().display().to_string();
    let path = format!("{herd_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let run = |what: &str| {
        let out = std::process::Command::new("bash")
            .arg(&flow)
            .current_dir(&dir)
            .env("HERD_HOME", &h.root)
            .env("PATH", &path)
            .output()
            .unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{what}: {o}{e}");
        assert!(
            o.contains("api-server") && o.contains("online"),
            "{what}: {o}"
        );
    };
    // First deploy: `stop` finds nothing (an error, as in PM2), the rest runs.
    run("first deploy");
    let first = h.list();
    assert_eq!(first.len(), 1);
    // Second deploy: stopped, started again with the production env.
    run("second deploy");
    let l = h.list();
    assert_eq!(l.len(), 1, "no duplicate");
    assert_eq!(l[0]["status"], "online");
    assert_ne!(l[0]["pid"], first[0]["pid"], "restarted");
    let show = h.run(&["show", "api-server"]).ok().stdout;
    assert!(show.contains("production"), "{show}");
}

/// `-i max` in a container follows its CPU limit: herd run inside a cgroup
/// whose quota is one CPU starts one instance on this 2-CPU machine.
#[test]
fn instances_max_follows_the_cgroup_cpu_quota() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        herd::testing::skip("cpus", "one CPU: a quota of one cannot be told apart");
        return;
    }
    // cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us), whichever is mounted
    // and writable here.
    let me = std::process::id();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let dir = if v2 {
        PathBuf::from(format!("/sys/fs/cgroup/herd-it-{me}"))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/cpu/herd-it-{me}"))
    };
    let made = std::fs::create_dir(&dir).and_then(|()| {
        if v2 {
            std::fs::write(dir.join("cpu.max"), "100000 100000")
        } else {
            std::fs::write(dir.join("cpu.cfs_period_us"), "100000")
                .and_then(|()| std::fs::write(dir.join("cpu.cfs_quota_us"), "100000"))
        }
    });
    if let Err(e) = made {
        let _ = std::fs::remove_dir(&dir);
        herd::testing::skip("cgroup", &format!("cannot make a CPU-limited cgroup ({e})"));
        return;
    }
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let h = TestHome::new();
    let app = polite_app(&h.root);
    let procs = dir.join("cgroup.procs");
    let sh = format!(
        "echo $$ > {} && exec {HERD} run {app} -i max --name quota",
        procs.display()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &sh])
        .env("HERD_HOME", &h.root)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(h.root.join("quota.err")).unwrap())
        .spawn()
        .unwrap();
    wait_serving(&h, || child.try_wait().ok().flatten().is_some());
    let deadline = Instant::now() + T;
    let l = loop {
        let l = h.list();
        if !l.is_empty() && l.iter().all(|i| i["status"] == "online") {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no instance online: {}",
            std::fs::read_to_string(h.root.join("quota.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let n = h.list().len();
    signal(child.id() as i64, "-TERM");
    let _ = child.wait();
    assert_eq!(n, 1, "-i max under a one-CPU quota started {n}: {l:?}");
}

/// `herd run` as a real PID 1 (a new PID namespace, as in a container):
/// it reaps an orphaned grandchild and stops gracefully on SIGTERM with
/// exit 0. Needs `unshare` and the right to make namespaces (root here).
#[test]
fn herd_run_as_pid_1_reaps_orphans_and_stops_on_sigterm() {
    let ok = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        herd::testing::skip("unshare", "cannot make a PID namespace here");
        return;
    }
    let h = TestHome::new();
    let pidfile = h.root.join("gc.pid");
    let app = h.root.join("pid1.sh");
    std::fs::write(
        &app,
        format!(
            "#!/bin/bash\nbash -c 'sleep 0.3 & echo $! > {}'\nwhile true; do sleep 0.05; done\n",
            pidfile.display()
        ),
    )
    .unwrap();
    chmod_x(&app);
    let err = h.root.join("pid1.err");
    // --kill-child: if the test fails and kills unshare, herd (and with it
    // the whole namespace) goes too.
    struct Ns(std::process::Child);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut ns = Ns(std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            HERD,
            "run",
        ])
        .arg(&app)
        .env("HERD_HOME", &h.root)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap());
    let child = &mut ns.0;
    let said = || std::fs::read_to_string(&err).unwrap_or_default();
    let deadline = Instant::now() + T;
    while !said().contains("reaped 1 orphaned process") {
        // Its pid file says 1, its pid in the namespace: the home's
        // clean-up must never act on that.
        let _ = std::fs::remove_file(h.root.join("herd.pid"));
        assert!(Instant::now() < deadline, "no orphan reaped: {}", said());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(h.root.join("herd.pid"));
    let banner = format!("herd daemon {} pid 1 ", env!("CARGO_PKG_VERSION"));
    assert!(said().contains(&banner), "{}", said());
    // herd is unshare's only child; SIGTERM it as a container runtime would.
    let me = child.id();
    let kids = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap();
    let herd: i64 = kids.split_whitespace().next().unwrap().parse().unwrap();
    signal(herd, "-TERM");
    let deadline = Instant::now() + T;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            Instant::now() < deadline,
            "herd as PID 1 did not stop: {}",
            said()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(code, Some(0), "{}", said());
    assert!(said().contains("herd daemon 1 exits"), "{}", said());
}

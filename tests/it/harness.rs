//! `TestHome`: a temporary HERD_HOME with helpers to run the CLI against it,
//! poll for conditions, and tear everything down (daemon and workers) on
//! drop, even when the test panics. Kills only PIDs it can attribute to its
//! own home.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Tests that measure fairness or timing run alone: they take this gate
/// exclusively, every other test shares it. (Least-connections dispatch
/// rightly favours a worker that gets more CPU, so a fairness figure taken
/// while other tests load the same two cores measures the neighbours.)
static GATE: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    /// Whether this test thread already holds the gate (a test with two
    /// homes must not queue for it twice behind a waiting exclusive test).
    static HOLDS_GATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

enum Gate {
    None,
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

/// A private herd home for one test.
pub struct TestHome {
    pub root: PathBuf,
    env: Vec<(String, String)>,
    gate: Gate,
}

/// What a CLI call printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics unless the call succeeded.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "herd failed: stdout={} stderr={}",
            self.stdout, self.stderr
        );
        self
    }
    /// Panics unless the call failed with a one-line `error:` naming `needle`.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Run {
        assert_ne!(
            self.code, 0,
            "expected failure, got success: {}",
            self.stdout
        );
        let first = self.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error: "),
            "stderr does not start with `error: `: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
        self
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl TestHome {
    pub fn new() -> TestHome {
        let gate = if HOLDS_GATE.get() {
            Gate::None
        } else {
            HOLDS_GATE.set(true);
            Gate::Shared(GATE.read().unwrap_or_else(|p| p.into_inner()))
        };
        TestHome::with_gate(gate)
    }

    /// A home for a test that must not share the machine with other tests.
    pub fn exclusive() -> TestHome {
        assert!(!HOLDS_GATE.get(), "take the exclusive home first");
        HOLDS_GATE.set(true);
        TestHome::with_gate(Gate::Exclusive(
            GATE.write().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    fn with_gate(gate: Gate) -> TestHome {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("herd-it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        TestHome {
            root,
            env: Vec::new(),
            gate,
        }
    }

    /// Sets an environment variable for every CLI call (and so for the
    /// daemon the first call starts).
    pub fn with_env(mut self, k: &str, v: &str) -> TestHome {
        self.env.push((k.into(), v.into()));
        self
    }

    /// A `herd` command bound to this home.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HERD);
        c.args(args)
            .env("HERD_HOME", &self.root)
            .env_remove("PORT")
            .env_remove("HERD_IO");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        output(self.cmd(args).output().expect("run herd"))
    }

    /// `herd list --json`.
    pub fn list(&self) -> Vec<Value> {
        self.run(&["list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until `cond(list)` holds (bounded; panics with the last list).
    #[track_caller]
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.list();
            if cond(&l) {
                return l;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; list: {l:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root.join("herd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn sock(&self) -> PathBuf {
        self.root.join("herd.sock")
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        // Workers first (their pids come from the list), then the daemon.
        let mut pids: Vec<i32> = Vec::new();
        if self.daemon_pid().is_some_and(alive) {
            if let Ok(out) = self.cmd(&["list", "--json"]).output() {
                if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&out.stdout) {
                    pids.extend(
                        items
                            .iter()
                            .filter_map(|i| i["pid"].as_i64())
                            .map(|p| p as i32),
                    );
                }
            }
            let _ = self.cmd(&["kill"]).output();
        }
        if let Some(d) = self.daemon_pid() {
            pids.push(d);
        }
        for p in pids {
            if alive(p) {
                // SAFETY-free: signalling our own test's processes by pid.
                let _ = Command::new("kill").args(["-9", &p.to_string()]).output();
            }
        }
        if std::thread::panicking() {
            // A failed test: what the daemon saw goes with the failure.
            if let Ok(log) = std::fs::read_to_string(self.root.join("herd.log")) {
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("--- last lines of the daemon's log ---");
                for l in &lines[lines.len().saturating_sub(60)..] {
                    eprintln!("{l}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        if !matches!(self.gate, Gate::None) {
            HOLDS_GATE.set(false);
        }
    }
}

fn output(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z"),
        Err(_) => false,
    }
}

/// An ephemeral port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP response, headers lowercased.
pub type Resp = (String, Vec<(String, String)>, String);

/// One GET with `Connection: close`; returns (status line, headers, body).
/// Bounded by a timeout.
pub fn http_get(port: u16) -> std::io::Result<Resp> {
    http_get_path(port, "/")
}

/// [`http_get`] of `path`.
pub fn http_get_path(port: u16, path: &str) -> std::io::Result<Resp> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    // One write, one segment: `write!` on the socket would send the
    // request in pieces, and a worker that has read a piece has started on
    // it (the chaos tests count exactly that).
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("bad response {text:?}")))?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body.to_string()))
}

/// Sends `n` requests; returns the distinct values of `header` seen (or of
/// the body when `header` is None). Every request must succeed.
pub fn distinct_responders(
    port: u16,
    n: usize,
    header: Option<&str>,
) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..n {
        let (status, headers, body) =
            http_get(port).unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert!(status.contains(" 200 "), "request {i}: {status}");
        let v = match header {
            Some(h) => headers
                .iter()
                .find(|(k, _)| k == h)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            None => body,
        };
        seen.insert(v);
    }
    seen
}

/// Waits until `port` answers HTTP 200.
#[track_caller]
pub fn wait_http(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((s, _, _)) = http_get(port) {
            if s.contains(" 200 ") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "port {port} never answered 200");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Path of a file in bench-apps/.
pub fn app(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench-apps")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// Pids of all instances in a list.
pub fn pids(list: &[Value]) -> Vec<i64> {
    list.iter().filter_map(|i| i["pid"].as_i64()).collect()
}

/// Whether `node` runs here; prints a loud SKIP line when it does not.
pub fn node_available() -> bool {
    let ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        herd::testing::skip("node", "node is not installed; this Node test cannot run");
    }
    ok
}

/// A bounded load from herd's own generator against 127.0.0.1:`port`:
/// `n` requests over `connections` (30 s at most). Panics on I/O setup
/// errors; request failures are in the result's `errors`.
pub fn load(
    port: u16,
    mode: herd::bench::load::LoadMode,
    connections: usize,
    threads: usize,
    n: u64,
) -> herd::bench::load::LoadResult {
    herd::bench::load::run(&herd::bench::load::LoadSpec {
        addr: ([127, 0, 0, 1], port).into(),
        connections,
        duration: Duration::from_secs(30),
        mode,
        max_requests: Some(n),
        threads,
        rate: None,
    })
    .unwrap()
}

/// `herd start <script> --port <port> --host 127.0.0.1 <extra…>`, which must
/// succeed.
pub fn start_on(h: &TestHome, script: &str, port: u16, extra: &[&str]) {
    let p = port.to_string();
    let mut args = vec!["start", script, "--port", &p, "--host", "127.0.0.1"];
    args.extend_from_slice(extra);
    h.run(&args).ok();
}

/// Sends `sig` (`-STOP`, `-KILL`, …) to `pid` with kill(1).
pub fn signal(pid: i64, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Freezes `victim` (instance 0 of `h`'s app, serving on `port`), loads the
/// port with 200 connection-per-request requests over 8 connections, waits
/// until the frozen worker holds some, kills it, and checks that every
/// request was answered and none by the victim: what it held and never read
/// went to the other worker.
pub fn kill_a_frozen_worker_under_load(h: &TestHome, port: u16, victim: i64) {
    signal(victim, "-STOP");
    let burst = std::thread::spawn(move || {
        load(port, herd::bench::load::LoadMode::ConnPerRequest, 8, 2, 200)
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while h.list()[0]["in_flight"].as_u64().unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "the frozen worker never got a connection"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(victim, "-KILL");
    let r = burst.join().unwrap();
    assert_eq!(r.errors.total(), 0, "connections lost: {:?}", r.errors);
    assert_eq!(r.requests, 200);
    assert!(
        !r.per_worker.contains_key(&victim.to_string()),
        "the frozen worker served nothing"
    );
}

/// Starts `script` (a lazy app: its first process creates the file
/// `LAZY_MARKER` names and then never touches its connections) as one
/// fdpass instance named `lazy` on `port`, with `extra` flags.
pub fn start_lazy(h: &TestHome, script: &str, port: u16, extra: &[&str]) {
    let marker = format!("LAZY_MARKER={}", h.root.join("lazy-marker").display());
    let mut args = vec![
        "-i", "1", "--mode", "fdpass", "--name", "lazy", "--env", &marker,
    ];
    args.extend_from_slice(extra);
    start_on(h, &app(script), port, &args);
}

/// The lazy worker (#15), killed: the only instance of `h`'s app
/// (serving on `port`) takes `n` connections off its channel and never
/// reads or writes a byte of them; killed with SIGKILL, it dies holding
/// them, and the daemon's copies go to its replacement, which answers
/// every one. `herd list --json` and `herd show` count them as saved,
/// none as lost.
pub fn kill_a_worker_holding_untouched(h: &TestHome, port: u16, n: usize) {
    const T: Duration = Duration::from_secs(20);
    h.wait_for("in rotation", T, |l| {
        l.len() == 1 && l[0]["in_rotation"] == true
    });
    let victim = pids(&h.list())[0];
    let clients: Vec<_> = (0..n)
        .map(|_| std::thread::spawn(move || http_get(port)))
        .collect();
    h.wait_for("all sent to the lazy worker", T, |l| {
        l[0]["in_flight"].as_u64() == Some(n as u64)
    });
    // Taken off the channel (not left there for the daemon to read back).
    std::thread::sleep(Duration::from_millis(300));
    signal(victim, "-KILL");
    for c in clients {
        let (status, _, body) = c.join().unwrap().expect("answered after the kill");
        assert!(status.contains("200"), "{status}");
        assert!(!body.contains(&victim.to_string()), "{body}");
    }
    let l = h.wait_for("the deaths counted", T, |l| {
        l[0]["saved_on_death"].as_u64() == Some(n as u64)
    });
    assert_eq!(l[0]["lost_started"], 0, "{l:#?}");
    assert_eq!(l[0]["cut_after_write"], 0, "{l:#?}");
    let shown = h.run(&["show", "0"]).ok().stdout;
    assert!(
        shown.contains(&format!("{n} saved (received, untouched")),
        "{shown}"
    );
    assert!(
        shown.contains("0 lost (read, not answered), 0 cut after a write"),
        "{shown}"
    );
}

/// A command-line tool from npm for comparisons (Bun, PM2): from the
/// variable `var`, PATH (`bin`), or installed once from npm (`pkg`) under
/// the test build's temp folder. `probe`: arguments that show the tool
/// runs here (`--version` for a native binary); `None` for one that must
/// not be run bare (`pm2 --version` spawns a PM2 daemon in `~/.pm2`): it
/// is then never taken from PATH, and not run. `None` after a loud SKIP
/// (`what`) if no tool can be had.
pub fn npm_tool(
    what: &str,
    var: &str,
    pkg: &str,
    bin: &str,
    probe: Option<&[&str]>,
) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    use std::process::Command;
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let runs = |exe: &std::path::Path, args: &[&str]| {
        Command::new(exe)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if probe.is_some_and(|args| runs(std::path::Path::new(bin), args)) {
        return Some(PathBuf::from(bin));
    }
    let exe = npm_install(
        what,
        pkg,
        &std::path::Path::new("node_modules/.bin").join(bin),
    )?
    .join("node_modules/.bin")
    .join(bin);
    if probe.is_some_and(|args| !runs(&exe, args)) {
        herd::testing::skip(what, &format!("the installed {bin} does not run here"));
        return None;
    }
    Some(exe)
}

/// npm package `pkg` installed once under the test build's temp folder
/// (`what` names the folder and the SKIP); returns the install prefix
/// (its `node_modules` holds `pkg`). `marker`: a path under the prefix
/// that exists once it is installed. `None` after a loud SKIP.
pub fn npm_install(what: &str, pkg: &str, marker: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::process::Command;
    let prefix = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(what);
    if !prefix.join(marker).exists() {
        let out = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(pkg)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let why = String::from_utf8_lossy(&o.stderr).into_owned();
                herd::testing::skip(what, &format!("`npm install {pkg}` failed: {why}"));
                return None;
            }
            Err(e) => {
                herd::testing::skip(what, &format!("npm not available: {e}"));
                return None;
            }
        }
    }
    Some(prefix)
}

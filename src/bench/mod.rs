//! `herd bench`: the main job on its built-in default. Starts the built-in
//! Rust hello worker (`herd hello`) under a private daemon in a temporary
//! `HERD_HOME`, drives a bounded load from the built-in load generator,
//! tallies responses per worker, prints throughput, latency and fairness,
//! and removes everything it started.

mod args;
pub mod check;
mod curve;
pub mod hello;
mod hello_uring;
pub mod load;
mod measure;
pub mod peers;
mod report;
mod scenario;
pub mod svg;
mod sweep;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::accept::pool::Policy;
use crate::accept::{Mode, PlaneConfig};
pub use args::BenchArgs;
pub use report::write_dir as write_report;
pub use report::{render, summarize};

use crate::client::{self, Autostart};
use crate::config::{self, AppSpec, ExecMode, Instances};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::protocol::{InstanceInfo, Request, Response};
use measure::{load, Server};
use scenario::Scenario;

/// Entry point of the hidden `herd hello` worker.
pub fn hello_main() -> Result<()> {
    let io = |e| Error::io("hello worker", e);
    hello::start_leak();
    if let Some(chan) = crate::worker::Channel::from_env().map_err(io)? {
        // `HERD_HELLO_IO=uring`: the io_uring variant, for measuring it
        // against tokio's epoll (it has no artificial delay: a skewed
        // instance keeps tokio).
        return match std::env::var("HERD_HELLO_IO").ok().as_deref() {
            Some("uring") if hello::slow_delay().is_none() => {
                hello_uring::serve_channel(chan).map_err(io)
            }
            None | Some("" | "tokio" | "uring") => hello::serve_channel(chan).map_err(io),
            Some(other) => Err(Error::InvalidArg {
                what: "HERD_HELLO_IO".into(),
                value: other.into(),
                expected: "`tokio` or `uring`".into(),
            }),
        };
    }
    match crate::sys::fd::listen_fds_listener().map_err(io)? {
        Some(listener) => hello::serve(listener).map_err(io),
        None => {
            let port = std::env::var("PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::InvalidArg {
                    what: "PORT".into(),
                    value: std::env::var("PORT").unwrap_or_default(),
                    expected: "a port (or a listener passed as fd 3 with LISTEN_FDS)".into(),
                })?;
            hello::run_on_port(port).map_err(io)
        }
    }
}

/// A private daemon; killed and its home removed on drop, whatever happened.
struct BenchDaemon {
    home: Home,
    child: Child,
}

impl BenchDaemon {
    fn start() -> Result<BenchDaemon> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!("herd-bench-{}-{nanos}", std::process::id()));
        let home = Home::at(root);
        home.ensure()
            .map_err(|e| Error::io("creating the bench HERD_HOME", e))?;
        let log = std::fs::File::create(home.daemon_log())
            .map_err(|e| Error::io("bench daemon log", e))?;
        let exe = std::env::current_exe().map_err(|e| Error::io("locating herd", e))?;
        let child = Command::new(exe)
            .arg("daemon")
            .env("HERD_HOME", home.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Error::io("starting the bench daemon", e))?;
        let mut d = BenchDaemon { home, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if client::connect(&d.home, Autostart::No).is_ok() {
                return Ok(d);
            }
            if Instant::now() > deadline || d.child.try_wait().ok().flatten().is_some() {
                return Err(Error::Protocol("the bench daemon did not start".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn call(&self, req: &Request) -> Result<Response> {
        client::connect(&self.home, Autostart::No)?.request(req)
    }
}

/// A change request to the bench daemon at `home` from a scenario's
/// thread (reload, scale): `Err` with the daemon's or the socket's reason.
fn ask(home: &Home, req: &Request) -> std::result::Result<(), String> {
    match client::connect(home, Autostart::No).and_then(|mut c| c.request(req)) {
        Ok(Response::Error { message, .. }) => Err(message),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = self.call(&Request::Kill);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.home.root());
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("finding a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}

fn cpu_ticks(pid: i32) -> u64 {
    crate::supervisor::procstat::read(pid).map_or(0, |(t, _)| t)
}

/// One thing a bench run loads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// herd in a mode (fdpass with a policy).
    Herd(Mode, Policy),
    /// A server already running (`--target`).
    External,
    /// A peer (`--compare`), found on this machine.
    Peer(peers::Peer),
}

/// What one bench run loads.
struct Plan {
    targets: Vec<Target>,
    /// Peers found, by name: what runs them.
    found: BTreeMap<&'static str, peers::Found>,
    /// Targets asked for and skipped, with why.
    skipped: Vec<(String, String)>,
    scenarios: Vec<Scenario>,
    duration: Duration,
    /// `--sweep`'s p99 bound, µs.
    sweep_us: Option<u64>,
}

fn policies(a: &BenchArgs) -> Result<Vec<Policy>> {
    a.policy
        .split(',')
        .map(|p| {
            Policy::parse(p.trim()).ok_or_else(|| Error::InvalidArg {
                what: "--policy".into(),
                value: p.into(),
                expected: "`least-conn`, `round-robin`, `p2c` or `least-time` (comma-separated for several)".into(),
            })
        })
        .collect()
}

/// Is the app a Node script (so PM2 and Node's cluster can run it)?
fn node_app(a: &BenchArgs) -> bool {
    a.app
        .as_deref()
        .is_some_and(|p| config::interpreter_for(Path::new(p)) == Some("node"))
}

/// `--compare`'s targets, in the order they run.
fn compare_targets(a: &BenchArgs, list: &str, policies: &[Policy], plan: &mut Plan) -> Result<()> {
    const ALL: &str = "fdpass,reuseport,shared,pm2,node-cluster,node,nginx";
    let list = if list.trim() == "all" { ALL } else { list };
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if let Some(mode) = Mode::parse(name) {
            match mode {
                Mode::Fdpass => plan
                    .targets
                    .extend(policies.iter().map(|&p| Target::Herd(mode, p))),
                _ => plan.targets.push(Target::Herd(mode, policies[0])),
            }
            continue;
        }
        let peer = peers::Peer::parse(name).ok_or_else(|| Error::InvalidArg {
            what: "--compare".into(),
            value: name.into(),
            expected: format!("a comma list of {ALL}, or `all`"),
        })?;
        match peers::detect(peer, node_app(a)) {
            Ok(found) => {
                plan.found.insert(peer.as_str(), found);
                plan.targets.push(Target::Peer(peer));
            }
            Err(why) => plan.skipped.push((name.to_string(), why)),
        }
    }
    Ok(())
}

fn sweep_bound(a: &BenchArgs) -> Result<Option<u64>> {
    let Some(s) = &a.sweep else { return Ok(None) };
    match config::parse_duration_ms("--sweep", s)? {
        0 => Err(Error::InvalidArg {
            what: "--sweep".into(),
            value: s.clone(),
            expected: "a p99 bound of at least 1 ms (e.g. `10ms`)".into(),
        }),
        ms => Ok(Some(ms * 1000)),
    }
}

fn plan(a: &BenchArgs) -> Result<Plan> {
    let secs = config::parse_duration_ms(
        "--duration",
        &format!("{}s", a.duration.trim_end_matches('s')),
    )?;
    if secs == 0 || a.connections == 0 || a.threads == 0 {
        return Err(Error::InvalidArg {
            what: "--duration/--connections/--threads".into(),
            value: format!("{}/{}/{}", a.duration, a.connections, a.threads),
            expected: "positive numbers".into(),
        });
    }
    let scenarios = scenario::parse(a)?;
    let policies = policies(a)?;
    let mut plan = Plan {
        targets: Vec::new(),
        found: BTreeMap::new(),
        skipped: Vec::new(),
        scenarios,
        duration: Duration::from_millis(secs),
        sweep_us: sweep_bound(a)?,
    };
    if let Some(list) = &a.compare {
        compare_targets(a, list, &policies, &mut plan)?;
        return Ok(plan);
    }
    let modes = if a.target.is_some() {
        plan.targets.push(Target::External);
        return Ok(plan);
    } else if a.mode == "all" {
        vec![Mode::Fdpass, Mode::Reuseport, Mode::Shared]
    } else {
        vec![Mode::parse(&a.mode).ok_or_else(|| Error::InvalidArg {
            what: "--mode".into(),
            value: a.mode.clone(),
            expected: "`fdpass`, `reuseport`, `shared` or `all`".into(),
        })?]
    };
    for mode in modes {
        match mode {
            Mode::Fdpass => plan
                .targets
                .extend(policies.iter().map(|&p| Target::Herd(mode, p))),
            _ => plan.targets.push(Target::Herd(mode, policies[0])),
        }
    }
    Ok(plan)
}

/// Runs the benchmark described by `a`; returns its report (JSON: the
/// machine, the configuration, every run and the summary; with `--curve`,
/// the curve's points and verdicts too).
pub fn run(a: &BenchArgs) -> Result<Value> {
    match &a.curve {
        Some(c) => {
            let c = curve::parse(c)?;
            // A bad flag fails before the first point, not at it.
            plan(a)?;
            curve::run(a, &c, run_once)
        }
        None => run_once(a),
    }
}

fn run_once(a: &BenchArgs) -> Result<Value> {
    let plan = plan(a)?;
    let instances = Instances::parse(&a.instances)?;
    for (target, why) in &plan.skipped {
        eprintln!("herd bench: skipping {target}: {why}");
    }
    let groups = scenario::by_server(&plan.scenarios);
    let mut runs = Vec::new();
    let total = a.rounds as usize * plan.targets.len();
    let started = Instant::now();
    for round in 1..=a.rounds {
        for (k, target) in plan.targets.iter().enumerate() {
            let done = (round as usize - 1) * plan.targets.len() + k;
            progress(done, total, started, target, &plan);
            // One server start per group of scenarios; one entry per target.
            let mut run = json!({});
            for group in &groups {
                let r = match target {
                    Target::External => {
                        run_target(a, &plan, group, a.target.as_deref().unwrap_or_default())?
                    }
                    Target::Herd(mode, policy) => {
                        run_mode(a, &plan, group, (*mode, *policy), instances)?
                    }
                    Target::Peer(peer) => run_peer(a, &plan, group, *peer, instances)?,
                };
                match run["scenarios"].as_array_mut() {
                    Some(all) => {
                        all.extend(r["scenarios"].as_array().into_iter().flatten().cloned())
                    }
                    None => run = r,
                }
            }
            run["round"] = json!(round);
            runs.push(run);
        }
    }
    if total > 1 {
        eprintln!(
            "\rherd bench: {total} of {total} runs done in {:.0} s{:30}",
            started.elapsed().as_secs_f64(),
            ""
        );
    }
    let summary = report::summarize(&runs);
    let report = json!({
        "herd_version": crate::protocol::HERD_VERSION,
        "machine": { "cpus": crate::sys::allowed_cpus().len(), "kernel": kernel(), "cpu_model": cpu_model() },
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "config": {
            "app": a.target.as_ref().map(|t| format!("external {t}"))
                .unwrap_or_else(|| a.app.clone().unwrap_or_else(|| "herd hello (built-in)".into())),
            "connections": a.connections, "threads": a.threads,
            "duration_s": plan.duration.as_secs_f64(), "pinned": !a.no_pin, "incoming_cpu": a.incoming_cpu, "skew_ms": a.skew_ms,
            "rounds": a.rounds, "rate": a.rate,
        },
        "runs": runs,
        "skipped": plan.skipped.iter().map(|(t, why)| json!({"target": t, "why": why})).collect::<Vec<_>>(),
        "peers": plan.found.iter().map(|(k, f)| (k.to_string(), json!({"exe": f.exe, "version": f.version}))).collect::<serde_json::Map<_, _>>(),
        "summary": summary,
    });
    Ok(report)
}

/// The live progress line (stderr): which run, elapsed and remaining.
fn progress(done: usize, total: usize, started: Instant, target: &Target, plan: &Plan) {
    if total <= 1 {
        return;
    }
    let per = plan.duration.as_secs_f64() * plan.scenarios.len() as f64;
    let elapsed = started.elapsed().as_secs_f64();
    let left = if done == 0 {
        per * total as f64
    } else {
        elapsed / done as f64 * (total - done) as f64
    };
    let name = match target {
        Target::Herd(m, p) if *m == Mode::Fdpass => format!("herd fdpass ({p})"),
        Target::Herd(m, _) => format!("herd {}", m.as_str()),
        Target::External => "external".into(),
        Target::Peer(p) => p.as_str().into(),
    };
    eprint!(
        "\rherd bench: run {}/{total}: {name:<26} {elapsed:>5.0} s elapsed, ~{left:.0} s left ",
        done + 1
    );
}

/// One run of a peer: started, loaded, stopped.
fn run_peer(
    a: &BenchArgs,
    plan: &Plan,
    scenarios: &[Scenario],
    peer: peers::Peer,
    instances: Instances,
) -> Result<Value> {
    let memory = scenarios.iter().find_map(|s| s.memory);
    let skew = scenarios.iter().any(|s| s.skew_ms.is_some());
    let unfit = match peer {
        _ if memory.is_some() && peer != peers::Peer::Pm2 => Some(scenario::NO_CAP),
        peers::Peer::Node if skew => Some("one process: no other instance to route to"),
        peers::Peer::Nginx if skew => Some("nginx answers by itself: no slow instance"),
        _ => None,
    };
    if let Some(why) = unfit {
        let skipped = scenarios
            .iter()
            .map(|s| json!({"mode": s.name(), "skipped": why}));
        return Ok(json!({"mode": peer.as_str(), "scenarios": skipped.collect::<Vec<_>>()}));
    }
    let found = &plan.found[peer.as_str()];
    let n = match peer {
        peers::Peer::Node => 1,
        _ => instances.resolve(crate::sys::allowed_cpus().len().max(1)),
    };
    let port = free_port()?;
    let app = a
        .app
        .as_ref()
        .map(|p| std::env::current_dir().map(|d| d.join(p)))
        .transpose()
        .map_err(|e| Error::io("cwd", e))?;
    let env = start_env(a, scenarios);
    let cap = memory.map(|m| m.cap);
    let running = peers::start(peer, found, app.as_deref(), (n, port), cap, &env)?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_serving(addr)?;
    // Every process up (a cluster's workers come after the primary).
    std::thread::sleep(Duration::from_millis(300));
    let supervised = peer != peers::Peer::Node;
    let scenarios = load(
        a,
        plan,
        scenarios,
        addr,
        Server {
            daemon_pid: None,
            root: Some(running.root),
            supervised,
            reload: running.reload(),
            scale: running.scale().map(|s| (s, n)),
            memory_cap: memory.is_some(),
        },
    )?;
    Ok(json!({
        "mode": peer.as_str(),
        "peer": {"version": found.version, "processes": n},
        "scenarios": scenarios,
    }))
}

fn run_target(a: &BenchArgs, plan: &Plan, scenarios: &[Scenario], target: &str) -> Result<Value> {
    let addr: SocketAddr = target.parse().map_err(|_| Error::InvalidArg {
        what: "--target".into(),
        value: target.into(),
        expected: "HOST:PORT with a numeric address, e.g. 127.0.0.1:3000".into(),
    })?;
    wait_serving(addr)?;
    Ok(
        json!({ "mode": "external", "target": target, "scenarios": load(a, plan, scenarios, addr, Server::default())? }),
    )
}

fn run_mode(
    a: &BenchArgs,
    plan: &Plan,
    scenarios: &[Scenario],
    (mode, policy): (Mode, Policy),
    instances: Instances,
) -> Result<Value> {
    let memory = scenarios.iter().find_map(|s| s.memory);
    let daemon = BenchDaemon::start()?;
    let port = free_port()?;
    let (script, interpreter, args) = match &a.app {
        Some(app) => {
            let script = std::env::current_dir()
                .map_err(|e| Error::io("cwd", e))?
                .join(app);
            if !script.is_file() {
                return Err(Error::ScriptNotFound { path: script });
            }
            let interp = config::interpreter_for(&script).map(str::to_string);
            (script, interp, vec![])
        }
        None => (
            std::env::current_exe().map_err(|e| Error::io("locating herd", e))?,
            None,
            vec!["hello".into()],
        ),
    };
    let mut env = BTreeMap::new();
    env.extend(start_env(a, scenarios));
    let cwd = script
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut spec = AppSpec::new("bench".into(), script, cwd);
    spec.interpreter = interpreter;
    spec.args = args;
    spec.env = env;
    // A clean environment: only what finding programs needs.
    spec.base_env = std::env::vars()
        .filter(|(k, _)| k == "PATH" || k == "HOME")
        .collect();
    spec.exec_mode = ExecMode::Cluster;
    spec.instances = instances;
    spec.port = Some(port);
    spec.host = "127.0.0.1".into();
    spec.mode = mode;
    spec.plane = PlaneConfig {
        policy,
        multishot: !a.no_multishot,
        ..PlaneConfig::default()
    };
    spec.pin = !a.no_pin;
    spec.max_memory_restart = memory.map(|m| m.cap);
    spec.incoming_cpu = a.incoming_cpu;
    let workers: Vec<InstanceInfo> = match daemon.call(&Request::Start {
        spec: Box::new(spec),
        force: false,
        existing: Default::default(),
    })? {
        Response::Done { instances, .. } => instances,
        other => return Err(client::unexpected(&other)),
    };
    let daemon_pid = match daemon.call(&Request::Ping)? {
        Response::Pong { pid, .. } => pid as i32,
        other => return Err(client::unexpected(&other)),
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_serving(addr)?;
    wait_all_in_rotation(&daemon, mode)?;
    let home = daemon.home.clone();
    let reload: scenario::Reload = std::sync::Arc::new(move || {
        let req = Request::Reload {
            targets: vec![crate::protocol::Target::Name("bench".into())],
            env: None,
            parallel: None,
            patch: Default::default(),
        };
        ask(&home, &req)
    });
    let home = daemon.home.clone();
    let scale: scenario::ScaleFn = std::sync::Arc::new(move |n| {
        let req = Request::Scale {
            app: "bench".into(),
            to: crate::protocol::ScaleTo::Set(n),
        };
        ask(&home, &req)
    });
    let scenarios = load(
        a,
        plan,
        scenarios,
        addr,
        Server {
            daemon_pid: Some(daemon_pid),
            root: Some(daemon_pid),
            supervised: true,
            reload: Some(reload),
            scale: Some((scale, workers.len() as u32)),
            memory_cap: memory.is_some(),
        },
    )?;
    let info = workers.first();
    Ok(json!({
        "mode": mode.as_str(),
        "policy": (mode == Mode::Fdpass).then(|| policy.as_str()),
        "multishot": (mode == Mode::Fdpass).then_some(!a.no_multishot),
        "io": info.and_then(|w| w.io.clone()),
        "workers": workers.iter().map(|w| json!({"id": w.id, "pid": w.pid, "core": w.core})).collect::<Vec<_>>(),
        "scenarios": scenarios,
    }))
}

/// The app's environment for a server start: what makes instance 0
/// slower (`--skew-ms`, the skew scenario) and the memory scenario's leak;
/// the hello worker's variables, or slow-app.js's and leak.js's for an app.
fn start_env(a: &BenchArgs, scenarios: &[Scenario]) -> Vec<(String, String)> {
    let app = a.app.is_some();
    let mut env = Vec::new();
    let ms = scenarios
        .iter()
        .find_map(|s| s.skew_ms)
        .unwrap_or(a.skew_ms);
    if ms > 0 {
        let (delay, slow) = match app {
            true => ("SLOW_MS", "SLOW_INSTANCE"),
            false => ("HERD_HELLO_DELAY_MS", "HERD_HELLO_SLOW_INSTANCE"),
        };
        env.extend([(delay.into(), ms.to_string()), (slow.into(), "0".into())]);
    }
    if let Some(m) = scenarios.iter().find_map(|s| s.memory) {
        let var = if app {
            "LEAK_MB_PER_SEC"
        } else {
            "HERD_HELLO_LEAK_MB_PER_SEC"
        };
        env.push((var.into(), m.leak_mb_per_s.to_string()));
    }
    env
}

/// fdpass: waits until every worker said it is ready, so a slow starter
/// (Node) does not skew the first seconds.
fn wait_all_in_rotation(daemon: &BenchDaemon, mode: Mode) -> Result<()> {
    if mode != Mode::Fdpass {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Response::Instances { instances } = daemon.call(&Request::List)? {
            if instances.iter().all(|i| i.in_rotation) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Protocol(
                "not every worker became ready within 10 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls until the port accepts a connection (bounded).
fn wait_serving(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(Error::io(format!("nothing answered on {addr}"), e))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// `model name` of /proc/cpuinfo (what lscpu prints as Model name).
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_default()
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

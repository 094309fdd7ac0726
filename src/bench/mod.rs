//! `herd bench`: the main job on its built-in default. Starts the built-in
//! Rust hello worker (`herd hello`) under a private daemon in a temporary
//! `HERD_HOME`, drives a bounded load from the built-in load generator,
//! tallies responses per worker, prints throughput, latency and fairness,
//! and removes everything it started.

pub mod hello;
pub mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::bench::BenchArgs;
use crate::cli::client::{self, Autostart};
use crate::config::{self, AppSpec, ExecMode, Instances};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::protocol::{InstanceInfo, Request, Response};
use load::{LoadMode, LoadSpec};

/// Entry point of the hidden `herd hello` worker.
pub fn hello_main() -> Result<()> {
    let io = |e| Error::io("hello worker", e);
    if let Some(chan) = crate::worker::Channel::from_env().map_err(io)? {
        return hello::serve_channel(chan).map_err(io);
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

/// Runs the benchmark described by `a`.
pub fn run(a: &BenchArgs) -> Result<()> {
    let instances = Instances::parse(&a.instances)?;
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
    let modes: Vec<LoadMode> = match a.scenario.as_str() {
        "all" => vec![LoadMode::ConnPerRequest, LoadMode::KeepAlive],
        "close" => vec![LoadMode::ConnPerRequest],
        "keepalive" => vec![LoadMode::KeepAlive],
        other => {
            return Err(Error::InvalidArg {
                what: "--scenario".into(),
                value: other.into(),
                expected: "`close`, `keepalive` or `all`".into(),
            })
        }
    };
    let daemon = BenchDaemon::start()?;
    let port = free_port()?;
    let exe: PathBuf = std::env::current_exe().map_err(|e| Error::io("locating herd", e))?;
    let spec = AppSpec {
        name: "hello".into(),
        script: exe,
        interpreter: None,
        interpreter_args: vec![],
        args: vec!["hello".into()],
        cwd: std::env::temp_dir(),
        env: BTreeMap::new(),
        base_env: std::env::vars().filter(|(k, _)| k == "PATH").collect(),
        exec_mode: ExecMode::Cluster,
        instances,
        port: Some(port),
        host: "127.0.0.1".into(),
        mode: crate::accept::Mode::Reuseport,
        plane: Default::default(),
        pin: !a.no_pin,
        autorestart: true,
        kill_timeout_ms: config::DEFAULT_KILL_TIMEOUT_MS,
        min_uptime_ms: config::DEFAULT_MIN_UPTIME_MS,
        max_restarts: config::DEFAULT_MAX_RESTARTS,
        restart_delay_ms: 0,
    };
    let workers: Vec<InstanceInfo> = match daemon.call(&Request::Start {
        spec: Box::new(spec),
        force: false,
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

    let mut results = Vec::new();
    for mode in modes {
        let ticks0 = cpu_ticks(daemon_pid);
        let r = load::run(&LoadSpec {
            addr,
            connections: a.connections,
            duration: Duration::from_millis(secs),
            mode,
            max_requests: None,
            threads: a.threads,
        })
        .map_err(|e| Error::io("running the load", e))?;
        let daemon_cpu_ms = (cpu_ticks(daemon_pid) - ticks0) * 1000 / crate::sys::clock_ticks();
        results.push((r, daemon_cpu_ms));
    }
    let report = json!({
        "herd_version": crate::protocol::HERD_VERSION,
        "machine": { "cpus": crate::sys::allowed_cpus().len(), "kernel": kernel() },
        "config": { "mode": "reuseport", "instances": workers.len(), "connections": a.connections,
                    "threads": a.threads, "duration_s": secs as f64 / 1000.0, "pinned": !a.no_pin },
        "workers": workers.iter().map(|w| json!({"id": w.id, "pid": w.pid, "core": w.core})).collect::<Vec<_>>(),
        "scenarios": results.iter().map(|(r, cpu)| {
            let mut v = r.to_json();
            v["daemon_cpu_ms"] = json!(cpu);
            v
        }).collect::<Vec<_>>(),
    });
    drop(daemon);
    if a.json {
        crate::cli::output::print_json(&report)
    } else {
        crate::cli::output::write_stdout(&render(&report, &workers))
    }
}

/// Polls until the port accepts a connection (bounded).
fn wait_serving(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(Error::io(
                    format!("hello workers never answered on {addr}"),
                    e,
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn render(report: &Value, workers: &[InstanceInfo]) -> String {
    let cfg = &report["config"];
    let mut out = format!(
        "herd bench: {} hello workers (reuseport, {}), {} connections, {} s per scenario, {} CPUs, kernel {}\n",
        cfg["instances"],
        if cfg["pinned"] == json!(true) { "pinned" } else { "not pinned" },
        cfg["connections"],
        cfg["duration_s"],
        report["machine"]["cpus"],
        report["machine"]["kernel"].as_str().unwrap_or("?"),
    );
    let by_pid: BTreeMap<String, &InstanceInfo> = workers
        .iter()
        .filter_map(|w| w.pid.map(|p| (p.to_string(), w)))
        .collect();
    for s in report["scenarios"].as_array().into_iter().flatten() {
        let lat = &s["latency_us"];
        out.push_str(&format!(
            "\n{}\n  requests {}  errors {}  {:.0} req/s  daemon cpu {} ms\n  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n  fairness   Jain {:.4}  max/mean {:.3}\n  per worker:",
            s["mode"].as_str().unwrap_or("?"),
            s["requests"],
            s["errors"]["total"],
            s["rps"].as_f64().unwrap_or(0.0),
            s["daemon_cpu_ms"],
            lat["p50"], lat["p90"], lat["p99"], lat["p999"], lat["max"],
            s["fairness"]["jain"].as_f64().unwrap_or(0.0),
            s["fairness"]["max_over_mean"].as_f64().unwrap_or(0.0),
        ));
        for (pid, n) in s["per_worker"].as_object().into_iter().flatten() {
            let label = by_pid.get(pid).map_or(format!("pid {pid}"), |w| {
                format!(
                    "[{}] pid {pid}{}",
                    w.id,
                    w.core.map_or(String::new(), |c| format!(" core {c}"))
                )
            });
            out.push_str(&format!("\n    {label}: {n}"));
        }
        out.push('\n');
    }
    out
}

//! One started server under load: each scenario's run of the generator,
//! with what happens to the server meanwhile (kills, reloads, scaling, a
//! leak under a memory cap) and the CPU each side spent.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{json, Value};

use super::load::{self, LoadMode, LoadSpec};
use super::{cpu_ticks, scenario, BenchArgs, Plan};
use crate::error::{Error, Result};

/// The server a run loads, as the scenarios need it.
#[derive(Default)]
pub(super) struct Server {
    /// herd's daemon (its CPU per connection).
    pub daemon_pid: Option<i32>,
    /// The process whose tree is the whole server (its CPU; the crash
    /// scenario's workers are its children).
    pub root: Option<i32>,
    /// Something restarts a killed worker.
    pub supervised: bool,
    /// How it reloads (the reload scenario).
    pub reload: Option<scenario::Reload>,
    /// How it scales, and its instance count (the scale scenario).
    pub scale: Option<(scenario::ScaleFn, u32)>,
    /// It was started with the memory scenario's cap (the memory scenario).
    pub memory_cap: bool,
}

/// Runs `scenarios` against the server at `addr`: one entry each.
pub(super) fn load(
    a: &BenchArgs,
    plan: &Plan,
    scenarios: &[scenario::Scenario],
    addr: SocketAddr,
    server: Server,
) -> Result<Vec<Value>> {
    let Server {
        daemon_pid,
        root: server_root,
        supervised,
        reload,
        scale,
        memory_cap,
    } = server;
    let mut out = Vec::new();
    for &sc in scenarios {
        let mode = sc.load;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reloading = match (sc.reload, &reload, sc.scale, &scale) {
            (Some(every), Some(r), _, _) => {
                Some(scenario::reloader(r.clone(), every, stop.clone()))
            }
            (None, _, Some(every), Some((s, base))) => {
                Some(scenario::scaler(s.clone(), *base, every, stop.clone()))
            }
            (Some(_), None, _, _) => {
                out.push(json!({"mode": sc.name(), "skipped": "no zero-downtime reload here"}));
                continue;
            }
            (None, _, Some(_), None) => {
                out.push(json!({"mode": sc.name(), "skipped": "no live scaling here"}));
                continue;
            }
            _ => None,
        };
        // Bare node has nobody to restart it, an external server nobody
        // herd knows: no crash scenario for them.
        let kill = match (sc.crash, server_root.filter(|_| supervised)) {
            (Some(every), Some(root)) => Some(scenario::killer(root, every, stop.clone())),
            (Some(_), _) => {
                out.push(json!({"mode": sc.name(), "skipped": "no supervisor here to restart a killed worker"}));
                continue;
            }
            (None, _) => None,
        };
        let watch = match (sc.memory, server_root.filter(|_| memory_cap)) {
            (Some(m), Some(root)) => Some((m, scenario::memory_watcher(root, m.cap, stop.clone()))),
            (Some(_), _) => {
                out.push(json!({"mode": sc.name(), "skipped": scenario::NO_CAP}));
                continue;
            }
            (None, _) => None,
        };
        let ticks0 = daemon_pid.map_or(0, cpu_ticks);
        let server0 = server_root.map_or(0, crate::supervisor::procstat::tree_ticks);
        let own0 = cpu_ticks(std::process::id() as i32);
        let t0 = Instant::now();
        let spec = LoadSpec {
            addr,
            connections: a.connections,
            duration: plan.duration,
            mode,
            max_requests: None,
            threads: a.threads,
            rate: a.rate,
        };
        let r = load::run(&spec).map_err(|e| Error::io("running the load", e))?;
        // The helper threads (kills, reloads, scaling, the memory watch)
        // stop with the load.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut v = r.to_json();
        v["mode"] = json!(sc.name());
        // Killed, reloaded, scaled or replaced workers take their CPU time
        // and their pid's count with them: neither CPU per request nor
        // fairness means anything then; the errors by kind are the result.
        let changing = kill.is_some() || reloading.is_some() || watch.is_some();
        if let Some((m, thread)) = watch {
            let seen = thread.join().unwrap_or_default();
            v["memory"] = json!({
                "cap_bytes": m.cap,
                "leak_mb_per_s": m.leak_mb_per_s,
                "peak_rss_bytes": seen.peak_rss,
                "longest_over_cap_ms": seen.longest_over_cap_ms,
                "replaced": seen.replaced,
                "samples": seen.samples,
                "sample_every_ms": scenario::WATCH_EVERY.as_millis() as u64,
            });
        }
        if let Some(thread) = reloading {
            let (done, failed) = thread.join().unwrap_or_default();
            let (n, f) = if sc.scale.is_some() {
                ("scale_steps", "scale_failures")
            } else {
                ("reloads", "reload_failures")
            };
            v[n] = json!(done);
            v[f] = json!(failed);
        }
        if changing {
            v["fairness"]["jain"] = Value::Null;
            v["fairness"]["max_over_mean"] = Value::Null;
        }
        if let Some(thread) = kill {
            v["kills"] = json!(thread.join().unwrap_or(0));
        }
        let tick_us = |t: u64| t * 1_000_000 / crate::sys::clock_ticks();
        // The generator's own CPU: a saturated client shows here.
        let own = tick_us(cpu_ticks(std::process::id() as i32).saturating_sub(own0));
        v["client_cpu_percent"] =
            json!(own as f64 / t0.elapsed().as_micros().max(1) as f64 * 100.0);
        if let Some(root) = server_root.filter(|_| !changing) {
            // The whole server: the daemon or primary and every worker.
            let us = tick_us(crate::supervisor::procstat::tree_ticks(root).saturating_sub(server0));
            if r.requests > 0 {
                v["server_cpu_us_per_req"] = json!(us as f64 / r.requests as f64);
            }
        }
        if let Some(pid) = daemon_pid {
            let cpu_us = tick_us(cpu_ticks(pid).saturating_sub(ticks0));
            v["daemon_cpu_ms"] = json!(cpu_us / 1000);
            if mode == LoadMode::ConnPerRequest && r.requests > 0 {
                // One connection per request: the daemon's cost per connection.
                v["daemon_cpu_us_per_conn"] = json!(cpu_us as f64 / r.requests as f64);
            }
        }
        // The sweep: open-loop runs on the same server, after the rest
        // (they have their own CPU and counts).
        if let (Some(bound_us), false) = (plan.sweep_us, changing) {
            v["sweep"] = super::sweep::run(&spec, r.rps(), bound_us)
                .map_err(|e| Error::io("running the sweep", e))?;
        }
        out.push(v);
    }
    Ok(out)
}

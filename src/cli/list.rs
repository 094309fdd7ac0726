//! `herd list` (table or `--json`), `herd jlist` (PM2's shape), `herd show`.

use clap::Args;
use serde_json::{json, Value};

use super::client;
use super::output::{self, human_bytes, human_duration, is_secret};
use crate::error::Result;
use crate::protocol::{InstanceInfo, Request, Response};

/// Options of `herd list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// herd's own stable JSON shape (see README, "Scripting").
    #[arg(long)]
    pub json: bool,
}

/// Options of `herd show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Instance id or app name.
    #[arg(value_name = "ID|NAME")]
    pub target: String,
    /// JSON instead of a table (secrets are not redacted in JSON).
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn fetch(req: &Request) -> Result<Vec<InstanceInfo>> {
    match client::call(req)? {
        Response::Instances { instances } => Ok(instances),
        other => Err(client::unexpected(&other)),
    }
}

/// Fetches the list and prints the table (also used after start/stop…).
pub fn print_table() -> Result<()> {
    output::write_stdout(&output::process_table(&fetch(&Request::List)?))
}

/// Runs `herd list`.
pub fn list(a: ListArgs) -> Result<()> {
    let list = fetch(&Request::List)?;
    if a.json {
        output::print_json(&list)
    } else {
        output::write_stdout(&output::process_table(&list))
    }
}

/// Runs `herd jlist`.
pub fn jlist() -> Result<()> {
    let list = fetch(&Request::List)?;
    let v: Vec<Pm2Process> = list.iter().map(pm2_shape).collect();
    output::print_json(&v)
}

/// One instance as `pm2 jlist` prints it: PM2's key order at the top
/// (`pid, name, pm2_env, pm_id, monit`), for readers that expect it.
#[derive(Debug, serde::Serialize)]
pub struct Pm2Process {
    pid: i32,
    name: String,
    pm2_env: Value,
    pm_id: u32,
    monit: Value,
}

/// One instance as `pm2 jlist` prints it, for dashboards written against PM2.
pub fn pm2_shape(i: &InstanceInfo) -> Pm2Process {
    Pm2Process {
        pid: i.pid.unwrap_or(0),
        name: i.name.clone(),
        pm2_env: pm2_env(i),
        pm_id: i.id,
        monit: json!({ "memory": i.memory_bytes, "cpu": i.cpu_percent }),
    }
}

fn pm2_env(i: &InstanceInfo) -> Value {
    let mut v = pm2_env_fields(i);
    for (k, n) in instance_vars(i) {
        v[k] = n;
    }
    if crate::config::pm2_env::deep_monitoring() {
        v["deep_monitoring"] = Value::Bool(true);
    }
    v
}

/// `pm2_env.env`: values with the JSON types the file gave them, and the
/// instance number as a number, as PM2 shows them.
fn pm2_typed_env(i: &InstanceInfo) -> Value {
    let mut env: serde_json::Map<String, Value> = i
        .env
        .iter()
        .map(|(k, v)| {
            let typed = i.env_types.get(k).cloned();
            (k.clone(), typed.unwrap_or_else(|| Value::String(v.clone())))
        })
        .collect();
    for (k, v) in instance_vars(i) {
        env.insert(k, v);
    }
    Value::Object(env)
}

/// PM2's per-instance variables, as numbers: the instance number (under
/// `instance_var`, else `NODE_APP_INSTANCE`) and `increment_var`'s value.
pub(crate) fn instance_vars(i: &InstanceInfo) -> Vec<(String, Value)> {
    let key = i
        .instance_var
        .clone()
        .unwrap_or_else(|| "NODE_APP_INSTANCE".into());
    let mut v = vec![(key, Value::from(i.instance))];
    if let Some((var, n)) = &i.increment_var {
        v.push((var.clone(), Value::from(*n)));
    }
    v
}

/// `pm2_env.axm_monitor`: herd's figures in PM2's `{value, unit}` form.
fn axm_monitor(i: &InstanceInfo) -> Value {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Value, unit: &str| {
        m.insert(k.into(), json!({ "value": v, "unit": unit }));
    };
    if let Some(j) = i.fairness {
        put(
            "Fairness (Jain, 10 s)",
            json!((j * 10_000.0).round() / 10_000.0),
            "",
        );
    }
    if let Some(r) = i.max_over_mean {
        put(
            "Busiest over mean (10 s)",
            json!((r * 1_000.0).round() / 1_000.0),
            "",
        );
    }
    put("Requests", json!(i.requests), "req");
    if i.distribution == crate::protocol::Distribution::Fdpass {
        put("Connections dispatched", json!(i.dispatched), "conn");
        put("Connections in flight", json!(i.in_flight), "conn");
        put("Connections lost (started)", json!(i.lost_started), "conn");
        put(
            "Connections cut after a write",
            json!(i.cut_after_write),
            "conn",
        );
    }
    Value::Object(m)
}

fn pm2_env_fields(i: &InstanceInfo) -> Value {
    let exec_mode = if i.exec_mode == crate::protocol::ExecMode::Cluster {
        "cluster_mode"
    } else {
        "fork_mode"
    };
    json!({
            "name": i.name,
            "pm_id": i.id,
            "status": i.status.pm2_name(),
            "restart_time": i.restarts,
            "unstable_restarts": i.unstable_restarts,
            "pm_uptime": i.started_at_ms.unwrap_or(i.created_at_ms),
            "created_at": i.created_at_ms,
            "exec_mode": exec_mode,
            "instances": i.instances,
            "pm_exec_path": i.script,
            "pm_cwd": i.cwd,
            "exec_interpreter": i.interpreter.clone().unwrap_or_else(|| "none".into()),
            "node_args": i.interpreter_args,
            "args": i.args,
            "pm_out_log_path": i.out_log,
            "pm_err_log_path": i.err_log,
            "pm_log_path": i.combined_log,
            "autorestart": i.autorestart,
            "kill_timeout": i.kill_timeout_ms,
            "env": pm2_typed_env(i),
            "watch": !i.watch.is_empty(),
            "vizion": true,
            "axm_options": { "module_name": i.name },
            // Where PM2 puts an app's code metrics (`pm2 show`'s "Code
            // metrics value"): herd's own figures of the instance.
            "axm_monitor": axm_monitor(i),
            "versioning": null,
    })
}

/// Runs `herd show`.
pub fn show(a: ShowArgs) -> Result<()> {
    let list = fetch(&Request::Show {
        target: crate::protocol::Target::parse(&a.target),
    })?;
    if a.json {
        return output::print_json(&list);
    }
    let mut blocks: Vec<String> = list.iter().map(describe).collect();
    // The app's live figures once, after its instances.
    let mut apps: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    apps.dedup();
    for app in apps {
        if let Ok(snap) = super::metrics::fetch(Some(app.to_string()), false) {
            if let Some(a) = snap.apps.iter().find(|a| a.name == app) {
                blocks.push(app_metrics(a));
            }
        }
    }
    output::write_stdout(&blocks.join("\n\n"))
}

/// `p50 1.2 ms, p99 4.5 ms, p99.9 9 ms, max 12 ms (3,000)`.
pub fn percentiles(s: &crate::protocol::metrics::Summary) -> String {
    format!(
        "p50 {}, p90 {}, p99 {}, p99.9 {}, max {} ({} samples)",
        output::human_seconds(s.p50),
        output::human_seconds(s.p90),
        output::human_seconds(s.p99),
        output::human_seconds(s.p999),
        output::human_seconds(s.max),
        s.count
    )
}

/// `herd show`'s metrics section for one app.
fn app_metrics(a: &crate::protocol::metrics::AppFigures) -> String {
    let fair = |f: &Option<crate::protocol::metrics::Fairness>| match f {
        Some(f) => format!(
            "Jain {:.4}, max/mean {:.3} over {} {} ({:.1}/s)",
            f.jain, f.max_over_mean, f.total, f.of, f.per_second
        ),
        None => "-".into(),
    };
    let hist = |s: &Option<crate::protocol::metrics::Summary>| match s {
        Some(s) if s.count > 0 => percentiles(s),
        _ => "-".into(),
    };
    let mut rows = vec![
        vec!["fairness, last 10 s".into(), fair(&a.window)],
        vec!["fairness, since start".into(), fair(&a.total)],
        vec!["request latency".into(), hist(&a.requests)],
        vec!["connection duration".into(), hist(&a.connection_duration)],
    ];
    if let Some(n) = a.accepted {
        rows.push(vec!["accepted".into(), n.to_string()]);
        rows.push(vec!["hand-off".into(), hist(&a.handoff)]);
        rows.push(vec![
            "held / dropped".into(),
            format!(
                "{} held (no worker ready), {} dropped (holding queue full)",
                a.held, a.dropped
            ),
        ]);
    }
    format!(
        "Metrics of app {} (herd metrics {} for Prometheus text)\n{}",
        a.name,
        a.name,
        output::table(&["key", "value"], &rows)
    )
}

/// `herd show`'s distribution for a Node app in fdpass mode: the mode
/// choice, with what each side buys (figures in docs/BENCHMARKS.md).
pub const NODE_FDPASS_NOTE: &str = "fdpass (Node app: at connection-per-request load reuseport serves more requests per second; fdpass is fairer under skew and hands a dead worker's untouched connections, and its read but unanswered GETs, to another: docs/BENCHMARKS.md)";

fn describe(i: &InstanceInfo) -> String {
    use crate::protocol::{Channel, Distribution};
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    let mut rows: Vec<Vec<String>> = vec![
        vec!["status".into(), i.status.pm2_name().into()],
        vec!["name".into(), i.name.clone()],
        vec!["id".into(), i.id.to_string()],
        vec![
            "instance".into(),
            format!("{} of {}", i.instance, i.instances),
        ],
        vec!["pid".into(), opt(i.pid.map(|p| p.to_string()))],
        vec!["exec mode".into(), i.exec_mode.to_string()],
        vec![
            "distribution".into(),
            match (i.distribution, crate::accept::reuseport::migrate_req()) {
                (Distribution::Reuseport, Some(false)) => {
                    "reuseport (reload may reset queued connections: net.ipv4.tcp_migrate_req=0)"
                        .into()
                }
                (Distribution::Reuseport, Some(true)) => "reuseport (tcp_migrate_req=1)".into(),
                (Distribution::Fdpass, _)
                    if matches!(i.channel, Some(Channel::NodePreload | Channel::NodeCluster)) =>
                {
                    NODE_FDPASS_NOTE.into()
                }
                (d, _) => d.to_string(),
            },
        ],
        vec!["accept io".into(), opt(i.io.clone())],
        vec!["policy".into(), opt(i.policy.map(|p| p.to_string()))],
        vec![
            "acceptor threads".into(),
            opt(i.acceptors.map(|n| n.to_string())),
        ],
        vec![
            "in rotation".into(),
            if i.left_out_slow {
                "true, but left out as slow: its fastest connections lately took 4× the fastest worker's (probed until fast again)".into()
            } else {
                i.in_rotation.to_string()
            },
        ],
        vec![
            "service floor".into(),
            opt(i
                .service_floor_us
                .map(|us| format!("{us} µs per connection"))),
        ],
        vec![
            "ready".into(),
            format!(
                "{}{}",
                i.ready,
                if i.wait_ready {
                    " (wait_ready: the app's own signal)"
                } else {
                    ""
                }
            ),
        ],
        vec![
            "stops with".into(),
            if i.shutdown_with_message {
                "message `shutdown`, then SIGKILL"
            } else {
                "SIGINT, then SIGKILL"
            }
            .into(),
        ],
        vec![
            "dispatched".into(),
            format!(
                "{} ({} closed, {} handed on)",
                i.dispatched, i.closed, i.handed_on
            ),
        ],
        vec!["requests reported".into(), i.requests.to_string()],
        vec![
            "on worker death".into(),
            format!(
                "{} saved (received, untouched: answered by another worker), {} replayed (request read, not answered: sent again to another worker), {} lost (read, not answered), {} cut after a write (answer sent, not shut down)",
                i.saved_on_death, i.replayed_on_death, i.lost_started, i.cut_after_write
            ),
        ],
        vec!["in flight".into(), i.in_flight.to_string()],
        vec!["channel".into(), opt(i.channel.map(|c| c.to_string()))],
        vec![
            "port".into(),
            opt(i
                .port
                .map(|p| format!("{}:{p}", i.host.as_deref().unwrap_or("?")))),
        ],
        vec![
            "pinned core".into(),
            opt(i.core.map(|c| c.to_string())).replace('-', "not pinned"),
        ],
        vec!["script".into(), i.script.clone()],
        vec!["interpreter".into(), opt(i.interpreter.clone())],
        vec!["interpreter args".into(), i.interpreter_args.join(" ")],
        vec!["args".into(), i.args.join(" ")],
        vec!["cwd".into(), i.cwd.clone()],
        vec![
            "restarts".into(),
            if i.restarts_by_reason.is_empty() {
                i.restarts.to_string()
            } else {
                let by: Vec<String> = i
                    .restarts_by_reason
                    .iter()
                    .map(|(r, n)| format!("{n} {r}"))
                    .collect();
                format!("{} ({})", i.restarts, by.join(", "))
            },
        ],
        vec!["unstable restarts".into(), i.unstable_restarts.to_string()],
        vec![
            "last exit".into(),
            opt(i.last_exit.map(|e| match e {
                crate::protocol::Exit::Code(c) => format!("exit code {c}"),
                crate::protocol::Exit::Signal(s) => {
                    format!("signal {}", crate::sys::process::signal_name(s))
                }
            })),
        ],
        vec!["last error".into(), opt(i.last_error.clone())],
        vec!["uptime".into(), human_duration(i.uptime_ms)],
        vec![
            "created at".into(),
            crate::daemon::utc_timestamp(ms_to_time(i.created_at_ms)),
        ],
        vec![
            "cpu".into(),
            format!("{}% ({:.2} s in all)", i.cpu_percent, i.cpu_seconds),
        ],
        vec!["memory".into(), human_bytes(i.memory_bytes)],
        vec!["autorestart".into(), i.autorestart.to_string()],
        vec!["kill timeout".into(), format!("{} ms", i.kill_timeout_ms)],
        vec!["min uptime".into(), format!("{} ms", i.min_uptime_ms)],
        vec!["max restarts".into(), i.max_restarts.to_string()],
        vec![
            "max memory restart".into(),
            opt(i.max_memory_restart.map(human_bytes)),
        ],
        vec![
            "memory restarts".into(),
            match i.last_memory_rss {
                Some(rss) => format!("{} (last at {})", i.memory_restarts, human_bytes(rss)),
                None => i.memory_restarts.to_string(),
            },
        ],
        vec!["restart delay".into(), format!("{} ms", i.restart_delay_ms)],
        vec!["watch".into(), watch_summary(i)],
        vec!["cron restart".into(), cron_summary(i)],
        vec!["out log".into(), i.out_log.clone()],
        vec!["error log".into(), i.err_log.clone()],
        vec!["combined log".into(), opt(i.combined_log.clone())],
        vec![
            "log format".into(),
            match &i.log_date_format {
                Some(f) if i.log_format != "json" => format!("{} ({f})", i.log_format),
                _ => i.log_format.clone(),
            },
        ],
        vec![
            "log rotation".into(),
            match i.log_max_size {
                Some(m) => format!("at {}, keep {}", human_bytes(m), i.log_retain),
                None => "off".into(),
            },
        ],
        vec![
            "log bytes dropped".into(),
            match &i.log_error {
                Some(e) => format!("{} ({e})", i.log_dropped_bytes),
                None => i.log_dropped_bytes.to_string(),
            },
        ],
        vec![
            "inherited env".into(),
            format!("{} variables", i.inherited_env),
        ],
        vec!["config file".into(), opt(i.config_file.clone())],
        vec!["stop exit codes".into(), format!("{:?}", i.stop_exit_codes)],
    ];
    for (k, v) in &i.pending_config {
        rows.push(vec![format!("{k} (not acted on yet)"), v.to_string()]);
    }
    for (k, v) in &i.env {
        let shown = if is_secret(k) {
            "[redacted]".to_string()
        } else {
            v.clone()
        };
        rows.push(vec![format!("env {k}"), shown]);
    }
    format!(
        "Describing instance {} ({})\n{}",
        i.id,
        i.name,
        output::table(&["key", "value"], &rows)
    )
}

/// `on: /srv/api (cwd), ignore: logs, *.tmp, delay 0 ms` and the like.
fn watch_summary(i: &InstanceInfo) -> String {
    if i.watch.is_empty() {
        return "off".into();
    }
    let paths: Vec<String> = i
        .watch
        .iter()
        .map(|p| match p == &i.cwd {
            true => format!("{p} (cwd)"),
            false => p.clone(),
        })
        .collect();
    let state = if i.watching { "on" } else { "paused (stopped)" };
    let mut ignore = vec!["node_modules, __pycache__, hidden names, herd's logs".to_string()];
    ignore.extend(i.ignore_watch.iter().cloned());
    let mut out = format!(
        "{state}: {}; ignore: {}; delay {} ms",
        paths.join(", "),
        ignore.join(", "),
        i.watch_delay_ms.unwrap_or(0)
    );
    if let Some(e) = &i.watch_error {
        out.push_str(&format!("; problem: {e}"));
    }
    out
}

/// `0 3 * * *, next: 2030-06-16 03:00:00 +02:00` (local time, as cron).
fn cron_summary(i: &InstanceInfo) -> String {
    let Some(p) = &i.cron_restart else {
        return "off".into();
    };
    match i.cron_next_ms.and_then(|ms| {
        chrono::DateTime::from_timestamp_millis(ms as i64).map(|t| t.with_timezone(&chrono::Local))
    }) {
        Some(t) => format!("{p}, next: {}", t.format("%Y-%m-%d %H:%M:%S %:z")),
        None => format!("{p}, paused (stopped)"),
    }
}

fn ms_to_time(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

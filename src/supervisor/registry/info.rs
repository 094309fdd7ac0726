//! What `herd list`, `show` and `logs` read: an instance's snapshot
//! ([`InstanceInfo`]) and its log files.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Supervisor;
use crate::accept::Mode;
use crate::config::ExecMode;
use crate::logs::file::LogFiles;
use crate::protocol as wire;
use crate::protocol::{Exit, InstanceInfo};
use crate::supervisor::Instance;
use crate::sys::process::ExitStatus;

impl Supervisor {
    /// The log files `ids` write, each once.
    pub fn log_paths(&self, ids: &[u32]) -> Vec<std::path::PathBuf> {
        let table = self.table.borrow();
        let mut paths: Vec<std::path::PathBuf> = ids
            .iter()
            .filter_map(|id| table.instances.get(id))
            .flat_map(|i| i.log_paths().map(std::path::Path::to_path_buf))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Snapshots of `ids`, with CPU and memory sampled now.
    pub fn info(&self, ids: &[u32]) -> Vec<InstanceInfo> {
        let infos: Vec<InstanceInfo> = {
            let mut table = self.table.borrow_mut();
            let auto = self.auto.borrow();
            ids.iter()
                .filter_map(|id| {
                    table
                        .instances
                        .get_mut(id)
                        .map(|i| to_info(i, &self.log_files))
                })
                .map(|mut i| {
                    auto.describe(&mut i);
                    i
                })
                .collect()
        };
        // The app figures read the table again; each app's window once.
        let mut windows: BTreeMap<String, Option<crate::protocol::metrics::Fairness>> =
            BTreeMap::new();
        infos
            .into_iter()
            .map(|mut i| {
                if let Some(m) = self.metrics.borrow().get(&i.name) {
                    i.requests = m.requests_of(i.id);
                }
                let window = windows
                    .entry(i.name.clone())
                    .or_insert_with(|| self.window_fairness(&i.name));
                if let Some(f) = window {
                    i.fairness = Some(f.jain);
                    i.max_over_mean = Some(f.max_over_mean);
                }
                i
            })
            .collect()
    }
}

/// How connections reach `inst`.
pub(super) fn distribution_of(inst: &Instance) -> wire::Distribution {
    match (inst.app.exec_mode, &inst.plane, &inst.listener) {
        (ExecMode::Cluster, Some(_), _) => wire::Distribution::Fdpass,
        (ExecMode::Cluster, None, Some(_)) => match inst.app.mode {
            Mode::Fdpass => wire::Distribution::Fdpass,
            Mode::Reuseport => wire::Distribution::Reuseport,
            Mode::Shared => wire::Distribution::Shared,
        },
        _ => wire::Distribution::None,
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn to_info(inst: &mut Instance, files: &LogFiles) -> InstanceInfo {
    let (cpu_percent, memory_bytes, cpu_seconds) = match (inst.status.is_running(), inst.pid()) {
        (true, Some(pid)) => inst.stats.sample(pid),
        _ => (0.0, 0, 0.0),
    };
    let deaths = inst
        .plane
        .as_ref()
        .map(|p| p.pool.deaths(inst.id))
        .unwrap_or_default();
    let (mut log_dropped_bytes, mut log_error) = (0, None);
    for path in inst.log_paths() {
        if let Some(f) = files.find(path) {
            let f = f.borrow();
            log_dropped_bytes += f.dropped();
            log_error = log_error.or_else(|| f.error().map(str::to_string));
        }
    }
    let app = &inst.app;
    let (exec, interpreter) = match &app.interpreter {
        Some(i) => (i.clone(), Some(i.clone())),
        None => (app.script.to_string_lossy().into_owned(), None),
    };
    InstanceInfo {
        id: inst.id,
        name: app.name.clone(),
        instance: inst.index,
        exec_mode: app.exec_mode,
        distribution: distribution_of(inst),
        io: inst.plane.as_ref().map(|p| p.describe_io()),
        policy: inst.plane.as_ref().map(|p| p.pool.policy()),
        acceptors: inst.plane.as_ref().map(|p| p.acceptor_count()),
        dispatched: inst
            .slot()
            .map_or(0, |s| s.dispatched.load(Ordering::Relaxed)),
        saved_on_death: deaths.saved,
        replayed_on_death: deaths.replayed,
        lost_started: deaths.lost_started,
        cut_after_write: deaths.cut_after_write,
        closed: inst.slot().map_or(0, |s| s.closed.load(Ordering::Relaxed)),
        handed_on: inst
            .slot()
            .map_or(0, |s| s.handed_on.load(Ordering::Relaxed)),
        requests: 0,
        cpu_seconds,
        restarts_by_reason: inst
            .restarts_by
            .iter()
            .map(|(r, n)| (r.as_str().to_string(), *n))
            .collect(),
        fairness: None,
        max_over_mean: None,
        in_flight: inst.slot().map_or(0, |s| s.load()),
        channel: inst.slot().map(|s| s.channel_kind()),
        in_rotation: inst.slot().is_some_and(|s| s.is_active()),
        left_out_slow: inst.slot().is_some_and(|s| s.is_left_out_slow()),
        service_floor_us: inst
            .slot()
            .and_then(|s| s.service_floor_ns())
            .map(|ns| ns / 1000),
        status: inst.shown_status(),
        pid: inst.pid().filter(|_| inst.status.is_running()),
        core: inst.core,
        port: inst.bound_port(),
        host: inst.port.map(|_| app.host.clone()).or_else(|| {
            inst.plane
                .as_ref()
                .and_then(|p| p.local_addr())
                .map(|a| a.ip().to_string())
        }),
        restarts: inst.restarts,
        unstable_restarts: inst.unstable_restarts,
        created_at_ms: epoch_ms(inst.created_at),
        started_at_ms: inst.started.map(|(t, _)| epoch_ms(t)),
        uptime_ms: inst.uptime_ms(),
        cpu_percent,
        memory_bytes,
        last_exit: inst.last_exit.map(|e| match e {
            ExitStatus::Code(c) => Exit::Code(c),
            ExitStatus::Signal(s) => Exit::Signal(s),
        }),
        last_error: inst.last_error.clone(),
        script: app.script.to_string_lossy().into_owned(),
        exec,
        interpreter,
        interpreter_args: app.interpreter_args.clone(),
        args: app.args.clone(),
        cwd: app.cwd.to_string_lossy().into_owned(),
        env: app.env.clone(),
        env_types: app.env_types.clone(),
        inherited_env: app.base_env.len(),
        autorestart: app.autorestart,
        kill_timeout_ms: app.kill_timeout_ms,
        min_uptime_ms: app.min_uptime_ms,
        max_memory_restart: app.max_memory_restart,
        memory_restarts: inst.memory_restarts,
        last_memory_rss: inst.last_memory_rss,
        max_restarts: app.max_restarts,
        restart_delay_ms: app.restart_delay_ms,
        instances: inst.app_instances,
        config_file: app.config_file.as_ref().map(|p| p.display().to_string()),
        pending_config: app.pending.clone(),
        stop_exit_codes: app.stop_exit_codes.clone(),
        instance_var: app.instance_var.clone(),
        increment_var: crate::supervisor::launch::incremented(inst),
        out_log: inst.out_log.to_string_lossy().into_owned(),
        err_log: inst.err_log.to_string_lossy().into_owned(),
        combined_log: inst
            .combined_log
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        log_format: match (&app.logs.date_format, app.logs.json) {
            (_, true) => "json",
            (Some(_), false) => "time",
            (None, false) => "plain",
        }
        .into(),
        log_date_format: app.logs.date_format.clone(),
        log_max_size: app.logs.max_size,
        log_retain: app.logs.rotation().map_or(0, |r| r.retain),
        log_dropped_bytes,
        log_error,
        ready: inst.is_ready(),
        wait_ready: app.wait_ready,
        shutdown_with_message: app.shutdown_with_message,
        app_metrics: app.app_metrics,
        listen_timeout_ms: app.listen_timeout_ms,
        watch: app
            .watch
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        ignore_watch: app.ignore_watch.clone(),
        watch_delay_ms: (!app.watch.is_empty()).then_some(app.watch_delay_ms),
        watching: false,
        watch_error: None,
        cron_restart: app.cron_restart.clone(),
        cron_next_ms: None,
    }
}

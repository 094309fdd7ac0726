//! Live figures: each app's [`AppMetrics`] (shared with its data plane),
//! the once-a-second tick that feeds their sliding windows, and the
//! [`Snapshot`] `herd metrics`, `monit` and `/metrics` read.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::Supervisor;
use crate::metrics::app::{figure, AppMetrics};
use crate::metrics::hist::{DURATION_BOUNDS, HANDOFF_BOUNDS};
use crate::protocol::metrics::{AppFigures, AppText, Fairness, InstanceFigures, Snapshot};
use crate::supervisor::{procstat, ready, Instance};

/// How often the windows get a sample.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a scrape waits for the `app_metrics` instances' answers.
pub const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// What one app's fairness is judged on: connections herd dispatched
/// (fdpass), else requests the workers reported.
fn counts_of(inst: &Instance, m: &AppMetrics) -> (&'static str, u64) {
    match &inst.plane {
        Some(p) => ("connections", p.pool.totals(inst.id).0.dispatched),
        None => ("requests", m.requests_of(inst.id)),
    }
}

impl Supervisor {
    /// App `name`'s figures, made on first use.
    pub(super) fn app_metrics(&self, name: &str) -> Arc<AppMetrics> {
        if let Some(m) = self.metrics.borrow().get(name) {
            return m.clone();
        }
        self.metrics
            .borrow_mut()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(AppMetrics::new(self.cpus.len().clamp(1, 64))))
            .clone()
    }

    /// Instance `id`'s app's figures, if it has any yet.
    pub fn metrics_of(&self, id: u32) -> Option<Arc<AppMetrics>> {
        let name = self.table.borrow().instances.get(&id)?.app.name.clone();
        Some(self.app_metrics(&name))
    }

    /// One sample of every app's per-instance counts into its window; apps
    /// gone from the table lose their figures.
    pub fn metrics_tick(&self) {
        let now = Instant::now();
        let table = self.table.borrow();
        let mut metrics = self.metrics.borrow_mut();
        metrics.retain(|name, _| table.instances.values().any(|i| &i.app.name == name));
        for (name, m) in metrics.iter() {
            let counts: BTreeMap<u32, u64> = table
                .instances
                .values()
                .filter(|i| &i.app.name == name && i.status.is_running())
                .map(|i| (i.id, counts_of(i, m).1))
                .collect();
            m.tick(now, counts);
        }
    }

    /// App `name`'s fairness over the window, if it has one yet.
    pub fn window_fairness(&self, name: &str) -> Option<Fairness> {
        let m = self.metrics.borrow().get(name)?.clone();
        let fdpass = self
            .table
            .borrow()
            .instances
            .values()
            .any(|i| i.app.name == name && i.plane.is_some());
        if !fdpass && !m.has_requests() {
            return None;
        }
        m.windowed(if fdpass { "connections" } else { "requests" })
    }

    /// Everything, now; `app`: only that app's.
    pub fn metrics_snapshot(&self, app: Option<&str>) -> Snapshot {
        let ids: Vec<u32> = {
            let table = self.table.borrow();
            table
                .instances
                .values()
                .filter(|i| app.is_none_or(|a| i.app.name == a))
                .map(|i| i.id)
                .collect()
        };
        let mut names: Vec<String> = Vec::new();
        let mut instances = Vec::with_capacity(ids.len());
        {
            let table = self.table.borrow();
            for id in &ids {
                let Some(i) = table.instances.get(id) else {
                    continue;
                };
                if !names.contains(&i.app.name) {
                    names.push(i.app.name.clone());
                }
                instances.push(self.instance_figures(i));
            }
        }
        let apps = names.iter().map(|n| self.app_figures(n)).collect();
        Snapshot {
            daemon: procstat::own_figures(),
            apps,
            instances,
            app_texts: Vec::new(),
        }
    }

    /// Asks every running instance of the `app_metrics` apps (of `app`,
    /// if given) for its own Prometheus text, over its Node channel; waits
    /// [`SCRAPE_TIMEOUT`] at most, for all of them together.
    pub async fn gather_app_metrics(&self, app: Option<&str>) -> Vec<AppText> {
        let mut waiting = Vec::new();
        {
            let table = self.table.borrow();
            for i in table.instances.values().filter(|i| {
                i.app.app_metrics && i.status.is_running() && app.is_none_or(|a| i.app.name == a)
            }) {
                let (seq, rx) = self.app_metrics(&i.app.name).begin_scrape();
                let line = ready::preload::metrics_request(seq);
                let sent = match (i.slot(), i.ipc()) {
                    (Some(slot), _) => slot.send_raw(&line).map_err(|e| e.to_string()),
                    (None, Some(ipc)) => ready::send_raw(ipc, &line).map_err(|e| e.to_string()),
                    (None, None) => Err("no channel to the instance".to_string()),
                };
                waiting.push((i.app.name.clone(), i.index, sent.map(|()| rx)));
            }
        }
        let deadline = tokio::time::Instant::now() + SCRAPE_TIMEOUT;
        let mut out = Vec::with_capacity(waiting.len());
        for (app, instance, rx) in waiting {
            let answer = match rx {
                Err(e) => Err(format!("cannot ask it: {e}")),
                Ok(rx) => match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(a)) => a,
                    Ok(Err(_)) => Err("its process went away".to_string()),
                    Err(_) => Err(format!(
                        "no answer within {} ms",
                        SCRAPE_TIMEOUT.as_millis()
                    )),
                },
            };
            let (text, error) = match answer {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e)),
            };
            out.push(AppText {
                app,
                instance,
                text,
                error,
            });
        }
        out
    }

    fn instance_figures(&self, i: &Instance) -> InstanceFigures {
        let m = self.app_metrics(&i.app.name);
        let (t, in_flight) = i
            .plane
            .as_ref()
            .map(|p| p.pool.totals(i.id))
            .unwrap_or_default();
        let running = i.status.is_running();
        let (cpu, rss) = match (running, i.pid()) {
            (true, Some(pid)) => procstat::read(pid).map_or((0.0, 0), |(ticks, rss)| {
                (ticks as f64 / crate::sys::clock_ticks() as f64, rss)
            }),
            _ => (0.0, 0),
        };
        InstanceFigures {
            id: i.id,
            app: i.app.name.clone(),
            instance: i.index,
            pid: i.pid().filter(|_| running),
            status: i.shown_status().pm2_name().into(),
            dispatched: t.dispatched,
            closed: t.closed,
            in_flight,
            handed_on: t.handed_on + t.saved + t.replayed,
            lost_started: t.lost_started,
            cut_after_write: t.cut_after_write,
            requests: m.requests_of(i.id),
            cpu_seconds: cpu,
            memory_bytes: rss,
            memory_limit_bytes: i.app.max_memory_restart,
            restarts: i
                .restarts_by
                .iter()
                .map(|(r, n)| (r.as_str().to_string(), *n))
                .collect(),
            uptime_seconds: i.uptime_ms() as f64 / 1000.0,
        }
    }

    fn app_figures(&self, name: &str) -> AppFigures {
        let m = self.app_metrics(name);
        let table = self.table.borrow();
        let insts: Vec<&Instance> = table
            .instances
            .values()
            .filter(|i| i.app.name == name)
            .collect();
        let plane = insts.iter().find_map(|i| i.plane.clone());
        let distribution = insts.first().map_or("none".to_string(), |i| {
            super::info::distribution_of(i).as_str().to_string()
        });
        // Since start: every instance's count, over the oldest one's life.
        let of = if plane.is_some() {
            "connections"
        } else {
            "requests"
        };
        let xs: Vec<f64> = insts.iter().map(|i| counts_of(i, &m).1 as f64).collect();
        let secs = insts
            .iter()
            .map(|i| {
                std::time::SystemTime::now()
                    .duration_since(i.created_at)
                    .map_or(0.0, |d| d.as_secs_f64())
            })
            .fold(0.0, f64::max);
        let judged = plane.is_some() || m.has_requests();
        drop(table);
        AppFigures {
            name: name.to_string(),
            distribution,
            accepted: plane.as_ref().map(|p| p.accepted.load(Ordering::Relaxed)),
            dropped: plane
                .as_ref()
                .map_or(0, |p| p.pool.dropped.load(Ordering::Relaxed)),
            held: plane.as_ref().map_or(0, |p| p.pool.orphans() as u64),
            window: self.window_fairness(name),
            total: judged.then(|| figure(&xs, of, secs)),
            handoff: plane.as_ref().map(|_| m.handoff.summary(HANDOFF_BOUNDS)),
            connection_duration: Some(m.duration.summary(DURATION_BOUNDS)).filter(|s| s.count > 0),
            requests: Some(m.requests.summary(DURATION_BOUNDS)).filter(|s| s.count > 0),
        }
    }
}

//! The Prometheus text exposition format (version 0.0.4) of a
//! [`Snapshot`]: `herd metrics` prints it, `--metrics ADDR` serves it at
//! `/metrics`. Names follow Prometheus's conventions: the `herd_` prefix,
//! base units in the name (`_seconds`, `_bytes`), `_total` on counters;
//! labels `app` and `instance` (the index within the app, as
//! `NODE_APP_INSTANCE`; the pid only in `herd_worker_info`), and the
//! standard `process_*` series for the daemon itself. Every series is
//! listed in docs/METRICS.md.

use std::fmt::Write;

use crate::protocol::metrics::{AppFigures, Fairness, InstanceFigures, Snapshot, Summary};

/// `Content-Type` of the text form.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written: its samples follow its HELP and TYPE.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&number(value));
        self.text.push('\n');
    }

    /// A whole family with one sample per item.
    fn each<T>(
        &mut self,
        items: &[T],
        name: &str,
        kind: &str,
        help: &str,
        mut f: impl FnMut(&T) -> Option<(Vec<(&'static str, String)>, f64)>,
    ) {
        let rows: Vec<_> = items.iter().filter_map(&mut f).collect();
        if rows.is_empty() {
            return;
        }
        self.family(name, kind, help);
        for (labels, v) in rows {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.sample(name, &l, v);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, apps: &[(&str, &Summary)]) {
        if apps.is_empty() {
            return;
        }
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (app, s) in apps {
            for (le, c) in &s.buckets {
                self.sample(&bucket, &[("app", app), ("le", &number(*le))], *c as f64);
            }
            self.sample(&bucket, &[("app", app), ("le", "+Inf")], s.count as f64);
            self.sample(&format!("{name}_sum"), &[("app", app)], s.sum_seconds);
            self.sample(&format!("{name}_count"), &[("app", app)], s.count as f64);
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value as Prometheus writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn inst(i: &InstanceFigures) -> Vec<(&'static str, String)> {
    vec![("app", i.app.clone()), ("instance", i.instance.to_string())]
}

/// The text form of `snap`.
pub fn render(snap: &Snapshot) -> String {
    let mut o = Out {
        text: String::with_capacity(4096 + 2048 * snap.instances.len()),
    };
    daemon(&mut o, snap);
    apps(&mut o, &snap.apps);
    instances(&mut o, &snap.instances);
    o.each(
        &snap.app_texts,
        "herd_app_metrics_up",
        "gauge",
        "1 when the instance answered herd's scrape of its own metrics (app_metrics), else 0.",
        |t| {
            Some((
                vec![("app", t.app.clone()), ("instance", t.instance.to_string())],
                f64::from(u8::from(t.text.is_some())),
            ))
        },
    );
    let texts: Vec<(String, u32, String)> = snap
        .app_texts
        .iter()
        .filter_map(|t| Some((t.app.clone(), t.instance, t.text.clone()?)))
        .collect();
    if texts.is_empty() {
        o.text
    } else {
        super::merge::merge(&o.text, &texts)
    }
}

fn daemon(o: &mut Out, snap: &Snapshot) {
    let d = &snap.daemon;
    let one = |o: &mut Out, name: &str, kind: &str, help: &str, v: f64| {
        o.family(name, kind, help);
        o.sample(name, &[], v);
    };
    one(
        o,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent by the herd daemon in seconds.",
        d.cpu_seconds,
    );
    one(
        o,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size of the herd daemon in bytes.",
        d.resident_memory_bytes as f64,
    );
    one(
        o,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size of the herd daemon in bytes.",
        d.virtual_memory_bytes as f64,
    );
    one(
        o,
        "process_start_time_seconds",
        "gauge",
        "Start time of the herd daemon since the Unix epoch in seconds.",
        d.start_time_seconds,
    );
    one(
        o,
        "process_open_fds",
        "gauge",
        "Number of open file descriptors of the herd daemon.",
        d.open_fds as f64,
    );
    one(
        o,
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors of the herd daemon.",
        d.max_fds as f64,
    );
    one(
        o,
        "herd_daemon_threads",
        "gauge",
        "Threads of the herd daemon (control plane, acceptors, helpers).",
        d.threads as f64,
    );
    o.family("herd_build_info", "gauge", "herd's version; always 1.");
    o.sample("herd_build_info", &[("version", &d.version)], 1.0);
}

fn apps(o: &mut Out, apps: &[AppFigures]) {
    let app = |a: &AppFigures| vec![("app", a.name.clone())];
    o.each(
        apps,
        "herd_connections_accepted_total",
        "counter",
        "Connections herd accepted on the app's port (fdpass).",
        |a| a.accepted.map(|n| (app(a), n as f64)),
    );
    o.each(apps, "herd_connections_dropped_total", "counter", "Connections closed unanswered because no worker was ready and herd's holding queue was full (fdpass).", |a| {
        a.accepted.map(|_| (app(a), a.dropped as f64))
    });
    o.each(
        apps,
        "herd_connections_held",
        "gauge",
        "Connections herd holds because no worker is ready (fdpass).",
        |a| a.accepted.map(|_| (app(a), a.held as f64)),
    );
    let fair =
        |a: &AppFigures, w: &Option<Fairness>, window: &'static str, v: fn(&Fairness) -> f64| {
            w.as_ref().map(|f| {
                (
                    vec![
                        ("app", a.name.clone()),
                        ("window", window.into()),
                        ("of", f.of.clone()),
                    ],
                    v(f),
                )
            })
        };
    let both = |o: &mut Out, name: &str, help: &str, v: fn(&Fairness) -> f64| {
        let rows: Vec<_> = apps
            .iter()
            .flat_map(|a| [fair(a, &a.window, "10s", v), fair(a, &a.total, "total", v)])
            .flatten()
            .collect();
        o.each(&rows, name, "gauge", help, |r| Some(r.clone()));
    };
    both(
        o,
        "herd_lb_fairness_ratio",
        "Jain's fairness index of the work per instance (1 = even, 1/n = one instance did all).",
        |f| f.jain,
    );
    both(
        o,
        "herd_lb_max_over_mean_ratio",
        "The busiest instance's work over the mean (1 = even, n = one instance did all).",
        |f| f.max_over_mean,
    );
    let with = |pick: fn(&AppFigures) -> Option<&Summary>| -> Vec<(&str, &Summary)> {
        apps.iter()
            .filter_map(|a| pick(a).map(|s| (a.name.as_str(), s)))
            .collect()
    };
    o.histogram("herd_handoff_duration_seconds", "Time from herd taking an accepted connection to its message being on the way to the worker (fdpass).", &with(|a| a.handoff.as_ref()));
    o.histogram(
        "herd_connection_duration_seconds",
        "How long connections stayed open in the worker, as the worker reports it.",
        &with(|a| a.connection_duration.as_ref()),
    );
    o.histogram("herd_request_duration_seconds", "Request latency as the worker reports it (herd workers; Node apps: request to the response's finish).", &with(|a| a.requests.as_ref()));
}

fn instances(o: &mut Out, is: &[InstanceFigures]) {
    o.each(
        is,
        "herd_worker_info",
        "gauge",
        "One series per instance naming its id, pid and status; always 1.",
        |i| {
            let mut l = inst(i);
            l.push(("id", i.id.to_string()));
            l.push(("pid", i.pid.map(|p| p.to_string()).unwrap_or_default()));
            l.push(("status", i.status.clone()));
            Some((l, 1.0))
        },
    );
    o.each(
        is,
        "herd_worker_up",
        "gauge",
        "1 while the instance is online, else 0.",
        |i| Some((inst(i), f64::from(u8::from(i.status == "online")))),
    );
    o.each(
        is,
        "herd_connections_dispatched_total",
        "counter",
        "Connections herd handed to the instance (fdpass).",
        |i| Some((inst(i), i.dispatched as f64)),
    );
    o.each(
        is,
        "herd_connections_closed_total",
        "counter",
        "Connections the instance reported closed (Node's own newconn path: accepted).",
        |i| Some((inst(i), i.closed as f64)),
    );
    o.each(
        is,
        "herd_connections_active",
        "gauge",
        "Connections in the instance's hands or on their way to it (fdpass).",
        |i| Some((inst(i), i.in_flight as f64)),
    );
    o.each(is, "herd_connections_handed_on_total", "counter", "Connections given back and answered by another instance (its process died or stopped reading; untouched, or its idempotent request replayed).", |i| {
        Some((inst(i), i.handed_on as f64))
    });
    o.each(is, "herd_connections_lost_total", "counter", "Connections lost with a dead process, by reason (started: it had read from them and written nothing).", |i| {
        let mut l = inst(i);
        l.push(("reason", "started".into()));
        Some((l, i.lost_started as f64))
    });
    o.each(is, "herd_connections_cut_total", "counter", "Connections a dead process had written to and not shut down, closed with it (the client keeps what was written, usually the whole answer).", |i| {
        Some((inst(i), i.cut_after_write as f64))
    });
    o.each(
        is,
        "herd_requests_total",
        "counter",
        "Requests the instance's workers reported.",
        |i| Some((inst(i), i.requests as f64)),
    );
    o.each(
        is,
        "herd_worker_cpu_seconds_total",
        "counter",
        "CPU time of the instance's current process in seconds.",
        |i| Some((inst(i), i.cpu_seconds)),
    );
    o.each(
        is,
        "herd_worker_resident_memory_bytes",
        "gauge",
        "Resident memory of the instance's current process in bytes.",
        |i| Some((inst(i), i.memory_bytes as f64)),
    );
    o.each(
        is,
        "herd_worker_memory_limit_bytes",
        "gauge",
        "The instance's max_memory_restart in bytes.",
        |i| i.memory_limit_bytes.map(|b| (inst(i), b as f64)),
    );
    o.each(
        is,
        "herd_worker_uptime_seconds",
        "gauge",
        "Seconds the instance's current process has run.",
        |i| Some((inst(i), i.uptime_seconds)),
    );
    let rows: Vec<(Vec<(&'static str, String)>, f64)> = is
        .iter()
        .flat_map(|i| {
            crate::protocol::metrics::RestartReason::ALL
                .iter()
                .map(move |r| {
                    let mut l = inst(i);
                    l.push(("reason", r.as_str().into()));
                    (
                        l,
                        f64::from(i.restarts.get(r.as_str()).copied().unwrap_or(0)),
                    )
                })
        })
        .collect();
    o.each(
        &rows,
        "herd_worker_restarts_total",
        "counter",
        "Restarts of the instance by reason: crash, memory, watch, cron, reload, manual.",
        |r| Some(r.clone()),
    );
}

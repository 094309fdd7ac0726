//! The human-readable `herd bench` report, rendered from the same JSON that
//! `--json` prints (so the two never disagree).

use serde_json::Value;

/// A figure to `digits` decimals, `-` when there is none.
pub(super) fn f(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// A run's label in tables and charts: `fdpass (least-conn)`, `pm2`, ….
fn target_label(run: &Value) -> String {
    match run["policy"].as_str() {
        Some(p) => format!("herd {} ({p})", run["mode"].as_str().unwrap_or("?")),
        None => match run["mode"].as_str() {
            Some(m @ ("reuseport" | "shared")) => format!("herd {m}"),
            Some(m) => m.to_string(),
            None => "?".into(),
        },
    }
}

/// For each target of round 1 that ran scenario `sc`: its label and what
/// `pick` takes from that scenario's result (the charts' series).
fn first_round<T>(
    runs: &[&Value],
    sc: &str,
    pick: impl Fn(&Value) -> Option<T>,
) -> Vec<(String, T)> {
    runs.iter()
        .filter(|r| r["round"].as_u64().unwrap_or(1) == 1)
        .filter_map(|r| {
            let s = r["scenarios"]
                .as_array()?
                .iter()
                .find(|s| s["mode"].as_str() == Some(sc))?;
            Some((target_label(r), pick(s)?))
        })
        .collect()
}

/// The files of a `--report DIR`, report.json first.
pub(super) struct Files<'a> {
    dir: &'a std::path::Path,
    pub written: Vec<std::path::PathBuf>,
}

impl<'a> Files<'a> {
    /// Creates `dir` and writes `report` to report.json in it.
    pub fn start(dir: &'a std::path::Path, report: &Value) -> std::io::Result<Files<'a>> {
        std::fs::create_dir_all(dir)?;
        let mut f = Files {
            dir,
            written: Vec::new(),
        };
        f.put(
            "report.json",
            &serde_json::to_string_pretty(report).unwrap_or_default(),
        )?;
        Ok(f)
    }

    /// Writes `body` to `name` in the report's folder.
    pub fn put(&mut self, name: &str, body: &str) -> std::io::Result<()> {
        let p = self.dir.join(name);
        std::fs::write(&p, body)?;
        self.written.push(p);
        Ok(())
    }
}

/// `--report DIR`: report.json (the `--json` report), report.md (the
/// machine, versions, command, the table, what was skipped, the charts)
/// and SVG charts: req/s per target and scenario, the latency CDF and the
/// per-worker spread per scenario (first round). Returns the files written.
pub fn write_dir(
    dir: &std::path::Path,
    report: &Value,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    use super::svg;
    if report["curve"].is_object() {
        return super::curve::write_dir(dir, report);
    }
    let mut out = Files::start(dir, report)?;
    let mut put = |name: &str, body: &str| out.put(name, body);
    let runs: Vec<&Value> = report["runs"].as_array().into_iter().flatten().collect();
    let mut scenarios: Vec<String> = Vec::new();
    for s in runs
        .iter()
        .flat_map(|r| r["scenarios"].as_array().into_iter().flatten())
    {
        let name = s["mode"].as_str().unwrap_or("?").to_string();
        if !scenarios.contains(&name) {
            scenarios.push(name);
        }
    }
    // Throughput: the median over the rounds of each target and scenario.
    let rows: Vec<(String, f64)> = report["summary"]["medians"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let label = runs
                .iter()
                .find(|r| label(r) == m["mode"].as_str().unwrap_or(""))
                .map_or_else(
                    || m["mode"].as_str().unwrap_or("?").to_string(),
                    |r| target_label(r),
                );
            (
                format!("{label}, {}", m["scenario"].as_str().unwrap_or("?")),
                m["rps"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    put(
        "throughput.svg",
        &svg::bars("requests per second (median of the rounds)", "req/s", &rows),
    )?;
    let mut charts = vec!["throughput.svg".to_string()];
    for sc in &scenarios {
        let series: Vec<(String, Vec<(f64, f64)>)> = first_round(&runs, sc, |s| {
            let pts = s["latency_cdf_us"]
                .as_array()?
                .iter()
                .filter_map(|p| Some((p[1].as_f64()?, p[0].as_f64()?)))
                .collect();
            Some(pts)
        });
        let name = format!("latency-{sc}.svg");
        put(
            &name,
            &svg::cdf(&format!("latency CDF, {sc} (round 1)"), &series),
        )?;
        charts.push(name);
        let spread: Vec<(String, Vec<f64>)> = first_round(&runs, sc, |s| {
            let counts = s["per_worker"]
                .as_object()?
                .iter()
                .filter(|(k, _)| k.as_str() != "?")
                .filter_map(|(_, v)| v.as_f64())
                .collect();
            Some(counts)
        });
        // The sweep: p99 against the rate asked for, per target.
        let sweeps: Vec<(String, Vec<(f64, f64)>)> = first_round(&runs, sc, |s| {
            let pts = s["sweep"]["points"]
                .as_array()?
                .iter()
                .filter_map(|p| Some((p["rate"].as_f64()?, p["p99_us"].as_f64()?)))
                .collect();
            Some(pts)
        });
        if !sweeps.is_empty() {
            let name = format!("sweep-{sc}.svg");
            let x = svg::Axis {
                label: "open-loop rate, req/s",
                log: false,
            };
            let y = svg::Axis {
                label: "p99 latency, µs (log scale)",
                log: true,
            };
            put(
                &name,
                &svg::lines(
                    &format!("p99 against the rate, {sc} (round 1)"),
                    x,
                    y,
                    &sweeps,
                ),
            )?;
            charts.push(name);
        }
        if matches!(sc.as_str(), "crash" | "reload" | "scale" | "memory") {
            continue; // killed workers' pids come and go: no spread to draw
        }
        let name = format!("workers-{sc}.svg");
        put(
            &name,
            &svg::groups(&format!("requests per worker, {sc} (round 1)"), &spread),
        )?;
        charts.push(name);
    }
    let m = &report["machine"];
    let mut md = format!(
        "# herd bench report\n\n- machine: {} CPUs, `{}`, kernel {}\n- herd {}\n",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        report["herd_version"].as_str().unwrap_or("?"),
    );
    for (peer, v) in report["peers"].as_object().into_iter().flatten() {
        md.push_str(&format!(
            "- {peer}: {} (`{}`)\n",
            v["version"].as_str().unwrap_or("?"),
            v["exe"].as_str().unwrap_or("?")
        ));
    }
    md.push_str(&format!(
        "- command: `{}`\n\n```text\n{}\n```\n",
        report["command"].as_str().unwrap_or("herd bench"),
        render(report)
    ));
    let skipped: Vec<String> = report["skipped"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "- {}: {}",
                s["target"].as_str().unwrap_or("?"),
                s["why"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !skipped.is_empty() {
        md.push_str(&format!("\nSkipped:\n\n{}\n", skipped.join("\n")));
    }
    md.push('\n');
    for c in &charts {
        md.push_str(&format!("![{c}]({c})\n\n"));
    }
    md.push_str("Raw data: [report.json](report.json) (every run, every scenario, per-worker counts and latency percentiles).\n");
    put("report.md", &md)?;
    Ok(out.written)
}

/// Renders the report.
pub fn render(report: &Value) -> String {
    if report["curve"].is_object() {
        return super::curve::render(report);
    }
    let cfg = &report["config"];
    let mut out = format!(
        "herd bench: {}, {} connections, {} load threads, {} s per scenario{}, {} CPUs, kernel {}\n\n",
        cfg["app"].as_str().unwrap_or("?"),
        cfg["connections"],
        cfg["threads"],
        cfg["duration_s"],
        if cfg["skew_ms"].as_u64().unwrap_or(0) > 0 {
            format!(", instance 0 slower by {} ms", cfg["skew_ms"])
        } else {
            String::new()
        },
        report["machine"]["cpus"],
        report["machine"]["kernel"].as_str().unwrap_or("?"),
    );
    if let Some(rate) = cfg["rate"].as_f64() {
        out.insert_str(
            out.len() - 1,
            &format!(
                "open loop at {rate} req/s: latency counted from when each request was due (wrk2's correction); uncorrected percentiles in --json `open_loop.service_us`\n"
            ),
        );
    }
    let header = [
        "mode",
        "scenario",
        "req/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "Jain",
        "max/mean",
        "errors",
        "daemon µs/conn",
        "server µs/req",
        "client CPU",
    ];
    let mut rows = Vec::new();
    let mut details = String::new();
    for run in report["runs"].as_array().into_iter().flatten() {
        let mode = match run["policy"].as_str() {
            Some(p) => format!(
                "{} ({p}{})",
                run["mode"].as_str().unwrap_or("?"),
                if run["multishot"] == Value::Bool(false) {
                    ", single-shot"
                } else {
                    ""
                }
            ),
            None => run["mode"].as_str().unwrap_or("?").to_string(),
        };
        if let Some(io) = run["io"].as_str() {
            details.push_str(&format!("{mode}: accept via {io}\n"));
        }
        for s in run["scenarios"].as_array().into_iter().flatten() {
            if let Some(why) = s["skipped"].as_str() {
                details.push_str(&format!(
                    "{mode} {}: skipped ({why})\n",
                    s["mode"].as_str().unwrap_or("?")
                ));
                continue;
            }
            let lat = &s["latency_us"];
            rows.push(vec![
                mode.clone(),
                s["mode"].as_str().unwrap_or("?").to_string(),
                f(&s["rps"], 0),
                lat["p50"].to_string(),
                lat["p99"].to_string(),
                lat["p999"].to_string(),
                lat["max"].to_string(),
                f(&s["fairness"]["jain"], 4),
                f(&s["fairness"]["max_over_mean"], 3),
                s["errors"]["total"].to_string(),
                f(&s["daemon_cpu_us_per_conn"], 2),
                f(&s["server_cpu_us_per_req"], 1),
                s["client_cpu_percent"]
                    .as_f64()
                    .map_or("-".into(), |c| format!("{c:.0}%")),
            ]);
            let per: Vec<String> = s["per_worker"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(pid, n)| format!("pid {pid}: {n}"))
                .collect();
            if let Some(sw) = s["sweep"].as_object() {
                let points: Vec<String> = sw["points"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{} → {} µs", f(&p["rate"], 0), p["p99_us"]))
                    .collect();
                details.push_str(&format!(
                    "{mode} {} sweep: p99 ≤ {} µs up to {} req/s (closed loop {} req/s); rate → p99: {}\n",
                    s["mode"].as_str().unwrap_or("?"),
                    sw["p99_bound_us"],
                    f(&sw["max_rate_within_bound"], 0),
                    f(&sw["closed_loop_rps"], 0),
                    points.join(", ")
                ));
            }
            // The scale and reload scenarios: steps done, and what failed.
            if let Some((what, n, failures)) = [
                ("scale", "scale_steps", "scale_failures"),
                ("reload", "reloads", "reload_failures"),
            ]
            .iter()
            .find_map(|&(w, k, f)| Some((w, s[k].as_u64()?, f)))
            {
                details.push_str(&format!(
                    "{mode} {what}: {n} done ({} failed), {} requests failed ({})\n",
                    s[failures].as_array().map_or(0, Vec::len),
                    s["errors"]["total"],
                    s["errors"]
                ));
                continue;
            }
            if let Some(m) = s["memory"].as_object() {
                let mb = |k: &str| m[k].as_f64().unwrap_or(0.0) / f64::from(1 << 20);
                details.push_str(&format!(
                    "{mode} memory: leaking {} MB/s under a {:.0} MB cap: {} workers replaced, \
                     peak RSS {:.0} MB, longest above the cap {} ms, {} requests failed ({})\n",
                    m["leak_mb_per_s"],
                    mb("cap_bytes"),
                    m["replaced"],
                    mb("peak_rss_bytes"),
                    m["longest_over_cap_ms"],
                    s["errors"]["total"],
                    s["errors"]
                ));
                continue;
            }
            if let Some(k) = s["kills"].as_u64() {
                details.push_str(&format!(
                    "{mode} crash: {k} workers killed, {} requests failed ({})\n",
                    s["errors"]["total"], s["errors"]
                ));
                continue;
            }
            details.push_str(&format!(
                "{mode} {}: {}\n",
                s["mode"].as_str().unwrap_or("?"),
                per.join(", ")
            ));
        }
    }
    out.push_str(&crate::table::table(&header, &rows));
    if report["config"]["rounds"].as_u64().unwrap_or(1) > 1 {
        let rows: Vec<Vec<String>> = report["summary"]["medians"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                vec![
                    m["mode"].as_str().unwrap_or("?").to_string(),
                    m["scenario"].as_str().unwrap_or("?").to_string(),
                    m["rounds"].to_string(),
                    f(&m["rps"], 0),
                    f(&m["vs_reuseport"], 3),
                    f(&m["daemon_cpu_us_per_conn"], 2),
                    f(&m["server_cpu_us_per_req"], 1),
                    f(&m["p99_us"], 0),
                    f(&m["errors"], 0),
                ]
            })
            .collect();
        out.push_str("\n\nmedians over the rounds:\n");
        out.push_str(&crate::table::table(
            &[
                "mode",
                "scenario",
                "rounds",
                "req/s",
                "× reuseport (same round)",
                "daemon µs/conn",
                "server µs/req",
                "p99 µs",
                "errors",
            ],
            &rows,
        ));
    }
    out.push_str("\n\nrequests per worker:\n");
    out.push_str(&details);
    out
}

/// Label of a run: its mode, with the policy for fdpass.
/// A run's target: `fdpass (least-conn)`, `reuseport`, and so on.
pub(super) fn label(run: &Value) -> String {
    match run["policy"].as_str() {
        Some(p) => format!("{} ({p})", run["mode"].as_str().unwrap_or("?")),
        None => run["mode"].as_str().unwrap_or("?").to_string(),
    }
}

/// The median, `None` for no values.
pub(super) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Per mode and scenario: the median req/s and daemon CPU over the rounds,
/// and the median of the per-round ratios of its req/s to reuseport's in
/// the same round and scenario (paired: the machine's speed drifts between
/// rounds, so medians of the two sets would compare different moments).
pub fn summarize(runs: &[Value]) -> Value {
    type Key = (String, String);
    // (label, scenario) → [(round, scenario result)]
    let mut groups: Vec<(Key, Vec<(u64, &Value)>)> = Vec::new();
    for run in runs {
        let round = run["round"].as_u64().unwrap_or(1);
        // A scenario skipped for a target has no figures to summarize.
        let done = |s: &&Value| s["skipped"].is_null();
        for s in run["scenarios"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(done)
        {
            let key = (label(run), s["mode"].as_str().unwrap_or("?").to_string());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push((round, s)),
                None => groups.push((key, vec![(round, s)])),
            }
        }
    }
    let med = |v: &[(u64, &Value)], field: &str| {
        median(v.iter().filter_map(|(_, s)| s[field].as_f64()).collect())
    };
    let reuseport_rps = |scenario: &str, round: u64| {
        groups
            .iter()
            .find(|((mode, sc), _)| mode == "reuseport" && sc == scenario)
            .and_then(|(_, v)| v.iter().find(|(r, _)| *r == round))
            .and_then(|(_, s)| s["rps"].as_f64())
            .filter(|&r| r > 0.0)
    };
    let medians: Vec<Value> = groups
        .iter()
        .map(|((mode, scenario), v)| {
            let ratios: Vec<f64> = v
                .iter()
                .filter_map(|(round, s)| {
                    Some(s["rps"].as_f64()? / reuseport_rps(scenario, *round)?)
                })
                .collect();
            serde_json::json!({
                "mode": mode,
                "scenario": scenario,
                "rounds": v.len(),
                "rps": med(v, "rps"),
                "vs_reuseport": median(ratios),
                "daemon_cpu_us_per_conn": med(v, "daemon_cpu_us_per_conn"),
                "server_cpu_us_per_req": med(v, "server_cpu_us_per_req"),
                "p99_us": median(v.iter().filter_map(|(_, s)| s["latency_us"]["p99"].as_f64()).collect()),
                "errors": median(v.iter().filter_map(|(_, s)| s["errors"]["total"].as_f64()).collect()),
            })
        })
        .collect();
    serde_json::json!({ "medians": medians })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(round: u64, mode: &str, policy: Option<&str>, rps: f64, cpu: f64) -> Value {
        json!({"round": round, "mode": mode, "policy": policy, "scenarios": [
            {"mode": "conn_per_request", "rps": rps, "daemon_cpu_us_per_conn": cpu}
        ]})
    }

    #[test]
    fn medians_per_mode_and_paired_ratio_to_reuseport() {
        // A fast round, a slow one and a middling one: the ratio is taken
        // within each round (0.9, 0.5, 0.95), then its median.
        let runs = [
            run(1, "fdpass", Some("least-conn"), 180.0, 7.0),
            run(1, "reuseport", None, 200.0, 0.0),
            run(2, "fdpass", Some("least-conn"), 50.0, 6.0),
            run(2, "reuseport", None, 100.0, 0.0),
            run(3, "fdpass", Some("least-conn"), 95.0, 9.0),
            run(3, "reuseport", None, 100.0, 0.0),
        ];
        let s = summarize(&runs);
        let m = s["medians"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["mode"], "fdpass (least-conn)");
        assert_eq!(m[0]["rounds"], 3);
        assert_eq!(m[0]["rps"], 95.0);
        assert_eq!(m[0]["daemon_cpu_us_per_conn"], 7.0);
        assert_eq!(m[1]["rps"], 100.0);
        assert_eq!(m[0]["vs_reuseport"], 0.9);
        assert_eq!(m[1]["vs_reuseport"], 1.0);
        assert_eq!(median(vec![1.0, 4.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}

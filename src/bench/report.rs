//! The human-readable `herd bench` report, rendered from the same JSON that
//! `--json` prints (so the two never disagree).

use serde_json::Value;

fn f(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// Renders the report.
pub fn render(report: &Value) -> String {
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
            ]);
            let per: Vec<String> = s["per_worker"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(pid, n)| format!("pid {pid}: {n}"))
                .collect();
            details.push_str(&format!(
                "{mode} {}: {}\n",
                s["mode"].as_str().unwrap_or("?"),
                per.join(", ")
            ));
        }
    }
    out.push_str(&crate::cli::output::table(&header, &rows));
    out.push_str("\n\nrequests per worker:\n");
    out.push_str(&details);
    out
}

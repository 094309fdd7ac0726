//! `herd bench --curve workers|connections[=LIST]`: how herd's cost grows
//! with its work. The whole benchmark (every target, scenario and round)
//! runs once per point, with `-i` or `-c` set to the point; the report
//! keeps every run, one row per point, target and scenario (req/s, daemon
//! and server CPU, fairness, p99), and says, from the figures, whether each
//! cost stays flat per connection across the curve.

use serde_json::{json, Value};

use super::report::{f, label, median};
use super::BenchArgs;
use crate::error::{Error, Result};

/// What a curve varies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Axis {
    /// `-i`: oversubscribing the cores on purpose.
    Workers,
    /// `-c`: concurrent connections (the fd limit raised for it).
    Connections,
}

impl Axis {
    fn as_str(self) -> &'static str {
        match self {
            Axis::Workers => "workers",
            Axis::Connections => "connections",
        }
    }
}

/// A parsed `--curve`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Curve {
    pub axis: Axis,
    pub values: Vec<u64>,
}

/// The points when `--curve` names only the axis.
const WORKERS: &[u64] = &[2, 4, 8, 16, 32, 64, 128, 256];
const CONNECTIONS: &[u64] = &[64, 256, 1000, 4000, 10_000];

/// At or below this ratio of the last point's cost to the first's, a
/// cost is said to stay flat (per connection: O(1) in the axis); above it,
/// to grow as about axis^slope, the slope of the two on a log-log scale.
const FLAT: f64 = 1.2;

/// `workers`, `connections`, or either with `=2,4,8`.
pub(super) fn parse(s: &str) -> Result<Curve> {
    let bad = |why: &str| Error::InvalidArg {
        what: "--curve".into(),
        value: s.into(),
        expected: format!(
            "`workers` or `connections`, optionally with `=` and a comma list of points \
             (e.g. `workers=2,8,32`){why}"
        ),
    };
    let (name, list) = s.split_once('=').unwrap_or((s, ""));
    let axis = match name.trim() {
        "workers" => Axis::Workers,
        "connections" => Axis::Connections,
        _ => return Err(bad("")),
    };
    let values: Vec<u64> = if list.trim().is_empty() {
        match axis {
            Axis::Workers => WORKERS.to_vec(),
            Axis::Connections => CONNECTIONS.to_vec(),
        }
    } else {
        list.split(',')
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| (1..=100_000).contains(&n))
            })
            .collect::<Option<_>>()
            .ok_or_else(|| bad(": each point a whole number from 1 to 100000"))?
    };
    if values.len() < 2 {
        return Err(bad(": at least two points"));
    }
    Ok(Curve { axis, values })
}

/// Runs the benchmark `a` describes once per point of `curve` (with
/// `once`, the plain run) and returns the curve's report.
pub(super) fn run(
    a: &BenchArgs,
    curve: &Curve,
    once: impl Fn(&BenchArgs) -> Result<Value>,
) -> Result<Value> {
    let fd_limit = crate::sys::raise_fd_limit();
    let mut reports = Vec::new();
    for (k, &x) in curve.values.iter().enumerate() {
        eprintln!(
            "herd bench: curve point {}/{}: {} = {x}",
            k + 1,
            curve.values.len(),
            curve.axis.as_str()
        );
        let mut point = a.clone();
        point.curve = None;
        match curve.axis {
            Axis::Workers => point.instances = x.to_string(),
            Axis::Connections => point.connections = x as usize,
        }
        reports.push((x, once(&point)?));
    }
    let mut report = reports.first().map(|r| r.1.clone()).unwrap_or_default();
    let mut runs = Vec::new();
    for (x, r) in &reports {
        for run in r["runs"].as_array().into_iter().flatten() {
            let mut run = run.clone();
            run["curve_x"] = json!(x);
            runs.push(run);
        }
    }
    let points = points(&runs);
    report["command"] = json!(std::env::args().collect::<Vec<_>>().join(" "));
    report["config"]["fd_limit"] = json!(fd_limit);
    report["curve"] = json!({
        "axis": curve.axis.as_str(),
        "values": curve.values,
        "points": points,
        "verdicts": verdicts(curve.axis.as_str(), &points),
    });
    report["runs"] = Value::Array(runs);
    // Medians over points of different sizes mean nothing: the curve's
    // rows are the summary.
    report["summary"] = json!({ "medians": [] });
    Ok(report)
}

/// One row per point, target and scenario: the medians over its rounds.
fn points(runs: &[Value]) -> Vec<Value> {
    let mut keys: Vec<(u64, String, String)> = Vec::new();
    for r in runs {
        for s in r["scenarios"].as_array().into_iter().flatten() {
            let key = (
                r["curve_x"].as_u64().unwrap_or(0),
                label(r),
                s["mode"].as_str().unwrap_or("?").to_string(),
            );
            if !keys.contains(&key) && s["skipped"].is_null() {
                keys.push(key);
            }
        }
    }
    keys.into_iter()
        .map(|(x, target, scenario)| {
            let of: Vec<&Value> = runs
                .iter()
                .filter(|r| r["curve_x"].as_u64() == Some(x) && label(r) == target)
                .flat_map(|r| r["scenarios"].as_array().into_iter().flatten())
                .filter(|s| s["mode"].as_str() == Some(scenario.as_str()))
                .collect();
            let med = |f: &dyn Fn(&Value) -> Option<f64>| {
                median(of.iter().filter_map(|s| f(s)).collect())
            };
            json!({
                "x": x,
                "target": target,
                "scenario": scenario,
                "rps": med(&|s| s["rps"].as_f64()),
                "daemon_cpu_us_per_conn": med(&|s| s["daemon_cpu_us_per_conn"].as_f64()),
                "server_cpu_us_per_req": med(&|s| s["server_cpu_us_per_req"].as_f64()),
                "jain": med(&|s| s["fairness"]["jain"].as_f64()),
                "max_over_mean": med(&|s| s["fairness"]["max_over_mean"].as_f64()),
                "p99_us": med(&|s| s["latency_us"]["p99"].as_f64()),
                "errors": med(&|s| s["errors"]["total"].as_f64()),
            })
        })
        .collect()
}

/// The costs a curve judges: the field and how it reads.
const COSTS: &[(&str, &str)] = &[
    ("daemon_cpu_us_per_conn", "daemon CPU per connection"),
    ("server_cpu_us_per_req", "server CPU per request"),
];

/// Per target, scenario and cost: its first and last figure, their ratio,
/// and whether it stays flat (ratio ≤ [`FLAT`]) across the axis.
fn verdicts(axis: &str, points: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for p in points {
        let key = (
            p["target"].as_str().unwrap_or("?").to_string(),
            p["scenario"].as_str().unwrap_or("?").to_string(),
        );
        if seen.contains(&key) {
            continue;
        }
        seen.push(key.clone());
        let line: Vec<&Value> = points
            .iter()
            .filter(|q| q["target"] == key.0.as_str() && q["scenario"] == key.1.as_str())
            .collect();
        for &(field, what) in COSTS {
            let figures: Vec<(u64, f64)> = line
                .iter()
                .filter_map(|q| Some((q["x"].as_u64()?, q[field].as_f64()?)))
                // A daemon that does nothing per connection (reuseport,
                // shared) has no cost to grow.
                .filter(|&(_, v)| v > 0.05)
                .collect();
            let (first, last) = match figures[..] {
                [first, .., last] => (first, last),
                _ => continue, // fewer than two points: nothing to compare
            };
            let ratio = last.1 / first.1;
            let flat = ratio <= FLAT;
            let span = last.0 as f64 / first.0.max(1) as f64;
            let slope = ratio.ln() / span.ln().max(1e-9);
            let verdict = if flat {
                "flat: O(1) per connection across the curve".to_string()
            } else {
                format!("grows as about {axis}^{slope:.2}")
            };
            out.push(json!({
                "target": key.0, "scenario": key.1, "cost": field,
                "first": {"x": first.0, "value": first.1}, "last": {"x": last.0, "value": last.1},
                "ratio": ratio, "flat": flat, "slope": slope,
                "line": format!(
                    "{} {}: {what} {:.2} µs at {} {axis} → {:.2} µs at {} (×{ratio:.2} for ×{span:.0} {axis}): {verdict}",
                    key.0, key.1, first.1, first.0, last.1, last.0,
                ),
            }));
        }
    }
    out
}

/// The terminal report of a curve: one row per point, then the verdicts.
pub(super) fn render(report: &Value) -> String {
    let c = &report["curve"];
    let axis = c["axis"].as_str().unwrap_or("?");
    let header = [
        axis,
        "target",
        "scenario",
        "req/s",
        "daemon µs/conn",
        "server µs/req",
        "Jain",
        "max/mean",
        "p99 µs",
        "errors",
    ];
    let rows: Vec<Vec<String>> = c["points"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                p["x"].to_string(),
                p["target"].as_str().unwrap_or("?").into(),
                p["scenario"].as_str().unwrap_or("?").into(),
                f(&p["rps"], 0),
                f(&p["daemon_cpu_us_per_conn"], 2),
                f(&p["server_cpu_us_per_req"], 1),
                f(&p["jain"], 4),
                f(&p["max_over_mean"], 3),
                f(&p["p99_us"], 0),
                f(&p["errors"], 0),
            ]
        })
        .collect();
    let m = &report["machine"];
    let mut out = format!(
        "herd bench --curve {axis}: {} CPUs, `{}`, kernel {}, fd limit {}\n\n",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        report["config"]["fd_limit"]
    );
    out.push_str(&crate::table::table(&header, &rows));
    out.push('\n');
    for v in c["verdicts"].as_array().into_iter().flatten() {
        out.push_str(v["line"].as_str().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// `--report DIR` for a curve: report.json, report.md and one chart per
/// figure against the axis (log scale), a line per target and scenario.
pub(super) fn write_dir(
    dir: &std::path::Path,
    report: &Value,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    use super::svg;
    let c = &report["curve"];
    let axis = c["axis"].as_str().unwrap_or("?");
    let points: Vec<&Value> = c["points"].as_array().into_iter().flatten().collect();
    // A line per target and scenario, named by the target alone when the
    // curve has one scenario.
    let one_scenario = points
        .iter()
        .all(|p| p["scenario"] == points[0]["scenario"]);
    let name = |p: &Value| match one_scenario {
        true => p["target"].as_str().unwrap_or("?").to_string(),
        false => format!(
            "{}, {}",
            p["target"].as_str().unwrap_or("?"),
            p["scenario"].as_str().unwrap_or("?")
        ),
    };
    let mut lines: Vec<String> = Vec::new();
    for p in &points {
        let l = name(p);
        if !lines.contains(&l) {
            lines.push(l);
        }
    }
    let mut out = super::report::Files::start(dir, report)?;
    let mut charts = Vec::new();
    let mut put = |name: &str, body: &str| out.put(name, body);
    for (field, what, log_y) in [
        (
            "daemon_cpu_us_per_conn",
            "daemon CPU per connection, µs",
            false,
        ),
        ("server_cpu_us_per_req", "server CPU per request, µs", false),
        ("jain", "Jain's fairness index", false),
        ("rps", "requests per second", false),
        ("p99_us", "p99 latency, µs (log scale)", true),
    ] {
        let series: Vec<(String, Vec<(f64, f64)>)> = lines
            .iter()
            .map(|l| {
                let pts = points
                    .iter()
                    .filter(|p| name(p) == *l)
                    .filter_map(|p| Some((p["x"].as_f64()?, p[field].as_f64()?)))
                    .collect();
                (l.clone(), pts)
            })
            .filter(|(_, pts): &(String, Vec<(f64, f64)>)| !pts.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let name = format!("curve-{field}.svg");
        let x = svg::Axis {
            label: &format!("{axis} (log scale)"),
            log: true,
        };
        let y = svg::Axis {
            label: what,
            log: log_y,
        };
        put(
            &name,
            &svg::lines(&format!("{what} against {axis}"), x, y, &series),
        )?;
        charts.push(name);
    }
    let mut md = format!(
        "# herd bench scaling curve: {axis}\n\n- command: `{}`\n- herd {}\n\n```text\n{}```\n\n",
        report["command"].as_str().unwrap_or("herd bench"),
        report["herd_version"].as_str().unwrap_or("?"),
        render(report)
    );
    for name in &charts {
        md.push_str(&format!("![{name}]({name})\n\n"));
    }
    put("report.md", &md)?;
    Ok(out.written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_axes_lists_and_refuses_the_rest() {
        assert_eq!(parse("workers").unwrap().values, WORKERS);
        let c = parse("connections=64, 1000").unwrap();
        assert_eq!((c.axis, c.values), (Axis::Connections, vec![64, 1000]));
        for bad in [
            "cores",
            "workers=2",
            "workers=2,x",
            "workers=0,4",
            "connections=",
        ] {
            let r = parse(bad);
            if bad == "connections=" {
                assert!(r.is_ok(), "an empty list is the default points");
                continue;
            }
            let e = r.unwrap_err().to_string();
            assert!(e.contains("--curve") && e.contains(bad), "{e}");
        }
    }

    fn run(x: u64, mode: &str, cpu: f64, server: f64) -> Value {
        json!({"mode": mode, "curve_x": x, "round": 1, "scenarios": [{
            "mode": "conn_per_request", "rps": 1000.0, "daemon_cpu_us_per_conn": cpu,
            "server_cpu_us_per_req": server, "fairness": {"jain": 0.99, "max_over_mean": 1.01},
            "latency_us": {"p99": 900}, "errors": {"total": 0},
        }]})
    }

    #[test]
    fn a_flat_cost_and_a_growing_one_are_told_apart() {
        let runs = [
            run(2, "fdpass", 10.0, 40.0),
            run(256, "fdpass", 11.5, 130.0),
            run(2, "reuseport", 0.0, 30.0),
            run(256, "reuseport", 0.0, 31.0),
        ];
        let p = points(&runs);
        assert_eq!(p.len(), 4);
        let v = verdicts("workers", &p);
        let find = |t: &str, cost: &str| {
            v.iter()
                .find(|v| v["target"] == t && v["cost"] == cost)
                .cloned()
                .unwrap_or_else(|| panic!("no verdict for {t} {cost}: {v:?}"))
        };
        assert_eq!(find("fdpass", "daemon_cpu_us_per_conn")["flat"], true);
        let server = find("fdpass", "server_cpu_us_per_req");
        assert_eq!(server["flat"], false);
        assert!(
            server["line"].as_str().unwrap().contains("×3.25"),
            "{server}"
        );
        assert_eq!(find("reuseport", "server_cpu_us_per_req")["flat"], true);
        // A daemon doing nothing per connection has no daemon verdict.
        assert!(!v
            .iter()
            .any(|v| v["target"] == "reuseport" && v["cost"] == "daemon_cpu_us_per_conn"));
    }
}

//! `herd bench`'s scenarios that start the server their own way (`skew`,
//! `memory`), the open-loop `--sweep` and the scaling `--curve` (#20), each
//! on a bounded run of the built-in hello worker.

use crate::bench::{bench_json, charts_are_well_formed_and_name};
use crate::harness::TestHome;

/// `--scenario memory`: every hello worker leaks 40 MB/s under a 24 MB
/// cap; herd replaces each one that crosses it (fdpass: the replacement
/// first, nothing lost), so no worker stays above the cap for long.
#[test]
fn memory_scenario_replaces_leaking_workers_quickly_and_loses_nothing() {
    let h = TestHome::exclusive();
    let j = bench_json(
        &h,
        &[
            "-d",
            "3",
            "--scenario",
            "memory",
            "--max-memory",
            "24M",
            "--leak",
            "40",
        ],
    );
    let s = &j["runs"][0]["scenarios"][0];
    assert_eq!(s["mode"], "memory", "{s:#}");
    let m = &s["memory"];
    assert_eq!(m["cap_bytes"], 24 << 20);
    assert!(
        m["peak_rss_bytes"].as_u64().unwrap() > 24 << 20,
        "the leak crossed the cap: {m}"
    );
    // 40 MB/s from a few MB to 24 MB: a crossing about every 0.5 s each.
    assert!(m["replaced"].as_u64().unwrap() >= 4, "{m}");
    assert!(
        m["longest_over_cap_ms"].as_u64().unwrap() < 1500,
        "a worker stayed above its cap too long: {m}"
    );
    assert_eq!(s["errors"]["total"], 0, "{s:#}");
    assert!(s["requests"].as_u64().unwrap() > 1000, "{s:#}");
    h.run(&["bench", "--scenario", "memory", "--max-memory", "12X"])
        .fails_with("--max-memory");
}

/// The memory scenario with a Node app that timers keep alive
/// (bench-apps/node/leak.js): herd replaces each worker over its cap
/// without waiting on the other's replacement, and the old one, once it
/// serves nothing, is asked to stop at once instead of after
/// `kill_timeout` (it stayed above its cap 3.4 s before).
#[test]
fn memory_scenario_with_a_leaking_node_app_acts_within_two_seconds() {
    if !crate::harness::node_available() {
        return;
    }
    let h = TestHome::exclusive();
    let app = crate::harness::app("node/leak.js");
    let j = bench_json(
        &h,
        &[
            "-d",
            "3",
            "--app",
            &app,
            "--scenario",
            "memory",
            "--max-memory",
            "64M",
            "--leak",
            "40",
        ],
    );
    let s = &j["runs"][0]["scenarios"][0];
    let m = &s["memory"];
    assert!(m["replaced"].as_u64().unwrap() >= 2, "{m}");
    assert!(
        m["longest_over_cap_ms"].as_u64().unwrap() < 2000,
        "a Node worker stayed above its cap too long: {m}"
    );
    assert_eq!(s["errors"]["total"], 0, "{s:#}");
}

/// `--scenario skew`: instance 0 answers 20 ms later; least-conn routes
/// around it, the kernel's reuseport cannot, and the p99s show it.
#[test]
fn skew_scenario_slows_one_instance_and_least_conn_routes_around_it() {
    let h = TestHome::exclusive();
    let j = bench_json(
        &h,
        &[
            "-d",
            "2",
            "--scenario",
            "skew",
            "--skew-ms",
            "20",
            "--compare",
            "fdpass,reuseport",
        ],
    );
    let of = |mode: &str| {
        j["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["mode"] == mode)
            .map(|r| r["scenarios"][0].clone())
            .unwrap_or_else(|| panic!("no {mode} run: {j:#}"))
    };
    let (fd, rp) = (of("fdpass"), of("reuseport"));
    assert_eq!(fd["mode"], "skew");
    let p99 = |s: &serde_json::Value| s["latency_us"]["p99"].as_u64().unwrap();
    assert!(
        p99(&rp) >= 20_000,
        "half of reuseport's connections wait on the slow one: {rp:#}"
    );
    assert!(
        p99(&fd) * 2 <= p99(&rp),
        "least-conn p99 {} µs against reuseport's {} µs",
        p99(&fd),
        p99(&rp)
    );
}

/// `--sweep`: after the closed-loop run, six open-loop runs bisect for the
/// highest rate whose p99 stays within the bound.
#[test]
fn sweep_finds_a_rate_within_the_p99_bound() {
    let h = TestHome::exclusive();
    let j = bench_json(&h, &["-d", "1", "--scenario", "close", "--sweep", "50ms"]);
    let s = &j["runs"][0]["scenarios"][0];
    let sw = &s["sweep"];
    assert_eq!(sw["p99_bound_us"], 50_000);
    let points = sw["points"].as_array().unwrap();
    assert_eq!(points.len(), 6, "{sw:#}");
    let rates: Vec<f64> = points.iter().map(|p| p["rate"].as_f64().unwrap()).collect();
    assert!(rates.windows(2).all(|w| w[0] <= w[1]), "{rates:?}");
    let closed = sw["closed_loop_rps"].as_f64().unwrap();
    assert!((closed - s["rps"].as_f64().unwrap()).abs() < 1e-6);
    // Half the closed-loop rate is well within 50 ms on any machine.
    assert!(points.iter().any(|p| p["held"] == true), "{sw:#}");
    let best = sw["max_rate_within_bound"].as_f64().unwrap();
    assert!(best >= closed / 2.0 && best <= closed * 1.25, "{sw:#}");
    for p in points {
        let (p99, held) = (p["p99_us"].as_u64().unwrap(), p["held"] == true);
        assert_eq!(held, p99 <= 50_000 && p["errors"] == 0, "{p}");
    }
    h.run(&["bench", "--sweep", "0ms"]).fails_with("--sweep");
    h.run(&["bench", "--sweep", "5ms", "--rate", "100"])
        .fails_with("--rate");
}

/// `--curve workers=1,3`: the benchmark runs once per point with `-i` set
/// to it; the report has a row per point and target, verdicts, and charts.
#[test]
fn curve_runs_once_per_point_and_charts_the_costs() {
    let h = TestHome::exclusive();
    let dir = h.root.join("curve");
    let r = h
        .run(&[
            "bench",
            "-d",
            "1",
            "-c",
            "8",
            "--scenario",
            "close",
            "--compare",
            "fdpass,reuseport",
            "--curve",
            "workers=1,3",
            "--report",
            dir.to_str().unwrap(),
            "--json",
        ])
        .ok();
    let j = r.json();
    let points = j["curve"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 4, "2 points × 2 targets: {points:#?}");
    for p in points {
        assert!(p["rps"].as_f64().unwrap() > 0.0, "{p}");
    }
    // The run at 3 workers spread its load over 3.
    let at3 = j["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["curve_x"] == 3 && r["mode"] == "fdpass")
        .unwrap();
    assert_eq!(
        at3["scenarios"][0]["per_worker"].as_object().unwrap().len(),
        3,
        "{at3:#}"
    );
    let verdicts = j["curve"]["verdicts"].as_array().unwrap();
    assert!(
        verdicts
            .iter()
            .any(|v| v["target"] == "fdpass (least-conn)" && v["cost"] == "daemon_cpu_us_per_conn"),
        "{verdicts:#?}"
    );
    assert!(j["config"]["fd_limit"].as_u64().unwrap() > 0);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("scaling curve: workers") && md.contains("curve-jain.svg"),
        "{md}"
    );
    charts_are_well_formed_and_name(
        &dir,
        &[
            "curve-daemon_cpu_us_per_conn.svg",
            "curve-jain.svg",
            "curve-rps.svg",
        ],
        "reuseport",
    );
    h.run(&["bench", "--curve", "cores"]).fails_with("--curve");
    h.run(&["bench", "--curve", "workers=2"])
        .fails_with("at least two");
}

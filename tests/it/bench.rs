//! `herd bench --check` (#20): CI's fairness gate passes a fair run and
//! fails a deliberately unfair one, with exit codes, from a live run and
//! from a saved `--json` report.

use crate::harness::TestHome;

const FAIR: &str = "[conn_per_request]\nmin_jain = 0.9\nmax_max_over_mean = 1.3\nmax_errors = 0\n";
/// What a fair split clears easily and least-conn routing around a worker
/// 20 ms slower per response cannot.
const EVEN: &str = "[conn_per_request.fdpass]\nmin_jain = 0.95\n";

#[test]
fn check_passes_a_fair_run_and_fails_an_unfair_one() {
    let h = TestHome::exclusive();
    let fair = h.root.join("fair.toml");
    let even = h.root.join("even.toml");
    std::fs::write(&fair, FAIR).unwrap();
    std::fs::write(&even, EVEN).unwrap();
    let bench = [
        "bench",
        "-i",
        "2",
        "-d",
        "1",
        "-c",
        "16",
        "--scenario",
        "close",
    ];
    let mut args = bench.to_vec();
    args.extend(["--json", "--check", fair.to_str().unwrap()]);
    let r = h.run(&args).ok();
    assert!(
        r.stderr
            .contains("PASS conn_per_request fdpass (least-conn): min_jain"),
        "{}",
        r.stderr
    );
    let saved = h.root.join("fair.json");
    std::fs::write(&saved, &r.stdout).unwrap();
    // The same report, saved: passes the fair gate, and the even one too.
    for t in [&fair, &even] {
        h.run(&[
            "bench",
            "--check",
            t.to_str().unwrap(),
            "--results",
            saved.to_str().unwrap(),
        ])
        .ok();
    }

    // One worker 20 ms slower: least-conn rightly sends it little, so the
    // split is uneven and the even gate fails, naming the key.
    let mut args = bench.to_vec();
    args.extend(["--skew-ms", "20", "--check", even.to_str().unwrap()]);
    let r = h.run(&args).fails_with("1 of 1 thresholds in");
    assert!(
        r.stdout
            .contains("FAIL conn_per_request fdpass (least-conn): min_jain"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("(by "), "{}", r.stdout);
}

#[test]
fn check_refuses_bad_thresholds_before_running_and_a_missing_scenario_fails() {
    let h = TestHome::new();
    let bad = h.root.join("bad.toml");
    std::fs::write(&bad, "[conn_per_request]\nmin_jian = 0.99\n").unwrap();
    let t0 = std::time::Instant::now();
    h.run(&["bench", "-d", "30", "--check", bad.to_str().unwrap()])
        .fails_with("min_jian");
    assert!(t0.elapsed().as_secs() < 10, "it ran the 30 s bench first");
    let report = h.root.join("r.json");
    std::fs::write(
        &report,
        r#"{"runs": [{"round": 1, "mode": "reuseport", "policy": null, "scenarios": []}]}"#,
    )
    .unwrap();
    let keep = h.root.join("keep.toml");
    std::fs::write(&keep, "[keep_alive]\nmax_errors = 0\n").unwrap();
    let r = h
        .run(&[
            "bench",
            "--check",
            keep.to_str().unwrap(),
            "--results",
            report.to_str().unwrap(),
        ])
        .fails_with("thresholds in");
    assert!(
        r.stdout.contains("FAIL keep_alive reuseport: no results"),
        "{}",
        r.stdout
    );
    h.run(&["bench", "--results", report.to_str().unwrap()])
        .fails_with("--check");
}

/// Each of `charts` in `dir` is well-formed SVG and names `target`.
pub(crate) fn charts_are_well_formed_and_name(
    dir: &std::path::Path,
    charts: &[&str],
    target: &str,
) {
    for svg in charts {
        let text = std::fs::read_to_string(dir.join(svg)).unwrap();
        well_formed_svg(&text).unwrap_or_else(|e| panic!("{svg}: {e}\n{text}"));
        assert!(text.contains(target), "{svg} names {target}");
    }
}

/// Whether `text` is well-formed markup with an `<svg>` root: every tag
/// closed in order, attributes quoted (a strict check, not a renderer).
pub(crate) fn well_formed_svg(text: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text.trim();
    if !rest.starts_with("<svg") {
        return Err("no <svg> root".into());
    }
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').ok_or("unclosed <")? + i;
        let tag = &rest[i + 1..end];
        if tag.matches('"').count() % 2 != 0 {
            return Err(format!("unbalanced quotes in <{tag}>"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("");
            stack.push(name.to_string());
        }
        rest = &rest[end + 1..];
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("left open: {stack:?}"))
    }
}

#[test]
fn report_writes_json_markdown_and_svg_charts() {
    let h = TestHome::exclusive();
    let dir = h.root.join("report");
    let d = dir.to_str().unwrap();
    let r = h
        .run(&[
            "bench",
            "-i",
            "2",
            "-d",
            "1",
            "-c",
            "8",
            "--scenario",
            "close",
            "--mode",
            "all",
            "--report",
            d,
        ])
        .ok();
    assert!(r.stderr.contains("wrote 5 files"), "{}", r.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        json["runs"].as_array().unwrap().len(),
        3,
        "fdpass, reuseport, shared"
    );
    assert!(!json["machine"]["cpu_model"].as_str().unwrap().is_empty());
    let s = &json["runs"][0]["scenarios"][0];
    assert_eq!(s["latency_cdf_us"].as_array().unwrap().len(), 12);
    assert!(
        s["server_cpu_us_per_req"].as_f64().is_some_and(|c| c > 0.0),
        "{s:#}"
    );
    assert!(s["client_cpu_percent"].as_f64().is_some());
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "# herd bench report",
        "- machine: ",
        "kernel",
        "- command: `",
        "![throughput.svg](throughput.svg)",
        "fdpass (least-conn)",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    charts_are_well_formed_and_name(
        &dir,
        &[
            "throughput.svg",
            "latency-conn_per_request.svg",
            "workers-conn_per_request.svg",
        ],
        "herd reuseport",
    );
    // The charts are redrawn from the saved JSON alone.
    let again = h.root.join("again");
    h.run(&[
        "bench",
        "--results",
        dir.join("report.json").to_str().unwrap(),
        "--report",
        again.to_str().unwrap(),
    ])
    .ok();
    assert!(again.join("throughput.svg").is_file());
    assert!(
        well_formed_svg("<svg><g></svg>").is_err(),
        "the checker can fail"
    );
}

#[test]
fn compare_skips_missing_peers_with_the_reason_and_runs_the_rest() {
    if !crate::harness::node_available() {
        return;
    }
    let h = TestHome::exclusive()
        .with_env("HERD_PEERS", "/nonexistent")
        .with_env("HERD_PM2", "/nonexistent/pm2")
        .with_env("HERD_NGINX", "/nonexistent/nginx")
        .with_env("PATH", "/usr/bin:/bin");
    let app = crate::harness::app("node/app.js");
    let r = h
        .run(&[
            "bench",
            "-i",
            "1",
            "-d",
            "1",
            "-c",
            "4",
            "--scenario",
            "close",
            "--app",
            &app,
            "--compare",
            "fdpass,pm2,nginx,node",
            "--json",
        ])
        .ok();
    let j = r.json();
    let skipped: Vec<(String, String)> = j["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["target"].as_str().unwrap().into(),
                s["why"].as_str().unwrap().into(),
            )
        })
        .collect();
    let why = |t: &str| skipped.iter().find(|(n, _)| n == t).map(|(_, w)| w.clone());
    // PM2 is absent here unless the machine has it on /usr/bin.
    if !std::path::Path::new("/usr/bin/pm2").exists() {
        assert!(
            why("pm2").is_some_and(|w| w.contains("not installed")),
            "{skipped:?}"
        );
        assert!(r.stderr.contains("skipping pm2"), "{}", r.stderr);
    }
    assert!(
        why("nginx").is_some_and(|w| w.contains("hello worker")),
        "{skipped:?}"
    );
    let modes: Vec<&str> = j["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert!(
        modes.contains(&"fdpass") && modes.contains(&"node"),
        "{modes:?}"
    );
    let node = j["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["mode"] == "node")
        .unwrap();
    let s = &node["scenarios"][0];
    assert!(
        s["requests"].as_u64().unwrap() > 0 && s["errors"]["total"] == 0,
        "{s:#}"
    );
    assert_eq!(s["fairness"]["workers"], 1);
    // A name that is no target: one line naming it.
    h.run(&["bench", "--compare", "apache"])
        .fails_with("apache");
}

/// herd's load generator counts what the servers say they served: on a
/// bounded run against the hello worker, its total and its per-worker
/// counts (by the `X-Worker` pid) equal the requests each worker reported
/// to the daemon (`herd metrics`), and the daemon's accepted count.
#[test]
fn the_generators_counts_match_the_servers() {
    use herd::bench::load::LoadMode;
    let h = TestHome::new();
    let port = crate::harness::free_port();
    let list = crate::reuseport::start_hello_mode(&h, port, "fdpass", &["-i", "2"]);
    let pids: Vec<i64> = crate::harness::pids(&list);
    // The readiness probes' requests are reported a moment later: the
    // starting point is once every accepted one is.
    let reported = |s: &serde_json::Value| -> u64 {
        s["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["requests"].as_u64().unwrap())
            .sum()
    };
    let settle = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let before = loop {
        let s = h.run(&["metrics", "--json"]).ok().json();
        if reported(&s) == s["apps"][0]["accepted"].as_u64().unwrap()
            || std::time::Instant::now() > settle
        {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let accepted0 = before["apps"][0]["accepted"].as_u64().unwrap();
    let reported0 = reported(&before);
    const N: u64 = 3000;
    let r = crate::harness::load(port, LoadMode::ConnPerRequest, 8, 2, N);
    assert_eq!(r.requests, N, "{:?}", r.errors);
    // Reports reach the daemon within a few hundred ms.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let snap = loop {
        let s = h.run(&["metrics", "--json"]).ok().json();
        if reported(&s) - reported0 >= N || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        snap["apps"][0]["accepted"].as_u64().unwrap() - accepted0,
        N,
        "one connection per request"
    );
    for (inst, pid) in snap["instances"].as_array().unwrap().iter().zip(&pids) {
        let b = before["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["pid"] == inst["pid"])
            .unwrap();
        let served = inst["requests"].as_u64().unwrap() - b["requests"].as_u64().unwrap();
        let counted = r
            .per_worker
            .get(&inst["pid"].as_i64().unwrap().to_string())
            .copied()
            .unwrap_or(0);
        assert_eq!(
            counted, served,
            "worker {pid}: the generator's count against the worker's own"
        );
    }
}

/// One `herd bench -i 2 -c 8 --json` run of scenario `name` for `secs`
/// with `--NAME-every every`; the first target's result for it.
fn scenario_run(h: &TestHome, name: &str, secs: &str, every: &str) -> serde_json::Value {
    let flag = format!("--{name}-every");
    let j = bench_json(h, &["-d", secs, "--scenario", name, &flag, every]);
    let s = j["runs"][0]["scenarios"][0].clone();
    assert_eq!(s["mode"], name, "{s:#}");
    s
}

/// `herd bench -i 2 -c 8 --json` with `args` added: its JSON report.
pub(crate) fn bench_json(h: &TestHome, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench", "-i", "2", "-c", "8", "--json"];
    all.extend_from_slice(args);
    h.run(&all).ok().json()
}

/// `--scenario crash`: a worker is killed with SIGKILL every interval
/// while connection-per-request load runs; herd restarts it, and the run
/// reports the kills and the failed requests by kind. fdpass hands what
/// a dead worker never touched to another (#15), so failures stay far
/// below the kills.
#[test]
fn crash_scenario_kills_workers_and_counts_what_failed() {
    let h = TestHome::exclusive();
    let s = &scenario_run(&h, "crash", "3", "300ms");
    let kills = s["kills"].as_u64().unwrap();
    assert!(kills >= 4, "a kill every 300 ms for 3 s: {kills}");
    assert!(s["requests"].as_u64().unwrap() > 1000, "{s:#}");
    let failed = s["errors"]["total"].as_u64().unwrap();
    assert!(
        failed <= kills,
        "fdpass: {failed} failed over {kills} kills: {s:#}"
    );
    assert!(
        s["fairness"]["jain"].is_null(),
        "no fairness over pids that change"
    );
    h.run(&["bench", "--scenario", "crash", "--crash-every", "0"])
        .fails_with("--crash-every");
}

/// `--scenario reload`: herd reloads the app every interval under
/// connection-per-request load; with fdpass nothing fails (the listener
/// never closes, the old worker finishes what it has).
#[test]
fn reload_scenario_reloads_under_load_and_counts_what_failed() {
    let h = TestHome::exclusive();
    let s = &scenario_run(&h, "reload", "4", "500ms");
    assert!(s["reloads"].as_u64().unwrap() >= 2, "{s:#}");
    assert_eq!(s["reload_failures"].as_array().unwrap().len(), 0, "{s:#}");
    assert_eq!(
        s["errors"]["total"], 0,
        "fdpass loses nothing to a reload: {s:#}"
    );
    assert!(s["requests"].as_u64().unwrap() > 1000);
}

/// `--scenario scale`: herd goes to twice its instances and back every
/// interval under load; fdpass loses nothing, and the new instances serve.
#[test]
fn scale_scenario_scales_up_and_down_under_load() {
    let h = TestHome::exclusive();
    let s = &scenario_run(&h, "scale", "4", "700ms");
    assert!(s["scale_steps"].as_u64().unwrap() >= 2, "{s:#}");
    assert_eq!(s["scale_failures"].as_array().unwrap().len(), 0, "{s:#}");
    assert_eq!(s["errors"]["total"], 0, "{s:#}");
    assert!(
        s["per_worker"].as_object().unwrap().len() > 2,
        "the added instances served: {s:#}"
    );
}

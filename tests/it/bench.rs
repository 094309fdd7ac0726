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

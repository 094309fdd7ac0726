//! `herd bench --check thresholds.toml`: pass/fail for CI, judged on the
//! same JSON report `--json` prints.
//!
//! One table per scenario, named as the report names it
//! (`[conn_per_request]`, `[keep_alive]`). Its keys hold for every target
//! of the run; a sub-table named after a target (`[conn_per_request.fdpass]`,
//! `[keep_alive.reuseport]`, or the full label `"fdpass (round-robin)"`)
//! holds for that target only and must find it in the run. Quality
//! thresholds (fairness, errors, tail latency) must hold in every round;
//! throughput and cost ones are judged on the median over the rounds, and a
//! ratio to another target on the median of the per-round ratios (the two
//! measured in the same round, as `summary.medians` does).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::report::{label, median};
use crate::error::{Error, Result};

/// The scenario names a table may have.
const SCENARIOS: &[&str] = &[
    "conn_per_request",
    "keep_alive",
    "skew",
    "crash",
    "reload",
    "scale",
    "memory",
];

/// One threshold: its key, what it reads, and which way it must hold.
struct Key {
    name: &'static str,
    /// The figure, from one scenario result.
    read: fn(&Value) -> Option<f64>,
    /// `true`: the figure must be at least the bound; else at most.
    min: bool,
    /// Judged per round (every round must hold) or on the rounds' median.
    every_round: bool,
    /// How the figure is shown.
    unit: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "min_jain",
        read: |s| s["fairness"]["jain"].as_f64(),
        min: true,
        every_round: true,
        unit: "",
    },
    Key {
        name: "max_max_over_mean",
        read: |s| s["fairness"]["max_over_mean"].as_f64(),
        min: false,
        every_round: true,
        unit: "",
    },
    Key {
        name: "max_errors",
        read: |s| s["errors"]["total"].as_f64(),
        min: false,
        every_round: true,
        unit: "",
    },
    Key {
        name: "max_p99_us",
        read: |s| s["latency_us"]["p99"].as_f64(),
        min: false,
        every_round: true,
        unit: " µs",
    },
    Key {
        name: "max_p999_us",
        read: |s| s["latency_us"]["p999"].as_f64(),
        min: false,
        every_round: true,
        unit: " µs",
    },
    Key {
        name: "min_rps",
        read: |s| s["rps"].as_f64(),
        min: true,
        every_round: false,
        unit: " req/s",
    },
    Key {
        name: "max_over_cap_ms",
        read: |s| s["memory"]["longest_over_cap_ms"].as_f64(),
        min: false,
        every_round: true,
        unit: " ms",
    },
    Key {
        name: "min_rate_within_p99",
        read: |s| s["sweep"]["max_rate_within_bound"].as_f64(),
        min: true,
        every_round: false,
        unit: " req/s",
    },
    Key {
        name: "max_daemon_us_per_conn",
        read: |s| s["daemon_cpu_us_per_conn"].as_f64(),
        min: false,
        every_round: false,
        unit: " µs",
    },
];

/// The key of a minimum req/s ratio to other targets:
/// `min_rps_ratio = { reuseport = 0.9 }`.
const RATIO: &str = "min_rps_ratio";

/// The thresholds of one table (or target sub-table).
#[derive(Debug, Default, Clone, PartialEq)]
struct Bounds {
    /// Key name → bound.
    plain: BTreeMap<&'static str, f64>,
    /// Other target → minimum ratio of req/s to it.
    ratios: BTreeMap<String, f64>,
}

/// Thresholds for one scenario.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    scenario: String,
    /// `None`: every target of the run.
    target: Option<String>,
    bounds: Bounds,
}

/// A thresholds file, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    rules: Vec<Rule>,
}

/// One threshold judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// It held.
    pub pass: bool,
    /// `conn_per_request fdpass (least-conn): min_jain 0.9412 < 0.99 (by 0.0488)`.
    pub line: String,
}

fn bad(file: &Path, what: String, value: String, expected: String) -> Error {
    Error::InvalidArg {
        what: format!("{what} in {}", file.display()),
        value,
        expected,
    }
}

fn number(file: &Path, at: &str, v: &toml::Value) -> Result<f64> {
    match v {
        toml::Value::Float(f) if f.is_finite() => Ok(*f),
        toml::Value::Integer(i) => Ok(*i as f64),
        other => Err(bad(file, at.into(), shown(other), "a number".into())),
    }
}

/// A TOML value as an error shows it.
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(_) => "a date".into(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

fn key_names() -> String {
    let mut v: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    v.push(RATIO);
    v.join(", ")
}

/// Reads the bounds of one table; its sub-tables are targets when
/// `targets` is given (a scenario table), else an error.
fn bounds(
    file: &Path,
    at: &str,
    table: &toml::Table,
    mut targets: Option<&mut Vec<(String, Bounds)>>,
) -> Result<Bounds> {
    let mut b = Bounds::default();
    for (k, v) in table {
        let here = format!("[{at}] key `{k}`");
        if let Some(key) = KEYS.iter().find(|key| key.name == k) {
            b.plain.insert(key.name, number(file, &here, v)?);
        } else if k == RATIO {
            let toml::Value::Table(t) = v else {
                return Err(bad(
                    file,
                    here,
                    shown(v),
                    "a table of target = ratio, like `{ reuseport = 0.9 }`".into(),
                ));
            };
            for (other, r) in t {
                b.ratios
                    .insert(other.clone(), number(file, &format!("{here}.{other}"), r)?);
            }
        } else if let (toml::Value::Table(t), Some(out)) = (v, targets.as_deref_mut()) {
            let sub = bounds(file, &format!("{at}.{k}"), t, None)?;
            out.push((k.clone(), sub));
        } else {
            return Err(bad(
                file,
                format!("a key of [{at}]"),
                k.clone(),
                format!(
                    "one of {}{}",
                    key_names(),
                    if targets.is_some() {
                        ", or a target's table ([scenario.fdpass])"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    Ok(b)
}

impl Thresholds {
    /// Parses a thresholds file's text; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Thresholds> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            bad(
                file,
                "the thresholds".into(),
                e.message().to_string(),
                "TOML: one table per scenario, e.g. `[conn_per_request]` with `min_jain = 0.99`"
                    .into(),
            )
        })?;
        let mut rules = Vec::new();
        for (scenario, v) in &doc {
            if !SCENARIOS.contains(&scenario.as_str()) {
                return Err(bad(
                    file,
                    "a scenario table".into(),
                    scenario.clone(),
                    format!("one of {}", SCENARIOS.join(", ")),
                ));
            }
            let toml::Value::Table(t) = v else {
                return Err(bad(
                    file,
                    format!("`{scenario}`"),
                    shown(v),
                    "a table of thresholds".into(),
                ));
            };
            let mut targets = Vec::new();
            let all = bounds(file, scenario, t, Some(&mut targets))?;
            if all != Bounds::default() {
                rules.push(Rule {
                    scenario: scenario.clone(),
                    target: None,
                    bounds: all,
                });
            }
            rules.extend(targets.into_iter().map(|(target, bounds)| Rule {
                scenario: scenario.clone(),
                target: Some(target),
                bounds,
            }));
        }
        if rules.is_empty() {
            return Err(bad(
                file,
                "the thresholds".into(),
                "(none)".into(),
                "at least one threshold: a check that checks nothing passes anything".into(),
            ));
        }
        Ok(Thresholds { rules })
    }

    /// Reads and parses a thresholds file.
    pub fn read(file: &Path) -> Result<Thresholds> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
        Thresholds::parse(file, &text)
    }

    /// Judges `report` (the bench JSON): one outcome per threshold and
    /// target, a failure for a scenario or target the report lacks.
    pub fn check(&self, report: &Value) -> Vec<Outcome> {
        let runs: Vec<&Value> = report["runs"].as_array().into_iter().flatten().collect();
        let mut labels: Vec<String> = Vec::new();
        for r in &runs {
            let l = label(r);
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        // (label, round) → that run's result for `scenario`.
        let result = |l: &str, scenario: &str| -> Vec<(u64, &Value)> {
            runs.iter()
                .filter(|r| label(r) == l)
                .filter_map(|r| {
                    let s = r["scenarios"]
                        .as_array()?
                        .iter()
                        .find(|s| s["mode"] == scenario)?;
                    Some((r["round"].as_u64().unwrap_or(1), s))
                })
                .collect()
        };
        let mut out = Vec::new();
        for rule in &self.rules {
            let targets: Vec<&String> = labels
                .iter()
                .filter(|l| rule.target.as_ref().is_none_or(|t| matches(l, t)))
                .collect();
            let name = |l: &str| format!("{} {l}", rule.scenario);
            if targets.is_empty() {
                out.push(Outcome {
                    pass: false,
                    line: format!(
                        "{} {}: no such target in this run (it has {})",
                        rule.scenario,
                        rule.target.as_deref().unwrap_or("?"),
                        labels.join(", ")
                    ),
                });
                continue;
            }
            for l in targets {
                let rounds = result(l, &rule.scenario);
                if rounds.is_empty() {
                    out.push(Outcome {
                        pass: false,
                        line: format!("{}: no results (was the scenario run?)", name(l)),
                    });
                    continue;
                }
                for (key_name, &bound) in &rule.bounds.plain {
                    let key = KEYS.iter().find(|k| k.name == *key_name).expect("parsed");
                    let values: Vec<f64> =
                        rounds.iter().filter_map(|(_, s)| (key.read)(s)).collect();
                    let figure = if key.every_round {
                        // The worst round.
                        values.iter().copied().reduce(
                            |a, b| {
                                if key.min {
                                    a.min(b)
                                } else {
                                    a.max(b)
                                }
                            },
                        )
                    } else {
                        median(values)
                    };
                    out.push(judge(&name(l), key.name, figure, bound, key.min, key.unit));
                }
                for (other, &bound) in &rule.bounds.ratios {
                    let Some(other_label) = labels.iter().find(|x| matches(x, other)) else {
                        out.push(Outcome {
                            pass: false,
                            line: format!(
                                "{}: {RATIO} to `{other}`: no such target in this run",
                                name(l)
                            ),
                        });
                        continue;
                    };
                    let theirs = result(other_label, &rule.scenario);
                    let ratios: Vec<f64> = rounds
                        .iter()
                        .filter_map(|(round, s)| {
                            let (_, o) = theirs.iter().find(|(r, _)| r == round)?;
                            let d = o["rps"].as_f64().filter(|d| *d > 0.0)?;
                            Some(s["rps"].as_f64()? / d)
                        })
                        .collect();
                    out.push(judge(
                        &name(l),
                        &format!("{RATIO} to {other_label}"),
                        median(ratios),
                        bound,
                        true,
                        "×",
                    ));
                }
            }
        }
        out
    }
}

/// Whether run label `l` (`fdpass (least-conn)`, `reuseport`) is target `t`
/// (the label itself, or its mode).
fn matches(l: &str, t: &str) -> bool {
    l == t || l.split(" (").next() == Some(t)
}

fn judge(name: &str, key: &str, figure: Option<f64>, bound: f64, min: bool, unit: &str) -> Outcome {
    let Some(x) = figure else {
        return Outcome {
            pass: false,
            line: format!("{name}: {key}: not measured"),
        };
    };
    let pass = if min { x >= bound } else { x <= bound };
    let (op, by) = match (pass, min) {
        (true, true) => ("≥", None),
        (true, false) => ("≤", None),
        (false, true) => ("<", Some(bound - x)),
        (false, false) => (">", Some(x - bound)),
    };
    let show = |v: f64| {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{v:.0}")
        } else if v.abs() >= 100.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.4}")
        }
    };
    Outcome {
        pass,
        line: format!(
            "{name}: {key} {}{unit} {op} {}{unit}{}",
            show(x),
            show(bound),
            by.map_or(String::new(), |b| format!(" (by {}{unit})", show(b)))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scenario(mode: &str, rps: f64, jain: f64, mom: f64, errors: u64, p99: u64) -> Value {
        json!({
            "mode": mode, "rps": rps, "errors": {"total": errors},
            "latency_us": {"p99": p99, "p999": p99 * 2},
            "fairness": {"jain": jain, "max_over_mean": mom},
            "daemon_cpu_us_per_conn": 8.0,
        })
    }

    fn run(round: u64, mode: &str, policy: Option<&str>, s: Vec<Value>) -> Value {
        json!({"round": round, "mode": mode, "policy": policy, "scenarios": s})
    }

    fn parse(t: &str) -> Result<Thresholds> {
        Thresholds::parse(Path::new("t.toml"), t)
    }

    fn failures(th: &Thresholds, report: &Value) -> Vec<String> {
        th.check(report)
            .into_iter()
            .filter(|o| !o.pass)
            .map(|o| o.line)
            .collect()
    }

    #[test]
    fn memory_and_sweep_keys_read_their_figures() {
        let th = parse(
            "[memory]\nmax_over_cap_ms = 500\n[conn_per_request]\nmin_rate_within_p99 = 4000\n",
        )
        .unwrap();
        let mut mem = scenario("memory", 100.0, 1.0, 1.0, 0, 10);
        mem["memory"] = json!({"longest_over_cap_ms": 3400});
        let mut close = scenario("conn_per_request", 100.0, 1.0, 1.0, 0, 10);
        close["sweep"] = json!({"max_rate_within_bound": 5000.0});
        let report = json!({"runs": [run(1, "pm2", None, vec![mem, close])]});
        let f = failures(&th, &report);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("max_over_cap_ms 3400 ms > 500 ms"), "{f:?}");
        // A run without a sweep fails the sweep key rather than passing it.
        let bare = json!({"runs": [run(1, "pm2", None, vec![scenario("conn_per_request", 1.0, 1.0, 1.0, 0, 1)])]});
        let th = parse("[conn_per_request]\nmin_rate_within_p99 = 1\n").unwrap();
        assert_eq!(failures(&th, &bare).len(), 1);
    }

    #[test]
    fn a_fair_run_passes_and_an_unfair_one_fails_naming_the_threshold_and_margin() {
        let th = parse(
            "[conn_per_request]\nmin_jain = 0.99\nmax_max_over_mean = 1.05\nmax_errors = 0\n",
        )
        .unwrap();
        let fair = json!({"runs": [run(1, "fdpass", Some("least-conn"),
            vec![scenario("conn_per_request", 9000.0, 0.9999, 1.01, 0, 900)])]});
        assert!(failures(&th, &fair).is_empty(), "{:?}", th.check(&fair));
        assert_eq!(th.check(&fair).len(), 3);
        let unfair = json!({"runs": [run(1, "fdpass", Some("least-conn"),
            vec![scenario("conn_per_request", 9000.0, 0.80, 1.50, 3, 900)])]});
        let f = failures(&th, &unfair);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(
            f.iter().any(|l| l
                == "conn_per_request fdpass (least-conn): min_jain 0.8000 < 0.9900 (by 0.1900)"),
            "{f:?}"
        );
        assert!(
            f.iter().any(|l| l.contains("max_errors 3 > 0 (by 3)")),
            "{f:?}"
        );
    }

    #[test]
    fn quality_must_hold_every_round_throughput_on_the_median() {
        let th = parse("[keep_alive]\nmin_jain = 0.99\nmin_rps = 100\n").unwrap();
        let report = json!({"runs": [
            run(1, "reuseport", None, vec![scenario("keep_alive", 50.0, 0.999, 1.0, 0, 1)]),
            run(2, "reuseport", None, vec![scenario("keep_alive", 150.0, 0.95, 1.0, 0, 1)]),
            run(3, "reuseport", None, vec![scenario("keep_alive", 200.0, 0.999, 1.0, 0, 1)]),
        ]});
        let f = failures(&th, &report);
        // One bad round sinks fairness; req/s's median (150) holds.
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("min_jain 0.9500 < 0.9900"), "{f:?}");
    }

    #[test]
    fn a_target_table_and_a_ratio_to_another_target_of_the_same_rounds() {
        let th = parse(
            "[conn_per_request.fdpass]\nmin_rps_ratio = { reuseport = 0.9 }\n\
             [conn_per_request.\"reuseport\"]\nmax_p99_us = 1000\n",
        )
        .unwrap();
        let report = json!({"runs": [
            run(1, "fdpass", Some("least-conn"), vec![scenario("conn_per_request", 80.0, 1.0, 1.0, 0, 500)]),
            run(1, "reuseport", None, vec![scenario("conn_per_request", 100.0, 0.9, 1.2, 0, 5000)]),
            run(2, "fdpass", Some("least-conn"), vec![scenario("conn_per_request", 190.0, 1.0, 1.0, 0, 500)]),
            run(2, "reuseport", None, vec![scenario("conn_per_request", 200.0, 0.9, 1.2, 0, 800)]),
        ]});
        let out = th.check(&report);
        assert_eq!(out.len(), 2, "{out:?}");
        // Ratios 0.8 and 0.95 → median 0.875.
        assert!(
            !out[0].pass
                && out[0]
                    .line
                    .contains("min_rps_ratio to reuseport 0.8750× < 0.9000×"),
            "{out:?}"
        );
        // reuseport's worst p99 (5000) fails; fdpass's is not judged.
        assert!(
            !out[1].pass
                && out[1]
                    .line
                    .starts_with("conn_per_request reuseport: max_p99_us 5000 µs > 1000 µs"),
            "{out:?}"
        );
    }

    #[test]
    fn a_missing_scenario_or_target_fails_instead_of_passing() {
        let th = parse("[keep_alive]\nmin_jain = 0.5\n[conn_per_request.shared]\nmax_errors = 0\n")
            .unwrap();
        let report = json!({"runs": [run(1, "fdpass", Some("p2c"),
            vec![scenario("conn_per_request", 1.0, 1.0, 1.0, 0, 1)])]});
        let f = failures(&th, &report);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f.iter()
                .any(|l| l.contains("keep_alive fdpass (p2c): no results")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|l| l.contains("conn_per_request shared: no such target")),
            "{f:?}"
        );
    }

    #[test]
    fn the_shipped_ci_example_parses() {
        let text = include_str!("../../bench-apps/ci-thresholds.toml");
        let th = parse(text).unwrap();
        assert_eq!(th.rules.len(), 4, "{th:?}");
    }

    #[test]
    fn bad_files_are_one_line_errors_naming_the_key() {
        for (text, needle) in [
            ("[conn_per_request]\nmin_jian = 0.99\n", "min_jian"),
            ("[closed]\nmin_jain = 0.99\n", "closed"),
            ("[conn_per_request]\nmin_jain = \"high\"\n", "\"high\""),
            ("[conn_per_request]\nmin_rps_ratio = 0.9\n", "min_rps_ratio"),
            ("[conn_per_request]\n", "at least one threshold"),
            ("[conn_per_request\n", "TOML"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle) && !e.contains('\n'), "{text:?}: {e}");
            assert!(e.contains("t.toml"), "{e}");
        }
    }
}

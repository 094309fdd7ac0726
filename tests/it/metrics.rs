//! `herd metrics`, the `/metrics` endpoint, and the figures behind them
//! (issue #19): counters that add up after a bounded burst, restarts by
//! reason, request latency from the Node preload, and Prometheus text that
//! a strict reader accepts and that uses exactly docs/METRICS.md's names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{app, free_port, http_get, node_available, TestHome};
use crate::reuseport::start_hello_mode;

const T: Duration = Duration::from_secs(20);

/// One sample: its metric name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One family: name, TYPE, HELP, samples.
#[derive(Debug, Clone, Default)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut cs = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    cs.next().is_some_and(ok_first)
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y\"z"}` → labels; the rest of the line after `}`.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_name(name, false) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next().ok_or("unterminated label value")?;
            match c {
                '"' => break i,
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?}")),
                },
                '\n' => return Err("newline in a label value".into()),
                c => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("labels must be separated by ,".into());
        }
    }
}

/// Reads Prometheus text format 0.0.4 strictly: names and labels well
/// formed, a family's HELP/TYPE before its samples and its samples
/// together, no sample twice, counters named `_total`, histograms with
/// ascending cumulative buckets ending at `+Inf` = `_count`.
pub fn parse_strict(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix("# ") {
            let mut parts = c.splitn(3, ' ');
            let (kw, name, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            if !matches!(kw, Some("HELP" | "TYPE")) {
                continue; // a plain comment
            }
            let name = name.ok_or_else(|| err("HELP/TYPE without a name".into()))?;
            if !valid_name(name, true) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            if done.contains(name) {
                return Err(err(format!("{name} comes back after other families")));
            }
            if current.as_deref() != Some(name) {
                if let Some(c) = current.take() {
                    done.insert(c);
                }
                current = Some(name.to_string());
            }
            let f = fams.entry(name.to_string()).or_default();
            if !f.samples.is_empty() {
                return Err(err(format!("{kw:?} after {name}'s samples")));
            }
            if kw == Some("TYPE") {
                if !f.kind.is_empty() {
                    return Err(err("TYPE twice".into()));
                }
                if !matches!(
                    rest,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(err(format!("bad type {rest:?}")));
                }
                f.kind = rest.to_string();
            } else {
                if !f.help.is_empty() {
                    return Err(err("HELP twice".into()));
                }
                f.help = rest.to_string();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !valid_name(name, true) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value =
            parse_value(fields.next().ok_or_else(|| err("no value".into()))?).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let family = current
            .clone()
            .filter(|c| {
                name == c
                    || (fams.get(c).is_some_and(|f| f.kind == "histogram")
                        && [
                            format!("{c}_bucket"),
                            format!("{c}_sum"),
                            format!("{c}_count"),
                        ]
                        .contains(&name.to_string()))
            })
            .ok_or_else(|| err(format!("sample {name} outside its family's HELP/TYPE")))?;
        let key = format!("{name}{labels:?}");
        if !seen.insert(key) {
            return Err(err("the same sample twice".into()));
        }
        fams.get_mut(&family).unwrap().samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for (name, f) in &fams {
        if f.kind.is_empty() || f.help.is_empty() {
            return Err(format!("{name}: no TYPE or HELP"));
        }
        if f.samples.is_empty() {
            return Err(format!("{name}: a family without samples"));
        }
        if f.kind == "counter" && !name.ends_with("_total") {
            return Err(format!("counter {name} is not named _total"));
        }
        if f.kind == "histogram" {
            check_histogram(name, f)?;
        }
    }
    Ok(fams)
}

fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for s in &f.samples {
        let mut l = s.labels.clone();
        let le = l.remove("le");
        let key = format!("{l:?}");
        if s.name.ends_with("_bucket") {
            let le = le.ok_or_else(|| format!("{name}: bucket without le"))?;
            by.entry(key)
                .or_default()
                .push((parse_value(&le)?, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(key, s.value);
        }
    }
    for (key, buckets) in &by {
        for w in buckets.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(format!(
                    "{name}{key}: buckets not ascending and cumulative: {buckets:?}"
                ));
            }
        }
        let last = buckets.last().unwrap();
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{key}: no +Inf bucket"));
        }
        if counts.get(key) != Some(&last.1) {
            return Err(format!(
                "{name}{key}: +Inf bucket {} != _count {:?}",
                last.1,
                counts.get(key)
            ));
        }
    }
    Ok(())
}

/// The family names docs/METRICS.md's series table lists, and whether
/// each shows only with `app_metrics` apps.
fn documented() -> BTreeMap<String, bool> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/METRICS.md"))
            .unwrap();
    doc.lines()
        .filter_map(|l| Some((l.strip_prefix("| `")?, l)))
        .filter_map(|(l, row)| Some((l.split('`').next()?, row)))
        .filter(|(n, _)| n.starts_with("herd_") || n.starts_with("process_"))
        .map(|(n, row)| (n.to_string(), row.contains("only with `app_metrics` apps")))
        .collect()
}

fn sum(f: &Family, name: &str) -> f64 {
    f.samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// `n` plain-socket GETs from `threads` threads (an outside client:
/// std's TcpStream, not herd's generator); every one must be answered.
fn burst(port: u16, n: usize, threads: usize) {
    let each = n / threads;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                for i in 0..each {
                    let (status, _, _) =
                        http_get(port).unwrap_or_else(|e| panic!("request {i} failed: {e}"));
                    assert!(status.contains(" 200 "), "{status}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn metrics_json(h: &TestHome, app: Option<&str>) -> Value {
    let mut args = vec!["metrics", "--json"];
    args.extend(app);
    h.run(&args).ok().json()
}

/// After a bounded burst, every connection accepted is accounted for:
/// closed + in flight + lost, per instance and in all; the workers'
/// request reports count every request; fairness is judged.
fn counters_add_up(h: &TestHome) {
    let port = free_port();
    start_hello_mode(
        h,
        port,
        "fdpass",
        &["-i", "2", "--max-memory-restart", "1G"],
    );
    // start_hello_mode's readiness probes are requests too.
    let before = metrics_json(h, Some("hello"));
    let accepted0 = before["apps"][0]["accepted"].as_u64().unwrap();
    const N: usize = 600;
    burst(port, N, 4);
    // Closes and request reports arrive within a few hundred ms.
    let deadline = Instant::now() + T;
    let snap = loop {
        let s = metrics_json(h, Some("hello"));
        let closed: u64 = s["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["closed"].as_u64().unwrap())
            .sum();
        let reqs: u64 = s["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["requests"].as_u64().unwrap())
            .sum();
        let accepted = s["apps"][0]["accepted"].as_u64().unwrap();
        if (closed == accepted && reqs >= accepted && s["apps"][0]["window"].is_object())
            || Instant::now() > deadline
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let a = &snap["apps"][0];
    let accepted = a["accepted"].as_u64().unwrap();
    assert_eq!(
        accepted - accepted0,
        N as u64,
        "the daemon accepted what the client sent: {a:#}"
    );
    let insts = snap["instances"].as_array().unwrap();
    let total = |k: &str| -> u64 { insts.iter().map(|i| i[k].as_u64().unwrap()).sum() };
    for i in insts {
        let n = |k: &str| i[k].as_u64().unwrap();
        assert_eq!(
            n("dispatched"),
            n("closed")
                + n("in_flight")
                + n("handed_on")
                + n("lost_started")
                + n("cut_after_write"),
            "per instance: {i:#}"
        );
    }
    assert_eq!(
        accepted,
        total("closed")
            + total("in_flight")
            + total("lost_started")
            + total("cut_after_write")
            + a["dropped"].as_u64().unwrap()
            + a["held"].as_u64().unwrap(),
        "accepted = closed + in flight + lost: {snap:#}"
    );
    assert_eq!(total("in_flight"), 0);
    assert_eq!(
        total("requests"),
        accepted,
        "every request reported by the hello worker"
    );
    let req = &a["requests"];
    assert_eq!(req["count"].as_u64().unwrap(), accepted, "{req:#}");
    assert!(
        req["p50"].as_f64().unwrap() > 0.0
            && req["p99"].as_f64().unwrap() >= req["p50"].as_f64().unwrap()
    );
    assert_eq!(
        a["handoff"]["count"].as_u64().unwrap(),
        accepted,
        "one hand-off time per connection"
    );
    let fair = &a["total"];
    assert_eq!(fair["of"], "connections");
    assert!(
        fair["jain"].as_f64().unwrap() >= 0.95,
        "least-conn over uniform load: {fair:#}"
    );
    assert!(a["window"]["jain"].as_f64().unwrap() >= 0.95, "{a:#}");
    // jlist carries them where PM2 puts code metrics.
    let j = h.run(&["jlist"]).ok().json();
    let reported: u64 = j
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["pm2_env"]["axm_monitor"]["Requests"]["value"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(reported, accepted, "{j:#}");
    // The table carries the same figure.
    let l = h.list();
    assert!(
        l.iter()
            .all(|i| i["fairness"].as_f64().is_some_and(|j| j >= 0.95)),
        "{l:#?}"
    );
}

#[test]
fn counters_add_up_after_a_bounded_burst() {
    counters_add_up(&TestHome::new());
}

#[test]
fn counters_add_up_on_the_epoll_fallback() {
    counters_add_up(&TestHome::new().with_env("HERD_IO", "epoll"));
}

#[test]
fn prometheus_text_is_strict_and_uses_the_documented_names() {
    let h = TestHome::new();
    let port = free_port();
    start_hello_mode(
        &h,
        port,
        "fdpass",
        &["-i", "2", "--max-memory-restart", "1G"],
    );
    burst(port, 200, 2);
    h.run(&["restart", "hello"]).ok();
    crate::harness::wait_http(port, T);
    burst(port, 50, 1);
    // Reports and the window's second tick.
    std::thread::sleep(Duration::from_millis(1300));
    let text = h.run(&["metrics"]).ok().stdout;
    let fams = parse_strict(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let printed: BTreeSet<String> = fams.keys().cloned().collect();
    let doc = documented();
    let always: BTreeSet<String> = doc
        .iter()
        .filter(|(_, only_app)| !**only_app)
        .map(|(n, _)| n.clone())
        .collect();
    let all: BTreeSet<String> = doc.keys().cloned().collect();
    let undocumented: Vec<_> = printed.difference(&all).collect();
    let unprinted: Vec<_> = always.difference(&printed).collect();
    assert!(
        undocumented.is_empty() && unprinted.is_empty(),
        "herd metrics and docs/METRICS.md disagree: printed, not documented {undocumented:?}; documented, not printed {unprinted:?}"
    );
    // Base units and the labels the docs promise.
    let restarts = &fams["herd_worker_restarts_total"];
    let manual: f64 = restarts
        .samples
        .iter()
        .filter(|s| s.labels["reason"] == "manual")
        .map(|s| s.value)
        .sum();
    assert_eq!(manual, 2.0, "one manual restart per instance");
    assert!(restarts
        .samples
        .iter()
        .all(|s| s.labels.contains_key("app") && s.labels.contains_key("instance")));
    assert!(!fams["herd_worker_info"].samples.is_empty());
    assert!(
        fams["herd_connections_active"]
            .samples
            .iter()
            .all(|s| !s.labels.contains_key("pid")),
        "pid only in _info"
    );
    let req = &fams["herd_request_duration_seconds"];
    assert_eq!(
        sum(req, "herd_request_duration_seconds_count"),
        sum(&fams["herd_requests_total"], "herd_requests_total")
    );
    assert_eq!(
        fams["herd_worker_memory_limit_bytes"].samples[0].value,
        1024.0 * 1024.0 * 1024.0
    );
    assert!(fams["process_resident_memory_bytes"].samples[0].value > 1e6);

    // The endpoint serves the same text, with Prometheus's content type.
    let mport = free_port();
    let served = TestHome::new().with_env("HERD_METRICS_ADDR", &format!("127.0.0.1:{mport}"));
    served.run(&["ping"]).ok();
    let (status, headers, body) = http_get_path(mport, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let ct = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone());
    assert_eq!(
        ct.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_strict(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let (status, _, _) = http_get_path(mport, "/healthz");
    assert!(
        status.contains(" 404 "),
        "--metrics alone serves no probes: {status}"
    );
    served.run(&["kill"]).ok();
}

/// GET `path` once something serves `port` (bounded).
fn http_get_path(port: u16, path: &str) -> crate::harness::Resp {
    let deadline = Instant::now() + T;
    loop {
        match crate::harness::http_get_path(port, path) {
            Ok(r) => return r,
            Err(e) => assert!(Instant::now() < deadline, "nothing serves {port}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restarts_are_counted_by_reason() {
    let h = TestHome::new();
    let port = free_port();
    let l = start_hello_mode(&h, port, "fdpass", &["-i", "1"]);
    h.run(&["restart", "hello"]).ok();
    h.run(&["reload", "hello"]).ok();
    let pid = h.wait_for("online after reload", T, |l| {
        l[0]["status"] == "online" && l[0]["in_rotation"] == true
    })[0]["pid"]
        .as_i64()
        .unwrap();
    assert_ne!(Some(pid), l[0]["pid"].as_i64());
    crate::harness::signal(pid, "-KILL");
    let l = h.wait_for("restarted after the crash", T, |l| {
        l[0]["restarts_by_reason"].get("crash").is_some() && l[0]["status"] == "online"
    });
    let by = &l[0]["restarts_by_reason"];
    assert_eq!(by["manual"], 1, "{by}");
    assert_eq!(by["reload"], 1, "{by}");
    assert_eq!(by["crash"], 1, "{by}");
    assert_eq!(l[0]["restarts"], 3);
    let show = h.run(&["show", "hello"]).ok().stdout;
    assert!(show.contains("3 (1 crash, 1 manual, 1 reload)"), "{show}");
    assert!(show.contains("Metrics of app hello"), "{show}");
    h.run(&["reset", "hello"]).ok();
    assert_eq!(h.list()[0]["restarts_by_reason"], serde_json::json!({}));
}

#[test]
fn node_preload_reports_request_latency_in_fdpass_and_reuseport() {
    if !node_available() {
        return;
    }
    for mode in ["fdpass", "reuseport"] {
        let h = TestHome::new();
        let port = free_port();
        crate::harness::start_on(&h, &app("node/app.js"), port, &["-i", "2", "--mode", mode]);
        crate::harness::wait_http(port, T);
        burst(port, 300, 3);
        let deadline = Instant::now() + T;
        let snap = loop {
            let s = metrics_json(&h, None);
            let n = s["apps"][0]["requests"]["count"].as_u64().unwrap_or(0);
            if n >= 300 || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let a = &snap["apps"][0];
        let n = a["requests"]["count"].as_u64().unwrap_or(0);
        assert!(
            (300..=320).contains(&n),
            "{mode}: the PM2 docs' app's requests, timed by the preload: {a:#}"
        );
        let p99 = a["requests"]["p99"].as_f64().unwrap();
        assert!(p99 > 0.0 && p99 < 1.0, "{mode}: {p99}");
        let per: Vec<u64> = snap["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["requests"].as_u64().unwrap())
            .collect();
        assert!(
            per.iter().all(|&r| r > 0),
            "{mode}: both instances report: {per:?}"
        );
        if mode == "reuseport" {
            // No per-connection count here: fairness is judged on requests.
            assert_eq!(a["total"]["of"], "requests", "{a:#}");
        }
    }
}

#[test]
fn bad_metrics_input_is_one_line_errors() {
    let h = TestHome::new();
    h.run(&["metrics", "nosuchapp"]).fails_with("nosuchapp");
    let e = h
        .run(&["daemon", "--metrics", "0.0.0.0:9209"])
        .fails_with("--metrics-public");
    assert!(e.stderr.contains("--metrics"), "{}", e.stderr);
    h.run(&["daemon", "--metrics", "nope"]).fails_with("`nope`");
    // The daemon (started by the first call) still answers.
    h.run(&["ping"]).ok();
}

/// Runs `tmux` with `args` on the test's own server socket.
fn tmux(sock: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .output()
        .expect("run tmux")
}

#[test]
fn monit_renders_in_an_80x24_terminal_and_quits_on_q_leaving_it_sane() {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        herd::testing::skip("tmux", "tmux is not installed; monit is not drawn here");
        return;
    }
    let h = TestHome::new();
    let port = free_port();
    start_hello_mode(&h, port, "fdpass", &["-i", "2"]);
    burst(port, 100, 2);
    let sock = h.root.join("tmux.sock");
    let after = h.root.join("after.txt");
    // monit, then (once it quits) the terminal's settings, in a shell that
    // keeps the pane open for the capture.
    let script = format!(
        "HERD_HOME='{}' '{}' monit; echo \"exit $?\" > '{}'; stty -a >> '{}'; sleep 20",
        h.root.display(),
        crate::harness::HERD,
        after.display(),
        after.display()
    );
    let out = tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "m",
            "-x",
            "80",
            "-y",
            "24",
            &script,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + T;
    let screen = loop {
        let s = String::from_utf8_lossy(&tmux(&sock, &["capture-pane", "-t", "m", "-p"]).stdout)
            .into_owned();
        let measured = s.contains("Jain 1.") || s.contains("Jain 0.");
        if (measured && s.contains("req ") && s.contains('█')) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = screen.lines().collect();
    let cleanup = || {
        tmux(&sock, &["kill-server"]);
    };
    let ok = screen.contains("hello (fdpass)")
        && screen.contains("processes")
        && screen.contains("q quit")
        && lines
            .iter()
            .filter(|l| l.contains("hello") && l.contains("online"))
            .count()
            == 2
        && lines.len() <= 24
        && lines.iter().all(|l| l.chars().count() <= 80);
    if !ok {
        cleanup();
        panic!("monit's screen lacks the app, its workers or their shares:\n{screen}");
    }
    tmux(&sock, &["send-keys", "-t", "m", "q"]);
    let deadline = Instant::now() + T;
    while !std::fs::read_to_string(&after).is_ok_and(|s| s.contains("speed")) {
        if Instant::now() > deadline {
            cleanup();
            panic!("monit did not quit on q");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cleanup();
    let after = std::fs::read_to_string(&after).unwrap();
    assert!(after.starts_with("exit 0"), "{after}");
    // Raw mode undone: line editing and echo are back.
    let words: BTreeSet<&str> = after
        .split(|c: char| c.is_whitespace() || c == ';')
        .collect();
    for flag in ["icanon", "echo", "isig"] {
        assert!(words.contains(flag), "{flag} not restored:\n{after}");
    }
}

#[test]
fn app_metrics_gathers_every_instances_prom_client_registry_into_one_scrape() {
    if !node_available() {
        return;
    }
    let Some(prefix) = crate::harness::npm_install(
        "prom-client",
        "prom-client@15",
        Path::new("node_modules/prom-client/index.js"),
    ) else {
        return;
    };
    let h = TestHome::new();
    let port = free_port();
    let node_path = format!("NODE_PATH={}", prefix.join("node_modules").display());
    crate::harness::start_on(
        &h,
        &app("node/prom-app.js"),
        port,
        &[
            "-i",
            "2",
            "--name",
            "api",
            "--app-metrics",
            "--env",
            &node_path,
        ],
    );
    crate::harness::wait_http(port, T);
    burst(port, 100, 2);
    let text = h.run(&["metrics"]).ok().stdout;
    let fams = parse_strict(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The app's own counter, once per instance, labelled; together they
    // count every request (the readiness probe's too).
    let served = &fams["app_requests_total"];
    let by: BTreeMap<String, f64> = served
        .samples
        .iter()
        .map(|s| (s.labels["instance"].clone(), s.value))
        .collect();
    assert_eq!(by.len(), 2, "{text}");
    assert!(served.samples.iter().all(|s| s.labels["app"] == "api"));
    let total: f64 = by.values().sum();
    assert!((100.0..=110.0).contains(&total), "{by:?}");
    // prom-client's process_* join herd's own family: herd's sample has no
    // labels, the instances' have theirs.
    let cpu = &fams["process_cpu_seconds_total"];
    assert_eq!(
        cpu.samples.iter().filter(|s| s.labels.is_empty()).count(),
        1
    );
    assert_eq!(
        cpu.samples
            .iter()
            .filter(|s| s.labels.contains_key("instance"))
            .count(),
        2
    );
    assert!(fams.contains_key("nodejs_heap_size_total_bytes"), "{text}");
    assert_eq!(
        sum(&fams["herd_app_metrics_up"], "herd_app_metrics_up"),
        2.0
    );
    // The endpoint's text is the same families; monit's fetch skips them.
    let snap = h.run(&["metrics", "--json"]).ok().json();
    assert_eq!(snap["app_texts"].as_array().unwrap().len(), 2);
    // An app without prom-client says so, and the scrape still answers.
    let other = free_port();
    crate::harness::start_on(
        &h,
        &app("node/app.js"),
        other,
        &["-i", "1", "--name", "plain", "--app-metrics"],
    );
    crate::harness::wait_http(other, T);
    let r = h.run(&["metrics", "plain"]).ok();
    assert!(
        r.stderr.contains("has not loaded prom-client"),
        "{}",
        r.stderr
    );
    let fams = parse_strict(&r.stdout).unwrap();
    assert_eq!(fams["herd_app_metrics_up"].samples[0].value, 0.0);
    // Only Node cluster apps can: one line naming the key.
    h.run(&[
        "start",
        &app("scripts/print.sh"),
        "--name",
        "sh",
        "--app-metrics",
    ])
    .fails_with("app_metrics");
}

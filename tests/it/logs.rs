//! Logs: capture through the daemon's pipes, timestamps, JSON lines,
//! `herd logs` (tail and follow), flush, rotation, a full disk.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;

fn print_app() -> String {
    app("scripts/print.sh")
}

/// Waits until the file at `path` satisfies `cond` (bounded).
#[track_caller]
fn wait_file(path: &Path, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} in {}: {s:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn started(h: &TestHome, n: usize) -> Vec<serde_json::Value> {
    h.wait_for("online", Duration::from_secs(10), |l| {
        l.len() == n && l.iter().all(|i| i["status"] == "online")
    })
}

fn path_of(v: &serde_json::Value, key: &str) -> PathBuf {
    PathBuf::from(v[key].as_str().unwrap())
}

#[test]
fn both_streams_plain_and_timestamped() {
    let h = TestHome::new();
    h.run(&["start", &print_app(), "--name", "plain", "--", "lines", "3"])
        .ok();
    h.run(&[
        "start",
        &print_app(),
        "--name",
        "timed",
        "--time",
        "--",
        "lines",
        "3",
    ])
    .ok();
    let l = started(&h, 2);
    let out = wait_file(&path_of(&l[0], "out_log"), "3 lines", |s| {
        s.lines().count() == 3
    });
    assert_eq!(out, "out 0\nout 1\nout 2\n");
    let err = wait_file(&path_of(&l[0], "err_log"), "3 lines", |s| {
        s.lines().count() == 3
    });
    assert_eq!(err, "err 0\nerr 1\nerr 2\n");
    // Default paths: $HERD_HOME/logs/<name>-out-<id>.log.
    assert_eq!(
        path_of(&l[0], "out_log"),
        h.root.join("logs").join("plain-out-0.log")
    );

    // `time: true`: PM2's `YYYY-MM-DDTHH:mm:ss: ` prefix on each line.
    let timed = wait_file(&path_of(&l[1], "err_log"), "3 lines", |s| {
        s.lines().count() == 3
    });
    for (i, line) in timed.lines().enumerate() {
        let (stamp, rest) = line.split_once(": ").expect(line);
        assert_eq!(rest, format!("err {i}"));
        assert_eq!(stamp.len(), 19, "{line}");
        assert_eq!(&stamp[10..11], "T", "{line}");
        assert!(stamp.starts_with("20"), "{line}");
    }
    assert_eq!(l[1]["log_format"], "time");
}

#[test]
fn date_format_json_and_combined_from_an_ecosystem_file() {
    let h = TestHome::new();
    let dir = h.root.join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ecosystem.config.json");
    std::fs::write(
        &file,
        serde_json::json!({ "apps": [
            { "name": "fmt", "script": print_app(), "args": ["lines", "2"],
              "log_date_format": "[day] DD.MM.YYYY HH:mm", "error_file": "logs/fmt-err.log" },
            { "name": "js", "script": print_app(), "args": ["lines", "2"],
              "log_type": "json", "log_file": "logs/js-all.log" }
        ]})
        .to_string(),
    )
    .unwrap();
    h.run(&["start", file.to_str().unwrap()]).ok();
    let l = started(&h, 2);

    // error_file is relative to the ecosystem file's folder.
    let err_path = dir.join("logs").join("fmt-err.log");
    assert_eq!(path_of(&l[0], "err_log"), err_path);
    let err = wait_file(&err_path, "2 lines", |s| s.lines().count() == 2);
    for line in err.lines() {
        // `day 25.11.2026 12:15: err 0`
        let rest = line.strip_prefix("day ").expect(line);
        let (stamp, msg) = rest.split_once(": ").expect(line);
        assert!(msg.starts_with("err "), "{line}");
        assert_eq!(stamp.len(), 16, "{line}");
        assert_eq!(
            (&stamp[2..3], &stamp[5..6], &stamp[13..14]),
            (".", ".", ":")
        );
    }

    // log_type json: one object per line, PM2's fields.
    let out = wait_file(&path_of(&l[1], "out_log"), "2 lines", |s| {
        s.lines().count() == 2
    });
    for (i, line) in out.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        assert_eq!(v["message"], format!("out {i}"));
        assert_eq!(v["type"], "out");
        assert_eq!(v["app_name"], "js");
        assert_eq!(v["process_id"], l[1]["id"]);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
    }
    // log_file gets both streams.
    let all = wait_file(&dir.join("logs").join("js-all.log"), "4 lines", |s| {
        s.lines().count() == 4
    });
    let types: Vec<String> = all
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "\"out\"").count(), 2, "{all}");
    assert_eq!(types.iter().filter(|t| *t == "\"err\"").count(), 2, "{all}");
}

#[test]
fn logs_tail_with_and_without_trailing_newline() {
    let h = TestHome::new();
    h.run(&["start", &print_app(), "--name", "nl", "--", "lines", "40"])
        .ok();
    h.run(&["start", &print_app(), "--name", "part", "--", "partial"])
        .ok();
    let l = started(&h, 2);
    wait_file(&path_of(&l[0], "out_log"), "40 lines", |s| {
        s.lines().count() == 40
    });
    wait_file(&path_of(&l[1], "out_log"), "a b", |s| s == "a\nb\n");

    let r = h
        .run(&["logs", "nl", "--lines", "3", "--nostream", "--out", "--raw"])
        .ok();
    assert_eq!(r.stdout, "out 37\nout 38\nout 39\n");
    // Default is 15 lines, prefixed with id|name and a header per file.
    let r = h.run(&["logs", "nl", "--nostream", "--err"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 16, "{}", r.stdout);
    assert!(
        lines[0].ends_with("nl-error-0.log last 15 lines:"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "0|nl | err 25");
    assert_eq!(lines[15], "0|nl | err 39");

    let tail2 = |name: &str| {
        h.run(&["logs", name, "--lines", "2", "--nostream", "--out", "--raw"])
            .ok()
    };
    // The app ends its output without a newline: the last line still
    // counts. (The daemon holds `c` until the line ends or the app exits.)
    let r = tail2("part");
    assert_eq!(r.stdout, "a\nb\n");
    h.run(&["stop", "part"]).ok();
    wait_file(&path_of(&l[1], "out_log"), "flushed c", |s| {
        s == "a\nb\nc\n"
    });
    let r = tail2("part");
    assert_eq!(r.stdout, "b\nc\n");
    // A file written without a final newline (not by herd) tails the same.
    std::fs::write(path_of(&l[1], "out_log"), "x\ny\nz").unwrap();
    let r = tail2("part");
    assert_eq!(r.stdout, "y\nz\n");

    // --json: one object per line.
    let r = h
        .run(&[
            "logs",
            "nl",
            "--lines",
            "1",
            "--nostream",
            "--out",
            "--json",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["message"], "out 39");
    assert_eq!(v["app_name"], "nl");
    assert_eq!(v["type"], "out");

    // Bad input: one line naming the flag and value.
    h.run(&["logs", "--lines", "-3"])
        .fails_with("`-3` for --lines");
    h.run(&["logs", "nope", "--nostream"]).fails_with("nope");
}

#[test]
fn follow_prints_new_lines_as_they_come() {
    let h = TestHome::new();
    h.run(&["start", &print_app(), "--name", "tick", "--", "every", "50"])
        .ok();
    started(&h, 1);
    let mut child = h
        .cmd(&["logs", "tick", "--lines", "0", "--out"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 3 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.len() >= 3, "followed only {got:?}");
    let n: Vec<u64> = got
        .iter()
        .map(|l| {
            l.strip_prefix("0|tick | tick ")
                .unwrap_or_else(|| panic!("{l}"))
                .parse()
                .unwrap()
        })
        .collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
}

#[test]
fn flush_while_writing_and_rotation_at_the_size_limit() {
    let h = TestHome::new();
    h.run(&["start", &print_app(), "--name", "tick", "--", "every", "5"])
        .ok();
    h.run(&[
        "start",
        &print_app(),
        "--name",
        "rot",
        "--log-max-size",
        "4K",
        "--log-retain",
        "2",
        "--",
        "flood",
        "2000",
    ])
    .ok();
    let l = started(&h, 2);
    let tick = path_of(&l[0], "out_log");
    wait_file(&tick, "some lines", |s| s.lines().count() >= 20);
    let r = h.run(&["flush", "tick"]).ok();
    assert!(r.stdout.contains("flushed 2 log file(s)"), "{}", r.stdout);
    let before = std::fs::metadata(&tick).unwrap().len();
    // The app keeps writing; after the flush the file holds only whole new
    // lines from offset 0 (no hole of zeros where the old content was).
    let s = wait_file(&tick, "new lines", |s| s.lines().count() >= 5);
    assert!(before < 2_000, "flush left {before} bytes");
    assert!(!s.contains('\0'), "sparse file after flush: {s:?}");
    assert!(s.lines().all(|l| l.starts_with("tick ")), "{s}");

    // 2,000 lines of 48 bytes through a 4K limit: the file, .1 and .2 exist,
    // cut at line boundaries within the limit; .3 does not.
    let out = path_of(&l[1], "out_log");
    let rotated = |k: u32| PathBuf::from(format!("{}.{k}", out.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ![out.clone(), rotated(1)]
        .iter()
        .any(|p| std::fs::read_to_string(p).is_ok_and(|s| s.contains("flood line 00001999")))
    {
        assert!(
            Instant::now() < deadline,
            "the flood's last line never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in [out.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len <= 4096, "{}: {len}", p.display());
    }
    assert!(!rotated(3).exists());
    let show = h.run(&["show", "rot"]).ok().stdout;
    assert!(show.contains(", keep 2"), "{show}");
}

#[test]
fn a_one_megabyte_line_arrives_whole() {
    let h = TestHome::new();
    h.run(&[
        "start",
        &print_app(),
        "--name",
        "big",
        "--",
        "big",
        "1048576",
    ])
    .ok();
    let l = started(&h, 1);
    let out = path_of(&l[0], "out_log");
    let s = wait_file(&out, "the 1 MB line", |s| s.len() > 1_048_576);
    assert_eq!(s.len(), 1_048_577);
    assert!(s[..1_048_576].bytes().all(|b| b == b'x'));
    assert!(s.ends_with('\n'));
    // The daemon stays small: it buffers at most 64 KiB of a line.
    let pid = h.daemon_pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rss_kb < 32 * 1024, "daemon RSS {rss_kb} kB");
}

#[test]
fn a_full_disk_is_counted_and_null_discards() {
    let h = TestHome::new();
    if !Path::new("/dev/full").exists() {
        herd::testing::skip("devfull", "a_full_disk_is_counted: no /dev/full here");
        return;
    }
    h.run(&[
        "start",
        &print_app(),
        "--name",
        "full",
        "-o",
        "/dev/full",
        "-e",
        "NULL",
        "--",
        "lines",
        "5",
    ])
    .ok();
    started(&h, 1);
    // `out i\n` is 6 bytes: 5 lines dropped, counted, and said why.
    let l = h.wait_for("dropped bytes", Duration::from_secs(10), |l| {
        l[0]["log_dropped_bytes"] == 30
    });
    assert!(
        l[0]["log_error"].as_str().unwrap().contains("No space"),
        "{l:#?}"
    );
    assert_eq!(l[0]["err_log"], "/dev/null");
    let show = h.run(&["show", "full"]).ok().stdout;
    assert!(show.contains("No space left"), "{show}");
    // The daemon is fine and the app keeps running.
    h.run(&["ping"]).ok();
    assert_eq!(h.list()[0]["status"], "online");
}

#[test]
fn daemon_log_rotates_and_reload_logs_reopens() {
    let h = TestHome::new().with_env("HERD_DAEMON_LOG_MAX_SIZE", "1K");
    // Each start/stop writes daemon log lines; a few cycles pass 1K.
    for i in 0..8 {
        let name = format!("a{i}");
        h.run(&["start", &app("scripts/sleep.sh"), "--name", &name])
            .ok();
        h.run(&["delete", &name]).ok();
    }
    let log = h.root.join("herd.log");
    let one = h.root.join("herd.log.1");
    assert!(one.exists(), "herd.log.1 missing");
    assert!(std::fs::metadata(&log).unwrap().len() < 2048);
    assert!(!h.root.join("herd.log.4").exists());

    // An external logrotate moves an app's file away: reloadLogs reopens.
    h.run(&["start", &print_app(), "--name", "tick", "--", "every", "20"])
        .ok();
    let l = started(&h, 1);
    let out = path_of(&l[0], "out_log");
    wait_file(&out, "lines", |s| s.lines().count() >= 2);
    let moved = out.with_extension("moved");
    std::fs::rename(&out, &moved).unwrap();
    let r = h.run(&["reloadLogs"]).ok();
    assert!(r.stdout.contains("reopened"), "{}", r.stdout);
    wait_file(&out, "lines in the new file", |s| s.lines().count() >= 2);
}

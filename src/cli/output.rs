//! How things look on a terminal: the process table, durations, sizes,
//! secret redaction, JSON. Colours only on a TTY.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::protocol::{InstanceInfo, Status};
pub use crate::table::table;

/// Prints `v` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Protocol(e.to_string()))?;
    write_stdout(&s)
}

/// Writes a block plus newline to stdout (broken pipe handled by `main`).
pub fn write_stdout(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}").map_err(|e| Error::io("writing to stdout", e))
}

/// A duration in seconds as `850 µs`, `12.3 ms`, `1.52 s`.
pub fn human_seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// PM2-style uptime: `12s`, `5m`, `3h`, `2D`.
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}D", s / 86_400),
    }
}

/// `45.2mb`, as PM2 prints memory.
pub fn human_bytes(b: u64) -> String {
    match b {
        0..=1023 => format!("{b}b"),
        1024..=1_048_575 => format!("{:.1}kb", b as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1}mb", b as f64 / 1_048_576.0),
        _ => format!("{:.1}gb", b as f64 / 1_073_741_824.0),
    }
}

/// True for env keys whose values `herd show` must not print.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn paint(s: &str, status: Status, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match status {
        Status::Online => "32",
        Status::Launching | Status::WaitingRestart | Status::Stopping => "33",
        Status::Stopped | Status::Errored => "31",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// The `herd list` table.
pub fn process_table(list: &[InstanceInfo]) -> String {
    if list.is_empty() {
        return "no processes: start one with `herd start app.js -i max`".into();
    }
    let color = std::io::stdout().is_terminal();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                i.name.clone(),
                i.exec_mode.to_string(),
                i.pid.map_or("-".into(), |p| p.to_string()),
                if i.status == Status::Online {
                    human_duration(i.uptime_ms)
                } else {
                    "0".into()
                },
                i.restarts.to_string(),
                paint(i.status.pm2_name(), i.status, color),
                format!("{}%", i.cpu_percent),
                human_bytes(i.memory_bytes),
                i.fairness.map_or("-".into(), |j| format!("{j:.2}")),
            ]
        })
        .collect();
    table(
        &[
            "id", "name", "mode", "pid", "uptime", "↺", "status", "cpu", "mem", "fair",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_duration(59_999), "59s");
        assert_eq!(human_duration(3_600_000), "1h");
        assert_eq!(human_bytes(47_395_635), "45.2mb");
        assert!(
            is_secret("API_TOKEN")
                && is_secret("db_password")
                && is_secret("AWS_SECRET_ACCESS_KEY")
        );
        assert!(!is_secret("PORT") && !is_secret("NODE_ENV"));
        let t = table(
            &["id", "name"],
            &[vec!["0".into(), "\x1b[32mapi\x1b[0m".into()]],
        );
        assert_eq!(t.lines().nth(2).unwrap(), "│ 0  │ \x1b[32mapi\x1b[0m  │");
    }
}

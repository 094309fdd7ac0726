//! `herd logs`, `herd flush`, `herd reloadLogs`, and the log flags of
//! `herd start`.
//!
//! `herd logs` reads the files itself: the daemon only says which files
//! belong to which instance. The last lines come from a few reads backwards
//! from the end of each file; following polls the files (like `tail -F`,
//! across `herd flush` and rotation), so no line ever travels through the
//! daemon.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::client;
use crate::config::{self, AppSpec};
use crate::error::{Error, Result};
use crate::logs::date::{DateFormat, Stamper, LOGS_TIMESTAMP_DEFAULT};
use crate::logs::tail::{last_lines, Follower};
use crate::protocol::{InstanceInfo, Request, Response};

/// `herd logs [id|name|all]`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// An id, an app name or `all` (default: every app).
    #[arg(value_name = "ID|NAME|all")]
    pub target: Option<String>,
    /// Lines to print from the end of each file first (default 15).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub lines: Option<String>,
    /// Only stderr.
    #[arg(long, conflicts_with = "out")]
    pub err: bool,
    /// Only stdout.
    #[arg(long)]
    pub out: bool,
    /// One JSON object per line: message, timestamp, type, process_id, app_name.
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Lines only: no headers, no `id|name |` prefix, no colour.
    #[arg(long)]
    pub raw: bool,
    /// Prefix followed lines with the time they were read (day.js format,
    /// default `YYYY-MM-DD-HH:mm:ss`).
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, default_missing_value = LOGS_TIMESTAMP_DEFAULT)]
    pub timestamp: Option<String>,
    /// Print the last lines and exit instead of following.
    #[arg(long)]
    pub nostream: bool,
}

/// `herd flush [targets…]`.
#[derive(Debug, Args)]
pub struct FlushArgs {
    /// Ids, names or `all` (default: every app and the daemon log).
    #[arg(value_name = "ID|NAME|all")]
    pub targets: Vec<String>,
}

/// Log flags of `herd start` (PM2's names).
#[derive(Debug, Args, Default)]
pub struct LogFlags {
    /// stdout log file (`out_file`; `/dev/null` or `NULL` discards).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// stderr log file (`error_file`).
    #[arg(short = 'e', long = "error", value_name = "PATH")]
    pub error: Option<PathBuf>,
    /// Also write stdout and stderr together to this file (`log_file`).
    #[arg(short = 'l', long = "log", value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Prefix each log line with the time (`YYYY-MM-DDTHH:mm:ss`).
    #[arg(long)]
    pub time: bool,
    /// Prefix each log line with the time in this day.js format.
    #[arg(long = "log-date-format", value_name = "FORMAT")]
    pub log_date_format: Option<String>,
    /// `json`: one JSON object per line.
    #[arg(long = "log-type", value_name = "TYPE")]
    pub log_type: Option<String>,
    /// All instances write the same files (no `-<id>` suffix).
    #[arg(long = "merge-logs")]
    pub merge_logs: bool,
    /// Discard stdout and stderr.
    #[arg(long = "disable-logs")]
    pub disable_logs: bool,
    /// Rotate each log file when it reaches this size (`10M`).
    #[arg(long = "log-max-size", value_name = "SIZE", allow_hyphen_values = true)]
    pub log_max_size: Option<String>,
    /// Rotated files kept with --log-max-size (default 5).
    #[arg(long = "log-retain", value_name = "N", allow_hyphen_values = true)]
    pub log_retain: Option<String>,
}

/// [`LogFlags`], checked; `None` where not given.
#[derive(Debug, Default)]
pub struct LogOverrides {
    out_file: Option<PathBuf>,
    error_file: Option<PathBuf>,
    log_file: Option<PathBuf>,
    date_format: Option<String>,
    json: bool,
    merge_logs: bool,
    max_size: Option<u64>,
    retain: Option<u32>,
}

impl LogOverrides {
    /// Checks the flags; relative paths are taken from `cwd`.
    pub fn parse(f: &LogFlags, cwd: &std::path::Path) -> Result<LogOverrides> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref().map(|p| match p.to_str() {
                Some("NULL") => PathBuf::from("/dev/null"),
                _ => cwd.join(p),
            })
        };
        let devnull = || f.disable_logs.then(|| PathBuf::from("/dev/null"));
        let json = match f.log_type.as_deref() {
            None => false,
            Some("json") => true,
            Some(t) => {
                return Err(Error::InvalidArg {
                    what: "--log-type".into(),
                    value: t.into(),
                    expected: "`json` (plain lines are the default)".into(),
                })
            }
        };
        Ok(LogOverrides {
            out_file: path(&f.output).or_else(devnull),
            error_file: path(&f.error).or_else(devnull),
            log_file: path(&f.log),
            date_format: f
                .log_date_format
                .clone()
                .or_else(|| f.time.then(|| crate::logs::date::TIME_DEFAULT.to_string())),
            json,
            merge_logs: f.merge_logs,
            max_size: f
                .log_max_size
                .as_deref()
                .map(|s| config::parse_size("--log-max-size", s))
                .transpose()?
                .map(|n| n.max(1)),
            retain: f
                .log_retain
                .as_deref()
                .map(|s| {
                    s.trim().parse::<u32>().map_err(|_| Error::InvalidArg {
                        what: "--log-retain".into(),
                        value: s.into(),
                        expected: "a whole number of rotated files, 0 or more".into(),
                    })
                })
                .transpose()?,
        })
    }

    /// Applies the flags given over `spec`.
    pub fn apply(&self, spec: &mut AppSpec) {
        if self.out_file.is_some() {
            spec.out_file = self.out_file.clone();
        }
        if self.error_file.is_some() {
            spec.error_file = self.error_file.clone();
        }
        if self.log_file.is_some() {
            spec.logs.log_file = self.log_file.clone();
        }
        if self.date_format.is_some() {
            spec.logs.date_format = self.date_format.clone();
        }
        spec.logs.json |= self.json;
        spec.merge_logs |= self.merge_logs;
        if self.max_size.is_some() {
            spec.logs.max_size = self.max_size;
        }
        if self.retain.is_some() {
            spec.logs.retain = self.retain;
        }
    }
}

/// Runs `herd flush`.
pub fn flush(a: FlushArgs) -> Result<()> {
    done(&Request::Flush {
        targets: crate::protocol::Target::parse_all(&a.targets),
    })
}

/// Runs `herd reloadLogs`.
pub fn reload_logs() -> Result<()> {
    done(&Request::ReloadLogs)
}

fn done(req: &Request) -> Result<()> {
    match client::call(req)? {
        Response::Done { notes, .. } => {
            for n in notes {
                println!("{n}");
            }
            Ok(())
        }
        other => Err(client::unexpected(&other)),
    }
}

/// One file `herd logs` prints.
struct Source {
    path: PathBuf,
    err: bool,
    /// The instance, or `None` for a file several instances share.
    id: Option<u32>,
    name: String,
}

impl Source {
    fn label(&self) -> String {
        match self.id {
            Some(id) => format!("{id}|{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Which files the instances' output is in, each once.
fn sources(list: &[InstanceInfo], a: &LogsArgs) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for i in list {
        let mut files = Vec::new();
        if !a.err {
            files.push((&i.out_log, false));
        }
        if !a.out {
            files.push((&i.err_log, true));
        }
        for (path, err) in files {
            let path = PathBuf::from(path);
            if crate::logs::is_null(&path) {
                continue;
            }
            match out.iter_mut().find(|s| s.path == path) {
                Some(s) => s.id = None,
                None => out.push(Source {
                    path,
                    err,
                    id: Some(i.id),
                    name: i.name.clone(),
                }),
            }
        }
    }
    out
}

/// How lines are printed.
struct Printer {
    json: bool,
    raw: bool,
    color: bool,
    stamp: Option<Stamper>,
}

impl Printer {
    fn line(
        &mut self,
        w: &mut impl Write,
        s: &Source,
        line: &[u8],
        live: bool,
    ) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(line);
        let stamp = match (&mut self.stamp, live) {
            (Some(st), true) => Some(st.now().to_string()),
            _ => None,
        };
        if self.json {
            let v = serde_json::json!({
                "message": text,
                "timestamp": stamp,
                "type": if s.err { "err" } else { "out" },
                "process_id": s.id,
                "app_name": s.name,
            });
            return writeln!(w, "{v}");
        }
        if let Some(t) = stamp {
            write!(w, "{t} ")?;
        }
        if self.raw {
            return writeln!(w, "{text}");
        }
        let label = s.label();
        if self.color {
            let c = if s.err { "31" } else { "32" };
            writeln!(w, "\x1b[{c}m{label} |\x1b[0m {text}")
        } else {
            writeln!(w, "{label} | {text}")
        }
    }
}

/// Runs `herd logs`.
pub fn logs(a: LogsArgs) -> Result<()> {
    let n = match a.lines.as_deref() {
        None => 15,
        Some(s) => s.trim().parse::<usize>().map_err(|_| Error::InvalidArg {
            what: "--lines".into(),
            value: s.into(),
            expected: "a whole number of lines, 0 or more".into(),
        })?,
    };
    let stamp = a
        .timestamp
        .as_deref()
        .map(|f| Stamper::new(Some(DateFormat::parse(f))));
    let req = match a.target.as_deref() {
        None | Some("all") => Request::List,
        Some(t) => Request::Show {
            target: crate::protocol::Target::parse(t),
        },
    };
    let list = match client::call(&req)? {
        Response::Instances { instances } => instances,
        other => return Err(client::unexpected(&other)),
    };
    let sources = sources(&list, &a);
    let mut p = Printer {
        json: a.json,
        raw: a.raw,
        color: !a.json && !a.raw && std::io::stdout().is_terminal(),
        stamp,
    };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut followers = Vec::with_capacity(sources.len());
    for s in &sources {
        let (lines, end) = match last_lines(&s.path, n) {
            Ok(r) => r,
            // Not written yet: follow from its start once it appears.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => return Err(Error::io(format!("cannot read {}", s.path.display()), e)),
        };
        if n > 0 && !a.raw && !a.json {
            let head = format!("{} last {n} lines:", s.path.display());
            let r = if p.color {
                writeln!(w, "\x1b[90m{head}\x1b[0m")
            } else {
                writeln!(w, "{head}")
            };
            quiet_pipe(r)?;
        }
        for l in &lines {
            quiet_pipe(p.line(&mut w, s, l, false))?;
        }
        followers.push(Follower::new(&s.path, end));
    }
    quiet_pipe(w.flush())?;
    if a.nostream {
        return Ok(());
    }
    loop {
        for (f, s) in followers.iter_mut().zip(&sources) {
            for l in f.poll() {
                quiet_pipe(p.line(&mut w, s, &l, true))?;
            }
        }
        quiet_pipe(w.flush())?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A closed stdout (`herd logs | head`) ends the command quietly.
fn quiet_pipe(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r.map_err(|e| Error::io("writing to stdout", e)),
    }
}

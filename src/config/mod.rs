//! [`AppSpec`]: the one description of an app that every source (CLI flags
//! today; ecosystem files and herd.toml next) turns into, plus the parsers for
//! PM2's value forms (`-i max`, durations).

pub mod ecosystem;
pub mod limits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
pub use crate::protocol::spec::{
    redact_envs, AppSpec, Instances, DEFAULT_LISTEN_TIMEOUT_MS, DEFAULT_MEMORY_CHECK_MS,
};
pub use crate::protocol::ExecMode;

/// PM2's default SIGINT → SIGKILL delay.
pub const DEFAULT_KILL_TIMEOUT_MS: u64 = 1600;
/// PM2's default: a run shorter than this counts as an unstable restart.
pub const DEFAULT_MIN_UPTIME_MS: u64 = 1000;
/// PM2's default: unstable restarts allowed before the app is `errored`.
pub const DEFAULT_MAX_RESTARTS: u32 = 16;

impl Instances {
    /// Parses PM2's forms: `max`, `0`, `-1`, `4`.
    pub fn parse(s: &str) -> Result<Instances> {
        let bad = || Error::InvalidArg {
            what: "--instances (-i)".into(),
            value: s.into(),
            expected: "`max`, a whole number of instances, 0 (= max) or -N (= max minus N)".into(),
        };
        if s.eq_ignore_ascii_case("max") {
            return Ok(Instances::Max);
        }
        let n: i64 = s.trim().parse().map_err(|_| bad())?;
        match n {
            0 => Ok(Instances::Max),
            n if n < 0 && n >= -(u32::MAX as i64) => Ok(Instances::MaxMinus((-n) as u32)),
            n if n > 0 && n <= i64::from(limits::MAX_INSTANCES) => Ok(Instances::Count(n as u32)),
            _ => Err(bad()),
        }
    }

    /// How a user writes it: `max`, `-2`, `4`.
    pub fn display(self) -> String {
        match self {
            Instances::Max => "max".into(),
            Instances::MaxMinus(k) => format!("-{k} (max minus {k})"),
            Instances::Count(n) => n.to_string(),
        }
    }

    /// The count for a host with `cpus` usable CPUs (at least 1).
    pub fn resolve(self, cpus: usize) -> u32 {
        let cpus = cpus.max(1) as u32;
        match self {
            Instances::Max => cpus,
            Instances::MaxMinus(k) => cpus.saturating_sub(k).max(1),
            Instances::Count(n) => n.max(1),
        }
    }
}

/// PM2's `watch_delay` default: restart as soon as a change is seen
/// (`pm2_env.watch_delay || 0` in PM2's `lib/Watcher.js`).
pub const DEFAULT_WATCH_DELAY_MS: u64 = 0;

/// The accepted forms of a cron pattern, for error messages.
pub const CRON_EXPECTED: &str =
    "a cron pattern of 5 or 6 fields (`0 3 * * *`, `*/10 * * * * *`), a nickname like `@daily`, or 0 (off)";

/// Parses a cron pattern as PM2's croner does: 5 fields (minute
/// granularity) or 6 (seconds first), names (`JAN`, `MON`), `L`, `W`, `#`,
/// and the nicknames `@yearly`, `@annually`, `@monthly`, `@weekly`,
/// `@daily`, `@hourly`. The error is croner's reason; a pattern that
/// matches no time at all (`0 0 30 2 *`) is an error too.
pub fn cron_schedule(pattern: &str) -> std::result::Result<croner::Cron, String> {
    let cron = croner::Cron::new(pattern.trim())
        .with_seconds_optional()
        .parse()
        .map_err(|e| e.to_string())?;
    match cron.find_next_occurrence(&chrono::Local::now(), false) {
        Ok(_) => Ok(cron),
        Err(_) => Err("it matches no date (like 30 February)".into()),
    }
}

/// Parses a `--cron-restart` value: `0` turns cron restarts off (`None`).
pub fn parse_cron(what: &str, s: &str) -> Result<Option<String>> {
    if s.trim() == "0" {
        return Ok(None);
    }
    cron_schedule(s)
        .map(|_| Some(s.trim().to_string()))
        .map_err(|why| Error::InvalidArg {
            what: what.into(),
            value: s.into(),
            expected: format!("{CRON_EXPECTED} ({why})"),
        })
}

/// Parses a size like PM2's `max_memory_restart`: `300M`, `1G`, `512K`, bytes.
pub fn parse_size(what: &str, s: &str) -> Result<u64> {
    ecosystem::units::size_bytes(&serde_json::Value::String(s.to_string())).ok_or_else(|| {
        Error::InvalidArg {
            what: what.into(),
            value: s.into(),
            expected: "bytes or a size with K, M or G (`512K`, `300M`, `1G`)".into(),
        }
    })
}

/// Whether the environment variable `name` is switched on: `1`, `true`,
/// `on` or `yes` (any case); unset or anything else is off.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "on" | "yes"
        )
    })
}

/// The environment variables PM2 reads for its defaults, read the same way
/// (in the environment of the command that builds the app).
pub mod pm2_env {
    use super::env_flag as on;

    /// `PM2_KILL_USE_MESSAGE`: stop with the IPC message `shutdown` by
    /// default (`shutdown_with_message`).
    pub fn kill_use_message() -> bool {
        on("PM2_KILL_USE_MESSAGE")
    }

    /// `PM2_GRACEFUL_LISTEN_TIMEOUT` (ms): the default `listen_timeout`.
    pub fn listen_timeout_ms() -> Option<u64> {
        std::env::var("PM2_GRACEFUL_LISTEN_TIMEOUT")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `PM2_DEEP_MONITORING`: `jlist` says `deep_monitoring: true`.
    pub fn deep_monitoring() -> bool {
        on("PM2_DEEP_MONITORING")
    }
}

impl AppSpec {
    /// An app with herd's defaults (PM2's where PM2 has one): fork mode, one
    /// instance, interpreter by extension, the caller's environment
    /// inherited, pinned, autorestart, fdpass for cluster mode.
    pub fn new(name: String, script: PathBuf, cwd: PathBuf) -> AppSpec {
        AppSpec {
            name,
            interpreter: interpreter_for(&script).map(str::to_string),
            script,
            interpreter_args: Vec::new(),
            args: Vec::new(),
            cwd,
            env: BTreeMap::new(),
            env_types: BTreeMap::new(),
            base_env: std::env::vars().collect(),
            exec_mode: ExecMode::Fork,
            instances: Instances::Count(1),
            port: None,
            host: "0.0.0.0".into(),
            mode: crate::accept::Mode::default(),
            plane: crate::accept::PlaneConfig::default(),
            pin: true,
            incoming_cpu: false,
            keep_indexes: false,
            listen_timeout_keeps_old: false,
            autorestart: true,
            kill_timeout_ms: DEFAULT_KILL_TIMEOUT_MS,
            min_uptime_ms: DEFAULT_MIN_UPTIME_MS,
            max_restarts: DEFAULT_MAX_RESTARTS,
            restart_delay_ms: 0,
            stop_exit_codes: Vec::new(),
            out_file: None,
            error_file: None,
            merge_logs: false,
            logs: Default::default(),
            instance_var: None,
            increment_var: None,
            pending: BTreeMap::new(),
            config_file: None,
            max_memory_restart: None,
            exp_backoff_restart_delay_ms: None,
            listen_timeout_ms: pm2_env::listen_timeout_ms().unwrap_or(DEFAULT_LISTEN_TIMEOUT_MS),
            wait_ready: false,
            shutdown_with_message: pm2_env::kill_use_message(),
            app_metrics: false,
            memory_check_ms: DEFAULT_MEMORY_CHECK_MS,
            watch: Vec::new(),
            ignore_watch: Vec::new(),
            watch_delay_ms: DEFAULT_WATCH_DELAY_MS,
            cron_restart: None,
        }
    }

    /// The app an ecosystem file describes, on herd's defaults. Cluster mode
    /// when the file says so, or gives `instances` or a `port`.
    pub fn from_config(c: &ecosystem::AppConfig, file: &Path) -> AppSpec {
        let mut s = AppSpec::new(c.name.clone(), c.script.clone(), c.cwd.clone());
        s.interpreter = c.interpreter.clone();
        s.interpreter_args = c.interpreter_args.clone();
        s.args = c.args.clone();
        s.env = c.env.clone();
        s.env_types = c.env_types.clone();
        // An incremented PORT is each instance's own, never herd's port.
        let port_from_env = c
            .env
            .get("PORT")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p > 0 && c.increment_var.as_deref() != Some("PORT"));
        s.port = c.port.or(port_from_env);
        s.exec_mode = match c.exec_mode {
            Some(m) => m,
            None if c.instances.is_some() || s.port.is_some() => ExecMode::Cluster,
            None => ExecMode::Fork,
        };
        if let Some(i) = c.instances {
            s.instances = i;
        }
        if let Some(m) = c.mode {
            s.mode = m;
        }
        if let Some(p) = c.policy {
            s.plane.policy = p;
        }
        s.pin = c.pin.unwrap_or(s.pin);
        s.incoming_cpu = c.incoming_cpu.unwrap_or(false);
        s.keep_indexes = c.keep_indexes.unwrap_or(false);
        s.listen_timeout_keeps_old = c.listen_timeout_keeps_old.unwrap_or(false);
        s.plane.warmup_ms = c.warmup_ms.unwrap_or(s.plane.warmup_ms);
        if let Some(p) = &c.warmup_path {
            s.plane.warmup_path = p.clone();
        }
        s.autorestart = c.autorestart.unwrap_or(s.autorestart);
        s.kill_timeout_ms = c.kill_timeout_ms.unwrap_or(s.kill_timeout_ms);
        s.min_uptime_ms = c.min_uptime_ms.unwrap_or(s.min_uptime_ms);
        s.max_restarts = c.max_restarts.unwrap_or(s.max_restarts);
        s.restart_delay_ms = c.restart_delay_ms.unwrap_or(s.restart_delay_ms);
        s.stop_exit_codes = c.stop_exit_codes.clone();
        s.out_file = c.out_file.clone();
        s.error_file = c.error_file.clone();
        s.merge_logs = c.merge_logs.unwrap_or(false);
        s.logs = crate::protocol::LogSettings {
            log_file: c.log_file.clone(),
            date_format: c.log_date_format.clone().or_else(|| {
                (c.time == Some(true)).then(|| crate::logs::date::TIME_DEFAULT.to_string())
            }),
            json: c.log_type.as_deref() == Some("json"),
            max_size: c.log_max_size_bytes,
            retain: c.log_retain,
        };
        s.instance_var = c.instance_var.clone();
        s.increment_var = c.increment_var.clone();
        s.config_file = Some(file.to_path_buf());
        s.max_memory_restart = c.max_memory_restart_bytes;
        s.exp_backoff_restart_delay_ms = c.exp_backoff_restart_delay_ms;
        s.listen_timeout_ms = c.listen_timeout_ms.unwrap_or(s.listen_timeout_ms);
        s.wait_ready = c.wait_ready.unwrap_or(false);
        s.shutdown_with_message = c.shutdown_with_message.unwrap_or(s.shutdown_with_message);
        s.app_metrics = c.app_metrics.unwrap_or(false);
        s.watch = match &c.watch {
            ecosystem::Watch::Off => Vec::new(),
            ecosystem::Watch::On => vec![c.cwd.clone()],
            ecosystem::Watch::Paths(p) => p.clone(),
        };
        s.ignore_watch = c.ignore_watch.clone();
        s.watch_delay_ms = c.watch_delay_ms.unwrap_or(s.watch_delay_ms);
        s.cron_restart = c.cron_restart.clone();
        // Keep the values of keys read but not acted on, for `herd show`.
        let all = serde_json::to_value(c).unwrap_or_default();
        for key in &c.pending {
            let v = [key.to_string(), format!("{key}_ms"), format!("{key}_bytes")]
                .iter()
                .find_map(|k| all.get(k).cloned())
                .unwrap_or(serde_json::Value::Null);
            s.pending.insert(key.to_string(), v);
        }
        s
    }
}

/// A JavaScript runtime other than Node, by the interpreter's file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `bun`.
    Bun,
    /// `deno`.
    Deno,
}

/// The runtime `spec` runs under, when it is Bun or Deno.
pub fn runtime(spec: &AppSpec) -> Option<Runtime> {
    let interp = spec.interpreter.as_deref()?;
    match Path::new(interp).file_name()?.to_str()? {
        "bun" => Some(Runtime::Bun),
        "deno" => Some(Runtime::Deno),
        _ => None,
    }
}

/// A cluster app whose processes bind the port themselves with
/// `SO_REUSEPORT` (Bun started as a cluster worker), so herd holds no
/// listener for it: herd's own in the group would take connections nobody
/// accepts.
pub fn binds_own_reuseport(spec: &AppSpec) -> bool {
    spec.exec_mode == ExecMode::Cluster
        && spec.mode == crate::accept::Mode::Reuseport
        && runtime(spec) == Some(Runtime::Bun)
}

/// The interpreter PM2 would pick for a script, by extension.
pub fn interpreter_for(script: &Path) -> Option<&'static str> {
    match script.extension().and_then(|e| e.to_str()) {
        Some("js" | "mjs" | "cjs") => Some("node"),
        Some("py") => Some("python3"),
        Some("sh") => Some("bash"),
        _ => None,
    }
}

/// The default app name: the script's file name without extension (PM2).
pub fn default_name(script: &Path) -> String {
    script
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("app")
        .to_string()
}

/// The shell that runs a command string: bash where there is one (PM2
/// runs them with bash), else sh.
pub fn command_shell() -> std::path::PathBuf {
    ["/bin/bash", "/usr/bin/bash"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| "/bin/sh".into())
}

/// An app name for a command string: the string itself (PM2's), with `/`
/// as `-` and at most 128 characters, as names must be.
pub fn command_name(cmd: &str) -> String {
    let n: String = cmd
        .chars()
        .map(|c| if c == '/' || c.is_control() { '-' } else { c })
        .take(128)
        .collect();
    if n.bytes().all(|b| b.is_ascii_digit()) || n == "all" {
        format!("cmd-{n}")
    } else {
        n
    }
}

/// Whether `script` is a command string rather than a file: it has a space
/// and no file has that name.
pub fn is_command(script: &str, cwd: &std::path::Path) -> bool {
    script.trim().contains(char::is_whitespace) && !cwd.join(script).is_file()
}

/// The shell's arguments for a command string: `-c CMD`, then, when the
/// user gave arguments, `$0` (the app's name) and them as `$1 $2 …`.
pub fn command_args(cmd: &str, name: &str, user: Vec<String>) -> Vec<String> {
    let mut args = vec!["-c".to_string(), cmd.to_string()];
    if !user.is_empty() {
        args.push(name.to_string());
        args.extend(user);
    }
    args
}

/// Checks an app name: it is used in log file names and as a CLI target, so
/// it may not be empty, all digits (that is an id), `all`, or contain `/`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| Error::InvalidArg {
        what: "--name".into(),
        value: name.into(),
        expected: format!("a name that {why}"),
    };
    if name.is_empty() || name.len() > 128 {
        return Err(bad("has 1 to 128 characters"));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("is not a number (numbers are instance ids)"));
    }
    if name == "all" {
        return Err(bad("is not `all` (that targets every app)"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\0' || c.is_control())
    {
        return Err(bad("has no `/` or control characters"));
    }
    Ok(())
}

/// Parses a duration in milliseconds: `1600`, `1600ms`, `2s`, `1m`, `1h`.
pub fn parse_duration_ms(what: &str, s: &str) -> Result<u64> {
    let bad = || Error::InvalidArg {
        what: what.into(),
        value: s.into(),
        expected: "milliseconds (`1600`) or a duration like `1600ms`, `2s`, `1m`".into(),
    };
    ecosystem::units::duration_str_ms(s).ok_or_else(bad)
}

/// Checks a warm-up request path: an origin-form path (`/`, `/health?x=1`)
/// of printable ASCII without spaces, at most 1024 bytes.
pub fn valid_warmup_path(s: &str) -> bool {
    s.starts_with('/') && s.len() <= 1024 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses `--warmup-path`.
pub fn parse_warmup_path(what: &str, s: &str) -> Result<String> {
    if valid_warmup_path(s) {
        Ok(s.to_string())
    } else {
        Err(Error::InvalidArg {
            what: what.into(),
            value: s.into(),
            expected: "a request path starting with `/`, without spaces (`/`, `/health`)".into(),
        })
    }
}

/// Parses a `--port` value: 1 to 65535.
pub fn parse_port(s: &str) -> Result<u16> {
    match s.trim().parse::<u16>() {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(Error::InvalidArg {
            what: "--port".into(),
            value: s.into(),
            expected: "a port number from 1 to 65535".into(),
        }),
    }
}

/// Parses `KEY=VALUE` for `--env`.
pub fn parse_env_pair(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(Error::InvalidArg {
            what: "--env".into(),
            value: s.into(),
            expected: "KEY=VALUE".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_leaves_out_environment_values() {
        let mut spec = AppSpec::new("api".into(), "/bin/true".into(), "/".into());
        spec.env.insert("API_TOKEN".into(), "hunter2".into());
        spec.base_env
            .insert("AWS_SECRET_ACCESS_KEY".into(), "s3cr3t".into());
        let d = format!("{spec:?}");
        assert!(!d.contains("hunter2") && !d.contains("s3cr3t"), "{d}");
        assert!(
            d.contains("\"name\":\"api\"") && d.contains("<1 variables>"),
            "{d}"
        );
        let req = crate::protocol::Request::Restart {
            targets: vec![crate::protocol::Target::All],
            env: Some([("DB_PASSWORD".to_string(), "pw123".to_string())].into()),
            patch: crate::protocol::SpecPatch {
                env: [("API_TOKEN".to_string(), "tok456".to_string())].into(),
                ..Default::default()
            },
        };
        let d = format!("{req:?}");
        assert!(!d.contains("pw123") && d.contains("restart"), "{d}");
        assert!(!d.contains("tok456"), "{d}");
        let start = crate::protocol::Request::Start {
            spec: Box::new(spec),
            force: false,
            existing: Default::default(),
        };
        assert!(!format!("{start:?}").contains("hunter2"));
    }

    #[test]
    fn instances_forms() {
        assert_eq!(Instances::parse("max").unwrap(), Instances::Max);
        assert_eq!(Instances::parse("0").unwrap(), Instances::Max);
        assert_eq!(Instances::parse("-1").unwrap(), Instances::MaxMinus(1));
        assert_eq!(Instances::parse("4").unwrap(), Instances::Count(4));
        for bad in ["abc", "0.5", "", "1e3", "99999"] {
            assert!(Instances::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Instances::Max.resolve(8), 8);
        assert_eq!(Instances::Count(4).display(), "4");
        assert_eq!(Instances::Max.display(), "max");
        assert_eq!(Instances::MaxMinus(1).display(), "-1 (max minus 1)");
        assert_eq!(Instances::MaxMinus(1).resolve(8), 7);
        assert_eq!(Instances::MaxMinus(9).resolve(8), 1, "floor of 1");
        assert_eq!(Instances::Count(3).resolve(1), 3);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("t", "1600").unwrap(), 1600);
        assert_eq!(parse_duration_ms("t", "2s").unwrap(), 2000);
        assert_eq!(parse_duration_ms("t", "250ms").unwrap(), 250);
        assert_eq!(parse_duration_ms("t", "1m").unwrap(), 60_000);
        assert!(parse_duration_ms("t", "soon").is_err());
        assert!(parse_duration_ms("t", "-5").is_err());
    }

    #[test]
    fn cron_patterns_as_pm2s_croner_takes_them() {
        for ok in [
            "0 3 * * *",
            "*/5 * * * * *",
            "* * * * * *",
            "0 0 1 JAN MON",
            "0 9-17/2 * * MON-FRI",
            "0 0 L * *",
            "0 12 29 2 *",
            "@daily",
            "@hourly",
            " 0 3 * * * ",
        ] {
            assert!(cron_schedule(ok).is_ok(), "{ok} refused");
            assert_eq!(
                parse_cron("--cron-restart", ok).unwrap().as_deref(),
                Some(ok.trim())
            );
        }
        for bad in [
            "* * * *",
            "every day",
            "0 3 * * * * *",
            "0 3 * * ;",
            "61 * * * *",
            "0 25 * * *",
            "@fortnightly",
            "0 0 30 2 *",
            "",
        ] {
            let e = parse_cron("--cron-restart", bad).unwrap_err().to_string();
            assert!(
                e.contains("--cron-restart") && e.contains(CRON_EXPECTED),
                "{bad}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
        assert_eq!(parse_cron("--cron-restart", "0").unwrap(), None, "0 is off");
    }

    #[test]
    fn names_and_ports() {
        assert!(validate_name("api").is_ok());
        for bad in ["", "42", "all", "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_port("8080").unwrap(), 8080);
        for bad in ["0", "-1", "65536", "http"] {
            assert!(parse_port(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(interpreter_for(Path::new("a/app.js")), Some("node"));
        assert_eq!(interpreter_for(Path::new("run.sh")), Some("bash"));
        assert_eq!(interpreter_for(Path::new("bin/server")), None);
        assert_eq!(default_name(Path::new("/x/app.js")), "app");
    }
}

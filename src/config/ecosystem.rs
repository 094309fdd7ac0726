//! Ecosystem files: PM2's `ecosystem.config.js` (also `.cjs`, `.mjs`),
//! `.json`, `.yaml`/`.yml`, and herd's own `herd.toml`, all read into one
//! typed [`AppConfig`] per app. This layer only reads, checks and resolves;
//! the CLI lays its flags over the result and turns it into an `AppSpec`.
//!
//! * **JavaScript** is evaluated by `node` (see `node.rs`): the file is
//!   `require`d (or `import()`ed) with its directory as cwd, so `require`,
//!   `module.exports`, `export default` and `process.env` work as in PM2.
//! * **JSON** is parsed strictly; a file that is not strict JSON is read the
//!   way PM2 reads every `.json`, as a JavaScript object literal (comments,
//!   unquoted keys), which needs `node`.
//! * **YAML** is parsed with `yaml_serde`, the YAML organisation's
//!   maintained continuation of `serde_yaml` (which is archived; `serde_yml`
//!   carries a soundness advisory). It brings only the YAML organisation's
//!   Rust translation of libyaml (no C toolchain), `indexmap`, `itoa` and
//!   `ryu`; `serde-saphyr` would need Rust 1.89 and more crates.
//! * **TOML** (`herd.toml`: `[[apps]]` tables with the same keys, env in
//!   `[apps.env]` / `[apps.env_production]`) is parsed with `toml`, without
//!   its writer.
//!
//! Every format is first read into a `serde_json::Value`, so all of them go
//! through the same checks (`app.rs`) and the same app comes out of each.
//! Keys and their aliases are in `keys.rs`, value forms in `units.rs`.
//!
//! A file with any error gives `Err` with every error in it (nothing may be
//! started from it); unknown keys and keys herd ignores give warnings.

mod app;
mod keys;
mod node;
pub(crate) mod units;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// Is this path an ecosystem/config file rather than a script to run?
/// `*.config.js|cjs|mjs`, `ecosystem*.js|cjs|mjs`, `*.json`, `*.yaml`,
/// `*.yml`, `*.toml`.
pub fn is_config_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    let js = [".js", ".cjs", ".mjs"].iter().any(|e| name.ends_with(e));
    [".json", ".yaml", ".yml", ".toml"]
        .iter()
        .any(|e| name.ends_with(e))
        || [".config.js", ".config.cjs", ".config.mjs"]
            .iter()
            .any(|e| name.ends_with(e))
        || (js && name.starts_with("ecosystem"))
}

/// A loaded file: its apps, in file order, and what the user should be
/// told about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Loaded {
    /// The file, absolute.
    pub file: PathBuf,
    /// The apps to start (after `--only`).
    pub apps: Vec<AppConfig>,
    /// One line each: unknown keys (with the closest known key), keys herd
    /// ignores, an `--env` with no `env_<name>`.
    pub warnings: Vec<String>,
}

/// Why a file cannot be used. `message` is the first problem, one line:
/// `<file>: app `api`: key `instances`: value `"lots"`: expected …`;
/// `also` holds the others, so every error in a file shows at once.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The first error.
    pub message: String,
    /// What to do about it, where there is more to say than the message.
    pub hint: Option<String>,
    /// The file's other errors, one line each.
    pub also: Vec<String>,
}

impl ConfigError {
    fn new(message: String) -> ConfigError {
        ConfigError {
            message,
            hint: None,
            also: Vec::new(),
        }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> ConfigError {
        self.hint = Some(hint.into());
        self
    }

    /// Every error, one per line.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.message.as_str()).chain(self.also.iter().map(String::as_str))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for line in &self.also {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// What `watch` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Watch {
    /// No watching (`false`, or no `watch` key).
    Off,
    /// Watch the app's cwd (`true`, or an empty list, as in PM2).
    On,
    /// Watch these paths (absolute).
    Paths(Vec<PathBuf>),
}

/// One app of an ecosystem file, every key typed and checked. `None` / empty
/// means the file does not say (the CLI's flags and herd's defaults decide).
/// Keys herd does not act on yet are still parsed and checked, so their
/// errors show, and are named in `pending`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppConfig {
    /// `name`, else the script's file name without extension; with
    /// `-<env>` appended when `append_env_to_name` and `--env` are given.
    pub name: String,
    /// `script` (alias `exec`), absolute: resolved against `cwd`, or found
    /// in PATH when it is a bare program name (`npm`).
    pub script: PathBuf,
    /// `args`: a list, or one string split like a shell would.
    pub args: Vec<String>,
    /// `interpreter` (alias `exec_interpreter`); `none` → `None`; absent →
    /// by the script's extension (`crate::config::interpreter_for`).
    pub interpreter: Option<String>,
    /// `interpreter_args` (alias `node_args`).
    pub interpreter_args: Vec<String>,
    /// `cwd`, absolute (relative to the file's directory); default: the
    /// file's directory.
    pub cwd: PathBuf,
    /// `instances`: `max`, N, 0 (= max), -N.
    pub instances: Option<crate::config::Instances>,
    /// `exec_mode`: `fork`/`fork_mode`, `cluster`/`cluster_mode`.
    pub exec_mode: Option<crate::config::ExecMode>,
    /// `env`, with `env_<name>` merged over it for `--env <name>`; numbers
    /// and booleans written as PM2 writes them (`3000`, `true`).
    pub env: BTreeMap<String, String>,
    /// The variables of `env` the file wrote as numbers or booleans, with
    /// their JSON value (for `jlist`, as PM2 keeps them).
    pub env_types: BTreeMap<String, serde_json::Value>,
    /// `port` (herd listens on it for the app).
    pub port: Option<u16>,
    /// `mode` (alias `distribution`): fdpass, reuseport, shared.
    pub mode: Option<crate::accept::Mode>,
    /// `policy`: least-conn, round-robin, p2c, least-time.
    pub policy: Option<crate::accept::pool::Policy>,
    /// `pin`: pin instance i to CPU i.
    pub pin: Option<bool>,
    /// `force`: start a second copy even if one runs (the CLI's `-f`).
    pub force: Option<bool>,
    /// `autorestart`.
    pub autorestart: Option<bool>,
    /// `kill_timeout`.
    pub kill_timeout_ms: Option<u64>,
    /// `min_uptime`.
    pub min_uptime_ms: Option<u64>,
    /// `max_restarts`.
    pub max_restarts: Option<u32>,
    /// `restart_delay`.
    pub restart_delay_ms: Option<u64>,
    /// `exp_backoff_restart_delay`.
    pub exp_backoff_restart_delay_ms: Option<u64>,
    /// `max_memory_restart`, in bytes (K/M/G are powers of 1024).
    pub max_memory_restart_bytes: Option<u64>,
    /// `watch`.
    pub watch: Watch,
    /// `ignore_watch`: patterns, as written.
    pub ignore_watch: Vec<String>,
    /// `watch_delay`.
    pub watch_delay_ms: Option<u64>,
    /// `out_file` (aliases `out`, `output`, `out_log`), absolute; `NULL` and
    /// `disable_logs` give /dev/null.
    pub out_file: Option<PathBuf>,
    /// `error_file` (aliases `error`, `err`, `err_file`, `err_log`).
    pub error_file: Option<PathBuf>,
    /// `log_file` (alias `log`): stdout and stderr combined.
    pub log_file: Option<PathBuf>,
    /// `pid_file` (alias `pid`).
    pub pid_file: Option<PathBuf>,
    /// `time`: prefix log lines with a timestamp.
    pub time: Option<bool>,
    /// `log_date_format` (day.js format, as in PM2).
    pub log_date_format: Option<String>,
    /// `merge_logs` (alias `combine_logs`).
    pub merge_logs: Option<bool>,
    /// `log_type`: `json`.
    pub log_type: Option<String>,
    /// `incoming_cpu` (herd): SO_INCOMING_CPU on pinned reuseport listeners.
    pub incoming_cpu: Option<bool>,
    /// `keep_indexes` (herd): scale-down retires the highest indexes.
    pub keep_indexes: Option<bool>,
    /// `listen_timeout_keeps_old` (herd): a reload's late replacement is
    /// killed and the old process kept.
    pub listen_timeout_keeps_old: Option<bool>,
    /// `warmup` (herd, fdpass): warm a new worker this long before it joins.
    pub warmup_ms: Option<u64>,
    /// `warmup_path` (herd): the path the warm-up requests ask for.
    pub warmup_path: Option<String>,
    /// `log_max_size` (herd): rotate log files at this size, in bytes.
    pub log_max_size_bytes: Option<u64>,
    /// `log_retain` (herd): rotated files kept.
    pub log_retain: Option<u32>,
    /// `stop_exit_codes`: exits with these codes are not restarted.
    pub stop_exit_codes: Vec<i32>,
    /// `listen_timeout`.
    pub listen_timeout_ms: Option<u64>,
    /// `wait_ready`.
    pub wait_ready: Option<bool>,
    /// `shutdown_with_message`.
    pub shutdown_with_message: Option<bool>,
    /// `app_metrics` (herd's own key).
    pub app_metrics: Option<bool>,
    /// `instance_var` (default `NODE_APP_INSTANCE`).
    pub instance_var: Option<String>,
    /// `increment_var`.
    pub increment_var: Option<String>,
    /// `cron_restart` (alias `cron`): 5 or 6 fields or `@daily`-style; `0`
    /// turns it off.
    pub cron_restart: Option<String>,
    /// `namespace`.
    pub namespace: Option<String>,
    /// `uid` (alias `user`): a user name or number.
    pub uid: Option<String>,
    /// `gid`: a group name or number.
    pub gid: Option<String>,
    /// The keys present in the file that herd parses but does not act on
    /// yet, by their documented names.
    pub pending: Vec<&'static str>,
}

/// The formats, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Js(node::How),
    Json,
    Yaml,
    Toml,
}

impl Format {
    fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let ends = |e: &str| name.ends_with(e);
        Some(if ends(".mjs") {
            Format::Js(node::How::Import)
        } else if ends(".js") || ends(".cjs") {
            Format::Js(node::How::Require)
        } else if ends(".json") {
            Format::Json
        } else if ends(".yaml") || ends(".yml") {
            Format::Yaml
        } else if ends(".toml") {
            Format::Toml
        } else {
            return None;
        })
    }
}

/// Loads `path`: parses it, checks every app, merges `env_<env_name>` over
/// `env`, resolves relative paths against the file's directory, and keeps
/// the apps named in `only` (each entry may itself be `a,b`; an unknown name
/// is an error). Nothing is returned from a file with an error.
pub fn load(path: &Path, env_name: Option<&str>, only: &[String]) -> Result<Loaded, ConfigError> {
    let label = path.display().to_string();
    let file = units::normalize(&std::env::current_dir().unwrap_or_default().join(path));
    let format = Format::of(&file).ok_or_else(|| {
        ConfigError::new(format!(
            "{label}: not an ecosystem file: expected a name ending in .config.js, .json, .yaml, .yml or .toml"
        ))
    })?;
    let doc = read(&file, &label, format)?;
    from_doc(&doc, &label, file, env_name, only)
}

/// An ecosystem file in JSON read from standard input (`herd start -`):
/// relative paths in it are taken from `cwd`.
pub fn load_stdin(
    text: &str,
    cwd: &Path,
    env_name: Option<&str>,
    only: &[String],
) -> Result<Loaded, ConfigError> {
    let label = "<stdin>";
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new(format!("{label}: not valid JSON: {e}")))?;
    from_doc(&doc, label, cwd.join("<stdin>"), env_name, only)
}

fn from_doc(
    doc: &Value,
    label: &str,
    file: PathBuf,
    env_name: Option<&str>,
    only: &[String],
) -> Result<Loaded, ConfigError> {
    let label = label.to_string();
    let mut warnings = Vec::new();
    let objects = app_objects(doc, &label, &mut warnings)?;

    let dir = file.parent().unwrap_or(Path::new("/"));
    let deploy_env = env_name.and_then(|n| doc.get("deploy")?.get(n)?.get("env"));
    let ctx = app::FileCtx {
        label: &label,
        dir,
        env_name,
        deploy_env,
    };
    let outcomes: Vec<app::Outcome> = objects
        .iter()
        .enumerate()
        .map(|(i, obj)| app::convert(&ctx, i, obj))
        .collect();
    let mut errors: Vec<String> = outcomes.iter().flat_map(|o| o.errors.clone()).collect();

    // Names are how apps are targeted (and how --only picks them).
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, o) in outcomes.iter().enumerate() {
        if let Some(a) = &o.app {
            if let Some(first) = seen.insert(&a.name, i) {
                errors.push(format!(
                    "{label}: apps #{} and #{} are both named `{}`: names must be unique",
                    first + 1,
                    i + 1,
                    a.name
                ));
            }
        }
    }

    let wanted: Vec<&str> = only
        .iter()
        .flat_map(|o| o.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    let named = |o: &app::Outcome, w: &str| {
        o.file_name.as_deref() == Some(w) || o.app.as_ref().is_some_and(|a| a.name == w)
    };
    let picked = |o: &app::Outcome| wanted.is_empty() || wanted.iter().any(|w| named(o, w));
    for w in &wanted {
        let known = outcomes.iter().any(|o| named(o, w));
        if !known {
            let names: Vec<&str> = outcomes
                .iter()
                .filter_map(|o| o.app.as_ref().map(|a| a.name.as_str()))
                .collect();
            errors.push(format!(
                "{label}: --only: no app named `{w}` in this file (it has: {})",
                names.join(", ")
            ));
        }
    }
    if let Some((first, rest)) = errors.split_first() {
        return Err(ConfigError {
            message: first.clone(),
            hint: None,
            also: rest.to_vec(),
        });
    }

    let mut apps = Vec::new();
    for o in outcomes {
        if picked(&o) {
            warnings.extend(o.warnings);
            apps.extend(o.app);
        }
    }
    Ok(Loaded {
        file,
        apps,
        warnings,
    })
}

/// Reads the file into one JSON value, whatever its format.
fn read(file: &Path, label: &str, format: Format) -> Result<Value, ConfigError> {
    let text = || {
        std::fs::read_to_string(file)
            .map_err(|e| ConfigError::new(format!("{label}: cannot read it: {e}")))
    };
    match format {
        Format::Js(how) => evaluate(file, label, how),
        Format::Json => {
            let text = text()?;
            serde_json::from_str(&text).or_else(|strict| {
                // PM2 reads .json as a JavaScript object literal.
                node::evaluate(file, node::How::Literal).map_err(|f| {
                    let why = match f {
                        node::Failure::NoNode => "node, which is not in PATH",
                        _ => "node, which could not read it either",
                    };
                    ConfigError::new(format!("{label}: not valid JSON: {strict}")).with_hint(
                        format!("PM2-style JSON (comments, unquoted keys) is read with {why}"),
                    )
                })
            })
        }
        Format::Yaml => yaml_serde::from_str(&text()?)
            .map_err(|e| ConfigError::new(format!("{label}: not valid YAML: {e}"))),
        Format::Toml => {
            let text = text()?;
            toml::from_str(&text).map_err(|e| {
                let at = e.span().map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" at line {line} column {col}")
                });
                ConfigError::new(format!(
                    "{label}: not valid TOML{}: {}",
                    at.unwrap_or_default(),
                    e.message().trim()
                ))
            })
        }
    }
}

/// Runs a JavaScript file through node and maps its failures to errors.
fn evaluate(file: &Path, label: &str, how: node::How) -> Result<Value, ConfigError> {
    node::evaluate(file, how).map_err(|f| match f {
        node::Failure::NoNode => ConfigError::new(format!(
            "{label}: reading a JavaScript ecosystem file needs `node`, which is not in PATH"
        ))
        .with_hint("install Node.js, or write the file as JSON, YAML or herd.toml"),
        node::Failure::Threw {
            what,
            line: Some(n),
        } => {
            let source = std::fs::read_to_string(file).ok().and_then(|t| {
                t.lines()
                    .nth(n as usize - 1)
                    .map(|l| format!("line {n}: {}", l.trim()))
            });
            let err = ConfigError::new(format!("{label}:{n}: {what}"));
            match source {
                Some(s) => err.with_hint(s),
                None => err,
            }
        }
        node::Failure::Threw { what, line: None } => ConfigError::new(format!("{label}: {what}")),
        node::Failure::Broken(why) => ConfigError::new(format!("{label}: {why}")),
    })
}

/// The app objects of a document, as PM2 finds them: `{apps: [...]}` (or
/// the legacy `{pm2: [...]}`), a list of apps, or one app object.
fn app_objects<'d>(
    doc: &'d Value,
    label: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<&'d serde_json::Map<String, Value>>, ConfigError> {
    let shape = || {
        ConfigError::new(format!(
            "{label}: expected an object with `apps: [...]`, a list of apps, or one app object"
        ))
    };
    let list = match doc {
        Value::Object(top) => match top.get("apps").or_else(|| top.get("pm2")) {
            Some(apps) => {
                for k in top.keys().filter(|k| *k != "apps" && *k != "pm2") {
                    warnings.push(match k.as_str() {
                        "deploy" => format!(
                            "{label}: `deploy` ignored but for `deploy.<env>.env`, the lowest layer of the apps' environment with `--env <env>`: herd does not deploy (run `herd start` on each host)"
                        ),
                        _ => format!("{label}: unknown top-level key `{k}` ignored"),
                    });
                }
                match apps {
                    Value::Array(a) => a.iter().collect(),
                    one @ Value::Object(_) => vec![one],
                    _ => return Err(shape()),
                }
            }
            None => vec![doc],
        },
        Value::Array(a) => a.iter().collect(),
        _ => return Err(shape()),
    };
    if list.is_empty() {
        return Err(ConfigError::new(format!("{label}: no apps in it")));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_object().ok_or_else(|| {
                ConfigError::new(format!(
                    "{label}: app #{}: expected an object with at least `script`, found `{}`",
                    i + 1,
                    units::show(v)
                ))
            })
        })
        .collect()
}

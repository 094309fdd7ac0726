//! One app object of an ecosystem file → [`AppConfig`]: every key looked up
//! in [`keys`], every value checked against its form, relative paths
//! resolved, `env` merged with `env_<name>`. Problems are collected, not
//! returned at the first one, so a file's errors all show at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::keys::{self, Support};
use super::units::{self, resolve, show, which};
use super::{AppConfig, Watch};
use crate::accept::pool::Policy;
use crate::accept::Mode;
use crate::config::{default_name, interpreter_for, validate_name, ExecMode, Instances};

/// What the whole file shares.
pub(super) struct FileCtx<'a> {
    /// The file as the user named it, for messages.
    pub label: &'a str,
    /// The file's directory (absolute): relative paths start here.
    pub dir: &'a Path,
    /// `--env <name>`.
    pub env_name: Option<&'a str>,
    /// `deploy.<name>.env` of the file, for that `--env <name>`: the
    /// lowest layer of every app's environment (PM2's merge order).
    pub deploy_env: Option<&'a Value>,
}

/// The result of converting one app.
pub(super) struct Outcome {
    /// The app, when it had no errors.
    pub app: Option<AppConfig>,
    /// The name the file gives it (before `append_env_to_name`), if any.
    pub file_name: Option<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// The keys of one app object, by canonical name, with the spelling used.
struct Fields<'v> {
    label: String,
    by_key: HashMap<&'static str, (&'v str, &'v Value)>,
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl<'v> Fields<'v> {
    fn get(&self, key: &'static str) -> Option<(&'v str, &'v Value)> {
        // PM2 treats `null` as absent.
        self.by_key.get(key).copied().filter(|(_, v)| !v.is_null())
    }

    fn bad(&mut self, key: &'static str, expected: &str) {
        if let Some((spelling, value)) = self.by_key.get(key) {
            let msg = format!(
                "{}: key `{spelling}`: value `{}`: expected {expected}",
                self.label,
                show(value)
            );
            self.errors.push(msg);
        }
    }

    fn warn(&mut self, msg: String) {
        self.warnings.push(format!("{}: {msg}", self.label));
    }

    /// A key's value through `parse`, or an error naming `expected`.
    fn with<T>(
        &mut self,
        key: &'static str,
        expected: &str,
        parse: impl FnOnce(&'v Value) -> Option<T>,
    ) -> Option<T> {
        let (_, v) = self.get(key)?;
        let parsed = parse(v);
        if parsed.is_none() {
            self.bad(key, expected);
        }
        parsed
    }

    fn string(&mut self, key: &'static str) -> Option<String> {
        self.with(key, "a string", |v| v.as_str().map(str::to_string))
    }

    fn boolean(&mut self, key: &'static str) -> Option<bool> {
        self.with(key, "`true` or `false`", Value::as_bool)
    }

    fn duration(&mut self, key: &'static str) -> Option<u64> {
        self.with(key, units::DURATION, units::duration_ms)
    }

    /// An array of scalars, or one string split like a shell would.
    fn words(&mut self, key: &'static str) -> Vec<String> {
        let Some((_, v)) = self.get(key) else {
            return Vec::new();
        };
        let expected = "a list of strings, or one string of space-separated words";
        match v {
            Value::Array(items) => {
                let words: Option<Vec<String>> = items.iter().map(units::scalar_text).collect();
                words.unwrap_or_else(|| {
                    self.bad(key, expected);
                    Vec::new()
                })
            }
            Value::String(s) => units::split_words(s).unwrap_or_else(|missing| {
                self.bad(key, &format!("{expected} ({missing} is missing)"));
                Vec::new()
            }),
            _ => {
                self.bad(key, expected);
                Vec::new()
            }
        }
    }

    /// An environment variable's name (`instance_var`, `increment_var`).
    fn var_name(&mut self, key: &'static str) -> Option<String> {
        self.with(key, "an environment variable name", |v| {
            v.as_str()
                .filter(|s| env_name_ok(s) && !s.contains(char::is_whitespace))
                .map(str::to_string)
        })
    }

    /// A path, resolved against `base`; `NULL` means /dev/null, as in PM2.
    fn path(&mut self, key: &'static str, base: &Path) -> Option<PathBuf> {
        self.with(key, "a path", |v| v.as_str().filter(|s| !s.is_empty()))
            .map(|s| match s {
                "NULL" | "/dev/null" => PathBuf::from("/dev/null"),
                s => resolve(base, s),
            })
    }

    /// A user or group: a name or a number.
    fn principal(&mut self, key: &'static str) -> Option<String> {
        self.with(key, "a name or a number", |v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) if n.is_u64() => Some(n.to_string()),
            _ => None,
        })
    }
}

fn env_name_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains(['=', '\0'])
}

/// Converts the app at `index` (0-based) of the file.
pub(super) fn convert(ctx: &FileCtx<'_>, index: usize, obj: &Map<String, Value>) -> Outcome {
    let file_name = obj.get("name").and_then(Value::as_str).map(str::to_string);
    let label = match (&file_name, obj.get("script").and_then(Value::as_str)) {
        (Some(n), _) => format!("{}: app `{n}`", ctx.label),
        (None, Some(s)) => format!("{}: app `{}`", ctx.label, default_name(Path::new(s))),
        (None, None) => format!("{}: app #{}", ctx.label, index + 1),
    };
    let mut f = Fields {
        label,
        by_key: HashMap::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    // Sort the keys out: known (by any spelling), env_<name>, unknown.
    let mut env_sets: BTreeMap<&str, (&str, &Value)> = BTreeMap::new();
    for (spelling, value) in obj {
        if let Some(set) = spelling.strip_prefix("env_").filter(|s| !s.is_empty()) {
            env_sets.insert(set, (spelling, value));
            continue;
        }
        let Some(key) = keys::lookup(spelling) else {
            let hint = match keys::suggest(spelling) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => String::new(),
            };
            f.warn(format!(
                "unknown key `{spelling}` ignored: not a PM2 or herd key{hint}"
            ));
            continue;
        };
        match f.by_key.get(key.name) {
            Some((other, _)) => {
                let (keep, drop) = if spelling == key.name {
                    (spelling.as_str(), *other)
                } else {
                    (*other, spelling.as_str())
                };
                f.warn(format!(
                    "keys `{keep}` and `{drop}` set the same thing; using `{keep}`"
                ));
                if spelling == key.name {
                    f.by_key.insert(key.name, (spelling, value));
                }
            }
            None => {
                f.by_key.insert(key.name, (spelling, value));
            }
        }
        if let Support::Ignored(why) = key.support {
            f.warn(format!("key `{spelling}` accepted and ignored: {why}"));
        }
    }
    let pending: Vec<&'static str> = keys::KEYS
        .iter()
        .filter(|k| k.support == Support::Pending && f.get(k.name).is_some())
        .map(|k| k.name)
        .collect();

    // Where and what.
    let cwd = f
        .with("cwd", "a directory", |v| {
            v.as_str().filter(|s| !s.is_empty())
        })
        .map(|s| resolve(ctx.dir, s))
        .unwrap_or_else(|| ctx.dir.to_path_buf());
    if !cwd.is_dir() {
        let expected = format!(
            "an existing directory: there is none at {} (a relative cwd starts at the file's directory)",
            cwd.display()
        );
        f.bad("cwd", &expected);
    }
    let (script, command) = match script(&mut f, &cwd) {
        Some((s, c)) => (Some(s), c),
        None => (None, None),
    };
    let name = match f.get("name") {
        Some(_) => f.with("name", "a string (the app's name)", |v| {
            v.as_str().map(str::to_string)
        }),
        None => match &command {
            Some(c) => Some(crate::config::command_name(c)),
            None => script.as_deref().map(default_name),
        },
    };
    let name = name.and_then(|n| match validate_name(&n) {
        Ok(()) => Some(n),
        Err(e) => {
            let expected = match &e {
                crate::error::Error::InvalidArg { expected, .. } => expected.clone(),
                other => other.to_string(),
            };
            match f.get("name") {
                Some(_) => f.bad("name", &expected),
                None => f.errors.push(format!(
                    "{}: the name taken from the script, `{n}`, is not usable: expected {expected}; set `name`",
                    f.label
                )),
            }
            None
        }
    });
    let append_env = f.boolean("append_env_to_name").unwrap_or(false);
    let name = match (name, ctx.env_name) {
        (Some(n), Some(env)) if append_env => Some(format!("{n}-{env}")),
        (n, _) => n,
    };
    let mut args = f.words("args");
    if let Some(c) = &command {
        args = crate::config::command_args(c, name.as_deref().unwrap_or("cmd"), args);
    }
    let interpreter = match f.string("interpreter") {
        _ if command.is_some() => None,
        Some(i) if i == "none" => None,
        Some(i) if i.is_empty() => {
            f.bad(
                "interpreter",
                "a program (`node`, `python3`, a path) or `none`",
            );
            None
        }
        Some(i) => Some(i),
        None => script
            .as_deref()
            .and_then(interpreter_for)
            .map(str::to_string),
    };
    let interpreter_args = f.words("interpreter_args");
    let env = env(&mut f, &env_sets, ctx.env_name, ctx.deploy_env);
    let env_types = env_types(&f, &env_sets, ctx.env_name, ctx.deploy_env);

    // How many and how connections reach them.
    let instances = f.with(
        "instances",
        "`max`, a whole number, 0 (= max) or -N (= max minus N)",
        |v| match v {
            Value::String(s) => Instances::parse(s).ok(),
            Value::Number(n) => n
                .as_i64()
                .and_then(|i| Instances::parse(&i.to_string()).ok()),
            _ => None,
        },
    );
    let exec_mode = f.get("exec_mode").and_then(|(_, v)| {
        let mode = match v.as_str() {
            Some("fork" | "fork_mode") => Some(ExecMode::Fork),
            Some("cluster" | "cluster_mode") => Some(ExecMode::Cluster),
            _ => None,
        };
        if mode.is_none() {
            let guess = v.as_str().and_then(|s| {
                ["cluster", "fork"]
                    .into_iter()
                    .find(|m| strsim::damerau_levenshtein(&s.to_ascii_lowercase(), m) <= 2)
            });
            let expected = match guess {
                Some(g) => format!("`fork` or `cluster` (did you mean `{g}`?)"),
                None => "`fork` or `cluster` (or `fork_mode`, `cluster_mode`)".to_string(),
            };
            f.bad("exec_mode", &expected);
        }
        mode
    });
    let port = f.with("port", "a port number from 1 to 65535", |v| {
        units::scalar_text(v)
            .filter(|_| !v.is_boolean())
            .and_then(|s| crate::config::parse_port(&s).ok())
    });
    let mode = f.with("mode", "`fdpass`, `reuseport` or `shared`", |v| {
        v.as_str().and_then(Mode::parse)
    });
    let policy = f.with(
        "policy",
        "`least-conn`, `round-robin`, `p2c` or `least-time`",
        |v| v.as_str().and_then(Policy::parse),
    );
    let pin = f.boolean("pin");
    let force = f.boolean("force");

    // Restart policy.
    let autorestart = f.boolean("autorestart");
    let kill_timeout_ms = f.duration("kill_timeout");
    let min_uptime_ms = f.duration("min_uptime");
    let max_restarts = f.with("max_restarts", "a whole number, 0 or more", |v| match v {
        Value::String(s) => s.trim().parse().ok(),
        v => v.as_u64().and_then(|n| u32::try_from(n).ok()),
    });
    let restart_delay_ms = f.duration("restart_delay");
    let exp_backoff_restart_delay_ms = f.duration("exp_backoff_restart_delay");
    let max_memory_restart_bytes = f.with("max_memory_restart", units::SIZE, units::size_bytes);
    let stop_exit_codes = f
        .with(
            "stop_exit_codes",
            "an exit code or a list of exit codes (0 to 255)",
            |v| {
                let code = |v: &Value| v.as_u64().filter(|c| *c <= 255).map(|c| c as i32);
                match v {
                    Value::Array(items) => items.iter().map(code).collect(),
                    v => code(v).map(|c| vec![c]),
                }
            },
        )
        .unwrap_or_default();
    let listen_timeout_ms = f.duration("listen_timeout");
    let wait_ready = f.boolean("wait_ready");
    let shutdown_with_message = f.boolean("shutdown_with_message");
    let app_metrics = f.boolean("app_metrics");
    let cron_restart = cron_restart(&mut f);

    // Watch.
    let watch = f
        .with(
            "watch",
            "`true`, `false`, a path or a list of paths",
            |v| match v {
                Value::Bool(false) => Some(Watch::Off),
                Value::Bool(true) => Some(Watch::On),
                Value::String(s) if !s.is_empty() => Some(Watch::Paths(vec![resolve(&cwd, s)])),
                Value::Array(items) if items.is_empty() => Some(Watch::On),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .filter(|s| !s.is_empty())
                            .map(|s| resolve(&cwd, s))
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(Watch::Paths),
                _ => None,
            },
        )
        .unwrap_or(Watch::Off);
    let ignore_watch = f.words("ignore_watch");
    for p in ignore_watch.iter().filter(|p| units::looks_like_regex(p)) {
        f.warn(format!(
            "key `ignore_watch`: `{p}` looks like a regular expression; herd matches names, paths and `*`, `?`, `**` globs (e.g. `*.log`), so it is taken literally"
        ));
    }
    let watch_delay_ms = f.duration("watch_delay");

    // Logs.
    let disable_logs = f.boolean("disable_logs").unwrap_or(false);
    let devnull = || disable_logs.then(|| PathBuf::from("/dev/null"));
    let out_file = f.path("out_file", &cwd).or_else(devnull);
    let error_file = f.path("error_file", &cwd).or_else(devnull);
    let log_file = match f.get("log_file") {
        Some((spelling, Value::Bool(true))) => {
            f.warn(format!(
                "key `{spelling}`: `true` (a combined log in herd's log folder) is not supported yet; give a path to get a combined log"
            ));
            None
        }
        Some((_, Value::Bool(false))) => None,
        Some(_) => f.path("log_file", &cwd),
        None => None,
    };
    let pid_file = f.path("pid_file", &cwd);
    let time = f.boolean("time");
    let log_date_format = f.string("log_date_format");
    let merge_logs = f.boolean("merge_logs");
    let log_type = match f.string("log_type") {
        Some(t) if t == "json" => Some(t),
        Some(t) => {
            f.warn(format!(
                "key `log_type`: `{t}` ignored: herd knows only `json` (plain lines are the default)"
            ));
            None
        }
        None => None,
    };

    let incoming_cpu = f.boolean("incoming_cpu");
    let keep_indexes = f.boolean("keep_indexes");
    let listen_timeout_keeps_old = f.boolean("listen_timeout_keeps_old");
    let warmup_ms = f.duration("warmup");
    let warmup_path = f.with(
        "warmup_path",
        "a request path starting with `/`, without spaces (`/`, `/health`)",
        |v| {
            v.as_str()
                .filter(|s| crate::config::valid_warmup_path(s))
                .map(str::to_string)
        },
    );
    let log_max_size_bytes = f.with("log_max_size", units::SIZE, units::size_bytes);
    let log_retain = f.with(
        "log_retain",
        "a whole number of rotated files, 0 or more",
        |v| match v {
            Value::String(s) => s.trim().parse().ok(),
            v => v.as_u64().and_then(|n| u32::try_from(n).ok()),
        },
    );

    // Identity.
    let instance_var = f.var_name("instance_var");
    let increment_var = f.var_name("increment_var");
    let namespace = f.string("namespace");
    let uid = f.principal("uid");
    let gid = f.principal("gid");

    let app = match (name, script) {
        (Some(name), Some(script)) if f.errors.is_empty() => Some(AppConfig {
            name,
            script,
            args,
            interpreter,
            interpreter_args,
            cwd,
            instances,
            exec_mode,
            env,
            env_types,
            port,
            mode,
            policy,
            pin,
            force,
            autorestart,
            kill_timeout_ms,
            min_uptime_ms,
            max_restarts,
            restart_delay_ms,
            exp_backoff_restart_delay_ms,
            max_memory_restart_bytes,
            watch,
            ignore_watch,
            watch_delay_ms,
            out_file,
            error_file,
            log_file,
            pid_file,
            time,
            log_date_format,
            merge_logs,
            log_type,
            log_max_size_bytes,
            log_retain,
            incoming_cpu,
            keep_indexes,
            listen_timeout_keeps_old,
            warmup_ms,
            warmup_path,
            stop_exit_codes,
            listen_timeout_ms,
            wait_ready,
            shutdown_with_message,
            app_metrics,
            instance_var,
            increment_var,
            cron_restart,
            namespace,
            uid,
            gid,
            pending,
        }),
        _ => None,
    };
    Outcome {
        app,
        file_name,
        errors: f.errors,
        warnings: f.warnings,
    }
}

/// `cron_restart`: checked with croner, the parser PM2 uses, so a pattern
/// PM2 would refuse is an error here too; `0` turns it off.
fn cron_restart(f: &mut Fields<'_>) -> Option<String> {
    let (_, v) = f.get("cron_restart")?;
    match v {
        Value::Number(n) if n.as_u64() == Some(0) => None,
        Value::String(s) if s.trim() == "0" => None,
        Value::String(s) => match crate::config::cron_schedule(s) {
            Ok(_) => Some(s.trim().to_string()),
            Err(why) => {
                f.bad(
                    "cron_restart",
                    &format!("{} ({why})", crate::config::CRON_EXPECTED),
                );
                None
            }
        },
        _ => {
            f.bad("cron_restart", crate::config::CRON_EXPECTED);
            None
        }
    }
}

/// `script` (or `cmd`, `command`): required; resolved against `cwd`, or
/// looked up in PATH when it is a bare program name that is not a file
/// there (PM2 does the same). A value with a space that is no file is a
/// command string: the shell runs it (the second value).
fn script(f: &mut Fields<'_>, cwd: &Path) -> Option<(PathBuf, Option<String>)> {
    let Some((_, v)) = f.get("script") else {
        f.errors.push(format!(
            "{}: key `script` is missing: expected the path of the script or program to run",
            f.label
        ));
        return None;
    };
    let Some(s) = v.as_str().filter(|s| !s.is_empty()) else {
        f.bad("script", "a path (the script or program to run)");
        return None;
    };
    let path = resolve(cwd, s);
    if path.is_file() {
        return Some((path, None));
    }
    if crate::config::is_command(s, cwd) {
        return Some((crate::config::command_shell(), Some(s.trim().to_string())));
    }
    if let Some(found) = which(s) {
        return Some((found, None));
    }
    f.bad(
        "script",
        &format!(
            "an existing file: there is none at {} (relative paths start at the app's cwd, by default the file's directory)",
            path.display()
        ),
    );
    None
}

/// `env`, with `env_<name>` merged over it when `--env <name>` is given,
/// both over the file's `deploy.<name>.env` (PM2: `deploy.X.env` < `env`
/// < `env_X`). Every `env_*` set is checked, chosen or not.
fn env(
    f: &mut Fields<'_>,
    sets: &BTreeMap<&str, (&str, &Value)>,
    env_name: Option<&str>,
    deploy: Option<&Value>,
) -> BTreeMap<String, String> {
    let mut env = match (deploy, env_name) {
        (Some(d), Some(n)) => env_vars(f, &format!("deploy.{n}.env"), d),
        _ => BTreeMap::new(),
    };
    if let Some((spelling, v)) = f.by_key.get("env").copied() {
        env.extend(env_vars(f, spelling, v));
    }
    let mut chosen = None;
    for (set, (spelling, v)) in sets {
        let vars = env_vars(f, spelling, v);
        if Some(*set) == env_name {
            chosen = Some(vars);
        }
    }
    match (env_name, chosen) {
        (Some(_), Some(over)) => env.extend(over),
        (Some(name), None) => f.warn(format!(
            "--env {name}: there is no `env_{name}`; using `env` only"
        )),
        (None, _) => {}
    }
    env
}

/// The JSON type of each variable of the merged env that the file wrote as
/// a number or boolean (PM2 keeps `PORT: 3000` a number in `jlist`): the
/// same layers as [`env`], a later string value taking its type away.
fn env_types(
    f: &Fields<'_>,
    sets: &BTreeMap<&str, (&str, &Value)>,
    env_name: Option<&str>,
    deploy: Option<&Value>,
) -> BTreeMap<String, Value> {
    let mut layers: Vec<&Value> = Vec::new();
    if env_name.is_some() {
        layers.extend(deploy);
    }
    if let Some((_, v)) = f.by_key.get("env").copied() {
        layers.push(v);
    }
    if let Some((_, v)) = env_name.and_then(|n| sets.get(n)) {
        layers.push(v);
    }
    let mut typed = BTreeMap::new();
    for layer in layers {
        let Value::Object(vars) = layer else { continue };
        for (k, v) in vars {
            match v {
                Value::Number(_) | Value::Bool(_) => {
                    typed.insert(k.clone(), v.clone());
                }
                _ => {
                    typed.remove(k);
                }
            }
        }
    }
    typed
}

/// One `env` / `env_<name>` map, values as the process will see them.
fn env_vars(f: &mut Fields<'_>, spelling: &str, v: &Value) -> BTreeMap<String, String> {
    let label = f.label.clone();
    let Value::Object(vars) = v else {
        if !v.is_null() {
            f.errors.push(format!(
                "{label}: key `{spelling}`: value `{}`: expected a map of NAME: value",
                show(v)
            ));
        }
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (name, value) in vars {
        if !env_name_ok(name) {
            f.errors.push(format!(
                "{label}: key `{spelling}`: variable name `{name}`: expected a name without `=`"
            ));
            continue;
        }
        let text = match value {
            // PM2 passes objects and arrays as their JSON.
            Value::Object(_) | Value::Array(_) => serde_json::to_string(value).ok(),
            _ => units::scalar_text(value),
        };
        match text {
            Some(text) if !text.contains('\0') => {
                out.insert(name.clone(), text);
            }
            _ if value.is_null() => f.warnings.push(format!(
                "{label}: key `{spelling}`: variable `{name}` is null and is not set"
            )),
            _ => f.errors.push(format!(
                "{label}: key `{spelling}`: variable `{name}`: value `{}`: expected a string, number, boolean, object or array",
                show(value)
            )),
        }
    }
    out
}

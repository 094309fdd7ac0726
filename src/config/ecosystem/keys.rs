//! Every key an ecosystem file may hold, with PM2's aliases, and what herd
//! does with it. The names and aliases follow PM2's `lib/API/schema.json`;
//! like PM2's `lib/tools/Config.js`, every snake_case spelling is also
//! accepted in camelCase (`maxMemoryRestart`). `env_<name>` keys are handled
//! by the caller, not here.

/// What herd does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Support {
    /// Parsed and acted on by today's daemon (it has a field in `AppSpec`).
    Acted,
    /// Parsed and validated into `AppConfig`, but the daemon does not act on
    /// it yet: listed in `AppConfig::pending`.
    Pending,
    /// A PM2 key that makes no sense for herd: accepted with a warning that
    /// gives the reason.
    Ignored(&'static str),
}

/// One key of an app object.
#[derive(Debug)]
pub(super) struct Key {
    /// The name herd documents (snake_case, as PM2's docs spell it).
    pub name: &'static str,
    /// Other spellings PM2 accepts (its schema's `alias` lists).
    pub aliases: &'static [&'static str],
    /// What herd does with it.
    pub support: Support,
}

const fn key(name: &'static str, aliases: &'static [&'static str], support: Support) -> Key {
    Key {
        name,
        aliases,
        support,
    }
}

use Support::{Acted, Ignored, Pending};

const MONITORING: &str =
    "PM2.io / Keymetrics monitoring; herd has `herd show` and `herd list --json`";

/// The table, in the order `AppConfig` is filled (so errors come in a
/// stable order).
pub(super) static KEYS: &[Key] = &[
    // What to run.
    key("script", &["exec", "cmd", "command"], Acted),
    key("name", &[], Acted),
    key("args", &[], Acted),
    key("interpreter", &["exec_interpreter"], Acted),
    key("interpreter_args", &["node_args"], Acted),
    key("cwd", &[], Acted),
    key("env", &[], Acted),
    key("append_env_to_name", &[], Acted),
    // How many and how connections reach them.
    key("instances", &[], Acted),
    key("exec_mode", &[], Acted),
    key("port", &[], Acted),
    key("mode", &["distribution"], Acted),
    key("policy", &[], Acted),
    key("pin", &[], Acted),
    key("incoming_cpu", &[], Acted),
    key("keep_indexes", &[], Acted),
    key("listen_timeout_keeps_old", &[], Acted),
    key("warmup", &[], Acted),
    key("warmup_path", &[], Acted),
    key("force", &[], Acted),
    // Restart policy.
    key("autorestart", &[], Acted),
    key("kill_timeout", &[], Acted),
    key("min_uptime", &[], Acted),
    key("max_restarts", &[], Acted),
    key("restart_delay", &[], Acted),
    key("exp_backoff_restart_delay", &[], Acted),
    key("max_memory_restart", &[], Acted),
    key("stop_exit_codes", &[], Acted),
    key("listen_timeout", &[], Acted),
    key("wait_ready", &[], Acted),
    key("shutdown_with_message", &[], Acted),
    key("app_metrics", &[], Acted),
    key("cron_restart", &["cron"], Acted),
    // Watch.
    key("watch", &[], Acted),
    key("ignore_watch", &[], Acted),
    key("watch_delay", &[], Acted),
    // Logs and pid file.
    key("out_file", &["out", "output", "out_log"], Acted),
    key(
        "error_file",
        &["error", "err", "err_file", "err_log"],
        Acted,
    ),
    key("log_file", &["log"], Acted),
    key("disable_logs", &[], Acted),
    key("pid_file", &["pid"], Pending),
    key("time", &[], Acted),
    key("log_date_format", &[], Acted),
    key("merge_logs", &["combine_logs"], Acted),
    key("log_type", &[], Acted),
    key("log_max_size", &[], Acted),
    key("log_retain", &[], Acted),
    // Identity of the processes.
    key("instance_var", &[], Acted),
    key("increment_var", &[], Acted),
    key("namespace", &[], Pending),
    key("uid", &["user"], Pending),
    key("gid", &[], Pending),
    // PM2-only: accepted, warned, ignored.
    key(
        "vizion",
        &[],
        Ignored("herd keeps no version-control metadata"),
    ),
    key(
        "post_update",
        &[],
        Ignored("herd does not pull or update apps"),
    ),
    key(
        "source_map_support",
        &[],
        Ignored("for source maps pass `interpreter_args: --enable-source-maps`"),
    ),
    key(
        "disable_source_map_support",
        &[],
        Ignored("herd never injects source-map support"),
    ),
    key(
        "filter_env",
        &[],
        Ignored("not supported yet: apps inherit the environment of `herd start`"),
    ),
    key(
        "watch_options",
        &[],
        Ignored("these are chokidar options; herd's watcher has its own"),
    ),
    key(
        "treekill",
        &[],
        Ignored("herd always signals the app's whole process group"),
    ),
    key(
        "kill_retry_time",
        &[],
        Ignored("herd sends SIGKILL once, after kill_timeout"),
    ),
    key("windowsHide", &[], Ignored("herd runs on Linux only")),
    key("pmx", &[], Ignored(MONITORING)),
    key("automation", &[], Ignored(MONITORING)),
    key("trace", &[], Ignored(MONITORING)),
    key("disable_trace", &[], Ignored(MONITORING)),
    key("v8", &[], Ignored(MONITORING)),
    key("event_loop_inspector", &[], Ignored(MONITORING)),
    key("deep_monitoring", &[], Ignored(MONITORING)),
    key("io", &[], Ignored(MONITORING)),
    key(
        "username",
        &[],
        Ignored("PM2 records who started an app; use `uid`"),
    ),
    key("name_prefix", &[], Ignored("PM2 internal")),
    key(
        "install_url",
        &[],
        Ignored("PM2 internal (module installs)"),
    ),
    key("execute_command", &[], Ignored("PM2 internal")),
    key("write", &[], Ignored("PM2 internal")),
];

/// The key a spelling names: the name itself, one of its aliases, or the
/// camelCase form of either.
pub(super) fn lookup(spelling: &str) -> Option<&'static Key> {
    let exact = |s: &str| KEYS.iter().find(|k| k.name == s || k.aliases.contains(&s));
    exact(spelling).or_else(|| {
        spelling
            .bytes()
            .any(|b| b.is_ascii_uppercase())
            .then(|| camel_to_snake(spelling))
            .and_then(|snake| exact(&snake))
    })
}

/// `maxMemoryRestart` → `max_memory_restart`.
fn camel_to_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The known spelling closest to an unknown key, if one is close enough to
/// be a likely typo (`instaces` → `instances`, `max-restarts` →
/// `max_restarts`).
pub(super) fn suggest(unknown: &str) -> Option<&'static str> {
    let norm = |s: &str| camel_to_snake(s).to_ascii_lowercase().replace('-', "_");
    let wanted = norm(unknown);
    let candidates = KEYS
        .iter()
        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()));
    let (best, distance) = candidates
        .map(|c| (c, strsim::damerau_levenshtein(&wanted, &norm(c))))
        .min_by_key(|&(_, d)| d)?;
    let limit = (wanted.chars().count() / 3).clamp(1, 3);
    (distance <= limit).then_some(best)
}

//! `herd config check <file>`: load an ecosystem file as `herd start` would
//! and print the resolved apps, or every error in it.

use clap::{Args, Subcommand};

use super::output::{self, is_secret};
use crate::config::{ecosystem, AppSpec};
use crate::error::{Error, Result};

/// `herd config …`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// Sub-verbs of `herd config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Resolve a file (with `--env`) and print its apps, or its errors.
    Check {
        /// The ecosystem file.
        file: String,
        /// Environment: merges `env_<NAME>` over `env`.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// Only these apps (comma-separated).
        #[arg(long, value_name = "APPS")]
        only: Vec<String>,
        /// The resolved specs as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `herd config`.
pub fn run(a: ConfigArgs) -> Result<()> {
    let ConfigCommand::Check {
        file,
        env,
        only,
        json,
    } = a.command;
    let path = std::path::Path::new(&file);
    if !path.is_file() {
        return Err(Error::InvalidArg {
            what: "config check".into(),
            value: file.clone(),
            expected: "an existing ecosystem file (.config.js, .json, .yaml, .toml)".into(),
        });
    }
    let loaded =
        ecosystem::load(path, env.as_deref(), &only).map_err(super::lifecycle::config_error)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let specs: Vec<AppSpec> = loaded
        .apps
        .iter()
        .map(|c| AppSpec::from_config(c, &loaded.file))
        .collect();
    if json {
        let v: Vec<serde_json::Value> = specs
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                // The CLI's own environment is not part of the file.
                if let Some(o) = v.as_object_mut() {
                    o.remove("base_env");
                }
                v
            })
            .collect();
        return output::print_json(&v);
    }
    let blocks: Vec<String> = specs.iter().map(describe).collect();
    output::write_stdout(&format!(
        "{}: {} app(s), OK\n\n{}",
        loaded.file.display(),
        specs.len(),
        blocks.join("\n\n")
    ))
}

fn describe(s: &AppSpec) -> String {
    let mut rows = vec![
        vec!["name".into(), s.name.clone()],
        vec!["script".into(), s.script.display().to_string()],
        vec!["cwd".into(), s.cwd.display().to_string()],
        vec![
            "interpreter".into(),
            s.interpreter
                .clone()
                .unwrap_or_else(|| "none (exec)".into()),
        ],
        vec!["args".into(), s.args.join(" ")],
        vec!["exec mode".into(), s.exec_mode.as_str().into()],
        vec!["instances".into(), s.instances.display()],
        vec!["port".into(), s.port.map_or("-".into(), |p| p.to_string())],
        vec!["mode".into(), s.mode.as_str().into()],
        vec!["autorestart".into(), s.autorestart.to_string()],
        vec!["min uptime".into(), format!("{} ms", s.min_uptime_ms)],
        vec!["max restarts".into(), s.max_restarts.to_string()],
        vec!["kill timeout".into(), format!("{} ms", s.kill_timeout_ms)],
    ];
    let mut opt = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            rows.push(vec![k.into(), v]);
        }
    };
    opt(
        "max memory restart",
        s.max_memory_restart.map(super::output::human_bytes),
    );
    opt("wait ready", s.wait_ready.then(|| "true".into()));
    opt(
        "shutdown with message",
        s.shutdown_with_message.then(|| "true".into()),
    );
    opt("app metrics", s.app_metrics.then(|| "true".into()));
    opt(
        "watch",
        (!s.watch.is_empty()).then(|| {
            let paths: Vec<String> = s.watch.iter().map(|p| p.display().to_string()).collect();
            format!("{} (delay {} ms)", paths.join(", "), s.watch_delay_ms)
        }),
    );
    opt(
        "ignore watch",
        (!s.ignore_watch.is_empty()).then(|| s.ignore_watch.join(", ")),
    );
    opt("cron restart", s.cron_restart.clone());
    opt(
        "out file",
        s.out_file.as_ref().map(|p| p.display().to_string()),
    );
    opt(
        "error file",
        s.error_file.as_ref().map(|p| p.display().to_string()),
    );
    opt(
        "log file",
        s.logs.log_file.as_ref().map(|p| p.display().to_string()),
    );
    opt("log date format", s.logs.date_format.clone());
    opt("log type", s.logs.json.then(|| "json".into()));
    for (k, v) in &s.env {
        rows.push(vec![
            format!("env {k}"),
            if is_secret(k) {
                "[redacted]".into()
            } else {
                v.clone()
            },
        ]);
    }
    for (k, v) in &s.pending {
        rows.push(vec![format!("{k} (not acted on yet)"), v.to_string()]);
    }
    output::table(&["key", "value"], &rows)
}

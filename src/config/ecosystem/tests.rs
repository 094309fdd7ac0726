//! Ecosystem loading against the fixtures in tests/fixtures/ecosystem: the
//! PM2 docs' files, the same apps in every format, and bad files. Cases that
//! need a small file of their own are in [`scratch`].

mod scratch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::accept::pool::Policy;
use crate::accept::Mode;
use crate::config::{ExecMode, Instances};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecosystem")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// `node` runs here; JavaScript cases are skipped loudly without it.
fn node_available(test: &str) -> bool {
    let ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        crate::testing::skip(
            "node",
            &format!("{test}: `node` is not in PATH; JavaScript ecosystem files cannot be read"),
        );
    }
    ok
}

fn load_ok(path: &Path, env: Option<&str>) -> Loaded {
    load(path, env, &[]).unwrap_or_else(|e| panic!("{} did not load:\n{e}", path.display()))
}

fn load_err(path: &Path) -> ConfigError {
    match load(path, None, &[]) {
        Ok(l) => panic!("{} loaded: {:?}", path.display(), l.apps),
        Err(e) => e,
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_same_apps_in_every_format_are_equal() {
    let js = node_available("the_same_apps_in_every_format_are_equal (JavaScript rows)");
    // (reference file, the same apps in other formats)
    let table: &[(&str, &[&str])] = &[
        (
            "my-cluster-app.json",
            &[
                "my-cluster-app.yaml",
                "my-cluster-app.toml",
                "my-cluster-app.config.js",
            ],
        ),
        (
            "api-server.json",
            &["api-server.yaml", "api-server.toml", "api-server.config.js"],
        ),
        (
            "all-keys.json",
            &[
                "all-keys.yaml",
                "all-keys.toml",
                "all-keys.config.js",
                "all-keys.config.mjs",
                "all-keys.pm2-style.json",
            ],
        ),
    ];
    let needs_node = |f: &str| f.ends_with("js") || f.contains("pm2-style");
    for env_name in [None, Some("production")] {
        for (reference, others) in table {
            let want = load_ok(&fixture(reference), env_name);
            assert!(!want.apps.is_empty());
            for other in others.iter().filter(|f| js || !needs_node(f)) {
                let got = load_ok(&fixture(other), env_name);
                assert_eq!(
                    got.apps, want.apps,
                    "{other} differs from {reference} (--env {env_name:?})"
                );
                assert_eq!(got.file, fixture(other));
            }
        }
    }
}

#[test]
fn pm2_docs_my_cluster_app() {
    let dir = fixtures();
    let loaded = load_ok(&fixture("my-cluster-app.json"), None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let [app] = &loaded.apps[..] else {
        panic!("one app expected: {:?}", loaded.apps)
    };
    assert_eq!(app.name, "my-cluster-app");
    assert_eq!(app.script, dir.join("app.js"));
    assert_eq!(app.cwd, dir);
    assert_eq!(app.interpreter.as_deref(), Some("node"));
    assert_eq!(app.instances, Some(Instances::Max));
    assert_eq!(app.exec_mode, Some(ExecMode::Cluster));
    assert_eq!(app.watch, Watch::On);
    assert_eq!(app.max_memory_restart_bytes, Some(1 << 30));
    assert_eq!(
        app.env,
        env(&[("NODE_ENV", "production"), ("PORT", "3000")])
    );
    assert_eq!(app.error_file, Some(dir.join("logs/err.log")));
    assert_eq!(app.out_file, Some(dir.join("logs/out.log")));
    assert_eq!(app.log_file, Some(dir.join("logs/combined.log")));
    assert_eq!(app.time, Some(true));
    assert!(app.pending.is_empty(), "{:?}", app.pending);
}

#[test]
fn pm2_docs_api_server_with_env_production() {
    let loaded = load_ok(&fixture("api-server.yaml"), Some("production"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let app = &loaded.apps[0];
    assert_eq!(app.name, "api-server");
    assert_eq!(app.instances, Some(Instances::Max));
    assert_eq!(app.exec_mode, Some(ExecMode::Cluster));
    assert_eq!(
        app.env,
        env(&[("NODE_ENV", "production"), ("PORT", "3000")])
    );
    assert_eq!(app.max_memory_restart_bytes, Some(1 << 30));
    assert_eq!(app.min_uptime_ms, Some(10_000));
    assert_eq!(app.max_restarts, Some(10));
    assert_eq!(app.watch, Watch::Off);
    assert_eq!(app.ignore_watch, ["node_modules", "logs"]);
    assert_eq!(
        app.log_date_format.as_deref(),
        Some("YYYY-MM-DD HH:mm:ss Z")
    );
}

#[test]
fn env_production_is_merged_over_env() {
    let dev = load_ok(&fixture("all-keys.toml"), None);
    let prod = load_ok(&fixture("all-keys.toml"), Some("production"));
    assert_eq!(
        dev.apps[0].env,
        env(&[
            ("DEBUG", "false"),
            ("NODE_ENV", "development"),
            ("PORT", "8080"),
            ("RATIO", "1.5")
        ])
    );
    assert_eq!(
        prod.apps[0].env,
        env(&[
            ("DEBUG", "off"),
            ("NODE_ENV", "production"),
            ("PORT", "8080"),
            ("RATIO", "1.5")
        ])
    );
    // The worker has no env_production: it keeps `env`, with a warning.
    assert_eq!(prod.apps[1].env, env(&[("QUEUE", "default")]));
    assert!(
        prod.warnings.iter().any(|w| w.contains("app `worker`")
            && w.contains("--env production: there is no `env_production`")),
        "{:?}",
        prod.warnings
    );
}

#[test]
fn every_key_of_the_all_keys_app() {
    let dir = fixtures();
    let loaded = load_ok(&fixture("all-keys.json"), None);
    let want = AppConfig {
        name: "api".into(),
        script: dir.join("app.js"),
        args: vec![
            "--port".into(),
            "8080".into(),
            "--title".into(),
            "hello world".into(),
        ],
        interpreter: Some("node".into()),
        interpreter_args: vec![
            "--max-old-space-size=256".into(),
            "--enable-source-maps".into(),
        ],
        cwd: dir.clone(),
        instances: Some(Instances::MaxMinus(1)),
        exec_mode: Some(ExecMode::Cluster),
        env: env(&[
            ("DEBUG", "false"),
            ("NODE_ENV", "development"),
            ("PORT", "8080"),
            ("RATIO", "1.5"),
        ]),
        // Written as numbers and a boolean: kept typed for `jlist`.
        env_types: [
            ("DEBUG".to_string(), serde_json::json!(false)),
            ("PORT".to_string(), serde_json::json!(8080)),
            ("RATIO".to_string(), serde_json::json!(1.5)),
        ]
        .into(),
        port: Some(8080),
        mode: Some(Mode::Reuseport),
        policy: Some(Policy::P2c),
        pin: Some(false),
        force: None,
        autorestart: Some(true),
        kill_timeout_ms: Some(3000),
        min_uptime_ms: Some(10_000),
        max_restarts: Some(5),
        restart_delay_ms: Some(250),
        exp_backoff_restart_delay_ms: Some(100),
        max_memory_restart_bytes: Some(300 << 20),
        watch: Watch::Paths(vec![dir.join("src"), dir.join("config")]),
        ignore_watch: vec!["node_modules".into(), r"\.log$".into()],
        watch_delay_ms: Some(1000),
        out_file: Some(dir.join("logs/api-out.log")),
        error_file: Some(dir.join("logs/api-err.log")),
        log_file: Some(dir.join("logs/api.log")),
        pid_file: Some(dir.join("pids/api.pid")),
        time: Some(true),
        log_date_format: Some("YYYY-MM-DD HH:mm Z".into()),
        merge_logs: Some(true),
        log_type: Some("json".into()),
        log_max_size_bytes: None,
        log_retain: None,
        incoming_cpu: None,
        keep_indexes: None,
        listen_timeout_keeps_old: None,
        warmup_ms: None,
        warmup_path: None,
        stop_exit_codes: vec![0, 3],
        listen_timeout_ms: Some(8000),
        wait_ready: Some(true),
        shutdown_with_message: Some(false),
        app_metrics: None,
        instance_var: Some("INSTANCE_ID".into()),
        increment_var: Some("APP_PORT".into()),
        cron_restart: Some("0 3 * * *".into()),
        namespace: Some("backend".into()),
        uid: Some("www-data".into()),
        gid: Some("33".into()),
        pending: vec!["pid_file", "namespace", "uid", "gid"],
    };
    assert_eq!(loaded.apps[0], want);
    // PM2's docs write regexes in ignore_watch; herd says it takes globs.
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains(r"`\.log$` looks like a regular expression")),
        "{:?}",
        loaded.warnings
    );
    let worker = &loaded.apps[1];
    assert_eq!(worker.interpreter, None, "interpreter: none");
    assert_eq!(worker.args, ["--queue", "default"]);
    assert_eq!(worker.autorestart, Some(false));
    assert!(worker.pending.is_empty(), "{:?}", worker.pending);
}

#[test]
fn instances_lots_is_an_error_naming_file_app_key_value_and_form() {
    let e = load_err(&fixture("bad/instances-lots.json"));
    let file = fixture("bad/instances-lots.json");
    assert_eq!(
        e.message,
        format!(
            "{}: app `api`: key `instances`: value `\"lots\"`: expected `max`, a whole number, 0 (= max) or -N (= max minus N)",
            file.display()
        )
    );
    assert!(e.also.is_empty(), "{:?}", e.also);
}

#[test]
fn max_memory_restart_1x_is_an_error() {
    let e = load_err(&fixture("bad/memory-1x.yaml"));
    assert!(
        e.message.ends_with(
            "memory-1x.yaml: app `api`: key `max_memory_restart`: value `\"1X\"`: expected bytes (`1048576`) or a size with K, M or G (`512K`, `300M`, `1G`, `1.5G`)"
        ),
        "{e}"
    );
}

#[test]
fn exec_mode_clusterr_is_an_error_with_a_suggestion() {
    let e = load_err(&fixture("bad/exec-mode-clusterr.toml"));
    assert!(
        e.message.ends_with(
            "exec-mode-clusterr.toml: app `api`: key `exec_mode`: value `\"clusterr\"`: expected `fork` or `cluster` (did you mean `cluster`?)"
        ),
        "{e}"
    );
}

#[test]
fn a_js_file_that_throws_shows_the_error_and_line() {
    if !node_available("a_js_file_that_throws_shows_the_error_and_line") {
        return;
    }
    let e = load_err(&fixture("bad/throws.config.js"));
    assert!(
        e.message
            .ends_with("throws.config.js:3: Error: no database configured for port 8080"),
        "{e}"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("line 3: throw new Error(`no database configured for port ${port}`);")
    );

    let e = load_err(&fixture("bad/syntax.config.js"));
    assert!(e.message.contains("syntax.config.js:3: SyntaxError"), "{e}");
    assert!(e.hint.unwrap().starts_with("line 3: { name: 'api' script"));
}

#[test]
fn unknown_keys_warn_with_the_closest_known_key() {
    let loaded = load_ok(&fixture("bad/unknown-key.json"), None);
    assert_eq!(loaded.apps.len(), 1);
    assert_eq!(
        loaded.apps[0].instances, None,
        "a misspelt key does nothing"
    );
    let w = loaded.warnings.join("\n");
    for expected in [
        "unknown-key.json: app `api`: unknown key `instaces` ignored: not a PM2 or herd key (did you mean `instances`?)",
        "unknown key `max-restarts` ignored: not a PM2 or herd key (did you mean `max_restarts`?)",
        "unknown key `frobnicate` ignored: not a PM2 or herd key\n",
        "key `vizion` accepted and ignored: herd keeps no version-control metadata",
        "key `post_update` accepted and ignored",
        "key `source_map_support` accepted and ignored",
        "`deploy` ignored but for `deploy.<env>.env`",
    ] {
        assert!(w.contains(expected), "missing {expected:?} in:\n{w}");
    }
}

#[test]
fn a_missing_script_is_an_error() {
    let e = load_err(&fixture("bad/no-script.json"));
    assert!(
        e.message.ends_with(
            "no-script.json: app `api`: key `script` is missing: expected the path of the script or program to run"
        ),
        "{e}"
    );
}

#[test]
fn every_error_of_a_file_is_reported() {
    let e = load_err(&fixture("bad/many-errors.yaml"));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 5, "{e}");
    for (line, expected) in lines.iter().zip([
        "app `api`: key `env`: value `\"production\"`: expected a map of NAME: value",
        "app `api`: key `instances`: value `\"lots\"`",
        "app `api`: key `min_uptime`: value `\"soon\"`: expected milliseconds",
        "app `worker`: key `script`: value `\"../missing.js\"`: expected an existing file",
        "app `worker`: key `autorestart`: value `\"yes\"`: expected `true` or `false`",
    ]) {
        assert!(line.contains(expected), "{line:?} lacks {expected:?}");
    }
    assert!(e.to_string().lines().count() == 5);
}

#[test]
fn only_keeps_the_named_apps_and_rejects_unknown_names() {
    let file = fixture("all-keys.toml");
    let names = |only: &[&str]| -> Vec<String> {
        let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
        load(&file, None, &only)
            .unwrap()
            .apps
            .into_iter()
            .map(|a| a.name)
            .collect()
    };
    assert_eq!(names(&[]), ["api", "worker"]);
    assert_eq!(names(&["worker"]), ["worker"]);
    assert_eq!(names(&["worker,api"]), ["api", "worker"]);
    assert_eq!(names(&["api", "worker"]), ["api", "worker"]);

    let e = load(&file, None, &["api".into(), "nope".into()]).unwrap_err();
    assert!(
        e.message.ends_with(
            "all-keys.toml: --only: no app named `nope` in this file (it has: api, worker)"
        ),
        "{e}"
    );
}

#[test]
fn relative_paths_resolve_against_the_file_and_cwd() {
    let dir = fixtures();
    let nested = dir.join("nested");
    let loaded = load_ok(&nested.join("herd.toml"), None);
    let here = &loaded.apps[0];
    assert_eq!(here.cwd, nested);
    assert_eq!(here.script, dir.join("app.js"));
    assert_eq!(here.out_file, Some(nested.join("logs/out.log")));
    assert_eq!(here.watch, Watch::Paths(vec![nested.clone()]));
    let parent = &loaded.apps[1];
    assert_eq!(parent.cwd, dir);
    assert_eq!(parent.script, dir.join("app.js"));
    assert_eq!(parent.out_file, Some(dir.join("logs/out.log")));
    assert_eq!(parent.error_file, Some(PathBuf::from("/dev/null")));
    if let Some(home) = std::env::var_os("HOME") {
        assert_eq!(
            parent.pid_file,
            Some(PathBuf::from(home).join("herd-test.pid"))
        );
    }

    // A relative path to the file itself is taken from the current directory.
    let rel = nested
        .strip_prefix(std::env::current_dir().unwrap())
        .map(|p| p.join("herd.toml"));
    if let Ok(rel) = rel {
        assert_eq!(load_ok(&rel, None).apps, loaded.apps);
    }
}

#[test]
fn config_file_names() {
    for yes in [
        "ecosystem.config.js",
        "ecosystem.config.cjs",
        "ecosystem.config.mjs",
        "pm2.config.js",
        "ecosystem.js",
        "ecosystem-prod.cjs",
        "process.json",
        "ecosystem.yaml",
        "apps.yml",
        "herd.toml",
        "/srv/app/ECOSYSTEM.CONFIG.JS",
    ] {
        assert!(is_config_file(Path::new(yes)), "{yes}");
    }
    for no in [
        "app.js",
        "server.mjs",
        "main.py",
        "bin/server",
        "config.js",
        "",
    ] {
        assert!(!is_config_file(Path::new(no)), "{no}");
    }
}

#[test]
fn every_key_is_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CONFIG.md"))
        .expect("docs/CONFIG.md");
    for k in super::keys::KEYS {
        for spelling in std::iter::once(&k.name).chain(k.aliases) {
            assert!(
                doc.contains(&format!("`{spelling}`")),
                "docs/CONFIG.md does not mention `{spelling}`"
            );
        }
    }
}

//! Ecosystem loading of small files written on the fly: document shapes,
//! syntax errors, value forms, JavaScript exports and failures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{env, load_err, load_ok, node_available};
use crate::config::{ExecMode, Instances};

/// A scratch directory with an `app.js`, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herd-ecosystem-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.js"), "").unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn document_shapes() {
    let s = Scratch::new();
    // One app object, no `apps`.
    let one = load_ok(&s.file("one.json", r#"{"script": "app.js"}"#), None);
    assert_eq!(one.apps[0].name, "app", "name from the script");
    // A list of apps, and `apps` holding one object.
    let list = load_ok(
        &s.file(
            "list.yaml",
            "- script: app.js\n  name: a\n- script: app.js\n  name: b\n",
        ),
        None,
    );
    assert_eq!(list.apps.len(), 2);
    let single = load_ok(
        &s.file("single.toml", "[apps]\nscript = \"app.js\"\n"),
        None,
    );
    assert_eq!(single.apps.len(), 1);
    // Nothing to start, or not an app.
    let e = load_err(&s.file("empty.json", r#"{"apps": []}"#));
    assert!(e.message.ends_with("empty.json: no apps in it"), "{e}");
    let e = load_err(&s.file("num.json", "[42]"));
    assert!(
        e.message
            .contains("app #1: expected an object with at least `script`, found `42`"),
        "{e}"
    );
    let e = load_err(&s.file("scalar.yaml", "hello\n"));
    assert!(
        e.message.contains("expected an object with `apps: [...]`"),
        "{e}"
    );
    // Names are unique within a file.
    let e = load_err(&s.file(
        "dup.json",
        r#"[{"script": "app.js"}, {"script": "./app.js"}]"#,
    ));
    assert!(
        e.message
            .ends_with("apps #1 and #2 are both named `app`: names must be unique"),
        "{e}"
    );
    // Not a config file name at all.
    let e = load_err(&s.file("app.txt", ""));
    assert!(e.message.contains("not an ecosystem file"), "{e}");
    let e = load_err(&s.0.join("absent.json"));
    assert!(e.message.contains("absent.json: cannot read it"), "{e}");
}

#[test]
fn syntax_errors_name_the_line() {
    let s = Scratch::new();
    let e = load_err(&s.file("bad.yaml", "apps:\n  - script: app.js\n   name: x\n"));
    assert!(
        e.message.contains("bad.yaml: not valid YAML") && e.message.contains("line 3"),
        "{e}"
    );
    let e = load_err(&s.file("bad.toml", "[[apps]]\nscript = app.js\n"));
    assert!(
        e.message.contains("bad.toml: not valid TOML at line 2"),
        "{e}"
    );
    let e = load_err(&s.file("bad.json", "{\n  \"apps\": [\n    {\"script\": }\n  ]\n}\n"));
    assert!(
        e.message.contains("bad.json: not valid JSON") && e.message.contains("line 3"),
        "{e}"
    );
}

#[test]
fn value_forms_and_defaults() {
    let s = Scratch::new();
    std::fs::write(s.0.join("job.py"), "").unwrap();
    let loaded = load_ok(
        &s.file(
            "forms.yaml",
            r#"
apps:
  - name: py
    script: job.py
    stop_exit_codes: 0
    cron_restart: "0"
    port: "9000"
    disable_logs: true
    log_file: true
    kill_timeout: null
    append_env_to_name: true
    exec_mode: fork_mode
    instances: 0
    env_staging: { A: 1 }
  - script: sh
    name: shell
    args: "-c 'echo hi'"
    out_file: out.log
    output: other.log
    log_type: text
"#,
        ),
        Some("staging"),
    );
    let py = &loaded.apps[0];
    assert_eq!(py.name, "py-staging", "append_env_to_name");
    assert_eq!(py.interpreter.as_deref(), Some("python3"));
    assert_eq!(py.stop_exit_codes, [0]);
    assert_eq!(py.cron_restart, None, "`0` turns cron off");
    assert_eq!(py.port, Some(9000));
    assert_eq!(py.out_file, Some(PathBuf::from("/dev/null")));
    assert_eq!(py.error_file, Some(PathBuf::from("/dev/null")));
    assert_eq!(py.log_file, None);
    assert_eq!(py.kill_timeout_ms, None, "null is absent");
    assert_eq!(py.exec_mode, Some(ExecMode::Fork));
    assert_eq!(py.instances, Some(Instances::Max));
    assert_eq!(py.env, env(&[("A", "1")]));
    let shell = &loaded.apps[1];
    assert!(
        shell.script.is_absolute() && shell.script.ends_with("sh"),
        "found in PATH: {:?}",
        shell.script
    );
    assert_eq!(shell.interpreter, None);
    assert_eq!(shell.args, ["-c", "echo hi"]);
    assert_eq!(
        shell.out_file,
        Some(s.0.join("out.log")),
        "the name wins over its alias"
    );
    assert_eq!(shell.log_type, None);
    let w = loaded.warnings.join("\n");
    for expected in [
        "app `py`: key `log_file`: `true` (a combined log in herd's log folder) is not supported yet",
        "app `shell`: keys `out_file` and `output` set the same thing; using `out_file`",
        "app `shell`: key `log_type`: `text` ignored",
    ] {
        assert!(w.contains(expected), "missing {expected:?} in:\n{w}");
    }

    let e = load_err(&s.file(
        "wrong.json",
        r#"{"apps": [{"name": "w", "script": "app.js", "cron_restart": "every day",
            "port": 70000, "stop_exit_codes": [1, "x"], "mode": "fast", "policy": "random",
            "watch": 3, "max_restarts": -1, "name_prefix": "x", "args": "'open",
            "env_production": {"A": {"nested": true}}, "instance_var": "A=B", "uid": true,
            "cwd": ".", "log_max_size": "10X", "log_retain": -1, "warmup_path": "health"},
            {"name": "v", "script": "/bin/sh", "cwd": "nowhere"}]}"#,
    ));
    let all = e.to_string();
    for expected in [
        "key `cron_restart`: value `\"every day\"`: expected a cron pattern of 5 or 6 fields",
        "key `port`: value `70000`: expected a port number from 1 to 65535",
        "key `stop_exit_codes`: value `[1,\"x\"]`: expected an exit code or a list",
        "key `mode`: value `\"fast\"`: expected `fdpass`, `reuseport` or `shared`",
        "key `policy`: value `\"random\"`: expected `least-conn`, `round-robin`, `p2c` or `least-time`",
        "key `watch`: value `3`: expected `true`, `false`, a path or a list of paths",
        "key `max_restarts`: value `-1`: expected a whole number, 0 or more",
        "key `args`: value `\"'open\"`: expected a list of strings, or one string of space-separated words (a closing `'` is missing)",
        "key `instance_var`: value `\"A=B\"`: expected an environment variable name",
        "key `uid`: value `true`: expected a name or a number",
        "app `v`: key `cwd`: value `\"nowhere\"`: expected an existing directory: there is none at",
        "key `log_max_size`: value `\"10X\"`: expected",
        "key `log_retain`: value `-1`: expected a whole number of rotated files, 0 or more",
        "key `warmup_path`: value `\"health\"`: expected a request path starting with `/`",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert_eq!(e.lines().count(), 14, "{all}");

    let e = load_err(&s.file("badname.json", r#"{"name": "42", "script": "app.js"}"#));
    assert!(
        e.message
            .contains("key `name`: value `\"42\"`: expected a name that is not a number"),
        "{e}"
    );
}

#[test]
fn javascript_shapes_and_failures() {
    let s = Scratch::new();
    if !node_available("javascript_shapes_and_failures (checking the no-node errors instead)") {
        let e = load_err(&s.file("a.config.js", "module.exports = {script: 'app.js'};"));
        assert!(e.message.ends_with("a.config.js: reading a JavaScript ecosystem file needs `node`, which is not in PATH"), "{e}");
        assert!(e.hint.unwrap().contains("JSON, YAML or herd.toml"));
        let e = load_err(&s.file("literal.json", "{ script: 'app.js' }"));
        assert!(e.message.contains("literal.json: not valid JSON"), "{e}");
        assert!(e.hint.unwrap().contains("node, which is not in PATH"));
        return;
    }
    let list = load_ok(
        &s.file(
            "list.config.js",
            "module.exports = [{ script: 'app.js', name: 'a' }];",
        ),
        None,
    );
    assert_eq!(list.apps[0].name, "a");
    let named = load_ok(
        &s.file(
            "named.config.mjs",
            "export const apps = [{ script: './app.js', name: 'n' }];",
        ),
        None,
    );
    assert_eq!(named.apps[0].name, "n", "named ESM export `apps`");
    let cwd = load_ok(
        &s.file(
            "cwd.config.js",
            "module.exports = { script: require('path').join(process.cwd(), 'app.js') };",
        ),
        None,
    );
    assert_eq!(
        cwd.apps[0].script,
        s.0.join("app.js"),
        "node runs in the file's directory"
    );
    let e = load_err(&s.file("exit.config.js", "process.exit(3);"));
    assert!(
        e.message
            .contains("exit.config.js: node exited (exit status: 3) without an answer"),
        "{e}"
    );
    let e = load_err(&s.file("string.config.js", "throw 'plain string';"));
    assert!(
        e.message.contains("string.config.js: string: plain string"),
        "{e}"
    );
    let e = load_err(&s.file("req.config.js", "\nrequire('./missing-module');\n"));
    assert!(
        e.message
            .contains("req.config.js:2: Error: Cannot find module './missing-module'"),
        "{e}"
    );
}

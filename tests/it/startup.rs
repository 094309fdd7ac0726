//! `herd startup` / `herd unstartup`: the systemd unit, written and
//! removed in a test directory, with a stand-in for systemctl.

use std::path::Path;

use crate::harness::*;

/// A home whose PATH finds this herd first, as an installed one would be.
fn home_with_herd_on_path() -> TestHome {
    let dir = Path::new(HERD).parent().unwrap().display().to_string();
    let path = format!("{dir}:{}", std::env::var("PATH").unwrap_or_default());
    TestHome::new().with_env("PATH", &path)
}

/// A fake systemctl that appends its arguments to `log`.
fn fake_systemctl(dir: &Path, log: &Path, ok: bool) -> String {
    let p = dir.join(if ok { "systemctl-ok" } else { "systemctl-fail" });
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexit {}\n",
            log.display(),
            if ok { 0 } else { 1 }
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn the_printed_unit_runs_herd_in_the_foreground_and_passes_systemd_analyze() {
    // A PATH without this herd on it.
    let h = TestHome::new().with_env("PATH", "/usr/bin:/bin");
    let r = h.run(&["startup", "systemd"]).ok();
    let unit = r.stdout;
    let home = h.root.display().to_string();
    for line in [
        "Type=notify".to_string(),
        format!("Environment=HERD_HOME={home}"),
        format!("ExecStart={HERD} run --resurrect --no-auto-exit"),
        format!("ExecReload={HERD} reload all"),
        "KillMode=mixed".into(),
        "Restart=on-failure".into(),
    ] {
        assert!(unit.lines().any(|l| l == line), "no `{line}` in\n{unit}");
    }
    assert!(r.stderr.contains("--install"), "{}", r.stderr);
    // This herd is not on PATH here: the unit names it, with a warning.
    assert!(r.stderr.contains("not the `herd` on PATH"), "{}", r.stderr);
    // Nothing was started or written.
    assert!(h.daemon_pid().is_none());
    let ok = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        herd::testing::skip(
            "systemd-analyze",
            "systemd-analyze is not installed; the unit is not verified",
        );
        return;
    }
    let file = h.root.join("herd-it.service");
    std::fs::write(&file, &unit).unwrap();
    let v = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("herd-it.service:"), "warnings: {said}");
}

#[test]
fn install_writes_and_enables_the_unit_and_unstartup_removes_it() {
    let h = home_with_herd_on_path();
    let log = h.root.join("systemctl.log");
    let units = h.root.join("units");
    let ctl = fake_systemctl(&h.root, &log, true);
    let dir = units.to_string_lossy().into_owned();
    let args = ["--unit-dir", &dir, "--service-name", "herd-it"];
    let mut cmd = h.cmd(&[&["startup", "systemd", "--install"][..], &args[..]].concat());
    let out = cmd.env("HERD_SYSTEMCTL", &ctl).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = units.join("herd-it.service");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("ExecStart="), "{text}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].ends_with("daemon-reload"), "{calls:?}");
    assert!(calls[1].ends_with("enable herd-it.service"), "{calls:?}");

    let mut cmd = h.cmd(&[&["unstartup"][..], &args[..]].concat());
    let out = cmd.env("HERD_SYSTEMCTL", &ctl).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!file.exists(), "unit left behind");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls
            .lines()
            .nth(2)
            .unwrap()
            .ends_with("disable herd-it.service"),
        "{calls}"
    );
    // Again: nothing to remove.
    h.run(&[&["unstartup"][..], &args[..]].concat())
        .fails_with("no herd unit");
    // A file herd did not write is left alone.
    std::fs::write(&file, "[Unit]\n").unwrap();
    h.run(&[&["unstartup"][..], &args[..]].concat())
        .fails_with("not written by herd startup");
    assert!(file.exists());
}

#[test]
fn a_failing_systemctl_or_a_bad_platform_is_an_error() {
    let h = home_with_herd_on_path();
    let log = h.root.join("systemctl.log");
    let ctl = fake_systemctl(&h.root, &log, false);
    let dir = h.root.join("units").to_string_lossy().into_owned();
    let mut cmd = h.cmd(&["startup", "--install", "--unit-dir", &dir]);
    let out = cmd.env("HERD_SYSTEMCTL", &ctl).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("daemon-reload"),
        "{err}"
    );
    h.run(&["startup", "launchd"]).fails_with("`launchd`");
    h.run(&["startup", "--service-name", "a b"])
        .fails_with("--service-name");
    h.run(&["startup", "--hp", "relative"]).fails_with("--hp");
}

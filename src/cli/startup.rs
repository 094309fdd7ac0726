//! `herd startup [systemd]` and `herd unstartup`: a systemd unit that runs
//! `herd run --resurrect --no-auto-exit` as a `Type=notify` service, so
//! systemd supervises herd itself and the saved apps come back at boot.
//!
//! What PM2's generated units get wrong and this one does not: the unit
//! names herd by the path it has on `PATH` (`/usr/local/bin/herd`), never
//! a resolved, versioned location, and bakes in no interpreter version's
//! `PATH` (an upgrade replaces the file in place and the unit still
//! works); it waits for `READY=1` (every resurrected app online) instead of
//! a fork; and it lets herd do the graceful stop (`KillMode=mixed`).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use crate::error::{Error, Result};

/// Options of `herd startup` and `herd unstartup`.
#[derive(Debug, Args)]
pub struct StartupArgs {
    /// The init system: `systemd` (PM2's `ubuntu`, `debian`, `centos`,
    /// `redhat`, `amazon` and `systemd-devel` mean systemd too).
    pub platform: Option<String>,
    /// Write the unit and enable it (`systemctl daemon-reload`, `enable`);
    /// without it, print the unit.
    #[arg(long)]
    pub install: bool,
    /// The user the apps run as (default: the current one). Root writes a
    /// system unit with `User=`; another user, a user unit.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// That user's home (default: from the password database); HERD_HOME is
    /// `<home>/.herd` unless HERD_HOME is set.
    #[arg(long = "hp", value_name = "HOME")]
    pub home_path: Option<PathBuf>,
    /// Unit name (default `herd-<user>` for a system unit, `herd` for a
    /// user unit).
    #[arg(long = "service-name", value_name = "NAME")]
    pub service_name: Option<String>,
    /// Where the unit goes (default `/etc/systemd/system`, or
    /// `~/.config/systemd/user` for a user unit).
    #[arg(long = "unit-dir", value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
}

fn bad(what: &str, value: &str, expected: &str) -> Error {
    Error::InvalidArg {
        what: what.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// Everything a unit is made of, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// `User=` (system units only).
    pub user: Option<String>,
    /// `HERD_HOME`.
    pub herd_home: PathBuf,
    /// The herd executable, as named on PATH.
    pub herd: PathBuf,
    /// The unit's name, without `.service`.
    pub name: String,
    /// Where the file goes.
    pub dir: PathBuf,
    /// A user unit (`systemctl --user`).
    pub user_unit: bool,
    /// `herd` is the one on PATH.
    pub on_path: bool,
}

impl Unit {
    /// The unit file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.service", self.name))
    }

    /// The unit file.
    pub fn render(&self) -> String {
        let herd = quote(&self.herd.display().to_string());
        let user = match &self.user {
            Some(u) => format!("User={u}\n"),
            None => String::new(),
        };
        let wanted_by = if self.user_unit {
            "default.target"
        } else {
            "multi-user.target"
        };
        format!(
            "# Written by `herd startup`; `herd unstartup` removes it.\n\
             [Unit]\n\
             Description=herd process manager (HERD_HOME={home})\n\
             After=network-online.target\n\
             Wants=network-online.target\n\
             \n\
             [Service]\n\
             # READY=1 once every saved app is online and ready.\n\
             Type=notify\n\
             NotifyAccess=main\n\
             {user}\
             Environment={env}\n\
             ExecStart={herd} run --resurrect --no-auto-exit\n\
             ExecReload={herd} reload all\n\
             # herd stops every app gracefully on SIGTERM (each within its\n\
             # kill_timeout); what is left after TimeoutStopSec is killed.\n\
             KillMode=mixed\n\
             KillSignal=SIGTERM\n\
             TimeoutStartSec=120\n\
             TimeoutStopSec=60\n\
             LimitNOFILE=1048576\n\
             Restart=on-failure\n\
             RestartSec=1\n\
             \n\
             [Install]\n\
             WantedBy={wanted_by}\n",
            home = self.herd_home.display().to_string().replace('%', "%%"),
            env = quote(&format!("HERD_HOME={}", self.herd_home.display())),
        )
    }
}

/// A word of a unit file: `%` doubled (systemd's specifiers), and quoted
/// when it holds whitespace, quotes or backslashes.
fn quote(s: &str) -> String {
    let s = s.replace('%', "%%");
    if s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\' || c == '\'') {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// PM2's platform names that mean systemd here.
fn platform(p: Option<&str>) -> Result<()> {
    match p {
        None
        | Some(
            "systemd" | "systemd-devel" | "ubuntu" | "ubuntu14" | "ubuntu16" | "ubuntu18"
            | "debian" | "centos" | "centos7" | "redhat" | "rhel" | "amazon" | "fedora"
            | "suse" | "arch",
        ) => Ok(()),
        Some(other) => Err(bad(
            "platform",
            other,
            "systemd (herd writes systemd units only; other init systems can run `herd run --resurrect --no-auto-exit` in the foreground)",
        )),
    }
}

/// The herd executable as the unit should name it: the first `herd` on
/// PATH that is this very program, else this program's path (with a
/// warning). Never canonicalized: `/usr/local/bin/herd` stays that,
/// whatever it links to.
pub(crate) fn herd_path() -> Result<(PathBuf, bool)> {
    let me = std::env::current_exe().map_err(|e| Error::io("locating the herd executable", e))?;
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("herd");
            if dir.is_absolute() && same_file(&cand, &me) {
                return Ok((cand, true));
            }
        }
    }
    Ok((me, false))
}

/// Whether `a` and `b` are the same file (device and inode; links followed).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The first /etc/passwd entry that `pick` accepts, as its seven fields.
fn passwd_entry(pick: impl Fn(&[&str]) -> bool) -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && pick(&f)).then(|| f.iter().map(|s| s.to_string()).collect())
    })
}

/// `name`'s home directory from /etc/passwd.
fn passwd_home(name: &str) -> Option<PathBuf> {
    passwd_entry(|f| f[0] == name).map(|f| PathBuf::from(&f[5]))
}

/// The current user's name: from /etc/passwd by uid, else `$USER`.
fn current_user() -> Option<String> {
    let uid = crate::sys::euid();
    passwd_entry(|f| f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| f[0].clone())
        .or_else(|| std::env::var("USER").ok())
}

fn valid_unit_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 200
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'))
}

/// Resolves the flags into a [`Unit`].
pub fn resolve(a: &StartupArgs) -> Result<Unit> {
    platform(a.platform.as_deref())?;
    let root = crate::sys::euid() == 0;
    let user = match &a.user {
        Some(u) => {
            if u.is_empty() || u.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
                return Err(bad("--user", u, "a user name"));
            }
            u.clone()
        }
        None => current_user().ok_or_else(|| {
            bad(
                "--user",
                "",
                "a user name (the current one could not be found)",
            )
        })?,
    };
    if !root && a.user.is_some() && current_user().as_deref() != Some(user.as_str()) {
        return Err(Error::Remote {
            message: format!("a unit for user `{user}` needs root"),
            hint: Some(format!(
                "run it with sudo: sudo herd startup systemd -u {user}"
            )),
        });
    }
    let home = match &a.home_path {
        Some(h) if h.is_absolute() => h.clone(),
        Some(h) => return Err(bad("--hp", &h.display().to_string(), "an absolute path")),
        None => passwd_home(&user)
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
            .ok_or_else(|| bad("--hp", "", "the user's home directory (not found)"))?,
    };
    let herd_home = match std::env::var_os("HERD_HOME") {
        Some(h) if !h.is_empty() && a.user.is_none() => PathBuf::from(h),
        _ => home.join(".herd"),
    };
    let user_unit = !root;
    let name = a.service_name.clone().unwrap_or_else(|| {
        if user_unit {
            "herd".to_string()
        } else {
            format!("herd-{user}")
        }
    });
    if !valid_unit_name(&name) {
        return Err(bad(
            "--service-name",
            &name,
            "letters, digits and - _ . @ : (no `.service`)",
        ));
    }
    let dir = match &a.unit_dir {
        Some(d) => d.clone(),
        None if user_unit => home.join(".config/systemd/user"),
        None => PathBuf::from("/etc/systemd/system"),
    };
    let (herd, on_path) = herd_path()?;
    Ok(Unit {
        user: (!user_unit).then_some(user),
        herd_home,
        herd,
        on_path,
        name,
        dir,
        user_unit,
    })
}

/// `systemctl [--user] args…`; `HERD_SYSTEMCTL` names another program.
fn systemctl(unit: &Unit, args: &[&str]) -> Result<()> {
    let prog = std::env::var("HERD_SYSTEMCTL").unwrap_or_else(|_| "systemctl".into());
    let mut c = Command::new(&prog);
    if unit.user_unit {
        c.arg("--user");
    }
    c.args(args);
    let shown = format!(
        "{prog}{} {}",
        if unit.user_unit { " --user" } else { "" },
        args.join(" ")
    );
    match c.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(Error::Remote {
            message: format!("`{shown}` failed ({s})"),
            hint: Some(format!(
                "the unit is written at {}; run `{shown}` yourself once systemd runs",
                unit.path().display()
            )),
        }),
        Err(e) => Err(Error::io(format!("cannot run `{shown}`"), e)),
    }
}

/// Runs `herd startup`.
pub fn startup(a: StartupArgs) -> Result<()> {
    let unit = resolve(&a)?;
    if !unit.on_path {
        eprintln!(
            "warning: this herd ({}) is not the `herd` on PATH: the unit names it by this path; install herd on PATH (e.g. /usr/local/bin) first so that upgrades keep the unit working",
            unit.herd.display()
        );
    }
    if !a.install {
        super::output::write_stdout(unit.render().trim_end())?;
        let sudo = if unit.user_unit { "" } else { "sudo " };
        eprintln!(
            "[herd] to install and enable it: {sudo}herd startup systemd --install{}",
            a.user
                .as_ref()
                .map(|u| format!(" -u {u}"))
                .unwrap_or_default()
        );
        eprintln!("[herd] then `herd save` the apps to bring back at boot");
        return Ok(());
    }
    std::fs::create_dir_all(&unit.dir)
        .map_err(|e| Error::io(format!("cannot create {}", unit.dir.display()), e))?;
    crate::home::write_atomic(&unit.path(), unit.render().as_bytes())
        .map_err(|e| Error::io(format!("cannot write {}", unit.path().display()), e))?;
    println!("[herd] wrote {}", unit.path().display());
    systemctl(&unit, &["daemon-reload"])?;
    systemctl(&unit, &["enable", &format!("{}.service", unit.name)])?;
    println!(
        "[herd] enabled {}.service: at boot it runs `herd run --resurrect` (save the apps with `herd save`; start it now with `systemctl{} start {}`)",
        unit.name,
        if unit.user_unit { " --user" } else { "" },
        unit.name
    );
    if unit.user_unit {
        println!(
            "[herd] a user unit starts at boot only with lingering on: loginctl enable-linger {}",
            current_user().unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs `herd unstartup`: disables and removes the unit (herd and its apps
/// keep running until stopped).
pub fn unstartup(a: StartupArgs) -> Result<()> {
    let unit = resolve(&a)?;
    let path = unit.path();
    if !path.exists() {
        return Err(Error::Remote {
            message: format!("no herd unit at {}", path.display()),
            hint: Some("`herd startup systemd --install` writes one; --service-name and --unit-dir pick another".into()),
        });
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    if !text.starts_with("# Written by `herd startup`") {
        return Err(Error::Remote {
            message: format!(
                "{} was not written by herd startup: left alone",
                path.display()
            ),
            hint: None,
        });
    }
    systemctl(&unit, &["disable", &format!("{}.service", unit.name)])?;
    std::fs::remove_file(&path)
        .map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))?;
    systemctl(&unit, &["daemon-reload"])?;
    println!("[herd] disabled and removed {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(user_unit: bool) -> Unit {
        Unit {
            user: (!user_unit).then(|| "app".to_string()),
            herd_home: "/home/app/.herd".into(),
            herd: "/usr/local/bin/herd".into(),
            name: if user_unit {
                "herd".into()
            } else {
                "herd-app".into()
            },
            dir: "/etc/systemd/system".into(),
            user_unit,
            on_path: true,
        }
    }

    #[test]
    fn a_system_unit_runs_herd_in_the_foreground_as_the_user() {
        let u = unit(false);
        let t = u.render();
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "User=app",
            "Environment=HERD_HOME=/home/app/.herd",
            "ExecStart=/usr/local/bin/herd run --resurrect --no-auto-exit",
            "ExecReload=/usr/local/bin/herd reload all",
            "KillMode=mixed",
            "LimitNOFILE=1048576",
            "Restart=on-failure",
            "WantedBy=multi-user.target",
        ] {
            assert!(t.lines().any(|l| l == line), "no `{line}` in\n{t}");
        }
        assert!(!t.contains("PATH="), "no PATH baked in");
        let mut odd = unit(false);
        odd.herd = "/opt/my herd/herd".into();
        odd.herd_home = "/srv/100%/.herd".into();
        let t = odd.render();
        assert!(
            t.contains("ExecStart=\"/opt/my herd/herd\" run --resurrect"),
            "{t}"
        );
        assert!(t.contains("Environment=HERD_HOME=/srv/100%%/.herd"), "{t}");
        assert_eq!(u.path(), Path::new("/etc/systemd/system/herd-app.service"));
        let t = unit(true).render();
        assert!(!t.contains("User="));
        assert!(t.contains("WantedBy=default.target"));
    }

    #[test]
    fn only_systemd_platforms_are_taken() {
        assert!(platform(None).is_ok());
        assert!(platform(Some("ubuntu")).is_ok());
        let e = platform(Some("launchd")).unwrap_err().to_string();
        assert!(e.contains("`launchd`") && e.contains("systemd"), "{e}");
    }
}

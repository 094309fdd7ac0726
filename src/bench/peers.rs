//! The peers `herd bench --compare` runs beside herd's own modes, on the
//! same app, instance count and load, one after another: PM2 in cluster
//! mode, Node's own `cluster` module (bench-apps/node/cluster-primary.js),
//! one bare `node` process, and nginx with `reuseport` as the C reference
//! where the app is the built-in hello worker (nginx answers itself).
//!
//! Each peer is found or skipped with the reason (`bench-apps/
//! install-peers.sh` installs PM2 under `bench-apps/.peers/`, nginx and
//! wrk from apt); each runs in its own temporary directory (PM2 with its
//! own `PM2_HOME`, never `~/.pm2`) and is stopped, with everything it
//! started, when its run ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A target of `--compare` that is not herd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// `pm2 start app.js -i N`.
    Pm2,
    /// Node's `cluster` module with N workers.
    NodeCluster,
    /// One `node app.js`.
    Node,
    /// nginx, N workers, `listen … reuseport`, answering itself.
    Nginx,
}

impl Peer {
    /// Its name in `--compare` and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Peer::Pm2 => "pm2",
            Peer::NodeCluster => "node-cluster",
            Peer::Node => "node",
            Peer::Nginx => "nginx",
        }
    }

    /// Parses a `--compare` name.
    pub fn parse(s: &str) -> Option<Peer> {
        [Peer::Pm2, Peer::NodeCluster, Peer::Node, Peer::Nginx]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A peer found on this machine: what runs it, and its version.
#[derive(Debug, Clone)]
pub struct Found {
    /// The program.
    pub exe: PathBuf,
    /// Its version, as it says.
    pub version: String,
}

/// Where `install-peers.sh` puts npm packages (`HERD_PEERS` overrides).
fn peers_dir() -> PathBuf {
    std::env::var_os("HERD_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("bench-apps/.peers"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn output_of(exe: &Path, args: &[&str]) -> Option<String> {
    let o = Command::new(exe).args(args).output().ok()?;
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    o.status.success().then(|| text.trim().to_string())
}

/// Finds `peer` for an app that is a Node script (`node_app`) or the
/// built-in hello worker; `Err` says why it is skipped.
pub fn detect(peer: Peer, node_app: bool) -> std::result::Result<Found, String> {
    let node = || {
        let exe = on_path("node").ok_or("node is not installed")?;
        let version = output_of(&exe, &["--version"]).ok_or("node does not run")?;
        Ok::<_, String>(Found { exe, version })
    };
    match peer {
        Peer::Pm2 | Peer::NodeCluster | Peer::Node if !node_app => Err(format!(
            "{} runs Node apps: give `--app app.js` (the hello worker is compared with nginx)",
            peer.as_str()
        )),
        Peer::NodeCluster | Peer::Node => node(),
        Peer::Pm2 => {
            node()?;
            let exe = std::env::var_os("HERD_PM2")
                .map(PathBuf::from)
                .filter(|p| p.is_file())
                .or_else(|| Some(peers_dir().join("node_modules/.bin/pm2")).filter(|p| p.is_file()))
                .or_else(|| on_path("pm2"))
                .ok_or("PM2 is not installed (bench-apps/install-peers.sh installs it)")?;
            // PM2's own version from its package.json: `pm2 --version`
            // would start a PM2 daemon.
            let pkg = std::fs::canonicalize(&exe)
                .ok()
                .and_then(|p| p.parent()?.parent().map(|d| d.join("package.json")))
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["version"].as_str().map(str::to_string))
                .unwrap_or_else(|| "?".into());
            Ok(Found {
                exe,
                version: format!("pm2 {pkg}"),
            })
        }
        Peer::Nginx if node_app => {
            Err("nginx answers by itself: it is the reference for the hello worker only".into())
        }
        Peer::Nginx => {
            let exe = std::env::var_os("HERD_NGINX")
                .map(PathBuf::from)
                .or_else(|| on_path("nginx"))
                .filter(|p| p.is_file())
                .ok_or("nginx is not installed (bench-apps/install-peers.sh installs it)")?;
            let version = output_of(&exe, &["-v"]).ok_or("nginx -v failed")?;
            Ok(Found { exe, version })
        }
    }
}

/// A peer serving on its port; stopped (with everything it started) on drop.
pub struct Running {
    peer: Peer,
    child: Option<Child>,
    dir: PathBuf,
    exe: PathBuf,
    /// The process whose tree is the server (for its CPU).
    pub root: i32,
}

/// Runs `pm2 ARGS` against the run's own `PM2_HOME`; `Err` says how it failed.
fn pm2(exe: &Path, home: &Path, args: &[&str]) -> std::result::Result<(), String> {
    let st = Command::new(exe)
        .args(args)
        .env("PM2_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("pm2 {}: {st}", args[0]))
}

/// What reloads a peer once: `Err` says why it failed.
pub type ReloadFn = std::sync::Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;
/// What sets a peer's instance count.
pub type ScaleFn = std::sync::Arc<dyn Fn(u32) -> std::result::Result<(), String> + Send + Sync>;

impl Running {
    /// How this peer changes its instance count live, if it can (`pm2
    /// scale`).
    pub fn scale(&self) -> Option<ScaleFn> {
        if self.peer != Peer::Pm2 {
            return None;
        }
        let (exe, home) = (self.exe.clone(), self.dir.join("pm2"));
        Some(std::sync::Arc::new(move |n| {
            pm2(&exe, &home, &["scale", "bench", &n.to_string()])
        }))
    }

    /// How this peer reloads without dropping connections, if it can:
    /// `pm2 reload`, nginx's SIGHUP. Node's cluster module and one bare
    /// process have no such thing.
    pub fn reload(&self) -> Option<ReloadFn> {
        match self.peer {
            Peer::Pm2 => {
                let (exe, home) = (self.exe.clone(), self.dir.join("pm2"));
                Some(std::sync::Arc::new(move || {
                    pm2(&exe, &home, &["reload", "bench"])
                }))
            }
            Peer::Nginx => {
                let master = self.root;
                Some(std::sync::Arc::new(move || {
                    crate::sys::process::kill_pid(master, libc::SIGHUP).map_err(|e| e.to_string())
                }))
            }
            Peer::NodeCluster | Peer::Node => None,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.peer == Peer::Pm2 {
            let _ = Command::new(&self.exe)
                .arg("kill")
                .env("PM2_HOME", self.dir.join("pm2"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(c) = &mut self.child {
            // The whole group: node-cluster's workers, nginx's.
            let _ = crate::sys::process::kill_group(c.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = crate::sys::process::kill_group(c.id() as i32, libc::SIGKILL);
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(cmd: &mut Command, dir: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join("peer.log")).map_err(|e| Error::io("peer log", e))?;
    let err = log.try_clone().map_err(|e| Error::io("peer log", e))?;
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            Error::io(
                format!("starting {}", cmd.get_program().to_string_lossy()),
                e,
            )
        })
}

/// Starts `peer` (found as `found`) serving `app` with `n` processes on
/// 127.0.0.1:`port`, the app's environment `env` added; with `cap`
/// (bytes, PM2 only) under PM2's `--max-memory-restart`.
pub fn start(
    peer: Peer,
    found: &Found,
    app: Option<&Path>,
    (n, port): (u32, u16),
    cap: Option<u64>,
    env: &[(String, String)],
) -> Result<Running> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "herd-bench-{}-{}-{nanos}",
        peer.as_str(),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("peer directory", e))?;
    let mut running = Running {
        peer,
        child: None,
        dir: dir.clone(),
        exe: found.exe.clone(),
        root: 0,
    };
    let app = || app.ok_or_else(|| Error::Protocol(format!("{} needs an app", peer.as_str())));
    let command = match peer {
        Peer::Node => {
            let mut c = Command::new(&found.exe);
            c.arg(app()?).env("PORT", port.to_string());
            Some(c)
        }
        Peer::NodeCluster => {
            let primary = std::env::current_dir()
                .map_err(|e| Error::io("cwd", e))?
                .join("bench-apps/node/cluster-primary.js");
            if !primary.is_file() {
                return Err(Error::ScriptNotFound { path: primary });
            }
            let mut c = Command::new(&found.exe);
            c.arg(&primary)
                .arg(app()?)
                .arg(n.to_string())
                .env("PORT", port.to_string());
            Some(c)
        }
        Peer::Pm2 => {
            // PM2 starts its own daemon, which outlives this command.
            let home = dir.join("pm2");
            let mut cmd = Command::new(&found.exe);
            cmd.args(["start"])
                .arg(app()?)
                .args(["-i", &n.to_string(), "--name", "bench"]);
            if let Some(cap) = cap {
                cmd.args(["--max-memory-restart", &cap.to_string()]);
            }
            let status = cmd
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env("PM2_HOME", &home)
                .env("PORT", port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| Error::io("starting PM2", e))?;
            if !status.success() {
                return Err(Error::Protocol(format!("`pm2 start` failed ({status})")));
            }
            running.root = std::fs::read_to_string(home.join("pm2.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            None
        }
        Peer::Nginx => {
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(&dir, n, port))
                .map_err(|e| Error::io("nginx.conf", e))?;
            let mut c = Command::new(&found.exe);
            c.arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf)
                .args(["-e", "stderr"]);
            Some(c)
        }
    };
    // The peer's own process is the root of the server's tree.
    if let Some(mut cmd) = command {
        let c = spawn(cmd.envs(env.iter().map(|(k, v)| (k, v))), &dir)?;
        running.root = c.id() as i32;
        running.child = Some(c);
    }
    Ok(running)
}

/// nginx answering `hello` itself on `port` with `n` workers, each
/// response naming its worker (`X-Worker: $pid`) as the hello worker's do.
pub fn nginx_conf(dir: &Path, n: u32, port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes {n};\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 client_body_temp_path {d}/tmp;\n\
         \x20 proxy_temp_path {d}/tmp;\n\
         \x20 fastcgi_temp_path {d}/tmp;\n\
         \x20 uwsgi_temp_path {d}/tmp;\n\
         \x20 scgi_temp_path {d}/tmp;\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port} reuseport backlog=4096;\n\
         \x20   location / {{\n\
         \x20     add_header X-Worker $pid always;\n\
         \x20     default_type text/plain;\n\
         \x20     return 200 \"hello world\\n\";\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Peer::Pm2, Peer::NodeCluster, Peer::Node, Peer::Nginx] {
            assert_eq!(Peer::parse(p.as_str()), Some(p));
        }
        assert_eq!(Peer::parse("apache"), None);
    }

    #[test]
    fn node_peers_need_a_node_app_and_nginx_the_hello_worker() {
        let e = detect(Peer::Pm2, false).unwrap_err();
        assert!(e.contains("--app"), "{e}");
        let e = detect(Peer::Nginx, true).unwrap_err();
        assert!(e.contains("hello worker"), "{e}");
    }

    #[test]
    fn nginx_conf_names_the_port_workers_and_reuseport() {
        let c = nginx_conf(Path::new("/tmp/x"), 4, 8123);
        assert!(c.contains("worker_processes 4;"));
        assert!(c.contains("listen 127.0.0.1:8123 reuseport"));
        assert!(c.contains("X-Worker $pid"));
        assert!(c.contains("pid /tmp/x/nginx.pid;"));
    }
}

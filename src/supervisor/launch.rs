//! Turns an [`Instance`] into a running process: resolves the executable,
//! builds argv and the environment (PM2's variables plus herd's), opens the
//! log pipes, hands over the listener as fd 3, and forks.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::Instance;
use crate::accept::pool::{SlotProto, Wire};
use crate::home::Home;
use crate::logs::capture::{Console, Encoder, Stream};
use crate::logs::date::DateFormat;
use crate::logs::file::{self, LogFiles};
use crate::sys::fdpass::{socketpair, PairKind};
use crate::sys::shm::SharedPage;
use crate::sys::spawn::{spawn, SpawnPlan, Spawned};

/// The Node preload that makes `server.listen(PORT)` use the inherited fd 3.
/// Shipped inside the binary, written to `$HERD_HOME/node/` at daemon start.
pub const NODE_PRELOAD: &str = include_str!("../../bench-apps/node/herd-listen.js");

/// Writes [`NODE_PRELOAD`] where `node -r` can find it.
pub fn install_node_preload(home: &Home) -> io::Result<()> {
    let path = home.node_preload();
    std::fs::create_dir_all(path.parent().expect("preload path has a parent"))?;
    crate::home::write_atomic(&path, NODE_PRELOAD.as_bytes())
}

use crate::sys::spawn::is_executable;
pub use crate::sys::spawn::which;

/// PM2's `increment_var` for `inst`: the variable and its value there, the
/// app's numeric base value (`env`, else inherited; 0 if neither is a
/// number, as PM2) + the instance number.
pub fn incremented(inst: &Instance) -> Option<(String, i64)> {
    let var = inst.app.increment_var.as_ref()?;
    let base = inst
        .app
        .env
        .get(var)
        .or_else(|| inst.app.base_env.get(var))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    Some((var.clone(), base + i64::from(inst.index)))
}

/// The full environment of an instance: inherited, then the app's `--env`,
/// then what herd sets (PM2's names first, so unmodified apps find them).
pub fn environment(inst: &Instance, notify: &Path) -> Vec<(String, String)> {
    let app = &inst.app;
    let mut env: std::collections::BTreeMap<String, String> = app.base_env.clone();
    env.extend(app.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Variables that belong to another process's socket activation or
    // cluster must not leak into ours.
    for k in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NODE_UNIQUE_ID",
        "NODE_CHANNEL_FD",
        "NOTIFY_SOCKET",
    ] {
        env.remove(k);
    }
    let instance_var = app.instance_var.as_deref().unwrap_or("NODE_APP_INSTANCE");
    env.insert(instance_var.into(), inst.index.to_string());
    let incremented = incremented(inst);
    if let Some((var, n)) = &incremented {
        env.insert(var.clone(), n.to_string());
    }
    env.insert("pm_id".into(), inst.id.to_string());
    env.insert("name".into(), app.name.clone());
    env.insert("HERD_APP_NAME".into(), app.name.clone());
    env.insert("HERD_INSTANCE".into(), inst.index.to_string());
    env.insert("HERD_ID".into(), inst.id.to_string());
    if let Some(port) = inst.port.or(app.port) {
        // An incremented PORT is the instance's own (PM2's increment_var).
        if incremented.as_ref().is_none_or(|(v, _)| v != "PORT") {
            env.insert("PORT".into(), port.to_string());
        }
        env.insert("HERD_PORT".into(), port.to_string());
    }
    if inst.listener.is_some() {
        env.insert("LISTEN_FDS".into(), "1".into());
        env.insert("LISTEN_FDNAMES".into(), app.name.clone());
    }
    if crate::config::binds_own_reuseport(app) {
        // Bun as a cluster worker binds `listen(PORT)` with SO_REUSEPORT
        // itself (it needs no channel for that): one socket per process,
        // all in one group.
        env.insert("NODE_UNIQUE_ID".into(), inst.id.to_string());
    }
    // sd_notify(3): `READY=1` on this datagram socket says the app is ready
    // (any language; herd's hello worker sends it).
    env.insert(
        "NOTIFY_SOCKET".into(),
        notify.to_string_lossy().into_owned(),
    );
    if inst.plane.is_none() && is_node_app(inst) {
        // A plain IPC channel, as PM2 gives every Node app: process.send
        // works (`wait_ready`'s 'ready'), and 'shutdown' can be sent.
        let fd = if inst.listener.is_some() { "4" } else { "3" };
        env.insert("NODE_CHANNEL_FD".into(), fd.into());
        env.insert("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into());
    }
    if inst.plane.is_some() {
        match channel_proto(inst) {
            SlotProto::Node => {
                // Node's own cluster worker protocol: the app believes herd
                // is its cluster primary.
                env.insert("NODE_UNIQUE_ID".into(), inst.id.to_string());
                env.insert("NODE_CHANNEL_FD".into(), "3".into());
                env.insert("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into());
                // herd's preload takes connections here instead (PROTOCOL.md).
                env.insert(crate::worker::CHANNEL_ENV.into(), "4".into());
            }
            SlotProto::Herd => {
                env.insert(crate::worker::CHANNEL_ENV.into(), "3".into());
                env.insert(crate::fdpass::herd::counters::ENV.into(), "4".into());
            }
        }
    }
    env.into_iter().collect()
}

/// The executable and argv for an instance.
pub fn command(inst: &Instance, home: &Home) -> io::Result<(PathBuf, Vec<String>)> {
    let app = &inst.app;
    let script = app.script.to_string_lossy().into_owned();
    let path_var = app
        .env
        .get("PATH")
        .or_else(|| app.base_env.get("PATH"))
        .map(String::as_str);
    match &app.interpreter {
        None => {
            if !is_executable(&app.script) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{script} is not executable; give --interpreter or chmod +x it"),
                ));
            }
            let mut argv = vec![script];
            argv.extend(app.args.iter().cloned());
            Ok((app.script.clone(), argv))
        }
        Some(interp) => {
            let exe = which(interp, path_var, &app.cwd).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interpreter `{interp}` not found in PATH"),
                )
            })?;
            let mut argv = vec![interp.clone()];
            argv.extend(app.interpreter_args.iter().cloned());
            let preload = home.node_preload().to_string_lossy().into_owned();
            // Cluster Node apps: the preload (listen on herd's fd 3 in
            // reuseport/shared mode; drain on reload in every mode).
            if (inst.listener.is_some() || inst.plane.is_some()) && is_node(interp) {
                argv.push("-r".into());
                argv.push(preload);
            } else if inst.listener.is_some()
                && crate::config::runtime(app) == Some(crate::config::Runtime::Deno)
            {
                // Deno: `run` (added when the interpreter arguments lack
                // it), then the preload as a CommonJS `--require`.
                let at = match argv.iter().position(|a| a == "run") {
                    Some(i) => i + 1,
                    None => {
                        argv.insert(1, "run".into());
                        2
                    }
                };
                argv.insert(at, "--require".into());
                argv.insert(at + 1, preload);
            }
            argv.push(script);
            argv.extend(app.args.iter().cloned());
            Ok((exe, argv))
        }
    }
}

fn is_node(interp: &str) -> bool {
    let base = Path::new(interp)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("");
    base == "node" || base == "nodejs"
}

/// One output stream of a started process: the daemon's end of its pipe
/// and where its lines go.
pub struct Capture {
    /// Read end (non-blocking).
    pub pipe: OwnedFd,
    /// How lines are written.
    pub encoder: Encoder,
    /// The files they go to.
    pub files: Vec<file::Shared>,
    /// `herd run`: the console copy.
    pub console: Option<Console>,
}

/// The child's end of one stream: a pipe the daemon reads, or /dev/null
/// when every destination is disabled.
fn output(
    inst: &Instance,
    stream: Stream,
    files: &LogFiles,
    captures: &mut Vec<Capture>,
) -> io::Result<OwnedFd> {
    let own = match stream {
        Stream::Out => &inst.out_log,
        Stream::Err => &inst.err_log,
    };
    let settings = &inst.app.logs;
    let rotation = settings.rotation();
    let targets: Vec<file::Shared> = [Some(own), inst.combined_log.as_ref()]
        .into_iter()
        .flatten()
        .filter(|p| !crate::logs::is_null(p))
        .map(|p| files.get(p, rotation))
        .collect();
    let console = files
        .console()
        .map(|f| Console::new(f, stream, &inst.app.name, inst.id));
    if targets.is_empty() && console.is_none() {
        return Ok(OpenOptions::new().write(true).open("/dev/null")?.into());
    }
    let (read, write) = crate::sys::fd::pipe()?;
    captures.push(Capture {
        pipe: read,
        encoder: Encoder::new(
            stream,
            &inst.app.name,
            inst.id,
            settings.date_format.as_deref().map(DateFormat::parse),
            settings.json,
        ),
        files: targets,
        console,
    });
    Ok(write)
}

/// Whether the instance runs under node.
pub fn is_node_app(inst: &Instance) -> bool {
    inst.app.interpreter.as_deref().is_some_and(is_node)
}

/// Which protocol an fdpass instance's channel speaks: Node's cluster IPC
/// for node apps, herd's own for everything else.
pub fn channel_proto(inst: &Instance) -> SlotProto {
    if is_node_app(inst) {
        SlotProto::Node
    } else {
        SlotProto::Herd
    }
}

/// A started process, and the daemon's end of its channel (fdpass).
pub struct Launched {
    /// The process.
    pub spawned: Spawned,
    /// The daemon's side of an fdpass instance's channel.
    pub chan: Option<ChannelEnds>,
    /// stdout and stderr pipes to copy into the log files.
    pub captures: Vec<Capture>,
    /// The daemon's end of a Node app's IPC channel outside fdpass mode.
    pub ipc: Option<OwnedFd>,
    /// This process's own sd_notify socket and its path.
    pub notify: Option<(OwnedFd, PathBuf)>,
}

/// A socket of this process's own for sd_notify (`NOTIFY_SOCKET`): a
/// `READY=1` arriving on it is this process's, whoever in its tree sent it
/// and even if the sender has already exited (`systemd-notify --ready` in a
/// wrapper script does). `None` (the daemon's shared socket then, which
/// attributes by the sender's pid) if it cannot be bound, e.g. a path over
/// the 108 bytes a unix socket address holds.
fn own_notify_socket(home: &Home, inst: &Instance) -> Option<(OwnedFd, PathBuf)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = home.notify_dir().join(format!("{}.{n}.sock", inst.id));
    if path.as_os_str().len() >= 100 {
        return None;
    }
    crate::sys::notify::bind(&path).ok().map(|s| (s, path))
}

/// What the daemon keeps of an fdpass instance's channel.
pub struct ChannelEnds {
    /// The daemon's end (non-blocking).
    pub ours: OwnedFd,
    /// What only its protocol has: herd, a copy of the worker's end and
    /// the counters page (the worker's fd 4); Node, the herd-protocol
    /// channel herd's preload takes connections on (the worker's fd 4),
    /// with a copy of the worker's end (see `accept::pool`).
    pub wire: Wire,
}

/// What the worker gets of its fdpass channel: fd 3, and fd 4 (the herd
/// counters page, or a Node app's herd-protocol channel).
struct WorkerEnds {
    chan: OwnedFd,
    fd4: OwnedFd,
}

/// Starts the instance's process.
pub fn launch(inst: &Instance, home: &Home, files: &LogFiles) -> io::Result<Launched> {
    let (exe, argv) = command(inst, home)?;
    let chan = match inst.plane {
        Some(_) => {
            let proto = channel_proto(inst);
            let kind = match proto {
                SlotProto::Node => PairKind::Stream,
                SlotProto::Herd => PairKind::SeqPacket,
            };
            let (ours, theirs) = socketpair(kind)?;
            crate::sys::fdpass::set_nonblocking(ours.as_fd(), true)?;
            let (wire, fd4) = match proto {
                SlotProto::Herd => {
                    let page = SharedPage::new("herd-counters")?;
                    let fd4 = page.as_fd().try_clone_to_owned()?;
                    (Wire::herd(Some(theirs.try_clone()?), Some(page)), fd4)
                }
                SlotProto::Node => {
                    let (fast, fast_theirs) = socketpair(PairKind::SeqPacket)?;
                    crate::sys::fdpass::set_nonblocking(fast.as_fd(), true)?;
                    let peer = fast_theirs.try_clone()?;
                    (
                        Wire::node(Some((fast, peer)), inst.app.wait_ready),
                        fast_theirs,
                    )
                }
            };
            let ends = ChannelEnds { ours, wire };
            Some((ends, WorkerEnds { chan: theirs, fd4 }))
        }
        None => None,
    };
    let notify = NotifySocket(own_notify_socket(home, inst));
    let notify_path = notify
        .path()
        .map_or_else(|| home.notify_sock(), Path::to_path_buf);
    let env = environment(inst, &notify_path);
    let ipc = match inst.plane.is_none() && is_node_app(inst) {
        true => {
            let (ours, theirs) = socketpair(PairKind::Stream)?;
            crate::sys::fdpass::set_nonblocking(ours.as_fd(), true)?;
            Some((ours, theirs))
        }
        false => None,
    };
    let mut captures = Vec::with_capacity(2);
    let out = output(inst, Stream::Out, files, &mut captures)?;
    let err = output(inst, Stream::Err, files, &mut captures)?;
    let plan = SpawnPlan {
        program: exe.as_os_str(),
        args: argv.iter().map(OsStr::new).collect(),
        env: env
            .iter()
            .map(|(k, v)| (OsStr::new(k), OsStr::new(v)))
            .collect(),
        cwd: inst.app.cwd.as_os_str(),
        stdout: out.as_fd(),
        stderr: err.as_fd(),
        extra: match &chan {
            Some((_, theirs)) => vec![theirs.chan.as_fd(), theirs.fd4.as_fd()],
            None => inst
                .listener
                .as_deref()
                .map(|s| s.as_fd())
                .into_iter()
                .chain(ipc.as_ref().map(|(_, theirs)| theirs.as_fd()))
                .collect(),
        },
        listen_pid: chan.is_none() && inst.listener.is_some(),
        cpu: inst.core,
    };
    if let (true, Some(l), Some(cpu)) = (inst.app.incoming_cpu, &inst.listener, inst.core) {
        if inst.app.mode == crate::accept::Mode::Reuseport {
            crate::sys::set_incoming_cpu(l.as_fd(), cpu)?;
        }
    }
    let spawned = spawn(&plan)?;
    // Our copies of the write ends close here, so a pipe ends when the
    // process (and whatever inherited its stdout) is gone.
    drop((out, err));
    Ok(Launched {
        spawned,
        chan: chan.map(|(ends, _theirs)| ends),
        captures,
        ipc: ipc.map(|(ours, _theirs)| ours),
        notify: notify.keep(),
    })
}

/// A bound notify socket whose file is removed unless the launch gets as
/// far as handing it over.
struct NotifySocket(Option<(OwnedFd, PathBuf)>);

impl NotifySocket {
    fn path(&self) -> Option<&Path> {
        self.0.as_ref().map(|(_, p)| p.as_path())
    }

    fn keep(mut self) -> Option<(OwnedFd, PathBuf)> {
        self.0.take()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Some((_, p)) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

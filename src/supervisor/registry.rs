//! The daemon's table of instances and the async machinery around it:
//! launching, noticing exits (pidfd, no polling), scheduled restarts, stops
//! with a SIGKILL deadline. Runs on the daemon's single control-plane thread
//! (a tokio `LocalSet`), so state is a `RefCell` that is never borrowed
//! across an `.await`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::auto::Auto;
use super::launch::{self, Launched};
use super::{AfterExit, Instance, Status, StopAction};
use crate::accept::pool::Slot;
use crate::accept::{reuseport, DataPlane, Mode};
use crate::config::{AppSpec, ExecMode};
use crate::error::Error;
use crate::fdpass::channel;
use crate::home::Home;
use crate::logs::capture;
use crate::logs::file::LogFiles;
use crate::protocol::{InstanceInfo, OnExisting};
use crate::sys::process::{self, ExitStatus};
use crate::sys::spawn::Spawned;

mod hooks;

/// A refusal the client sees as `error: …` / `hint: …`.
fn refuse(message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Remote {
        message: message.into(),
        hint: Some(hint.into()),
    }
}

/// What a start did: instances launched, running instances that now carry a
/// new spec and must be restarted by the caller (`--update-env`), notes.
#[derive(Debug, Default)]
pub struct Started {
    /// Instances launched.
    pub ids: Vec<u32>,
    /// Running instances to restart with their new spec.
    pub restart: Vec<u32>,
    /// One line per thing worth telling.
    pub notes: Vec<String>,
}

/// Owns every instance of every app.
pub struct Supervisor {
    home: Home,
    /// CPUs we may pin to (the daemon's affinity mask).
    cpus: Vec<usize>,
    /// What `-i max` means here: affinity mask and cgroup quota.
    max_instances: usize,
    table: RefCell<Table>,
    /// Bumped on every state change; waiters re-check their condition.
    changed: watch::Sender<u64>,
    /// Reloads run one at a time: a second `herd reload` waits for the
    /// first instead of interleaving replacements of the same instances.
    reload_lock: tokio::sync::Mutex<()>,
    /// Log files open for the instances' output.
    pub log_files: LogFiles,
    /// Watchers and cron tasks per app, and the instances the user stopped.
    auto: RefCell<Auto>,
}

#[derive(Default)]
struct Table {
    instances: BTreeMap<u32, Instance>,
    next_id: u32,
}

impl Supervisor {
    /// An empty supervisor for the daemon at `home`.
    pub fn new(home: Home) -> Rc<Supervisor> {
        let cpus = crate::sys::allowed_cpus();
        let max_instances = std::thread::available_parallelism()
            .map_or(cpus.len(), |n| n.get())
            .max(1);
        Rc::new(Supervisor {
            home,
            cpus,
            max_instances,
            table: RefCell::new(Table::default()),
            changed: watch::channel(0).0,
            reload_lock: tokio::sync::Mutex::new(()),
            log_files: LogFiles::default(),
            auto: RefCell::new(Auto::default()),
        })
    }

    /// The daemon's home.
    pub fn home(&self) -> &Home {
        &self.home
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Every id, ascending.
    pub fn all_ids(&self) -> Vec<u32> {
        self.table.borrow().instances.keys().copied().collect()
    }

    /// Resolves `all`, ids and names to ids (deduplicated, in order).
    pub fn resolve(&self, targets: &[String]) -> Result<Vec<u32>, Error> {
        self.resolve_lenient(targets, false).map(|(ids, _)| ids)
    }

    /// Like [`Self::resolve`]; with `missing_ok`, names not in the list are
    /// returned apart instead of failing (ids must still exist).
    pub fn resolve_lenient(
        &self,
        targets: &[String],
        missing_ok: bool,
    ) -> Result<(Vec<u32>, Vec<String>), Error> {
        let mut missing = Vec::new();
        if targets.is_empty() {
            return Err(refuse("no target given", "name an app, an id, or `all`"));
        }
        let table = self.table.borrow();
        let mut ids = Vec::new();
        for t in targets {
            let found: Vec<u32> = if t == "all" {
                table.instances.keys().copied().collect()
            } else if let Ok(id) = t.parse::<u32>() {
                if !table.instances.contains_key(&id) {
                    return Err(refuse(
                        format!("no instance with id {id}"),
                        "see `herd list` for ids",
                    ));
                }
                vec![id]
            } else {
                let v: Vec<u32> = table
                    .instances
                    .values()
                    .filter(|i| i.app.name == *t)
                    .map(|i| i.id)
                    .collect();
                if v.is_empty() && missing_ok {
                    missing.push(t.clone());
                } else if v.is_empty() {
                    return Err(refuse(
                        format!("no app named `{t}`"),
                        "see `herd list` for names",
                    ));
                }
                v
            };
            for id in found {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        Ok((ids, missing))
    }

    /// Starts an app, or the stopped instances of an app already known.
    /// Returns the ids involved and notes for the user.
    pub fn start_app(
        self: &Rc<Self>,
        spec: AppSpec,
        force: bool,
        existing: OnExisting,
    ) -> Result<Started, Error> {
        crate::config::validate_name(&spec.name)?;
        if !spec.script.is_file() {
            return Err(Error::ScriptNotFound {
                path: spec.script.clone(),
            });
        }
        if !spec.cwd.is_dir() {
            return Err(refuse(
                format!("--cwd `{}` is not a directory", spec.cwd.display()),
                "give an existing directory",
            ));
        }
        if let Some(p) = &spec.cron_restart {
            crate::config::cron_schedule(p).map_err(|why| {
                refuse(
                    format!("invalid cron_restart `{p}`: {why}"),
                    format!("give {}", crate::config::CRON_EXPECTED),
                )
            })?;
        }
        if !force {
            if let Some(r) = self.start_existing(&spec, existing)? {
                return Ok(r);
            }
        }
        let n = match spec.exec_mode {
            ExecMode::Fork => 1,
            ExecMode::Cluster => spec.instances.resolve(self.max_instances),
        };
        let bind_refusal = |e: reuseport::BindError| {
            refuse(
                e.to_string(),
                "choose another --port (and --host), or stop what holds it",
            )
        };
        let mut plane = None;
        let mut listeners: Vec<Option<Arc<socket2::Socket>>> = vec![None; n as usize];
        if spec.exec_mode == ExecMode::Cluster {
            match (spec.mode, spec.port) {
                (Mode::Reuseport, Some(port)) => {
                    listeners = reuseport::bind_group(&spec.host, port, n as usize)
                        .map_err(bind_refusal)?
                        .into_iter()
                        .map(|s| Some(Arc::new(s)))
                        .collect();
                }
                (Mode::Shared, Some(port)) => {
                    let one = Arc::new(
                        reuseport::bind_one(&spec.host, port, spec.plane.backlog)
                            .map_err(bind_refusal)?,
                    );
                    listeners = vec![Some(one); n as usize];
                }
                (Mode::Fdpass, port) => {
                    let p =
                        DataPlane::new(spec.plane.clone(), self.cpus.clone(), spec.host.clone())
                            .map_err(|e| {
                                refuse(
                                    e,
                                    "fix or unset HERD_IO / HERD_CORK / HERD_RING_SEND / HERD_KEEP_COPIES, or use --mode reuseport",
                                )
                            })?;
                    if let Some(port) = port {
                        p.listen(&spec.host, port).map_err(bind_refusal)?;
                    }
                    plane = Some(p);
                }
                (Mode::Reuseport | Mode::Shared, None) => {}
            }
        }
        let app = Arc::new(spec);
        let ids: Vec<u32> = {
            let mut table = self.table.borrow_mut();
            (0..n)
                .map(|index| {
                    let id = table.next_id;
                    table.next_id += 1;
                    let mut inst =
                        self.new_instance(id, &app, index, n, listeners[index as usize].take());
                    inst.plane = plane.clone();
                    table.instances.insert(id, inst);
                    id
                })
                .collect()
        };
        let mut notes = Vec::new();
        for (k, &id) in ids.iter().enumerate() {
            if let Err(e) = self.launch_instance(id) {
                if k == 0 {
                    // Nothing of this app ran: forget it, report the cause.
                    let mut table = self.table.borrow_mut();
                    for id in &ids {
                        table.instances.remove(id);
                    }
                    drop(table);
                    self.bump();
                    return Err(refuse(
                        format!("cannot start `{}`: {e}", app.script.display()),
                        "check the script, --interpreter and --cwd",
                    ));
                }
                notes.push(format!("instance {id} failed to start: {e}"));
            }
        }
        self.sync_auto(std::slice::from_ref(&app.name));
        Ok(Started {
            ids,
            restart: Vec::new(),
            notes,
        })
    }

    /// PM2's rule for a name already in the list: same script → start its
    /// stopped instances (or refuse if all run); other script → refuse.
    fn start_existing(
        self: &Rc<Self>,
        spec: &AppSpec,
        existing: OnExisting,
    ) -> Result<Option<Started>, Error> {
        let (running, stopped): (Vec<u32>, Vec<u32>) = {
            let table = self.table.borrow();
            let same: Vec<&Instance> = table
                .instances
                .values()
                .filter(|i| i.app.name == spec.name)
                .collect();
            let Some(first) = same.first() else {
                return Ok(None);
            };
            if first.app.script != spec.script {
                return Err(refuse(
                    format!(
                        "the name `{}` is taken by {}",
                        spec.name,
                        first.app.script.display()
                    ),
                    "pick another --name, or `herd delete` the other app first",
                ));
            }
            same.iter()
                .map(|i| i.id)
                .partition(|id| table.instances[id].status.is_running())
        };
        if stopped.is_empty() && existing == OnExisting::Refuse {
            let list = running
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(refuse(
                format!("app `{}` is already running (id {list})", spec.name),
                format!(
                    "`herd restart {}` restarts it; add -f to start another copy",
                    spec.name
                ),
            ));
        }
        // Stopped instances start with the new spec (e.g. another --env);
        // running ones get it only when they are to be restarted.
        let app = Arc::new(spec.clone());
        let mut notes = Vec::new();
        {
            let mut table = self.table.borrow_mut();
            for id in &stopped {
                if let Some(inst) = table.instances.get_mut(id) {
                    inst.app = app.clone();
                    inst.status = Status::Launching;
                    inst.unstable_restarts = 0;
                }
            }
            if existing == OnExisting::Update {
                for id in &running {
                    if let Some(inst) = table.instances.get_mut(id) {
                        inst.app = app.clone();
                    }
                }
            }
        }
        self.auto.borrow_mut().release(&stopped);
        for &id in &stopped {
            if let Err(e) = self.launch_instance(id) {
                notes.push(format!("instance {id} failed to start: {e}"));
            }
        }
        self.sync_auto(std::slice::from_ref(&spec.name));
        let mut restart = Vec::new();
        match existing {
            OnExisting::Update => restart = running,
            OnExisting::Skip if !running.is_empty() => notes.push(format!(
                "app `{}` is already running: left alone (--update-env restarts it with the new environment)",
                spec.name
            )),
            _ => {}
        }
        Ok(Some(Started {
            ids: stopped,
            restart,
            notes,
        }))
    }

    fn new_instance(
        &self,
        id: u32,
        app: &Arc<AppSpec>,
        index: u32,
        n: u32,
        listener: Option<Arc<socket2::Socket>>,
    ) -> Instance {
        let core =
            (app.pin && !self.cpus.is_empty()).then(|| self.cpus[index as usize % self.cpus.len()]);
        Instance::new(id, app.clone(), index, n, core, listener, &self.home.logs())
    }

    /// Forks the instance's process and starts watching it.
    fn launch_instance(self: &Rc<Self>, id: u32) -> std::io::Result<()> {
        let result = {
            let table = self.table.borrow();
            let Some(inst) = table.instances.get(&id) else {
                return Ok(());
            };
            launch::launch(inst, &self.home, &self.log_files)
        };
        let mut table = self.table.borrow_mut();
        let Some(inst) = table.instances.get_mut(&id) else {
            return Ok(());
        };
        match result {
            Ok(Launched {
                spawned,
                chan,
                captures,
                ipc,
                notify,
            }) => {
                inst.on_launched(spawned.pid);
                if let Some((sock, path)) = notify {
                    tokio::task::spawn_local(super::ready::serve_own_notify(
                        self.clone(),
                        id,
                        spawned.pid,
                        sock,
                        path,
                    ));
                }
                for c in captures {
                    tokio::task::spawn_local(capture::pump(c.pipe, c.encoder, c.files));
                }
                match ipc.map(super::ready::ipc) {
                    Some(Ok(chan)) => {
                        inst.ipc = Some(chan.clone());
                        tokio::task::spawn_local(super::ready::read_node_ipc(
                            self.clone(),
                            id,
                            spawned.pid,
                            chan,
                        ));
                    }
                    Some(Err(e)) => crate::daemon::log(format_args!(
                        "{} [{id}] cannot watch its IPC channel: {e}",
                        inst.app.name
                    )),
                    None => {}
                }
                if let (Some(ends), Some(plane)) = (chan, inst.plane.clone()) {
                    let mut slot = Slot::new(id, spawned.pid, ends.proto, ends.ours);
                    match (ends.fast, ends.peer) {
                        (Some(fast), Some(peer)) => slot = slot.with_fast_channel(fast, peer),
                        (None, Some(peer)) => slot = slot.with_peer(peer),
                        _ => {}
                    }
                    if let Some(page) = ends.counters {
                        slot = slot.with_counters(page);
                    }
                    let slot = Arc::new(slot);
                    slot.set_wait_ready(inst.app.wait_ready);
                    plane.pool.add(slot.clone());
                    inst.slot = Some(slot.clone());
                    match spawned.pidfd.try_clone() {
                        Ok(exited) => {
                            tokio::task::spawn_local(channel::serve(slot, plane, exited));
                        }
                        // Out of descriptors: this worker cannot be served
                        // safely; its exit (now) is handled as a crash.
                        Err(e) => {
                            crate::daemon::log(format_args!(
                                "{} [{id}] cannot watch its channel ({e}): stopped",
                                inst.app.name
                            ));
                            plane.pool.remove(&slot);
                            let _ = process::kill_group(spawned.pid, libc::SIGKILL);
                        }
                    }
                }
                crate::daemon::log(format_args!(
                    "{} [{id}] online, pid {}",
                    inst.app.name, spawned.pid
                ));
                if let Some(cap) = inst.app.max_memory_restart {
                    let every = Duration::from_millis(inst.app.memory_check_ms);
                    tokio::task::spawn_local(self.clone().watch_memory(
                        id,
                        spawned.pid,
                        cap,
                        every,
                    ));
                }
                if inst.app.wait_ready {
                    let limit = Duration::from_millis(inst.app.listen_timeout_ms);
                    tokio::task::spawn_local(self.clone().warn_if_not_ready(
                        id,
                        spawned.pid,
                        limit,
                    ));
                }
                drop(table);
                self.bump();
                tokio::task::spawn_local(self.clone().watch_exit(id, spawned));
                Ok(())
            }
            Err(e) => {
                inst.status = Status::Errored;
                inst.last_error = Some(e.to_string());
                crate::daemon::log(format_args!(
                    "{} [{id}] failed to launch: {e}",
                    inst.app.name
                ));
                drop(table);
                self.bump();
                Err(e)
            }
        }
    }

    /// `wait_ready`: says in the daemon log (and `herd show` says `ready:
    /// false`) when the app has not signalled within `listen_timeout`. The
    /// instance keeps running and joins the rotation whenever it does.
    async fn warn_if_not_ready(self: Rc<Self>, id: u32, pid: i32, limit: Duration) {
        tokio::time::sleep(limit).await;
        let table = self.table.borrow();
        let Some(inst) = table.instances.get(&id).filter(|i| i.pid == Some(pid)) else {
            return;
        };
        if !inst.is_ready() && inst.status == Status::Online {
            crate::daemon::log(format_args!(
                "{} [{id}] pid {pid} has not said it is ready after {} ms (wait_ready: process.send('ready') or READY=1 on NOTIFY_SOCKET); it gets no connections until it does",
                inst.app.name,
                limit.as_millis()
            ));
        }
    }

    /// Waits for the process to exit (pidfd readable), reaps it, and applies
    /// the state machine's decision.
    async fn watch_exit(self: Rc<Self>, id: u32, spawned: Spawned) {
        let Spawned { pid, pidfd } = spawned;
        let _ = process::pidfd_exited(pidfd).await;
        // pidfd readable means exited; the loop only guards the fallback path
        // where the pidfd could not be registered.
        let status = loop {
            match process::try_reap(pid) {
                Ok(Some(s)) => break s,
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => break ExitStatus::Code(-1),
            }
        };
        self.on_exit(id, pid, status);
    }

    /// Samples the RSS of the instance's process tree every `every` and
    /// restarts it when it exceeds `cap`. Ends with the process.
    async fn watch_memory(self: Rc<Self>, id: u32, pid: i32, cap: u64, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            {
                let table = self.table.borrow();
                match table.instances.get(&id) {
                    Some(i) if i.pid == Some(pid) && i.status == Status::Online => {}
                    _ => return,
                }
            }
            let rss = super::procstat::tree_rss(pid);
            if rss <= cap {
                continue;
            }
            {
                let mut table = self.table.borrow_mut();
                let Some(inst) = table.instances.get_mut(&id) else {
                    return;
                };
                inst.memory_restarts += 1;
                inst.last_memory_rss = Some(rss);
                crate::daemon::log(format_args!(
                    "{} [{id}] pid {pid} uses {} MiB (cap {} MiB): restarting (memory restart #{})",
                    inst.app.name,
                    rss >> 20,
                    cap >> 20,
                    inst.memory_restarts
                ));
            }
            // Cluster apps: a replacement first, as a reload does, so the
            // instance keeps serving; if that fails, a plain restart.
            let cluster = self
                .table
                .borrow()
                .instances
                .get(&id)
                .is_some_and(|i| i.app.exec_mode == ExecMode::Cluster);
            if cluster {
                self.reload(&[id], 1).await;
            }
            let still_old = self
                .table
                .borrow()
                .instances
                .get(&id)
                .is_some_and(|i| i.pid == Some(pid));
            if still_old {
                self.restart(&[id]).await;
            }
            return;
        }
    }

    fn on_exit(self: &Rc<Self>, id: u32, pid: i32, status: ExitStatus) {
        // Whatever the app left in its process group goes with it.
        let _ = process::kill_group(pid, libc::SIGKILL);
        let mut table = self.table.borrow_mut();
        let Some(inst) = table.instances.get_mut(&id).filter(|i| i.pid == Some(pid)) else {
            return;
        };
        // Connections it never read go to the other workers.
        if let (Some(slot), Some(plane)) = (inst.slot.take(), &inst.plane) {
            plane.pool.remove(&slot);
        }
        let after = inst.on_exit(status, Instant::now());
        crate::daemon::log(format_args!(
            "{} [{id}] pid {pid} exited ({status}), now {}",
            inst.app.name,
            inst.status.pm2_name()
        ));
        let generation = inst.generation;
        drop(table);
        self.bump();
        if let AfterExit::RestartIn(delay) = after {
            let this = self.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(delay).await;
                this.restart_due(id, generation);
            });
        }
    }

    fn restart_due(self: &Rc<Self>, id: u32, generation: u64) {
        {
            let mut table = self.table.borrow_mut();
            let Some(inst) = table.instances.get_mut(&id) else {
                return;
            };
            if inst.status != Status::WaitingRestart || inst.generation != generation {
                return; // stopped or deleted meanwhile
            }
            inst.restarts += 1;
            inst.status = Status::Launching;
        }
        let _ = self.launch_instance(id);
    }

    /// Stops `ids`: SIGINT to each process group, SIGKILL after the app's
    /// kill_timeout; returns once none of them is still stopping.
    pub async fn stop(self: &Rc<Self>, ids: &[u32]) {
        let mut waiting = Vec::new();
        {
            let mut table = self.table.borrow_mut();
            for id in ids {
                let Some(inst) = table.instances.get_mut(id) else {
                    continue;
                };
                match inst.begin_stop() {
                    StopAction::Signal(pid) => {
                        ask_to_stop(pid, &inst.app, inst.ipc.as_ref(), inst.slot.as_deref());
                        let timeout = Duration::from_millis(inst.app.kill_timeout_ms);
                        let generation = inst.generation;
                        let this = self.clone();
                        let id = *id;
                        tokio::task::spawn_local(async move {
                            tokio::time::sleep(timeout).await;
                            this.kill_if_still_stopping(id, pid, generation);
                        });
                        waiting.push(id);
                    }
                    StopAction::InProgress => waiting.push(*id),
                    StopAction::AlreadyStopped => {}
                }
            }
        }
        self.bump();
        self.wait_until(|t| {
            waiting.iter().all(|id| {
                t.instances
                    .get(id)
                    .is_none_or(|i| i.status != Status::Stopping)
            })
        })
        .await;
    }

    fn kill_if_still_stopping(&self, id: u32, pid: i32, generation: u64) {
        let table = self.table.borrow();
        if let Some(inst) = table.instances.get(&id) {
            if inst.status == Status::Stopping
                && inst.generation == generation
                && inst.pid == Some(pid)
            {
                crate::daemon::log(format_args!(
                    "{} [{id}] pid {pid} ignored SIGINT for {} ms, sending SIGKILL",
                    inst.app.name, inst.app.kill_timeout_ms
                ));
                let _ = process::kill_group(pid, libc::SIGKILL);
            }
        }
    }

    async fn wait_until(&self, mut done: impl FnMut(&Table) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            if done(&self.table.borrow()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops then starts `ids` again (not zero-downtime; that is `reload`).
    /// An instance the user stops meanwhile stays stopped, and one that a
    /// concurrent restart (watch and cron at once, two `herd restart`s)
    /// already started again is left to it rather than launched twice.
    pub async fn restart(self: &Rc<Self>, ids: &[u32]) -> Vec<String> {
        self.stop(ids).await;
        let mut notes = Vec::new();
        for &id in ids {
            if self.auto.borrow().is_held(id) {
                continue;
            }
            {
                let mut table = self.table.borrow_mut();
                let Some(inst) = table.instances.get_mut(&id) else {
                    continue;
                };
                if inst.status.is_running() {
                    continue;
                }
                inst.restarts += 1;
                inst.unstable_restarts = 0;
                inst.status = Status::Launching;
            }
            if let Err(e) = self.launch_instance(id) {
                notes.push(format!("instance {id} failed to start: {e}"));
            }
        }
        notes
    }

    /// Rolling reload of `ids`, replacement first:
    /// the replacement starts (a reuseport instance gets a new listener in
    /// the group; a shared one the same listener), and only once it is ready
    /// does the old process leave: fdpass takes it out of the rotation and
    /// asks it to finish (herd `S` / Node `disconnect`); other modes stop
    /// it (SIGINT, or `shutdown` with `shutdown_with_message`). It gets
    /// `kill_timeout` to go, then SIGKILL. A replacement that is not ready
    /// within `listen_timeout` is killed and the old process keeps serving;
    /// the result has one line per such instance. Fork-mode instances (the
    /// app binds its own port) are restarted, as PM2 does.
    /// `parallel` instances are replaced at a time (`herd reload --parallel
    /// N`; 1 is one after the other).
    pub async fn reload(self: &Rc<Self>, ids: &[u32], parallel: usize) -> Vec<String> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let mut failed = Vec::new();
        for batch in ids.chunks(parallel.max(1)) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|&id| {
                    let this = self.clone();
                    tokio::task::spawn_local(async move { this.reload_one(id).await })
                })
                .collect();
            for t in tasks {
                failed.extend(t.await.ok().flatten());
            }
        }
        failed
    }

    /// The reuseport/tcp_migrate_req note, when it applies to `ids`.
    pub fn reuseport_note(&self, ids: &[u32]) -> Option<String> {
        let table = self.table.borrow();
        let reuseport = ids
            .iter()
            .filter_map(|id| table.instances.get(id))
            .any(|i| i.app.mode == Mode::Reuseport && i.app.exec_mode == ExecMode::Cluster);
        (reuseport && reuseport::migrate_req() == Some(false))
            .then(|| reuseport::MIGRATE_NOTE.to_string())
    }

    /// `--update-env`: the instances run with `env` as their inherited
    /// environment from their next start on.
    pub fn update_env(&self, ids: &[u32], env: BTreeMap<String, String>) {
        let mut table = self.table.borrow_mut();
        for id in ids {
            if let Some(inst) = table.instances.get_mut(id) {
                let mut app = (*inst.app).clone();
                app.base_env = env.clone();
                inst.app = Arc::new(app);
            }
        }
    }

    async fn reload_one(self: &Rc<Self>, id: u32) -> Option<String> {
        let old = {
            let table = self.table.borrow();
            table
                .instances
                .get(&id)
                .and_then(|i| match (i.status, i.pid) {
                    (Status::Online, Some(pid)) => Some(Previous {
                        pid,
                        slot: i.slot.clone(),
                        listener: i.listener.clone(),
                        ipc: i.ipc.clone(),
                        app: i.app.clone(),
                        port: i.port,
                    }),
                    _ => None,
                })
        };
        // Fork mode (PM2 too): the app binds its own port, so a second copy
        // could not start next to the first; reload is a restart.
        let Some(old) = old.filter(|o| o.slot.is_some() || o.listener.is_some()) else {
            return self.restart(&[id]).await.into_iter().next();
        };
        let app = old.app.clone();
        if let (ExecMode::Cluster, Mode::Reuseport, Some(port)) =
            (app.exec_mode, app.mode, old.port)
        {
            // The old listener stays in the group (and keeps its queue)
            // until the old process has stopped.
            match reuseport::join_group(&app.host, port) {
                Ok(l) => self.set_listener(id, Some(Arc::new(l))),
                Err(e) => {
                    return Some(format!(
                        "instance {id}: no listener for a replacement ({e}); the old process keeps serving"
                    ))
                }
            }
        }
        let before = self.table.borrow().instances.get(&id).and_then(|i| i.pid);
        if let Err(e) = self.launch_instance(id) {
            self.restore(id, &old, before);
            return Some(format!(
                "instance {id}: the replacement did not start ({e}); the old process keeps serving"
            ));
        }
        let new_pid = {
            let mut table = self.table.borrow_mut();
            match table.instances.get_mut(&id) {
                Some(inst) => {
                    inst.restarts += 1;
                    inst.pid
                }
                None => None, // deleted meanwhile: `restore` stops the old one
            }
        };
        // A warm-up (fdpass `warmup`) comes on top of getting ready.
        let ready_timeout = Duration::from_millis(app.listen_timeout_ms + app.plane.warmup_ms);
        if !self.replacement_ready(id, new_pid, ready_timeout).await {
            if let Some(pid) = new_pid {
                let _ = process::kill_group(pid, libc::SIGKILL);
            }
            self.restore(id, &old, new_pid);
            return Some(format!(
                "instance {id}: the replacement was not ready within {} ms (listen_timeout); it was stopped and the old process keeps serving",
                ready_timeout.as_millis()
            ));
        }
        let Previous {
            pid: old_pid,
            slot,
            listener,
            ipc,
            ..
        } = old;
        // Our copy of a reuseport listener goes now: the old process holds
        // the last one, so the socket leaves the group when it exits.
        drop(listener);
        hand_over(old_pid, &app, slot.as_ref(), ipc.as_ref()).await;
        None
    }

    fn set_listener(&self, id: u32, listener: Option<Arc<socket2::Socket>>) {
        if let Some(inst) = self.table.borrow_mut().instances.get_mut(&id) {
            inst.listener = listener;
        }
    }

    /// Waits until the reload's replacement `pid` of `id` is ready: an
    /// fdpass slot in rotation; a signal (Node preload `listening`,
    /// `process.send('ready')`, `READY=1`); or, for an app that sends none
    /// and is not asked to (`wait_ready` off, not a Node server), up for
    /// `min_uptime`. False if it dies or the time runs out.
    async fn replacement_ready(&self, id: u32, pid: Option<i32>, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let table = self.table.borrow();
                let Some(inst) = table.instances.get(&id) else {
                    return false;
                };
                if inst.pid != pid || inst.status != Status::Online {
                    return false;
                }
                match &inst.slot {
                    Some(s) if s.is_active() => return true,
                    Some(s) if s.is_dead() => return false,
                    Some(_) => {}
                    None if inst.ready => return true,
                    None => {
                        let signals = inst.app.wait_ready
                            || (inst.listener.is_some() && launch::is_node_app(inst));
                        let stable = inst.app.min_uptime_ms.min(limit.as_millis() as u64);
                        if !signals && inst.uptime_ms() >= stable {
                            return true;
                        }
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Whether `pid` is still instance `id`'s process.
    pub fn is_current(&self, id: u32, pid: i32) -> bool {
        self.table
            .borrow()
            .instances
            .get(&id)
            .is_some_and(|i| i.pid == Some(pid))
    }

    /// A readiness signal from process `pid` of instance `id`.
    pub fn on_signal(&self, id: u32, pid: i32, signal: super::ready::Signal) {
        let mut table = self.table.borrow_mut();
        let Some(inst) = table.instances.get_mut(&id).filter(|i| i.pid == Some(pid)) else {
            return;
        };
        if inst.ready || (inst.app.wait_ready && signal != super::ready::Signal::Ready) {
            return;
        }
        inst.ready = true;
        drop(table);
        self.bump();
    }

    /// `READY=1` on the notify socket from `pid`: the instance whose
    /// process is `pid` or one of its ancestors.
    pub fn on_notify_ready(&self, pid: i32) {
        let owner = {
            let table = self.table.borrow();
            let mut p = pid;
            let mut found = None;
            for _ in 0..16 {
                if let Some(i) = table.instances.values().find(|i| i.pid == Some(p)) {
                    found = Some((i.id, p));
                    break;
                }
                match super::procstat::parent(p) {
                    Some(pp) if pp > 1 => p = pp,
                    _ => break,
                }
            }
            found
        };
        if let Some((id, p)) = owner {
            self.on_signal(id, p, super::ready::Signal::Ready);
        }
    }

    /// Puts the previous process back as the instance's own (failed
    /// reload). If the instance was deleted or taken over meanwhile (scale
    /// down, delete, stop), the previous process is stopped instead: no
    /// process may outlive its place in the table.
    fn restore(&self, id: u32, old: &Previous, replacement: Option<i32>) {
        let restored = match self.table.borrow_mut().instances.get_mut(&id) {
            // Only if the slot is still the reload's: a stop, delete or
            // automatic restart meanwhile owns the instance now.
            Some(inst) if inst.pid == replacement || inst.pid.is_none() => {
                inst.pid = Some(old.pid);
                inst.slot = old.slot.clone();
                inst.listener = old.listener.clone();
                inst.ipc = old.ipc.clone();
                inst.ready = true;
                inst.status = Status::Online;
                inst.generation += 1;
                true
            }
            _ => false,
        };
        if !restored {
            if let Some(slot) = &old.slot {
                slot.set_inactive();
            }
            ask_to_stop(old.pid, &old.app, old.ipc.as_ref(), old.slot.as_deref());
            let (pid, limit) = (old.pid, Duration::from_millis(old.app.kill_timeout_ms));
            tokio::task::spawn_local(wait_gone_or_kill(pid, limit));
        }
        self.bump();
    }

    /// Lets instances leaving for good (scale down) finish what they have,
    /// as a reload does with its old process ([`hand_over`]).
    async fn retire(&self, ids: &[u32]) {
        let mut leaving = Vec::new();
        {
            let mut table = self.table.borrow_mut();
            for id in ids {
                let Some(i) = table.instances.get_mut(id) else {
                    continue;
                };
                let Some(pid) = i.pid.filter(|_| i.status == Status::Online) else {
                    continue;
                };
                // Stopping: its exit is not a crash to restart.
                i.status = Status::Stopping;
                i.generation += 1;
                leaving.push((pid, i.app.clone(), i.slot.clone(), i.ipc.clone()));
            }
        }
        self.bump();
        let tasks: Vec<_> = leaving
            .into_iter()
            .map(|(pid, app, slot, ipc)| {
                tokio::task::spawn_local(async move {
                    hand_over(pid, &app, slot.as_ref(), ipc.as_ref()).await
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Stops `ids` and removes them (their listeners close; an app left
    /// without instances loses its watcher and cron task).
    pub async fn delete(self: &Rc<Self>, ids: &[u32]) -> Vec<InstanceInfo> {
        self.stop(ids).await;
        let infos = self.info(ids);
        let mut table = self.table.borrow_mut();
        for id in ids {
            table.instances.remove(id);
        }
        drop(table);
        self.auto.borrow_mut().release(ids);
        self.sync_auto(&hooks::app_names(&infos));
        self.bump();
        infos
    }

    /// Sets the number of instances of app `name` to `target` (at least 1).
    /// New instances start like the existing ones (same spec, same port or
    /// data plane). Removal takes the highest indexes out of rotation
    /// first, then stops and deletes them. Returns the ids added or removed.
    pub async fn scale(
        self: &Rc<Self>,
        name: &str,
        target: u32,
    ) -> Result<(Vec<u32>, Vec<u32>), Error> {
        if target == 0 {
            return Err(refuse(
                "cannot scale to 0 instances",
                format!("`herd stop {name}` stops the app"),
            ));
        }
        let current: Vec<(u32, u32)> = {
            let table = self.table.borrow();
            let mut v: Vec<(u32, u32)> = table
                .instances
                .values()
                .filter(|i| i.app.name == name)
                .map(|i| (i.index, i.id))
                .collect();
            v.sort();
            v
        };
        let Some(&(_, first_id)) = current.first() else {
            return Err(refuse(
                format!("no app named `{name}`"),
                "see `herd list` for names",
            ));
        };
        let n = current.len() as u32;
        if target < n {
            let gone: Vec<u32> = current[target as usize..]
                .iter()
                .map(|&(_, id)| id)
                .collect();
            // Not in the middle of a reload: it would replace what leaves.
            let _no_reload = self.reload_lock.lock().await;
            self.retire(&gone).await;
            self.delete(&gone).await;
            self.set_app_instances(name, target);
            return Ok((Vec::new(), gone));
        }
        let (app, plane, shared, port) = {
            let table = self.table.borrow();
            let f = &table.instances[&first_id];
            let shared = (f.app.mode == Mode::Shared)
                .then(|| f.listener.clone())
                .flatten();
            (f.app.clone(), f.plane.clone(), shared, f.port)
        };
        let mut added = Vec::new();
        for index in n..target {
            let listener = match (&app.exec_mode, app.mode, port) {
                (ExecMode::Cluster, Mode::Reuseport, Some(port)) => Some(Arc::new(
                    reuseport::join_group(&app.host, port)
                        .map_err(|e| refuse(e.to_string(), "free the port"))?,
                )),
                (ExecMode::Cluster, Mode::Shared, _) => shared.clone(),
                _ => None,
            };
            let id = {
                let mut table = self.table.borrow_mut();
                let id = table.next_id;
                table.next_id += 1;
                let mut inst = self.new_instance(id, &app, index, target, listener);
                inst.plane = plane.clone();
                table.instances.insert(id, inst);
                id
            };
            if let Err(e) = self.launch_instance(id) {
                crate::daemon::log(format_args!(
                    "{name} [{id}] failed to start while scaling: {e}"
                ));
            }
            added.push(id);
        }
        self.set_app_instances(name, target);
        self.sync_auto(&[name.to_string()]);
        Ok((added, Vec::new()))
    }

    fn set_app_instances(&self, name: &str, n: u32) {
        let mut table = self.table.borrow_mut();
        for i in table.instances.values_mut().filter(|i| i.app.name == name) {
            i.app_instances = n;
        }
    }

    /// Zeroes the restart counters of `ids` (PM2's `reset`).
    pub fn reset(&self, ids: &[u32]) {
        let mut table = self.table.borrow_mut();
        for id in ids {
            if let Some(i) = table.instances.get_mut(id) {
                i.restarts = 0;
                i.unstable_restarts = 0;
                i.memory_restarts = 0;
                i.last_memory_rss = None;
                i.backoff_ms = 0;
            }
        }
        drop(table);
        self.bump();
    }

    /// The log files `ids` write, each once.
    pub fn log_paths(&self, ids: &[u32]) -> Vec<std::path::PathBuf> {
        let table = self.table.borrow();
        let mut paths: Vec<std::path::PathBuf> = ids
            .iter()
            .filter_map(|id| table.instances.get(id))
            .flat_map(|i| i.log_paths().map(std::path::Path::to_path_buf))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Snapshots of `ids`, with CPU and memory sampled now.
    pub fn info(&self, ids: &[u32]) -> Vec<InstanceInfo> {
        let mut table = self.table.borrow_mut();
        let auto = self.auto.borrow();
        ids.iter()
            .filter_map(|id| {
                table
                    .instances
                    .get_mut(id)
                    .map(|i| to_info(i, &self.log_files))
            })
            .map(|mut i| {
                auto.describe(&mut i);
                i
            })
            .collect()
    }
}

/// The process a reload replaces, kept until its replacement is ready.
struct Previous {
    pid: i32,
    slot: Option<Arc<Slot>>,
    listener: Option<Arc<socket2::Socket>>,
    ipc: Option<super::ready::Ipc>,
    app: Arc<AppSpec>,
    port: Option<u16>,
}

/// How long a leaving Node worker answers with `Connection: close` before
/// its servers close (keep-alive clients move on between two requests).
const NODE_DRAIN: Duration = Duration::from_millis(300);

/// Takes a leaving process (a reload's old process, a scaled-down instance)
/// out of service without cutting a request, then makes sure it exits:
/// * fdpass: out of the rotation first; a herd worker gets `S` (it answers
///   what is in flight with `Connection: close` and exits); a Node worker
///   gets the preload's drain, then Node's own `disconnect`;
/// * reuseport/shared Node apps: drain, then the preload closes the servers
///   and reports when their requests are done;
/// * then SIGINT (or `shutdown`), and SIGKILL after `kill_timeout`.
async fn hand_over(
    pid: i32,
    app: &AppSpec,
    slot: Option<&Arc<Slot>>,
    ipc: Option<&super::ready::Ipc>,
) {
    use super::ready::preload;
    use crate::accept::pool::SlotProto;
    let kill_timeout = Duration::from_millis(app.kill_timeout_ms);
    let drain = NODE_DRAIN.min(kill_timeout / 2);
    match (slot, ipc) {
        (Some(slot), _) => {
            slot.set_inactive();
            match slot.proto {
                SlotProto::Herd => {
                    let _ = slot.send_raw(&crate::fdpass::herd::Msg::Stop.encode());
                }
                SlotProto::Node => {
                    let _ = slot.send_raw(preload::DRAIN);
                    if wait_gone(pid, drain).await {
                        return;
                    }
                    let _ = slot.send_raw(&crate::fdpass::node::disconnect());
                }
            }
            if wait_gone(pid, kill_timeout).await {
                return;
            }
        }
        (None, Some(chan)) if app.exec_mode == ExecMode::Cluster => {
            let _ = super::ready::send_raw(chan, preload::DRAIN);
            if wait_gone(pid, drain).await {
                return;
            }
            if super::ready::send_raw(chan, preload::CLOSE).is_ok() {
                let _ = tokio::time::timeout(kill_timeout, chan.closed.notified()).await;
            }
        }
        _ => {}
    }
    ask_to_stop(pid, app, ipc, slot.map(|s| &**s));
    wait_gone_or_kill(pid, kill_timeout).await;
}

/// Asks process group `pid` to stop: the IPC message `shutdown` when the app
/// wants it (`shutdown_with_message`) and has a channel, else SIGINT.
fn ask_to_stop(pid: i32, app: &AppSpec, ipc: Option<&super::ready::Ipc>, slot: Option<&Slot>) {
    if app.shutdown_with_message {
        let msg = serde_json::Value::from("shutdown");
        let sent = match (ipc, slot) {
            (Some(chan), _) => super::ready::send(chan, &msg).is_ok(),
            (None, Some(slot)) if slot.proto == crate::accept::pool::SlotProto::Node => {
                slot.send_raw(&crate::fdpass::node::message(&msg)).is_ok()
            }
            _ => false,
        };
        if sent {
            return;
        }
    }
    let _ = process::kill_group(pid, libc::SIGINT);
}

/// Waits until `pid` has exited (a zombie counts), at most `limit`: on a
/// pidfd, which becomes readable at the exit, so nothing polls `/proc`.
/// `true`: gone.
async fn wait_gone(pid: i32, limit: Duration) -> bool {
    match process::pidfd_open(pid) {
        Ok(pidfd) => exited_within(&pidfd, limit).await,
        // No such process (or no pidfd: an old kernel): judge by /proc.
        Err(_) => !process::alive(pid),
    }
}

async fn exited_within(pidfd: &std::os::fd::OwnedFd, limit: Duration) -> bool {
    match pidfd.try_clone() {
        Ok(dup) => tokio::time::timeout(limit, process::pidfd_exited(dup))
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// [`wait_gone`], then SIGKILL to the process group if it still runs. The
/// pidfd is held throughout, and the kill goes only while it says the
/// process has not exited: a live process keeps its pid, so the signal
/// cannot reach another process that was given the same pid.
async fn wait_gone_or_kill(pid: i32, limit: Duration) {
    let Ok(pidfd) = process::pidfd_open(pid) else {
        return; // gone already
    };
    if !exited_within(&pidfd, limit).await && !process::pidfd_has_exited(&pidfd) {
        let _ = process::kill_group(pid, libc::SIGKILL);
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn to_info(inst: &mut Instance, files: &LogFiles) -> InstanceInfo {
    let (cpu_percent, memory_bytes) = match (inst.status.is_running(), inst.pid) {
        (true, Some(pid)) => inst.stats.sample(pid),
        _ => (0.0, 0),
    };
    let deaths = inst
        .plane
        .as_ref()
        .map(|p| p.pool.deaths(inst.id))
        .unwrap_or_default();
    let (mut log_dropped_bytes, mut log_error) = (0, None);
    for path in inst.log_paths() {
        if let Some(f) = files.find(path) {
            let f = f.borrow();
            log_dropped_bytes += f.dropped();
            log_error = log_error.or_else(|| f.error().map(str::to_string));
        }
    }
    let app = &inst.app;
    let (exec, interpreter) = match &app.interpreter {
        Some(i) => (i.clone(), Some(i.clone())),
        None => (app.script.to_string_lossy().into_owned(), None),
    };
    InstanceInfo {
        id: inst.id,
        name: app.name.clone(),
        instance: inst.index,
        exec_mode: app.exec_mode.as_str().into(),
        distribution: match (app.exec_mode, &inst.plane, &inst.listener) {
            (ExecMode::Cluster, Some(_), _) => "fdpass",
            (ExecMode::Cluster, None, Some(_)) => app.mode.as_str(),
            _ => "none",
        }
        .into(),
        io: inst.plane.as_ref().map(|p| p.describe_io()),
        policy: inst
            .plane
            .as_ref()
            .map(|p| p.pool.policy().as_str().to_string()),
        acceptors: inst.plane.as_ref().map(|p| p.acceptor_count()),
        dispatched: inst
            .slot
            .as_ref()
            .map_or(0, |s| s.dispatched.load(Ordering::Relaxed)),
        saved_on_death: deaths.saved,
        lost_started: deaths.lost_started,
        in_flight: inst.slot.as_ref().map_or(0, |s| s.load()),
        channel: inst.slot.as_ref().map(|s| s.channel_kind().into()),
        in_rotation: inst.slot.as_ref().is_some_and(|s| s.is_active()),
        left_out_slow: inst.slot.as_ref().is_some_and(|s| s.is_left_out_slow()),
        status: inst.status,
        pid: inst.pid.filter(|_| inst.status.is_running()),
        core: inst.core,
        port: inst.port.or_else(|| {
            inst.plane
                .as_ref()
                .and_then(|p| p.local_addr())
                .map(|a| a.port())
        }),
        host: inst.port.map(|_| app.host.clone()).or_else(|| {
            inst.plane
                .as_ref()
                .and_then(|p| p.local_addr())
                .map(|a| a.ip().to_string())
        }),
        restarts: inst.restarts,
        unstable_restarts: inst.unstable_restarts,
        created_at_ms: epoch_ms(inst.created_at),
        started_at_ms: inst.started.map(|(t, _)| epoch_ms(t)),
        uptime_ms: inst.uptime_ms(),
        cpu_percent,
        memory_bytes,
        last_exit: inst.last_exit,
        last_error: inst.last_error.clone(),
        script: app.script.to_string_lossy().into_owned(),
        exec,
        interpreter,
        interpreter_args: app.interpreter_args.clone(),
        args: app.args.clone(),
        cwd: app.cwd.to_string_lossy().into_owned(),
        env: app.env.clone(),
        inherited_env: app.base_env.len(),
        autorestart: app.autorestart,
        kill_timeout_ms: app.kill_timeout_ms,
        min_uptime_ms: app.min_uptime_ms,
        max_memory_restart: app.max_memory_restart,
        memory_restarts: inst.memory_restarts,
        last_memory_rss: inst.last_memory_rss,
        max_restarts: app.max_restarts,
        restart_delay_ms: app.restart_delay_ms,
        instances: inst.app_instances,
        config_file: app.config_file.as_ref().map(|p| p.display().to_string()),
        pending_config: app.pending.clone(),
        stop_exit_codes: app.stop_exit_codes.clone(),
        out_log: inst.out_log.to_string_lossy().into_owned(),
        err_log: inst.err_log.to_string_lossy().into_owned(),
        combined_log: inst
            .combined_log
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        log_format: match (&app.logs.date_format, app.logs.json) {
            (_, true) => "json",
            (Some(_), false) => "time",
            (None, false) => "plain",
        }
        .into(),
        log_date_format: app.logs.date_format.clone(),
        log_max_size: app.logs.max_size,
        log_retain: app.logs.rotation().map_or(0, |r| r.retain),
        log_dropped_bytes,
        log_error,
        ready: inst.is_ready(),
        wait_ready: app.wait_ready,
        shutdown_with_message: app.shutdown_with_message,
        watch: app
            .watch
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        ignore_watch: app.ignore_watch.clone(),
        watch_delay_ms: (!app.watch.is_empty()).then_some(app.watch_delay_ms),
        watching: false,
        watch_error: None,
        cron_restart: app.cron_restart.clone(),
        cron_next_ms: None,
    }
}

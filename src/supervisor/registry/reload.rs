//! `herd reload`: zero-downtime replacement, replacement first; the old
//! process stays until the new one is ready, and comes back if it never is.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::hand_over::{ask_to_stop, hand_over, wait_gone_or_kill};
use super::Supervisor;
use crate::accept::pool::Slot;
use crate::accept::{activation, reuseport, Mode};
use crate::config::{AppSpec, ExecMode};
use crate::supervisor::{launch, ready, RestartReason, Running, Status};
use crate::sys::process;

impl Supervisor {
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
    pub async fn reload(self: &Rc<Self>, ids: &[u32], parallel: usize) -> Reloaded {
        let _one_at_a_time = self.reload_lock.lock().await;
        let mut done = Reloaded::default();
        for batch in ids.chunks(parallel.max(1)) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|&id| {
                    let this = self.clone();
                    tokio::task::spawn_local(async move { this.reload_one(id).await })
                })
                .collect();
            for t in tasks {
                match t.await {
                    Ok(Ok(Some(w))) => done.warnings.push(w),
                    Ok(Err(f)) => done.failed.push(f),
                    _ => {}
                }
            }
        }
        done
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

    /// A memory restart's replacement of `id`'s process `pid`: as one
    /// instance of a reload, without waiting for other instances' reloads
    /// (each over its cap goes now). If a replacement of `id` is under way
    /// already, it waits for that one and replaces `pid` only if it is
    /// still the instance's.
    pub(super) async fn replace_now(self: &Rc<Self>, id: u32, pid: i32) {
        while self.replacing.borrow().contains(&id) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.is_current(id, pid) {
            let _ = self.reload_one(id).await;
        }
    }

    /// Replaces `id`: `Ok` with a warning or none, `Err` with why the old
    /// process keeps serving. One replacement of an instance at a time: a
    /// second one while the first runs does nothing.
    async fn reload_one(self: &Rc<Self>, id: u32) -> Result<Option<String>, String> {
        let Some(_replacing) = Replacing::take(&self.replacing, id) else {
            return Ok(None);
        };
        self.reload_one_now(id).await
    }

    async fn reload_one_now(self: &Rc<Self>, id: u32) -> Result<Option<String>, String> {
        let old = {
            let table = self.table.borrow();
            table
                .instances
                .get(&id)
                .and_then(|i| match (i.status, i.pid()) {
                    (Status::Online, Some(pid)) => Some(Previous {
                        pid,
                        pidfd: i.running.as_ref().and_then(|r| r.pidfd.clone()),
                        slot: i.slot().cloned(),
                        listener: i.listener.clone(),
                        ipc: i.ipc().cloned(),
                        app: i.app.clone(),
                        port: i.port,
                    }),
                    _ => None,
                })
        };
        // Fork mode (PM2 too): the app binds its own port, so a second copy
        // could not start next to the first; reload is a restart.
        let Some(old) = old.filter(|o| {
            o.slot.is_some() || o.listener.is_some() || crate::config::binds_own_reuseport(&o.app)
        }) else {
            return match self.restart(&[id]).await.into_iter().next() {
                Some(f) => Err(f),
                None => Ok(None),
            };
        };
        let app = old.app.clone();
        if let (ExecMode::Cluster, Mode::Reuseport, Some(port), false) = (
            app.exec_mode,
            app.mode,
            old.port,
            crate::config::binds_own_reuseport(&app),
        ) {
            // The old listener stays in the group (and keeps its queue)
            // until the old process has stopped. A kept (systemd) listener
            // is the replacement's too: it must stay accepted on.
            match activation::join(&app.host, port, old.listener.as_ref()) {
                Ok(l) => self.set_listener(id, Some(l)),
                Err(e) => {
                    return Err(format!(
                        "instance {id}: no listener for a replacement ({e}); the old process keeps serving"
                    ))
                }
            }
        }
        let before = self.table.borrow().instances.get(&id).and_then(|i| i.pid());
        if let Err(e) = self.launch_instance(id) {
            self.restore(id, &old, before);
            return Err(format!(
                "instance {id}: the replacement did not start ({e}); the old process keeps serving"
            ));
        }
        let new_pid = {
            let mut table = self.table.borrow_mut();
            match table.instances.get_mut(&id) {
                Some(inst) => {
                    inst.count_restart(RestartReason::Reload);
                    inst.pid()
                }
                None => None, // deleted meanwhile: `restore` stops the old one
            }
        };
        // A warm-up (fdpass `warmup`) comes on top of getting ready.
        let ready_timeout = Duration::from_millis(app.listen_timeout_ms + app.plane.warmup_ms);
        let mut note = None;
        match self.replacement_ready(id, new_pid, ready_timeout).await {
            Replacement::Ready => {}
            // PM2's rule: a replacement still alive at listen_timeout is
            // kept and the old process goes, with a warning. herd's rule
            // (`listen_timeout_keeps_old`), like a crash: the old one stays.
            Replacement::Late if !app.listen_timeout_keeps_old => {
                note = Some(format!(
                    "warning: instance {id}: the replacement was not ready within {} ms (listen_timeout); kept it and stopped the old process, as PM2 does (`listen_timeout_keeps_old` keeps the old one instead)",
                    ready_timeout.as_millis()
                ));
                log::info!(
                    "{} [{id}] {}",
                    app.name,
                    note.as_deref().unwrap_or_default()
                );
            }
            Replacement::Late | Replacement::Gone => {
                if let Some(pid) = new_pid {
                    let _ = process::kill_group(pid, libc::SIGKILL);
                }
                self.restore(id, &old, new_pid);
                return Err(format!(
                    "instance {id}: the replacement was not ready within {} ms (listen_timeout); it was stopped and the old process keeps serving",
                    ready_timeout.as_millis()
                ));
            }
        }
        let Previous {
            pid: old_pid,
            pidfd,
            slot,
            listener,
            ipc,
            ..
        } = old;
        // Our copy of a reuseport listener goes now: the old process holds
        // the last one, so the socket leaves the group when it exits.
        drop(listener);
        hand_over(old_pid, pidfd, &app, slot.as_ref(), ipc.as_ref()).await;
        Ok(note)
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
    /// `min_uptime`. [`Replacement::Gone`] if it dies (or its channel
    /// does), [`Replacement::Late`] if it still runs when the time is out.
    async fn replacement_ready(&self, id: u32, pid: Option<i32>, limit: Duration) -> Replacement {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let table = self.table.borrow();
                let Some(inst) = table.instances.get(&id) else {
                    return Replacement::Gone;
                };
                if inst.pid() != pid || inst.status != Status::Online {
                    return Replacement::Gone;
                }
                match inst.slot() {
                    Some(s) if s.is_active() => return Replacement::Ready,
                    Some(s) if s.is_dead() => return Replacement::Gone,
                    Some(_) => {}
                    None if inst.is_ready() => return Replacement::Ready,
                    None => {
                        let signals = inst.app.wait_ready
                            || (inst.listener.is_some() && launch::is_node_app(inst));
                        let stable = inst.app.min_uptime_ms.min(limit.as_millis() as u64);
                        if !signals && inst.uptime_ms() >= stable {
                            return Replacement::Ready;
                        }
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return Replacement::Late;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
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
            Some(inst) if inst.pid() == replacement || inst.pid().is_none() => {
                inst.running = Some(Running {
                    pid: old.pid,
                    pidfd: old.pidfd.clone(),
                    slot: old.slot.clone(),
                    ipc: old.ipc.clone(),
                    ready: true,
                });
                inst.listener = old.listener.clone();
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
            tokio::task::spawn_local(wait_gone_or_kill(pid, old.pidfd.clone(), limit));
        }
        self.bump();
    }
}

/// What a reload did: per instance, why its old process keeps serving
/// (`failed`), or a warning (a late replacement kept, PM2's rule).
#[derive(Debug, Default)]
pub struct Reloaded {
    /// One line per instance whose replacement did not take over.
    pub failed: Vec<String>,
    /// One line per instance replaced with a warning.
    pub warnings: Vec<String>,
}

/// How a reload's replacement came through its `listen_timeout`.
enum Replacement {
    /// Ready to serve.
    Ready,
    /// Died, or its instance was taken over meanwhile.
    Gone,
    /// Still running, not ready.
    Late,
}

/// The process a reload replaces, kept until its replacement is ready.
struct Previous {
    pid: i32,
    pidfd: Option<Arc<std::os::fd::OwnedFd>>,
    slot: Option<Arc<Slot>>,
    listener: Option<Arc<socket2::Socket>>,
    ipc: Option<ready::Ipc>,
    app: Arc<AppSpec>,
    port: Option<u16>,
}

/// An instance's mark in [`Supervisor`]'s `replacing` set while its
/// replacement runs; the mark goes with the guard, however the replacement
/// ends (a task dropped mid-way too, or the instance would never be
/// replaced again).
struct Replacing<'a> {
    set: &'a std::cell::RefCell<std::collections::BTreeSet<u32>>,
    id: u32,
}

impl<'a> Replacing<'a> {
    /// Marks `id`; `None` if it is marked already.
    fn take(set: &'a std::cell::RefCell<std::collections::BTreeSet<u32>>, id: u32) -> Option<Self> {
        set.borrow_mut().insert(id).then_some(Replacing { set, id })
    }
}

impl Drop for Replacing<'_> {
    fn drop(&mut self) {
        self.set.borrow_mut().remove(&self.id);
    }
}

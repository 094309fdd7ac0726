//! `herd start`: PM2's name rules, `-i` against the usable CPUs, the
//! listeners or data plane of a cluster app, and new instances.

use std::rc::Rc;
use std::sync::Arc;

use super::{refuse, Started, Supervisor};
use crate::accept::{activation, reuseport, DataPlane, Mode};
use crate::config::{AppSpec, ExecMode};
use crate::error::Error;
use crate::protocol::OnExisting;
use crate::supervisor::{Instance, Status};

impl Supervisor {
    /// Starts an app, or the stopped instances of an app already known.
    /// Returns the ids involved and notes for the user.
    pub fn start_app(
        self: &Rc<Self>,
        spec: AppSpec,
        force: bool,
        existing: OnExisting,
    ) -> Result<Started, Error> {
        self.start_app_with(spec, force, existing, None, &[])
    }

    /// [`Supervisor::start_app`], except that a new app gets `count`
    /// instances (fork mode included) when given, and its instances at the
    /// positions in `stopped` are created stopped, as `herd stop` leaves
    /// them, and never launched (resurrect).
    pub(super) fn start_app_with(
        self: &Rc<Self>,
        spec: AppSpec,
        force: bool,
        existing: OnExisting,
        count: Option<u32>,
        stopped: &[u32],
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
        // Fork mode with `instances: N` (or `-x -i N`) starts N plain
        // processes, as PM2 does.
        let n = match count {
            Some(n) => n.max(1),
            None => spec.instances.resolve(self.max_instances),
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
                (Mode::Reuseport, Some(_)) if crate::config::binds_own_reuseport(&spec) => {}
                (Mode::Reuseport, Some(port)) => {
                    listeners = activation::reuseport_group(&spec.host, port, n as usize)
                        .map_err(bind_refusal)?
                        .into_iter()
                        .map(Some)
                        .collect();
                }
                (Mode::Shared, Some(port)) => {
                    let one = activation::one(&spec.host, port, spec.plane.backlog)
                        .map_err(bind_refusal)?;
                    listeners = vec![Some(one); n as usize];
                }
                (Mode::Fdpass, port) => {
                    let p =
                        DataPlane::new(
                            spec.plane.clone(),
                            self.cpus.clone(),
                            spec.host.clone(),
                            self.app_metrics(&spec.name),
                        )
                            .map_err(|e| {
                                refuse(
                                    e,
                                    "fix or unset HERD_IO / HERD_CORK / HERD_RING_SEND / HERD_KEEP_COPIES / HERD_REPLAY / HERD_DEFER_ACCEPT, or use --mode reuseport",
                                )
                            })?;
                    // An incremented PORT: instance 0's (the base) is the port
                    // herd dispatches, whichever instance listens first.
                    let base = (spec.increment_var.as_deref() == Some("PORT"))
                        .then(|| {
                            spec.env
                                .get("PORT")
                                .and_then(|p| p.trim().parse::<u16>().ok())
                        })
                        .flatten()
                        .filter(|&p| p > 0);
                    if let Some(port) = port.or(base) {
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
                    if stopped.contains(&index) {
                        inst.status = Status::Stopped;
                    }
                    table.instances.insert(id, inst);
                    id
                })
                .collect()
        };
        let held: Vec<u32> = (ids.iter().enumerate())
            .filter(|&(k, _)| stopped.contains(&(k as u32)))
            .map(|(_, &id)| id)
            .collect();
        self.auto.borrow_mut().hold(&held);
        let mut notes = Vec::new();
        let mut tried = false;
        for &id in &ids {
            if held.contains(&id) {
                continue;
            }
            let first = !std::mem::replace(&mut tried, true);
            if let Err(e) = self.launch_instance(id) {
                if first {
                    // Nothing of this app ran: forget it, report the cause.
                    let mut table = self.table.borrow_mut();
                    for id in &ids {
                        table.instances.remove(id);
                    }
                    drop(table);
                    self.auto.borrow_mut().release(&held);
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
            if matches!(existing, OnExisting::Update | OnExisting::Reload) {
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
            OnExisting::Update | OnExisting::Reload => restart = running,
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

    pub(super) fn new_instance(
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
}

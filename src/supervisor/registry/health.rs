//! What `/readyz` and `herd run` judge by: per app, how many instances are
//! wanted, running, online and ready, and errored.

use tokio::sync::watch;

use super::Supervisor;
use crate::supervisor::{Instance, Status};

/// One app's state, as the health endpoint and `herd run` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHealth {
    /// The app's name.
    pub name: String,
    /// Its instances.
    pub instances: u32,
    /// Instances meant to run: all but the stopped ones (stopped by the
    /// user, or exited with autorestart off).
    pub wanted: u32,
    /// Online and ready: in the rotation (fdpass apps), said so
    /// (`wait_ready` apps), else online (as PM2 counts an app up).
    pub ready: u32,
    /// Crashed past `max_restarts`.
    pub errored: u32,
    /// Running, starting or stopping, or waiting for a restart.
    pub alive: u32,
}

impl AppHealth {
    /// Every wanted instance is online and ready.
    pub fn is_ready(&self) -> bool {
        self.wanted > 0 && self.ready == self.wanted
    }
}

/// Whether an online instance counts as ready: an fdpass worker with a
/// port once in the rotation, a `wait_ready` app once it said so, any other at once.
fn serves(inst: &Instance) -> bool {
    let Some(r) = &inst.running else {
        return false;
    };
    // A cluster app without a port has a slot but nothing to serve. An
    // fdpass instance has no listener of its own: its port is the app's,
    // or the plane's once bound.
    let has_port = inst.bound_port().is_some() || inst.app.port.is_some();
    if (r.slot.is_some() && has_port) || inst.app.wait_ready {
        inst.is_ready()
    } else {
        true
    }
}

impl Supervisor {
    /// Each app's health, in the order of its first instance.
    pub fn health(&self) -> Vec<AppHealth> {
        let table = self.table.borrow();
        let mut apps: Vec<AppHealth> = Vec::new();
        for inst in table.instances.values() {
            let pos = match apps.iter().position(|a| a.name == inst.app.name) {
                Some(p) => p,
                None => {
                    apps.push(AppHealth {
                        name: inst.app.name.clone(),
                        instances: 0,
                        wanted: 0,
                        ready: 0,
                        errored: 0,
                        alive: 0,
                    });
                    apps.len() - 1
                }
            };
            let a = &mut apps[pos];
            a.instances += 1;
            if inst.status != Status::Stopped {
                a.wanted += 1;
            }
            if inst.status == Status::Online && serves(inst) {
                a.ready += 1;
            }
            if inst.status == Status::Errored {
                a.errored += 1;
            }
            if inst.status.is_running() || inst.status == Status::WaitingRestart {
                a.alive += 1;
            }
        }
        apps
    }

    /// A receiver that changes whenever the table does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::pool::{Slot, Wire};
    use crate::protocol::{AppSpec, ExecMode};
    use crate::sys::fdpass::{socketpair, PairKind};
    use std::sync::Arc;

    /// An online fdpass instance (a slot, no listener of its own) of an
    /// app on `port`, and its slot.
    fn fdpass_instance(port: Option<u16>) -> (Instance, Arc<Slot>) {
        let mut app = AppSpec::new("t".into(), "/bin/true".into(), "/".into());
        app.exec_mode = ExecMode::Cluster;
        app.port = port;
        app.pin = false;
        let mut inst = Instance::new(0, Arc::new(app), 0, 1, None, None, "/nonexistent".as_ref());
        inst.on_launched(10);
        let (ours, _theirs) = socketpair(PairKind::SeqPacket).unwrap();
        let slot = Arc::new(Slot::new(0, 10, ours, Wire::herd(None, None)));
        inst.running.as_mut().unwrap().slot = Some(slot.clone());
        (inst, slot)
    }

    /// `/readyz` counts an fdpass worker on a port only once it is in the
    /// rotation (it used to count it as soon as its process started: the
    /// instance has no listener of its own, so it looked port-less).
    #[test]
    fn an_fdpass_worker_on_a_port_is_ready_only_in_the_rotation() {
        let (inst, slot) = fdpass_instance(Some(8080));
        assert!(!serves(&inst), "online but not yet in the rotation");
        slot.set_ready();
        assert!(serves(&inst));
        slot.set_inactive();
        assert!(!serves(&inst), "out of the rotation again");
    }

    #[test]
    fn a_cluster_worker_with_no_port_is_ready_once_online() {
        let (inst, _slot) = fdpass_instance(None);
        assert!(serves(&inst));
    }
}

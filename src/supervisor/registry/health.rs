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
    // A cluster app without a port has a slot but nothing to serve.
    if (r.slot.is_some() && inst.port.is_some()) || inst.app.wait_ready {
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

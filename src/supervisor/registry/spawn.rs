//! Bringing an instance's process up: the fork itself (argv, env, log
//! captures) is `supervisor/launch.rs` over `sys/spawn.rs`; this wires what
//! it returns into the table and starts the tasks that watch it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::Supervisor;
use crate::accept::channel;
use crate::accept::pool::Slot;
use crate::logs::capture;
use crate::supervisor::launch::{self, Launched};
use crate::supervisor::{ready, Status};
use crate::sys::process;

impl Supervisor {
    /// Forks the instance's process and starts watching it.
    pub(super) fn launch_instance(self: &Rc<Self>, id: u32) -> std::io::Result<()> {
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
                let pidfd = spawned.pidfd.try_clone().ok().map(Arc::new);
                let running = inst.running.as_mut().expect("just launched");
                running.pidfd = pidfd;
                if let Some((sock, path)) = notify {
                    tokio::task::spawn_local(ready::serve_own_notify(
                        self.clone(),
                        id,
                        spawned.pid,
                        sock,
                        path,
                    ));
                }
                for c in captures {
                    tokio::task::spawn_local(capture::pump(c.pipe, c.encoder, c.files, c.console));
                }
                match ipc.map(ready::ipc) {
                    Some(Ok(chan)) => {
                        running.ipc = Some(chan.clone());
                        tokio::task::spawn_local(ready::read_node_ipc(
                            self.clone(),
                            id,
                            spawned.pid,
                            chan,
                        ));
                    }
                    Some(Err(e)) => {
                        log::info!("{} [{id}] cannot watch its IPC channel: {e}", inst.app.name)
                    }
                    None => {}
                }
                if let (Some(ends), Some(plane)) = (chan, inst.plane.clone()) {
                    let slot = Arc::new(Slot::new(id, spawned.pid, ends.ours, ends.wire));
                    plane.pool.add(slot.clone());
                    if let Some(r) = inst.running.as_mut() {
                        r.slot = Some(slot.clone());
                    }
                    match spawned.pidfd.try_clone() {
                        Ok(exited) => {
                            tokio::task::spawn_local(channel::serve(slot, plane, exited));
                        }
                        // Out of descriptors: this worker cannot be served
                        // safely; its exit (now) is handled as a crash.
                        Err(e) => {
                            log::info!(
                                "{} [{id}] cannot watch its channel ({e}): stopped",
                                inst.app.name
                            );
                            plane.pool.remove(&slot);
                            let _ = process::kill_group(spawned.pid, libc::SIGKILL);
                        }
                    }
                }
                log::info!("{} [{id}] online, pid {}", inst.app.name, spawned.pid);
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
                log::info!("{} [{id}] failed to launch: {e}", inst.app.name);
                drop(table);
                self.bump();
                Err(e)
            }
        }
    }
}

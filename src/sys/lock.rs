//! The daemon's single-instance lock: an `flock` on `$HERD_HOME/herd.lock`.
//! The kernel drops it when the daemon dies, however it dies, which is what
//! makes a stale pid/socket file safe to replace.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Holds the lock for as long as it lives.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
}

/// Takes the exclusive lock without waiting. `Ok(None)` means another
/// process holds it.
pub fn try_lock(path: &Path) -> io::Result<Option<LockFile>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    // SAFETY: the fd is valid for the duration of the call (owned by `file`).
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(LockFile { _file: file }));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(err)
    }
}

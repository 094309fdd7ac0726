//! `$HERD_HOME`: where a daemon keeps its socket, pid, lock and logs.
//! Default `~/.herd`, like PM2's `~/.pm2`. Everything under it is per user,
//! so the directory is kept at mode 0700.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The paths of one herd home.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$HERD_HOME`, else `$HOME/.herd`.
    pub fn from_env() -> io::Result<Home> {
        if let Some(h) = std::env::var_os("HERD_HOME").filter(|h| !h.is_empty()) {
            return Ok(Home::at(PathBuf::from(h)));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "neither HERD_HOME nor HOME is set")
            })?;
        Ok(Home::at(PathBuf::from(home).join(".herd")))
    }

    /// A home at an explicit path (tests, `herd bench`).
    pub fn at(root: PathBuf) -> Home {
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|d| d.join(&root))
                .unwrap_or(root)
        };
        Home { root }
    }

    /// Creates the directory tree (0700) if needed.
    pub fn ensure(&self) -> io::Result<()> {
        std::fs::create_dir_all(self.logs())?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The control socket.
    pub fn sock(&self) -> PathBuf {
        self.root.join("herd.sock")
    }
    /// The daemon's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("herd.pid")
    }
    /// The single-daemon lock.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("herd.lock")
    }
    /// The sd_notify datagram socket (`NOTIFY_SOCKET` of every app).
    pub fn notify_sock(&self) -> PathBuf {
        self.root.join("notify.sock")
    }
    /// Per-process sd_notify sockets (`notify/<id>.<n>.sock`).
    pub fn notify_dir(&self) -> PathBuf {
        self.root.join("notify")
    }
    /// The daemon's own log.
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("herd.log")
    }
    /// Per-instance app logs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The saved process list (`herd save`, `herd resurrect`).
    pub fn dump_file(&self) -> PathBuf {
        self.root.join("dump.json")
    }
    /// The dump before the last save.
    pub fn dump_bak(&self) -> PathBuf {
        self.root.join("dump.json.bak")
    }
    /// Where the Node preload script is written.
    pub fn node_preload(&self) -> PathBuf {
        self.root.join("node").join("herd-listen.js")
    }

    /// The pid recorded in the pid file, if any.
    pub fn read_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Writes `data` to `path` atomically: temp file, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Writes `data` to `path` so that a crash at any moment leaves either the
/// old file or the new one, whole: a temp file (mode 0600) beside it,
/// fsync, rename over `path`, fsync of the directory (so the rename itself
/// survives a power cut). With `backup`, the file being replaced is kept
/// there first (a hard link, so `path` never goes missing meanwhile).
pub fn write_durable(path: &Path, data: &[u8], backup: Option<&Path>) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(bak) = backup.filter(|_| path.exists()) {
        match std::fs::remove_file(bak) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if std::fs::hard_link(path, bak).is_err() {
            // A file system without hard links: a copy does the same.
            std::fs::copy(path, bak)?;
        }
    }
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

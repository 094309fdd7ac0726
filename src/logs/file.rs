//! A log file the daemon appends to, shared by every stream that writes it
//! (merged logs, the combined `log_file`, an old and a new process during a
//! reload), so rotation, `herd flush` and `herd reloadLogs` act on one
//! handle. A failing disk is counted, never fatal: bytes that cannot be
//! written are dropped and counted, and the file is reopened at most once a
//! second.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Size-based rotation: when the file reaches `max_size`, it becomes
/// `<file>.1` (older ones shift to `.2` … `.<retain>`; the oldest is
/// deleted) and a new file starts. `retain` 0 truncates in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when the file reaches this many bytes.
    pub max_size: u64,
    /// Rotated files kept.
    pub retain: u32,
}

/// One open log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    rotation: Option<Rotation>,
    /// Bytes that could not be written (disk full, permissions …).
    dropped: u64,
    /// The last write or open error, if the last attempt failed.
    error: Option<String>,
    retry_at: Option<Instant>,
}

const RETRY: Duration = Duration::from_secs(1);

impl LogFile {
    /// Opens (creating it and its directory) `path` for appending. Never
    /// fails: a file that cannot be opened drops what is written to it and
    /// says why in [`LogFile::error`].
    pub fn open(path: &Path, rotation: Option<Rotation>) -> LogFile {
        let mut f = LogFile {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            rotation,
            dropped: 0,
            error: None,
            retry_at: None,
        };
        f.reopen();
        f
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Why the last write failed, while it keeps failing.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Appends `data` (whole lines). With a size limit, the file is rotated
    /// at a line boundary before the line that would cross it (a single
    /// line longer than the limit gets a file of its own).
    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let cut = match self.rotation {
                Some(r) if self.size + data.len() as u64 > r.max_size => {
                    let room = (r.max_size.saturating_sub(self.size) as usize).min(data.len());
                    match memchr::memrchr(b'\n', &data[..room]) {
                        Some(i) => i + 1,
                        // Not even one line fits: rotate first.
                        None if self.size > 0 => 0,
                        // A line longer than the limit, in a fresh file.
                        None => memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1),
                    }
                }
                _ => data.len(),
            };
            self.append(&data[..cut]);
            data = &data[cut..];
            if let Some(r) = self.rotation {
                if !data.is_empty() || self.size >= r.max_size {
                    self.rotate(r);
                    if cut == 0 && self.size > 0 {
                        // Could neither rotate nor truncate: write on.
                        self.append(data);
                        return;
                    }
                }
            }
        }
    }

    fn append(&mut self, data: &[u8]) {
        if self.file.is_none() && self.retry_at.is_none_or(|t| Instant::now() >= t) {
            self.reopen();
        }
        let Some(file) = self.file.as_mut() else {
            self.dropped += data.len() as u64;
            return;
        };
        let mut rest = data;
        while !rest.is_empty() {
            match file.write(rest) {
                Ok(0) => break,
                Ok(n) => {
                    self.size += n as u64;
                    rest = &rest[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(&e);
                    break;
                }
            }
        }
        if rest.is_empty() {
            if self.error.take().is_some() {
                log::info!(
                    "log {}: writing again ({} bytes dropped so far)",
                    self.path.display(),
                    self.dropped
                );
            }
        } else {
            self.dropped += rest.len() as u64;
        }
    }

    fn fail(&mut self, e: &io::Error) {
        let msg = format!("{}: {e}", self.path.display());
        if self.error.as_deref() != Some(&msg) {
            log::info!("log {msg} (dropping output until it works)");
        }
        self.error = Some(msg);
    }

    /// Opens the path again (after an external logrotate moved the file, or
    /// after a failure).
    pub fn reopen(&mut self) {
        let opened = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            });
        match opened {
            Ok(f) => {
                self.size = f.metadata().map_or(0, |m| m.len());
                self.file = Some(f);
                self.retry_at = None;
            }
            Err(e) => {
                self.file = None;
                self.retry_at = Some(Instant::now() + RETRY);
                self.fail(&e);
            }
        }
    }

    /// Empties the file while writers keep writing: the handle is in append
    /// mode, so the next line lands at offset 0.
    pub fn truncate(&mut self) -> io::Result<()> {
        match &self.file {
            Some(f) => f.set_len(0)?,
            None => truncate_path(&self.path)?,
        }
        self.size = 0;
        Ok(())
    }

    /// Changes the size limit (an app restarted with new settings).
    pub fn set_rotation(&mut self, rotation: Option<Rotation>) {
        self.rotation = rotation;
    }

    fn rotate(&mut self, r: Rotation) {
        if r.retain == 0 {
            if let Err(e) = self.truncate() {
                self.fail(&e);
            }
            return;
        }
        if let Err(e) = shift(&self.path, r.retain) {
            self.fail(&e);
            // Could not move it away: keep the size bounded anyway.
            let _ = self.truncate();
            return;
        }
        self.reopen();
    }
}

/// Moves `path` to `path.1`, after `.1` … `.retain-1` to `.2` … `.retain`
/// (the oldest is deleted). `retain` is at least 1. Fails only when `path`
/// itself could not be moved.
pub fn shift(path: &Path, retain: u32) -> io::Result<()> {
    let _ = std::fs::remove_file(rotated(path, retain));
    for k in (1..retain).rev() {
        let _ = std::fs::rename(rotated(path, k), rotated(path, k + 1));
    }
    std::fs::rename(path, rotated(path, 1))
}

/// `app-out.log` → `app-out.log.3`.
pub fn rotated(path: &Path, k: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{k}"));
    PathBuf::from(s)
}

/// Truncates the file at `path` if it exists.
pub fn truncate_path(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => f.set_len(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A shared, open log file.
pub type Shared = Rc<RefCell<LogFile>>;

/// The daemon's open log files by path: streams writing the same path share
/// one [`LogFile`]; it closes when the last stream writing it ends.
#[derive(Debug, Default)]
pub struct LogFiles {
    open: RefCell<HashMap<PathBuf, Weak<RefCell<LogFile>>>>,
    /// `herd run`: app output is also copied to herd's stdout and stderr.
    console: std::cell::Cell<Option<super::capture::ConsoleFormat>>,
}

impl LogFiles {
    /// Copies app output to the console from the next start of each
    /// process on (`herd run`).
    pub fn set_console(&self, format: Option<super::capture::ConsoleFormat>) {
        self.console.set(format);
    }

    /// Whether, and how, app output goes to the console.
    pub fn console(&self) -> Option<super::capture::ConsoleFormat> {
        self.console.get()
    }

    /// The open file at `path`, or a newly opened one.
    pub fn get(&self, path: &Path, rotation: Option<Rotation>) -> Shared {
        let mut open = self.open.borrow_mut();
        if let Some(f) = open.get(path).and_then(Weak::upgrade) {
            f.borrow_mut().set_rotation(rotation);
            return f;
        }
        open.retain(|_, w| w.strong_count() > 0);
        let f = Rc::new(RefCell::new(LogFile::open(path, rotation)));
        open.insert(path.to_path_buf(), Rc::downgrade(&f));
        f
    }

    /// The file at `path` if a stream writes it now.
    pub fn find(&self, path: &Path) -> Option<Shared> {
        self.open.borrow().get(path).and_then(Weak::upgrade)
    }

    /// Truncates `path`, through its open handle if it has one.
    pub fn truncate(&self, path: &Path) -> io::Result<()> {
        match self.find(path) {
            Some(f) => f.borrow_mut().truncate(),
            None => truncate_path(path),
        }
    }

    /// Reopens every open file (`herd reloadLogs`); returns how many.
    pub fn reopen_all(&self) -> usize {
        let files: Vec<Shared> = self
            .open
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for f in &files {
            f.borrow_mut().reopen();
        }
        files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("herd-logfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rotation_keeps_retain_files_of_bounded_size() {
        let d = tmp("rotate");
        let p = d.join("a.log");
        let mut f = LogFile::open(
            &p,
            Some(Rotation {
                max_size: 100,
                retain: 3,
            }),
        );
        let line = [b'x'; 39];
        for i in 0..40u8 {
            let mut l = line.to_vec();
            l[0] = b'a' + (i % 26);
            l.push(b'\n');
            f.write(&l);
        }
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.log", "a.log.1", "a.log.2", "a.log.3"]);
        for n in &names {
            let len = std::fs::metadata(d.join(n)).unwrap().len();
            assert!(len <= 100, "{n}: {len}");
        }
        // Newest last: a.log.1 holds the lines just before a.log's.
        let one = std::fs::read_to_string(d.join("a.log.1")).unwrap();
        assert_eq!(one.len(), 80);
        assert_eq!(f.dropped(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn truncate_while_writing_and_shared_handles() {
        let d = tmp("shared");
        let p = d.join("b.log");
        let files = LogFiles::default();
        let a = files.get(&p, None);
        let b = files.get(&p, None);
        assert!(Rc::ptr_eq(&a, &b));
        a.borrow_mut().write(b"one\n");
        b.borrow_mut().write(b"two\n");
        files.truncate(&p).unwrap();
        a.borrow_mut().write(b"three\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three\n");
        // After an external rename, reopen starts a new file at the path.
        std::fs::rename(&p, d.join("moved")).unwrap();
        assert_eq!(files.reopen_all(), 1);
        b.borrow_mut().write(b"four\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "four\n");
        drop((a, b));
        assert!(files.find(&p).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn unwritable_path_counts_dropped_bytes() {
        let d = tmp("fail");
        std::fs::write(d.join("file"), b"").unwrap();
        // A path below a regular file can never be opened.
        let mut f = LogFile::open(&d.join("file").join("x.log"), None);
        f.write(b"lost line\n");
        assert_eq!(f.dropped(), 10);
        assert!(f.error().is_some());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn full_disk_is_counted_not_fatal() {
        // /dev/full fails every write with ENOSPC.
        if !Path::new("/dev/full").exists() {
            crate::testing::skip("devfull", "no /dev/full on this machine");
            return;
        }
        let mut f = LogFile::open(Path::new("/dev/full"), None);
        f.write(b"abc\n");
        f.write(b"de\n");
        assert_eq!(f.dropped(), 7);
        assert!(f.error().unwrap().contains("No space"), "{:?}", f.error());
    }
}

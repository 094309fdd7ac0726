//! The daemon's sink for the `log` facade: the rest of herd logs with
//! `log::info!` and knows nothing of where the lines go. The daemon installs
//! this sink at start: one timestamped line per record on its stderr, which
//! is `$HERD_HOME/herd.log` when it runs in the background; that file
//! rotates once it has grown past its limit.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{rotate_daemon_log, utc_timestamp, DAEMON_LOG_MAX_SIZE};

struct DaemonLog {
    /// The log file behind stderr (background only: nothing rotates in the
    /// foreground).
    path: Option<PathBuf>,
    /// Rotate past this many bytes (`HERD_DAEMON_LOG_MAX_SIZE`, read once).
    max: u64,
    /// About how big the file is: what it had at start plus what we wrote.
    /// Only once this passes `max` is the file itself looked at (something
    /// else may have written, or `herd flush` emptied it).
    size: AtomicU64,
}

impl log::Log for DaemonLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {}\n", utc_timestamp(SystemTime::now()), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        let Some(path) = &self.path else { return };
        let size = self.size.fetch_add(line.len() as u64, Ordering::Relaxed) + line.len() as u64;
        if size < self.max {
            return;
        }
        let actual = std::fs::metadata(path).map_or(0, |m| m.len());
        if actual >= self.max {
            rotate_daemon_log(path);
            self.size.store(0, Ordering::Relaxed);
        } else {
            self.size.store(actual, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

/// Installs the sink (once per process; later calls do nothing). `path`:
/// the log file behind stderr, in the background.
pub fn install(path: Option<PathBuf>) {
    let max = std::env::var("HERD_DAEMON_LOG_MAX_SIZE")
        .ok()
        .and_then(|v| crate::config::parse_size("HERD_DAEMON_LOG_MAX_SIZE", &v).ok())
        .unwrap_or(DAEMON_LOG_MAX_SIZE);
    let size = path
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let sink = Box::new(DaemonLog {
        path,
        max,
        size: AtomicU64::new(size),
    });
    if log::set_boxed_logger(sink).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

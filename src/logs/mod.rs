//! App logs: the daemon reads each process's stdout and stderr from pipes
//! and writes lines to the instance's files ([`capture`]), with PM2's
//! timestamp formats ([`date`]), shared handles that rotate by size and
//! survive a full disk ([`file`]), and tail/follow for `herd logs` ([`tail`]).

pub mod capture;
pub mod date;
pub mod file;
pub mod tail;

pub use crate::protocol::LogSettings;

/// Rotated files kept when `log_max_size` is set and `log_retain` is not.
pub const DEFAULT_RETAIN: u32 = 5;

impl LogSettings {
    /// The rotation these settings ask for, if any.
    pub fn rotation(&self) -> Option<file::Rotation> {
        self.max_size.map(|max_size| file::Rotation {
            max_size,
            retain: self.retain.unwrap_or(DEFAULT_RETAIN),
        })
    }
}

/// Whether a log path means "discard" (PM2: `/dev/null` or `NULL`).
pub fn is_null(path: &std::path::Path) -> bool {
    path == std::path::Path::new("/dev/null") || path == std::path::Path::new("NULL")
}

//! App logs: the daemon reads each process's stdout and stderr from pipes
//! and writes lines to the instance's files ([`capture`]), with PM2's
//! timestamp formats ([`date`]), shared handles that rotate by size and
//! survive a full disk ([`file`]), and tail/follow for `herd logs` ([`tail`]).

pub mod capture;
pub mod date;
pub mod file;
pub mod tail;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Rotated files kept when `log_max_size` is set and `log_retain` is not.
pub const DEFAULT_RETAIN: u32 = 5;

/// An app's log settings beyond its file paths.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogSettings {
    /// `log_file`: stdout and stderr of the app together (per instance
    /// unless `merge_logs`, like `out_file`).
    pub log_file: Option<PathBuf>,
    /// `log_date_format` (day.js tokens; `time: true` gives PM2's
    /// `YYYY-MM-DDTHH:mm:ss`): each line starts with the date and `: `.
    pub date_format: Option<String>,
    /// `log_type: json`: one JSON object per line.
    pub json: bool,
    /// `log_max_size`: rotate a file when it reaches this many bytes.
    pub max_size: Option<u64>,
    /// `log_retain`: rotated files kept (default [`DEFAULT_RETAIN`]).
    pub retain: Option<u32>,
}

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

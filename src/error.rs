//! The library's typed errors. Each knows the input that caused it and, where
//! there is one, a hint; `main` prints `error: …` and `hint: …` and exits 1.

use std::path::PathBuf;

/// Everything that can go wrong between the CLI and the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or argument has a value we cannot use.
    #[error("invalid value `{value}` for {what}: expected {expected}")]
    InvalidArg {
        /// The flag or argument, e.g. `--instances`.
        what: String,
        /// What the user gave.
        value: String,
        /// The accepted form.
        expected: String,
    },
    /// A script to start does not exist.
    #[error("script `{}` not found", path.display())]
    ScriptNotFound {
        /// The path as resolved against the cwd.
        path: PathBuf,
    },
    /// No daemon answers and none could be started.
    #[error("cannot reach the herd daemon at {}: {source}", sock.display())]
    DaemonUnreachable {
        /// The socket path tried.
        sock: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon speaks another protocol version.
    #[error("this herd CLI ({client_version}) speaks protocol {client} but the running daemon ({daemon_version}) speaks protocol {daemon}")]
    VersionMismatch {
        /// Our protocol version.
        client: u32,
        /// Our crate version.
        client_version: String,
        /// The daemon's protocol version.
        daemon: u32,
        /// The daemon's crate version.
        daemon_version: String,
    },
    /// A malformed or unexpected frame.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error("{message}")]
    Remote {
        /// The daemon's one-line message.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// An I/O error with what we were doing.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// A suggestion for the user, printed as `hint: …`.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::InvalidArg { .. } => Some("see `herd help <command>`".into()),
            Error::ScriptNotFound { .. } => {
                Some("check the path; relative paths are resolved against --cwd or the current directory".into())
            }
            Error::DaemonUnreachable { .. } => {
                Some("see the daemon log at $HERD_HOME/herd.log, or run `herd daemon` in the foreground".into())
            }
            Error::VersionMismatch { .. } => Some(
                "stop the old daemon with the herd binary that started it (`herd kill`), then retry".into(),
            ),
            Error::Remote { hint, .. } => hint.clone(),
            Error::Protocol(_) | Error::Io { .. } => None,
        }
    }

    /// Wraps an io::Error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

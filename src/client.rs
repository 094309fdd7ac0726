//! The CLI's side of the control socket: connect (starting a daemon if none
//! runs), handshake, one request → one response. Blocking std I/O: a CLI call
//! is one round trip, and skipping an async runtime keeps `herd list` fast.

use std::io;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::home::Home;
use crate::protocol::frame::{self, MAX_RESPONSE};
use crate::protocol::{Hello, Request, Response, PROTOCOL_VERSION};

/// How long a CLI waits for a daemon it started to answer.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the handshake may take before we call the peer hung.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// A handshaken connection to the daemon.
pub struct Client {
    stream: UnixStream,
    /// The daemon's hello.
    pub daemon: Hello,
}

/// Whether [`connect`] may start a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autostart {
    /// Start one if none answers (PM2 does this for nearly every verb).
    Yes,
    /// Report "not running" instead.
    No,
}

/// Connects to the daemon of `home`, starting it first if allowed.
pub fn connect(home: &Home, autostart: Autostart) -> Result<Client> {
    match UnixStream::connect(home.sock()) {
        Ok(s) => return handshake(s),
        Err(e) if autostart == Autostart::No || !no_daemon(&e) => {
            return Err(Error::DaemonUnreachable {
                sock: home.sock(),
                source: e,
            })
        }
        Err(_) => {}
    }
    let mut child = spawn_daemon(home)?;
    let deadline = Instant::now() + DAEMON_START_TIMEOUT;
    let mut last_err;
    loop {
        match UnixStream::connect(home.sock()) {
            Ok(s) => return handshake(s),
            Err(e) => last_err = e,
        }
        // Our daemon may have exited because another won the lock race; that
        // one will bind soon. A failing daemon leaves its reason in herd.log.
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() {
                return Err(Error::DaemonUnreachable {
                    sock: home.sock(),
                    source: io::Error::other(format!(
                        "the daemon exited with {status}; see {}",
                        home.daemon_log().display()
                    )),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::DaemonUnreachable {
                sock: home.sock(),
                source: last_err,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn no_daemon(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

fn spawn_daemon(home: &Home) -> Result<std::process::Child> {
    home.ensure()
        .map_err(|e| Error::io(format!("cannot create {}", home.root().display()), e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.daemon_log())
        .map_err(|e| Error::io(format!("cannot open {}", home.daemon_log().display()), e))?;
    let log2 = log.try_clone().map_err(|e| Error::io("dup log", e))?;
    let exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find the herd executable", e))?;
    Command::new(exe)
        .args(["daemon", "--background"])
        .env("HERD_HOME", home.root())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| Error::io("cannot start the herd daemon", e))
}

fn handshake(mut stream: UnixStream) -> Result<Client> {
    let io_err = |e| Error::io("talking to the herd daemon", e);
    stream
        .set_read_timeout(Some(HELLO_TIMEOUT))
        .map_err(io_err)?;
    frame::write_sync(&mut stream, &Hello::ours()).map_err(io_err)?;
    let daemon: Hello = frame::read_sync(&mut stream, MAX_RESPONSE)
        .map_err(|e| Error::Protocol(format!("no valid hello from the daemon ({e})")))?;
    if daemon.herd != "herd" {
        return Err(Error::Protocol(
            "the socket's peer is not a herd daemon".into(),
        ));
    }
    if daemon.protocol != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            client: PROTOCOL_VERSION,
            client_version: crate::protocol::HERD_VERSION.into(),
            daemon: daemon.protocol,
            daemon_version: daemon.version,
        });
    }
    stream.set_read_timeout(None).map_err(io_err)?;
    Ok(Client { stream, daemon })
}

impl Client {
    /// Sends one request and returns the answer; `Response::Error` becomes
    /// [`Error::Remote`].
    pub fn request(&mut self, req: &Request) -> Result<Response> {
        frame::write_sync(&mut self.stream, req)
            .map_err(|e| Error::io("sending to the herd daemon", e))?;
        match frame::read_sync::<Response>(&mut self.stream, MAX_RESPONSE) {
            Ok(Response::Error { message, hint }) => Err(Error::Remote { message, hint }),
            Ok(r) => Ok(r),
            Err(e) => Err(Error::Protocol(format!("bad reply from the daemon: {e}"))),
        }
    }
}

/// Connects (autostarting) and sends one request.
pub fn call(req: &Request) -> Result<Response> {
    let home = Home::from_env().map_err(|e| Error::io("locating HERD_HOME", e))?;
    connect(&home, Autostart::Yes)?.request(req)
}

/// The error for a reply of the wrong kind.
pub fn unexpected(resp: &Response) -> Error {
    Error::Protocol(format!("unexpected reply from the daemon: {resp:?}"))
}

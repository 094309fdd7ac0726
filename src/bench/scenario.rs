//! `herd bench --scenario`: how the clients load (a connection per
//! request, keep-alive) and what happens to the server meanwhile — a
//! worker killed with SIGKILL every interval (`crash`), or a rolling
//! reload every interval (`reload`) — and the helper threads that do it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::load::LoadMode;
use crate::config;
use crate::error::{Error, Result};

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Scenario {
    /// How each client uses its connection.
    pub load: LoadMode,
    /// `crash`: a random worker gets SIGKILL this often.
    pub crash: Option<Duration>,
    /// `reload`: the target reloads (rolling, zero-downtime where it can)
    /// this often.
    pub reload: Option<Duration>,
    /// `scale`: the target goes to twice its instances and back, a step
    /// this often.
    pub scale: Option<Duration>,
}

impl Scenario {
    /// Its name in the JSON and in `--check` tables.
    pub fn name(self) -> &'static str {
        match (self.crash, self.reload, self.scale, self.load) {
            (Some(_), _, _, _) => "crash",
            (None, Some(_), _, _) => "reload",
            (None, None, Some(_), _) => "scale",
            (None, None, None, LoadMode::ConnPerRequest) => "conn_per_request",
            (None, None, None, LoadMode::KeepAlive) => "keep_alive",
        }
    }
}

fn interval(flag: &str, value: &str) -> Result<Duration> {
    let ms = config::parse_duration_ms(flag, value)?;
    if ms == 0 {
        return Err(Error::InvalidArg {
            what: flag.into(),
            value: value.into(),
            expected: "an interval of at least 1 ms".into(),
        });
    }
    Ok(Duration::from_millis(ms))
}

/// `--scenario`'s comma list, with the crash and reload intervals.
pub(super) fn parse(
    list: &str,
    crash_every: &str,
    reload_every: &str,
    scale_every: &str,
) -> Result<Vec<Scenario>> {
    let crash = interval("--crash-every", crash_every)?;
    let reload = interval("--reload-every", reload_every)?;
    let scale = interval("--scale-every", scale_every)?;
    let plain = |load| Scenario {
        load,
        crash: None,
        reload: None,
        scale: None,
    };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim) {
        match name {
            "all" => out.extend([plain(LoadMode::ConnPerRequest), plain(LoadMode::KeepAlive)]),
            "close" => out.push(plain(LoadMode::ConnPerRequest)),
            "keepalive" => out.push(plain(LoadMode::KeepAlive)),
            "crash" => out.push(Scenario {
                crash: Some(crash),
                ..plain(LoadMode::ConnPerRequest)
            }),
            "reload" => out.push(Scenario {
                reload: Some(reload),
                ..plain(LoadMode::ConnPerRequest)
            }),
            "scale" => out.push(Scenario {
                scale: Some(scale),
                ..plain(LoadMode::ConnPerRequest)
            }),
            other => {
                return Err(Error::InvalidArg {
                    what: "--scenario".into(),
                    value: other.into(),
                    expected:
                        "a comma list of `close`, `keepalive`, `crash`, `reload`, `scale`, or `all`"
                            .into(),
                })
            }
        }
    }
    Ok(out)
}

/// Kills a random worker of the server whose process tree starts at
/// `root` (never `root` itself: the daemon, primary or master that
/// restarts it) every `every`, until `stop`; returns the kills.
pub(super) fn killer(root: i32, every: Duration, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut kills = 0u64;
        let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(every);
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let workers: Vec<i32> = crate::supervisor::procstat::tree_pids(root)
                .into_iter()
                .filter(|&p| p != root && crate::supervisor::procstat::parent(p) == Some(root))
                .collect();
            if workers.is_empty() {
                continue;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let victim = workers[(seed % workers.len() as u64) as usize];
            if crate::sys::process::kill_pid(victim, libc::SIGKILL).is_ok() {
                kills += 1;
            }
        }
        kills
    })
}

/// How a target reloads: herd's rolling reload, `pm2 reload`, nginx's
/// SIGHUP. `Err` says why one failed.
pub(super) type Reload = super::peers::ReloadFn;

/// How a target changes its instance count (herd's scale, `pm2 scale`).
pub(super) type ScaleFn = super::peers::ScaleFn;

/// Scales with `scale` to `2 × base`, then back to `base`, one step every
/// `every`, until `stop`; returns the steps done and the failures.
pub(super) fn scaler(
    scale: ScaleFn,
    base: u32,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u64, Vec<String>)> {
    let step = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reload: Reload = Arc::new(move || {
        let k = step.fetch_add(1, Ordering::Relaxed);
        scale(if k % 2 == 0 { base * 2 } else { base })
    });
    reloader(reload, every, stop)
}

/// Reloads with `reload` every `every` until `stop` (each reload runs to
/// its end before the next interval starts); returns how many reloads
/// were done and the failures.
pub(super) fn reloader(
    reload: Reload,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut done, mut failed) = (0u64, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(every);
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match reload() {
                Ok(()) => done += 1,
                Err(e) => failed.push(e),
            }
        }
        (done, failed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_intervals() {
        let s = parse("close,crash,reload,scale", "400ms", "2s", "3s").unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["conn_per_request", "crash", "reload", "scale"]);
        assert_eq!(s[1].crash, Some(Duration::from_millis(400)));
        assert_eq!(s[2].reload, Some(Duration::from_secs(2)));
        assert_eq!(s[3].scale, Some(Duration::from_secs(3)));
        assert_eq!(parse("all", "1s", "1s", "1s").unwrap().len(), 2);
        let e = parse("memory", "1s", "1s", "1s").unwrap_err().to_string();
        assert!(e.contains("memory") && e.contains("scale"), "{e}");
        assert!(parse("crash", "0", "1s", "1s").is_err());
    }
}

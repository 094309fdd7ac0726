//! `herd bench --scenario`: how the clients load (a connection per
//! request, keep-alive) and what happens to the server meanwhile — a
//! worker killed with SIGKILL every interval (`crash`), or a rolling
//! reload every interval (`reload`), scaling (`scale`), a leaking app
//! under a memory cap (`memory`) — and the helper threads that do it.

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
    /// `memory`: the app leaks under an RSS cap (the server is started for
    /// it with the leak switched on and the cap set).
    pub memory: Option<Memory>,
    /// `skew`: instance 0 answers this many ms later (the server is
    /// started for it with the delay set).
    pub skew_ms: Option<u64>,
}

/// The memory scenario's leak and cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    /// The RSS cap (herd's and PM2's `max_memory_restart`), in bytes.
    pub cap: u64,
    /// How fast each worker leaks, MB a second: the built-in hello worker's
    /// `HERD_HELLO_LEAK_MB_PER_SEC`, an app's `LEAK_MB_PER_SEC` (as
    /// bench-apps/node/leak.js reads it).
    pub leak_mb_per_s: u32,
}

impl Scenario {
    /// Its name in the JSON and in `--check` tables.
    pub fn name(self) -> &'static str {
        if self.memory.is_some() {
            return "memory";
        }
        if self.skew_ms.is_some() {
            return "skew";
        }
        match (self.crash, self.reload, self.scale, self.load) {
            (Some(_), _, _, _) => "crash",
            (None, Some(_), _, _) => "reload",
            (None, None, Some(_), _) => "scale",
            (None, None, None, LoadMode::ConnPerRequest) => "conn_per_request",
            (None, None, None, LoadMode::KeepAlive) => "keep_alive",
        }
    }
}

/// Why a target without a memory cap skips the memory scenario.
pub(super) const NO_CAP: &str = "no memory cap here";

/// The skew scenario's delay when `--skew-ms` does not say.
pub(super) const DEFAULT_SKEW_MS: u64 = 5;

/// The scenarios grouped by the server start they need: those that share
/// a plain start first, then each skew or memory scenario alone (its
/// server has a slow instance, or leaks under a cap).
pub(super) fn by_server(all: &[Scenario]) -> Vec<Vec<Scenario>> {
    let (own, plain): (Vec<Scenario>, Vec<Scenario>) = all
        .iter()
        .partition(|s| s.memory.is_some() || s.skew_ms.is_some());
    let mut out = Vec::new();
    if !plain.is_empty() {
        out.push(plain);
    }
    out.extend(own.into_iter().map(|m| vec![m]));
    out
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

/// `--scenario`'s comma list, with the intervals, the cap and the leak.
pub(super) fn parse(a: &super::BenchArgs) -> Result<Vec<Scenario>> {
    let crash = interval("--crash-every", &a.crash_every)?;
    let reload = interval("--reload-every", &a.reload_every)?;
    let scale = interval("--scale-every", &a.scale_every)?;
    let cap = config::parse_size("--max-memory", &a.max_memory)?;
    if cap < 1 << 20 || a.leak == 0 {
        return Err(Error::InvalidArg {
            what: "--max-memory/--leak".into(),
            value: format!("{}/{}", a.max_memory, a.leak),
            expected: "a cap of at least 1M and a leak of at least 1 MB/s".into(),
        });
    }
    let memory = Memory {
        cap,
        leak_mb_per_s: a.leak,
    };
    let plain = |load| Scenario {
        load,
        crash: None,
        reload: None,
        scale: None,
        memory: None,
        skew_ms: None,
    };
    let mut out = Vec::new();
    for name in a.scenario.split(',').map(str::trim) {
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
            "memory" => out.push(Scenario {
                memory: Some(memory),
                ..plain(LoadMode::ConnPerRequest)
            }),
            "skew" => out.push(Scenario {
                skew_ms: Some(if a.skew_ms > 0 { a.skew_ms } else { DEFAULT_SKEW_MS }),
                ..plain(LoadMode::ConnPerRequest)
            }),
            other => {
                return Err(Error::InvalidArg {
                    what: "--scenario".into(),
                    value: other.into(),
                    expected:
                        "a comma list of `close`, `keepalive`, `skew`, `crash`, `reload`, `scale`, `memory`, or `all`"
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

/// What the memory scenario saw of the workers' resident memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct MemorySeen {
    /// The largest RSS of one worker, bytes.
    pub peak_rss: u64,
    /// The longest one worker stayed above the cap, from the first sample
    /// that saw it above to the last (or to its end), ms.
    pub longest_over_cap_ms: u64,
    /// Workers that came after the first sample (each replaced one).
    pub replaced: u64,
    /// Samples taken (one every [`WATCH_EVERY`]).
    pub samples: u64,
}

/// How often the memory scenario reads the workers' RSS.
pub(super) const WATCH_EVERY: Duration = Duration::from_millis(10);

/// Reads the RSS of every child of `root` (its workers) every
/// [`WATCH_EVERY`] until `stop`, and says what it saw against `cap`.
pub(super) fn memory_watcher(root: i32, cap: u64, stop: Arc<AtomicBool>) -> JoinHandle<MemorySeen> {
    use std::collections::{BTreeMap, BTreeSet};
    std::thread::spawn(move || {
        let mut seen = MemorySeen::default();
        let mut first: Option<BTreeSet<i32>> = None;
        let mut known = BTreeSet::new();
        // pid → when a sample first saw it above the cap.
        let mut over: BTreeMap<i32, std::time::Instant> = BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            let now = std::time::Instant::now();
            let workers: BTreeSet<i32> = crate::supervisor::procstat::tree_pids(root)
                .into_iter()
                .filter(|&p| p != root && crate::supervisor::procstat::parent(p) == Some(root))
                .collect();
            for &pid in &workers {
                let rss = crate::supervisor::procstat::read(pid).map_or(0, |(_, r)| r);
                seen.peak_rss = seen.peak_rss.max(rss);
                if rss > cap {
                    let since = *over.entry(pid).or_insert(now);
                    let ms = now.duration_since(since).as_millis() as u64;
                    seen.longest_over_cap_ms = seen.longest_over_cap_ms.max(ms);
                } else {
                    over.remove(&pid);
                }
                if known.insert(pid) && first.is_some() {
                    seen.replaced += 1;
                }
            }
            // Gone while above the cap: it was above until about now.
            over.retain(|pid, _| workers.contains(pid));
            first.get_or_insert(workers);
            seen.samples += 1;
            std::thread::sleep(WATCH_EVERY);
        }
        seen
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

    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: crate::bench::BenchArgs,
    }

    fn args(line: &[&str]) -> crate::bench::BenchArgs {
        Cli::parse_from(std::iter::once("bench").chain(line.iter().copied())).bench
    }

    #[test]
    fn lists_and_intervals() {
        let s = parse(&args(&[
            "--scenario",
            "close,crash,reload,scale,memory",
            "--crash-every",
            "400ms",
            "--reload-every",
            "2s",
            "--scale-every",
            "3s",
            "--max-memory",
            "32M",
            "--leak",
            "50",
        ]))
        .unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            ["conn_per_request", "crash", "reload", "scale", "memory"]
        );
        let groups: Vec<Vec<&str>> = by_server(&s)
            .iter()
            .map(|g| g.iter().map(|s| s.name()).collect())
            .collect();
        assert_eq!(
            groups,
            [
                vec!["conn_per_request", "crash", "reload", "scale"],
                vec!["memory"]
            ]
        );
        let skew = parse(&args(&["--scenario", "skew,close"])).unwrap();
        assert_eq!(skew[0].skew_ms, Some(DEFAULT_SKEW_MS));
        assert_eq!(by_server(&skew)[0][0].name(), "conn_per_request");
        let skew = parse(&args(&["--scenario", "skew", "--skew-ms", "9"])).unwrap();
        assert_eq!(skew[0].skew_ms, Some(9));
        assert_eq!(s[1].crash, Some(Duration::from_millis(400)));
        assert_eq!(s[2].reload, Some(Duration::from_secs(2)));
        assert_eq!(s[3].scale, Some(Duration::from_secs(3)));
        let m = s[4].memory.unwrap();
        assert_eq!((m.cap, m.leak_mb_per_s), (32 << 20, 50));
        assert_eq!(parse(&args(&["--scenario", "all"])).unwrap().len(), 2);
        let e = parse(&args(&["--scenario", "swap"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("swap") && e.contains("memory"), "{e}");
        assert!(parse(&args(&["--scenario", "crash", "--crash-every", "0"])).is_err());
        let e = parse(&args(&["--scenario", "memory", "--max-memory", "100K"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-memory") && e.contains("100K"), "{e}");
        assert!(parse(&args(&["--scenario", "memory", "--leak", "0"])).is_err());
    }

    #[test]
    fn the_watcher_sees_a_child_above_the_cap_and_its_replacement() {
        // The test process's children: a sleeping shell (below any cap)
        // and, later, a second one (a replacement).
        let me = std::process::id() as i32;
        let mut a = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // A cap of 1 byte: every child is above it.
        let w = memory_watcher(me, 1, stop.clone());
        std::thread::sleep(Duration::from_millis(150));
        let mut b = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        stop.store(true, Ordering::Relaxed);
        let seen = w.join().unwrap();
        let _ = (a.kill(), b.kill(), a.wait(), b.wait());
        assert!(seen.peak_rss > 0, "{seen:?}");
        assert!(seen.longest_over_cap_ms >= 200, "{seen:?}");
        assert!(seen.replaced >= 1, "{seen:?}");
        assert!(seen.samples >= 10, "{seen:?}");
    }
}

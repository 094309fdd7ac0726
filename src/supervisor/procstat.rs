//! CPU and memory of a running instance, read from `/proc` on demand (when a
//! client lists), so an idle daemon does no periodic work at all.

use std::time::Instant;

/// The previous CPU reading of one process, to turn tick counts into a rate.
#[derive(Debug, Default, Clone)]
pub struct Sampler {
    last: Option<(Instant, u64)>,
    cpu_percent: f64,
}

/// The fields of `/proc/<pid>/stat` after the command (which may contain
/// spaces and parentheses): index 0 is field 3 (state), 1 the parent pid.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The parent pid of `pid`.
pub fn parent(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// A process's CPU ticks (user + system) and resident bytes.
pub fn read(pid: i32) -> Option<(u64, u64)> {
    let f = stat_fields(pid)?;
    // utime is field 14, stime 15, rss 24.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    Some((utime + stime, rss_pages * crate::sys::page_size()))
}

/// The daemon's own figures (Prometheus's `process_*` series).
pub fn own_figures() -> crate::protocol::metrics::DaemonFigures {
    let pid = std::process::id();
    let mut d = crate::protocol::metrics::DaemonFigures {
        pid,
        version: crate::protocol::HERD_VERSION.into(),
        max_fds: crate::sys::max_fds(),
        ..Default::default()
    };
    let ticks = crate::sys::clock_ticks() as f64;
    if let Some(f) = stat_fields(pid as i32) {
        // utime 14, stime 15, num_threads 20, starttime 22, vsize 23, rss 24.
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        d.cpu_seconds = (n(11) + n(12)) as f64 / ticks;
        d.threads = n(17);
        d.virtual_memory_bytes = n(20);
        d.resident_memory_bytes = n(21) * crate::sys::page_size();
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        d.start_time_seconds = btime as f64 + n(19) as f64 / ticks;
    }
    d.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |r| r.count() as u64);
    d
}

impl Sampler {
    /// Samples `pid` now; returns (cpu %, rss bytes, CPU seconds in all).
    /// CPU % is the average since the previous sample (0 on the first).
    pub fn sample(&mut self, pid: i32) -> (f64, u64, f64) {
        let Some((ticks, rss)) = read(pid) else {
            return (0.0, 0, 0.0);
        };
        let seconds = ticks as f64 / crate::sys::clock_ticks() as f64;
        let now = Instant::now();
        if let Some((t0, ticks0)) = self.last {
            let dt = now.duration_since(t0).as_secs_f64();
            // Below ~50 ms the tick granularity (10 ms) makes the rate noise;
            // keep the previous figure.
            if dt >= 0.05 {
                let secs = ticks.saturating_sub(ticks0) as f64 / crate::sys::clock_ticks() as f64;
                self.cpu_percent = (secs / dt * 100.0 * 10.0).round() / 10.0;
                self.last = Some((now, ticks));
            }
        } else {
            self.last = Some((now, ticks));
        }
        (self.cpu_percent, rss, seconds)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        assert_eq!(
            super::parent(std::process::id() as i32),
            Some(std::os::unix::process::parent_id() as i32)
        );
        let (_, rss) = super::read(std::process::id() as i32).unwrap();
        assert!(rss > 100 * 1024, "rss {rss}");
    }
}

/// `pid` and all its descendants (walks `/proc/<p>/task/*/children`;
/// at most 4096, so a fork bomb is not worth walking).
pub fn tree_pids(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if out.len() >= 4096 {
            break;
        }
        out.push(p);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(t.path().join("children")) {
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
    }
    out
}

/// CPU ticks (user + system) of `pid` and its descendants.
pub fn tree_ticks(pid: i32) -> u64 {
    tree_pids(pid)
        .into_iter()
        .filter_map(|p| read(p).map(|(t, _)| t))
        .sum()
}

/// Resident memory of `pid` and all its descendants, in bytes: what
/// `max_memory_restart` caps (an app that forks workers or spawns helpers
/// cannot hide memory in its children).
pub fn tree_rss(pid: i32) -> u64 {
    let page = crate::sys::page_size();
    tree_pids(pid)
        .into_iter()
        .filter_map(|p| {
            let statm = std::fs::read_to_string(format!("/proc/{p}/statm")).ok()?;
            statm.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|rss| rss * page)
        .sum()
}

#[cfg(test)]
mod tree_tests {
    #[test]
    fn tree_includes_children() {
        // A quiet tree (sh and its sleeping child), not this busy test
        // process whose RSS moves while other tests run.
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .unwrap();
        let pid = sh.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let child = loop {
            let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            let child = kids
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<i32>().ok());
            if let Some(c) = child.filter(|&c| super::read(c).is_some_and(|r| r.1 > 0)) {
                break c;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sh never started its child"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let own = super::read(pid).unwrap().1;
        let alone = super::read(child).unwrap().1;
        let tree = super::tree_rss(pid);
        let _ = std::process::Command::new("kill")
            .arg(child.to_string())
            .status();
        let _ = sh.kill();
        let _ = sh.wait();
        assert!(
            tree >= own + alone / 2,
            "tree {tree} own {own} child {alone}"
        );
    }
}

//! What `herd monit` shows, apart from how: the latest list and metrics,
//! each worker's share of its app's work since the previous refresh, the
//! selection, the log pane's lines. Pure state, so it is tested without a
//! terminal.

use std::collections::BTreeMap;

use crate::protocol::metrics::{AppFigures, Snapshot};
use crate::protocol::InstanceInfo;

/// Lines of each log file the pane keeps.
pub const LOG_LINES: usize = 200;

/// See the module doc.
#[derive(Debug, Default)]
pub struct Model {
    /// Every instance, by id.
    pub list: Vec<InstanceInfo>,
    /// The figures.
    pub snap: Snapshot,
    /// Per instance id: work (connections dispatched, else requests
    /// reported) at the previous refresh, and since then.
    prev_work: BTreeMap<u32, u64>,
    /// The same, since the previous refresh.
    pub recent: BTreeMap<u32, u64>,
    /// Index into `list` of the selected instance.
    pub selected: usize,
    /// Log lines (out, then err marked), oldest first.
    pub logs: Vec<(bool, String)>,
    /// Lines scrolled back from the newest.
    pub scroll: usize,
    /// The last thing an action said.
    pub message: Option<String>,
}

impl Model {
    /// Takes a new list and snapshot.
    pub fn refresh(&mut self, list: Vec<InstanceInfo>, snap: Snapshot) {
        let selected_id = self.selected_instance().map(|i| i.id);
        let mut recent = BTreeMap::new();
        let mut work = BTreeMap::new();
        for i in &snap.instances {
            let w = if i.dispatched > 0 {
                i.dispatched
            } else {
                i.requests
            };
            if let Some(p) = self.prev_work.get(&i.id) {
                recent.insert(i.id, w.saturating_sub(*p));
            }
            work.insert(i.id, w);
        }
        self.prev_work = work;
        self.recent = recent;
        self.list = list;
        self.snap = snap;
        // Keep the same instance selected when ids come and go.
        self.selected = selected_id
            .and_then(|id| self.list.iter().position(|i| i.id == id))
            .unwrap_or(self.selected)
            .min(self.list.len().saturating_sub(1));
    }

    /// The selected instance.
    pub fn selected_instance(&self) -> Option<&InstanceInfo> {
        self.list.get(self.selected)
    }

    /// The selected instance's app figures.
    pub fn selected_app(&self) -> Option<&AppFigures> {
        let name = &self.selected_instance()?.name;
        self.snap.apps.iter().find(|a| &a.name == name)
    }

    /// Moves the selection by `by` (clamped).
    pub fn select(&mut self, by: isize) {
        if self.list.is_empty() {
            return;
        }
        let max = self.list.len() as isize - 1;
        let before = self.selected;
        self.selected = (self.selected as isize + by).clamp(0, max) as usize;
        if before != self.selected {
            self.scroll = 0;
        }
    }

    /// Scrolls the log pane back (`by` > 0) or forward.
    pub fn scroll_logs(&mut self, by: isize) {
        let max = self.logs.len().saturating_sub(1) as isize;
        self.scroll = (self.scroll as isize + by).clamp(0, max) as usize;
    }

    /// Each instance of the selected app with its share (0..1) of the
    /// app's work since the previous refresh (of all its work when none
    /// came since): (id, index, share, count).
    pub fn shares(&self) -> Vec<(u32, u32, f64, u64)> {
        match self.selected_app() {
            Some(app) => self.shares_of(&app.name),
            None => Vec::new(),
        }
    }

    /// [`Self::shares`] of app `name`.
    pub fn shares_of(&self, name: &str) -> Vec<(u32, u32, f64, u64)> {
        let of_app: Vec<_> = self
            .snap
            .instances
            .iter()
            .filter(|i| i.app == name)
            .collect();
        let recent: Vec<u64> = of_app
            .iter()
            .map(|i| self.recent.get(&i.id).copied().unwrap_or(0))
            .collect();
        let counts: Vec<u64> = if recent.iter().sum::<u64>() > 0 {
            recent
        } else {
            of_app
                .iter()
                .map(|i| self.prev_work.get(&i.id).copied().unwrap_or(0))
                .collect()
        };
        let total: u64 = counts.iter().sum();
        of_app
            .iter()
            .zip(counts)
            .map(|(i, c)| {
                let share = if total == 0 {
                    0.0
                } else {
                    c as f64 / total as f64
                };
                (i.id, i.instance, share, c)
            })
            .collect()
    }
}

/// The last `n` lines of `path` (reads at most its last 64 KiB).
pub fn tail(path: &str, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let from = len.saturating_sub(64 * 1024);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(64 * 1024).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0); // cut in the middle
    }
    let skip = lines.len().saturating_sub(n);
    lines[skip..]
        .iter()
        .map(|l| l.replace('\t', "    "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::metrics::InstanceFigures;

    fn figures(id: u32, app: &str, dispatched: u64) -> InstanceFigures {
        InstanceFigures {
            id,
            app: app.into(),
            instance: id,
            pid: Some(100 + id as i32),
            status: "online".into(),
            dispatched,
            closed: dispatched,
            in_flight: 0,
            handed_on: 0,
            lost_started: 0,
            cut_after_write: 0,
            requests: 0,
            cpu_seconds: 0.0,
            memory_bytes: 0,
            memory_limit_bytes: None,
            restarts: Default::default(),
            uptime_seconds: 1.0,
        }
    }

    fn snap(counts: &[(u32, u64)]) -> Snapshot {
        Snapshot {
            apps: vec![AppFigures {
                name: "api".into(),
                distribution: "fdpass".into(),
                accepted: Some(0),
                dropped: 0,
                held: 0,
                window: None,
                total: None,
                handoff: None,
                connection_duration: None,
                requests: None,
            }],
            instances: counts
                .iter()
                .map(|&(id, n)| figures(id, "api", n))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn shares_are_of_the_work_since_the_last_refresh() {
        let mut m = Model::default();
        m.refresh(Vec::new(), snap(&[(0, 5000), (1, 0)]));
        // One refresh: no interval yet, so the totals.
        assert_eq!(m.shares_of("api"), [(0, 0, 1.0, 5000), (1, 1, 0.0, 0)]);
        m.refresh(Vec::new(), snap(&[(0, 5900), (1, 100)]));
        assert_eq!(m.shares_of("api"), [(0, 0, 0.9, 900), (1, 1, 0.1, 100)]);
        // Nothing new since: the totals again.
        m.refresh(Vec::new(), snap(&[(0, 5900), (1, 100)]));
        let s = m.shares_of("api");
        assert!((s[0].2 - 5900.0 / 6000.0).abs() < 1e-12, "{s:?}");
        assert!(m.shares_of("other").is_empty());
    }

    #[test]
    fn selection_and_scroll_are_clamped() {
        let mut m = Model::default();
        m.select(3);
        assert_eq!(m.selected, 0);
        m.logs = (0..5).map(|i| (false, i.to_string())).collect();
        m.scroll_logs(10);
        assert_eq!(m.scroll, 4);
        m.scroll_logs(-10);
        assert_eq!(m.scroll, 0);
    }

    #[test]
    fn tail_reads_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("herd-monit-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("out.log");
        let body: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, body).unwrap();
        let t = tail(p.to_str().unwrap(), 3);
        assert_eq!(t, ["line 997", "line 998", "line 999"]);
        assert!(tail("/nonexistent/herd.log", 3).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

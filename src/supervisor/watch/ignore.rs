//! Which changed paths count for a watcher. Always ignored: `node_modules`,
//! `__pycache__` and hidden names (`.git`, editor swap files) below a
//! watched path, what herd writes in its home, and the app's own log files
//! with their rotated copies. Then each `ignore_watch` pattern: without `/`
//! it is matched against every name below the watched path (`logs`,
//! `*.log`); with `/` it is a path from the app's cwd, or absolute, and
//! covers everything under it (`./tmp`, `src/**/*.gen.js`). `*` and `?`
//! match within one name, `**` any number of directories. Regular
//! expressions are not supported (PM2's chokidar takes strings as globs too).
//!
//! Written by hand: forty lines of matching; `globset` would bring `regex`
//! and `aho-corasick`.

use std::path::{Component, Path, PathBuf};

use super::Plan;

/// Names ignored anywhere below a watched path, besides hidden names.
const ALWAYS_IGNORED_NAMES: &[&str] = &["node_modules", "__pycache__"];

/// One `ignore_watch` pattern.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    /// No `/`: matched against each name below the watched path.
    Name(String),
    /// With `/`: matched against the path's leading components, as segments
    /// of an absolute path (`**` spans directories).
    Path(Vec<String>),
}

/// Which changed paths count. Built from a [`Plan`]; shared with notify's
/// thread, so it is plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct Ignore {
    /// Watched paths, longest first (the innermost root names a path).
    roots: Vec<PathBuf>,
    always: Vec<PathBuf>,
    flat: Vec<PathBuf>,
    logs: Vec<PathBuf>,
    rules: Vec<Rule>,
}

impl Ignore {
    /// The rules for `plan`.
    pub fn new(plan: &Plan) -> Ignore {
        let mut roots = plan.roots.clone();
        roots.sort_by_key(|r| std::cmp::Reverse(r.components().count()));
        let rules = plan
            .patterns
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.contains('/') {
                    let abs = crate::config::ecosystem::units::normalize(&plan.cwd.join(p));
                    Rule::Path(names(&abs).into_iter().map(str::to_string).collect())
                } else {
                    Rule::Name(p.to_string())
                }
            })
            .collect();
        Ignore {
            roots,
            always: plan.always.clone(),
            flat: plan.flat.clone(),
            logs: plan.logs.clone(),
            rules,
        }
    }

    /// Whether a change at `path` (absolute) is ignored. Paths outside every
    /// watched path (siblings of a watched file) are.
    pub fn is_ignored(&self, path: &Path) -> bool {
        let Some(root) = self.roots.iter().find(|r| path.starts_with(r)) else {
            return true;
        };
        if self.always.iter().any(|a| path.starts_with(a))
            || (self.flat.iter().any(|f| path.parent() == Some(f)) && !path.is_dir())
            || self.logs.iter().any(|l| path == l || same_stem(path, l))
        {
            return true;
        }
        let below = path.strip_prefix(root).unwrap_or(Path::new(""));
        for name in names(below) {
            if name.starts_with('.') || ALWAYS_IGNORED_NAMES.contains(&name) {
                return true;
            }
            let by_name = |r: &Rule| matches!(r, Rule::Name(p) if wildcard(p, name));
            if self.rules.iter().any(by_name) {
                return true;
            }
        }
        let all = names(path);
        self.rules.iter().any(|r| match r {
            Rule::Path(segs) => (1..=all.len()).any(|k| glob_path(segs, &all[..k])),
            Rule::Name(_) => false,
        })
    }
}

/// `app-out-0.log.1` beside `app-out-0.log`: a log file's rotated copy.
fn same_stem(path: &Path, log: &Path) -> bool {
    let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_string);
    path.parent() == log.parent()
        && matches!((name(path), name(log)), (Some(p), Some(l)) if p.starts_with(&l))
}

/// The normal components of a path, as text.
fn names(p: &Path) -> Vec<&str> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect()
}

/// `*` (any run of characters) and `?` (one) within one name.
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            // Let the last `*` take one more character.
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Segments against whole path components; `**` matches any number of them.
fn glob_path(segs: &[String], path: &[&str]) -> bool {
    match segs.split_first() {
        None => path.is_empty(),
        Some((s, rest)) if s == "**" => (0..=path.len()).any(|k| glob_path(rest, &path[k..])),
        Some((s, rest)) => match path.split_first() {
            Some((p, tail)) => wildcard(s, p) && glob_path(rest, tail),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plan(patterns: &[&str]) -> Plan {
        Plan {
            roots: vec!["/srv/app".into(), "/etc/app.conf".into()],
            cwd: "/srv/app".into(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            always: vec!["/srv/app/herd-home/logs".into()],
            flat: vec!["/srv/app/herd-home".into()],
            logs: vec!["/srv/app/logs/out-0.log".into()],
            delay: Duration::ZERO,
        }
    }

    #[test]
    fn defaults_ignore_node_modules_hidden_names_and_logs() {
        let i = Ignore::new(&plan(&[]));
        for seen in [
            "/srv/app/app.js",
            "/srv/app/src/lib/x.js",
            "/srv/app/logs/other.log",
            "/srv/app",
            "/etc/app.conf",
            "/srv/app/herd-home/apps/api.js",
        ] {
            assert!(!i.is_ignored(Path::new(seen)), "{seen} ignored");
        }
        for ignored in [
            "/srv/app/node_modules/x/index.js",
            "/srv/app/packages/a/node_modules/b",
            "/srv/app/.git/index",
            "/srv/app/src/.app.js.swp",
            "/srv/app/logs/out-0.log",
            "/srv/app/logs/out-0.log.1",
            "/srv/app/__pycache__/app.cpython-311.pyc",
            "/srv/app/herd-home/logs/api-out-0.log",
            "/srv/app/herd-home/herd.log",
            "/etc/passwd",
            "/srv/other/file",
        ] {
            assert!(i.is_ignored(Path::new(ignored)), "{ignored} seen");
        }
    }

    #[test]
    fn hidden_names_above_the_watched_path_do_not_count() {
        let mut p = plan(&[]);
        p.roots = vec!["/home/u/.apps/api".into()];
        let i = Ignore::new(&p);
        assert!(!i.is_ignored(Path::new("/home/u/.apps/api/app.js")));
        assert!(i.is_ignored(Path::new("/home/u/.apps/api/.env")));
        // A hidden file watched by name is a root, so it counts.
        p.roots = vec!["/srv/app/.env".into()];
        assert!(!Ignore::new(&p).is_ignored(Path::new("/srv/app/.env")));
    }

    #[test]
    fn name_patterns_match_any_name_below_the_watched_path() {
        let i = Ignore::new(&plan(&["tmp", "*.log", "cache-?"]));
        for ignored in [
            "/srv/app/tmp",
            "/srv/app/tmp/a.js",
            "/srv/app/src/tmp/b.js",
            "/srv/app/debug.log",
            "/srv/app/src/x/y.log",
            "/srv/app/cache-1/z",
        ] {
            assert!(i.is_ignored(Path::new(ignored)), "{ignored} seen");
        }
        for seen in [
            "/srv/app/tmpl.js",
            "/srv/app/log.js",
            "/srv/app/cache-12/z",
            "/srv/app/a.log.js",
        ] {
            assert!(!i.is_ignored(Path::new(seen)), "{seen} ignored");
        }
    }

    #[test]
    fn path_patterns_start_at_cwd_and_cover_what_is_under_them() {
        let i = Ignore::new(&plan(&[
            "public/uploads",
            "./build/",
            "src/**/*.gen.js",
            "/etc/app.conf",
            "data/*/cache",
        ]));
        for ignored in [
            "/srv/app/public/uploads",
            "/srv/app/public/uploads/a/b.png",
            "/srv/app/build/out.js",
            "/srv/app/src/x.gen.js",
            "/srv/app/src/a/b/x.gen.js",
            "/etc/app.conf",
            "/srv/app/data/eu/cache/k",
        ] {
            assert!(i.is_ignored(Path::new(ignored)), "{ignored} seen");
        }
        for seen in [
            "/srv/app/public/index.html",
            "/srv/app/src/public/uploads/x",
            "/srv/app/builder/x",
            "/srv/app/src/x.js",
            "/srv/app/data/eu/x/cache",
        ] {
            assert!(!i.is_ignored(Path::new(seen)), "{seen} ignored");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("*.log", ".log"));
        assert!(wildcard("a*b*c", "axxbyyc"));
        assert!(wildcard("a*b*c", "abcbc"));
        assert!(!wildcard("a*b*c", "axxbyy"));
        assert!(wildcard("?.js", "a.js"));
        assert!(!wildcard("?.js", "ab.js"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exactly"));
        let segs = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        assert!(glob_path(&segs("a/**/z"), &["a", "z"]));
        assert!(glob_path(&segs("a/**/z"), &["a", "b", "c", "z"]));
        assert!(!glob_path(&segs("a/**/z"), &["a", "b"]));
        assert!(glob_path(&segs("**"), &["x", "y"]));
    }
}

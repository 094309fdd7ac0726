//! PM2's value forms: durations (`"10s"`, `1000`), sizes (`"300M"`), args
//! given as one string, relative paths; and how a value is shown in an
//! error. Cron patterns are checked by croner (`crate::config::cron_schedule`).
//!
//! `crate::config::parse_duration_ms` reads the CLI's whole-number forms;
//! these also take PM2's numbers-as-JSON and decimals (`"1.5s"`, `"1.5G"`),
//! and leave the error wording to the caller, which names file, app and key.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// The accepted forms of a duration, for error messages.
pub(super) const DURATION: &str =
    "milliseconds (`1600`) or a duration like `500ms`, `10s`, `1.5m`, `1h`";
/// The accepted forms of a size, for error messages.
pub(super) const SIZE: &str =
    "bytes (`1048576`) or a size with K, M or G (`512K`, `300M`, `1G`, `1.5G`)";

/// A non-negative decimal written with digits and at most one `.`.
fn decimal(s: &str) -> Option<f64> {
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let dots = s.bytes().filter(|&b| b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != s.len() {
        return None;
    }
    s.parse().ok()
}

/// `n × mult`, rounded, if it fits a u64.
fn scaled(n: f64, mult: f64) -> Option<u64> {
    let v = (n * mult).round();
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// A JSON number that is a whole, non-negative value.
fn whole(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// A duration in ms: a number (ms) or a string `1600`, `500ms`, `10s`,
/// `1.5m`, `1h`.
pub(super) fn duration_ms(v: &Value) -> Option<u64> {
    match v {
        Value::Number(_) => whole(v),
        Value::String(s) => duration_str_ms(s),
        _ => None,
    }
}

/// A duration string (`1600`, `1600ms`, `2s`, `1.5m`, `1h`) in milliseconds.
pub(crate) fn duration_str_ms(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (t, 1.0)
    };
    scaled(decimal(num.trim())?, mult)
}

/// A size in bytes: a number (bytes) or a string `1024`, `512K`, `300M`,
/// `1G`, `1.5g`, `300MB` (K/M/G are powers of 1024, as in PM2). Zero is not
/// a size anyone means.
pub(crate) fn size_bytes(v: &Value) -> Option<u64> {
    let bytes = match v {
        Value::Number(_) => whole(v)?,
        Value::String(s) => {
            let t = s.trim();
            let t = t.strip_suffix(['b', 'B']).unwrap_or(t);
            let (num, mult) = match t.char_indices().last()? {
                (i, 'k' | 'K') => (&t[..i], 1u64 << 10),
                (i, 'm' | 'M') => (&t[..i], 1 << 20),
                (i, 'g' | 'G') => (&t[..i], 1 << 30),
                (i, 't' | 'T') => (&t[..i], 1 << 40),
                _ => (t, 1),
            };
            scaled(decimal(num.trim())?, mult as f64)?
        }
        _ => return None,
    };
    (bytes > 0).then_some(bytes)
}

/// A JSON number as JavaScript's `String(n)` writes it (`3000`, `1.5`).
pub(super) fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        // f64's Display has no exponent and no trailing `.0`, like JS for
        // the values config files hold.
        format!("{}", n.as_f64().unwrap_or(0.0))
    }
}

/// A scalar as the string a process would get: strings as they are,
/// numbers and booleans as PM2 (JavaScript) writes them.
pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(number_text(n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Splits `args: "--port 80 --name 'a b'"` as a shell would: whitespace
/// separates, single quotes are literal, double quotes allow `\"` and `\\`,
/// a backslash outside quotes escapes a space, a quote or a backslash.
pub(super) fn split_words(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("a closing `'`"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("a closing `\"`"),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("a closing `\"`"),
                    }
                }
            }
            '\\' => {
                // Escapes what would otherwise split or quote; elsewhere the
                // backslash stays, so regexes (`\.log$`) survive.
                in_word = true;
                match chars.clone().next() {
                    Some(c) if c.is_whitespace() || "'\"\\".contains(c) => {
                        cur.push(c);
                        chars.next();
                    }
                    _ => cur.push('\\'),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Whether an `ignore_watch` pattern uses syntax only a regular expression
/// has. PM2's docs show regexes there, but its watcher (chokidar) takes
/// strings as globs, and so does herd; such a pattern is worth a warning.
pub(crate) fn looks_like_regex(p: &str) -> bool {
    p.contains(['\\', '^', '$', '(', ')', '|', '+', '[', ']', '{', '}'])
}

/// `p` against `base`, with `~` for $HOME, `.` and `..` folded away.
pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    let joined = match p.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => match home() {
            Some(h) => h.join(rest.trim_start_matches('/')),
            None => base.join(p),
        },
        _ => base.join(p),
    };
    normalize(&joined)
}

/// Folds `.` and `..` without touching the filesystem (symlinks stay as
/// written, like `path.resolve` in PM2).
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    out
}

/// An executable named without a `/`, looked up in PATH (`script: "npm"`).
pub(super) fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A value as an error shows it: JSON, cut to a readable length.
pub(super) fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= 60 {
        return s;
    }
    let cut: String = s.chars().take(57).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        for (v, ms) in [
            (json!(1600), 1600),
            (json!("1600"), 1600),
            (json!("500ms"), 500),
            (json!("10s"), 10_000),
            (json!("1.5s"), 1_500),
            (json!("1m"), 60_000),
            (json!("1h"), 3_600_000),
            (json!(" 2 s "), 2_000),
            (json!(1500.0), 1500),
            (json!(0), 0),
        ] {
            assert_eq!(duration_ms(&v), Some(ms), "{v}");
        }
        for v in [
            json!("soon"),
            json!("-5"),
            json!(-5),
            json!(1.5),
            json!("1e3"),
            json!("10x"),
            json!(""),
            json!(true),
            json!("1..5s"),
        ] {
            assert_eq!(duration_ms(&v), None, "{v} accepted");
        }
    }

    #[test]
    fn sizes() {
        for (v, b) in [
            (json!(1024), 1024),
            (json!("1024"), 1024),
            (json!("512K"), 512 << 10),
            (json!("512k"), 512 << 10),
            (json!("300M"), 300 << 20),
            (json!("300MB"), 300 << 20),
            (json!("1G"), 1 << 30),
            (json!("1g"), 1 << 30),
            (json!("1.5G"), 3 << 29),
            (json!("100B"), 100),
        ] {
            assert_eq!(size_bytes(&v), Some(b), "{v}");
        }
        for v in [
            json!("1X"),
            json!("G"),
            json!("0"),
            json!(0),
            json!("-1G"),
            json!("lots"),
            json!(false),
            json!("1GG"),
        ] {
            assert_eq!(size_bytes(&v), None, "{v} accepted");
        }
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"--port 80  --name 'a b' "c \"d\"" e\ f"#).unwrap(),
            ["--port", "80", "--name", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(split_words(r#"--x="a b""#).unwrap(), ["--x=a b"]);
        assert_eq!(
            split_words(r"node_modules \.log$").unwrap(),
            ["node_modules", r"\.log$"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), [""]);
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
    }

    #[test]
    fn regex_like_patterns() {
        for re in [r"\.log$", "^tmp", "(a|b)", "[\\/\\\\]\\./"] {
            assert!(looks_like_regex(re), "{re}");
        }
        for glob in ["node_modules", "*.log", "logs/**", "./tmp", "a?c"] {
            assert!(!looks_like_regex(glob), "{glob}");
        }
    }

    #[test]
    fn paths() {
        let base = Path::new("/srv/app");
        assert_eq!(
            resolve(base, "./logs/../out.log"),
            Path::new("/srv/app/out.log")
        );
        assert_eq!(resolve(base, ".."), Path::new("/srv"));
        assert_eq!(resolve(base, "/var/log/x.log"), Path::new("/var/log/x.log"));
        assert_eq!(resolve(base, "~x/y"), Path::new("/srv/app/~x/y"));
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(resolve(base, "~/a.pid"), Path::new(&home).join("a.pid"));
        }
        assert_eq!(normalize(Path::new("/../a/./b/")), Path::new("/a/b"));
        assert!(which("sh").is_some_and(|p| p.is_absolute()));
        assert_eq!(which("./sh"), None);
    }

    #[test]
    fn texts() {
        assert_eq!(scalar_text(&json!(3000)).unwrap(), "3000");
        assert_eq!(scalar_text(&json!(1.5)).unwrap(), "1.5");
        assert_eq!(scalar_text(&json!(true)).unwrap(), "true");
        assert_eq!(scalar_text(&json!("x")).unwrap(), "x");
        assert_eq!(scalar_text(&json!(null)), None);
        assert_eq!(show(&json!("lots")), "\"lots\"");
        assert!(show(&json!("x".repeat(100))).ends_with("..."));
    }
}

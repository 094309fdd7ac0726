//! PM2's `log_date_format`: day.js format strings (`YYYY-MM-DD HH:mm:ss Z`),
//! translated once into chrono `strftime` fragments, and a stamp cache so a
//! busy app's lines do not each pay for formatting a date.
//!
//! The tokens are day.js core's (what PM2 formats with): `YYYY YY M MM MMM
//! MMMM D DD d dd ddd dddd H HH h hh m mm s ss SSS Z ZZ A a` and `[literal]`.
//! Anything else is copied as it is, as day.js does.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local, Utc};

/// What `time: true` means in PM2 (`Common.js`: `log_date_format =
/// 'YYYY-MM-DDTHH:mm:ss'`).
pub const TIME_DEFAULT: &str = "YYYY-MM-DDTHH:mm:ss";

/// `herd logs --timestamp` without a format (PM2's default).
pub const LOGS_TIMESTAMP_DEFAULT: &str = "YYYY-MM-DD-HH:mm:ss";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// A chrono strftime fragment (literals escaped).
    Strftime(String),
    /// day.js `dd`: the first two letters of the weekday name.
    Weekday2,
}

/// A parsed day.js format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    pieces: Vec<Piece>,
    /// Whether the output changes within a second (`SSS`).
    sub_second: bool,
}

/// The day.js tokens, longest first so `MMMM` wins over `MM`.
const TOKENS: &[(&str, &str)] = &[
    ("YYYY", "%Y"),
    ("YY", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("M", "%-m"),
    ("DD", "%d"),
    ("D", "%-d"),
    ("dddd", "%A"),
    ("ddd", "%a"),
    ("dd", ""), // Weekday2
    ("d", "%w"),
    ("HH", "%H"),
    ("H", "%-H"),
    ("hh", "%I"),
    ("h", "%-I"),
    ("mm", "%M"),
    ("m", "%-M"),
    ("ss", "%S"),
    ("s", "%-S"),
    ("SSS", "%3f"),
    ("ZZ", "%z"),
    ("Z", "%:z"),
    ("A", "%p"),
    ("a", "%P"),
];

impl DateFormat {
    /// Translates a day.js format. Never fails: like day.js, what is not a
    /// token is printed as it is.
    pub fn parse(fmt: &str) -> DateFormat {
        let mut pieces = Vec::new();
        let mut cur = String::new();
        let mut sub_second = false;
        let mut rest = fmt;
        'outer: while let Some(c) = rest.chars().next() {
            if c == '[' {
                if let Some(end) = rest.find(']') {
                    escape_into(&rest[1..end], &mut cur);
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            for &(token, strf) in TOKENS {
                if let Some(after) = rest.strip_prefix(token) {
                    if token == "dd" {
                        if !cur.is_empty() {
                            pieces.push(Piece::Strftime(std::mem::take(&mut cur)));
                        }
                        pieces.push(Piece::Weekday2);
                    } else {
                        sub_second |= token == "SSS";
                        cur.push_str(strf);
                    }
                    rest = after;
                    continue 'outer;
                }
            }
            escape_into(&rest[..c.len_utf8()], &mut cur);
            rest = &rest[c.len_utf8()..];
        }
        if !cur.is_empty() {
            pieces.push(Piece::Strftime(cur));
        }
        DateFormat { pieces, sub_second }
    }

    /// Appends `t` in this format to `out`.
    pub fn render(&self, t: &DateTime<Local>, out: &mut String) {
        use std::fmt::Write;
        for p in &self.pieces {
            match p {
                Piece::Strftime(s) => {
                    let _ = write!(out, "{}", t.format(s));
                }
                Piece::Weekday2 => {
                    let day = t.format("%a").to_string();
                    out.push_str(&day[..2.min(day.len())]);
                }
            }
        }
    }

    /// `t` in this format.
    pub fn format(&self, t: &DateTime<Local>) -> String {
        let mut s = String::new();
        self.render(t, &mut s);
        s
    }
}

fn escape_into(literal: &str, out: &mut String) {
    for c in literal.chars() {
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
    }
}

/// `2026-11-25T10:00:00.123Z`, as JavaScript's `toISOString()` (PM2's JSON
/// log timestamp when no `log_date_format` is set).
pub fn iso_utc(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Formats "now" in one format, re-rendering only when the visible value can
/// have changed (once a second, or once a millisecond with `SSS`).
#[derive(Debug)]
pub struct Stamper {
    fmt: Option<DateFormat>,
    key: u128,
    text: String,
}

impl Stamper {
    /// Stamps in `fmt`, or ISO-8601 UTC when `None`.
    pub fn new(fmt: Option<DateFormat>) -> Stamper {
        Stamper {
            fmt,
            key: u128::MAX,
            text: String::new(),
        }
    }

    /// The current time, formatted.
    pub fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let ms = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let key = match &self.fmt {
            Some(f) if !f.sub_second => ms / 1000,
            _ => ms,
        };
        if key != self.key {
            self.key = key;
            self.text.clear();
            match &self.fmt {
                Some(f) => f.render(&DateTime::<Local>::from(now), &mut self.text),
                None => self.text.push_str(&iso_utc(now)),
            }
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn at() -> DateTime<Local> {
        // A fixed instant; the rendering is checked in its own offset.
        let t = NaiveDate::from_ymd_opt(2026, 3, 7)
            .unwrap()
            .and_hms_milli_opt(14, 5, 9, 42)
            .unwrap();
        Local.from_local_datetime(&t).earliest().unwrap()
    }

    #[test]
    fn pm2_formats() {
        let t = at();
        assert_eq!(
            DateFormat::parse(TIME_DEFAULT).format(&t),
            "2026-03-07T14:05:09"
        );
        assert_eq!(
            DateFormat::parse("YYYY-MM-DDTHH:mm:ss.SSS").format(&t),
            "2026-03-07T14:05:09.042"
        );
        let z = t.fixed_offset().format("%:z").to_string();
        assert_eq!(
            DateFormat::parse("YYYY-MM-DD HH:mm:ss Z").format(&t),
            format!("2026-03-07 14:05:09 {z}")
        );
        assert_eq!(DateFormat::parse("ZZ").format(&t), z.replace(':', ""));
    }

    #[test]
    fn short_tokens_names_and_literals() {
        let t = at();
        assert_eq!(
            DateFormat::parse("D/M/YY h:m:s a").format(&t),
            "7/3/26 2:5:9 pm"
        );
        assert_eq!(
            DateFormat::parse("dddd ddd dd d, MMMM MMM").format(&t),
            "Saturday Sat Sa 6, March Mar"
        );
        assert_eq!(DateFormat::parse("hh A").format(&t), "02 PM");
        // `[...]` is literal, `%` is not a strftime directive, unknown letters stay.
        assert_eq!(
            DateFormat::parse("[YYYY at] HH 100% q").format(&t),
            "YYYY at 14 100% q"
        );
        assert_eq!(DateFormat::parse("").format(&t), "");
    }

    #[test]
    fn stamper_caches_per_second_unless_sub_second() {
        let mut s = Stamper::new(Some(DateFormat::parse("HH:mm:ss")));
        assert_eq!(s.now().len(), 8);
        assert!(!DateFormat::parse("HH:mm:ss").sub_second);
        assert!(DateFormat::parse("ss.SSS").sub_second);
        let mut iso = Stamper::new(None);
        let v = iso.now().to_string();
        assert!(v.ends_with('Z') && v.len() == 24, "{v}");
    }

    #[test]
    fn iso_matches_javascript() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_764_072_000_123);
        assert_eq!(iso_utc(t), "2025-11-25T12:00:00.123Z");
    }
}

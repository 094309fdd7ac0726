//! From a process's stdout/stderr pipe to its log files, in the daemon: read
//! 64 KiB at a time, cut into lines, prefix (`time`, `log_date_format`) or
//! wrap (`log_type: json`) each, and append to every file the stream goes
//! to with one `write` per read. No process in between, no message per line.
//!
//! Memory stays bounded whatever the app prints: a partial line waits in a
//! buffer of at most [`MAX_LINE`] bytes; a longer line is written on in
//! pieces of that size (with one prefix, at its start; as several JSON
//! records in JSON mode).
//!
//! Under `herd run` each line also goes to herd's own stdout or stderr
//! ([`Console`]): `0|api | line`, or one JSON record per line on stdout.

use std::os::fd::OwnedFd;

use super::date::{DateFormat, Stamper};
use super::file::Shared;
use crate::sys::fd;

/// The longest piece of a line held in memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Which stream a pipe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Out,
    /// stderr.
    Err,
}

impl Stream {
    /// PM2's name for it in JSON logs: `out` / `err`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// Where a piece of a line sits in its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// It is the start of a line.
    pub starts: bool,
    /// The line ends with it.
    pub ends: bool,
}

/// Cuts a byte stream into lines, holding at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
    /// Part of the current line was already emitted.
    mid_line: bool,
}

impl Lines {
    /// Feeds bytes; `emit` gets each complete line (without its `\n`) and
    /// each [`MAX_LINE`] piece of a longer one.
    pub fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8], Piece)) {
        while let Some(i) = memchr::memchr(b'\n', data) {
            self.push(&data[..i], true, &mut emit);
            data = &data[i + 1..];
        }
        self.push(data, false, &mut emit);
    }

    /// Adds a segment of the current line; `ends`: the line ends after it.
    fn push(&mut self, mut seg: &[u8], ends: bool, emit: &mut impl FnMut(&[u8], Piece)) {
        loop {
            let room = MAX_LINE - self.partial.len();
            if seg.len() < room || (ends && seg.len() == room) {
                break;
            }
            let piece = Piece {
                starts: !self.mid_line,
                ends: false,
            };
            if self.partial.is_empty() {
                emit(&seg[..room], piece);
            } else {
                self.partial.extend_from_slice(&seg[..room]);
                emit(&self.partial, piece);
                self.partial.clear();
            }
            self.mid_line = true;
            seg = &seg[room..];
        }
        if !ends {
            self.partial.extend_from_slice(seg);
            return;
        }
        let piece = Piece {
            starts: !self.mid_line,
            ends: true,
        };
        if self.partial.is_empty() {
            emit(seg, piece);
        } else {
            self.partial.extend_from_slice(seg);
            emit(&self.partial, piece);
            self.partial.clear();
        }
        self.mid_line = false;
    }

    /// End of stream: an unterminated last line is emitted with a `\n`.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], Piece)) {
        if !self.partial.is_empty() || self.mid_line {
            emit(
                &self.partial,
                Piece {
                    starts: !self.mid_line,
                    ends: true,
                },
            );
        }
        self.partial.clear();
        self.mid_line = false;
    }
}

/// How lines of one stream are written.
#[derive(Debug)]
pub struct Encoder {
    stream: Stream,
    json: bool,
    /// Prefix lines with a date (`time` / `log_date_format`); in JSON mode
    /// the `timestamp` field (ISO-8601 UTC without a format, as PM2).
    stamp: Option<Stamper>,
    app_name: String,
    id: u32,
}

impl Encoder {
    /// Lines of `stream` of instance `id` of `app_name`.
    pub fn new(
        stream: Stream,
        app_name: &str,
        id: u32,
        date_format: Option<DateFormat>,
        json: bool,
    ) -> Encoder {
        let stamp = if json {
            Some(Stamper::new(date_format))
        } else {
            date_format.map(|f| Stamper::new(Some(f)))
        };
        Encoder {
            stream,
            json,
            stamp,
            app_name: app_name.to_string(),
            id,
        }
    }

    /// Appends one line or piece, encoded, to `out`.
    pub fn encode(&mut self, line: &[u8], piece: Piece, out: &mut Vec<u8>) {
        if self.json {
            let record = serde_json::json!({
                "message": String::from_utf8_lossy(line),
                "timestamp": self.stamp.as_mut().map(|s| s.now().to_string()),
                "type": self.stream.as_str(),
                "process_id": self.id,
                "app_name": self.app_name,
            });
            let _ = serde_json::to_writer(&mut *out, &record);
            out.push(b'\n');
            return;
        }
        if piece.starts {
            if let Some(s) = self.stamp.as_mut() {
                out.extend_from_slice(s.now().as_bytes());
                out.extend_from_slice(b": ");
            }
        }
        out.extend_from_slice(line);
        if piece.ends {
            out.push(b'\n');
        }
    }
}

/// How `herd run` copies app output to its own stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFormat {
    /// `<id>|<name> | <line>`: stdout lines on stdout, stderr on stderr.
    Prefixed,
    /// One JSON record per line (`message`, `timestamp`, `type`,
    /// `process_id`, `app_name`, as PM2's `--json` logs), all on stdout.
    Json,
}

/// The console side of one stream (see [`ConsoleFormat`]).
#[derive(Debug)]
pub struct Console {
    format: ConsoleFormat,
    stream: Stream,
    prefix: String,
    enc: Encoder,
}

impl Console {
    /// Lines of `stream` of instance `id` of `app_name`.
    pub fn new(format: ConsoleFormat, stream: Stream, app_name: &str, id: u32) -> Console {
        Console {
            format,
            stream,
            prefix: format!("{id}|{app_name} | "),
            enc: Encoder::new(stream, app_name, id, None, true),
        }
    }

    /// Appends one line or piece, as the console shows it, to `out`.
    pub fn encode(&mut self, line: &[u8], piece: Piece, out: &mut Vec<u8>) {
        match self.format {
            ConsoleFormat::Json => self.enc.encode(line, piece, out),
            ConsoleFormat::Prefixed => {
                if piece.starts {
                    out.extend_from_slice(self.prefix.as_bytes());
                }
                out.extend_from_slice(line);
                if piece.ends {
                    out.push(b'\n');
                }
            }
        }
    }

    /// Where its lines go: stderr for prefixed stderr lines, else stdout.
    fn to_stderr(&self) -> bool {
        self.format == ConsoleFormat::Prefixed && self.stream == Stream::Err
    }
}

/// Writes encoded console lines to herd's stdout or stderr. A closed
/// console loses them there; the log files still have them.
fn show(to_stderr: bool, data: &[u8]) {
    use std::io::Write;
    if data.is_empty() {
        return;
    }
    let _ = if to_stderr {
        std::io::stderr().lock().write_all(data)
    } else {
        std::io::stdout().lock().write_all(data)
    };
}

/// Copies one pipe into its files until every writer has closed it (the
/// process and anything it started that kept the descriptor).
pub async fn pump(
    pipe: OwnedFd,
    mut enc: Encoder,
    files: Vec<Shared>,
    mut console: Option<Console>,
) {
    let afd = match fd::async_fd(pipe, tokio::io::Interest::READABLE) {
        Ok(a) => a,
        Err(e) => {
            log::info!(
                "{} [{}] cannot watch its {} pipe: {e}",
                enc.app_name,
                enc.id,
                enc.stream.as_str()
            );
            return;
        }
    };
    let mut buf = vec![0u8; MAX_LINE];
    let mut out = Vec::with_capacity(MAX_LINE + 4096);
    let mut shown = Vec::new();
    let to_stderr = console.as_ref().map(Console::to_stderr);
    let mut lines = Lines::default();
    let mut emit = |l: &[u8], p: Piece, out: &mut Vec<u8>, shown: &mut Vec<u8>| {
        if !files.is_empty() {
            enc.encode(l, p, out);
        }
        if let Some(c) = console.as_mut() {
            c.encode(l, p, shown);
        }
    };
    fd::read_chunks(&afd, &mut buf, |chunk| {
        lines.feed(chunk, |l, p| emit(l, p, &mut out, &mut shown));
        write_all(&files, &out);
        if let Some(e) = to_stderr {
            show(e, &shown);
        }
        out.clear();
        shown.clear();
    })
    .await;
    lines.finish(|l, p| emit(l, p, &mut out, &mut shown));
    write_all(&files, &out);
    if let Some(e) = to_stderr {
        show(e, &shown);
    }
}

fn write_all(files: &[Shared], data: &[u8]) {
    for f in files {
        f.borrow_mut().write(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(chunks: &[&[u8]]) -> Vec<(Vec<u8>, Piece)> {
        let mut got = Vec::new();
        let mut l = Lines::default();
        for c in chunks {
            l.feed(c, |s, p| got.push((s.to_vec(), p)));
        }
        l.finish(|s, p| got.push((s.to_vec(), p)));
        got
    }

    const WHOLE: Piece = Piece {
        starts: true,
        ends: true,
    };

    #[test]
    fn lines_across_chunks() {
        let got = cut(&[b"a\nb", b"c\n\nd", b"e"]);
        let lines: Vec<&[u8]> = got.iter().map(|(s, _)| s.as_slice()).collect();
        assert_eq!(lines, [&b"a"[..], b"bc", b"", b"de"]);
        assert!(got.iter().all(|(_, p)| *p == WHOLE));
    }

    #[test]
    fn a_long_line_is_cut_into_bounded_pieces() {
        let big = vec![b'x'; 3 * MAX_LINE + 10];
        let mut data = big.clone();
        data.extend_from_slice(b"\nnext\n");
        // Fed in odd-sized chunks.
        let chunks: Vec<&[u8]> = data.chunks(7_777).collect();
        let got = cut(&chunks);
        assert_eq!(got.len(), 5);
        assert!(got[..3].iter().all(|(s, _)| s.len() == MAX_LINE));
        assert_eq!(
            got[0].1,
            Piece {
                starts: true,
                ends: false
            }
        );
        assert_eq!(
            got[3].1,
            Piece {
                starts: false,
                ends: true
            }
        );
        let joined: Vec<u8> = got[..4].iter().flat_map(|(s, _)| s.clone()).collect();
        assert_eq!(joined, big);
        assert_eq!(got[4], (b"next".to_vec(), WHOLE));
    }

    #[test]
    fn unterminated_last_line_is_kept() {
        assert_eq!(cut(&[b"tail"]), [(b"tail".to_vec(), WHOLE)]);
        assert!(cut(&[b""]).is_empty());
    }

    #[test]
    fn encodings() {
        let mut out = Vec::new();
        let mut plain = Encoder::new(Stream::Out, "api", 3, None, false);
        plain.encode(b"hi", WHOLE, &mut out);
        assert_eq!(out, b"hi\n");

        out.clear();
        let mut timed = Encoder::new(
            Stream::Err,
            "api",
            3,
            Some(DateFormat::parse("[T]YYYY")),
            false,
        );
        let half = Piece {
            starts: true,
            ends: false,
        };
        timed.encode(b"one", half, &mut out);
        timed.encode(
            b"two",
            Piece {
                starts: false,
                ends: true,
            },
            &mut out,
        );
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.starts_with("T20") && s.ends_with(": onetwo\n"), "{s}");
        assert_eq!(s.matches(": ").count(), 1);

        out.clear();
        let mut json = Encoder::new(Stream::Err, "api", 3, None, true);
        json.encode("é \"q\"".as_bytes(), WHOLE, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], "é \"q\"");
        assert_eq!(v["type"], "err");
        assert_eq!(v["process_id"], 3);
        assert_eq!(v["app_name"], "api");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(out.last(), Some(&b'\n'));
    }

    #[test]
    fn the_console_prefixes_each_line_with_id_and_name_or_writes_json() {
        let mut c = Console::new(ConsoleFormat::Prefixed, Stream::Out, "api", 3);
        let mut out = Vec::new();
        c.encode(b"hello", WHOLE, &mut out);
        c.encode(
            b"a long ",
            Piece {
                starts: true,
                ends: false,
            },
            &mut out,
        );
        c.encode(
            b"line",
            Piece {
                starts: false,
                ends: true,
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "3|api | hello\n3|api | a long line\n"
        );
        let mut j = Console::new(ConsoleFormat::Json, Stream::Err, "api", 3);
        let mut out = Vec::new();
        j.encode(b"boom", WHOLE, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], "boom");
        assert_eq!(v["type"], "err");
        assert_eq!(v["process_id"], 3);
        assert_eq!(v["app_name"], "api");
        assert!(v["timestamp"].is_string());
    }
}

//! Reading log files from the end, for `herd logs`: the last N lines come
//! from a few `pread`s backwards from the end (never the whole file, so a
//! 1 GB log answers as fast as a small one), and [`Follower`] picks up what
//! is appended after, across truncation (`herd flush`) and rotation.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::capture::Lines;

const BLOCK: usize = 64 * 1024;

/// Where the last `n` lines of `file` (whose size is `len`) start. A last
/// line without a final `\n` counts as a line.
pub fn last_lines_start(file: &File, len: u64, n: usize) -> io::Result<u64> {
    if n == 0 || len == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; BLOCK];
    let mut end = len;
    // The final newline ends the last line; it does not start another.
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        end -= 1;
    }
    let mut seen = 0;
    while end > 0 {
        let start = end.saturating_sub(BLOCK as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        for i in memchr::memrchr_iter(b'\n', chunk) {
            seen += 1;
            if seen == n {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// At most this much of a file is read for its last lines (a file of a few
/// enormous lines must not be read whole).
pub const MAX_TAIL_BYTES: u64 = 16 * 1024 * 1024;

/// The last `n` lines of the file at `path` (without their `\n`), and the
/// size it had, where following continues. At most [`MAX_TAIL_BYTES`] are
/// read: the first line returned may then be the end of a longer one.
pub fn last_lines(path: &Path, n: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = last_lines_start(&file, len, n)?.max(len.saturating_sub(MAX_TAIL_BYTES));
    let mut data = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut data, start)?;
    if data.is_empty() {
        return Ok((Vec::new(), len));
    }
    let mut lines: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if data.last() == Some(&b'\n') {
        lines.pop();
    }
    Ok((lines, len))
}

/// Follows one file like `tail -F`: new complete lines since the last call.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    offset: u64,
    lines: Lines,
}

impl Follower {
    /// Follows `path` from byte `offset` (the size [`last_lines`] saw).
    pub fn new(path: &Path, offset: u64) -> Follower {
        let file = File::open(path).ok();
        let ino = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.ino());
        Follower {
            path: path.to_path_buf(),
            file,
            ino,
            offset,
            lines: Lines::default(),
        }
    }

    /// Lines appended since the last call (pieces of at most
    /// [`super::capture::MAX_LINE`] bytes for longer lines).
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // Rotated or recreated: finish the old file, then start the new one.
        let now = std::fs::metadata(&self.path).ok();
        if now.as_ref().map(MetadataExt::ino) != Some(self.ino) {
            self.read_new(&mut out);
            if now.is_some() {
                *self = Follower::new(&self.path, 0);
            }
        }
        self.read_new(&mut out);
        out
    }

    fn read_new(&mut self, out: &mut Vec<Vec<u8>>) {
        let Some(file) = &self.file else {
            return;
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return;
        };
        if len < self.offset {
            // Truncated (`herd flush`): start over.
            self.offset = 0;
            self.lines = Lines::default();
        }
        let mut buf = vec![0u8; BLOCK];
        while self.offset < len {
            let want = ((len - self.offset) as usize).min(BLOCK);
            let n = match file.read_at(&mut buf[..want], self.offset) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.offset += n as u64;
            self.lines.feed(&buf[..n], |l, _| out.push(l.to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(name: &str, data: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("herd-tail-{}-{name}", std::process::id()));
        std::fs::write(&p, data).unwrap();
        p
    }

    fn strs(lines: &[Vec<u8>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    #[test]
    fn last_lines_with_and_without_trailing_newline() {
        let p = file_with("nl", b"a\nb\nc\n");
        assert_eq!(strs(&last_lines(&p, 2).unwrap().0), ["b", "c"]);
        assert_eq!(strs(&last_lines(&p, 10).unwrap().0), ["a", "b", "c"]);
        assert!(last_lines(&p, 0).unwrap().0.is_empty());
        let q = file_with("nonl", b"a\nb\nc");
        assert_eq!(strs(&last_lines(&q, 2).unwrap().0), ["b", "c"]);
        assert_eq!(last_lines(&q, 2).unwrap().1, 5);
        let e = file_with("empty", b"");
        assert!(last_lines(&e, 5).unwrap().0.is_empty());
        let blank = file_with("blank", b"x\n\n\n");
        assert_eq!(strs(&last_lines(&blank, 2).unwrap().0), ["", ""]);
        for p in [p, q, e, blank] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn last_lines_read_a_bounded_amount() {
        let mut data = vec![b'y'; (MAX_TAIL_BYTES + 1000) as usize];
        data.push(b'\n');
        data.extend_from_slice(b"end\n");
        let p = file_with("huge-line", &data);
        let (lines, _) = last_lines(&p, 5).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len() as u64, MAX_TAIL_BYTES - 5);
        assert_eq!(lines[1], b"end");
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn last_lines_across_blocks() {
        let mut data = Vec::new();
        for i in 0..50_000 {
            data.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let p = file_with("big", &data);
        let (lines, len) = last_lines(&p, 20_000).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(lines.len(), 20_000);
        assert_eq!(lines[0], b"line 30000");
        assert_eq!(lines[19_999], b"line 49999");
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn follower_sees_appends_truncation_and_rotation() {
        use std::io::Write;
        let p = file_with("follow", b"old\n");
        let mut f = Follower::new(&p, 4);
        assert!(f.poll().is_empty());
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(b"one\ntw").unwrap();
        assert_eq!(strs(&f.poll()), ["one"]);
        w.write_all(b"o\n").unwrap();
        assert_eq!(strs(&f.poll()), ["two"]);
        w.set_len(0).unwrap();
        w.write_all(b"3\n").unwrap();
        assert_eq!(strs(&f.poll()), ["3"]);
        // Rotation: the rest of the old file, then the new one.
        w.write_all(b"last of old\n").unwrap();
        let moved = p.with_extension("1");
        std::fs::rename(&p, &moved).unwrap();
        std::fs::write(&p, b"first of new\n").unwrap();
        assert_eq!(strs(&f.poll()), ["last of old", "first of new"]);
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(moved);
    }
}

//! HTTP/1.x response framing for herd's own clients (the load generator
//! of `herd bench` and the daemon's warm-up of a fresh worker): where a
//! response head ends and what it says, and where the whole response ends
//! (`Content-Length` or chunked). Nothing else: herd never parses requests.

/// Largest response head we accept; hello's is ~100 bytes.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Largest whole response we buffer; a bigger one is counted as `other`
/// rather than letting a bad server exhaust our memory.
pub(crate) const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A parsed response head; `worker` is a byte range into the buffer so the
/// parse itself allocates nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) head_len: usize,
    pub(crate) status: u16,
    pub(crate) content_length: Option<u64>,
    pub(crate) chunked: bool,
    pub(crate) worker: Option<(usize, usize)>,
    pub(crate) close: bool,
}

/// Where the response whose head is `head` ends in `buf`, for a chunked
/// body (Node's default for `res.end(body)` without a length) or one with
/// a `Content-Length`: `Ok(None)` if it is not all there yet, `Err` if it
/// is malformed, longer than [`MAX_RESPONSE`], or has neither (see
/// [`Head::runs_to_eof`]).
pub(crate) fn response_end(head: &Head, buf: &[u8]) -> Result<Option<usize>, ()> {
    if head.chunked {
        return match chunked_end(buf, head.head_len)? {
            None if buf.len() > MAX_RESPONSE => Err(()),
            end => Ok(end),
        };
    }
    let end = head
        .content_length
        .and_then(|len| usize::try_from(len).ok())
        .and_then(|len| len.checked_add(head.head_len))
        .filter(|&end| end <= MAX_RESPONSE)
        .ok_or(())?;
    Ok((buf.len() >= end).then_some(end))
}

impl Head {
    /// Neither chunked nor with a length: the body runs to EOF.
    pub(crate) fn runs_to_eof(&self) -> bool {
        self.content_length.is_none() && !self.chunked
    }
}

/// Where a chunked body starting at `from` ends (after the last chunk and
/// its terminating blank line; trailers are skipped): `Ok(None)` if it is
/// not all there yet, `Err` if it is malformed.
fn chunked_end(buf: &[u8], mut from: usize) -> Result<Option<usize>, ()> {
    loop {
        let Some(nl) = buf[from..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[from..from + nl];
        let hex = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size =
            usize::from_str_radix(std::str::from_utf8(hex).map_err(|_| ())?, 16).map_err(|_| ())?;
        from += nl + 2;
        if size == 0 {
            // Trailers (usually none), then an empty line.
            loop {
                let Some(nl) = buf[from..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                from += nl + 2;
                if nl == 0 {
                    return Ok(Some(from));
                }
            }
        }
        let next = from
            .checked_add(size)
            .and_then(|e| e.checked_add(2))
            .ok_or(())?;
        if buf.len() < next {
            return Ok(None);
        }
        if &buf[next - 2..next] != b"\r\n" {
            return Err(());
        }
        from = next;
    }
}

/// Parses the response head at the start of `buf`: `Ok(None)` if it is not
/// all there yet, `Err` if it is not HTTP/1.x.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head_len = end + 4;
    let mut offset = 0usize;
    let mut lines = buf[..end].split(|&b| b == b'\n').map(|line| {
        let start = offset;
        offset += line.len() + 1;
        (start, line.strip_suffix(b"\r").unwrap_or(line))
    });
    let (_, status_line) = lines.next().ok_or(())?;
    // "HTTP/1.1 200 OK": the status is the three digits after the first space.
    if !status_line.starts_with(b"HTTP/1.") {
        return Err(());
    }
    let code = status_line.get(9..12).ok_or(())?;
    let status = std::str::from_utf8(code)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(())?;
    let mut head = Head {
        head_len,
        status,
        content_length: None,
        chunked: false,
        worker: None,
        close: status_line.starts_with(b"HTTP/1.0"),
    };
    for (start, line) in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let raw = &line[colon + 1..];
        let value = raw.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(())?;
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"x-worker") {
            let lead = raw.len() - raw.trim_ascii_start().len();
            let from = start + colon + 1 + lead;
            head.worker = Some((from, from + value.len()));
        } else if name.eq_ignore_ascii_case(b"connection") {
            head.close = value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hello_response() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\ncontent-type: text/plain\r\n\
                    x-worker:  4242 \r\n\r\nhello from 4242\n";
        let head = parse_head(buf).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.content_length, Some(14));
        let (a, b) = head.worker.unwrap();
        assert_eq!(&buf[a..b], b"4242");
        assert!(!head.close);
        assert_eq!(&buf[head.head_len..], b"hello from 4242\n");
    }

    #[test]
    fn partial_bad_and_close() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(parse_head(b"SSH-2.0\r\n\r\n"), Err(()));
        let head = parse_head(b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 503);
        assert!(head.close);
        assert_eq!(head.worker, None);
    }

    #[test]
    fn chunked_bodies() {
        let body = b"c\r\nhello world\n\r\n0\r\n\r\nNEXT";
        assert_eq!(chunked_end(body, 0), Ok(Some(body.len() - 4)));
        assert_eq!(chunked_end(&body[..10], 0), Ok(None));
        assert_eq!(chunked_end(b"0\r\n", 0), Ok(None));
        assert_eq!(chunked_end(b"zz\r\n", 0), Err(()));
        let head = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.chunked);
    }
}

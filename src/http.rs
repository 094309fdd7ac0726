//! HTTP/1.x response framing for herd's own clients (the load generator
//! of `herd bench` and the daemon's warm-up of a fresh worker): where a
//! response head ends and what it says, and where the whole response ends
//! (`Content-Length` or chunked). Of requests, herd reads only enough to
//! tell whether one may be sent again to another worker
//! ([`replayable_request`]).

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

/// Largest request the daemon keeps to send again ([`replayable_request`]).
pub(crate) const MAX_REPLAY: usize = 4096;

/// Whether `buf` is exactly one whole HTTP/1.x request that is safe to
/// send again when the worker that read it died before writing a byte:
/// its method is idempotent and carries no body (`GET`, `HEAD`,
/// `OPTIONS`; no `Content-Length` above 0, no `Transfer-Encoding`, as
/// nginx's `proxy_next_upstream` retries by default), its head ends the
/// buffer (nothing pipelined after it), and it fits [`MAX_REPLAY`].
pub(crate) fn replayable_request(buf: &[u8]) -> bool {
    if buf.len() > MAX_REPLAY || !buf.ends_with(b"\r\n\r\n") {
        return false;
    }
    let end = buf.len() - 4;
    if buf[..end].windows(4).any(|w| w == b"\r\n\r\n") {
        return false; // two requests
    }
    let mut lines = buf[..end].split(|&b| b == b'\n');
    let Some(first) = lines.next() else {
        return false;
    };
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let mut parts = first.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if !matches!(method, b"GET" | b"HEAD" | b"OPTIONS")
        || target.is_empty()
        || !(version == b"HTTP/1.1" || version == b"HTTP/1.0")
    {
        return false;
    }
    lines.all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false; // not a header line
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return false;
        }
        !name.eq_ignore_ascii_case(b"content-length") || value == b"0"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_idempotent_bodiless_requests_are_replayable() {
        for ok in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"HEAD / HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(replayable_request(ok), "{}", String::from_utf8_lossy(ok));
        }
        let big = [
            &b"GET / HTTP/1.1\r\nX: "[..],
            &[b'a'; MAX_REPLAY],
            b"\r\n\r\n",
        ]
        .concat();
        for no in [
            &b""[..],
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"DELETE /x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n", // not all there yet
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", // pipelined
            b"GET / HTTP/2\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1\r\nnot a header\r\n\r\n",
            &big,
        ] {
            assert!(!replayable_request(no), "{}", String::from_utf8_lossy(no));
        }
    }

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

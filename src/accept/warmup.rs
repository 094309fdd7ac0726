//! The warm-up of a fresh fdpass worker (`--warmup`): requests on one
//! keep-alive connection before the worker joins the rotation.

use crate::http::{parse_head, response_end, MAX_HEAD, MAX_RESPONSE};

/// Sends `GET path` requests one after the other on one keep-alive
/// connection (blocking, each read bounded by the time left) until
/// `at_most` responses, `deadline`, the server closes, or an error;
/// returns how many full responses came back, and how many of them 2xx.
/// The daemon warms a fresh worker with it: a just-started JIT answers
/// its first thousands of requests slowly.
pub fn warm(
    stream: &mut std::net::TcpStream,
    path: &str,
    deadline: std::time::Instant,
    at_most: u64,
) -> (u64, u64) {
    use std::io::{Read, Write};
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: herd-warmup\r\n\r\n");
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let (mut done, mut ok) = (0, 0);
    let mut read_more = |stream: &mut std::net::TcpStream, buf: &mut Vec<u8>| -> bool {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                buf.len() <= MAX_RESPONSE
            }
        }
    };
    while done < at_most && std::time::Instant::now() < deadline {
        if stream.write_all(request.as_bytes()).is_err() {
            break;
        }
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(head)) => break Some(head),
                Ok(None) if buf.len() < MAX_HEAD && read_more(stream, &mut buf) => {}
                _ => break None,
            }
        };
        let Some(head) = head else { break };
        // A body that runs to EOF means one request is all this connection
        // gives: stop there.
        let end = loop {
            match response_end(&head, &buf) {
                Ok(Some(end)) => break Some(end),
                Ok(None) if read_more(stream, &mut buf) => {}
                _ => break None,
            }
        };
        let Some(end) = end else { break };
        done += 1;
        if (200..300).contains(&head.status) {
            ok += 1;
        }
        if head.close {
            break;
        }
        buf.drain(..end);
    }
    (done, ok)
}

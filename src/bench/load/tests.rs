//! Tests of `load`.
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

#[test]
fn fairness_ignores_unnamed_bucket() {
    let mut r = LoadResult::empty(LoadMode::KeepAlive).unwrap();
    r.requests = 4;
    r.elapsed = Duration::from_secs(2);
    r.per_worker.insert("1".into(), 2);
    r.per_worker.insert("2".into(), 1);
    r.per_worker.insert("?".into(), 9);
    let j = r.to_json();
    assert!((j["fairness"]["jain"].as_f64().unwrap() - 0.9).abs() < 1e-12);
    assert_eq!(j["rps"].as_f64().unwrap(), 2.0);
    assert_eq!(j["mode"], "keep_alive");
}

//! Tests of `load`.
use super::*;

#[test]
fn fairness_ignores_unnamed_bucket() {
    let mut r = LoadResult::empty(LoadMode::KeepAlive, None).unwrap();
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

/// A keep-alive server that answers at once, except that it stalls for
/// `STALL` once, `STALL_AT` into the run.
fn stalling_server() -> SocketAddr {
    use std::io::{Read, Write};
    const STALL_AT: Duration = Duration::from_millis(300);
    const STALL: Duration = Duration::from_millis(500);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let t0 = std::time::Instant::now();
        let mut stalled = false;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..i + 4);
                if !stalled && t0.elapsed() >= STALL_AT {
                    stalled = true;
                    std::thread::sleep(STALL);
                }
                let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Worker: 1\r\n\r\nok";
                if s.write_all(r).is_err() {
                    return;
                }
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    addr
}

fn spec(addr: SocketAddr, rate: Option<f64>) -> LoadSpec {
    LoadSpec {
        addr,
        connections: 1,
        duration: Duration::from_millis(1500),
        mode: LoadMode::KeepAlive,
        max_requests: Some(100_000),
        threads: 1,
        rate,
    }
}

#[test]
fn open_loop_shows_a_stall_as_the_requests_it_delayed() {
    // 200 requests/s for 1.5 s: about 100 are due during the 500 ms stall,
    // and wait from up to 500 ms down to nothing: a third of the run.
    let r = run(&spec(stalling_server(), Some(200.0))).unwrap();
    let j = r.to_json();
    assert!(r.requests > 200 && r.requests < 320, "{j}");
    let p90 = j["latency_us"]["p90"].as_u64().unwrap();
    assert!(
        p90 >= 150_000,
        "corrected p90 {p90} µs: the stall must show: {j}"
    );
    // Timed from the send, as a closed loop would, only the one request
    // the server sat on was slow.
    let service = j["open_loop"]["service_us"]["p90"].as_u64().unwrap();
    assert!(service < 50_000, "uncorrected p90 {service} µs: {j}");
    assert_eq!(j["open_loop"]["rate"], 200.0);
}

#[test]
fn closed_loop_hides_the_same_stall_in_one_request() {
    let r = run(&spec(stalling_server(), None)).unwrap();
    let j = r.to_json();
    let p99 = j["latency_us"]["p99"].as_u64().unwrap();
    let max = j["latency_us"]["max"].as_u64().unwrap();
    assert!(max >= 450_000, "the stalled request itself: {j}");
    assert!(p99 < 50_000, "closed loop p99 {p99} µs: {j}");
    assert!(j.get("open_loop").is_none());
}

#[test]
fn a_rate_that_is_not_a_positive_number_is_refused() {
    for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let e = run(&spec("127.0.0.1:9".parse().unwrap(), Some(bad))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
    }
}

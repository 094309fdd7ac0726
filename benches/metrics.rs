//! What the metrics core adds to each connection on the daemon's hot
//! path, measured in isolation (`cargo bench --bench metrics`): the clock
//! reads and histogram records an acceptor makes per connection. Plain
//! std timing, no framework: best of 7 runs of 2M operations each, ns per
//! operation. Raw output: bench-results/metrics-20261203/micro.txt.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use herd::metrics::hist::Hist;

const OPS: u64 = 2_000_000;

fn best(what: &str, mut f: impl FnMut()) {
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_nanos() as f64 / OPS as f64);
    }
    println!("{what:<52} {best:>7.1} ns/op");
}

fn main() {
    best("Instant::now()", || {
        for _ in 0..OPS {
            black_box(Instant::now());
        }
    });
    let h = Hist::new(2, 1e-9, 10_000_000_000);
    best("Hist::record, one thread (hand-off, ns)", || {
        for i in 0..OPS {
            h.record(black_box(5_000 + (i & 1023)));
        }
    });
    let d = Hist::new(2, 1e-6, 3_600_000_000);
    best("Hist::record_n, one thread (duration, µs)", || {
        for i in 0..OPS {
            d.record_n(black_box(200 + (i & 255)), 1);
        }
    });
    // Two acceptor threads on two shards, as on a 2-core host.
    let shared = Arc::new(Hist::new(2, 1e-9, 10_000_000_000));
    best(
        "Hist::record, two threads at once (per op, per thread)",
        || {
            let other = {
                let s = shared.clone();
                std::thread::spawn(move || {
                    for i in 0..OPS {
                        s.record(black_box(5_000 + (i & 1023)));
                    }
                })
            };
            for i in 0..OPS {
                shared.record(black_box(7_000 + (i & 1023)));
            }
            other.join().unwrap();
        },
    );
    // What one connection adds: a clock read when it is taken, one at the
    // batch's end, a hand-off record, and a duration record on its close.
    let (hh, dd) = (
        Hist::new(2, 1e-9, 10_000_000_000),
        Hist::new(2, 1e-6, 3_600_000_000),
    );
    best("per connection: 2 clock reads + 2 records", || {
        for i in 0..OPS {
            let t = Instant::now();
            let now = Instant::now();
            hh.record(now.saturating_duration_since(t).as_nanos() as u64 + (i & 7));
            dd.record_n(black_box(300), 1);
        }
    });
}

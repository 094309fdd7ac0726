//! Micro-benchmarks of herd's hot paths (criterion; `cargo bench --bench
//! micro`): the dispatch decision per policy, passing descriptors over a
//! unix socket one per message against batched, the daemon protocol's
//! frames and the fdpass channel's messages, and log line encoding.
//! Raw output of a run: bench-results/micro-*/.

use std::hint::black_box;
use std::io::Cursor;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use herd::accept::pool::{Policy, Pool, Slot, Wire};
use herd::fdpass::herd::Msg;
use herd::logs::capture::{Encoder, Piece, Stream};
use herd::logs::date::DateFormat;
use herd::protocol::{frame, Request};
use herd::sys::fdpass::{recv_with_fds, send_with_fds, socketpair, PairKind};

/// A pool of `n` workers in the rotation, each slot's channel kept open.
fn pool(policy: Policy, n: u32) -> (Pool, Vec<OwnedFd>) {
    let pool = Pool::new(policy);
    let mut ends = Vec::new();
    for id in 0..n {
        let (ours, theirs) = socketpair(PairKind::SeqPacket).unwrap();
        herd::sys::fdpass::set_nonblocking(ours.as_fd(), true).unwrap();
        let peer = theirs.try_clone().unwrap();
        let slot = Arc::new(Slot::new(id, 0, ours, Wire::herd(Some(peer), None)));
        pool.add(slot.clone());
        pool.slot_ready(&slot);
        ends.push(theirs);
    }
    (pool, ends)
}

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch decision");
    for policy in ["least-conn", "round-robin", "p2c", "least-time"] {
        for n in [2u32, 16, 256] {
            let (pool, _ends) = pool(Policy::parse(policy).unwrap(), n);
            g.bench_with_input(BenchmarkId::new(policy, n), &n, |b, _| {
                b.iter(|| black_box(pool.pick()))
            });
        }
    }
    g.finish();
}

/// One message carrying `fds.len()` descriptors, sent and received back
/// on a seqpacket pair (the daemon's channel to a worker).
fn round_trip(
    tx: BorrowedFd<'_>,
    rx: BorrowedFd<'_>,
    fds: &[BorrowedFd<'_>],
    got: &mut Vec<OwnedFd>,
) {
    let ids = [7u8; 8 * 16];
    send_with_fds(tx, &ids[..8 * fds.len()], fds, false).unwrap();
    let mut buf = [0u8; 256];
    recv_with_fds(rx, &mut buf, got, false).unwrap();
    got.clear(); // closes the received copies
}

fn fd_passing(c: &mut Criterion) {
    let (tx, rx) = socketpair(PairKind::SeqPacket).unwrap();
    // Descriptors to pass: sockets, as the daemon passes.
    let conns: Vec<OwnedFd> = (0..16)
        .map(|_| socketpair(PairKind::Stream).unwrap().0)
        .collect();
    let mut got = Vec::new();
    let mut g = c.benchmark_group("SCM_RIGHTS round trip");
    for batch in [1usize, 4, 16] {
        let fds: Vec<BorrowedFd<'_>> = conns[..batch].iter().map(|f| f.as_fd()).collect();
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(
            BenchmarkId::new("fds per message", batch),
            &batch,
            |b, _| b.iter(|| round_trip(tx.as_fd(), rx.as_fd(), &fds, &mut got)),
        );
    }
    g.finish();
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frames");
    let req = Request::List;
    g.bench_function("daemon request encode", |b| {
        b.iter(|| black_box(frame::encode(black_box(&req))))
    });
    let bytes = frame::encode(&req);
    g.bench_function("daemon request decode", |b| {
        b.iter(|| {
            let r: Request =
                frame::read_sync(&mut Cursor::new(black_box(&bytes[..])), 1 << 20).unwrap();
            black_box(r)
        })
    });
    let conns = Msg::Conns((0..16).collect());
    let mut out = Vec::new();
    g.bench_function("fdpass C message (16 ids) encode", |b| {
        b.iter(|| {
            conns.encode_into(&mut out);
            black_box(out.len())
        })
    });
    let done = Msg::Timed((0..32).map(|i| (i, 1000 + i)).collect()).encode();
    g.bench_function("fdpass T message (32 pairs) decode", |b| {
        b.iter(|| black_box(Msg::decode(black_box(&done)).unwrap()))
    });
    g.finish();
}

fn log_lines(c: &mut Criterion) {
    let mut g = c.benchmark_group("log line");
    let line = b"GET /api/users/42 200 1.234 ms - 512 bytes from 127.0.0.1";
    let whole = Piece {
        starts: true,
        ends: true,
    };
    let mut out = Vec::with_capacity(4096);
    for (name, date, json) in [
        ("plain", None, false),
        ("time-stamped", Some("YYYY-MM-DD HH:mm:ss.SSS"), false),
        ("json", None, true),
    ] {
        let mut enc = Encoder::new(Stream::Out, "api", 0, date.map(DateFormat::parse), json);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                enc.encode(black_box(line), whole, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, dispatch, fd_passing, frames, log_lines);
criterion_main!(benches);

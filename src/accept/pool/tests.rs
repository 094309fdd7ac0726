//! Tests of `pool`.
use super::*;
use crate::sys::fdpass::{recv_with_fds, socketpair, PairKind};

fn slot(id: u32) -> (Arc<Slot>, OwnedFd) {
    let (ours, theirs) = socketpair(PairKind::SeqPacket).unwrap();
    crate::sys::fdpass::set_nonblocking(ours.as_fd(), true).unwrap();
    (Arc::new(Slot::new(id, 0, SlotProto::Herd, ours)), theirs)
}

fn conn() -> OwnedFd {
    socketpair(PairKind::Stream).unwrap().0
}

fn recv(worker: &OwnedFd) -> (Msg, usize) {
    let mut buf = [0u8; 1024];
    let mut fds = Vec::new();
    let (n, _) = recv_with_fds(worker.as_fd(), &mut buf, &mut fds, true).unwrap();
    (Msg::decode(&buf[..n]).unwrap(), fds.len())
}

#[test]
fn nothing_dispatched_before_ready_and_held_until_then() {
    let pool = Pool::new(Policy::RoundRobin);
    let (s, w) = slot(0);
    pool.add(s.clone());
    pool.dispatch(conn());
    assert_eq!(pool.orphans(), 1);
    pool.slot_ready(&s);
    assert_eq!(pool.orphans(), 0);
    assert_eq!(recv(&w), (Msg::Conns(vec![0]), 1));
    assert_eq!(s.in_flight.load(Ordering::Relaxed), 1);
    s.acked(&[0]);
    assert!(s.oldest_unacked().is_none());
    s.done(1);
    assert_eq!(s.in_flight.load(Ordering::Relaxed), 0);
}

#[test]
fn least_conn_prefers_the_idle_worker() {
    let pool = Pool::new(Policy::LeastConn);
    let (a, _wa) = slot(0);
    let (b, _wb) = slot(1);
    for s in [&a, &b] {
        pool.add(s.clone());
        pool.slot_ready(s);
    }
    for _ in 0..10 {
        pool.dispatch(conn());
    }
    assert_eq!(a.in_flight.load(Ordering::Relaxed), 5);
    assert_eq!(b.in_flight.load(Ordering::Relaxed), 5);
    b.done(5); // b finished everything: the next five all go to b
    for _ in 0..5 {
        pool.dispatch(conn());
    }
    assert_eq!(b.in_flight.load(Ordering::Relaxed), 5);
    assert_eq!(a.in_flight.load(Ordering::Relaxed), 5);
    assert_eq!(b.dispatched.load(Ordering::Relaxed), 10);
}

#[test]
fn a_dead_workers_connections_go_to_another() {
    let pool = Pool::new(Policy::RoundRobin);
    let (a, wa) = slot(0);
    let (b, wb) = slot(1);
    for s in [&a, &b] {
        pool.add(s.clone());
        pool.slot_ready(s);
    }
    for _ in 0..4 {
        pool.dispatch(conn());
    }
    drop(wa); // worker a dies without acknowledging its two
    pool.remove(&a);
    let mut fds_at_b = 0;
    loop {
        let mut buf = [0u8; 1024];
        let mut fds = Vec::new();
        match recv_with_fds(wb.as_fd(), &mut buf, &mut fds, true) {
            Ok((n, _)) if n > 0 => fds_at_b += fds.len(),
            _ => break,
        }
    }
    assert_eq!(fds_at_b, 4, "every connection reached b");
    assert_eq!(
        b.dispatched.load(Ordering::Relaxed),
        4,
        "b got its own two and a's two"
    );
    assert_eq!(pool.redispatched.load(Ordering::Relaxed), 2);
}

#[test]
fn policies_parse() {
    for p in [Policy::RoundRobin, Policy::LeastConn, Policy::P2c] {
        assert_eq!(Policy::parse(p.as_str()), Some(p));
    }
    assert_eq!(Policy::parse("random"), None);
}

//! Replays: a dead Node worker's read-and-unanswered idempotent requests
//! go to another worker with the bytes it had taken.
use super::super::*;
use crate::sys::fdpass::{recv_with_fds, socketpair, PairKind};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;

/// A Node slot of `pool` whose preload channel is up, in the rotation:
/// the slot, Node's end of the cluster channel, the preload's end.
fn node_slot(pool: &Pool, id: u32) -> (Arc<Slot>, OwnedFd, OwnedFd) {
    let (chan, node) = socketpair(PairKind::Stream).unwrap();
    crate::sys::fdpass::set_nonblocking(chan.as_fd(), true).unwrap();
    let (fast, fast_theirs) = socketpair(PairKind::SeqPacket).unwrap();
    crate::sys::fdpass::set_nonblocking(fast.as_fd(), true).unwrap();
    let peer = fast_theirs.try_clone().unwrap();
    let s = Arc::new(Slot::new(
        id,
        0,
        chan,
        Wire::node(Some((fast, peer)), false),
    ));
    pool.set_http(); // the preload's `H`
    pool.add(s.clone());
    s.set_fast_ready();
    pool.slot_ready(&s);
    (s, node, fast_theirs)
}

/// A client that sent `request` on a connection dispatched by `pool`
/// (its request there before the hand-off, as with deferred accepts).
fn dispatch(pool: &Pool, request: &[u8]) -> TcpStream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.write_all(request).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    pool.dispatch(OwnedFd::from(l.accept().unwrap().0));
    c
}

/// The worker end of one `C` from the preload channel.
fn take(preload: &OwnedFd) -> TcpStream {
    let mut buf = [0u8; 64];
    let mut fds = Vec::new();
    recv_with_fds(preload.as_fd(), &mut buf, &mut fds, true).unwrap();
    assert_eq!(buf[0], b'C');
    TcpStream::from(fds.pop().expect("a connection"))
}

#[test]
fn a_dead_workers_read_idempotent_requests_are_replayed_to_another() {
    let pool = Pool::new(Policy::RoundRobin);
    let (a, _node_a, preload_a) = node_slot(&pool, 0);
    const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    const POST: &[u8] = b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    // A GET, a POST, and a GET whose client sends more after the peek.
    let mut clients: Vec<TcpStream> = [GET, POST, GET]
        .into_iter()
        .map(|req| dispatch(&pool, req))
        .collect();
    assert_eq!(a.held(), 3);
    // The worker reads part of the first GET, all of the POST and of the
    // last GET (whose client then sends a second request), answers none.
    let mut got = take(&preload_a);
    got.read_exact(&mut [0u8; 4]).unwrap();
    let mut post = take(&preload_a);
    post.read_exact(&mut vec![0u8; POST.len()]).unwrap();
    let mut more = take(&preload_a);
    more.read_exact(&mut vec![0u8; GET.len()]).unwrap();
    clients[2].write_all(GET).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // The tick's sweep keeps the copies the worker has only read.
    a.sweep_started();
    assert_eq!(a.held(), 3, "read, unanswered copies stay");
    drop((got, post, more, preload_a));

    let (b, node_b, _preload_b) = node_slot(&pool, 1);
    pool.remove(&a);
    let d = pool.deaths(0);
    assert_eq!((d.replayed, d.lost_started, d.saved), (1, 2, 0), "{d:?}");
    assert_eq!(b.in_flight.load(Ordering::Relaxed), 1);
    assert_eq!(b.held(), 1, "b keeps a copy, request and all");

    // b got it on Node's cluster channel: a handle, its id, and the 4
    // bytes the dead worker had taken ("GET ").
    let mut buf = vec![0u8; 4096];
    let mut fds = Vec::new();
    let (n, _) = recv_with_fds(node_b.as_fd(), &mut buf, &mut fds, true).unwrap();
    let line = std::str::from_utf8(&buf[..n]).unwrap();
    assert_eq!(
        line,
        "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_HERD_REPLAY\",\"id\":0,\"data\":\"47455420\"}}\n"
    );
    // The rest of the request is still on the socket, and the client
    // hears from whoever answers it.
    let mut srv = TcpStream::from(fds.pop().expect("the connection rides along"));
    let mut rest = vec![0u8; GET.len() - 4];
    srv.read_exact(&mut rest).unwrap();
    assert_eq!(rest, &GET[4..]);
    srv.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 19];
    clients[0].read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK\r\nCo");
    // Its close report lets go of b's copy.
    b.closed_timed(&[(0, 1000)]);
    assert_eq!((b.held(), b.in_flight.load(Ordering::Relaxed)), (0, 0));
}

#[test]
fn without_a_worker_that_takes_them_replays_wait_for_one() {
    let pool = Pool::new(Policy::RoundRobin);
    let (a, _node_a, preload_a) = node_slot(&pool, 0);
    let _c = dispatch(&pool, b"GET / HTTP/1.1\r\n\r\n");
    take(&preload_a).read_exact(&mut [0u8; 18]).unwrap();
    pool.remove(&a);
    assert_eq!(pool.deaths(0).replayed, 1);
    assert_eq!(pool.orphans(), 1, "held for a worker that takes it");
    // A herd worker cannot take it; a Node worker that joins can.
    let (ours, theirs) = socketpair(PairKind::SeqPacket).unwrap();
    let h = Arc::new(Slot::new(1, 0, ours, Wire::herd(None, None)));
    pool.add(h.clone());
    pool.slot_ready(&h);
    assert_eq!(h.in_flight.load(Ordering::Relaxed), 0);
    drop(theirs);
    let (b, node_b, _preload_b) = node_slot(&pool, 2);
    assert_eq!(b.in_flight.load(Ordering::Relaxed), 1, "sent once b joined");
    assert_eq!(pool.orphans(), 0);
    let mut buf = vec![0u8; 4096];
    let mut fds = Vec::new();
    recv_with_fds(node_b.as_fd(), &mut buf, &mut fds, true).unwrap();
    assert_eq!(fds.len(), 1);
}

#[test]
fn no_request_is_kept_with_replay_off_or_for_herd_workers() {
    let pool = Pool::new(Policy::RoundRobin);
    pool.set_replay(false);
    let (a, _node_a, preload_a) = node_slot(&pool, 0);
    let _c = dispatch(&pool, b"GET / HTTP/1.1\r\n\r\n");
    assert!(!a.can_replay());
    take(&preload_a).read_exact(&mut [0u8; 18]).unwrap();
    pool.remove(&a);
    let d = pool.deaths(0);
    assert_eq!((d.replayed, d.lost_started), (0, 1), "{d:?}");
}

#[test]
fn no_request_is_kept_before_a_worker_says_its_server_speaks_http() {
    let pool = Pool::new(Policy::RoundRobin);
    let (chan, _node) = socketpair(PairKind::Stream).unwrap();
    let (fast, fast_theirs) = socketpair(PairKind::SeqPacket).unwrap();
    let peer = fast_theirs.try_clone().unwrap();
    let a = Arc::new(Slot::new(0, 0, chan, Wire::node(Some((fast, peer)), false)));
    pool.add(a.clone());
    a.set_fast_ready();
    pool.slot_ready(&a);
    assert!(
        !a.can_replay(),
        "a plain net.Server's bytes are not requests"
    );
    pool.set_http();
    assert!(
        a.can_replay(),
        "`H` turns it on for the slots there already"
    );
}

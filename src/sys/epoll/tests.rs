//! Tests of `epoll`, on the shared scenarios of `sys::acceptor`.

use super::*;
use crate::sys::acceptor::scenarios::*;
use std::net::TcpStream;
use std::sync::Arc;

#[test]
fn epoll_survives_emfile() {
    emfile_test("sys::epoll::tests::epoll_survives_emfile", epoll_runner());
}

fn epoll_runner() -> Runner {
    Arc::new(|l, s, cb| accept_loop(l, s, cb))
}

#[test]
fn epoll_ends_every_batch() {
    batch_end_test("epoll", accept_loop);
}

#[test]
fn epoll_two_threads_accept_all() {
    count_test("epoll x2", &listener(), 2, 2000, epoll_runner());
}

#[test]
fn epoll_leaves_accepted_fds_blocking_on_nonblocking_listener() {
    let l = listener();
    l.set_nonblocking(true).unwrap();
    count_test("epoll x1", &l, 1, 200, epoll_runner());
}

#[test]
fn epoll_stop_midstream_loses_nothing() {
    stop_midstream_test("epoll", epoll_runner());
}

#[test]
fn stopper_is_level_and_shared() {
    let s = Stopper::new().unwrap();
    assert!(!s.is_stopped());
    s.stop();
    s.stop();
    assert!(
        s.is_stopped() && s.is_stopped(),
        "stays readable for every thread"
    );
}

#[test]
fn not_a_listener_is_refused_clearly() {
    let l = listener();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let stop = Stopper::new().unwrap();
    stop.stop();
    let e = accept_loop(c.as_fd(), &stop, |_| {}).unwrap_err();
    assert!(e.to_string().contains("not listening"), "{e}");
    let e = accept_loop(stop.as_fd(), &stop, |_| {}).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
}

#[test]
fn error_classes() {
    assert_eq!(classify_accept_error(libc::EMFILE), AcceptError::BackOff);
    assert_eq!(classify_accept_error(libc::ENFILE), AcceptError::BackOff);
    assert_eq!(
        classify_accept_error(libc::ECONNABORTED),
        AcceptError::Retry
    );
    assert_eq!(classify_accept_error(libc::EBADF), AcceptError::Fatal);
    assert_eq!(classify_accept_error(libc::EINVAL), AcceptError::Fatal);
}

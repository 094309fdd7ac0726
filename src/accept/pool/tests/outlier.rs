//! Tests of the outlier rule (`floor`) as the policies apply it.
use super::*;

/// A pool of `policy` with a fast worker (100 µs) and one 50× slower,
/// both measured enough to be judged, after 100 dispatches. Plain
/// least-conn would have split them evenly; the outlier rule keeps the
/// slow worker idle however busy the fast one is.
struct FastAndSlow {
    fast: Arc<Slot>,
    slow: Arc<Slot>,
    now: Instant,
    _workers: [OwnedFd; 2],
}

/// `n` samples of `took` on `s`, 2 ms apart from `start` on (a worker's
/// closes come in over time; see `floor::OUTLIER_SPAN_NS`).
fn spread(s: &Slot, took: std::time::Duration, n: u32, start: Instant) {
    for i in 0..n {
        s.sample(took, start + std::time::Duration::from_millis(2 * i as u64));
    }
}

fn fast_and_slow(policy: Policy) -> FastAndSlow {
    let pool = Pool::new(policy);
    let (fast, wf) = ready_slot(&pool, 0);
    let (slow, ws) = ready_slot(&pool, 1);
    let now = Instant::now();
    spread(
        &fast,
        std::time::Duration::from_micros(100),
        MIN_SAMPLES,
        now,
    );
    spread(&slow, std::time::Duration::from_millis(5), MIN_SAMPLES, now);
    for _ in 0..100 {
        pool.dispatch(conn());
    }
    assert_eq!(fast.in_flight.load(Ordering::Relaxed), 100);
    assert_eq!(slow.in_flight.load(Ordering::Relaxed), 0);
    FastAndSlow {
        fast,
        slow,
        now,
        _workers: [wf, ws],
    }
}

#[test]
fn least_time_keeps_work_off_a_slow_worker_and_probes_it_later() {
    let FastAndSlow {
        fast, slow, now, ..
    } = fast_and_slow(Policy::LeastTime);
    // Unmeasured for a while, the slow worker's estimate decays (half-life
    // 500 ms) until it is tried again.
    let later = now + std::time::Duration::from_secs(4);
    assert!(slow.service_ns(later).unwrap() < fast.service_ns(now).unwrap());
    // A worker less than 4× slower still shares by expected wait.
    let pool = Pool::new(Policy::LeastTime);
    let (a, _wa) = ready_slot(&pool, 2);
    let (b, _wb) = ready_slot(&pool, 3);
    a.sample(std::time::Duration::from_micros(100), now);
    b.sample(std::time::Duration::from_micros(300), now);
    for _ in 0..40 {
        pool.dispatch(conn());
    }
    let (na, nb) = (
        a.in_flight.load(Ordering::Relaxed),
        b.in_flight.load(Ordering::Relaxed),
    );
    assert_eq!(na + nb, 40);
    assert!((28..=31).contains(&na) && nb >= 9, "{na} {nb}");
    // A measured sample brings it back; the EWMA moves a fifth of the way.
    slow.sample(std::time::Duration::from_millis(1), later);
    let e = slow.service_ns(later).unwrap();
    assert!((100_000.0..5_000_000.0).contains(&e), "{e}");
}

#[test]
fn least_conn_keeps_work_off_a_slow_worker_probes_it_and_takes_it_back() {
    let FastAndSlow { slow, now, .. } = fast_and_slow(Policy::LeastConn);
    assert!(slow.suspect.load(Ordering::Relaxed));
    // Three windows later nothing is measured: the slow worker is probed
    // with a few connections at a time, not handed everything until its
    // first close.
    let t = ns_since_epoch(now) + 3 * floor::WINDOW_NS;
    let turn = 1000;
    assert!(slow.fit(100_000, t, turn));
    slow.in_flight
        .store(floor::FLOOR_SAMPLES, Ordering::Relaxed);
    assert!(!slow.fit(100_000, t, turn + 1));
    // The next probe waits for both PROBE_EVERY_NS and PROBE_EVERY_CONNS
    // picks: at a low rate, probes stay a small share of the traffic.
    slow.in_flight.store(0, Ordering::Relaxed);
    let later = t + floor::PROBE_EVERY_NS;
    assert!(
        !slow.fit(100_000, t + 1, turn + floor::PROBE_EVERY_CONNS),
        "too soon"
    );
    assert!(
        !slow.fit(100_000, later, turn + 10),
        "too few connections since"
    );
    assert!(slow.fit(100_000, later, turn + floor::PROBE_EVERY_CONNS));
    // Measured fast again (its probes closed): on trial, then, with fresh
    // fast samples, a worker like the others.
    slow.in_flight.store(0, Ordering::Relaxed);
    let back = now + std::time::Duration::from_nanos(3 * floor::WINDOW_NS);
    slow.sample(std::time::Duration::from_micros(120), back);
    assert!(slow.fit(100_000, t, turn + 300));
    assert!(!slow.suspect.load(Ordering::Relaxed));
    for _ in 0..floor::FLOOR_SAMPLES {
        slow.sample(std::time::Duration::from_micros(120), back);
    }
    slow.in_flight.store(50, Ordering::Relaxed);
    assert!(slow.fit(100_000, t, turn + 301));
}

/// A suspect whose probe comes back as fast as the others is back in the
/// rotation at once, judged afresh: its slow samples are dropped. A probe
/// as slow as before keeps it out.
#[test]
fn one_fast_probe_brings_a_suspect_back() {
    let FastAndSlow { slow, now, .. } = fast_and_slow(Policy::LeastConn);
    assert!(slow.suspect.load(Ordering::Relaxed));
    let t = ns_since_epoch(now);
    slow.sample(std::time::Duration::from_millis(5), now);
    assert!(!slow.fit(100_000, t, 1000), "a slow probe keeps it out");
    assert!(slow.suspect.load(Ordering::Relaxed));
    slow.sample(std::time::Duration::from_micros(150), now);
    assert!(slow.fit(100_000, t, 1000), "a fast probe lets it in");
    assert!(!slow.suspect.load(Ordering::Relaxed));
    assert_eq!(slow.floor.get(t), None, "judged afresh");
    // On trial until judged: a few connections at a time, not a burst.
    slow.in_flight
        .store(floor::TRIAL_IN_FLIGHT, Ordering::Relaxed);
    assert!(!slow.fit(100_000, t, 1000), "on trial: held to a few");
    slow.in_flight.store(0, Ordering::Relaxed);
    assert!(slow.fit(100_000, t, 1000));
    // Judged fit by fresh fast samples: no limit any more.
    for _ in 0..floor::FLOOR_SAMPLES {
        slow.sample(std::time::Duration::from_micros(120), now);
    }
    slow.in_flight.store(50, Ordering::Relaxed);
    assert!(slow.fit(100_000, t, 1000), "fit: no limit");
    // Slow on every connection again (windows later): out again once its
    // slow closes span OUTLIER_SPAN_NS.
    let later = now + std::time::Duration::from_nanos(3 * floor::WINDOW_NS);
    let tl = ns_since_epoch(later);
    slow.in_flight.store(0, Ordering::Relaxed);
    spread(
        &slow,
        std::time::Duration::from_millis(5),
        2 * floor::FLOOR_SAMPLES,
        later,
    );
    assert!(!slow.fit(100_000, tl, 1000));
    assert!(slow.suspect.load(Ordering::Relaxed));
    assert!(
        !slow.fit(100_000, tl, 1000),
        "its old fast probe does not count"
    );
}

/// Two workers equally fast but for a stretch of one (descheduled): both
/// keep their share, since each still served connections fast.
#[test]
fn a_worker_slowed_for_a_moment_keeps_its_share() {
    let pool = Pool::new(Policy::LeastConn);
    let (a, _wa) = ready_slot(&pool, 0);
    let (b, _wb) = ready_slot(&pool, 1);
    let now = Instant::now();
    for i in 0..64 {
        a.sample(std::time::Duration::from_micros(100), now);
        let hiccup = i >= 44; // just now: its mean is 100× the other's
        b.sample(
            std::time::Duration::from_micros(if hiccup { 20_000 } else { 110 }),
            now,
        );
    }
    for _ in 0..100 {
        pool.dispatch(conn());
    }
    assert_eq!(a.in_flight.load(Ordering::Relaxed), 50);
    assert_eq!(b.in_flight.load(Ordering::Relaxed), 50);
}

#[test]
fn one_long_connection_does_not_make_its_worker_an_outlier() {
    let (s, _w) = slot(0);
    let now = Instant::now();
    for _ in 0..10 {
        s.sample(std::time::Duration::from_micros(500), now);
    }
    // A websocket closes after a minute.
    s.sample(std::time::Duration::from_secs(60), now);
    let e = s.service_ns(now).unwrap();
    assert!(e < 4.0 * 500e3, "{e} ns: clamped to 8× the estimate");
    // A worker that really got slow still shows it within a few samples.
    for _ in 0..10 {
        s.sample(std::time::Duration::from_millis(5), now);
    }
    assert!(s.service_ns(now).unwrap() > 4.0 * 500e3);
}

/// A healthy worker the host did not run for a while finishes what it
/// held all at once: slow samples that came together leave it in.
#[test]
fn slow_closes_that_come_all_at_once_leave_a_worker_in() {
    let pool = Pool::new(Policy::LeastConn);
    let (a, _wa) = ready_slot(&pool, 0);
    let (b, _wb) = ready_slot(&pool, 1);
    let now = Instant::now();
    spread(&a, std::time::Duration::from_micros(300), 32, now);
    for _ in 0..11 {
        b.sample(std::time::Duration::from_micros(7_800), now);
    }
    for _ in 0..100 {
        pool.dispatch(conn());
    }
    assert_eq!(a.in_flight.load(Ordering::Relaxed), 50);
    assert_eq!(b.in_flight.load(Ordering::Relaxed), 50);
    assert!(!b.suspect.load(Ordering::Relaxed));
}

/// A process that waits for a CPU (two busy loops on one core) is starved;
/// one that sleeps is not. The first look only records.
#[test]
fn starved_reads_the_run_queue_wait() {
    if std::process::Command::new("taskset")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED starved_reads_the_run_queue_wait: no taskset");
        assert!(std::env::var_os("HERD_REQUIRE").is_none(), "taskset needed");
        return;
    }
    let spawn = |cmd: &str| {
        std::process::Command::new("taskset")
            .args(["-c", "0", "sh", "-c", cmd])
            .spawn()
            .unwrap()
    };
    let mut busy = [
        spawn("exec sh -c 'while :; do :; done'"),
        spawn("while :; do :; done"),
    ];
    let mut idle = spawn("exec sleep 5");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let make = |pid: u32| {
        let (ours, theirs) = socketpair(PairKind::SeqPacket).unwrap();
        let peer = theirs.try_clone().unwrap();
        (
            Slot::new(0, pid as i32, ours, Wire::herd(Some(peer), None)),
            theirs,
        )
    };
    let (b, _wb) = make(busy[0].id());
    let (i, _wi) = make(idle.id());
    let t0 = ns_since_epoch(Instant::now());
    assert_eq!(b.starved(t0), None, "one look says nothing");
    assert_eq!(i.starved(t0), None);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let t1 = ns_since_epoch(Instant::now());
    let (sb, si) = (b.starved(t1), i.starved(t1));
    assert_eq!(b.starved(t1 + 1), sb, "cached within RUNQ_EVERY_NS");
    for c in busy.iter_mut().chain([&mut idle]) {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(
        sb,
        Some(true),
        "two busy loops on one core wait half the time"
    );
    assert_eq!(si, Some(false), "a sleeping process waits for nothing");
    // A process that is gone: judged as without the check.
    let (g, _wg) = make(busy[0].id());
    assert_eq!(g.starved(t1), Some(false));
}

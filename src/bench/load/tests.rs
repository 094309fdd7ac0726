//! Tests of `load`.
use super::*;

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

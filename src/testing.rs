//! Test support shared by the unit tests and the integration tests.

/// A test (or part of one) cannot run here because `what` is missing
/// (`node`, `npm`, `uring`, `devfull`, `migrate`, `cpus`): prints a loud
/// `SKIP` line, or panics when `HERD_REQUIRE` names `what` (a
/// comma-separated list, or `all`). CI sets `HERD_REQUIRE` (`.ci/run`), so
/// a missing prerequisite there fails instead of passing silently.
pub fn skip(what: &str, why: &str) {
    let list = std::env::var("HERD_REQUIRE").unwrap_or_default();
    if requires(&list, what) {
        panic!("HERD_REQUIRE={list} requires {what}, but: {why}");
    }
    eprintln!("SKIP ({what}): {why}");
}

/// Whether the `HERD_REQUIRE` list `list` names `what`.
fn requires(list: &str, what: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|r| r == what || r == "all")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_require_list_names_prerequisites_or_all() {
        assert!(requires("node,npm,uring", "npm"));
        assert!(requires(" node , uring", "uring"));
        assert!(requires("all", "devfull"));
        assert!(!requires("node,npm", "uring"));
        assert!(!requires("", "node"));
        assert!(!requires("nodejs", "node"));
    }
}

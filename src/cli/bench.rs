//! `herd bench`: its flags are `crate::bench::BenchArgs`; the work is in
//! `crate::bench`, and this prints the report.

use crate::error::Result;

pub use crate::bench::BenchArgs;

/// Runs `herd bench` and prints its report (a table, or JSON).
pub fn run(a: BenchArgs) -> Result<()> {
    let report = crate::bench::run(&a)?;
    if a.json {
        super::output::print_json(&report)
    } else {
        super::output::write_stdout(&crate::bench::render(&report))
    }
}

//! `herd bench`: its flags are `crate::bench::BenchArgs`; the work is in
//! `crate::bench`, and this prints the report (and judges it, `--check`).

use crate::bench::check::Thresholds;
use crate::error::{Error, Result};

pub use crate::bench::BenchArgs;

/// Runs `herd bench` and prints its report (a table, or JSON); with
/// `--check`, then one line per threshold, and fails if any failed.
pub fn run(a: BenchArgs) -> Result<()> {
    // A bad thresholds file is an error before a long run, not after.
    let thresholds = a.check.as_deref().map(Thresholds::read).transpose()?;
    let report = match &a.results {
        Some(file) if a.check.is_none() && a.report.is_none() => {
            return Err(Error::InvalidArg {
                what: "--results".into(),
                value: file.display().to_string(),
                expected: "`--check THRESHOLDS.toml` or `--report DIR` with it".into(),
            })
        }
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
            let mut report: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::InvalidArg {
                    what: "--results".into(),
                    value: file.display().to_string(),
                    expected: format!("a report printed by `herd bench --json` ({e})"),
                })?;
            // Summarized again: a report saved by an older herd gets
            // today's summary columns.
            if report["curve"].is_null() {
                if let Some(runs) = report["runs"].as_array() {
                    report["summary"] = crate::bench::summarize(runs);
                }
            }
            report
        }
        None => crate::bench::run(&a)?,
    };
    if let Some(dir) = &a.report {
        let files = crate::bench::write_report(dir, &report)
            .map_err(|e| Error::io(format!("writing the report to {}", dir.display()), e))?;
        eprintln!(
            "herd bench: wrote {} files to {}",
            files.len(),
            dir.display()
        );
    }
    if a.json {
        super::output::print_json(&report)?;
    } else {
        super::output::write_stdout(&crate::bench::render(&report))?;
    }
    let (Some(th), Some(file)) = (thresholds, &a.check) else {
        return Ok(());
    };
    let outcomes = th.check(&report);
    let lines: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{} {}", if o.pass { "PASS" } else { "FAIL" }, o.line))
        .collect();
    // stdout stays pure JSON under --json.
    if a.json {
        eprintln!("{}", lines.join("\n"));
    } else {
        super::output::write_stdout(&lines.join("\n"))?;
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.pass)
        .map(|o| o.line.as_str())
        .collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(Error::Remote {
            message: format!(
                "{} of {} thresholds in {} failed (first: {first})",
                failed.len(),
                outcomes.len(),
                file.display()
            ),
            hint: Some("the FAIL lines above say by how much".into()),
        }),
    }
}

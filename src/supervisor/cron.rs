//! `cron_restart`: restart an app whenever its cron pattern matches, in
//! local time, as PM2 does. Patterns are parsed by croner
//! (`crate::config::cron_schedule`), the Rust port of the parser PM2 uses:
//! 5 fields, or 6 with seconds first, and `@daily`-style nicknames.
//!
//! One task per app sleeps until the next match and fires the registry's
//! `Trigger`. It sleeps at most a minute at a time and re-reads the wall
//! clock, so a clock that jumps (NTP, suspend) moves the restart with it. A
//! match that comes while the previous cron restart is still under way is
//! skipped. Like PM2, a cron restart also starts an app that exited on its
//! own (`autorestart: false` jobs run on a schedule this way); an app the
//! user stopped has no cron task (see `auto.rs`).
//!
//! May touch: chrono, croner, the daemon log.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, Timelike};

use super::auto::{Cause, Trigger};

/// Longest single sleep before the wall clock is read again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A live cron task; dropping it stops it.
pub struct Handle {
    task: tokio::task::AbortHandle,
    /// When it fires next (`None` once no time matches any more).
    pub next: Rc<Cell<Option<SystemTime>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first time after `now` (whole seconds) that `cron` matches.
pub fn next_after(cron: &croner::Cron, now: DateTime<Local>) -> Option<DateTime<Local>> {
    let now = now.with_nanosecond(0).unwrap_or(now);
    cron.find_next_occurrence(&now, false).ok()
}

/// Starts the cron task of app `name`. Must run inside the LocalSet.
pub fn start(name: &str, pattern: &str, trigger: Trigger) -> Result<Handle, String> {
    let cron = crate::config::cron_schedule(pattern)?;
    let next = Rc::new(Cell::new(None));
    let task = tokio::task::spawn_local(run(
        name.to_string(),
        pattern.to_string(),
        cron,
        next.clone(),
        trigger,
    ));
    Ok(Handle {
        task: task.abort_handle(),
        next,
    })
}

async fn run(
    name: String,
    pattern: String,
    cron: croner::Cron,
    next: Rc<Cell<Option<SystemTime>>>,
    trigger: Trigger,
) {
    loop {
        let Some(at) = next_after(&cron, Local::now()) else {
            next.set(None);
            log::info!(
                "{name}: cron `{pattern}` matches no time from now on; no more cron restarts"
            );
            return;
        };
        next.set(Some(at.into()));
        while let Ok(left) = (at - Local::now()).to_std() {
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(MAX_SLEEP)).await;
        }
        log::info!("{name}: cron `{pattern}`: restarting (cron)");
        trigger(Cause::Cron).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Local> {
        Local
            .with_ymd_and_hms(2030, 6, 15, h, m, s)
            .single()
            .unwrap()
            .with_nanosecond(ms * 1_000_000)
            .unwrap()
    }

    #[test]
    fn next_times_in_local_time() {
        let every_second = crate::config::cron_schedule("* * * * * *").unwrap();
        assert_eq!(
            next_after(&every_second, at(10, 0, 0, 300)),
            Some(at(10, 0, 1, 0))
        );
        let at_three = crate::config::cron_schedule("0 3 * * *").unwrap();
        let next = next_after(&at_three, at(10, 0, 0, 0)).unwrap();
        assert_eq!((next.hour(), next.minute(), next.second()), (3, 0, 0));
        assert_eq!(
            next.date_naive(),
            at(10, 0, 0, 0).date_naive().succ_opt().unwrap()
        );
        let daily = crate::config::cron_schedule("@daily").unwrap();
        let next = next_after(&daily, at(23, 59, 59, 999)).unwrap();
        assert_eq!((next.hour(), next.minute(), next.second()), (0, 0, 0));
        let every_ten = crate::config::cron_schedule("*/10 * * * * *").unwrap();
        assert_eq!(
            next_after(&every_ten, at(10, 0, 10, 0)),
            Some(at(10, 0, 20, 0)),
            "a match at `now` itself is not next"
        );
    }
}

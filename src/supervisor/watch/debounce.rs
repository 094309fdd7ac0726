//! One restart per burst of changes, decided on the control plane with a
//! clock the caller supplies (so it is tested without sleeping). A burst
//! ends once no change has come for `watch_delay`, never less than
//! [`SETTLE`] (saving one file is several events, and a writer can be
//! descheduled between them), and at the latest [`MAX_HOLD`] after its
//! first change, so a file written without pause cannot hold a restart back
//! forever.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The shortest quiet time that ends a burst, whatever `watch_delay` says.
pub const SETTLE: Duration = Duration::from_millis(100);

/// A burst that never goes quiet still restarts the app this long after
/// the quiet time has passed since its first change.
pub const MAX_HOLD: Duration = Duration::from_secs(10);

/// Changes folded into one restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    /// When the first change came.
    pub first: Instant,
    /// When the latest change came.
    pub last: Instant,
    /// How many changes.
    pub changes: u32,
    /// The first changed path.
    pub path: PathBuf,
}

/// Turns changes into restarts: one per burst, due once no change has come
/// for `delay` (at least [`SETTLE`]), or that + [`MAX_HOLD`] after the
/// burst's first change, whichever is sooner. Pure state: the caller
/// supplies the clock.
#[derive(Debug)]
pub struct Debounce {
    delay: Duration,
    burst: Option<Burst>,
}

impl Debounce {
    /// No change yet.
    pub fn new(delay: Duration) -> Debounce {
        Debounce {
            delay: delay.max(SETTLE),
            burst: None,
        }
    }

    /// A change at `path`, seen at `now`.
    pub fn change(&mut self, now: Instant, path: &Path) {
        match &mut self.burst {
            Some(b) => {
                b.last = now;
                b.changes += 1;
            }
            None => {
                self.burst = Some(Burst {
                    first: now,
                    last: now,
                    changes: 1,
                    path: path.to_path_buf(),
                })
            }
        }
    }

    /// When the restart for the current burst is due; `None` without one.
    pub fn due(&self) -> Option<Instant> {
        self.burst
            .as_ref()
            .map(|b| (b.last + self.delay).min(b.first + self.delay + MAX_HOLD))
    }

    /// The burst, if its restart is due at `now`; the next change starts a
    /// new one.
    pub fn take_due(&mut self, now: Instant) -> Option<Burst> {
        match self.due() {
            Some(at) if at <= now => self.burst.take(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_restart_once_quiet_for_the_delay() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(500));
        assert_eq!(d.due(), None);
        d.change(t0, Path::new("/a"));
        d.change(t0 + ms(200), Path::new("/b"));
        d.change(t0 + ms(400), Path::new("/c"));
        assert_eq!(d.due(), Some(t0 + ms(900)));
        assert_eq!(d.take_due(t0 + ms(899)), None, "not quiet long enough");
        let b = d.take_due(t0 + ms(900)).expect("due");
        assert_eq!(b.changes, 3);
        assert_eq!(b.path, Path::new("/a"));
        assert_eq!(d.due(), None, "the next change starts a new burst");
        assert_eq!(d.take_due(t0 + ms(5000)), None);
        d.change(t0 + ms(6000), Path::new("/d"));
        assert_eq!(d.take_due(t0 + ms(6500)).map(|b| b.changes), Some(1));
    }

    #[test]
    fn a_burst_that_never_goes_quiet_is_held_back_at_most_max_hold() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(1000));
        let mut t = t0;
        while t < t0 + MAX_HOLD + ms(5000) {
            d.change(t, Path::new("/busy.log"));
            t += ms(100);
        }
        assert_eq!(d.due(), Some(t0 + ms(1000) + MAX_HOLD));
    }

    #[test]
    fn zero_delay_still_waits_for_the_burst_to_settle() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Duration::ZERO);
        d.change(t0, Path::new("/a"));
        d.change(t0 + Duration::from_millis(3), Path::new("/a"));
        assert_eq!(d.take_due(t0 + Duration::from_millis(50)), None);
        assert_eq!(d.due(), Some(t0 + Duration::from_millis(3) + SETTLE));
        assert_eq!(d.take_due(t0 + SETTLE * 2).map(|b| b.changes), Some(2));
    }
}

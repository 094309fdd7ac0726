//! The limits every request is held to, in one place. The CLI checks them
//! too (for a message that names the flag), but the daemon checks each
//! request against them itself: a client on the socket is not always
//! herd's CLI, and one request must never take the daemon, and with it
//! every app, down (a `start` asking for 4,000,000,000 instances once made
//! it allocate them and abort).

use std::path::Path;

use super::{AppSpec, Instances};
use crate::error::{Error, Result};

/// Most instances of one app (`-i`, `instances`, `herd scale`).
pub const MAX_INSTANCES: u32 = 4096;
/// Most fdpass acceptor threads (`--acceptors`).
pub const MAX_ACCEPTORS: usize = 1024;
/// Longest duration a spec may set (kill timeout, listen timeout,
/// warm-up, restart delays, …): a day, in ms.
pub const MAX_DURATION_MS: u64 = 86_400_000;

fn invalid(what: &str, value: impl ToString, expected: &str) -> Error {
    Error::InvalidArg {
        what: what.into(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// A cluster app herd cannot run in its mode (measured, Bun 1.4.5 and
/// Deno 2.9.6; neither takes a connection over Node's cluster channel, so
/// neither runs in fdpass mode): Bun in any but reuseport (its `node:http`
/// reports listening on `{fd: 3}` but serves nothing there; as a cluster
/// worker it binds its own `SO_REUSEPORT` socket, which reuseport mode lets
/// it do: [`super::binds_own_reuseport`]); Deno in fdpass (it serves on
/// the `{fd: 3}` listener of reuseport and shared mode, through herd's
/// preload).
fn unsupported_cluster_runtime(spec: &AppSpec) -> Option<&'static str> {
    use crate::accept::Mode;
    if spec.exec_mode != super::ExecMode::Cluster {
        return None;
    }
    match (super::runtime(spec)?, spec.mode) {
        (super::Runtime::Bun, Mode::Reuseport) => None,
        (super::Runtime::Deno, Mode::Reuseport | Mode::Shared) => None,
        (super::Runtime::Bun, _) => Some("Bun"),
        (super::Runtime::Deno, _) => Some("Deno"),
    }
}

/// Checks a spec that arrived in a `start` request.
pub fn check_spec(spec: &AppSpec) -> Result<()> {
    if let Instances::Count(n) = spec.instances {
        if n == 0 || n > MAX_INSTANCES {
            return Err(invalid(
                "instances",
                n,
                &format!("1 to {MAX_INSTANCES} instances, `max` or -N"),
            ));
        }
    }
    if let Some(n) = spec.plane.acceptors {
        if n == 0 || n > MAX_ACCEPTORS {
            return Err(invalid(
                "acceptors",
                n,
                &format!("1 to {MAX_ACCEPTORS} acceptor threads"),
            ));
        }
    }
    if let Some(b) = spec.plane.backlog {
        if b < 1 {
            return Err(invalid("backlog", b, "a listen backlog of at least 1"));
        }
    }
    if spec.name.trim().is_empty() {
        return Err(invalid("name", &spec.name, "a non-empty app name"));
    }
    if let Some(rt) = unsupported_cluster_runtime(spec) {
        return Err(invalid(
            "exec_mode",
            "cluster",
            &format!(
                "fork mode for a {rt} app (`-x` or `exec_mode: fork`; the app binds its own \
                 port){}: herd does not run {rt} apps in this cluster mode yet",
                if rt == "Bun" {
                    ", or `--mode reuseport`"
                } else {
                    ", or `--mode reuseport` or `shared`"
                }
            ),
        ));
    }
    let node = spec.interpreter.as_deref().is_some_and(|i| {
        matches!(
            Path::new(i).file_name().and_then(|f| f.to_str()),
            Some("node" | "nodejs")
        )
    });
    if spec.app_metrics && !(node && spec.exec_mode == super::ExecMode::Cluster) {
        return Err(invalid(
            "app_metrics",
            "true",
            "a Node cluster app (`-i N`, or a port): herd's Node preload reads the app's prom-client registry",
        ));
    }
    let durations = [
        ("kill_timeout", spec.kill_timeout_ms),
        ("min_uptime", spec.min_uptime_ms),
        ("restart_delay", spec.restart_delay_ms),
        ("listen_timeout", spec.listen_timeout_ms),
        ("memory_check", spec.memory_check_ms),
        ("watch_delay", spec.watch_delay_ms),
        ("ack_timeout", spec.plane.ack_timeout_ms),
        ("warmup", spec.plane.warmup_ms),
        (
            "exp_backoff_restart_delay",
            spec.exp_backoff_restart_delay_ms.unwrap_or(0),
        ),
    ];
    for (what, ms) in durations {
        if ms > MAX_DURATION_MS {
            return Err(invalid(
                what,
                format!("{ms} ms"),
                "at most a day (86400000 ms)",
            ));
        }
    }
    if spec.memory_check_ms == 0 && spec.max_memory_restart.is_some() {
        return Err(invalid(
            "memory_check",
            "0 ms",
            "a check interval of at least 1 ms",
        ));
    }
    if spec.plane.ack_timeout_ms == 0 {
        return Err(invalid("ack_timeout", "0 ms", "a timeout of at least 1 ms"));
    }
    Ok(())
}

/// The instance count `herd scale APP TO` asks for: `target`, TO applied
/// to `current` with checked arithmetic (`None`: it over- or underflowed),
/// within [`MAX_INSTANCES`]; `to` is TO as the user wrote it.
pub fn scale_target(current: u32, to: &str, target: Option<u32>) -> Result<u32> {
    match target {
        Some(n) if n <= MAX_INSTANCES => Ok(n),
        _ => Err(invalid(
            "scale",
            to,
            &format!(
                "a number of instances N (0 to {MAX_INSTANCES}), or +N / -N to add or remove (the app has {current})"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_targets_are_overflow_safe_and_bounded() {
        use crate::protocol::ScaleTo;
        let t = |s: &str| {
            let to = ScaleTo::parse(s).expect("a scale form");
            scale_target(2, s, to.apply(2))
        };
        assert_eq!(t("4").unwrap(), 4);
        assert_eq!(t("+3").unwrap(), 5);
        assert_eq!(t("-2").unwrap(), 0);
        assert!(t("-3").is_err());
        assert!(t("+4294967295").is_err());
        assert!(t("4097").is_err());
        for bad in ["+99999999999999999999", "x", "+-1", "", "+", "1.5"] {
            assert_eq!(ScaleTo::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn specs_beyond_the_limits_are_refused() {
        let ok = AppSpec::new("a".into(), "/bin/true".into(), "/".into());
        check_spec(&ok).unwrap();
        let mut s = ok.clone();
        s.instances = Instances::Count(4_000_000_000);
        assert!(check_spec(&s)
            .unwrap_err()
            .to_string()
            .contains("instances"));
        let mut s = ok.clone();
        s.instances = Instances::Count(0);
        assert!(check_spec(&s).is_err());
        let mut s = ok.clone();
        s.plane.acceptors = Some(1 << 40);
        assert!(check_spec(&s)
            .unwrap_err()
            .to_string()
            .contains("acceptors"));
        let mut s = ok.clone();
        s.listen_timeout_ms = u64::MAX;
        assert!(check_spec(&s)
            .unwrap_err()
            .to_string()
            .contains("listen_timeout"));
        let mut s = ok.clone();
        s.name = " ".into();
        assert!(check_spec(&s).is_err());
    }
}

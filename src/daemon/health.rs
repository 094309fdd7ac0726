//! `--health ADDR` and `--metrics ADDR`: the probe and metrics endpoints,
//! for `herd run` and the daemon alike. `GET /healthz` is 200 while the
//! daemon serves; `GET /readyz` is 200 when every app has each instance it
//! is meant to run online and ready, else 503 with the reason in JSON;
//! `GET /metrics` is the Prometheus text of `herd metrics`. Loopback only
//! unless the user says otherwise (`--health-public`, `--metrics-public`):
//! a probe or a local scraper needs no more, and the replies name the apps.
//!
//! One small HTTP/1.1 exchange per connection, then close: nothing a
//! probe does needs keep-alive, and each connection is its own task with a
//! deadline, so a stuck client holds nothing.

use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Context;
use crate::error::{Error, Result};
use crate::supervisor::registry::AppHealth;

/// The port `--health` uses when given none (PM2's metrics module's).
pub const DEFAULT_PORT: u16 = 9615;
/// `--health` with no value.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9615";
/// `--metrics` with no value (9209: free in Prometheus's port list).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9209";

/// What one listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serves {
    /// `/healthz` and `/readyz`.
    pub health: bool,
    /// `/metrics`.
    pub metrics: bool,
}
/// A request head larger than this is refused.
const MAX_HEAD: usize = 8 * 1024;
/// A client gets this long to send its request and read the reply.
const DEADLINE: Duration = Duration::from_secs(5);

/// Parses `--health`: `HOST:PORT`, `[V6]:PORT`, `localhost:PORT`, or a
/// bare port (on 127.0.0.1). A non-loopback address needs `public`.
pub fn parse_addr(s: &str, public: bool) -> Result<SocketAddr> {
    parse_endpoint(s, public, "health")
}

/// [`parse_addr`] for `--NAME` (`health` or `metrics`).
pub fn parse_endpoint(s: &str, public: bool, name: &str) -> Result<SocketAddr> {
    let t = s.trim();
    let bad = |expected: &str| Error::InvalidArg {
        what: format!("--{name}"),
        value: s.into(),
        expected: expected.into(),
    };
    const FORM: &str = "an address like 127.0.0.1:9615, [::1]:9615, localhost:9615 or a port";
    let addr = if let Ok(port) = t.parse::<u16>() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    } else if let Some(port) = t.strip_prefix("localhost:") {
        SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            port.parse::<u16>().map_err(|_| bad(FORM))?,
        ))
    } else {
        t.parse::<SocketAddr>().map_err(|_| bad(FORM))?
    };
    if !addr.ip().is_loopback() && !public {
        return Err(bad(&format!(
            "a loopback address (127.0.0.1:PORT or [::1]:PORT); another address needs --{name}-public (HERD_{}_PUBLIC=1)",
            name.to_uppercase()
        )));
    }
    Ok(addr)
}

/// Binds the endpoints asked for: one listener when both use one address.
pub fn bind_all(
    health: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> Result<Vec<(std::net::TcpListener, Serves)>> {
    let mut out = Vec::new();
    if let (Some(h), Some(m)) = (health, metrics) {
        if h == m {
            out.push((
                bind(h)?,
                Serves {
                    health: true,
                    metrics: true,
                },
            ));
            return Ok(out);
        }
    }
    if let Some(h) = health {
        out.push((
            bind(h)?,
            Serves {
                health: true,
                metrics: false,
            },
        ));
    }
    if let Some(m) = metrics {
        out.push((
            bind(m)?,
            Serves {
                health: false,
                metrics: true,
            },
        ));
    }
    Ok(out)
}

/// Binds the health listener (before the daemon says it serves, so a
/// taken port is an error at start, not a silent absence).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::io(format!("cannot listen on {addr} for --health/--metrics"), e))?;
    l.set_nonblocking(true)
        .map_err(|e| Error::io("health listener", e))?;
    Ok(l)
}

/// Serves the endpoints until the daemon exits.
pub async fn serve(listener: std::net::TcpListener, serves: Serves, ctx: Rc<Context>) {
    let addr = listener.local_addr().ok();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::info!("health endpoint: {e}");
            return;
        }
    };
    if let Some(a) = addr {
        let paths = match (serves.health, serves.metrics) {
            (true, true) => "/healthz, /readyz, /metrics",
            (true, false) => "/healthz, /readyz",
            _ => "/metrics",
        };
        log::info!("endpoint on http://{a} ({paths})");
    }
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let ctx = ctx.clone();
                tokio::task::spawn_local(async move {
                    let _ = tokio::time::timeout(DEADLINE, exchange(stream, serves, &ctx)).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn exchange(mut stream: TcpStream, serves: Serves, ctx: &Context) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            let a = json(
                431,
                "Request Header Fields Too Large",
                r#"{"error":"request head over 8 KiB"}"#.into(),
                true,
            );
            let r = reply(a.status, a.reason, a.kind, &a.body, a.with_body);
            return stream.write_all(&r).await;
        }
    }
    let a = answer(&head, serves, ctx).await;
    let r = reply(a.status, a.reason, a.kind, &a.body, a.with_body);
    stream.write_all(&r).await?;
    stream.shutdown().await
}

/// What one request gets: status, reason phrase, content type, body, and
/// whether to send the body (not for HEAD).
struct Answer {
    status: u16,
    reason: &'static str,
    kind: &'static str,
    body: String,
    with_body: bool,
}

/// A JSON answer (its body ends with a newline).
fn json(status: u16, reason: &'static str, body: String, with_body: bool) -> Answer {
    Answer {
        status,
        reason,
        kind: "application/json",
        body: body + "\n",
        with_body,
    }
}

async fn answer(head: &[u8], serves: Serves, ctx: &Context) -> Answer {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return json(
            400,
            "Bad Request",
            r#"{"error":"not an HTTP request"}"#.into(),
            true,
        );
    };
    if !version.starts_with("HTTP/1.") {
        return json(
            400,
            "Bad Request",
            r#"{"error":"HTTP/1.x only"}"#.into(),
            true,
        );
    }
    let with_body = method != "HEAD";
    let path = target.split('?').next().unwrap_or_default();
    let known = match path {
        "/healthz" | "/readyz" => serves.health,
        "/metrics" => serves.metrics,
        _ => false,
    };
    if !known {
        let try_ = match (serves.health, serves.metrics) {
            (true, true) => "/healthz, /readyz or /metrics",
            (true, false) => "/healthz or /readyz",
            _ => "/metrics",
        };
        return json(
            404,
            "Not Found",
            format!(r#"{{"error":"unknown path; try {try_}"}}"#),
            with_body,
        );
    }
    if method != "GET" && method != "HEAD" {
        return json(
            405,
            "Method Not Allowed",
            r#"{"error":"GET or HEAD only"}"#.into(),
            true,
        );
    }
    if path == "/metrics" {
        let texts = ctx.sup.gather_app_metrics(None).await;
        let mut snap = ctx.sup.metrics_snapshot(None);
        snap.app_texts = texts;
        let text = crate::metrics::prom::render(&snap);
        return Answer {
            status: 200,
            reason: "OK",
            kind: crate::metrics::prom::CONTENT_TYPE,
            body: text,
            with_body,
        };
    }
    let apps = ctx.sup.health();
    if path == "/healthz" {
        let body = serde_json::json!({
            "status": "ok",
            "pid": std::process::id(),
            "uptime_ms": ctx.started.elapsed().as_millis() as u64,
            "apps": apps.len(),
        });
        return json(200, "OK", body.to_string(), with_body);
    }
    let (ready, reason) = readiness(&apps, ctx.sup.is_closing());
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "reason": reason,
        "apps": apps.iter().map(|a| serde_json::json!({
            "name": a.name,
            "instances": a.instances,
            "wanted": a.wanted,
            "ready": a.ready,
            "errored": a.errored,
        })).collect::<Vec<_>>(),
    });
    if ready {
        json(200, "OK", body.to_string(), with_body)
    } else {
        json(503, "Service Unavailable", body.to_string(), with_body)
    }
}

/// Ready, or why not: every app has all the instances it is meant to run
/// online and ready (an app stopped on purpose wants none), and at least
/// one instance is meant to run.
pub fn readiness(apps: &[AppHealth], closing: bool) -> (bool, Option<String>) {
    if closing {
        return (false, Some("herd is shutting down".into()));
    }
    if apps.iter().all(|a| a.wanted == 0) {
        let why = if apps.is_empty() {
            "no apps"
        } else {
            "every app is stopped"
        };
        return (false, Some(why.into()));
    }
    let behind: Vec<String> = apps
        .iter()
        .filter(|a| a.ready < a.wanted)
        .map(|a| {
            let mut s = format!("{}: {} of {} instances ready", a.name, a.ready, a.wanted);
            if a.errored > 0 {
                s.push_str(&format!(" ({} errored)", a.errored));
            }
            s
        })
        .collect();
    if behind.is_empty() {
        (true, None)
    } else {
        (false, Some(behind.join("; ")))
    }
}

fn reply(status: u16, reason: &str, kind: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, wanted: u32, ready: u32, errored: u32) -> AppHealth {
        AppHealth {
            name: name.into(),
            instances: wanted.max(1),
            wanted,
            ready,
            errored,
            alive: ready,
        }
    }

    #[test]
    fn addresses_default_to_loopback_and_others_need_the_public_flag() {
        assert_eq!(
            parse_addr("9615", false).unwrap(),
            "127.0.0.1:9615".parse().unwrap()
        );
        assert_eq!(
            parse_addr("localhost:80", false).unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            parse_addr("[::1]:9", false).unwrap(),
            "[::1]:9".parse().unwrap()
        );
        let e = parse_addr("0.0.0.0:9615", false).unwrap_err().to_string();
        assert!(e.contains("--health-public"), "{e}");
        assert!(parse_addr("0.0.0.0:9615", true).is_ok());
        let e = parse_addr("nope", false).unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("--health"), "{e}");
        assert!(parse_addr("127.0.0.1:99999", false).is_err());
    }

    #[test]
    fn ready_only_when_every_wanted_instance_is() {
        assert_eq!(readiness(&[], false), (false, Some("no apps".into())));
        assert_eq!(readiness(&[app("a", 2, 2, 0)], false), (true, None));
        let (ok, why) = readiness(&[app("a", 2, 2, 0), app("b", 2, 1, 1)], false);
        assert!(!ok);
        assert_eq!(why.unwrap(), "b: 1 of 2 instances ready (1 errored)");
        // An app stopped on purpose wants nothing; all stopped is not ready.
        assert_eq!(
            readiness(&[app("a", 2, 2, 0), app("s", 0, 0, 0)], false),
            (true, None)
        );
        assert!(!readiness(&[app("s", 0, 0, 0)], false).0);
        assert!(!readiness(&[app("a", 2, 2, 0)], true).0, "shutting down");
    }
}

//! Measurements herd takes of the workers it runs: fairness indexes
//! ([`fairness`]), HDR histograms many threads record into ([`hist`]), one
//! app's live figures ([`app`]), and their Prometheus text form ([`prom`]).
//!
//! Nothing here touches sockets, processes or files: the data plane and
//! the supervisor record into these types, the daemon reads them into the
//! wire's [`crate::protocol::metrics::Snapshot`], and renderers (the CLI,
//! the `/metrics` endpoint, `herd monit`) read that.

pub mod app;
pub mod fairness;
pub mod hist;
pub mod merge;
pub mod prom;

//! Measurements herd computes about the workers it runs: today the fairness
//! indexes that say whether the kernel spread connections evenly across a
//! cluster; later counters, latency histograms and exporters.
//!
//! This module is pure arithmetic over numbers other modules collected. It
//! touches no sockets, processes or files, so every function here can be
//! unit-tested exactly and reused by the bench report and the daemon alike.

pub mod fairness;

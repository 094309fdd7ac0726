//! herd: a process manager and cluster launcher for many-core Linux hosts.
//!
//! The binary (`src/main.rs`) only parses arguments and maps errors to exit
//! codes; everything else lives in these modules.
#![deny(clippy::undocumented_unsafe_blocks)]
// Every unsafe block is in `sys` (allowed there, and only there).
#![deny(unsafe_code)]

pub mod accept; // how connections reach workers: the fdpass data plane, reuseport and shared listeners
pub mod bench; // `herd bench`: the built-in hello worker, load generator, report
pub mod cli; // argument parsing, one file per verb family, output formatting
pub mod client; // the daemon's client: connect (starting the daemon on demand), handshake, one request
pub mod config; // AppSpec: what to run and how, resolved from CLI flags
pub mod daemon; // socket server, registry, request handlers, daemon lifecycle
pub mod error; // the library's typed errors and their hints
pub mod fdpass; // channels to workers: herd protocol + Node cluster protocol
pub mod home; // $HERD_HOME layout: socket, pid, lock, logs
pub mod http; // HTTP/1.x response framing for herd's own clients (bench load, warm-up)
pub mod logs; // app log capture from pipes, rotation, timestamps, tail/follow for `herd logs`
pub mod metrics; // fairness indexes (and later counters, histograms, exporters)
pub mod protocol; // request/response types, framing, version handshake
pub mod supervisor; // instance state machine, spawning, restarts, process stats
#[allow(unsafe_code)]
pub mod sys; // every syscall and unsafe block, each with a SAFETY comment
pub mod table; // aligned text tables for the terminal
#[doc(hidden)]
pub mod testing; // SKIP lines, and HERD_REQUIRE turning them into failures
pub mod worker; // library side for Rust workers: receive connections over HERD_CHANNEL_FD

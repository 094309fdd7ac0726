//! Integration tests: the real `herd` binary and a real daemon, each test in
//! its own temporary `HERD_HOME`, on ephemeral ports. One test binary (fast
//! to build); one module per area.

mod harness;

mod activation;
mod badinput;
mod bench;
mod bench_scenarios;
mod docs;
mod dump;
mod ecosystem;
mod fdpass;
mod layout;
mod lifecycle;
mod logs;
mod metrics;
mod node;
mod pm2verbs;
mod protocol;
mod ready;
mod reload;
mod replay;
mod reuseport;
mod run;
mod runtimes;
mod startup;
mod takeover;
mod watch;

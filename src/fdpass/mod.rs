//! The channel between the daemon and each worker in `fdpass` mode: accepted
//! connections travel as descriptors (`SCM_RIGHTS`), closes (and Node's
//! acks) come back. Two wire protocols: herd's own ([`herd`], for Rust/C/Go/any worker,
//! see docs/PROTOCOL.md) and Node's cluster IPC ([`node`], so unmodified Node
//! apps believe herd is their cluster primary).

pub mod channel;
pub mod herd;
pub mod node;

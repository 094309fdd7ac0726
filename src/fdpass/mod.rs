//! The wire protocols of the channel between the daemon and each worker in
//! `fdpass` mode: accepted connections travel as descriptors
//! (`SCM_RIGHTS`), closes (and Node's acks) come back. Two codecs: herd's
//! own ([`herd`], for Rust/C/Go/any worker, see docs/PROTOCOL.md) and Node's
//! cluster IPC ([`node`], so unmodified Node apps believe herd is their
//! cluster primary). The daemon's reader of each channel is
//! `accept::channel`.

pub mod herd;
pub mod node;

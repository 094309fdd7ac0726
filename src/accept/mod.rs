//! How connections reach workers. Today: `reuseport`, one `SO_REUSEPORT`
//! listener per instance, owned by the daemon and handed to the worker as
//! fd 3. Next: the io_uring acceptor threads and dispatch policies of
//! `fdpass` mode (DESIGN.md, "Distribution modes").

pub mod reuseport;

//! `sandbox-init`: PID 1 inside every sandboxd sandbox container.
//!
//! The library half is only the wire [`protocol`] shared with the daemon, so both ends
//! are typed by the same code. The binary half (`main.rs` and its modules) is the init
//! process itself: it blocks signals, reaps every child, forwards SIGTERM, and serves
//! exec and file operations over a unix socket.

pub mod protocol;

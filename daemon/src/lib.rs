//! sandboxd: a local sandbox runtime for coding agents.
//!
//! A map of the crate, floor by floor: a module imports only from floors below its own
//! (`docs/ARCHITECTURE.md` draws them and lists what each may import; the test
//! `tests/floors.rs` holds the code to it).
//!
//! - Leaves and engines: [`names`] (ids, accounts, mount paths, labels, runtime names)
//!   and [`rfc3339`] (times as both APIs write them), which import nothing of the
//!   daemon; [`store`] (the SQLite state), [`docker`] (the engine, for lifecycle only),
//!   [`firewall`] (egress rules), [`init_client`] (sandbox-init over its unix socket),
//!   [`auth`] (the API key), [`console`] (the embedded web console).
//! - Services: [`image`] (the default image, online or offline), [`readiness`]
//!   (start-up progress for `/healthz`), [`threads`] (threads and the stream of a
//!   running turn), [`tokens`] (chat JWTs), [`proxy`] (the model proxy), [`scripted`]
//!   (a scripted model for hermetic runs), [`agents`] (agent definitions and hooks).
//! - [`runner`]: one turn = one run of a runtime's CLI (Claude Code, Codex), translated
//!   to the UI message stream.
//! - [`sandbox`]: the sandbox domain; `Sandboxes` is its one door.
//! - Surfaces: [`api`] (the relay's HTTP API), [`e2b`] (E2B's control plane and envd),
//!   [`config`] (the command line; with `main`, the only reader of the environment),
//!   [`cli`] (the client commands), and [`server`]: `run(config, shutdown)`, wiring
//!   everything and serving HTTP.

pub mod agents;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod docker;
pub mod e2b;
pub mod firewall;
pub mod image;
pub mod init_client;
pub mod names;
pub mod proxy;
pub mod readiness;
pub mod rfc3339;
pub mod runner;
pub mod sandbox;
pub mod scripted;
pub mod server;
pub mod store;
pub mod threads;
pub mod tokens;
pub mod usd;

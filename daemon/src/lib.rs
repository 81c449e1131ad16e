//! sandboxd: a local sandbox runtime for coding agents.
//!
//! A map of the crate:
//! - [`config`]: the command line and [`config::Config`]; the only reader of the
//!   environment besides `main`.
//! - [`server`]: `run(config, shutdown)`, wiring everything and serving HTTP.
//! - [`api`]: the HTTP API (axum): handlers, [`api::ApiError`], auth.
//! - [`names`]: the names every floor shares (ids, accounts, mount paths, labels,
//!   runtime names); a leaf.
//! - [`sandbox`]: the sandbox domain: create, exec, delete; one Docker container each.
//! - [`agents`]: agent definitions (`agents/<slug>.json`).
//! - [`docker`]: the Docker engine, for lifecycle only.
//! - [`image`]: building the default image, online or offline.
//! - [`init_client`]: talking to sandbox-init over its unix socket.
//! - [`readiness`]: start-up progress, reported by `/healthz`.
//! - [`rfc3339`]: times as both APIs write and read them; a leaf.
//! - [`auth`]: the API key.
//! - [`tokens`]: short-lived chat tokens (JWT) scoped to agents and a user.
//! - [`console`]: the web console at `/`: the embedded single-page app of `console/`.
//! - [`cli`]: `sandboxd chat`, a terminal client for one turn.
//! - [`threads`]: threads and the stream of a running turn.
//! - [`runner`]: one turn = one run of a runtime's CLI, translated to the UI
//!   message stream.
//! - [`proxy`]: the model proxy sandboxes reach the model through.
//! - [`scripted`]: `sandboxd scripted-model`, a scripted Messages API for hermetic runs.

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

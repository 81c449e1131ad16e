//! The hostile-sandbox suite: each test plays a process inside a sandbox (root in the
//! container included) or a client with a token, attacks the boundary the README's
//! security model promises, and asserts the attack fails while the daemon keeps serving
//! everyone else. One module per surface under attack.

mod codex;
mod disk;
mod e2b_processes;
mod exec_kill;
mod files;
mod get_host;
mod git;
mod initsock;
mod kernel;
mod listeners;
mod loader;
mod network;
mod pause;
mod proxy;
mod ptys;
mod runner;
mod sudo;
mod tokens;

//! `sandbox-init`: PID 1 of a sandbox container.
//!
//! `sandbox-init [--socket-dir DIR] [--user NAME] [--uid N] [--home PATH]`
//! (`sandbox-init --shim -- COMMAND…` is the first process of an exec: see `shim`)
//!
//! Blocks every signal, makes sure the sandbox account exists, serves the socket on a
//! thread, and runs the reaper loop on the main thread until a termination signal.

mod accounts;
mod dial;
mod env;
mod exec;
mod failure;
mod files;
mod kill;
mod pty;
mod reaper;
mod server;
mod shim;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;

/// Command-line settings.
#[derive(Debug)]
struct Args {
    socket_dir: PathBuf,
    user: String,
    uid: u32,
    home: String,
}

const USAGE: &str = "usage: sandbox-init [--socket-dir DIR] [--user NAME] [--uid N] [--home PATH]";

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        socket_dir: PathBuf::from("/.sandboxd/run"),
        user: "user".into(),
        uid: 1000,
        home: "/home/user".into(),
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--socket-dir" => args.socket_dir = PathBuf::from(value()?),
            "--user" => args.user = value()?,
            "--uid" => args.uid = value()?.parse().map_err(|e| format!("--uid: {e}"))?,
            "--home" => args.home = value()?,
            "--version" => {
                println!("sandbox-init {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dashes, command @ ..] = argv.as_slice() {
        if flag == "--shim" && dashes == "--" {
            shim::run(command);
        }
    }
    // Before any thread exists, so every thread inherits the mask.
    let signals = reaper::block_all_signals();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sandbox-init: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = accounts::ensure_account(&args.user, args.uid, &args.home) {
        eprintln!("sandbox-init: cannot set up the account {}: {e}", args.user);
        std::process::exit(1);
    }
    env::init(&args.socket_dir);
    let listener = match server::bind(&args.socket_dir) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "sandbox-init: cannot listen in {}: {e}",
                args.socket_dir.display()
            );
            std::process::exit(1);
        }
    };
    let registry = Arc::new(reaper::Registry::default());
    {
        let registry = registry.clone();
        let spawned = std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || server::serve(listener, registry));
        if let Err(e) = spawned {
            eprintln!("sandbox-init: cannot start the server thread: {e}");
            std::process::exit(1);
        }
    }
    std::process::exit(reaper::run(signals, &registry));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(
            (a.user.as_str(), a.uid, a.home.as_str()),
            ("user", 1000, "/home/user")
        );
        let a = parse(&[
            "--socket-dir",
            "/x",
            "--user",
            "root",
            "--uid",
            "0",
            "--home",
            "/root",
        ])
        .expect("flags");
        assert_eq!(a.socket_dir, PathBuf::from("/x"));
        assert_eq!((a.user.as_str(), a.uid), ("root", 0));
        assert!(parse(&["--uid", "x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--user"]).is_err());
    }
}

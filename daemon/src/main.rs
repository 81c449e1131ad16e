//! The `sandboxd` binary: parses flags into a `Config` and calls `server::run`.

use clap::Parser;
use sandboxd::config::{Cli, Command, Config};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() {
    // An error ends the process with what happened and what to do, never a backtrace.
    if let Err(e) = run() {
        eprintln!("sandboxd: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    sandboxd::config::unset_empty_settings();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SANDBOXD_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log on a full disk must not take the daemon down: the default reports a
        // failed write with `eprintln!`, which panics the task that logged.
        .log_internal_errors(false)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let config = Config::from_serve_args(args)?;
                raise_fd_limit();
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                sandboxd::server::run(config, shutdown).await
            }
            Command::Chat(args) => {
                let code = sandboxd::cli::chat(args).await?;
                std::process::exit(code);
            }
            Command::ScriptedModel(args) => {
                let text = std::fs::read_to_string(&args.script).map_err(|e| {
                    anyhow::anyhow!("reading the script {}: {e}", args.script.display())
                })?;
                let replies = sandboxd::scripted::parse_script(&text)
                    .map_err(|e| anyhow::anyhow!("the script {}: {e}", args.script.display()))?;
                let listener = tokio::net::TcpListener::bind(args.listen).await?;
                // The first line of stdout is the address, for scripts and tests.
                println!("listening on http://{}", listener.local_addr()?);
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                let logs = sandboxd::scripted::Logs {
                    bodies: args.log,
                    headers: args.headers_log,
                };
                sandboxd::scripted::serve(listener, replies, logs, shutdown).await
            }
            Command::Env(args) => {
                let key = args.daemon.api_key()?;
                std::process::exit(sandboxd::cli::admin::env(args, key).await?);
            }
            Command::Reload(args) => {
                let key = args.api_key()?;
                std::process::exit(sandboxd::cli::admin::reload(args, key).await?);
            }
            Command::Prepare(args) => {
                let config = Config::from_serve_args(args)?;
                sandboxd::server::prepare_image(&config).await
            }
            Command::Ls(args) => std::process::exit(sandboxd::cli::sandboxes::ls(args).await?),
            Command::Exec(args) => std::process::exit(sandboxd::cli::sandboxes::exec(args).await?),
            Command::Rm(args) => std::process::exit(sandboxd::cli::sandboxes::rm(args).await?),
            Command::Shell(args) => std::process::exit(sandboxd::cli::shell::shell(args).await?),
            Command::Doctor(args) => std::process::exit(sandboxd::cli::admin::doctor(args).await?),
            Command::State(args) => std::process::exit(sandboxd::cli::admin::state(args)?),
        }
    })
}

/// Raises the soft limit on open files to the hard limit: every sandbox, connection
/// and stream holds descriptors, and the common soft default (1,024) is a few hundred
/// busy sandboxes. The model proxy's connection budget is derived from the result.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(
            "open-file limit unknown: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        tracing::info!("open-file limit: {}", limit.rlim_cur);
        return;
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the hard
    // one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        tracing::warn!(
            "open-file limit stays {before}: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    tracing::info!(
        "open-file limit: raised from {before} to {}",
        limit.rlim_max
    );
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    token.cancel();
}

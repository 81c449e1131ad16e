//! `run(config, shutdown)`: wires the pieces together and serves until shutdown.
//!
//! The HTTP listener comes up first; connecting to the Docker engine and preparing the
//! default image continue in the background and are reported by `GET /healthz`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::agents::code::LoaderSettings;
use crate::agents::watch::AgentFiles;
use crate::agents::{load_dir, Agents};
use crate::api::{app, AppState};
use crate::auth::{ApiKey, KeySource};
use crate::config::Config;
use crate::proxy::ModelProxy;
use crate::readiness::Readiness;
use crate::sandbox::{QuotaLimits, Sandboxes, Settings};
use crate::store::Store;

mod backups;
mod kernel;
mod listen;
mod prepare;
pub use prepare::prepare_image;
use prepare::{check_layers, expire_idle, fd_limit, prepare};

/// How long running turns get to finish after a shutdown signal before they are
/// stopped.
const TURN_GRACE: Duration = Duration::from_secs(10);
/// How long streams get to deliver their last events after the turns ended.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            config.state_dir.display()
        )
    })?;
    let state_dir = config.state_dir.canonicalize()?;
    // It names every sandbox and holds their disks, tokens and the store: the daemon's
    // own (the engine, as root, still mounts from it).
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state_dir)?.permissions().mode();
        anyhow::ensure!(
            mode & 0o1002 == 0,
            "the state directory {} is shared (mode {:o}): give the daemon a directory of \
             its own",
            state_dir.display(),
            mode & 0o7777
        );
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("closing {} to other accounts", state_dir.display()))?;
    }
    // Before anything in it is touched: one daemon per state directory.
    let _lock = crate::store::lock::lock(&state_dir).map_err(anyhow::Error::msg)?;
    let (api_key, source) = ApiKey::load_or_create(config.api_key.clone(), &state_dir)
        .context("loading the API key")?;
    match source {
        KeySource::Environment => tracing::info!("API key: from SANDBOXD_API_KEY"),
        KeySource::File(path) => tracing::info!("API key: stored in {}", path.display()),
    }

    let signer = crate::tokens::Signer::load_or_create(config.token_secret.clone(), &state_dir)
        .context("loading the token secret")?;

    let store_path = state_dir.join("state.db");
    let store = match Store::open(&store_path) {
        Ok(store) => Arc::new(store),
        Err(crate::store::StoreError::Damaged(problem)) => {
            anyhow::bail!(backups::damaged(&state_dir, &problem))
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", store_path.display())),
    };
    store.set_history_limit(config.thread_history_mb << 20);
    tracing::info!("state: {}", store_path.display());

    import_legacy_agents(&state_dir, &store)?;

    let (files, mut problems) =
        load_dir(&config.agents_dir).unwrap_or_else(|p| (Default::default(), vec![p]));
    let (agents, deployed_problems) = Agents::with_deployed(files, store.clone())?;
    problems.extend(deployed_problems);
    for p in &problems {
        tracing::error!(
            "agent definition {} skipped: {}",
            p.path.display(),
            p.message
        );
    }
    let agents = Arc::new(agents);
    tracing::info!(
        "agents: {} ({}; files in {}, deployed in the state directory)",
        agents.list().len(),
        agents
            .list()
            .iter()
            .map(|(slug, _, _)| slug.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        config.agents_dir.display(),
    );

    let init_bin = find_init_bin(&config)?;
    tracing::info!("sandbox-init: {}", init_bin.display());

    kernel::size_host_budgets(
        Path::new("/proc/sys"),
        config.max_sandboxes,
        config.pids_limit,
    );
    let readiness = Arc::new(Readiness::default());
    let settings = Settings {
        image: config.image.clone(),
        init_bin,
        sandboxes_dir: state_dir.join("sandboxes"),
        instance: instance_label(&state_dir),
        labels: config.labels.clone(),
        exec_output_limit: config.exec_output_limit,
        exec_timeout_ms: config.exec_timeout_ms,
        image_sources: config.image_sources(&state_dir),
        host_ca: crate::sandbox::hostca::HostCa::load(
            config.trust_host_ca,
            config.host_ca_bundle.as_deref(),
            &state_dir,
        )?
        .map(Arc::new),
        claude_bin: config.claude_bin.clone(),
        codex_bin: config.codex_bin.clone(),
        default_memory_mb: config.default_memory_mb,
        default_cpus: config.default_cpus,
        disk_mb: config.disk_mb,
        reserve_disk_mb: config.reserve_disk_mb,
        state_dir: state_dir.clone(),
        pids_limit: config.pids_limit,
        sandbox_timeout_ms: config.sandbox_timeout_ms,
        runtime: config.runtime.clone(),
        network: config.network.clone(),
        quota: QuotaLimits {
            total: config.max_sandboxes,
            per_owner: config.max_sandboxes_per_user,
        },
        pool: config.pool.clone(),
        pause_after: Some(Duration::from_secs(config.pause_after_secs)).filter(|d| !d.is_zero()),
        agent_tool_timeout_ms: config.agent_tool_timeout_ms,
    };
    if let Some(path) = &config.claude_bin {
        // Docker would silently create an empty directory at a missing bind source.
        anyhow::ensure!(
            path.is_file(),
            "--claude-bin {} does not exist",
            path.display()
        );
    }
    if let Some(path) = &config.codex_bin {
        anyhow::ensure!(
            path.is_file(),
            "--codex-bin {} does not exist",
            path.display()
        );
        tracing::info!(
            "codex: {} (mounted read-only into sandboxes)",
            path.display()
        );
    }
    match &config.claude_bin {
        Some(path) => tracing::info!(
            "claude: {} (mounted read-only into sandboxes)",
            path.display()
        ),
        None => tracing::warn!(
            "claude: no --claude-bin and none on PATH; sandboxes must have `claude` in their image"
        ),
    }
    let proxy = ModelProxy::new(
        crate::proxy::Upstreams {
            anthropic: (
                config.model_upstream.clone(),
                config.upstream_api_key.clone(),
            ),
            openai: (
                config.openai_upstream.clone(),
                config.openai_api_key.clone(),
            ),
        },
        config.max_sandbox_budget_usd,
    );
    if let Some(budget) = config.max_sandbox_budget_usd {
        tracing::info!("model budget: ${budget} per sandbox");
    }
    proxy.persist_to(store.clone());
    tracing::info!(
        "model upstream: {}; OpenAI upstream: {}",
        config.model_upstream,
        config.openai_upstream
    );
    std::fs::create_dir_all(&settings.sandboxes_dir)?;
    // Each sandbox's socket lives at <state>/sandboxes/<id>/run/init.sock, and unix
    // socket paths are limited to 108 bytes.
    let longest = settings
        .sandboxes_dir
        .join("sb_xxxxxxxxxxxxxxxx/run")
        .join(sandbox_init::protocol::SOCKET_NAME);
    anyhow::ensure!(
        longest.as_os_str().len() < 108,
        "the state directory {} is too deep for unix socket paths (108 bytes); \
         choose a shorter --state-dir",
        state_dir.display()
    );
    let agent_files = Arc::new(AgentFiles::new(
        config.agents_dir.clone(),
        LoaderSettings {
            image: config.image.clone(),
            state_dir: state_dir.clone(),
            labels: settings
                .labels
                .iter()
                .cloned()
                .chain([(
                    crate::names::LABEL_INSTANCE.to_owned(),
                    settings.instance.clone(),
                )])
                .collect(),
        },
    ));
    let sandboxes = Arc::new(Sandboxes::new(
        settings,
        agents.clone(),
        readiness.clone(),
        proxy.clone(),
        store.clone(),
    ));

    let restored = sandboxes.restore()?;
    if restored > 0 {
        tracing::info!("restored {restored} sandbox(es) from the state database");
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let local = listener.local_addr()?;
    let max_connections = listen::connection_budget(fd_limit());
    tracing::info!("listening on http://{local} (at most {max_connections} connections)");
    if crate::console::built() {
        tracing::info!("web console: http://{local}/ (sign in with the API key)");
    } else {
        tracing::info!("web console: not built into this binary (scripts/serve builds it)");
    }

    let prepare = tokio::spawn(prepare(
        sandboxes.clone(),
        readiness.clone(),
        proxy,
        config.image.clone(),
        agent_files.clone(),
        shutdown.child_token(),
    ));
    let watch_readiness = readiness.clone();
    let watch = tokio::spawn(agent_files.clone().watch(
        move || watch_readiness.engine().cloned(),
        agents,
        shutdown.child_token(),
    ));

    let expiry = tokio::spawn(expire_idle(sandboxes.clone(), shutdown.child_token()));
    let layers = tokio::spawn(check_layers(sandboxes.clone(), shutdown.child_token()));
    let backups_dir = state_dir.join(crate::store::backup::DIR);
    let backup = tokio::spawn(backups::every(
        store.clone(),
        sandboxes.clone(),
        backups_dir.clone(),
        shutdown.child_token(),
    ));
    // Ends at shutdown, after removing every warm container.
    let pool = tokio::spawn(sandboxes.clone().run_pool(shutdown.child_token()));

    let e2b = match config.e2b_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for the E2B API on {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(
                "E2B API: http://{local} (E2B_API_URL and E2B_SANDBOX_URL; E2B_API_KEY is the API key)"
            );
            let state = crate::e2b::E2bState::new(
                sandboxes.clone(),
                api_key.clone(),
                signer.clone(),
                format!("localhost:{}", local.port()),
                config.max_body_bytes,
            )
            .with_base_sudo(config.e2b_base_sudo);
            Some(tokio::spawn(listen::serve(
                "E2B API",
                listener,
                crate::e2b::app(state),
                max_connections,
                shutdown.clone(),
            )))
        }
        None => None,
    };

    let sandboxes_for_shutdown = sandboxes.clone();
    let state = AppState {
        sandboxes,
        readiness,
        api_key,
        signer,
        max_body_bytes: config.max_body_bytes,
        cors_origins: config.cors_origins.clone(),
        agent_problems: Arc::new(problems),
        agent_files,
    };
    let server = listen::serve(
        "API",
        listener,
        app(state),
        max_connections,
        shutdown.clone(),
    );
    // Open streams (event followers) would hold a graceful shutdown forever: after
    // the signal, running turns get a bounded time to end (then are stopped, their
    // clients told), streams a moment to deliver that, and the daemon exits.
    let draining = sandboxes_for_shutdown.clone();
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            let stopped = draining.drain_turns(TURN_GRACE).await;
            if stopped > 0 {
                tracing::warn!("stopped {stopped} turn(s) still running after {TURN_GRACE:?}");
            }
            tokio::time::sleep(FLUSH_GRACE).await;
            let _ = drained_tx.send(());
        }
    };
    let serve = {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = server => {}
                _ = drained_rx => {}
            }
            shutdown.cancel();
        }
    };
    // Turns are drained even when no connection is open (background turns).
    tokio::join!(serve, drain);
    prepare.abort();
    expiry.abort();
    layers.abort();
    backup.abort();
    if let Some(e2b) = e2b {
        e2b.abort();
    }
    if let Err(e) = pool.await {
        tracing::warn!("warm pool: {e}");
    }
    sandboxes_for_shutdown.close_pool().await;
    watch.abort();
    if let Some(firewall) = sandboxes_for_shutdown.firewall() {
        firewall.close().await;
    }
    let unsaved = sandboxes_for_shutdown.write_back_threads();
    if unsaved > 0 {
        tracing::error!(
            "{unsaved} thread(s) hold messages the store still refuses (is the state disk \
             full?); they are lost with this stop"
        );
    }
    backups::take(&store, &sandboxes_for_shutdown, &backups_dir, "at stop").await;
    tracing::info!("stopped");
    Ok(())
}

/// Before the state database, deployed agents were files in `<state>/agents`: move
/// them into the store once (the directory is renamed `agents.imported`).
fn import_legacy_agents(state_dir: &Path, store: &Store) -> anyhow::Result<()> {
    let dir = state_dir.join("agents");
    if !dir.is_dir() {
        return Ok(());
    }
    let (legacy, problems) = load_dir(&dir).unwrap_or_else(|p| (Default::default(), vec![p]));
    let known: Vec<String> = store.agents()?.into_iter().map(|(slug, _)| slug).collect();
    for (slug, def) in legacy {
        if !known.contains(&slug) {
            store.put_agent(&slug, &serde_json::to_string(&def)?)?;
            tracing::info!(
                "agent {slug}: moved from {} into the state database",
                dir.display()
            );
        }
    }
    for p in problems {
        tracing::warn!("not imported: {}: {}", p.path.display(), p.message);
    }
    std::fs::rename(&dir, state_dir.join("agents.imported"))
        .with_context(|| format!("renaming {}", dir.display()))?;
    Ok(())
}

/// The instance label: a short hash of the state directory, so two daemons with
/// different state never touch each other's containers.
pub fn instance_label(state_dir: &Path) -> String {
    let digest = Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Finds the static sandbox-init binary: the flag, else the cargo target directory's
/// static build, else beside this executable.
fn find_init_bin(config: &Config) -> anyhow::Result<PathBuf> {
    if let Some(path) = &config.init_bin {
        anyhow::ensure!(
            path.is_file(),
            "--init-bin {} does not exist",
            path.display()
        );
        return Ok(path.canonicalize()?);
    }
    let mut candidates = Vec::new();
    if let Some(dir) = config.current_exe.as_deref().and_then(Path::parent) {
        if let (Some(profile), Some(target)) = (dir.file_name(), dir.parent()) {
            candidates.push(
                target
                    .join("x86_64-unknown-linux-gnu")
                    .join(profile)
                    .join("sandbox-init"),
            );
        }
        candidates.push(dir.join("sandbox-init"));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize())
        .transpose()?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no sandbox-init binary found (looked at {}); build it with \
                 `RUSTFLAGS='-C target-feature=+crt-static' cargo build -p sandbox-init \
                 --target x86_64-unknown-linux-gnu` or pass --init-bin",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

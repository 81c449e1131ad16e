//! Getting the daemon ready and keeping it so: the engine, the default image, the
//! network, the model proxy and the firewall, set up again when the network goes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::agents::watch::AgentFiles;
use crate::config::Config;
use crate::docker::Engine;
use crate::firewall::Firewall;
use crate::proxy::ModelProxy;
use crate::readiness::{Phase, Readiness};
use crate::sandbox::{Attachment, Sandboxes};
use tokio_util::sync::CancellationToken;

/// How often a ready daemon checks that its network is still there (a health check or
/// a failed create checks at once).
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Gets the daemon ready (connects to the engine, re-adopts or removes containers of
/// an earlier run, builds the default image, sets up the network, the model proxy and
/// the firewall), retrying with a back-off until it succeeds; then watches the network
/// and does it again when the network is removed under it.
pub(super) async fn prepare(
    sandboxes: Arc<Sandboxes>,
    readiness: Arc<Readiness>,
    proxy: Arc<ModelProxy>,
    image: String,
    agent_files: Arc<AgentFiles>,
    shutdown: CancellationToken,
) {
    // The model proxy of the current network: kept while its address is the
    // network's gateway, replaced (on the same port when it can be) when it is not.
    let mut serving: Option<Serving> = None;
    loop {
        let mut delay = Duration::from_millis(500);
        loop {
            let mut result = prepare_once(&sandboxes, &readiness, &image).await;
            if result.is_ok() {
                // Agents written in code load in a container from the image just made.
                if let Some(engine) = readiness.engine() {
                    readiness.set_phase(Phase::Starting("loading the agents directory".into()));
                    agent_files.refresh(engine, sandboxes.agents(), false).await;
                }
            }
            if result.is_ok() {
                result =
                    attach_network(&sandboxes, &readiness, &proxy, &mut serving, &shutdown).await;
            }
            match result {
                Ok(()) => break,
                Err(e) => {
                    let message = format!("{e:#}");
                    tracing::error!("not ready: {message}; retrying in {delay:?}");
                    readiness.set_phase(Phase::Failed(message));
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        readiness.set_phase(Phase::Ready);
        tracing::info!("ready: sandboxes can be created");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(WATCH_EVERY) => {}
                () = readiness.recheck_requested() => {}
            }
            if let Err(why) = sandboxes.check_network().await {
                tracing::error!("not ready: {why}");
                readiness.set_phase(Phase::Failed(why));
                break;
            }
        }
    }
}

async fn prepare_once(
    sandboxes: &Sandboxes,
    readiness: &Readiness,
    image: &str,
) -> anyhow::Result<()> {
    let engine = match readiness.engine() {
        Some(engine) => engine.clone(),
        None => {
            readiness.set_phase(Phase::Starting("connecting to the Docker engine".into()));
            let engine = Engine::connect().await?;
            readiness.set_engine(engine.clone());
            engine
        }
    };
    let adopted = sandboxes.adopt().await?;
    if adopted != Default::default() {
        tracing::info!(
            "sandboxes from the last run: {} re-adopted, {} lost their container; \
             {} leftover container(s) removed, {} without a record quarantined",
            adopted.kept,
            adopted.lost,
            adopted.removed,
            adopted.quarantined
        );
    }
    let progress = |line: &str| {
        tracing::info!("image: {line}");
        readiness.set_phase(Phase::Starting(format!("preparing {image}: {line}")));
    };
    crate::image::ensure_image(
        &engine,
        image,
        &sandboxes.settings().image_sources,
        &progress,
    )
    .await?;
    Ok(())
}

/// Expires idle sandboxes, and pauses those idle for `--pause-after-secs`, checking
/// every second; every five, looks after disk pressure (see `Sandboxes::check_disks`).
pub(super) async fn expire_idle(sandboxes: Arc<Sandboxes>, shutdown: CancellationToken) {
    for tick in 1u64.. {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        sandboxes.expire_idle().await;
        sandboxes.pause_idle().await;
        if tick % 5 == 0 {
            sandboxes.check_disks().await;
        }
    }
}

/// Measures what sandboxes wrote outside their disks every [`LAYERS_EVERY`], in a task
/// of its own: a walk of a large layer, or an engine slow to answer, never holds up
/// idle expiry.
pub(super) async fn check_layers(sandboxes: Arc<Sandboxes>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(LAYERS_EVERY) => {}
        }
        sandboxes.check_layers().await;
    }
}

/// How often [`check_layers`] measures.
const LAYERS_EVERY: Duration = Duration::from_secs(5);

/// The model proxy's listener: where it listens, and what stops it.
#[derive(Debug)]
struct Serving {
    address: std::net::SocketAddr,
    stop: CancellationToken,
}

/// Sets up the sandbox network (finding or creating it), starts the model proxy on
/// its gateway address, where containers reach the host, and installs the egress
/// firewall that leaves the proxy the one host service sandboxes can reach. Called
/// again after an engine hiccup or when the network was removed: the firewall is
/// replaced, and the proxy keeps its address (a CLI running a turn holds it), or
/// moves to the new gateway on the same port when the gateway changed.
async fn attach_network(
    sandboxes: &Sandboxes,
    readiness: &Readiness,
    proxy: &Arc<ModelProxy>,
    serving: &mut Option<Serving>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let engine = readiness
        .engine()
        .ok_or_else(|| anyhow::anyhow!("no Docker engine"))?;
    let name = &sandboxes.settings().network;
    readiness.set_phase(Phase::Starting(format!("setting up the network {name}")));
    let network = engine.ensure_network(name).await?;
    let gateway = network.gateway;
    let kept = serving
        .as_ref()
        .map(|s| s.address)
        .filter(|a| a.ip() == gateway);
    let (listener, address) = match kept {
        Some(address) => (None, address),
        None => {
            let port = serving.as_ref().map_or(0, |s| s.address.port());
            let bound = match tokio::net::TcpListener::bind((gateway, port)).await {
                Err(_) if port != 0 => tokio::net::TcpListener::bind((gateway, 0)).await,
                other => other,
            };
            let listener =
                bound.with_context(|| format!("binding the model proxy on {gateway}"))?;
            let address = listener.local_addr()?;
            (Some(listener), address)
        }
    };
    let firewall = Arc::new(
        Firewall::install(
            &sandboxes.settings().instance,
            &network.bridge,
            gateway,
            address.port(),
        )
        .await?,
    );
    let swept = firewall
        .sweep(|| async {
            engine
                .network_addresses(&network.id)
                .await
                .map_err(|e| tracing::warn!("not sweeping firewall rules: {e}"))
                .ok()
        })
        .await?;
    if swept > 0 {
        tracing::info!("firewall: removed {swept} rule(s) of sandboxes that are gone");
    }
    tracing::info!(
        "firewall: sandboxes on {} ({}) reach no host service but the model proxy, and no metadata address",
        network.name,
        network.bridge
    );
    if let Some(previous) = sandboxes.attach(Attachment {
        network,
        firewall: firewall.clone(),
    }) {
        previous.firewall.close().await;
    }
    sandboxes.reapply_firewall().await;
    let url = format!("http://{address}");
    let Some(listener) = listener else {
        tracing::info!("model proxy: still {url}");
        return Ok(());
    };
    let max_connections = crate::proxy::connection_budget(fd_limit());
    tracing::info!(
        "model proxy: {url} (reachable from sandboxes only; at most {max_connections} connections \
         shared, and {} each sandbox keeps)",
        crate::proxy::RESERVED_PER_SANDBOX
    );
    let stop = shutdown.child_token();
    let replaced = serving.replace(Serving {
        address,
        stop: stop.clone(),
    });
    if let Some(old) = replaced {
        old.stop.cancel();
    }
    tokio::spawn(proxy.clone().serve(listener, url, max_connections, stop));
    Ok(())
}

/// The soft limit on open files of this process (1,024, the common default, when it
/// cannot be read).
pub(super) fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}

/// Connects to the engine and ensures the configured image exists (`sandboxd prepare`).
pub async fn prepare_image(config: &Config) -> anyhow::Result<()> {
    let engine = Engine::connect().await?;
    let progress = |line: &str| tracing::info!("image: {line}");
    let state_dir = config
        .state_dir
        .canonicalize()
        .unwrap_or(config.state_dir.clone());
    let sources = config.image_sources(&state_dir);
    crate::image::ensure_image(&engine, &config.image, &sources, &progress).await?;
    tracing::info!("{} is ready", config.image);
    Ok(())
}

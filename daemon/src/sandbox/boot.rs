//! Starting a sandbox's container: its host directory and disk, the container (with
//! sandbox-init as its entrypoint, its limits and labels), and what the daemon must
//! know of it (its init's pid, its address). A cold create and the warm pool both
//! start containers this way, so a pooled sandbox is made exactly like a fresh one.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::disk::{self, Disk};
use super::Sandboxes;
use crate::docker::{ContainerSpec, Engine, EngineError, Limits, NetworkInfo};
use crate::init_client::InitError;
use crate::names::{mounts, LABEL_INSTANCE, LABEL_SANDBOX};

/// How long a new container has to answer on its socket.
pub(super) const INIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// A provisioning step that failed, for the sandbox's `error`.
#[derive(Debug)]
pub(super) struct StepError(pub(super) String);

impl From<InitError> for StepError {
    fn from(e: InitError) -> Self {
        Self(e.to_string())
    }
}

/// Why provisioning stopped.
#[derive(Debug)]
pub(super) enum Provision {
    /// The engine failed before anything existed: the create call fails.
    Engine(EngineError),
    /// A step failed: the sandbox goes to `error`.
    Step(StepError),
}

impl From<StepError> for Provision {
    fn from(e: StepError) -> Self {
        Self::Step(e)
    }
}

/// What a container is made of, besides its identity: everything here is fixed once
/// it exists, so it is also what sets warm-pool containers apart (see `pool`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shape {
    /// The image (a template's tag when the agent has one).
    pub image: String,
    /// Resource limits.
    pub limits: Limits,
    /// `sudo` works (no-new-privileges off; see the agent's Sandbox config).
    pub sudo: bool,
}

/// A started container.
#[derive(Debug, Clone)]
pub(super) struct Booted {
    /// Its id.
    pub container: String,
    /// Its init's host pid (the only peer the sandbox's client accepts).
    pub init_pid: u32,
    /// Its address on the sandbox network.
    pub address: Ipv4Addr,
}

/// Who a container is for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Identity<'a> {
    /// The sandbox id (`sb_…`), its label.
    pub id: &'a str,
    /// The container's name and hostname (`sbx-…`).
    pub name: &'a str,
    /// Its host directory.
    pub dir: &'a Path,
    /// The network it joins.
    pub network: &'a NetworkInfo,
}

/// What a cold create gives the container that a pooled one gets when claimed.
#[derive(Debug, Clone, Default)]
pub(super) struct Extras {
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// `/etc/hosts` lines.
    pub extra_hosts: Vec<String>,
    /// More labels.
    pub labels: Vec<(String, String)>,
}

impl Sandboxes {
    /// The limits a sandbox gets when its agent asks for `memory_mb` and `cpus`.
    pub(super) fn limits(&self, memory_mb: Option<u64>, cpus: Option<f64>) -> Limits {
        Limits {
            memory_bytes: memory_mb
                .or(Some(self.settings.default_memory_mb))
                .filter(|mb| *mb > 0)
                .map(|mb| (mb * 1024 * 1024) as i64),
            cpus: cpus
                .or(Some(self.settings.default_cpus))
                .filter(|c| *c > 0.0),
            pids: Some(self.settings.pids_limit).filter(|p| *p > 0),
        }
    }

    /// Makes the host directory and disk, then creates and starts the container.
    /// `started` hears of the container as soon as it exists (so a delete can remove
    /// it); `cancelled` is checked between steps.
    pub(super) async fn boot(
        &self,
        engine: &Engine,
        who: Identity<'_>,
        shape: &Shape,
        extras: Extras,
        cancelled: &CancellationToken,
        started: impl FnOnce(&str),
    ) -> Result<Booted, Provision> {
        let run_dir = who.dir.join("run");
        std::fs::create_dir_all(&run_dir)
            .and_then(|()| {
                std::fs::set_permissions(who.dir, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| StepError(format!("creating {}: {e}", run_dir.display())))?;

        let mut binds = vec![
            format!("{}:{}:ro", self.settings.init_bin.display(), mounts::INIT),
            format!("{}:{}", run_dir.display(), mounts::RUN),
        ];
        if let Some(claude) = &self.settings.claude_bin {
            binds.push(format!("{}:{}:ro", claude.display(), mounts::CLAUDE));
        }
        if let Some(codex) = &self.settings.codex_bin {
            binds.push(format!("{}:{}:ro", codex.display(), mounts::CODEX));
        }
        // The host's CA bundle, read-only, where the image's own differs (or always).
        let mut env = Vec::new();
        if let Some(ca) = &self.settings.host_ca {
            if ca.applies_to(engine, &shape.image).await {
                binds.push(ca.bind());
                env.extend(super::hostca::HostCa::env());
            }
        }
        env.extend(extras.env);
        let mut bound_volumes = Vec::new();
        if self.settings.disk_mb > 0 {
            let disk = Disk::new(who.dir);
            let begun = std::time::Instant::now();
            disk.create(self.settings.disk_mb)
                .await
                .map_err(|e| StepError(e.to_string()))?;
            tracing::debug!(sandbox = %who.id, ms = begun.elapsed().as_millis() as u64, "disk ready");
            binds.push(format!("{}:/dev/pts", disk.pts_dir().display()));
            let (home, rest) = disk::DIRS.split_first().expect("DIRS is not empty");
            bound_volumes.push((
                disk.host_dir(home.0).display().to_string(),
                home.1.to_owned(),
            ));
            for (name, target) in rest {
                binds.push(format!("{}:{target}", disk.host_dir(name).display()));
            }
        }
        check_cancelled(cancelled)?;

        let mut labels = HashMap::from([
            (LABEL_SANDBOX.to_owned(), who.id.to_owned()),
            (LABEL_INSTANCE.to_owned(), self.settings.instance.clone()),
        ]);
        labels.extend(self.settings.labels.iter().cloned());
        labels.extend(extras.labels);
        let spec = ContainerSpec {
            name: who.name.to_owned(),
            image: shape.image.clone(),
            entrypoint: vec![
                mounts::INIT.to_owned(),
                "--socket-dir".to_owned(),
                mounts::RUN.to_owned(),
            ],
            env,
            labels,
            binds,
            bound_volumes,
            hostname: who.name.to_owned(),
            working_dir: "/".to_owned(),
            network: who.network.id.clone(),
            runtime: self.settings.runtime.clone(),
            extra_hosts: extras.extra_hosts,
            limits: shape.limits,
            allow_setuid: shape.sudo,
            confined: None,
        };
        let container = engine.run(spec).await.map_err(Provision::Engine)?;
        started(&container);
        check_cancelled(cancelled)?;
        // The only process whose socket the daemon will talk to.
        let init_pid = engine
            .init_pid(&container)
            .await
            .map_err(Provision::Engine)?;
        let (address, _) = engine
            .container_address(&container, &who.network.name)
            .await
            .map_err(Provision::Engine)?;
        Ok(Booted {
            container,
            init_pid,
            address,
        })
    }
}

/// Fails once `cancelled` is (the sandbox was deleted while being made).
pub(super) fn check_cancelled(cancelled: &CancellationToken) -> Result<(), StepError> {
    if cancelled.is_cancelled() {
        Err(StepError("deleted while being created".into()))
    } else {
        Ok(())
    }
}

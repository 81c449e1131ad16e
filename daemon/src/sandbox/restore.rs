//! Starting again on an existing state directory: sandboxes and threads come back from
//! the store, and once the engine answers, each sandbox is matched with its container
//! by label (re-adopted), or marked `error` when its container is gone. What no stored
//! sandbox owns is quarantined (see `quarantine.rs`), except leftover warm containers,
//! which are removed.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::{Sandbox, SandboxError, Sandboxes, State, Status};
use crate::init_client::InitClient;
use crate::names::{is_sandbox_id, LABEL_INSTANCE, LABEL_SANDBOX};
use crate::store::{time, SandboxRow};
use crate::threads::Thread;

/// What [`Sandboxes::adopt`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// Sandboxes whose containers were found and kept.
    pub kept: usize,
    /// Sandboxes marked `error` because their containers were gone.
    pub lost: usize,
    /// Containers removed: warm ones never given to a client, and those of sandboxes
    /// the store says are over (errored or expired).
    pub removed: usize,
    /// Sandboxes no stored sandbox accounts for, stopped and kept.
    pub quarantined: usize,
}

impl Sandboxes {
    /// Loads every stored sandbox with its threads. A thread that was streaming when
    /// the daemon went down comes back as `error` ("interrupted by a daemon restart").
    pub fn restore(&self) -> Result<usize, SandboxError> {
        let rows = self.store.sandboxes()?;
        let count = rows.len();
        for row in rows {
            let sandbox = self.sandbox_from_row(row)?;
            self.insert(Arc::new(sandbox));
        }
        Ok(count)
    }

    fn sandbox_from_row(&self, row: SandboxRow) -> Result<Sandbox, SandboxError> {
        let dir = self.settings.sandboxes_dir.join(&row.id);
        let status = Status::parse(&row.status).unwrap_or(Status::Error);
        if matches!(status, Status::Active | Status::Paused | Status::Creating) {
            self.proxy.register_token(&row.id, &row.model_token);
        }
        if let Some(usage) = row
            .model_usage
            .as_deref()
            .and_then(|u| serde_json::from_str(u).ok())
        {
            self.proxy.restore_usage(&row.id, usage);
        }
        let threads = self
            .store
            .threads(&row.id)?
            .into_iter()
            .map(|t| Thread::restore(self.store.clone(), t))
            .collect::<Result<Vec<_>, _>>()?;
        let held = row.held;
        let sandbox = Sandbox {
            init: InitClient::new(dir.join("run")),
            agent: serde_json::from_str(&row.agent).unwrap_or_default(),
            policy: serde_json::from_str(&row.policy).unwrap_or_default(),
            attributes: row
                .attributes
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_default(),
            deadline: Mutex::new(row.deadline_ms.map(time)),
            id: row.id,
            sandbox_id: row.sandbox_id,
            agent_slug: row.agent_slug,
            agent_name: row.agent_name,
            created_at: time(row.created_at),
            cwd: row.cwd,
            dir,
            deleted: CancellationToken::new(),
            model_token: row.model_token,
            claude_program: row.claude_program,
            threads: Mutex::new(threads),
            owner: row.owner,
            ttl: row.ttl_ms.map(std::time::Duration::from_millis),
            activity: Mutex::new(std::time::Instant::now()),
            busy: std::sync::atomic::AtomicUsize::new(0),
            power: Default::default(),
            store: self.store.clone(),
            state: Mutex::new(State {
                status,
                error: row.error,
                updated_at: time(row.updated_at),
                container_id: row.container_id,
            }),
        };
        sandbox.restore_held(held);
        // The restored token is bound as before (as a turn would bind it: the
        // deployed definition, else the sandbox's own).
        let agent = self
            .agents
            .get(&sandbox.agent_slug)
            .unwrap_or_else(|| sandbox.agent.clone());
        self.lend_model(&sandbox.id, &agent);
        Ok(sandbox)
    }

    /// Matches stored sandboxes with this instance's containers (see the module).
    pub async fn adopt(&self) -> Result<Adopted, SandboxError> {
        let engine = self.engine()?.clone();
        let containers = engine
            .list_labelled(LABEL_INSTANCE, &self.settings.instance)
            .await?;
        let mut outcome = Adopted::default();
        let mut claimed = std::collections::HashSet::new();
        let mut interrupted = Vec::new();
        for sandbox in self.list_arcs() {
            let adopted = match sandbox.status() {
                Status::Error | Status::Expired => continue,
                // Provisioning died with the daemon: what it made is unfinished.
                Status::Creating => {
                    interrupted.push(sandbox.clone());
                    Err("interrupted by a daemon restart while being created".to_owned())
                }
                // A paused one stays paused (its next use resumes it).
                Status::Active | Status::Paused => {
                    let container = containers
                        .iter()
                        .find(|c| {
                            c.labels.as_ref().and_then(|l| l.get(LABEL_SANDBOX))
                                == Some(&sandbox.id)
                        })
                        .and_then(|c| c.id.clone());
                    match container {
                        None => {
                            Err("its container is gone (removed while the daemon was down)"
                                .to_owned())
                        }
                        Some(container) => revive(&engine, &sandbox, container).await,
                    }
                }
            };
            match adopted {
                Ok(container) => {
                    // Sandboxes made before claim markers existed get theirs now.
                    if !super::quarantine::is_claimed(&sandbox.dir) {
                        if let Err(e) = super::quarantine::mark_claimed(&sandbox.dir) {
                            tracing::warn!(sandbox = %sandbox.id, "{e}");
                        }
                    }
                    if sandbox.container_id().as_deref() != Some(container.as_str()) {
                        sandbox.set_container(container.clone());
                    }
                    claimed.insert(container);
                    outcome.kept += 1;
                }
                Err(reason) => {
                    sandbox.set_status(Status::Error, Some(reason));
                    self.proxy.unregister(&sandbox.id);
                    outcome.lost += 1;
                }
            }
        }
        for container in containers {
            let Some(id) = container.id else { continue };
            let labels = container.labels.unwrap_or_default();
            let sandbox = labels.get(LABEL_SANDBOX).cloned();
            let name = sandbox.clone().unwrap_or_default();
            // The warm pool's own (this runs again while the daemon is up when its
            // network is replaced).
            if claimed.contains(&id) || self.pool.owns(&name) {
                continue;
            }
            let warm_leftover = labels.contains_key(super::LABEL_POOL)
                && is_sandbox_id(&name)
                && !super::quarantine::is_claimed(&self.settings.sandboxes_dir.join(&name));
            // A stored sandbox that is over (errored, expired) no longer needs it.
            if warm_leftover || self.peek(&name).is_some() {
                engine.remove(&id).await?;
                outcome.removed += 1;
            } else if !self.quarantine.contains(sandbox.as_deref().unwrap_or(&id)) {
                self.quarantine_container(&engine, sandbox.as_deref(), &id)
                    .await?;
                outcome.quarantined += 1;
            }
        }
        // A create cut short made a directory and a disk no client was given: once its
        // container is gone (above), they go too. Its record stays, as `error`.
        for sandbox in interrupted {
            self.release(&sandbox).await;
        }
        outcome.quarantined += self.sweep_orphan_dirs().await;
        self.quarantine.adopted();
        if outcome.quarantined > 0 {
            let store_empty = self.list_arcs().is_empty();
            tracing::error!(
                "{} sandbox(es) of this instance have no record in the store{}: they are \
                 stopped and kept, not deleted. `sandboxd doctor` lists them. To bring them \
                 back, stop the daemon, put a copy of state.db that knows them in place and \
                 start it again; to remove one for good, `sandboxd doctor --remove <id>`.",
                outcome.quarantined,
                if store_empty {
                    ", and the store holds no sandbox at all (was state.db damaged or replaced?)"
                } else {
                    ""
                }
            );
        }
        Ok(outcome)
    }

    /// Removes the host directories (and unmounts the disks) that belong to no
    /// stored sandbox and no warm container and were never given to a client: those of
    /// warm containers of an earlier run. One that was (it holds the claim marker) is
    /// quarantined. Returns how many were newly quarantined.
    async fn sweep_orphan_dirs(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.settings.sandboxes_dir) else {
            return 0;
        };
        let mut quarantined = 0;
        let known: std::collections::HashSet<String> =
            self.list_arcs().iter().map(|sb| sb.id.clone()).collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_sandbox_id(&name) || known.contains(&name) || self.pool.owns(&name) {
                continue;
            }
            let dir = entry.path();
            if super::quarantine::is_claimed(&dir) {
                if !self.quarantine.contains(&name) {
                    self.quarantine_dir(&name, dir);
                    quarantined += 1;
                }
                continue;
            }
            if let Err(e) = super::disk::Disk::new(&dir).unmount().await {
                tracing::warn!(dir = %dir.display(), "{e}");
                continue;
            }
            super::remove_dir(&dir);
            tracing::info!(dir = %dir.display(), "removed a directory no sandbox owns");
        }
        quarantined
    }

    /// Applies every active sandbox's egress policy again (its address may have
    /// changed if its container was restarted).
    pub async fn reapply_firewall(&self) {
        let (Some(firewall), Ok(engine)) = (self.firewall(), self.engine()) else {
            return;
        };
        for sandbox in self.list_arcs() {
            if !matches!(sandbox.status(), Status::Active | Status::Paused) {
                continue;
            }
            let Some(container) = sandbox.container_id() else {
                continue;
            };
            let network = &self.settings.network;
            let applied = match engine.container_address(&container, network).await {
                Ok((address, pid)) => {
                    self.proxy.bind_address(&sandbox.id, address.into());
                    firewall
                        .apply(&sandbox.id, address, pid, &sandbox.policy)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = applied {
                // Without its rules the sandbox must not run: it would be unfiltered.
                tracing::error!(sandbox = %sandbox.id, "egress rules not restored: {e}");
                let _ = engine.remove(&container).await;
                sandbox.set_status(
                    Status::Error,
                    Some(format!("egress rules not restored: {e}")),
                );
            }
        }
    }
}

/// Brings a re-adopted sandbox's container back: its disk mounted (after a reboot it
/// must be back before the container starts: the container's volumes bind into it),
/// the container running, and its init's pid known (the only peer the client accepts).
pub(super) async fn revive(
    engine: &crate::docker::Engine,
    sandbox: &Sandbox,
    container: String,
) -> Result<String, String> {
    let disk = super::disk::Disk::new(&sandbox.dir);
    if disk.exists() {
        disk.ensure_mounted().await.map_err(|e| e.to_string())?;
    }
    engine
        .ensure_running(&container)
        .await
        .map_err(|e| format!("its container could not be started again: {e}"))?;
    let pid = engine
        .init_pid(&container)
        .await
        .map_err(|e| format!("its container's init is unknown: {e}"))?;
    sandbox.init.set_init_pid(pid);
    Ok(container)
}

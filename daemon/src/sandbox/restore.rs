//! Starting again on an existing state directory: sandboxes and threads come back from
//! the store, and once the engine answers, each sandbox is matched with its container
//! by label (re-adopted), or marked `error` when its container is gone. Containers of
//! this instance that no stored sandbox owns are removed.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::{Sandbox, SandboxError, Sandboxes, State, Status};
use crate::init_client::InitClient;
use crate::names::{LABEL_INSTANCE, LABEL_SANDBOX};
use crate::store::{time, SandboxRow};
use crate::threads::Thread;

/// What [`Sandboxes::adopt`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// Sandboxes whose containers were found and kept.
    pub kept: usize,
    /// Sandboxes marked `error` because their containers were gone.
    pub lost: usize,
    /// Containers removed because no sandbox owns them.
    pub removed: usize,
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
        for sandbox in self.list_arcs() {
            let adopted = match sandbox.status() {
                Status::Error | Status::Expired => continue,
                // Provisioning died with the daemon: what it made is unfinished.
                Status::Creating => {
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
            let sandbox = container
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SANDBOX))
                .cloned()
                .unwrap_or_default();
            // The warm pool's own (this runs again while the daemon is up when its
            // network is replaced).
            if claimed.contains(&id) || self.pool.owns(&sandbox) {
                continue;
            }
            engine.remove(&id).await?;
            outcome.removed += 1;
        }
        self.sweep_orphan_dirs().await;
        Ok(outcome)
    }

    /// Removes the host directories (and unmounts the disks) that belong to no
    /// stored sandbox and no warm container: those of warm containers of an earlier
    /// run, and of creates that a crash cut short before their sandbox was stored.
    async fn sweep_orphan_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.settings.sandboxes_dir) else {
            return;
        };
        let known: std::collections::HashSet<String> =
            self.list_arcs().iter().map(|sb| sb.id.clone()).collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_sandbox_id(&name) || known.contains(&name) || self.pool.owns(&name) {
                continue;
            }
            let dir = entry.path();
            if let Err(e) = super::disk::Disk::new(&dir).unmount().await {
                tracing::warn!(dir = %dir.display(), "{e}");
                continue;
            }
            super::remove_dir(&dir);
            tracing::info!(dir = %dir.display(), "removed a directory no sandbox owns");
        }
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
async fn revive(
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

/// Whether `name` has the shape of a sandbox id (`sb_` and 16 base-32 characters).
fn is_sandbox_id(name: &str) -> bool {
    name.strip_prefix("sb_").is_some_and(|rest| {
        rest.len() == 16
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sandbox_ids_are_swept() {
        assert!(is_sandbox_id(&crate::names::new_id("sb_")));
        assert!(!is_sandbox_id("sb_short"));
        assert!(!is_sandbox_id("sb_../../etc/passwd1"));
        assert!(!is_sandbox_id("state.db"));
    }
}

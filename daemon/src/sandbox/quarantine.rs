//! What the daemon finds of its own that its store cannot account for: a container
//! labelled with this instance, or a sandbox directory, with no stored sandbox.
//!
//! The store may have been damaged, replaced or restored from an older copy, so nothing
//! is deleted on that guess. Such a sandbox is quarantined instead: its container is
//! stopped (it must not run: its egress rules are not applied) and kept with its
//! directory and home disk, and it is listed (`GET /v1/quarantine`, `sandboxd doctor`)
//! until an operator removes it for good (`DELETE /v1/quarantine/:id`), or puts a store
//! that knows it back in place, after which the next start re-adopts it.
//!
//! What is removed without a stored sandbox is only what provably never was a client's:
//! a warm pool container whose directory has no claim marker. The marker
//! ([`CLAIM_MARKER`]) is written in a sandbox's host directory (0700, outside every
//! container) before its row is stored, so it survives whatever happens to the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{disk, remove_dir, SandboxError, Sandboxes};
use crate::docker::{Engine, EngineError};

/// The file in a sandbox's host directory that says a client was given the sandbox.
pub const CLAIM_MARKER: &str = "claimed";

/// Marks a sandbox's host directory as a client's (creating the directory, 0700, for a
/// cold create).
pub(super) fn mark_claimed(dir: &Path) -> Result<(), disk::DiskError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |what, source| disk::DiskError::Io {
        what,
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("creating", e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("restricting", e))?;
    std::fs::write(dir.join(CLAIM_MARKER), b"a sandbox given to a client\n")
        .map_err(|e| io("marking", e))
}

/// Whether a sandbox's host directory holds the claim marker.
pub(super) fn is_claimed(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(CLAIM_MARKER)).is_ok_and(|m| m.is_file())
}

/// A sandbox of this instance that no stored sandbox accounts for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantined {
    /// Its sandbox id (its container's label, or its directory's name); the container
    /// id when the container has no sandbox label.
    pub id: String,
    /// Its container, stopped and kept.
    pub container: Option<String>,
    /// Its host directory (with its home disk), kept.
    pub directory: Option<PathBuf>,
}

/// The quarantined sandboxes, by id, and whether the store was ever matched with
/// what is on disk.
#[derive(Debug, Default)]
pub(super) struct Quarantine {
    found: std::sync::Mutex<BTreeMap<String, Quarantined>>,
    adopted: std::sync::atomic::AtomicBool,
}

impl Quarantine {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Quarantined>> {
        // Every write is one whole insert or remove: a poisoned map is consistent.
        self.found.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the store was matched with the engine and the disk.
    pub(super) fn adopted(&self) {
        self.adopted
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }
}

impl Sandboxes {
    /// Stops and keeps a container of this instance that no stored sandbox owns.
    /// `sandbox` is its sandbox label, when it has one.
    pub(super) async fn quarantine_container(
        &self,
        engine: &Engine,
        sandbox: Option<&str>,
        container: &str,
    ) -> Result<(), EngineError> {
        engine.stop(container).await?;
        let id = sandbox.unwrap_or(container).to_owned();
        let directory = sandbox
            .filter(|s| crate::names::is_sandbox_id(s))
            .map(|s| self.settings.sandboxes_dir.join(s))
            .filter(|dir| dir.is_dir());
        tracing::warn!(sandbox = %id, container, "no stored sandbox owns this container: stopped and kept (quarantined)");
        self.quarantine.lock().insert(
            id.clone(),
            Quarantined {
                id,
                container: Some(container.to_owned()),
                directory,
            },
        );
        Ok(())
    }

    /// Keeps a claimed sandbox directory that no stored sandbox owns.
    pub(super) fn quarantine_dir(&self, id: &str, dir: PathBuf) {
        let mut quarantine = self.quarantine.lock();
        if quarantine.contains_key(id) {
            return;
        }
        tracing::warn!(sandbox = %id, dir = %dir.display(), "no stored sandbox owns this directory: kept (quarantined)");
        quarantine.insert(
            id.to_owned(),
            Quarantined {
                id: id.to_owned(),
                container: None,
                directory: Some(dir),
            },
        );
    }

    /// Whether the store is known to account for everything of this instance: it was
    /// matched with the engine and the disk, and nothing is quarantined. Only such a
    /// store is worth a backup (a damaged one must not rotate the good ones out).
    pub fn store_accounts_for_all(&self) -> bool {
        self.quarantine
            .adopted
            .load(std::sync::atomic::Ordering::SeqCst)
            && self.quarantine.lock().is_empty()
    }

    /// The quarantined sandboxes, by id.
    pub fn quarantined(&self) -> Vec<Quarantined> {
        self.quarantine.lock().values().cloned().collect()
    }

    /// Removes a quarantined sandbox for good: its container, disk and directory.
    pub async fn purge_quarantined(&self, id: &str) -> Result<(), SandboxError> {
        let found = self.quarantine.lock().get(id).cloned();
        let Some(found) = found else {
            return Err(SandboxError::NotFound(id.to_owned()));
        };
        if let Some(container) = &found.container {
            self.engine()?.remove(container).await?;
        }
        if let Some(dir) = &found.directory {
            disk::Disk::new(dir).unmount().await?;
            remove_dir(dir);
        }
        self.quarantine.lock().remove(id);
        tracing::info!(sandbox = %id, "removed from quarantine");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_directory_is_marked_private_and_recognized() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = temp.path().join("sb_x");
        assert!(!is_claimed(&dir));
        mark_claimed(&dir).expect("marked");
        assert!(is_claimed(&dir));
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A directory (or a link) at the marker's name is no marker.
        let other = temp.path().join("sb_y");
        std::fs::create_dir_all(other.join(CLAIM_MARKER)).expect("mkdir");
        assert!(!is_claimed(&other));
    }
}

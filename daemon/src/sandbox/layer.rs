//! What root in a sandbox writes outside its disk. `--disk-mb`'s disk holds the home
//! and the temporary directories, everything the sandbox's user can write; root
//! (through sudo, an E2B `user: 'root'` process, a setup step) can also write the
//! container's writable image layer, on the engine's storage, and the sandbox's socket
//! directory, on the host. Neither can be given a size on overlay2 over ext4, so the
//! daemon measures them now and then and stops a sandbox past the bound, in bytes or
//! in files, as Kubernetes evicts a pod past its ephemeral-storage limit: the sandbox
//! turns `error` with the reason, and deleting it gives the space back.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Sandbox, Sandboxes, Status};

/// Files allowed outside the disk per MiB of the bound (ext4's own ratio: one inode
/// per 16 KiB).
const FILES_PER_MB: u64 = 64;

/// What was found outside a sandbox's disk, up to where the walk stopped.
#[derive(Debug, Default, PartialEq)]
struct Usage {
    bytes: u64,
    files: u64,
}

/// Walks `roots` without following symlinks, adding up allocated bytes and entries;
/// stops as soon as either passes its cap.
fn measure(roots: &[PathBuf], max_bytes: u64, max_files: u64) -> Usage {
    let mut usage = Usage::default();
    let mut pending: Vec<PathBuf> = roots.to_vec();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            usage.files += 1;
            usage.bytes += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(entry.path());
            }
            if usage.bytes > max_bytes || usage.files > max_files {
                return usage;
            }
        }
    }
    usage
}

impl Sandboxes {
    /// Stops every running sandbox that wrote more than its bound outside its disk
    /// (see the module). Called every 5 s; does nothing without `--disk-mb`.
    pub async fn check_layers(&self) {
        let bound_mb = self.settings.disk_mb;
        if bound_mb == 0 {
            return;
        }
        let Ok(engine) = self.engine() else { return };
        let (max_bytes, max_files) = (bound_mb << 20, bound_mb * FILES_PER_MB);
        for sandbox in self.list_arcs() {
            if sandbox.status() != Status::Active || sandbox.held() {
                continue;
            }
            let Some(container) = sandbox.container_id() else {
                continue;
            };
            let mut roots = vec![sandbox.dir.join("run")];
            match engine.writable_layer(&container).await {
                Ok(Some(layer)) => roots.push(layer),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(sandbox = %sandbox.id, "its layer is unknown: {e}");
                    continue;
                }
            }
            let usage =
                tokio::task::spawn_blocking(move || measure(&roots, max_bytes, max_files)).await;
            let Ok(usage) = usage else { continue };
            if usage.bytes > max_bytes || usage.files > max_files {
                self.stop_for_layer(&sandbox, &container, &usage, bound_mb)
                    .await;
            }
        }
    }

    async fn stop_for_layer(
        &self,
        sandbox: &Arc<Sandbox>,
        container: &str,
        usage: &Usage,
        bound_mb: u64,
    ) {
        let what = if usage.bytes > bound_mb << 20 {
            format!("more than {bound_mb} MiB")
        } else {
            format!("more than {} files", bound_mb * FILES_PER_MB)
        };
        let reason = format!(
            "stopped: it wrote {what} outside its disk (as root, into the image layer or \
             its socket directory), past its bound of --disk-mb {bound_mb}; delete it to \
             give the space back"
        );
        tracing::warn!(sandbox = %sandbox.id, "{reason}");
        let _power = sandbox.power.locked().await;
        if let Ok(engine) = self.engine() {
            if let Err(e) = engine.stop(container).await {
                tracing::warn!(sandbox = %sandbox.id, "stopping it: {e}");
            }
        }
        sandbox.set_status(Status::Error, Some(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_counts_files_and_bytes_and_stops_past_a_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("a")).expect("dir");
        for i in 0..10 {
            std::fs::write(dir.path().join("a").join(i.to_string()), vec![1u8; 8192])
                .expect("file");
        }
        std::os::unix::fs::symlink("/", dir.path().join("root")).expect("link");
        let all = measure(&[dir.path().to_path_buf()], u64::MAX, u64::MAX);
        assert_eq!(
            all.files, 12,
            "the directory, ten files and a link not followed"
        );
        assert!(all.bytes >= 10 * 8192, "{all:?}");
        let capped = measure(&[dir.path().to_path_buf()], u64::MAX, 3);
        assert_eq!(capped.files, 4, "stops at the first file past the cap");
    }
}

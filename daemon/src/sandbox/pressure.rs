//! Disk pressure, a state rather than a crash. The state directory's disk holds the
//! store and every sandbox's sparse home image, so when it fills:
//!
//! - `/healthz` and `/metrics` say so as soon as free space drops under the reserve
//!   (`--reserve-disk-mb`), before the disk is full: creates are refused from there on;
//! - a write that fails because of it answers 507 with the reason, not 500 or 403;
//! - a home whose filesystem went read-only (the kernel aborts an ext4 journal whose
//!   loop device cannot write, and remounts it read-only for good) is checked and
//!   mounted again once the reserve is free again: the container is stopped, the image
//!   checked with `e2fsck` and mounted, and the container started, files kept;
//! - thread messages the store could not take are kept in memory and written back
//!   (see [`crate::threads::Thread::write_back`]).
//!
//! [`Sandboxes::check_disks`] does the last two; the daemon calls it every few seconds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sandbox_init::protocol::ErrorKind;

use super::disk::Disk;
use super::{Sandbox, SandboxError, Sandboxes, Status};
use crate::init_client::InitError;

/// The state directory's disk, measured now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateDisk {
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
    /// The filesystem's size.
    pub total_bytes: u64,
    /// What the daemon keeps free (`--reserve-disk-mb`).
    pub reserve_bytes: u64,
}

impl StateDisk {
    /// Measures the disk holding `dir`; `None` when it cannot be measured.
    pub fn measure(dir: &Path, reserve_mb: u64) -> Option<Self> {
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(Self {
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            reserve_bytes: reserve_mb.saturating_mul(1024 * 1024),
        })
    }

    /// Whether less than the reserve is free.
    pub fn low(&self) -> bool {
        self.free_bytes < self.reserve_bytes
    }

    /// Why it is low, in words for `/healthz`.
    pub fn reason(&self, dir: &Path) -> String {
        format!(
            "the state disk is low on space: {} MiB free under {}, under the {} MiB \
             sandboxd keeps free (--reserve-disk-mb); creates are refused and sandbox \
             homes may turn read-only until space is freed",
            self.free_bytes >> 20,
            dir.display(),
            self.reserve_bytes >> 20
        )
    }
}

/// What a write into a sandbox needs to explain its failure.
#[derive(Debug, Clone)]
pub struct WriteContext {
    disk: Option<Disk>,
    disk_mb: u64,
    state_dir: PathBuf,
    reserve_mb: u64,
}

impl WriteContext {
    /// The error a failed write answers with: the disk's own reason when a disk is
    /// why (507), the sandbox's answer otherwise.
    pub fn failure(&self, e: InitError) -> SandboxError {
        let InitError::Remote { kind, message } = &e else {
            return e.into();
        };
        match kind {
            ErrorKind::NoSpace if self.disk_mb > 0 => SandboxError::DiskFull {
                limit_mb: self.disk_mb,
                detail: message.clone(),
            },
            ErrorKind::Io | ErrorKind::PermissionDenied | ErrorKind::NoSpace => {
                if self.disk.as_ref().is_some_and(Disk::has_errors) {
                    return SandboxError::HostDiskFull(format!(
                        "{message}: the sandbox's disk turned read-only when the host's \
                         state disk filled; its files are kept and readable, and \
                         sandboxd checks and mounts it again once space is freed"
                    ));
                }
                match StateDisk::measure(&self.state_dir, self.reserve_mb) {
                    Some(state) if state.low() => SandboxError::HostDiskFull(format!(
                        "{message}: {}",
                        state.reason(&self.state_dir)
                    )),
                    _ => e.into(),
                }
            }
            _ => e.into(),
        }
    }
}

impl Sandboxes {
    /// The state directory's disk now.
    pub fn state_disk(&self) -> Option<StateDisk> {
        StateDisk::measure(&self.settings.state_dir, self.settings.reserve_disk_mb)
    }

    /// What writes into `sandbox` need to explain a failure.
    pub(super) fn write_context(&self, sandbox: &Sandbox) -> WriteContext {
        let disk = Disk::new(&sandbox.dir);
        WriteContext {
            disk: disk.exists().then_some(disk),
            disk_mb: self.settings.disk_mb,
            state_dir: self.settings.state_dir.clone(),
            reserve_mb: self.settings.reserve_disk_mb,
        }
    }

    /// How many live sandboxes have a home that turned read-only.
    pub fn read_only_homes(&self) -> usize {
        self.list_arcs()
            .iter()
            .filter(|s| matches!(s.status(), Status::Active | Status::Paused))
            .filter(|s| Disk::new(&s.dir).has_errors())
            .count()
    }

    /// Writes back thread state the store could not take, and, while the reserve is
    /// free, mends every active sandbox's home that turned read-only.
    pub async fn check_disks(&self) {
        self.write_back_threads();
        if self.state_disk().is_some_and(|d| d.low()) {
            return;
        }
        for sandbox in self.list_arcs() {
            if sandbox.status() == Status::Active
                && !sandbox.held()
                && Disk::new(&sandbox.dir).has_errors()
            {
                self.mend_home(&sandbox).await;
            }
        }
    }

    /// Stores what threads hold in memory because the store refused it; returns how
    /// many are still not stored.
    pub fn write_back_threads(&self) -> usize {
        let mut left = 0;
        for sandbox in self.list_arcs() {
            for thread in sandbox.threads_snapshot() {
                if thread.store_failure().is_none() {
                    continue;
                }
                match thread.write_back() {
                    Ok(()) => tracing::info!(thread = %thread.id, "kept messages stored"),
                    Err(e) => {
                        left += 1;
                        tracing::debug!(thread = %thread.id, "still not stored: {e}");
                    }
                }
            }
        }
        left
    }

    /// Stops the sandbox's container, checks its disk, mounts it again and starts the
    /// container; marks the sandbox `error` (files kept) when that fails.
    async fn mend_home(&self, sandbox: &Arc<Sandbox>) {
        let Some(container) = sandbox.container_id() else {
            return;
        };
        let Ok(engine) = self.engine() else { return };
        let _busy = sandbox.busy();
        let _power = sandbox.power.locked().await;
        tracing::warn!(
            sandbox = %sandbox.id,
            "its home turned read-only when the state disk filled; checking and \
             mounting it again (its processes restart)"
        );
        let disk = Disk::new(&sandbox.dir);
        let mended = async {
            engine
                .stop(&container)
                .await
                .map_err(|e| format!("stopping its container: {e}"))?;
            disk.unmount().await.map_err(|e| e.to_string())?;
            disk.check().await.map_err(|e| e.to_string())?;
            super::restore::revive(engine, sandbox, container)
                .await
                .map(|_| ())
        }
        .await;
        match mended {
            Ok(()) => {
                tracing::info!(sandbox = %sandbox.id, "home mounted again, read-write");
                self.reapply_firewall().await;
            }
            Err(e) => {
                tracing::error!(sandbox = %sandbox.id, "home not mended: {e}");
                sandbox.set_status(
                    Status::Error,
                    Some(format!(
                        "its home disk turned read-only when the state disk filled and \
                         could not be mounted again ({e}); its files are kept in {}",
                        sandbox.dir.display()
                    )),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_under_its_reserve_is_low_and_says_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let roomy = StateDisk::measure(dir.path(), 1).expect("measured");
        assert!(!roomy.low());
        assert!(roomy.total_bytes >= roomy.free_bytes);
        let tight = StateDisk::measure(dir.path(), u64::MAX >> 20).expect("measured");
        assert!(tight.low());
        let why = tight.reason(dir.path());
        assert!(why.contains("--reserve-disk-mb"), "{why}");
    }

    #[test]
    fn a_write_failure_unrelated_to_disks_is_passed_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let context = WriteContext {
            disk: None,
            disk_mb: 0,
            state_dir: dir.path().to_owned(),
            reserve_mb: 1,
        };
        let e = context.failure(InitError::Remote {
            kind: ErrorKind::PermissionDenied,
            message: "/etc/x: permission denied".into(),
        });
        assert!(matches!(e, SandboxError::Init(_)), "{e:?}");
        let low = WriteContext {
            reserve_mb: u64::MAX >> 20,
            ..context
        };
        let e = low.failure(InitError::Remote {
            kind: ErrorKind::Io,
            message: "/home/user/a: input/output error".into(),
        });
        assert!(matches!(e, SandboxError::HostDiskFull(_)), "{e:?}");
    }
}

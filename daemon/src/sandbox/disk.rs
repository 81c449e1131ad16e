//! A sandbox's disk bound, and the free-space reserve of the state directory.
//!
//! Docker bounds a container's writable layer only with `--storage-opt size=`, which
//! works for overlay2 only on xfs mounted with `pquota`: not on ext4, the usual host
//! filesystem. So the bound is a filesystem of its own: each sandbox gets a sparse
//! file `disk.img` of `--disk-mb` MiB in its host directory, formatted as ext4
//! (`mkfs.ext4` with lazy init, a few tens of milliseconds) and loop-mounted at
//! `disk/` there (`nosuid,nodev`, and `discard` so that deleting files inside gives
//! the space back to the host). The container gets three directories of it:
//! `/home/user` (as a volume bound to `disk/home`, so Docker first copies the image's
//! own `/home/user` into it, ownership included), `/tmp`, `/var/tmp` and `/run/lock`.
//! Those are everything the sandbox user can write in the default image besides
//! `/dev/shm` (memory, under the memory limit), so a sandbox that fills its disk gets `ENOSPC` and the host disk grows by at
//! most the bound. Root steps (`setup`, templates) still write the image layer.
//!
//! The daemon never reads or follows anything inside a mounted disk: it only makes the
//! three directories before the container exists, and unmounts the whole filesystem
//! (by the mount point in its own directory) once the container is gone. A daemon or
//! engine restart finds the filesystem still mounted, or mounts the image again before
//! the container starts.
//!
//! The images are sparse, so together they may promise more than the host has: a
//! create is refused while less than `--reserve-disk-mb` is free under the state
//! directory, which also keeps room for `state.db`.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// The image file in a sandbox's directory.
const IMAGE: &str = "disk.img";
/// Its mount point in a sandbox's directory.
const MOUNT: &str = "disk";
/// The sandbox's own terminals (a devpts instance) in a sandbox's directory.
const PTS: &str = "pts";
/// Terminals one sandbox may hold at once. The kernel has 3,072 for every container
/// together (`kernel.pty.max` less the host's reserve); without a share of its own, one
/// sandbox opening `/dev/ptmx` in a loop took them from every other.
pub const PTYS: u32 = 64;
/// How long one `mkfs`/`mount`/`umount` may take.
const TOOL_DEADLINE: Duration = Duration::from_secs(30);

/// Directories of the disk and where they appear in the container; the first one is
/// the home, given as a volume so that the image's content is copied in.
pub const DIRS: [(&str, &str); 4] = [
    ("home", crate::names::HOME),
    ("tmp", "/tmp"),
    ("var-tmp", "/var/tmp"),
    ("run-lock", "/run/lock"),
];

/// A failure making, mounting or unmounting a sandbox's disk.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A file operation on the host failed.
    #[error("sandbox disk: {what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `mkfs.ext4`, `mount` or `umount` failed.
    #[error(
        "sandbox disk: `{program}` failed: {output} (the per-sandbox disk needs loop \
         devices and the Docker engine's mount namespace; --disk-mb 0 turns it off)"
    )]
    Tool {
        /// The program.
        program: String,
        /// Its exit status and output.
        output: String,
    },
    /// The state directory has less free space than the reserve.
    #[error(
        "only {free_mb} MiB are free under the state directory {}; sandboxd keeps \
         {reserve_mb} MiB free (--reserve-disk-mb) and creates no sandbox until there is \
         more: delete sandboxes or free space on that disk",
        .dir.display()
    )]
    LowSpace {
        /// The state directory.
        dir: PathBuf,
        /// Free MiB there.
        free_mb: u64,
        /// The reserve.
        reserve_mb: u64,
    },
}

/// The disk of the sandbox whose host directory is `dir`.
#[derive(Debug, Clone)]
pub struct Disk {
    dir: PathBuf,
}

impl Disk {
    /// The disk belonging to the sandbox directory `dir` (nothing is made yet).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn image(&self) -> PathBuf {
        self.dir.join(IMAGE)
    }

    fn mount_point(&self) -> PathBuf {
        self.dir.join(MOUNT)
    }

    /// The sandbox's devpts instance, bound at `/dev/pts` (`/dev/ptmx` links into it).
    pub fn pts_dir(&self) -> PathBuf {
        self.dir.join(PTS)
    }

    /// Whether `point` is a mount of its own (another device than the directory).
    fn mounted_at(&self, point: &Path) -> bool {
        let (Ok(dir), Ok(point)) = (
            std::fs::symlink_metadata(&self.dir),
            std::fs::symlink_metadata(point),
        ) else {
            return false;
        };
        point.is_dir() && dir.dev() != point.dev()
    }

    /// The host directory behind the container path `DIRS[i].1`.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        self.mount_point().join(name)
    }

    /// Whether this sandbox was made with a disk.
    pub fn exists(&self) -> bool {
        self.image().is_file()
    }

    /// Whether the disk is mounted: its mount point lies on another device than the
    /// directory holding it.
    pub fn is_mounted(&self) -> bool {
        self.mounted_at(&self.mount_point())
    }

    /// Whether ext4 counted an error on the mounted disk since it was last checked.
    /// When the state disk fills, the loop device fails writes, ext4 aborts its
    /// journal and turns the filesystem read-only at the next write (newer kernels show
    /// this only as `emergency_ro` in the mount options, not in `statvfs`); every such
    /// disk has a nonzero `errors_count` in sysfs until `e2fsck` clears it.
    pub fn has_errors(&self) -> bool {
        if !self.is_mounted() {
            return false;
        }
        let Ok(point) = std::fs::metadata(self.mount_point()) else {
            return false;
        };
        let dev = point.dev();
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let Ok(device) = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")) else {
            return false;
        };
        let Some(name) = device.file_name() else {
            return false;
        };
        let counter = Path::new("/sys/fs/ext4").join(name).join("errors_count");
        std::fs::read_to_string(counter)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .is_some_and(|count| count > 0)
    }

    /// Checks and repairs the unmounted image (`e2fsck -fy`: replays the journal a
    /// failed write aborted, fixes what it finds and keeps every file it can).
    pub async fn check(&self) -> Result<(), DiskError> {
        let image = self.image();
        let checked = run("e2fsck", &["-f".as_ref(), "-y".as_ref(), image.as_os_str()]).await;
        match checked {
            // e2fsck exits 1 (or 2) when it fixed something: the disk is usable.
            Err(DiskError::Tool { output, .. })
                if output.starts_with("exit status: 1") || output.starts_with("exit status: 2") =>
            {
                tracing::info!(image = %image.display(), "e2fsck repaired the disk");
                Ok(())
            }
            other => other,
        }
    }

    /// Makes, formats and mounts a disk of `size_mb` MiB, with its directories.
    pub async fn create(&self, size_mb: u64) -> Result<(), DiskError> {
        let image = self.image();
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| DiskError::Io { what, path, source }
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&image)
            .map_err(io("creating", &image))?;
        file.set_len(size_mb * 1024 * 1024)
            .map_err(io("sizing", &image))?;
        drop(file);
        run(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                // All of it is the sandbox's: no blocks reserved for root.
                "-m".as_ref(),
                "0".as_ref(),
                "-E".as_ref(),
                "lazy_itable_init=1,lazy_journal_init=1".as_ref(),
                image.as_os_str(),
            ],
        )
        .await?;
        self.mount().await?;
        self.mount_pts().await?;
        for (name, _) in DIRS {
            let path = self.host_dir(name);
            std::fs::create_dir(&path).map_err(io("creating", &path))?;
            // /tmp-like: everyone may write, only owners delete. The home's mode and
            // owner come from the image when Docker copies it in.
            let mode = if name == "home" { 0o755 } else { 0o1777 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io("setting the mode of", &path))?;
        }
        let home = self.host_dir("home");
        std::os::unix::fs::chown(&home, Some(1000), Some(1000))
            .map_err(io("giving the home to uid 1000:", &home))?;
        Ok(())
    }

    /// Mounts the image if it is not mounted (after a reboot or an engine restart).
    pub async fn ensure_mounted(&self) -> Result<(), DiskError> {
        if !self.is_mounted() {
            self.mount().await?;
        }
        if !self.mounted_at(&self.pts_dir()) {
            self.mount_pts().await?;
        }
        Ok(())
    }

    /// Mounts the sandbox's own devpts instance, of at most [`PTYS`] terminals.
    async fn mount_pts(&self) -> Result<(), DiskError> {
        let point = self.pts_dir();
        make_point(&point)?;
        let options = format!("newinstance,ptmxmode=0666,mode=0620,gid=5,max={PTYS}");
        run(
            "mount",
            &[
                "-t".as_ref(),
                "devpts".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "--".as_ref(),
                "devpts".as_ref(),
                point.as_os_str(),
            ],
        )
        .await
    }

    async fn mount(&self) -> Result<(), DiskError> {
        let point = self.mount_point();
        make_point(&point)?;
        run(
            "mount",
            &[
                "-t".as_ref(),
                "ext4".as_ref(),
                "-o".as_ref(),
                // noinit_itable: no background zeroing of inode tables on the host.
                "loop,nosuid,nodev,discard,noinit_itable".as_ref(),
                "--".as_ref(),
                self.image().as_os_str(),
                point.as_os_str(),
            ],
        )
        .await
    }

    /// Unmounts the disk (its loop device goes with it). Call only once the container
    /// is gone; a filesystem still busy is detached lazily.
    pub async fn unmount(&self) -> Result<(), DiskError> {
        for point in [self.pts_dir(), self.mount_point()] {
            if !self.mounted_at(&point) {
                continue;
            }
            if run("umount", &["--".as_ref(), point.as_os_str()])
                .await
                .is_err()
            {
                run("umount", &["-l".as_ref(), "--".as_ref(), point.as_os_str()]).await?;
            }
        }
        Ok(())
    }
}

/// Makes a mount point (one already there is fine).
fn make_point(point: &Path) -> Result<(), DiskError> {
    match std::fs::create_dir(point) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(DiskError::Io {
            what: "creating",
            path: point.to_owned(),
            source,
        }),
    }
}

/// Refuses when less than `reserve_mb` MiB are free under `dir`.
pub fn check_reserve(dir: &Path, reserve_mb: u64) -> Result<(), DiskError> {
    if reserve_mb == 0 {
        return Ok(());
    }
    let stat = rustix::fs::statvfs(dir).map_err(|e| DiskError::Io {
        what: "measuring the free space of",
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let free_mb = stat.f_bavail.saturating_mul(stat.f_frsize) / (1024 * 1024);
    if free_mb < reserve_mb {
        return Err(DiskError::LowSpace {
            dir: dir.to_owned(),
            free_mb,
            reserve_mb,
        });
    }
    Ok(())
}

/// Where the system keeps `program` (they live in sbin directories, which a daemon
/// started with a user's `PATH` may not search); the bare name otherwise.
fn system_tool(program: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Runs a host tool to completion within [`TOOL_DEADLINE`].
async fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), DiskError> {
    let fail = |output: String| DiskError::Tool {
        program: program.to_owned(),
        output,
    };
    let child = Command::new(system_tool(program))
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TOOL_DEADLINE, child)
        .await
        .map_err(|_| fail(format!("no answer within {TOOL_DEADLINE:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    text.truncate(1000);
    Err(fail(format!("{}: {text}", out.status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_checked_against_free_space() {
        let dir = tempfile::tempdir().expect("temp dir");
        check_reserve(dir.path(), 0).expect("no reserve");
        check_reserve(dir.path(), 1).expect("a MiB is free");
        let e = check_reserve(dir.path(), u64::MAX / (1024 * 1024)).unwrap_err();
        assert!(
            e.to_string().contains("--reserve-disk-mb"),
            "the message names the flag: {e}"
        );
    }

    #[test]
    fn tools_are_found_outside_a_users_path() {
        assert!(system_tool("mount").is_absolute());
        assert_eq!(system_tool("no-such-tool"), PathBuf::from("no-such-tool"));
    }

    #[test]
    fn a_disk_is_not_mounted_until_it_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = Disk::new(dir.path());
        assert!(!disk.exists());
        assert!(!disk.is_mounted());
        std::fs::create_dir(dir.path().join(MOUNT)).expect("mount point");
        assert!(!disk.is_mounted(), "a plain directory is not a mount");
    }
}

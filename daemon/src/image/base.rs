//! The Debian bookworm base of the default image: present, pulled, or built offline
//! from Debian packages with debootstrap and imported.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::io::ReaderStream;

use super::{ImageError, Progress};
use crate::docker::{Engine, EngineError};

/// The base image built offline.
const OFFLINE_BASE: &str = "sandboxd/debian-base:bookworm";

/// The base image pulled online.
const ONLINE_BASE: &str = "debian:bookworm-slim";

/// Finds or makes a Debian bookworm base: present, pulled, or bootstrapped.
pub(super) async fn ensure_base(
    engine: &Engine,
    debian_mirror: &str,
    progress: &dyn Progress,
) -> Result<String, ImageError> {
    for candidate in [OFFLINE_BASE, ONLINE_BASE] {
        if engine.image_labels(candidate).await?.is_some() {
            return Ok(candidate.to_owned());
        }
    }
    progress.report(&format!("pulling {ONLINE_BASE}"));
    let pull = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        engine.pull(ONLINE_BASE, |l| progress.report(l)),
    )
    .await;
    match pull {
        Ok(Ok(())) => return Ok(ONLINE_BASE.to_owned()),
        Ok(Err(EngineError::Unreachable(e))) => return Err(EngineError::Unreachable(e).into()),
        Ok(Err(e)) => progress.report(&format!("no registry ({e}); building the base offline")),
        Err(_) => progress.report("the registry did not answer in 120 s; building offline"),
    }
    debootstrap_base(engine, debian_mirror, progress).await?;
    Ok(OFFLINE_BASE.to_owned())
}

/// Builds `OFFLINE_BASE` with `debootstrap --variant=minbase` and imports it.
async fn debootstrap_base(
    engine: &Engine,
    mirror: &str,
    progress: &dyn Progress,
) -> Result<(), ImageError> {
    let fail = |m: String| ImageError::Debootstrap(m);
    let dir = tempfile::Builder::new()
        .prefix("sandboxd-rootfs-")
        .tempdir()
        .map_err(|e| fail(format!("creating a temporary directory: {e}")))?;
    let rootfs = dir.path().join("rootfs");
    progress.report(&format!(
        "debootstrap --variant=minbase bookworm from {mirror} (about a minute)"
    ));
    let mut child = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg(mirror)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run debootstrap ({e}); install it (apt-get install debootstrap) \
                 or make {ONLINE_BASE} available"
            ))
        })?;
    let mut tail = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            progress.report(&format!("debootstrap: {line}"));
            push_tail(&mut tail, line);
        }
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = err.read_to_string(&mut stderr).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| fail(format!("waiting for debootstrap: {e}")))?;
    if !status.success() {
        return Err(fail(format!(
            "debootstrap exited with {status}: {}\n{}",
            stderr.trim(),
            tail.join("\n")
        )));
    }
    progress.report(&format!("importing the root filesystem as {OFFLINE_BASE}"));
    import_dir(engine, &rootfs).await?;
    Ok(())
}

/// Streams a directory as a tarball into `docker import`, without holding it in memory.
async fn import_dir(engine: &Engine, rootfs: &Path) -> Result<(), ImageError> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-cf", "-", "."])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ImageError::Debootstrap(format!("cannot run tar: {e}")))?;
    let stdout = tar
        .stdout
        .take()
        .ok_or_else(|| ImageError::Debootstrap("tar has no stdout".into()))?;
    engine
        .import_rootfs(OFFLINE_BASE, ReaderStream::new(stdout))
        .await?;
    let status = tar
        .wait()
        .await
        .map_err(|e| ImageError::Debootstrap(format!("waiting for tar: {e}")))?;
    if !status.success() {
        return Err(ImageError::Debootstrap(format!("tar exited with {status}")));
    }
    Ok(())
}

fn push_tail(tail: &mut Vec<String>, line: String) {
    tail.push(line);
    if tail.len() > 10 {
        tail.remove(0);
    }
}

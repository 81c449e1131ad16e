//! Making sure the default sandbox image exists: built from the embedded
//! `images/default/Dockerfile` on a base pulled from a registry or, offline, built from
//! Debian packages with debootstrap and imported.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::io::ReaderStream;

use crate::docker::{Engine, EngineError};

/// The recipe of the default image, embedded so the binary needs no checkout.
pub const DEFAULT_DOCKERFILE: &str = include_str!("../../images/default/Dockerfile");

/// The label that records which recipe built an image.
const RECIPE_LABEL: &str = "sandboxd.recipe";

/// The base image built offline.
const OFFLINE_BASE: &str = "sandboxd/debian-base:bookworm";

/// The base image pulled online.
const ONLINE_BASE: &str = "debian:bookworm-slim";

/// Errors of preparing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The offline base could not be built.
    #[error("building the base image from Debian packages failed: {0}")]
    Debootstrap(String),
    /// A custom image is missing and cannot be pulled.
    #[error("image {image} is not present and could not be pulled: {reason}")]
    Missing {
        /// The image reference.
        image: String,
        /// Why the pull failed.
        reason: String,
    },
}

/// Where progress goes: one line at a time, for logs and the health endpoint.
pub trait Progress: Send + Sync {
    /// Reports what is happening now.
    fn report(&self, line: &str);
}

impl<F: Fn(&str) + Send + Sync> Progress for F {
    fn report(&self, line: &str) {
        self(line)
    }
}

/// The hash of the default recipe, which names its build.
pub fn recipe_hash(dockerfile: &str) -> String {
    let digest = Sha256::digest(dockerfile.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Ensures `image` exists. The default image is built when missing or stale; any other
/// image is pulled when missing.
pub async fn ensure_image(
    engine: &Engine,
    image: &str,
    debian_mirror: &str,
    progress: &dyn Progress,
) -> Result<(), ImageError> {
    if image != crate::config::DEFAULT_IMAGE {
        if engine.image_labels(image).await?.is_some() {
            return Ok(());
        }
        progress.report(&format!("pulling {image}"));
        return engine
            .pull(image, |l| progress.report(l))
            .await
            .map_err(|e| ImageError::Missing {
                image: image.to_owned(),
                reason: e.to_string(),
            });
    }
    let hash = recipe_hash(DEFAULT_DOCKERFILE);
    if let Some(labels) = engine.image_labels(image).await? {
        if labels.get(RECIPE_LABEL) == Some(&hash) {
            return Ok(());
        }
        progress.report(&format!(
            "{image} was built from another recipe; rebuilding"
        ));
    }
    let base = ensure_base(engine, debian_mirror, progress).await?;
    progress.report(&format!("building {image} on {base} (recipe {hash})"));
    let context = dockerfile_context(DEFAULT_DOCKERFILE);
    engine
        .build(
            image,
            context,
            HashMap::from([("BASE".to_owned(), base)]),
            HashMap::from([(RECIPE_LABEL.to_owned(), hash)]),
            |l| progress.report(l),
        )
        .await?;
    progress.report(&format!("built {image}"));
    Ok(())
}

/// Finds or makes a Debian bookworm base: present, pulled, or bootstrapped.
async fn ensure_base(
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

/// A build context holding just a Dockerfile.
pub fn dockerfile_context(dockerfile: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .expect("appending to an in-memory tar cannot fail");
    builder
        .into_inner()
        .expect("finishing an in-memory tar cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_hash_is_stable_and_short() {
        assert_eq!(recipe_hash("a"), recipe_hash("a"));
        assert_ne!(recipe_hash("a"), recipe_hash("b"));
        assert_eq!(recipe_hash("a").len(), 16);
    }

    #[test]
    fn context_is_a_tar_with_the_dockerfile() {
        let tar = dockerfile_context("FROM x\n");
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, vec!["Dockerfile"]);
    }
}

//! Making sure the default sandbox image exists: built from the embedded
//! `images/default/Dockerfile` on a base pulled from a registry or, offline, built from
//! Debian packages with debootstrap and imported.

mod base;
mod node;

use std::collections::HashMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::docker::{Engine, EngineError};

/// The recipe of the default image, embedded so the binary needs no checkout.
pub const DEFAULT_DOCKERFILE: &str = include_str!("../../../images/default/Dockerfile");

/// The label that records which recipe built an image.
const RECIPE_LABEL: &str = "sandboxd.recipe";

/// Errors of preparing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The offline base could not be built.
    #[error("building the base image from Debian packages failed: {0}")]
    Debootstrap(String),
    /// A package the image is built with could not be fetched.
    #[error("fetching {what} from {url} failed: {reason}")]
    Fetch {
        /// The package and version.
        what: String,
        /// Where it was fetched from.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A custom image is missing and cannot be pulled.
    #[error("image {image} is not present and could not be pulled: {reason}")]
    Missing {
        /// The image reference.
        image: String,
        /// Why the pull failed.
        reason: String,
    },
}

/// The default sandbox image, built from `images/default` on first start.
pub const DEFAULT_IMAGE: &str = "sandboxd/default:bookworm";

/// Where the default image's ingredients come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Debian mirror for the offline base (plain http works behind TLS interception).
    pub debian_mirror: String,
    /// The npm registry Node.js, npm and corepack are fetched from.
    pub npm_registry: String,
    /// Where fetched tarballs are kept between builds.
    pub cache_dir: PathBuf,
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

/// The hash of a recipe (the Dockerfile and the pinned packages it is built with).
pub fn recipe_hash(recipe: &str) -> String {
    let digest = Sha256::digest(recipe.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Ensures `image` exists. The default image is built when missing or stale; any other
/// image is pulled when missing.
pub async fn ensure_image(
    engine: &Engine,
    image: &str,
    sources: &Sources,
    progress: &dyn Progress,
) -> Result<(), ImageError> {
    if image != DEFAULT_IMAGE {
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
    let hash = recipe_hash(&format!("{DEFAULT_DOCKERFILE}{}", node::pins()));
    if let Some(labels) = engine.image_labels(image).await? {
        if labels.get(RECIPE_LABEL) == Some(&hash) {
            return Ok(());
        }
        progress.report(&format!(
            "{image} was built from another recipe; rebuilding"
        ));
    }
    let base = base::ensure_base(engine, &sources.debian_mirror, progress).await?;
    let dists = node::fetch_all(&sources.npm_registry, &sources.cache_dir, progress).await?;
    progress.report(&format!("building {image} on {base} (recipe {hash})"));
    let context = build_context(DEFAULT_DOCKERFILE, &dists);
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

/// A build context holding just a Dockerfile.
pub fn dockerfile_context(dockerfile: &str) -> Vec<u8> {
    build_context(dockerfile, &[])
}

/// A build context: the Dockerfile and `(name, bytes)` files beside it.
fn build_context(dockerfile: &str, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let entries = std::iter::once(("Dockerfile", dockerfile.as_bytes()))
        .chain(files.iter().map(|(name, bytes)| (*name, bytes.as_slice())));
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, bytes)
            .expect("appending to an in-memory tar cannot fail");
    }
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

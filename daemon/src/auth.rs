//! The API key: taken from the configuration, or generated once and kept in the state
//! directory (mode 0600). The key itself is never printed or logged.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the generated key lives in the state directory.
pub const KEY_FILE: &str = "api-key";

/// The daemon's API key.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where the key came from, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `SANDBOXD_API_KEY`.
    Environment,
    /// A file in the state directory (generated now or earlier).
    File(PathBuf),
}

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: String) -> Self {
        Self(key)
    }

    /// Compares a presented key in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }

    /// Uses the configured key, else reads or creates `<state_dir>/api-key`.
    pub fn load_or_create(
        configured: Option<String>,
        state_dir: &Path,
    ) -> std::io::Result<(Self, KeySource)> {
        if let Some(key) = configured {
            return Ok((Self(key), KeySource::Environment));
        }
        let path = state_dir.join(KEY_FILE);
        let key = read_or_create_secret(&path, || format!("sk_sbx_{}", random_hex(32)))?;
        Ok((Self(key), KeySource::File(path)))
    }
}

/// Reads a secret kept in a file readable by its owner only, creating it with
/// `generate` when missing or empty. Tightens the file's mode if someone loosened it.
pub fn read_or_create_secret(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(text.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{secret}")?;
    Ok(secret)
}

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality whose running time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn generates_once_and_keeps_it_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, source) = ApiKey::load_or_create(None, dir.path()).expect("create");
        let path = dir.path().join(KEY_FILE);
        assert_eq!(source, KeySource::File(path.clone()));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, _) = ApiKey::load_or_create(None, dir.path()).expect("load");
        assert!(a.matches(&b.0));
        let (c, source) = ApiKey::load_or_create(Some("k".into()), dir.path()).expect("env");
        assert_eq!(source, KeySource::Environment);
        assert!(c.matches("k"));
        assert_eq!(format!("{c:?}"), "ApiKey(<redacted>)");
    }
}

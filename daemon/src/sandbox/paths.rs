//! Paths inside a sandbox: relative ones resolve under `/home/user`, every one is
//! normalized lexically, and the daemon's own mount points are off limits.

use std::fmt;

use crate::names::{HOME, RESERVED};

/// A path a client gave that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath {
    /// The path as given.
    pub path: String,
    /// Why it is refused.
    pub reason: &'static str,
}

impl fmt::Display for BadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path {:?} {}", self.path, self.reason)
    }
}

impl std::error::Error for BadPath {}

/// Resolves a client path to an absolute, normalized one.
///
/// `..` cannot climb above `/`; the result never contains `.`/`..`/empty components.
pub fn resolve(path: &str) -> Result<String, BadPath> {
    let bad = |reason| BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.trim().is_empty() {
        return Err(bad("is empty"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if path.len() > 4096 {
        return Err(bad("is longer than 4096 bytes"));
    }
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{HOME}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let resolved = format!("/{}", parts.join("/"));
    if resolved == RESERVED || resolved.starts_with(&format!("{RESERVED}/")) {
        return Err(bad("is reserved for sandboxd"));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_live_under_home() {
        assert_eq!(resolve("a/b.txt").as_deref(), Ok("/home/user/a/b.txt"));
        assert_eq!(resolve("./a//b/").as_deref(), Ok("/home/user/a/b"));
        assert_eq!(resolve("/etc/hosts").as_deref(), Ok("/etc/hosts"));
    }

    #[test]
    fn dot_dot_is_normalized_and_cannot_escape_root() {
        assert_eq!(resolve("../../../../x").as_deref(), Ok("/x"));
        assert_eq!(resolve("a/../b").as_deref(), Ok("/home/user/b"));
        assert_eq!(resolve("/..").as_deref(), Ok("/"));
    }

    #[test]
    fn bad_paths_are_refused_with_a_reason() {
        assert_eq!(resolve("").unwrap_err().reason, "is empty");
        assert_eq!(resolve("a\0b").unwrap_err().reason, "contains a NUL byte");
        assert_eq!(
            resolve("/.sandboxd/run/init.sock").unwrap_err().reason,
            "is reserved for sandboxd"
        );
        assert!(resolve("/home/user/../../.sandboxd").is_err());
        assert!(resolve("/.sandboxdx").is_ok());
    }
}

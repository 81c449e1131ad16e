//! The names every floor of the daemon shares: ids, the accounts inside a sandbox, the
//! paths and mount points of its container, the labels on its Docker objects, and the
//! runtimes an agent may name.
//!
//! A leaf: it imports nothing of the daemon, so any module may import it without
//! tying itself to the domain that first needed the name.

/// The sandbox account's name inside every container (uid 1000).
pub const USER: &str = "user";
/// Root, for setup steps and the daemon's own housekeeping.
pub const ROOT: &str = "root";
/// The sandbox user's home: the root of relative paths and the default cwd.
pub const HOME: &str = "/home/user";

/// The label naming a container's sandbox.
pub const LABEL_SANDBOX: &str = "sandboxd.sandbox";
/// The label naming the daemon instance (its state directory) that owns a container.
pub const LABEL_INSTANCE: &str = "sandboxd.instance";

/// The runtime names agent definitions may use; the first is the default.
pub const RUNTIMES: &[&str] = &["claude-code", "codex"];

/// Where sandbox-init, its socket and the CLIs are mounted inside a container; no API
/// call may touch it.
pub const RESERVED: &str = "/.sandboxd";

/// Where things are mounted inside a container, all under [`RESERVED`].
pub mod mounts {
    /// The sandbox-init binary (read-only).
    pub const INIT: &str = "/.sandboxd/init";
    /// The host's Claude Code CLI, when it is mounted (read-only).
    pub const CLAUDE: &str = "/.sandboxd/bin/claude";
    /// The host's Codex CLI, when it is mounted (read-only).
    pub const CODEX: &str = "/.sandboxd/bin/codex";
    /// The directory of sandbox-init's socket.
    pub const RUN: &str = "/.sandboxd/run";
}

/// A random id with a prefix: 16 lowercase base-32 characters (80 bits).
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let body: String = (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{body}")
}

/// Whether `name` has the shape of a sandbox id (`sb_` and 16 base-32 characters), as
/// [`new_id`] makes them: safe to join to a directory.
pub fn is_sandbox_id(name: &str) -> bool {
    name.strip_prefix("sb_").is_some_and(|rest| {
        rest.len() == 16
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id("sb_");
        assert!(a.starts_with("sb_") && a.len() == 19, "{a}");
        assert_ne!(a, new_id("sb_"));
        assert!(is_sandbox_id(&a));
        for other in [
            "sb_short",
            "sb_../../etc/passwd1",
            "state.db",
            "sb_ABCDEFGHIJKLMNOP",
        ] {
            assert!(!is_sandbox_id(other), "{other}");
        }
    }

    #[test]
    fn mounts_are_under_the_reserved_directory() {
        for path in [mounts::INIT, mounts::CLAUDE, mounts::CODEX, mounts::RUN] {
            assert!(path.starts_with(&format!("{RESERVED}/")), "{path}");
        }
    }
}

//! The sandbox's own environment, set after start: a warm-pool container is started
//! with the image's environment only, and gets the sandbox's `envs` when a create
//! claims it. Every process started later gets them, exactly as if they had been the
//! container's environment (the account's `HOME`, `USER`, `LOGNAME`, `SHELL` and a
//! request's own variables still win).
//!
//! They are kept in `env.json` in the socket directory (a host directory that outlives
//! the container's processes), so a container restarted by the engine comes back with
//! them.

use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

/// The file in the socket directory.
const FILE: &str = "env.json";

static DIR: OnceLock<PathBuf> = OnceLock::new();
static VARS: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// Loads what an earlier run of this container set (nothing when there is no file).
pub fn init(socket_dir: &Path) {
    let _ = DIR.set(socket_dir.to_owned());
    if let Ok(text) = std::fs::read(socket_dir.join(FILE)) {
        match serde_json::from_slice::<Vec<(String, String)>>(&text) {
            Ok(vars) if vars.iter().all(|(k, v)| valid(k, v)) => store(vars),
            _ => eprintln!("sandbox-init: ignoring an unreadable {FILE}"),
        }
    }
}

/// Whether a variable can be set.
pub fn valid(key: &str, value: &str) -> bool {
    !key.is_empty() && !key.contains('=') && !key.contains('\0') && !value.contains('\0')
}

/// Replaces the set variables and keeps them for a restart.
pub fn set(vars: Vec<(String, String)>) -> std::io::Result<()> {
    if let Some((key, _)) = vars.iter().find(|(k, v)| !valid(k, v)) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad environment variable {key:?}"),
        ));
    }
    if let Some(dir) = DIR.get() {
        let tmp = dir.join(format!(".{FILE}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(&vars).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, dir.join(FILE))?;
    }
    store(vars);
    Ok(())
}

fn store(vars: Vec<(String, String)>) {
    // Every write replaces the whole value: a poisoned lock is still consistent.
    *VARS.write().unwrap_or_else(|p| p.into_inner()) = vars;
}

/// The variables set so far.
pub fn current() -> Vec<(String, String)> {
    VARS.read().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_checked() {
        assert!(valid("A", "b c"));
        assert!(!valid("", "x"));
        assert!(!valid("A=B", "x"));
        assert!(!valid("A", "x\0"));
        assert!(set(vec![("A=B".into(), "x".into())]).is_err());
    }
}

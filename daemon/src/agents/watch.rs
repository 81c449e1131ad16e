//! Reloading the agents directory: JSON and code agents are loaded again when a file
//! under it changes (polled), or when asked (`POST /v1/agents/reload`), without a
//! restart. Definitions deployed through the API as JSON are left alone; those deployed
//! as source are built again with the directory's files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::code::{self, LoaderSettings};
use super::{load_dir, Agents, LoadProblem};
use crate::docker::Engine;

/// How often the directory is checked for changes.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// The most entries looked at (a huge tree is not an agents directory).
const MAX_ENTRIES: usize = 20_000;

/// The agents directory and what was loaded from it last.
#[derive(Debug)]
pub struct AgentFiles {
    dir: PathBuf,
    loader: LoaderSettings,
    /// The fingerprint of the last load.
    seen: Mutex<Option<Vec<(PathBuf, u64, SystemTime)>>>,
    /// One load at a time.
    loading: tokio::sync::Mutex<()>,
}

impl AgentFiles {
    /// The agents directory `dir`, loaded with `loader`.
    pub fn new(dir: PathBuf, loader: LoaderSettings) -> Self {
        Self {
            dir,
            loader,
            seen: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the directory again if it changed since the last load (or always when
    /// `force`); returns whether it loaded.
    pub async fn refresh(&self, engine: &Engine, agents: &Agents, force: bool) -> bool {
        let _one = self.loading.lock().await;
        let now = fingerprint(&self.dir);
        {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !force && seen.as_ref() == Some(&now) {
                return false;
            }
        }
        let (mut files, mut problems) = match load_dir(&self.dir) {
            Ok(loaded) => loaded,
            Err(unreadable) => {
                // Nothing is known of the definitions: the last good set stays, and the
                // next change (or reload) tries again.
                tracing::warn!(
                    path = %unreadable.path.display(),
                    "the agents directory {}: the agents loaded before stay",
                    unreadable.message
                );
                return false;
            }
        };
        let loaded = code::load(engine, &self.loader, &self.dir).await;
        problems.extend(loaded.problems);
        for (slug, def) in loaded.files {
            if files.contains_key(&slug) {
                problems.push(LoadProblem {
                    path: def
                        .code
                        .as_ref()
                        .map(|c| PathBuf::from(&c.path))
                        .unwrap_or_default(),
                    message: format!("agent {slug:?} is also defined by {slug}.json"),
                });
                continue;
            }
            files.insert(slug, def);
        }
        for problem in &problems {
            tracing::warn!(path = %problem.path.display(), "agent not loaded: {}", problem.message);
        }
        tracing::info!("agents directory loaded: {} definitions", files.len());
        agents.replace_files(files, loaded.deployed, problems);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        true
    }

    /// Builds an agent's source deployed through the API (see [`code::deploy`]), one
    /// load at a time with the directory's.
    pub async fn deploy(
        &self,
        engine: &Engine,
        slug: &str,
        source: &str,
        ext: &str,
    ) -> Result<super::AgentDef, String> {
        let _one = self.loading.lock().await;
        code::deploy(engine, &self.loader, &self.dir, slug, source, ext).await
    }

    /// Reloads whenever the directory changes, until `shutdown`. Waits for `engine`.
    pub async fn watch(
        self: Arc<Self>,
        engine: impl Fn() -> Option<Engine> + Send + 'static,
        agents: Arc<Agents>,
        shutdown: CancellationToken,
    ) {
        loop {
            let force = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_EVERY) => false,
                () = agents.reload_requested() => true,
            };
            // Before the first load (the daemon getting ready does it) there is nothing
            // to compare, unless a reload is asked for.
            let loaded = self
                .seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
            if let (true, Some(engine)) = (loaded || force, engine()) {
                self.refresh(&engine, &agents, force).await;
            }
        }
    }
}

/// Every file under `dir` (not `node_modules`) with its size and modification time.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in read.flatten() {
            if out.len() >= MAX_ENTRIES {
                return out;
            }
            let path = entry.path();
            if entry.file_name() == "node_modules" {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push((
                path,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_changes_the_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.ts"), "1").expect("write");
        let before = fingerprint(dir.path());
        assert_eq!(before, fingerprint(dir.path()));
        std::fs::write(dir.path().join("a.ts"), "22").expect("write");
        assert_ne!(before, fingerprint(dir.path()));
    }
}

//! The store's backups while the daemon runs: one every [`backup::EVERY`] and one at a
//! clean stop, each only while the store accounts for everything of this instance
//! (a store that lost sandboxes must not rotate the good backups out).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::sandbox::Sandboxes;
use crate::store::{backup, Store};

/// Takes a backup when the store is worth one; says why not otherwise.
pub(super) async fn take(store: &Arc<Store>, sandboxes: &Sandboxes, dir: &Path, when: &str) {
    if !sandboxes.store_accounts_for_all() {
        tracing::warn!(
            "no backup of the store {when}: it has not been matched with the engine yet, \
             or it has no record of sandboxes found on disk (`sandboxd doctor`)"
        );
        return;
    }
    let (store, dir) = (store.clone(), dir.to_path_buf());
    match tokio::task::spawn_blocking(move || store.back_up(&dir)).await {
        Ok(Ok(path)) => tracing::info!("store backed up {when}: {}", path.display()),
        Ok(Err(e)) => tracing::warn!("the store's backup {when} failed: {e}"),
        Err(e) => tracing::warn!("the store's backup {when} failed: {e}"),
    }
}

/// Backs the store up every [`backup::EVERY`] until `shutdown`.
pub(super) async fn every(
    store: Arc<Store>,
    sandboxes: Arc<Sandboxes>,
    dir: PathBuf,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backup::EVERY) => {}
        }
        take(&store, &sandboxes, &dir, "on schedule").await;
    }
}

/// Why the daemon does not start on a damaged store, and the command that fixes it.
pub(super) fn damaged(state_dir: &Path, problem: &str) -> String {
    let dir = state_dir.join(backup::DIR);
    let db = state_dir.join("state.db");
    let next = match backup::backups(&dir).first() {
        Some(newest) => format!(
            "Put the newest good backup back with\n\n    sandboxd state restore --state-dir {}\n\n\
             (the newest is {}; the damaged file is kept beside it), then start the daemon \
             again: it re-adopts the sandboxes the backup knows, and quarantines (keeps) \
             the others.",
            state_dir.display(),
            newest.display()
        ),
        None => format!(
            "There is no backup in {}. Move {} aside to start with an empty store: the \
             sandboxes on disk are then quarantined (stopped and kept), not deleted.",
            dir.display(),
            db.display()
        ),
    };
    format!(
        "the state database {} is damaged ({problem}); the daemon does not start on it.\n{next}",
        db.display()
    )
}

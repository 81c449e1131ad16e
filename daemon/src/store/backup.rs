//! Backups of the store: consistent copies taken while the daemon runs (`VACUUM INTO`,
//! which reads one snapshot of the database), kept in `<state>/backups/` as
//! `state-<unix ms>.db`, the newest [`GENERATIONS`] of them; and putting the newest
//! good one back (`sandboxd state restore`).
//!
//! A copy is written under a temporary name, synced, then renamed, so a backup that
//! is listed is whole. Restoring never deletes the current database: it is moved
//! aside as `state.db.damaged-<unix ms>` first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{millis, Store, StoreError};

/// How many backups are kept.
pub const GENERATIONS: usize = 5;
/// How often a running daemon takes one.
pub const EVERY: Duration = Duration::from_secs(15 * 60);
/// The directory of the backups, in the state directory.
pub const DIR: &str = "backups";

impl Store {
    /// Writes a consistent copy of the database into `dir` and keeps the newest
    /// [`GENERATIONS`]; returns the copy's path.
    pub fn back_up(&self, dir: &Path) -> Result<PathBuf, StoreError> {
        let other = |what: &str, e: std::io::Error| {
            StoreError::Other(format!("{what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| other("creating", e))?;
        let now = millis(std::time::SystemTime::now());
        let path = dir.join(format!("state-{now}.db"));
        let partial = dir.join(format!(".state-{now}.db.partial"));
        let _ = std::fs::remove_file(&partial);
        let written = self
            .conn()
            .execute("VACUUM INTO ?1", [partial.to_string_lossy()])
            .map_err(StoreError::from)
            .and_then(|_| {
                std::fs::File::open(&partial)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| other("syncing a backup in", e))
            })
            .and_then(|()| {
                std::fs::rename(&partial, &path).map_err(|e| other("naming a backup in", e))
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        for old in backups(dir).into_iter().skip(GENERATIONS) {
            let _ = std::fs::remove_file(old);
        }
        Ok(path)
    }
}

/// The backups in `dir`, newest first.
pub fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ms = name
                .strip_prefix("state-")?
                .strip_suffix(".db")?
                .parse()
                .ok()?;
            Some((ms, entry.path()))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, path)| path).collect()
}

/// Whether the database at `path` opens and passes SQLite's integrity check; the
/// reason when it does not.
pub fn check(path: &Path) -> Result<(), String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    quick_check(&conn)
}

/// SQLite's `quick_check` of an open database.
pub(super) fn quick_check(conn: &Connection) -> Result<(), String> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| e.to_string())?;
    let lines: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    match lines.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(lines.join("; ")),
    }
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    /// The backup put in place.
    pub from: PathBuf,
    /// Where the database it replaced went (none when there was none).
    pub moved_aside: Option<PathBuf>,
}

/// Puts a backup in place of `<state_dir>/state.db`: `from`, else the newest backup
/// that passes the integrity check. The daemon must not be running (the caller holds
/// the state directory's lock).
pub fn restore(state_dir: &Path, from: Option<&Path>) -> Result<Restored, String> {
    let dir = state_dir.join(DIR);
    let from = match from {
        Some(path) => {
            check(path).map_err(|e| format!("{} is no good database: {e}", path.display()))?;
            path.to_path_buf()
        }
        None => backups(&dir)
            .into_iter()
            .find(|path| check(path).is_ok())
            .ok_or_else(|| format!("there is no good backup in {}", dir.display()))?,
    };
    let db = state_dir.join("state.db");
    let now = millis(std::time::SystemTime::now());
    let moved_aside = if db.exists() {
        let aside = state_dir.join(format!("state.db.damaged-{now}"));
        std::fs::rename(&db, &aside).map_err(|e| format!("moving {} aside: {e}", db.display()))?;
        Some(aside)
    } else {
        None
    };
    // Its log and index belong to the database moved aside.
    for suffix in ["-wal", "-shm"] {
        let side = state_dir.join(format!("state.db{suffix}"));
        if side.exists() {
            let aside = state_dir.join(format!("state.db.damaged-{now}{suffix}"));
            std::fs::rename(&side, &aside)
                .map_err(|e| format!("moving {} aside: {e}", side.display()))?;
        }
    }
    let partial = state_dir.join(".state.db.restoring");
    std::fs::copy(&from, &partial)
        .and_then(|_| std::fs::File::open(&partial)?.sync_all())
        .and_then(|()| std::fs::rename(&partial, &db))
        .map_err(|e| format!("copying {} into place: {e}", from.display()))?;
    Ok(Restored { from, moved_aside })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_are_whole_rotated_and_restored_with_the_damaged_one_kept() {
        let state = tempfile::tempdir().expect("a state directory");
        let db = state.path().join("state.db");
        let store = Store::open(&db).expect("opened");
        store
            .put_agent("kept", r#"{"name":"Kept"}"#)
            .expect("an agent");
        let dir = state.path().join(DIR);
        let mut taken = Vec::new();
        for _ in 0..GENERATIONS + 2 {
            taken.push(store.back_up(&dir).expect("backed up"));
            std::thread::sleep(Duration::from_millis(2));
        }
        let kept = backups(&dir);
        assert_eq!(kept.len(), GENERATIONS);
        assert_eq!(kept[0], *taken.last().expect("one"));
        assert!(kept.iter().all(|b| check(b).is_ok()));
        drop(store);

        std::fs::write(&db, b"this is not a database, it was damaged").expect("damage");
        assert!(check(&db).is_err());
        let restored = restore(state.path(), None).expect("restored");
        assert_eq!(restored.from, kept[0]);
        let aside = restored.moved_aside.expect("the damaged one is kept");
        assert!(std::fs::read(&aside)
            .expect("read")
            .starts_with(b"this is not"));
        let store = Store::open(&db).expect("the restored store opens");
        assert_eq!(store.agents().expect("agents").len(), 1);
    }

    #[test]
    fn a_damaged_backup_is_passed_over_and_none_good_is_an_error() {
        let state = tempfile::tempdir().expect("a state directory");
        let dir = state.path().join(DIR);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("state-1.db"), b"garbage").expect("write");
        let err = restore(state.path(), None).expect_err("no good backup");
        assert!(err.contains("no good backup"), "{err}");
        assert!(!state.path().join("state.db").exists());
    }
}

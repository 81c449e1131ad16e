//! The daemon's durable state: one SQLite database (`state.db` in the state
//! directory) holding deployed agents, sandboxes, threads, their messages and event
//! logs. The schema lives in `migrations/`, applied in order by `PRAGMA user_version`.
//!
//! Every write is its own transaction, committed before the caller answers a client.
//! One connection behind a mutex serializes writers; statements take microseconds,
//! and WAL mode keeps a reader from ever seeing half a write.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

/// The migrations, in order. Each runs once, in a transaction.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_model_usage.sql"),
    include_str!("../migrations/0003_thread_runtime_state.sql"),
    include_str!("../migrations/0004_agent_env.sql"),
    include_str!("../migrations/0005_attributes_deadline.sql"),
    include_str!("../migrations/0006_held.sql"),
];

/// [`Store::history_limit`] unless the daemon sets another, in MiB.
const DEFAULT_HISTORY_MB: u64 = 64;

mod agent_env;
pub mod backup;
mod history;
pub mod lock;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk under the state directory is full: the write was rolled back whole
    /// (SQLite is transactional), the database is intact and reads still work.
    #[error(
        "the disk holding the state database (state.db in the state directory) is full, \
         so nothing was changed; free space there and retry ({0})"
    )]
    Full(String),
    /// Another process holds the database's write lock (an operator's `sqlite3`, a
    /// backup tool) longer than the daemon waits for it; nothing was changed.
    #[error(
        "the state database is locked by another process ({0}); nothing was changed, retry \
         when it lets go"
    )]
    Busy(String),
    /// The database cannot be read as one: not a database at all, or it fails
    /// SQLite's integrity check.
    #[error("the state database is damaged: {0}")]
    Damaged(String),
    /// Any other failure.
    #[error("state database: {0}")]
    Other(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            Self::Full(e.to_string())
        } else if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ) {
            Self::Busy(e.to_string())
        } else if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        ) {
            Self::Damaged(e.to_string())
        } else {
            Self::Other(e.to_string())
        }
    }
}

/// Milliseconds since the epoch.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The time of `ms` milliseconds since the epoch.
pub fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A sandbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxRow {
    /// `sb_…`
    pub id: String,
    /// `sbx-…`
    pub sandbox_id: String,
    /// Agent slug.
    pub agent_slug: String,
    /// Agent display name.
    pub agent_name: String,
    /// The agent's definition (JSON).
    pub agent: String,
    /// Owner.
    pub owner: Option<String>,
    /// Working directory.
    pub cwd: String,
    /// Idle lifetime.
    pub ttl_ms: Option<u64>,
    /// Egress policy (JSON).
    pub policy: String,
    /// Model-proxy token.
    pub model_token: String,
    /// The CLI's path inside.
    pub claude_program: String,
    /// Status.
    pub status: String,
    /// Error.
    pub error: Option<String>,
    /// Container id.
    pub container_id: Option<String>,
    /// Created.
    pub created_at: i64,
    /// Updated.
    pub updated_at: i64,
    /// Model-proxy consumption (JSON), once there is some.
    pub model_usage: Option<String>,
    /// What a client attached at creation (JSON), when anything.
    pub attributes: Option<String>,
    /// Absolute deadline (ms since the epoch), when it has one.
    pub deadline_ms: Option<i64>,
    /// Paused by a client until a client resumes it.
    pub held: bool,
}

/// A thread row (without messages and events).
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadRow {
    /// `th_…`
    pub id: String,
    /// Its sandbox's `sb_…`.
    pub sandbox_id: String,
    /// Name.
    pub name: String,
    /// Status.
    pub status: String,
    /// Error.
    pub error: Option<String>,
    /// Claude session id.
    pub session_id: String,
    /// Whether the session exists.
    pub session_started: bool,
    /// Usage totals (JSON).
    pub usage: String,
    /// Settings (JSON).
    pub settings: String,
    /// Created.
    pub created_at: i64,
    /// Updated.
    pub updated_at: i64,
    /// Last turn's end.
    pub completed_at: Option<i64>,
    /// What the agent runtime keeps between turns (JSON).
    pub runtime_state: Option<String>,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Sequence number within the thread, from 1.
    pub seq: u64,
    /// When (ms since the epoch).
    pub at: i64,
    /// The session update.
    pub body: Value,
}

/// The database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    /// See [`Store::history_limit`].
    history_limit: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // It holds the sandboxes' model-proxy tokens: the owner's alone. SQLite gives
        // its -wal and -shm files the database file's mode.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| StoreError::Other(format!("restricting {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL: readers never block the writer; NORMAL sync survives a killed daemon
        // (only a power loss can lose the last commits).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        backup::quick_check(&conn).map_err(StoreError::Damaged)?;
        Self::with(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with(Connection::open_in_memory()?)
    }

    fn with(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Other(format!(
                "it has schema version {version}, newer than this sandboxd knows ({}); \
                 use a newer sandboxd or another --state-dir",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            history_limit: std::sync::atomic::AtomicU64::new(DEFAULT_HISTORY_MB << 20),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic mid-statement rolls the statement back: the connection is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // Agents.

    /// Deployed agents: (slug, definition JSON).
    pub fn agents(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT slug, definition FROM agents ORDER BY slug")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deploys (inserts or replaces) an agent.
    pub fn put_agent(&self, slug: &str, definition: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO agents (slug, definition, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (slug) DO UPDATE SET definition = ?2, updated_at = ?3",
            params![slug, definition, millis(SystemTime::now())],
        )?;
        Ok(())
    }

    /// Removes a deployed agent.
    pub fn delete_agent(&self, slug: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM agents WHERE slug = ?1", [slug])?;
        Ok(())
    }

    // Sandboxes.

    /// Inserts a sandbox, or replaces its row.
    pub fn put_sandbox(&self, row: &SandboxRow) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO sandboxes (id, sandbox_id, agent_slug, agent_name, agent, owner, cwd,
                 ttl_ms, policy, model_token, claude_program, status, error, container_id,
                 created_at, updated_at, attributes, deadline_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?18)
             ON CONFLICT (id) DO UPDATE SET status = ?12, error = ?13, container_id = ?14,
                 updated_at = ?16",
            params![
                row.id,
                row.sandbox_id,
                row.agent_slug,
                row.agent_name,
                row.agent,
                row.owner,
                row.cwd,
                row.ttl_ms.map(|t| t as i64),
                row.policy,
                row.model_token,
                row.claude_program,
                row.status,
                row.error,
                row.container_id,
                row.created_at,
                row.updated_at,
                row.attributes,
                row.deadline_ms,
            ],
        )?;
        Ok(())
    }

    /// Moves a sandbox's absolute deadline (`None`: it has none).
    pub fn set_sandbox_deadline(
        &self,
        id: &str,
        deadline_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sandboxes SET deadline_ms = ?2 WHERE id = ?1",
            params![id, deadline_ms],
        )?;
        Ok(())
    }

    /// Records whether a client paused the sandbox (see [`SandboxRow::held`]).
    pub fn set_sandbox_held(&self, id: &str, held: bool) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sandboxes SET held = ?2 WHERE id = ?1",
            params![id, held],
        )?;
        Ok(())
    }

    /// Updates a sandbox's status, error and container.
    pub fn set_sandbox_state(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
        container_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sandboxes SET status = ?2, error = ?3, container_id = ?4, updated_at = ?5
             WHERE id = ?1",
            params![id, status, error, container_id, millis(SystemTime::now())],
        )?;
        Ok(())
    }

    /// Records what a sandbox consumed through the model proxy.
    pub fn set_model_usage(&self, id: &str, usage: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sandboxes SET model_usage = ?2 WHERE id = ?1",
            params![id, usage],
        )?;
        Ok(())
    }

    /// Deletes a sandbox with its threads, messages and events.
    pub fn delete_sandbox(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sandboxes WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every sandbox, oldest first.
    pub fn sandboxes(&self) -> Result<Vec<SandboxRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, sandbox_id, agent_slug, agent_name, agent, owner, cwd, ttl_ms, policy,
                    model_token, claude_program, status, error, container_id, created_at,
                    updated_at, model_usage, attributes, deadline_ms, held
             FROM sandboxes ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SandboxRow {
                id: r.get(0)?,
                sandbox_id: r.get(1)?,
                agent_slug: r.get(2)?,
                agent_name: r.get(3)?,
                agent: r.get(4)?,
                owner: r.get(5)?,
                cwd: r.get(6)?,
                ttl_ms: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
                policy: r.get(8)?,
                model_token: r.get(9)?,
                claude_program: r.get(10)?,
                status: r.get(11)?,
                error: r.get(12)?,
                container_id: r.get(13)?,
                created_at: r.get(14)?,
                updated_at: r.get(15)?,
                model_usage: r.get(16)?,
                attributes: r.get(17)?,
                deadline_ms: r.get(18)?,
                held: r.get(19)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // Threads.

    /// Inserts or updates a thread.
    pub fn put_thread(&self, row: &ThreadRow) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO threads (id, sandbox_id, name, status, error, session_id,
                 session_started, usage, settings, created_at, updated_at, completed_at,
                 runtime_state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (id) DO UPDATE SET name = ?3, status = ?4, error = ?5,
                 session_id = ?6, session_started = ?7, usage = ?8, settings = ?9,
                 updated_at = ?11, completed_at = ?12, runtime_state = ?13",
            params![
                row.id,
                row.sandbox_id,
                row.name,
                row.status,
                row.error,
                row.session_id,
                row.session_started,
                row.usage,
                row.settings,
                row.created_at,
                row.updated_at,
                row.completed_at,
                row.runtime_state,
            ],
        )?;
        Ok(())
    }

    /// Deletes a thread with its messages and events.
    pub fn delete_thread(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM threads WHERE id = ?1", [id])?;
        Ok(())
    }

    /// The threads of a sandbox, oldest first.
    pub fn threads(&self, sandbox_id: &str) -> Result<Vec<ThreadRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, sandbox_id, name, status, error, session_id, session_started, usage,
                    settings, created_at, updated_at, completed_at, runtime_state
             FROM threads WHERE sandbox_id = ?1 ORDER BY created_at, rowid",
        )?;
        let rows = stmt.query_map([sandbox_id], |r| {
            Ok(ThreadRow {
                id: r.get(0)?,
                sandbox_id: r.get(1)?,
                name: r.get(2)?,
                status: r.get(3)?,
                error: r.get(4)?,
                session_id: r.get(5)?,
                session_started: r.get(6)?,
                usage: r.get(7)?,
                settings: r.get(8)?,
                created_at: r.get(9)?,
                updated_at: r.get(10)?,
                completed_at: r.get(11)?,
                runtime_state: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // Messages.

    /// Replaces the message with the same id, or appends it.
    pub fn put_message(&self, thread_id: &str, id: &str, body: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO messages (thread_id, position, id, body)
             VALUES (?1, (SELECT COALESCE(MAX(position), 0) + 1 FROM messages
                          WHERE thread_id = ?1), ?2, ?3)
             ON CONFLICT (thread_id, id) DO UPDATE SET body = ?3",
            params![thread_id, id, body],
        )?;
        Ok(())
    }

    /// A thread's messages, in order.
    pub fn messages(&self, thread_id: &str) -> Result<Vec<Value>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT body FROM messages WHERE thread_id = ?1 ORDER BY position")?;
        let rows = stmt.query_map([thread_id], |r| r.get::<_, String>(0))?;
        rows.map(|r| {
            let text = r?;
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Other(format!("a stored message: {e}")))
        })
        .collect()
    }

    // Events.

    /// Appends an event; returns its sequence number.
    pub fn append_event(&self, thread_id: &str, at: i64, body: &str) -> Result<u64, StoreError> {
        let seq: i64 = self.conn().query_row(
            "INSERT INTO events (thread_id, seq, at, body)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE thread_id = ?1),
                     ?2, ?3)
             RETURNING seq",
            params![thread_id, at, body],
            |r| r.get(0),
        )?;
        Ok(seq as u64)
    }

    /// Events with `seq > after`, at most `limit`.
    pub fn events(
        &self,
        thread_id: &str,
        after: u64,
        limit: u64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at, body FROM events WHERE thread_id = ?1 AND seq > ?2
             ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![thread_id, after as i64, limit.min(i64::MAX as u64) as i64],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )?;
        rows.map(|r| {
            let (seq, at, body) = r?;
            Ok(EventRow {
                seq: seq as u64,
                at,
                body: serde_json::from_str(&body)
                    .map_err(|e| StoreError::Other(format!("a stored event: {e}")))?,
            })
        })
        .collect()
    }

    /// The last sequence number of a thread's events (0 when none).
    pub fn last_event(&self, thread_id: &str) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn()
            .query_row(
                "SELECT MAX(seq) FROM events WHERE thread_id = ?1",
                [thread_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(seq.unwrap_or(0) as u64)
    }
}

/// Rows for other modules' tests.
#[cfg(test)]
pub mod tests_support {
    /// A minimal sandbox row.
    pub fn sandbox_row(id: &str) -> super::SandboxRow {
        super::tests::sandbox(id)
    }

    /// A minimal thread row.
    pub fn thread_row(id: &str, sandbox: &str) -> super::ThreadRow {
        super::tests::thread(id, sandbox)
    }

    /// Makes the database as full as it is now (`true`), so that the next write that
    /// needs a page fails as on a full disk, or gives it room again (`false`).
    pub fn fill(store: &super::Store, full: bool) {
        let conn = store.conn();
        let pages: i64 = conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .expect("page count");
        let cap = if full { pages } else { i64::from(i32::MAX) };
        let _: i64 = conn
            .query_row(&format!("PRAGMA max_page_count = {cap}"), [], |r| r.get(0))
            .expect("page cap");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_disk_is_told_apart_from_other_failures() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let e = StoreError::from(full);
        assert!(matches!(e, StoreError::Full(_)), "{e:?}");
        assert!(e.to_string().contains("is full"), "{e}");
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        let corrupt = StoreError::from(failure(rusqlite::ffi::SQLITE_CORRUPT));
        assert!(matches!(corrupt, StoreError::Damaged(_)), "{corrupt:?}");
        let busy = StoreError::from(failure(rusqlite::ffi::SQLITE_BUSY));
        assert!(matches!(busy, StoreError::Busy(_)), "{busy:?}");
        let other = StoreError::from(failure(rusqlite::ffi::SQLITE_IOERR));
        assert!(matches!(other, StoreError::Other(_)), "{other:?}");
    }

    #[test]
    fn a_truncated_store_is_damaged_not_new() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).expect("open");
            for i in 0..300 {
                store
                    .put_sandbox(&sandbox(&format!("sb_{i:016}")))
                    .expect("put");
            }
        }
        let len = std::fs::metadata(&path).expect("stat").len();
        assert!(len > 8 * 4096, "the store is {len} bytes");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(len / 2))
            .expect("truncate");
        match Store::open(&path) {
            Err(StoreError::Damaged(_)) => {}
            other => panic!("a truncated store opened as {other:?}"),
        }
    }

    pub(super) fn sandbox(id: &str) -> SandboxRow {
        SandboxRow {
            id: id.into(),
            sandbox_id: id.replace("sb_", "sbx-"),
            agent_slug: "a".into(),
            agent_name: "A".into(),
            agent: "{}".into(),
            owner: None,
            cwd: "/home/user".into(),
            ttl_ms: Some(5),
            policy: "{}".into(),
            model_token: "tok".into(),
            claude_program: "claude".into(),
            status: "creating".into(),
            error: None,
            container_id: None,
            created_at: 1,
            updated_at: 1,
            model_usage: None,
            attributes: None,
            deadline_ms: None,
            held: false,
        }
    }

    pub(super) fn thread(id: &str, sandbox: &str) -> ThreadRow {
        ThreadRow {
            id: id.into(),
            sandbox_id: sandbox.into(),
            name: "n".into(),
            status: "active".into(),
            error: None,
            session_id: "s".into(),
            session_started: false,
            usage: "{}".into(),
            settings: "{}".into(),
            created_at: 2,
            updated_at: 2,
            completed_at: None,
            runtime_state: None,
        }
    }

    #[test]
    fn rows_round_trip_and_deletes_cascade() {
        let store = Store::in_memory().unwrap();
        store.put_sandbox(&sandbox("sb_1")).unwrap();
        store
            .set_sandbox_state("sb_1", "active", None, Some("c1"))
            .unwrap();
        let rows = store.sandboxes().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "active");
        assert_eq!(rows[0].container_id.as_deref(), Some("c1"));
        assert_eq!(rows[0].ttl_ms, Some(5));
        assert!(!rows[0].held);
        store.set_sandbox_held("sb_1", true).unwrap();
        assert!(store.sandboxes().unwrap()[0].held);
        store.set_model_usage("sb_1", "{\"requests\":2}").unwrap();
        assert_eq!(
            store.sandboxes().unwrap()[0].model_usage.as_deref(),
            Some("{\"requests\":2}")
        );

        store.put_thread(&thread("th_1", "sb_1")).unwrap();
        store
            .put_message("th_1", "u1", &json!({"id": "u1"}).to_string())
            .unwrap();
        store
            .put_message("th_1", "a1", &json!({"id": "a1", "v": 1}).to_string())
            .unwrap();
        store
            .put_message("th_1", "a1", &json!({"id": "a1", "v": 2}).to_string())
            .unwrap();
        assert_eq!(
            store.messages("th_1").unwrap(),
            vec![json!({"id": "u1"}), json!({"id": "a1", "v": 2})]
        );
        for i in 0..5 {
            assert_eq!(
                store
                    .append_event("th_1", 7, &json!({ "i": i }).to_string())
                    .unwrap(),
                i + 1
            );
        }
        let page = store.events("th_1", 2, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(page[0].body, json!({"i": 2}));
        assert_eq!(store.last_event("th_1").unwrap(), 5);

        store.delete_sandbox("sb_1").unwrap();
        assert!(store.threads("sb_1").unwrap().is_empty());
        assert!(store.messages("th_1").unwrap().is_empty());
        assert_eq!(store.last_event("th_1").unwrap(), 0);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
        store.put_sandbox(&sandbox("sb_1")).unwrap();
        store.put_thread(&thread("th_1", "sb_1")).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        store
                            .append_event("th_1", 0, &json!({ "t": t, "i": i }).to_string())
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let all = store.events("th_1", 0, 1000).unwrap();
        assert_eq!(all.len(), 400);
        assert!(all.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
        let mode = std::fs::metadata(dir.path().join("state.db"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // Reopening finds it all, migrated once.
        drop(store);
        let again = Store::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(again.last_event("th_1").unwrap(), 400);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let e = Store::with(conn).unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");
    }
}

//! What the store keeps of a thread's history, and how it drops the oldest of it.
//!
//! A thread keeps its newest messages and events up to a byte bound each (the
//! daemon's `--thread-history-mb`). Positions and sequence numbers only ever grow,
//! so what was dropped shows as the numbers before the first one kept.

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::{Store, StoreError};

impl Store {
    /// Each thread's bound on its stored messages, and on its stored events, in bytes.
    pub fn history_limit(&self) -> u64 {
        self.history_limit
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets [`Store::history_limit`] (at least 1 MiB).
    pub fn set_history_limit(&self, bytes: u64) {
        self.history_limit
            .store(bytes.max(1 << 20), std::sync::atomic::Ordering::Relaxed);
    }

    /// A thread's stored messages as (id, size in bytes), in order.
    pub fn message_sizes(&self, thread_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, LENGTH(CAST(body AS BLOB)) FROM messages WHERE thread_id = ?1
             ORDER BY position",
        )?;
        let rows = stmt.query_map([thread_id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A thread's newest message.
    pub fn last_message(&self, thread_id: &str) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM messages WHERE thread_id = ?1 ORDER BY position DESC LIMIT 1",
                [thread_id],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Other(format!("a stored message: {e}")))
        })
        .transpose()
    }

    /// Deletes messages of a thread by id.
    pub fn delete_messages(&self, thread_id: &str, ids: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            tx.execute(
                "DELETE FROM messages WHERE thread_id = ?1 AND id = ?2",
                params![thread_id, id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// How many of a thread's messages and events were dropped: the numbers before
    /// the first of each that is kept.
    pub fn dropped(&self, thread_id: &str) -> Result<(u64, u64), StoreError> {
        let (messages, events): (Option<i64>, Option<i64>) = self.conn().query_row(
            "SELECT (SELECT MIN(position) FROM messages WHERE thread_id = ?1),
                    (SELECT MIN(seq) FROM events WHERE thread_id = ?1)",
            [thread_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let before = |first: Option<i64>| first.map_or(0, |f| (f - 1).max(0) as u64);
        Ok((before(messages), before(events)))
    }

    /// The bytes of a thread's stored events.
    pub fn event_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        let bytes: Option<i64> = self.conn().query_row(
            "SELECT SUM(LENGTH(CAST(body AS BLOB))) FROM events WHERE thread_id = ?1",
            [thread_id],
            |r| r.get(0),
        )?;
        Ok(bytes.unwrap_or(0) as u64)
    }

    /// Deletes a thread's oldest events, at least `bytes` of them, never its newest
    /// one; returns how many bytes went.
    pub fn drop_oldest_events(&self, thread_id: &str, bytes: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (mut cut, mut freed) = (None, 0u64);
        {
            let mut stmt = tx.prepare(
                "SELECT seq, LENGTH(CAST(body AS BLOB)) FROM events WHERE thread_id = ?1
                 AND seq < (SELECT MAX(seq) FROM events WHERE thread_id = ?1) ORDER BY seq",
            )?;
            let mut rows = stmt.query([thread_id])?;
            while freed < bytes {
                let Some(row) = rows.next()? else { break };
                cut = Some(row.get::<_, i64>(0)?);
                freed += row.get::<_, i64>(1)? as u64;
            }
        }
        if let Some(cut) = cut {
            tx.execute(
                "DELETE FROM events WHERE thread_id = ?1 AND seq <= ?2",
                params![thread_id, cut],
            )?;
        }
        tx.commit()?;
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::sandbox_row;
    use super::*;
    use serde_json::json;

    fn store_with_thread() -> Store {
        let store = Store::in_memory().expect("store");
        store.put_sandbox(&sandbox_row("sb")).expect("sandbox");
        store
            .put_thread(&super::super::tests::thread("th", "sb"))
            .expect("thread");
        store
    }

    #[test]
    fn dropping_the_oldest_events_keeps_the_newest_and_shows_the_gap() {
        let store = store_with_thread();
        for i in 0..10 {
            store
                .append_event(
                    "th",
                    0,
                    &json!({ "pad": "x".repeat(100), "i": i }).to_string(),
                )
                .expect("event");
        }
        let total = store.event_bytes("th").expect("bytes");
        let one = total / 10;
        let freed = store.drop_oldest_events("th", one * 3).expect("drop");
        assert_eq!(freed, one * 3);
        assert_eq!(store.dropped("th").expect("dropped"), (0, 3));
        assert_eq!(store.events("th", 0, 100).expect("events")[0].seq, 4);
        // Never the newest, however much is asked; numbering goes on after it.
        store.drop_oldest_events("th", u64::MAX).expect("drop all");
        assert_eq!(store.events("th", 0, 100).expect("events").len(), 1);
        assert_eq!(store.append_event("th", 0, "{}").expect("next"), 11);
    }

    #[test]
    fn messages_are_measured_and_dropped_by_id() {
        let store = store_with_thread();
        for id in ["a", "b", "c"] {
            store
                .put_message("th", id, &json!({ "id": id }).to_string())
                .expect("put");
        }
        let sizes = store.message_sizes("th").expect("sizes");
        assert_eq!(sizes.len(), 3);
        assert_eq!(sizes[0], ("a".to_owned(), 10));
        store
            .delete_messages("th", &["a".to_owned(), "b".to_owned()])
            .expect("delete");
        assert_eq!(store.dropped("th").expect("dropped"), (2, 0));
        assert_eq!(
            store.last_message("th").expect("last"),
            Some(json!({"id": "c"}))
        );
        // A new message comes after the newest, not into a dropped position.
        store
            .put_message("th", "d", &json!({ "id": "d" }).to_string())
            .expect("put");
        assert_eq!(store.messages("th").expect("all").len(), 2);
        assert_eq!(store.dropped("th").expect("dropped"), (2, 0));
    }
}

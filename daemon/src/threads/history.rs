//! A thread's history in memory: only what bounding it takes (each stored message's
//! id and size, the events' total size) and the messages the store refused, until
//! they can be written back. Finished messages are read from the store on demand.
//!
//! The store keeps a thread's newest messages, and its newest events, up to
//! [`Store::history_limit`] bytes each; the oldest go first, never the newest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::store::{Store, StoreError};

/// A thread's messages, as bounding them needs.
#[derive(Debug, Default)]
pub(super) struct History {
    /// Each stored (or kept) message's id and size, oldest first.
    sizes: VecDeque<(String, u64)>,
    /// Their sum.
    bytes: u64,
    /// Messages the store refused, newest version of each, until written back.
    unsaved: Vec<Value>,
}

impl History {
    /// What the store holds of a thread.
    pub fn load(store: &Store, thread_id: &str) -> Result<Self, StoreError> {
        let sizes: VecDeque<_> = store.message_sizes(thread_id)?.into();
        let bytes = sizes.iter().map(|(_, s)| s).sum();
        Ok(Self {
            sizes,
            bytes,
            unsaved: Vec::new(),
        })
    }

    /// Stores `message` (replacing the one with its id), or keeps it when the store
    /// refuses it (the refusal is returned), then drops the oldest messages past the
    /// bound.
    pub fn upsert(&mut self, store: &Store, thread_id: &str, message: Value) -> Option<StoreError> {
        let Some(id) = message.get("id").and_then(Value::as_str).map(str::to_owned) else {
            tracing::warn!(thread = %thread_id, "a message without an id is not kept");
            return None;
        };
        let body = message.to_string();
        let size = body.len() as u64;
        let refused = store.put_message(thread_id, &id, &body).err();
        let kept = self.unsaved.iter().position(|m| m["id"] == id.as_str());
        match (&refused, kept) {
            (Some(_), Some(i)) => self.unsaved[i] = message,
            (Some(_), None) => self.unsaved.push(message),
            (None, Some(i)) => {
                self.unsaved.remove(i);
            }
            (None, None) => {}
        }
        match self.sizes.iter_mut().rev().find(|(i, _)| *i == id) {
            Some(entry) => {
                self.bytes = self.bytes - entry.1 + size;
                entry.1 = size;
            }
            None => {
                self.sizes.push_back((id.clone(), size));
                self.bytes += size;
            }
        }
        self.bound(store, thread_id, &id);
        refused
    }

    /// Drops the oldest messages (never `newest`) while the thread is past its bound.
    fn bound(&mut self, store: &Store, thread_id: &str, newest: &str) {
        let limit = store.history_limit();
        let mut dropped = Vec::new();
        let mut freed = 0;
        while self.bytes > limit && self.sizes.len() > 1 {
            if self.sizes.front().is_some_and(|(id, _)| id == newest) {
                break;
            }
            let Some((id, size)) = self.sizes.pop_front() else {
                break;
            };
            self.bytes -= size;
            freed += size;
            dropped.push(id);
        }
        if dropped.is_empty() {
            return;
        }
        self.unsaved
            .retain(|m| !dropped.iter().any(|id| m["id"] == id.as_str()));
        if let Err(e) = store.delete_messages(thread_id, &dropped) {
            tracing::warn!(thread = %thread_id, "dropping old messages: {e}");
        }
        tracing::info!(
            thread = %thread_id,
            "dropped the {} oldest message(s), {freed} bytes: a thread keeps its newest {} MiB",
            dropped.len(),
            limit >> 20
        );
    }

    /// The thread's messages: the store's, with the ones it refused in their place.
    pub fn messages(&self, store: &Store, thread_id: &str) -> Result<Vec<Value>, StoreError> {
        let mut all = store.messages(thread_id)?;
        for kept in &self.unsaved {
            match all.iter_mut().rev().find(|m| m["id"] == kept["id"]) {
                Some(stored) => *stored = kept.clone(),
                None => all.push(kept.clone()),
            }
        }
        Ok(all)
    }

    /// Stores the messages the store refused; they are forgotten once stored.
    pub fn write_back(&mut self, store: &Store, thread_id: &str) -> Result<(), StoreError> {
        while let Some(message) = self.unsaved.first() {
            let id = message["id"].as_str().unwrap_or_default();
            store.put_message(thread_id, id, &message.to_string())?;
            self.unsaved.remove(0);
        }
        Ok(())
    }
}

/// After an event of `added` bytes: past the bound, the oldest events go until a
/// quarter of it is free again (so dropping happens once per quarter, not per event).
pub(super) fn bound_events(store: &Store, thread_id: &str, total: &AtomicU64, added: u64) {
    let limit = store.history_limit();
    let now = total.fetch_add(added, Ordering::Relaxed) + added;
    if now <= limit {
        return;
    }
    match store.drop_oldest_events(thread_id, now - limit / 4 * 3) {
        Ok(freed) => {
            total.fetch_sub(freed.min(now), Ordering::Relaxed);
            tracing::info!(
                thread = %thread_id,
                "dropped the oldest events, {freed} bytes: a thread keeps its newest {} MiB",
                limit >> 20
            );
        }
        Err(e) => tracing::warn!(thread = %thread_id, "dropping old events: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> Store {
        let store = Store::in_memory().expect("store");
        store.set_history_limit(1 << 20);
        store
            .put_sandbox(&crate::store::tests_support::sandbox_row("sb"))
            .expect("sandbox");
        store
            .put_thread(&crate::store::tests_support::thread_row("th", "sb"))
            .expect("thread");
        store
    }

    fn message(id: &str, kib: usize) -> Value {
        json!({ "id": id, "role": "assistant", "parts": [{"type": "text", "text": "x".repeat(kib << 10)}] })
    }

    #[test]
    fn the_oldest_messages_go_past_the_bound_and_the_newest_stays() {
        let store = store();
        let mut history = History::default();
        for i in 0..10 {
            assert!(history
                .upsert(&store, "th", message(&format!("m{i}"), 300))
                .is_none());
        }
        let kept = history.messages(&store, "th").expect("messages");
        let ids: Vec<&str> = kept.iter().filter_map(|m| m["id"].as_str()).collect();
        assert_eq!(ids, ["m7", "m8", "m9"]);
        assert_eq!(store.dropped("th").expect("dropped").0, 7);
        // One message larger than the bound is still kept whole, alone.
        history.upsert(&store, "th", message("huge", 2048));
        let kept = history.messages(&store, "th").expect("messages");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0]["id"], "huge");
        // What the store says after a restart agrees.
        let loaded = History::load(&store, "th").expect("load");
        assert_eq!(loaded.sizes.len(), 1);
        assert_eq!(loaded.bytes, history.bytes);
    }

    #[test]
    fn events_past_the_bound_go_a_quarter_at_a_time() {
        let store = store();
        let total = AtomicU64::new(0);
        let event = json!({ "pad": "y".repeat(10_000) }).to_string();
        for _ in 0..300 {
            store.append_event("th", 0, &event).expect("event");
            bound_events(&store, "th", &total, event.len() as u64);
        }
        let stored = store.event_bytes("th").expect("bytes");
        assert_eq!(stored, total.load(Ordering::Relaxed));
        assert!(stored <= 1 << 20, "{stored} bytes kept");
        assert!(stored >= (1 << 20) / 2, "{stored} bytes kept");
        let (_, dropped) = store.dropped("th").expect("dropped");
        assert!(dropped > 150, "{dropped} dropped");
        assert_eq!(store.last_event("th").expect("last"), 300);
    }
}

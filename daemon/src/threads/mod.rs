//! Threads: conversations inside a sandbox, each with its messages (AI SDK
//! `UIMessage`s), usage totals, status, and at most one running [`Turn`].

mod turn;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

pub use turn::Turn;

/// A thread's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadStatus {
    /// Created, no turn yet.
    Active,
    /// A turn is running.
    Streaming,
    /// The last turn ended normally.
    Completed,
    /// The last turn failed; see the error.
    Error,
    /// The last turn was cancelled.
    Cancelled,
}

/// Usage totals over all turns of a thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input plus output.
    pub total_tokens: u64,
    /// Cost in USD.
    pub total_cost_usd: f64,
    /// Time spent in turns.
    pub duration_ms: u64,
}

/// The mutable part of a thread.
#[derive(Debug, Clone)]
pub struct ThreadState {
    /// Status.
    pub status: ThreadStatus,
    /// Messages, oldest first.
    pub messages: Vec<Value>,
    /// Usage totals.
    pub usage: Usage,
    /// Why the last turn failed.
    pub error: Option<String>,
    /// Last change.
    pub updated_at: SystemTime,
    /// When the last turn ended.
    pub completed_at: Option<SystemTime>,
    /// Claude's session id: fixed by the first turn, resumed by later ones.
    pub session_id: String,
    /// Whether the session exists yet (a turn got as far as Claude's init).
    pub session_started: bool,
    /// The running turn.
    pub active: Option<Arc<Turn>>,
}

/// One thread.
#[derive(Debug)]
pub struct Thread {
    /// Id (`th_…`).
    pub id: String,
    /// Name.
    pub name: String,
    /// The sandbox it lives in.
    pub sandbox_id: String,
    /// Creation time.
    pub created_at: SystemTime,
    state: Mutex<ThreadState>,
}

impl Thread {
    /// A new idle thread.
    pub fn new(id: String, name: String, sandbox_id: String) -> Arc<Self> {
        let now = SystemTime::now();
        Arc::new(Self {
            id,
            name,
            sandbox_id,
            created_at: now,
            state: Mutex::new(ThreadState {
                status: ThreadStatus::Active,
                messages: Vec::new(),
                usage: Usage::default(),
                error: None,
                updated_at: now,
                completed_at: None,
                session_id: new_uuid(),
                session_started: false,
                active: None,
            }),
        })
    }

    /// Locks the state. Never held across an await.
    pub fn state(&self) -> std::sync::MutexGuard<'_, ThreadState> {
        // Updates are whole assignments; a poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the state.
    pub fn snapshot(&self) -> ThreadState {
        self.state().clone()
    }

    /// The running turn, if any.
    pub fn active_turn(&self) -> Option<Arc<Turn>> {
        self.state().active.clone()
    }

    /// Replaces (or appends) the message with the same id.
    pub fn upsert_message(&self, message: Value) {
        let mut state = self.state();
        let id = message.get("id").cloned();
        match state
            .messages
            .iter_mut()
            .rev()
            .find(|m| id.is_some() && m.get("id") == id.as_ref())
        {
            Some(existing) => *existing = message,
            None => state.messages.push(message),
        }
        state.updated_at = SystemTime::now();
    }
}

/// A random RFC 4122 version 4 UUID.
pub fn new_uuid() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uuids_are_version_4() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(u, new_uuid());
    }

    #[test]
    fn messages_are_upserted_by_id() {
        let t = Thread::new("th".into(), "n".into(), "sb".into());
        t.upsert_message(json!({"id": "u1", "role": "user"}));
        t.upsert_message(json!({"id": "a1", "role": "assistant", "parts": []}));
        t.upsert_message(json!({"id": "a1", "role": "assistant", "parts": [1]}));
        let s = t.snapshot();
        assert_eq!(s.messages.len(), 2);
        assert_eq!(s.messages[1]["parts"], json!([1]));
    }
}

//! Threads: conversations inside a sandbox, each with its messages (AI SDK
//! `UIMessage`s), usage totals, status, and at most one running [`Turn`].

pub mod events;
mod history;
mod turn;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::store::{Store, StoreError, ThreadRow};
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

impl ThreadStatus {
    /// The name clients see (and the store keeps).
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadStatus::Active => "active",
            ThreadStatus::Streaming => "streaming",
            ThreadStatus::Completed => "completed",
            ThreadStatus::Error => "error",
            ThreadStatus::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            ThreadStatus::Active,
            ThreadStatus::Streaming,
            ThreadStatus::Completed,
            ThreadStatus::Error,
            ThreadStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Usage totals over all turns of a thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
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

/// Per-thread settings: set at creation, changed with `PATCH`, used by the next turn
/// (a chat call's `options` still win for that call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadSettings {
    /// Model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Permission mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// Thinking level: `low`, `medium`, `high`, `xhigh` or `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Tools allowed for the rest of the thread (`always` answers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub always_allowed: Vec<String>,
}

/// The mutable part of a thread.
#[derive(Debug, Clone)]
pub struct ThreadState {
    /// Status.
    pub status: ThreadStatus,
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
    /// What the agent runtime keeps between turns (`null`: nothing).
    pub runtime_state: Value,
    /// Settings for the next turns.
    pub settings: ThreadSettings,
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
    store: Arc<Store>,
    /// The messages as bounding them needs (they are read from the store).
    history: Mutex<history::History>,
    /// The bytes of the stored events.
    event_bytes: AtomicU64,
    /// The last event's sequence number; followers wait on it.
    events: watch::Sender<u64>,
    /// Permission requests of the running turn, by id.
    permissions: Mutex<HashMap<String, Permission>>,
    /// Why the store last refused the thread's state or a message, until
    /// [`Thread::write_back`] stores what memory holds.
    unsaved: Mutex<Option<String>>,
}

/// A permission request of a turn.
#[derive(Debug)]
enum Permission {
    /// Waiting for a client; the answer goes to the turn through `reply`.
    Pending {
        tool: String,
        reply: tokio::sync::mpsc::UnboundedSender<(String, PermissionReply)>,
    },
    /// Answered (or given up when its turn ended).
    Settled,
}

/// A client's answer to a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionReply {
    /// Allow this call.
    Once,
    /// Allow this call and every later call of the same tool in the thread.
    Always,
    /// Deny it; the agent is told.
    Reject,
}

impl Thread {
    /// A new idle thread, persisted.
    pub fn create(
        store: Arc<Store>,
        id: String,
        name: String,
        sandbox_id: String,
        settings: ThreadSettings,
    ) -> Result<Arc<Self>, StoreError> {
        let now = SystemTime::now();
        let thread = Arc::new(Self {
            id,
            name,
            sandbox_id,
            created_at: now,
            state: Mutex::new(ThreadState {
                status: ThreadStatus::Active,
                usage: Usage::default(),
                error: None,
                updated_at: now,
                completed_at: None,
                session_id: new_uuid(),
                session_started: false,
                runtime_state: Value::Null,
                settings,
                active: None,
            }),
            store,
            history: Mutex::default(),
            event_bytes: AtomicU64::new(0),
            events: watch::Sender::new(0),
            permissions: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(None),
        });
        thread.store.put_thread(&thread.row(&thread.state()))?;
        Ok(thread)
    }

    /// A thread as the store kept it. One that was streaming when the daemon went
    /// down is marked interrupted (its messages up to then are kept; the next turn
    /// resumes the same Claude session).
    pub fn restore(store: Arc<Store>, row: ThreadRow) -> Result<Arc<Self>, StoreError> {
        let history = history::History::load(&store, &row.id)?;
        let event_bytes = store.event_bytes(&row.id)?;
        let last = store.last_event(&row.id)?;
        let status = ThreadStatus::parse(&row.status).unwrap_or(ThreadStatus::Error);
        let thread = Arc::new(Self {
            id: row.id.clone(),
            name: row.name.clone(),
            sandbox_id: row.sandbox_id.clone(),
            created_at: crate::store::time(row.created_at),
            state: Mutex::new(ThreadState {
                status,
                usage: serde_json::from_str(&row.usage).unwrap_or_default(),
                error: row.error.clone(),
                updated_at: crate::store::time(row.updated_at),
                completed_at: row.completed_at.map(crate::store::time),
                session_id: row.session_id.clone(),
                session_started: row.session_started,
                runtime_state: row
                    .runtime_state
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null),
                settings: serde_json::from_str(&row.settings).unwrap_or_default(),
                active: None,
            }),
            store,
            history: Mutex::new(history),
            event_bytes: AtomicU64::new(event_bytes),
            events: watch::Sender::new(last),
            permissions: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(None),
        });
        if status == ThreadStatus::Streaming {
            let message = "interrupted by a daemon restart".to_owned();
            {
                let mut state = thread.state();
                state.status = ThreadStatus::Error;
                state.error = Some(message.clone());
                state.updated_at = SystemTime::now();
                state.completed_at = Some(state.updated_at);
                // The interrupted turn's session is on disk in the sandbox as far as
                // it got: resume it.
                state.session_started = true;
            }
            thread.save();
            // Its last message stopped mid-stream: nothing streams any more.
            let last = thread.store.last_message(&thread.id)?;
            if let Some(settled) = last.and_then(|m| settle_interrupted(m, &message)) {
                thread.upsert_message(settled);
            }
            thread.record(json!({
                "sessionUpdate": "session_info_update",
                "status": "error",
                "error": message,
            }));
        }
        Ok(thread)
    }

    fn row(&self, state: &ThreadState) -> ThreadRow {
        ThreadRow {
            id: self.id.clone(),
            sandbox_id: self.sandbox_id.clone(),
            name: self.name.clone(),
            status: state.status.as_str().to_owned(),
            error: state.error.clone(),
            session_id: state.session_id.clone(),
            session_started: state.session_started,
            runtime_state: (!state.runtime_state.is_null())
                .then(|| state.runtime_state.to_string()),
            usage: serde_json::to_string(&state.usage).unwrap_or_else(|_| "{}".into()),
            settings: serde_json::to_string(&state.settings).unwrap_or_else(|_| "{}".into()),
            created_at: crate::store::millis(self.created_at),
            updated_at: crate::store::millis(state.updated_at),
            completed_at: state.completed_at.map(crate::store::millis),
        }
    }

    /// Writes the thread's state through to the store.
    pub fn save(&self) {
        let state = self.state();
        if let Err(e) = self.store.put_thread(&self.row(&state)) {
            self.not_stored(&e);
        }
    }

    /// Remembers a refused write (called with the state locked), for
    /// [`Thread::write_back`].
    fn not_stored(&self, e: &StoreError) {
        tracing::error!(thread = %self.id, "not stored (kept in memory until it can be): {e}");
        *self.unsaved.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Why the store refused part of this thread that memory still holds, if it did.
    pub fn store_failure(&self) -> Option<String> {
        self.unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stores the thread's state and every message as memory holds them (each write
    /// replaces the stored one), then forgets the failure.
    pub fn write_back(&self) -> Result<(), StoreError> {
        let state = self.state();
        self.store.put_thread(&self.row(&state))?;
        self.history().write_back(&self.store, &self.id)?;
        *self.unsaved.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
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

    /// Replaces (or appends) the message with the same id in the store (in memory
    /// while the store refuses it). The oldest messages go past the history bound.
    pub fn upsert_message(&self, message: Value) {
        if let Some(e) = self.history().upsert(&self.store, &self.id, message) {
            self.not_stored(&e);
        }
        self.state().updated_at = SystemTime::now();
    }

    /// The thread's messages, oldest first, as far as its history bound keeps them.
    pub fn messages(&self) -> Result<Vec<Value>, StoreError> {
        self.history().messages(&self.store, &self.id)
    }

    /// How many of the thread's oldest messages and events its bound dropped.
    pub fn dropped(&self) -> Result<(u64, u64), StoreError> {
        self.store.dropped(&self.id)
    }

    fn history(&self) -> std::sync::MutexGuard<'_, history::History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a session update to the thread's event log; returns its number.
    pub fn record(&self, update: Value) -> u64 {
        // The send happens under the sender's lock, so numbers reach followers in order.
        let mut seq = 0;
        let body = update.to_string();
        self.events.send_modify(|last| {
            match self
                .store
                .append_event(&self.id, crate::store::millis(SystemTime::now()), &body)
            {
                Ok(n) => {
                    *last = n;
                    seq = n;
                    history::bound_events(
                        &self.store,
                        &self.id,
                        &self.event_bytes,
                        body.len() as u64,
                    );
                }
                Err(e) => tracing::error!(thread = %self.id, "event not stored: {e}"),
            }
        });
        seq
    }

    /// Follows the event log: changes whenever an event is appended; closed when the
    /// thread goes away.
    pub fn watch_events(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// The store, for reading the event log.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Registers a permission request of the running turn.
    pub fn ask_permission(
        &self,
        id: &str,
        tool: &str,
        reply: tokio::sync::mpsc::UnboundedSender<(String, PermissionReply)>,
    ) {
        self.permissions_lock().insert(
            id.to_owned(),
            Permission::Pending {
                tool: tool.to_owned(),
                reply,
            },
        );
    }

    /// Whether a tool was allowed for the rest of the thread.
    pub fn always_allowed(&self, tool: &str) -> bool {
        self.state()
            .settings
            .always_allowed
            .iter()
            .any(|t| t == tool)
    }

    /// Answers a pending permission request. `Always` also allows the tool for the
    /// rest of the thread.
    pub fn answer_permission(
        &self,
        id: &str,
        reply: PermissionReply,
    ) -> Result<(), PermissionError> {
        let mut permissions = self.permissions_lock();
        let entry = permissions.get_mut(id).ok_or(PermissionError::NotFound)?;
        let Permission::Pending {
            tool,
            reply: to_turn,
        } = std::mem::replace(entry, Permission::Settled)
        else {
            return Err(PermissionError::Settled);
        };
        drop(permissions);
        if reply == PermissionReply::Always {
            let mut state = self.state();
            if !state.settings.always_allowed.contains(&tool) {
                state.settings.always_allowed.push(tool.clone());
            }
            drop(state);
            self.save();
        }
        // The turn may have ended in between: then nobody is asking any more.
        to_turn
            .send((id.to_owned(), reply))
            .map_err(|_| PermissionError::Settled)
    }

    /// Settles every request still pending (their turn ended).
    pub fn settle_permissions(&self) {
        for entry in self.permissions_lock().values_mut() {
            *entry = Permission::Settled;
        }
    }

    fn permissions_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Permission>> {
        self.permissions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a permission answer was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionError {
    /// No such request in the thread.
    NotFound,
    /// Answered already, or its turn is over.
    Settled,
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

/// An assistant message a turn left mid-stream, settled: its streaming text and
/// reasoning parts `done`, its tool calls that never got an output `output-error` with
/// `why`. `None` when nothing in it was left streaming.
fn settle_interrupted(mut message: Value, why: &str) -> Option<Value> {
    if message["role"] != "assistant" {
        return None;
    }
    let mut changed = false;
    for part in message["parts"].as_array_mut()?.iter_mut() {
        let kind = part["type"].as_str().unwrap_or_default().to_owned();
        match part["state"].as_str() {
            Some("streaming") => {
                part["state"] = json!("done");
                changed = true;
            }
            Some("input-streaming" | "input-available")
                if kind.starts_with("tool-") || kind == "dynamic-tool" =>
            {
                part["state"] = json!("output-error");
                part["errorText"] = json!(why);
                changed = true;
            }
            _ => {}
        }
    }
    changed.then_some(message)
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

    /// A thread `th` of a sandbox `sb`, in an in-memory store.
    fn stored_thread() -> (Arc<Store>, Arc<Thread>) {
        let store = Arc::new(Store::in_memory().unwrap());
        store
            .put_sandbox(&crate::store::tests_support::sandbox_row("sb"))
            .unwrap();
        let thread = Thread::create(
            store.clone(),
            "th".into(),
            "n".into(),
            "sb".into(),
            ThreadSettings::default(),
        )
        .unwrap();
        (store, thread)
    }

    #[test]
    fn messages_are_upserted_by_id() {
        let (store, t) = stored_thread();
        t.upsert_message(json!({"id": "u1", "role": "user"}));
        t.upsert_message(json!({"id": "a1", "role": "assistant", "parts": []}));
        t.upsert_message(json!({"id": "a1", "role": "assistant", "parts": [1]}));
        let messages = t.messages().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1]["parts"], json!([1]));
        assert_eq!(store.messages("th").unwrap(), messages);
    }

    #[test]
    fn a_thread_that_was_streaming_comes_back_interrupted_and_resumable() {
        let (store, t) = stored_thread();
        t.upsert_message(json!({"id": "u1", "role": "user"}));
        t.record(json!({"sessionUpdate": "user_message_chunk"}));
        t.state().status = ThreadStatus::Streaming;
        t.save();
        let row = store.threads("sb").unwrap().remove(0);
        let back = Thread::restore(store.clone(), row).unwrap();
        let s = back.snapshot();
        assert_eq!(s.status, ThreadStatus::Error);
        assert_eq!(s.error.as_deref(), Some("interrupted by a daemon restart"));
        assert!(s.session_started);
        assert_eq!(back.messages().unwrap().len(), 1);
        let events = store.events("th", 0, 10).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].body["sessionUpdate"], "session_info_update");
        assert_eq!(*back.watch_events().borrow(), 2);
    }

    #[test]
    fn an_interrupted_message_is_left_with_nothing_streaming() {
        let cut = json!({ "id": "m", "role": "assistant", "parts": [
            { "type": "text", "text": "hal", "state": "streaming" },
            { "type": "dynamic-tool", "toolName": "Bash", "toolCallId": "t",
              "state": "input-available", "input": {} },
            { "type": "tool-Read", "toolCallId": "r", "state": "output-available" },
        ]});
        let settled = settle_interrupted(cut, "interrupted").expect("settled");
        assert_eq!(settled["parts"][0]["state"], "done");
        assert_eq!(settled["parts"][1]["state"], "output-error");
        assert_eq!(settled["parts"][1]["errorText"], "interrupted");
        assert_eq!(settled["parts"][2]["state"], "output-available");
        let done = json!({ "role": "assistant", "parts": [{ "type": "text", "state": "done" }] });
        assert!(settle_interrupted(done, "x").is_none());
        assert!(settle_interrupted(json!({ "role": "user", "parts": [] }), "x").is_none());
    }

    #[test]
    fn what_a_full_store_refuses_is_kept_in_memory_and_written_back() {
        let (store, t) = stored_thread();
        crate::store::tests_support::fill(&store, true);
        let big = "x".repeat(64 * 1024);
        t.upsert_message(
            json!({"id": "m1", "role": "assistant", "parts": [{"type": "text", "text": big}]}),
        );
        let why = t.store_failure().expect("the refusal is remembered");
        assert!(why.contains("full"), "{why}");
        assert!(
            store.messages("th").unwrap().is_empty(),
            "nothing was stored"
        );
        assert_eq!(t.messages().unwrap().len(), 1, "memory keeps it");
        t.write_back().expect_err("still full");
        assert!(t.store_failure().is_some());
        crate::store::tests_support::fill(&store, false);
        t.write_back().expect("room again");
        assert_eq!(t.store_failure(), None);
        assert_eq!(store.messages("th").unwrap(), t.messages().unwrap());
    }

    #[test]
    fn permission_answers_are_taken_once() {
        let (_store, t) = stored_thread();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        t.ask_permission("p1", "Bash", tx);
        assert_eq!(
            t.answer_permission("nope", PermissionReply::Once),
            Err(PermissionError::NotFound)
        );
        assert!(!t.always_allowed("Bash"));
        t.answer_permission("p1", PermissionReply::Always).unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            ("p1".to_owned(), PermissionReply::Always)
        );
        assert!(t.always_allowed("Bash"));
        assert_eq!(
            t.answer_permission("p1", PermissionReply::Reject),
            Err(PermissionError::Settled)
        );
    }
}

//! The turn's output on its way to the clients. Chunks are folded into the assistant
//! message as they come and held; a flush stores the message and the chunks' session
//! updates, and only then sends the chunks, so what a client was told is always
//! committed first.
//!
//! Storing is paced: under a flood of deltas the message is written at most every
//! [`MIN_PACE`] (longer when writes get slow), and the deltas held in between become
//! one event row, so the database grows with the turn's duration, not with the number
//! of deltas. What a turn streams is bounded by [`OUTPUT_LIMIT`].

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use super::fold::Folded;
use crate::threads::{events, Thread, Turn};

/// The most a turn streams to its clients (its SSE bytes), which bounds what the
/// daemon keeps of it (the stream's replay log and the stored message). A model
/// reply is at most some 500 KB and a tool result a few hundred KB (an image up to
/// about 7 MB), so this leaves room for a long agentic turn; past it the CLI is
/// output-flooding, whether runaway or driven by a process in the sandbox.
pub const OUTPUT_LIMIT: usize = 32 << 20;

/// What a chunk other than a delta counts against [`OUTPUT_LIMIT`] at least: such a
/// chunk adds a part (or an entry in the translator's maps), whose bookkeeping in
/// memory costs several times its few bytes on the wire. A legitimate turn has a few
/// parts per step; a stream of tiny parts reaches the limit sooner.
const PART_COST: usize = 512;

/// The shortest time between two stores of the message during a turn.
pub const MIN_PACE: Duration = Duration::from_millis(100);

/// After a store that took `t`, the next waits at least `WRITE_SHARE * t`: storing
/// takes at most a fifth of the turn's time however large the message grows.
const WRITE_SHARE: u32 = 4;

/// The turn's output: the folded message and the chunks not yet sent.
#[derive(Debug)]
pub struct Out {
    folded: Folded,
    /// Chunks not yet sent, with their SSE frames.
    held: Vec<(Value, Bytes)>,
    /// How many of `held` are stored already.
    stored: usize,
    /// SSE bytes emitted so far.
    emitted: usize,
    /// When the next paced store may happen.
    next_store: Instant,
}

impl Out {
    /// Nothing emitted yet for the assistant message `message_id`.
    pub fn new(message_id: &str) -> Self {
        Self {
            folded: Folded::new(message_id),
            held: Vec::new(),
            stored: 0,
            emitted: 0,
            next_store: Instant::now(),
        }
    }

    /// Takes one chunk: it is folded into the message and held.
    pub fn emit(&mut self, chunk: Value) {
        self.folded.apply(&chunk);
        let frame = Turn::frame(&chunk);
        let delta = matches!(
            chunk["type"].as_str(),
            Some("text-delta" | "reasoning-delta" | "tool-input-delta")
        );
        self.emitted += if delta {
            frame.len()
        } else {
            frame.len().max(PART_COST)
        };
        self.held.push((chunk, frame));
    }

    /// Whether the turn has emitted more than [`OUTPUT_LIMIT`].
    pub fn over_limit(&self) -> bool {
        self.emitted > OUTPUT_LIMIT
    }

    /// When held chunks are due to be flushed (none when nothing is held).
    pub fn due(&self) -> Option<Instant> {
        (!self.held.is_empty()).then_some(self.next_store)
    }

    /// Flushes now if the pace allows; otherwise the chunks wait for [`Out::due`].
    pub fn flush_paced(&mut self, thread: &Thread, turn: &Turn) {
        if Instant::now() >= self.next_store {
            self.flush(thread, turn);
        }
    }

    /// Stores, then sends, everything held.
    pub fn flush(&mut self, thread: &Thread, turn: &Turn) {
        self.store(thread);
        self.send(turn);
    }

    /// Stores the held chunks' session updates and the message as it stands.
    pub fn store(&mut self, thread: &Thread) {
        if self.stored == self.held.len() {
            return;
        }
        let started = Instant::now();
        for update in events::from_chunks(self.held[self.stored..].iter().map(|(c, _)| c)) {
            thread.record(update);
        }
        thread.upsert_message(self.folded.message());
        self.stored = self.held.len();
        let took = started.elapsed();
        self.next_store = Instant::now() + MIN_PACE.max(took * WRITE_SHARE);
    }

    /// Sends the held chunks that are stored.
    pub fn send(&mut self, turn: &Turn) {
        let stored = std::mem::take(&mut self.stored);
        turn.push_frames(self.held.drain(..stored).map(|(_, frame)| frame));
    }

    /// Marks every part still streaming as done (the turn is over).
    pub fn settle(&mut self) {
        self.folded.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use serde_json::json;
    use std::sync::Arc;

    fn thread() -> (Arc<Store>, Arc<Thread>) {
        let store = Arc::new(Store::in_memory().expect("store"));
        store
            .put_sandbox(&crate::store::tests_support::sandbox_row("sb"))
            .expect("sandbox");
        let thread = Thread::create(
            store.clone(),
            "th".into(),
            "n".into(),
            "sb".into(),
            Default::default(),
        )
        .expect("thread");
        (store, thread)
    }

    #[test]
    fn a_flood_is_stored_at_a_pace_and_sent_only_once_stored() {
        let (store, thread) = thread();
        let turn = Turn::new("th", "a1");
        let mut out = Out::new("a1");
        out.emit(json!({"type": "text-start", "id": "t"}));
        let before = Instant::now();
        out.flush(&thread, &turn);
        assert!(out.next_store >= before + MIN_PACE);
        // A pace that has not passed during the flood, whatever the machine's speed.
        out.next_store = Instant::now() + Duration::from_secs(3600);
        for i in 0..1000 {
            out.emit(json!({"type": "text-delta", "id": "t", "delta": format!("{i} ")}));
            out.flush_paced(&thread, &turn);
        }
        // Within the pace: nothing of the flood is sent, nothing stored.
        assert_eq!(turn.chunks().len(), 1);
        assert_eq!(store.events("th", 0, 100).expect("events").len(), 0);
        assert!(out.due().is_some(), "chunks are held");
        // The pace has passed.
        out.next_store = Instant::now();
        out.flush_paced(&thread, &turn);
        assert!(out.due().is_none());
        // Every delta reaches the clients; the log has one update for all of them.
        assert_eq!(turn.chunks().len(), 1001);
        let events = store.events("th", 0, 100).expect("events");
        assert_eq!(events.len(), 1);
        let all: String = (0..1000).map(|i| format!("{i} ")).collect();
        assert_eq!(events[0].body["content"]["text"], all.as_str());
        let stored = store.messages("th").expect("messages");
        assert_eq!(stored[0]["parts"][0]["text"], all.as_str());
        assert!(!out.over_limit());
    }

    #[test]
    fn the_output_limit_counts_what_is_streamed() {
        let mut out = Out::new("a1");
        out.emit(json!({"type": "text-start", "id": "t"}));
        let delta = "x".repeat(1 << 20);
        for _ in 0..OUTPUT_LIMIT >> 20 {
            out.emit(json!({"type": "text-delta", "id": "t", "delta": delta}));
        }
        assert!(out.over_limit());
        // Tiny parts count for their bookkeeping.
        let mut out = Out::new("a1");
        for i in 0..=OUTPUT_LIMIT / PART_COST {
            out.emit(json!({"type": "text-start", "id": i.to_string()}));
        }
        assert!(out.over_limit());
    }
}

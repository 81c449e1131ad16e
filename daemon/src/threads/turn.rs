//! One running turn's stream: an append-only log of UI message chunks that every
//! subscriber reads from its own offset. A reconnecting client replays from the start
//! and then follows live; a slow one never loses a chunk (there is no per-subscriber
//! queue to overflow, only the shared log, bounded by the turn's output limit,
//! `runner::out::OUTPUT_LIMIT`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often an idle stream sends an SSE comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A turn in progress (or just finished).
#[derive(Debug)]
pub struct Turn {
    /// The assistant message id of this turn.
    pub message_id: String,
    /// The thread.
    pub thread_id: String,
    /// Cancelled to interrupt the turn.
    pub cancel: CancellationToken,
    /// Why the daemon stopped the turn, when it was not a client's cancel.
    stop_reason: Mutex<Option<String>>,
    frames: Mutex<Vec<Bytes>>,
    /// (frames written, finished)
    progress: watch::Sender<(usize, bool)>,
}

impl Turn {
    /// A new, empty turn.
    pub fn new(thread_id: &str, message_id: &str) -> Arc<Self> {
        Arc::new(Self {
            message_id: message_id.to_owned(),
            thread_id: thread_id.to_owned(),
            cancel: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            frames: Mutex::new(Vec::new()),
            progress: watch::Sender::new((0, false)),
        })
    }

    fn frames(&self) -> std::sync::MutexGuard<'_, Vec<Bytes>> {
        // Frames are only ever appended: a poisoned lock still holds a valid log.
        self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One chunk as an SSE event.
    pub fn frame(chunk: &Value) -> Bytes {
        Bytes::from(format!("data: {chunk}\n\n"))
    }

    /// Appends one chunk as an SSE event.
    pub fn push(&self, chunk: &Value) {
        self.push_frames([Self::frame(chunk)]);
    }

    /// Appends SSE events made by [`Turn::frame`], waking followers once.
    pub fn push_frames(&self, batch: impl IntoIterator<Item = Bytes>) {
        let len = {
            let mut frames = self.frames();
            frames.extend(batch);
            frames.len()
        };
        self.progress.send_modify(|p| p.0 = len);
    }

    /// Stops the turn for the daemon's own reason: it ends as an error saying so.
    pub fn stop(&self, reason: &str) {
        *self.stop_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
        self.cancel.cancel();
    }

    /// The reason given to [`Turn::stop`].
    pub fn stop_reason(&self) -> Option<String> {
        self.stop_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks the stream complete: subscribers get `[DONE]` after the last chunk.
    pub fn finish(&self) {
        self.progress.send_modify(|p| p.1 = true);
    }

    /// Whether the turn finished.
    pub fn is_finished(&self) -> bool {
        self.progress.borrow().1
    }

    /// Waits until the turn has finished, at most `limit`; returns whether it has.
    pub async fn wait_finished(&self, limit: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        let finished = tokio::time::timeout(limit, rx.wait_for(|p| p.1)).await;
        finished.is_ok()
    }

    /// Every chunk so far as parsed JSON (for tests and diagnostics).
    pub fn chunks(&self) -> Vec<Value> {
        self.frames()
            .iter()
            .filter_map(|f| {
                let text = std::str::from_utf8(f).ok()?;
                serde_json::from_str(text.strip_prefix("data: ")?.trim_end()).ok()
            })
            .collect()
    }

    /// The SSE body: everything from the start, then live, then `data: [DONE]`.
    pub fn subscribe(
        self: &Arc<Self>,
    ) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> {
        struct Cursor {
            turn: Arc<Turn>,
            next: usize,
            rx: watch::Receiver<(usize, bool)>,
            done: bool,
        }
        let cursor = Cursor {
            turn: self.clone(),
            next: 0,
            rx: self.progress.subscribe(),
            done: false,
        };
        futures_util::stream::unfold(cursor, |mut c| async move {
            if c.done {
                return None;
            }
            loop {
                let (len, finished) = *c.rx.borrow_and_update();
                if c.next < len {
                    let batch: Vec<Bytes> = c.turn.frames()[c.next..len].to_vec();
                    c.next = len;
                    let mut out = Vec::with_capacity(batch.iter().map(Bytes::len).sum());
                    for frame in batch {
                        out.extend_from_slice(&frame);
                    }
                    return Some((Ok(Bytes::from(out)), c));
                }
                if finished {
                    c.done = true;
                    return Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), c));
                }
                match tokio::time::timeout(KEEP_ALIVE, c.rx.changed()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => {
                        c.done = true;
                        return Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), c));
                    }
                    Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), c)),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use serde_json::json;

    async fn collect(turn: &Arc<Turn>) -> String {
        let parts: Vec<_> = turn.subscribe().collect().await;
        parts
            .into_iter()
            .map(|p| String::from_utf8(p.expect("infallible").to_vec()).expect("utf8"))
            .collect()
    }

    #[tokio::test]
    async fn late_subscribers_replay_from_the_start_and_follow_live() {
        let turn = Turn::new("th", "msg");
        turn.push(&json!({"type": "start"}));
        let early = tokio::spawn({
            let turn = turn.clone();
            async move { collect(&turn).await }
        });
        tokio::task::yield_now().await;
        turn.push(&json!({"type": "finish"}));
        turn.finish();
        let late = collect(&turn).await;
        let expected =
            "data: {\"type\":\"start\"}\n\ndata: {\"type\":\"finish\"}\n\ndata: [DONE]\n\n";
        assert_eq!(late, expected);
        assert_eq!(early.await.expect("joined"), expected);
        assert_eq!(turn.chunks().len(), 2);
    }
}

//! `/v1/sandboxes/:id/threads/:threadId/events…`: a thread's persisted event log,
//! paged, or streamed as SSE from an offset and then live.
//!
//! The stream reads from the store, never from a per-subscriber queue: a follower
//! that falls behind catches up from the log, so nothing is ever dropped, and one
//! that never reads holds one page at most.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::rfc3339;
use crate::store::EventRow;

/// Most events in one page.
const MAX_PAGE: u64 = 1000;
/// Events read from the store per step of a stream.
const STREAM_PAGE: u64 = 256;
/// How often an idle stream sends an SSE comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `?offset=N&limit=M`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

fn event_json(thread_id: &str, row: &EventRow) -> Value {
    json!({
        "seq": row.seq,
        "at": rfc3339::format_ms(row.at),
        "threadId": thread_id,
        "payload": row.body,
    })
}

/// `GET …/events?offset=N&limit=M`: events after the first `offset` (default 0), at
/// most `limit` (default and maximum 1000).
pub async fn page(
    State(state): State<AppState>,
    Path((id, thread_id)): Path<(String, String)>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let sandbox = state.sandboxes.get(&id)?;
    let thread = state.sandboxes.thread(&sandbox, &thread_id)?;
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let rows = thread
        .store()
        .events(&thread.id, offset, limit + 1)
        .map_err(crate::sandbox::SandboxError::from)?;
    let has_more = rows.len() as u64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let events: Vec<Value> = rows.iter().map(|r| event_json(&thread.id, r)).collect();
    let next = rows.last().map_or(offset, |r| r.seq);
    Ok(Json(json!({
        "events": events,
        "nextOffset": next,
        "hasMore": has_more,
    })))
}

/// `?offset=N` of the stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    #[serde(default)]
    offset: Option<u64>,
}

/// `GET …/events/stream?offset=N`: SSE (`id:` is the sequence number) from after
/// `offset`, or after `Last-Event-ID` when a client reconnects, then live.
pub async fn stream(
    State(state): State<AppState>,
    Path((id, thread_id)): Path<(String, String)>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let sandbox = state.sandboxes.get(&id)?;
    let thread = state.sandboxes.thread(&sandbox, &thread_id)?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event's seq"))?,
        ),
    };
    let after = last_event_id.or(query.offset).unwrap_or(0);

    struct Cursor {
        /// An open stream keeps its sandbox from being paused.
        _held: crate::sandbox::Awake,
        store: std::sync::Arc<crate::store::Store>,
        thread_id: String,
        after: u64,
        watch: tokio::sync::watch::Receiver<u64>,
    }
    let cursor = Cursor {
        _held: sandbox.hold(),
        store: thread.store().clone(),
        thread_id: thread.id.clone(),
        after,
        watch: thread.watch_events(),
    };
    // The stream holds no reference to the thread: deleting it closes the watch,
    // which ends the stream.
    drop(thread);
    let body = futures_util::stream::unfold(Some(cursor), |cursor| async move {
        let mut c = cursor?;
        loop {
            // Mark what is seen before reading, so an append in between wakes us.
            c.watch.borrow_and_update();
            let rows = match c.store.events(&c.thread_id, c.after, STREAM_PAGE) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(thread = %c.thread_id, "event stream: {e}");
                    return None;
                }
            };
            if let Some(last) = rows.last() {
                c.after = last.seq;
                let mut out = String::new();
                for row in &rows {
                    out.push_str(&format!(
                        "id: {}\ndata: {}\n\n",
                        row.seq,
                        event_json(&c.thread_id, row)
                    ));
                }
                return Some((Ok::<_, std::convert::Infallible>(Bytes::from(out)), Some(c)));
            }
            match tokio::time::timeout(KEEP_ALIVE, c.watch.changed()).await {
                Ok(Ok(())) => continue,
                // The thread is gone.
                Ok(Err(_)) => return None,
                Err(_) => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), Some(c)));
                }
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

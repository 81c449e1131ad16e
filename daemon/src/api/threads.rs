//! `/v1/sandboxes/:id/threads…`: list, create, get (with messages and usage), delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::sandboxes::rfc3339;
use super::{ApiError, AppState};
use crate::threads::{Thread, ThreadStatus, Usage};

/// A thread in lists.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    id: String,
    name: String,
    status: ThreadStatus,
    created_at: String,
    updated_at: String,
}

impl Summary {
    /// The summary of a thread.
    pub fn of(thread: &Thread) -> Self {
        let state = thread.state();
        Self {
            id: thread.id.clone(),
            name: thread.name.clone(),
            status: state.status,
            created_at: rfc3339(thread.created_at),
            updated_at: rfc3339(state.updated_at),
        }
    }
}

/// A thread with its messages.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    id: String,
    name: String,
    status: ThreadStatus,
    messages: Vec<serde_json::Value>,
    usage: Usage,
    error: Option<String>,
    created_at: String,
    updated_at: String,
    completed_at: Option<String>,
}

/// `POST …/threads` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[serde(default)]
    name: Option<String>,
}

/// `GET /v1/sandboxes/:id/threads`.
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Summary>>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    Ok(Json(
        sandbox
            .threads_snapshot()
            .iter()
            .map(|t| Summary::of(t))
            .collect(),
    ))
}

/// `POST /v1/sandboxes/:id/threads` (an empty body is fine).
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                rejection.body_text(),
            )
        } else {
            ApiError::bad_request(format!("could not read the request body: {rejection}"))
        }
    })?;
    let body: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        super::json::parse(&body)?
    };
    let sandbox = state.sandboxes.get(&id)?;
    let thread = state.sandboxes.create_thread(&sandbox, body.name)?;
    let summary = Summary::of(&thread);
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

/// `GET /v1/sandboxes/:id/threads/:threadId`.
pub async fn get(
    State(state): State<AppState>,
    Path((id, thread_id)): Path<(String, String)>,
) -> Result<Json<Detail>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let thread = state.sandboxes.thread(&sandbox, &thread_id)?;
    let s = thread.snapshot();
    Ok(Json(Detail {
        id: thread.id.clone(),
        name: thread.name.clone(),
        status: s.status,
        messages: s.messages,
        usage: s.usage,
        error: s.error,
        created_at: rfc3339(thread.created_at),
        updated_at: rfc3339(s.updated_at),
        completed_at: s.completed_at.map(rfc3339),
    }))
}

/// `DELETE /v1/sandboxes/:id/threads/:threadId`: stops a running turn first.
pub async fn delete(
    State(state): State<AppState>,
    Path((id, thread_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    state.sandboxes.delete_thread(&sandbox, &thread_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

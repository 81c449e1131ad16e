//! `/v1/sandboxes/:id/threads…`: list, create, get (with messages and usage), delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::rfc3339;
use crate::threads::{PermissionReply, Thread, ThreadSettings, ThreadStatus, Usage};

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
            created_at: rfc3339::format(thread.created_at),
            updated_at: rfc3339::format(state.updated_at),
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
    /// How many of the oldest messages the thread's history bound dropped.
    dropped_messages: u64,
    /// How many of the oldest events it dropped (the event log starts after them).
    dropped_events: u64,
    usage: Usage,
    settings: ThreadSettings,
    error: Option<String>,
    created_at: String,
    updated_at: String,
    completed_at: Option<String>,
}

/// `POST …/threads` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    permission_mode: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
}

/// `PATCH …/threads/:threadId` body: each field given replaces the setting; `null`
/// clears it (back to the agent's).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchBody {
    #[serde(default, deserialize_with = "present")]
    model: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    permission_mode: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    thinking: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
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
    let settings = ThreadSettings {
        model: body.model,
        permission_mode: body.permission_mode,
        thinking: body.thinking,
        always_allowed: Vec::new(),
    };
    let thread = state
        .sandboxes
        .create_thread(&sandbox, body.name, settings)?;
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
    let messages = thread
        .messages()
        .map_err(crate::sandbox::SandboxError::from)?;
    let (dropped_messages, dropped_events) = thread
        .dropped()
        .map_err(crate::sandbox::SandboxError::from)?;
    Ok(Json(Detail {
        id: thread.id.clone(),
        name: thread.name.clone(),
        status: s.status,
        messages,
        dropped_messages,
        dropped_events,
        usage: s.usage,
        settings: s.settings,
        error: s.error,
        created_at: rfc3339::format(thread.created_at),
        updated_at: rfc3339::format(s.updated_at),
        completed_at: s.completed_at.map(rfc3339::format),
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

/// `PATCH /v1/sandboxes/:id/threads/:threadId`: changes the settings of later turns.
pub async fn patch(
    State(state): State<AppState>,
    Path((id, thread_id)): Path<(String, String)>,
    super::json::ApiJson(body): super::json::ApiJson<PatchBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let thread = state.sandboxes.thread(&sandbox, &thread_id)?;
    let settings = state.sandboxes.update_thread_settings(&thread, |s| {
        if let Some(model) = body.model {
            s.model = model;
        }
        if let Some(mode) = body.permission_mode {
            s.permission_mode = mode;
        }
        if let Some(thinking) = body.thinking {
            s.thinking = thinking;
        }
    })?;
    Ok(Json(
        serde_json::json!({ "id": thread.id, "settings": settings }),
    ))
}

/// `POST …/permissions/:requestId` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    reply: PermissionReply,
}

/// `POST /v1/sandboxes/:id/threads/:threadId/permissions/:requestId`: answers a
/// pending permission request of the thread's running turn.
pub async fn answer_permission(
    State(state): State<AppState>,
    Path((id, thread_id, request_id)): Path<(String, String, String)>,
    super::json::ApiJson(body): super::json::ApiJson<AnswerBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let thread = state.sandboxes.thread(&sandbox, &thread_id)?;
    thread
        .answer_permission(&request_id, body.reply)
        .map_err(|e| match e {
            crate::threads::PermissionError::NotFound => {
                crate::sandbox::SandboxError::PermissionNotFound(request_id.clone())
            }
            crate::threads::PermissionError::Settled => {
                crate::sandbox::SandboxError::PermissionAnswered(request_id.clone())
            }
        })?;
    Ok(Json(
        serde_json::json!({ "requestId": request_id, "reply": body.reply }),
    ))
}

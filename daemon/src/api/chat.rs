//! `/v1/chat/:slug`: a turn as an AI SDK UI message stream (SSE), or in the background;
//! and `/v1/chat/:slug/:sandboxId/stream` to resume (GET) or cancel (DELETE) it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, ApiJson, ApiQuery, AppState, Principal};
use crate::agents::{check_permission_mode, SystemPrompt};
use crate::names::new_id;
use crate::runner::runtime::TurnOptions;
use crate::sandbox::{CreateSandbox, Sandbox};
use crate::threads::Turn;
use axum::Extension;

/// `POST /v1/chat/:slug` body. Unknown fields are tolerated: the AI SDK's transport
/// adds its own (`id`, `trigger`, `messageId`) and apps add theirs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatBody {
    messages: Vec<Value>,
    #[serde(default)]
    sandbox_id: Option<String>,
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    options: Option<OptionsBody>,
    #[serde(default)]
    mode: Option<String>,
}

/// Per-request overrides of the agent.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OptionsBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_prompt: Option<SystemPrompt>,
    #[serde(default)]
    max_turns: Option<u32>,
    #[serde(default)]
    max_budget_usd: Option<f64>,
    /// Caps the sandbox's model spend for this call; the lower of it and the agent's
    /// (or the daemon's) cap binds, so it only ever narrows.
    #[serde(default)]
    max_sandbox_budget_usd: Option<f64>,
    #[serde(default)]
    permission_mode: Option<String>,
    #[serde(default)]
    disallowed_tools: Option<Vec<String>>,
}

impl OptionsBody {
    fn into_options(self) -> Result<TurnOptions, ApiError> {
        if let Some(mode) = &self.permission_mode {
            check_permission_mode(mode)
                .map_err(|e| ApiError::bad_request(format!("options: {e}")))?;
        }
        if self.max_budget_usd.is_some_and(|b| b.is_nan() || b <= 0.0) {
            return Err(ApiError::bad_request(
                "options.maxBudgetUsd must be positive",
            ));
        }
        if self
            .max_sandbox_budget_usd
            .is_some_and(|b| b.is_nan() || b <= 0.0)
        {
            return Err(ApiError::bad_request(
                "options.maxSandboxBudgetUsd must be positive",
            ));
        }
        if self.max_turns == Some(0) {
            return Err(ApiError::bad_request("options.maxTurns must be at least 1"));
        }
        Ok(TurnOptions {
            model: self.model,
            system_prompt: self.system_prompt,
            max_turns: self.max_turns,
            max_budget_usd: self.max_budget_usd,
            max_sandbox_budget_usd: self.max_sandbox_budget_usd,
            permission_mode: self.permission_mode,
            disallowed_tools: self.disallowed_tools,
            effort: None,
        })
    }
}

/// The last user message: as persisted, and as Claude content.
fn last_user_message(messages: &[Value]) -> Result<(Value, Value), ApiError> {
    let message = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .ok_or_else(|| ApiError::bad_request("messages has no user message to answer"))?;
    let mut message = message.clone();
    if !message["id"].is_string() {
        message["id"] = json!(new_id("msg_"));
    }
    let parts = message["parts"]
        .as_array()
        .cloned()
        .or_else(|| {
            // The API reference's short form: {role, content}.
            message["content"]
                .as_str()
                .map(|t| vec![json!({"type": "text", "text": t})])
        })
        .ok_or_else(|| ApiError::bad_request("the last user message has no parts"))?;
    if message.get("parts").is_none() {
        message["parts"] = Value::Array(parts.clone());
    }
    let mut blocks = Vec::new();
    for part in &parts {
        match part["type"].as_str() {
            Some("text") => {
                if let Some(text) = part["text"].as_str().filter(|t| !t.is_empty()) {
                    blocks.push(json!({"type": "text", "text": text}));
                }
            }
            Some("file") => blocks.push(file_block(part)?),
            _ => {}
        }
    }
    if blocks.is_empty() {
        return Err(ApiError::bad_request("the last user message has no text"));
    }
    let content = if blocks.len() == 1 && blocks[0]["type"] == "text" {
        blocks[0]["text"].clone()
    } else {
        Value::Array(blocks)
    };
    Ok((message, content))
}

/// A `file` part (a data URL) as a Claude content block.
fn file_block(part: &Value) -> Result<Value, ApiError> {
    let media = part["mediaType"].as_str().unwrap_or_default();
    let url = part["url"].as_str().unwrap_or_default();
    let data = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .map(|(_, data)| data)
        .ok_or_else(|| ApiError::bad_request("file parts must carry a base64 data: URL"))?;
    if media.starts_with("image/") {
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
        );
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| ApiError::bad_request(format!("a file part is not valid base64: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        ApiError::bad_request(format!("file parts of type {media} are not supported"))
    })?;
    let name = part["filename"].as_str().unwrap_or("attachment");
    Ok(json!({"type": "text", "text": format!("<file name=\"{name}\">\n{text}\n</file>")}))
}

/// SSE response with the UI message stream headers.
fn sse(turn: &Arc<Turn>, sandbox_id: &str, thread_id: &str) -> Response {
    let mut response = Response::new(Body::from_stream(turn.subscribe()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers.insert(
        "x-vercel-ai-ui-message-stream",
        HeaderValue::from_static("v1"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    for (name, value) in [("x-sandbox-id", sandbox_id), ("x-thread-id", thread_id)] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    response
}

/// A token reaches only its agents.
fn check_scope(principal: &Principal, slug: &str) -> Result<(), ApiError> {
    match principal {
        Principal::Token(claims) if !claims.allows_agent(slug) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token does not cover agent {slug:?}"),
        )),
        _ => Ok(()),
    }
}

/// Which sandboxes a caller may use; the one place that decides it. The API key:
/// all. A token (already checked to be scoped to the sandbox's agent): those created
/// for no user (by the API key, as a backend does before handing the browser a
/// token), and those of its owner: its user's, whichever token or backend call made
/// them (so a renewed token goes on with the conversation), else, for a token without
/// a user, the ones it made itself.
fn check_owner(principal: &Principal, sandbox: &Sandbox) -> Result<(), ApiError> {
    match (principal, sandbox.owner.as_deref()) {
        (Principal::Token(claims), Some(owner)) if owner != claims.owner() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "sandbox {} belongs to another user than this token's; create one \
                     through chat with the token, or with POST /v1/sandboxes and the \
                     token's userId",
                sandbox.id
            ),
        )),
        _ => Ok(()),
    }
}

fn check_agent(sandbox: &Sandbox, slug: &str) -> Result<(), ApiError> {
    if sandbox.agent_slug == slug {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "sandbox {} belongs to agent {:?}, not {slug:?}",
            sandbox.id, sandbox.agent_slug
        )))
    }
}

/// `POST /v1/chat/:slug`.
pub async fn post(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Response, ApiError> {
    let sandboxes = &state.sandboxes;
    check_scope(&principal, &slug)?;
    if body.thread_id.is_some() && body.sandbox_id.is_none() {
        return Err(ApiError::bad_request(
            "threadId needs sandboxId: a thread lives in a sandbox",
        ));
    }
    let background = match body.mode.as_deref() {
        None | Some("stream") => false,
        Some("background") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode {other:?} is not \"stream\" or \"background\""
            )))
        }
    };
    let Some(agent) = sandboxes.agents().get(&slug) else {
        return Err(crate::sandbox::SandboxError::AgentNotFound(slug).into());
    };
    let options = body.options.unwrap_or_default().into_options()?;
    // What the agent's runtime cannot honour is refused before anything is created
    // (the thread's settings are checked again when the turn starts).
    crate::runner::of(&agent)
        .check(&agent, &options)
        .map_err(crate::sandbox::SandboxError::Invalid)?;
    let by_token = matches!(principal, Principal::Token(_));
    if by_token {
        // Before anything is created; a named thread's own mode is checked below.
        super::narrow::check(&options, &agent, None)?;
    }
    let (user_message, prompt) = last_user_message(&body.messages)?;

    let sandbox = match &body.sandbox_id {
        Some(id) => {
            let sandbox = sandboxes.get(id)?;
            check_owner(&principal, &sandbox)?;
            sandbox.ensure_live()?;
            check_agent(&sandbox, &slug)?;
            sandbox
        }
        None => {
            let owner = match &principal {
                Principal::Token(claims) => Some(claims.owner()),
                Principal::Key => None,
            };
            let created = sandboxes
                .create(CreateSandbox {
                    agent: slug.clone(),
                    by_token,
                    owner,
                    ..CreateSandbox::default()
                })
                .await?;
            created.ensure_active()?;
            created
        }
    };
    // Resumed when paused, and not paused again before the turn holds it busy.
    let _awake = sandboxes.awake(&sandbox).await?;
    let thread = match &body.thread_id {
        Some(id) => {
            let thread = sandboxes.thread(&sandbox, id)?;
            if by_token {
                let mode = thread.state().settings.permission_mode.clone();
                super::narrow::check(&options, &agent, mode.as_deref())?;
            }
            thread
        }
        None => {
            let name = body.name.clone().or_else(|| {
                prompt
                    .as_str()
                    .map(|p| p.chars().take(60).collect::<String>())
            });
            sandboxes.create_thread(&sandbox, name, Default::default())?
        }
    };
    let turn = sandboxes.start_turn(&sandbox, &thread, user_message, prompt, options)?;
    if background {
        let body = json!({ "sandboxId": sandbox.id, "threadId": thread.id, "status": "running" });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    Ok(sse(&turn, &sandbox.id, &thread.id))
}

/// `?threadId=` to pick one of several running threads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamQuery {
    #[serde(default)]
    thread_id: Option<String>,
}

/// Finds the sandbox by its id, or by one of its threads' ids (the AI SDK's resume
/// uses the chat id, which clients often set to the thread id).
fn find_sandbox(state: &AppState, key: &str) -> Result<(Arc<Sandbox>, Option<String>), ApiError> {
    if let Ok(sandbox) = state.sandboxes.get(key) {
        return Ok((sandbox, None));
    }
    state
        .sandboxes
        .find_thread(key)
        .map(|(sandbox, thread)| (sandbox, Some(thread)))
        .ok_or_else(|| crate::sandbox::SandboxError::NotFound(key.to_owned()).into())
}

/// The sandbox a stream URL names, after the caller's scope and ownership checks, and
/// its running turn (of the thread asked for, if any).
fn stream_target(
    state: &AppState,
    principal: &Principal,
    slug: &str,
    key: &str,
    query: StreamQuery,
) -> Result<(Arc<Sandbox>, Option<Arc<Turn>>), ApiError> {
    check_scope(principal, slug)?;
    let (sandbox, thread) = find_sandbox(state, key)?;
    check_owner(principal, &sandbox)?;
    check_agent(&sandbox, slug)?;
    let thread = query.thread_id.or(thread);
    let turn = state.sandboxes.active_turn(&sandbox, thread.as_deref());
    Ok((sandbox, turn))
}

/// `GET /v1/chat/:slug/:sandboxId/stream`: the active turn from its start, then live;
/// 204 when none is active.
pub async fn resume(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((slug, key)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    match stream_target(&state, &principal, &slug, &key, query)? {
        (sandbox, Some(turn)) => Ok(sse(&turn, &sandbox.id, &turn.thread_id)),
        (_, None) => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `DELETE /v1/chat/:slug/:sandboxId/stream`: cancels the active turn and returns once
/// it has stopped; 204 when none was active.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((slug, key)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let (sandbox, Some(turn)) = stream_target(&state, &principal, &slug, &key, query)? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    turn.cancel.cancel();
    turn.wait_finished(std::time::Duration::from_secs(20)).await;
    let body = json!({ "sandboxId": sandbox.id, "threadId": turn.thread_id,
                       "status": if turn.is_finished() { "cancelled" } else { "cancelling" } });
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_user_message_is_the_turn() {
        let messages = vec![
            json!({"id": "u1", "role": "user", "parts": [{"type": "text", "text": "first"}]}),
            json!({"id": "a1", "role": "assistant", "parts": []}),
            json!({"role": "user", "parts": [{"type": "text", "text": "second"}, {"type": "step-start"}]}),
        ];
        let (message, prompt) = last_user_message(&messages).expect("found");
        assert_eq!(prompt, json!("second"));
        assert!(message["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_")));
        let short = vec![json!({"role": "user", "content": "hi"})];
        assert_eq!(last_user_message(&short).expect("short").1, json!("hi"));
        assert!(last_user_message(&[json!({"role": "assistant", "parts": []})]).is_err());
        assert!(last_user_message(&[json!({"role": "user", "parts": []})]).is_err());
    }

    #[test]
    fn images_become_image_blocks() {
        let messages = vec![json!({"role": "user", "parts": [
            {"type": "text", "text": "what is this"},
            {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,iVBORw=="}
        ]})];
        let (_, prompt) = last_user_message(&messages).expect("found");
        assert_eq!(prompt[1]["type"], "image");
        assert_eq!(prompt[1]["source"]["data"], "iVBORw==");
    }
}

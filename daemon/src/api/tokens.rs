//! `POST /v1/tokens`: short-lived chat tokens for browsers (`exchangeToken`).
//!
//! Its errors carry the message twice: `{"error": "<message>", "code", "message"}`.
//! `@21st-sdk/nextjs`'s `exchangeToken` throws `new Error(body.error)`, which shows
//! the API's usual `{"error": {code, message}}` as `[object Object]`; a string there is
//! the only JSON it renders. The same message and code sit at the top level for
//! everything else that reads the body.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, AppState};
use crate::rfc3339;

/// `POST /v1/tokens` body (the shape `@21st-sdk/nextjs/server` and `@21st-sdk/node`
/// send).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    #[serde(default)]
    agents: Option<Vec<String>>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    expires_in: Option<String>,
}

/// `POST /v1/tokens` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    token: String,
    expires_at: String,
}

/// Issues a token for chat with `agents` (all when absent) as `userId`.
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Json<Created>, ApiError> {
    let lifetime = crate::tokens::parse_lifetime(body.expires_in.as_deref().unwrap_or("1h"))
        .map_err(ApiError::bad_request)?;
    if let Some(agents) = &body.agents {
        for slug in agents {
            if state.sandboxes.agents().get(slug).is_none() {
                return Err(crate::sandbox::SandboxError::AgentNotFound(slug.clone()).into());
            }
        }
    }
    if body.user_id.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::bad_request("userId must not be empty"));
    }
    let (token, claims) = state.signer.issue(body.user_id, body.agents, lifetime);
    let expires_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(claims.exp);
    Ok(Json(Created {
        token,
        expires_at: rfc3339::format(expires_at),
    }))
}

/// Rewrites an error answer of the token route, `{"error": {code, message}}`, into
/// `{"error": message, "code": code, "message": message}` (see the module docs).
/// Wraps the key check and the body extractor too, so every refusal is rewritten.
pub async fn flat_errors(response: Response) -> Response {
    if response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Error bodies are small JSON objects made by `ApiError`; anything else passes.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let flat = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            let error = v.get("error")?;
            let message = error.get("message")?.as_str()?.to_owned();
            let code = error.get("code")?.clone();
            Some(serde_json::json!({ "error": message, "code": code, "message": message }))
        });
    let bytes = match flat {
        Some(v) => v.to_string().into_bytes().into(),
        None => bytes,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

//! `POST /v1/tokens`: short-lived chat tokens for browsers (`exchangeToken`).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::sandboxes::rfc3339;
use super::{ApiError, ApiJson, AppState};

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
        expires_at: rfc3339(expires_at),
    }))
}

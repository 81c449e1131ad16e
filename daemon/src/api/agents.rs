//! `/v1/agents…` (an extension): list, get, deploy (PUT) and remove definitions
//! without a restart. Deployed definitions are validated like files and kept in the
//! state directory; definitions from the agents directory can be read, not removed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{ApiError, ApiJson, AppState};
use crate::agents::{AgentDef, AgentError, Source};

/// An agent as the API shows it.
#[derive(Debug, Serialize)]
pub struct AgentView {
    slug: String,
    name: String,
    source: Source,
    definition: AgentDef,
}

impl AgentView {
    fn new(slug: String, definition: AgentDef, source: Source) -> Self {
        Self {
            name: definition.display_name(&slug),
            slug,
            source,
            definition,
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        let message = e.to_string();
        match e {
            AgentError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "agent_not_found", message),
            AgentError::Invalid(_) => Self::bad_request(message),
            AgentError::FromFile(_) => Self::new(StatusCode::CONFLICT, "agent_from_file", message),
            AgentError::Store(e) => e.into(),
        }
    }
}

/// `GET /v1/agents`.
pub async fn list(State(state): State<AppState>) -> Json<Vec<AgentView>> {
    Json(
        state
            .sandboxes
            .agents()
            .list()
            .into_iter()
            .map(|(slug, def, source)| AgentView::new(slug, def, source))
            .collect(),
    )
}

/// A definition skipped at start-up.
#[derive(Debug, Serialize)]
pub struct ProblemView {
    /// The slug its file name gives.
    slug: String,
    /// The file (or `state database: agent <slug>` for a deployed one).
    path: String,
    /// Why it was skipped.
    message: String,
}

/// `GET /v1/agent-problems`: the definitions skipped at start-up (they are logged
/// too); the web console lists them beside the agents.
pub async fn problems(State(state): State<AppState>) -> Json<Vec<ProblemView>> {
    Json(
        state
            .agent_problems
            .iter()
            .map(|p| ProblemView {
                slug: p
                    .path
                    .to_string_lossy()
                    .strip_prefix("state database: agent ")
                    .map(str::to_owned)
                    .or_else(|| {
                        let stem = p.path.file_stem()?;
                        Some(stem.to_string_lossy().into_owned())
                    })
                    .unwrap_or_default(),
                path: p.path.display().to_string(),
                message: p.message.clone(),
            })
            .collect(),
    )
}

/// `GET /v1/agents/:slug`.
pub async fn get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let (def, source) = state
        .sandboxes
        .agents()
        .get_with_source(&slug)
        .ok_or_else(|| AgentError::NotFound(slug.clone()))?;
    Ok(Json(AgentView::new(slug, def, source)))
}

/// `PUT /v1/agents/:slug`: the body is the definition; 201 when new, 200 when replaced.
pub async fn put(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ApiJson(def): ApiJson<AgentDef>,
) -> Result<Response, ApiError> {
    // Validated like a file in the agents directory, so both kinds agree.
    let created = state.sandboxes.agents().deploy(&slug, def.clone())?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(AgentView::new(slug, def, Source::Api))).into_response())
}

/// `DELETE /v1/agents/:slug`: removes a deployed definition (its sandboxes live on).
pub async fn delete(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.agents().remove(&slug)?;
    Ok(StatusCode::NO_CONTENT)
}

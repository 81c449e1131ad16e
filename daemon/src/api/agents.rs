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

/// The body of `PUT /v1/agents/:slug/code`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployCode {
    /// The agent file's text: `export default agent({...})`, as in the agents directory.
    source: String,
    /// Its type: `ts` (the default), `mjs` or `js`.
    #[serde(default)]
    extension: Option<String>,
}

/// `PUT /v1/agents/:slug/code`: deploys an agent written in TypeScript/JavaScript
/// (one file). It is built and evaluated in a loader container like a file of the
/// agents directory (imports resolve from that directory's project), kept in the state
/// directory and built again on every reload; 201 when new, 200 when replaced, 400 with
/// the build's error.
pub async fn put_code(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<DeployCode>,
) -> Result<Response, ApiError> {
    crate::agents::check_slug(&slug).map_err(ApiError::bad_request)?;
    // Refused before anything is built or kept: a kept source is loaded on reloads.
    if let Some((_, Source::File)) = state.sandboxes.agents().get_with_source(&slug) {
        return Err(AgentError::FromFile(slug).into());
    }
    let engine = state.readiness.engine().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "agents in code are built in a container: the Docker engine is not connected yet",
        )
    })?;
    let ext = body.extension.as_deref().unwrap_or("ts");
    let def = state
        .agent_files
        .deploy(engine, &slug, &body.source, ext)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "agent_build_failed", e))?;
    let created = match state.sandboxes.agents().deploy_code(&slug, def.clone()) {
        Ok(created) => created,
        Err(refused) => {
            // A file of the slug appeared during the build: its kept source goes.
            if let Some(code) = &def.code {
                let _ = std::fs::remove_file(&code.path);
            }
            return Err(refused.into());
        }
    };
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

/// A definition that did not load: a file of the agents directory, or an agent
/// deployed through the API whose stored definition is no longer valid.
#[derive(Debug, Serialize)]
pub struct ProblemView {
    /// The slug it would have had.
    slug: String,
    /// The file (or `state database: agent <slug>` for a deployed one).
    path: String,
    /// Why it did not load.
    message: String,
}

/// The problems of the latest load of the agents directory (those of start-up until
/// the first load), and those of deployed agents found at start-up.
fn problems(state: &AppState) -> Vec<ProblemView> {
    const DEPLOYED: &str = "state database: agent ";
    let agents = state.sandboxes.agents();
    let loaded = agents.loads() > 0;
    let at_start = state
        .agent_problems
        .iter()
        .filter(|p| !loaded || p.path.to_string_lossy().starts_with(DEPLOYED))
        .cloned();
    let live = if loaded {
        agents.problems()
    } else {
        Vec::new()
    };
    at_start
        .chain(live)
        .map(|p| {
            let path = p.path.to_string_lossy().into_owned();
            let slug = match path.strip_prefix(DEPLOYED) {
                Some(slug) => slug.to_owned(),
                None => slug_of(&p.path),
            };
            ProblemView {
                slug,
                path,
                message: p.message,
            }
        })
        .collect()
}

/// `agents/<slug>.json`, `agents/<slug>.ts` or `agents/<slug>/index.ts`.
fn slug_of(path: &std::path::Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    match stem.as_deref() {
        Some("index") => path
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default(),
        other => other.unwrap_or_default().to_owned(),
    }
}

/// `GET /v1/agents/problems`: files of the agents directory that did not load.
pub async fn list_problems(State(state): State<AppState>) -> Json<Vec<ProblemView>> {
    Json(problems(&state))
}

/// `POST /v1/agents/reload`: loads the agents directory again now.
pub async fn reload(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let agents = state.sandboxes.agents();
    if !agents.reload(std::time::Duration::from_secs(300)).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload_pending",
            "the agents directory was not reloaded in time (is the daemon ready?)",
        ));
    }
    Ok(Json(serde_json::json!({
        "agents": agents.list().len(),
        "problems": problems(&state),
    })))
}

/// `GET /v1/agents/:slug/env`: the names of the agent's variables (never values).
pub async fn env_list(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let names = state.sandboxes.agents().env_names(&slug)?;
    Ok(Json(serde_json::json!({ "names": names })))
}

/// The body of `PUT /v1/agents/:slug/env`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetEnv {
    vars: std::collections::BTreeMap<String, String>,
}

/// `PUT /v1/agents/:slug/env`: sets variables (`{"vars": {"NAME": "value"}}`).
pub async fn env_set(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<SetEnv>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let vars: Vec<(String, String)> = body.vars.into_iter().collect();
    let names = state.sandboxes.agents().set_env(&slug, &vars)?;
    Ok(Json(serde_json::json!({ "names": names })))
}

/// `DELETE /v1/agents/:slug/env/:name`.
pub async fn env_remove(
    State(state): State<AppState>,
    Path((slug, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.agents().remove_env(&slug, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

//! `/v1/sandboxes…`: create, list, get, delete, exec.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::threads::Summary;
use super::{ApiError, ApiJson, AppState};
use crate::rfc3339;
use crate::sandbox::{CloneParams, CreateSandbox, ExecParams, SandboxView, Status};

/// `POST /v1/sandboxes` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    agent: String,
    #[serde(default)]
    files: Option<FilesBody>,
    #[serde(default)]
    envs: Option<BTreeMap<String, String>>,
    #[serde(default)]
    setup: Option<Vec<String>>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    network_allow_out: Option<Vec<String>>,
    #[serde(default)]
    network_deny_out: Option<Vec<String>>,
    /// Creates the sandbox for this user, so that chat tokens of the same user can
    /// use it (an extension).
    #[serde(default)]
    user_id: Option<String>,
}

/// Files as `{path: content}` (SDK) or `[{path, content}]` (API reference).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "files as {\"path\": \"content\"} or [{\"path\", \"content\"}]"
)]
pub enum FilesBody {
    /// `{path: content}`
    Map(BTreeMap<String, String>),
    /// `[{path, content}]`
    List(Vec<FileBody>),
}

/// One file of the list shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBody {
    path: String,
    content: String,
}

impl FilesBody {
    /// As a map; a path given twice is an error.
    pub fn into_map(self) -> Result<BTreeMap<String, String>, ApiError> {
        match self {
            FilesBody::Map(map) => Ok(map),
            FilesBody::List(list) => {
                let mut map = BTreeMap::new();
                for f in list {
                    if map.insert(f.path.clone(), f.content).is_some() {
                        return Err(ApiError::bad_request(format!(
                            "files: {:?} is given twice",
                            f.path
                        )));
                    }
                }
                Ok(map)
            }
        }
    }
}

/// The short form of a sandbox returned by create.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    id: String,
    sandbox_id: String,
    status: Status,
    error: Option<String>,
    created_at: String,
}

/// A sandbox as GET and list show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    id: String,
    sandbox_id: String,
    status: Status,
    error: Option<String>,
    agent: AgentRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<Vec<Summary>>,
    /// What the sandbox consumed through the model proxy (an extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    model_usage: Option<crate::proxy::ProxyUsage>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
pub struct AgentRef {
    slug: String,
    name: String,
}

impl Detail {
    fn new(view: SandboxView, threads: Option<Vec<Summary>>) -> Self {
        Self {
            id: view.id,
            sandbox_id: view.sandbox_id,
            status: view.status,
            error: view.error,
            agent: AgentRef {
                slug: view.agent_slug,
                name: view.agent_name,
            },
            threads,
            model_usage: None,
            created_at: rfc3339::format(view.created_at),
            updated_at: rfc3339::format(view.updated_at),
        }
    }
}

/// `POST /v1/sandboxes`: returns once the sandbox is `active` or `error`.
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let call = CreateSandbox {
        agent: body.agent,
        files: body
            .files
            .map(FilesBody::into_map)
            .transpose()?
            .unwrap_or_default(),
        envs: body.envs.unwrap_or_default(),
        setup: body.setup.unwrap_or_default(),
        timeout_ms: body.timeout_ms,
        network_allow_out: body.network_allow_out,
        network_deny_out: body.network_deny_out,
        owner: body.user_id.map(|u| format!("user:{u}")),
        // The API key is held to the global limit only.
        by_token: false,
        ..CreateSandbox::default()
    };
    let sandbox = state.sandboxes.create(call).await?;
    let view = sandbox.view();
    let created = Created {
        id: view.id,
        sandbox_id: view.sandbox_id,
        status: view.status,
        error: view.error,
        created_at: rfc3339::format(view.created_at),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /v1/sandboxes`: every sandbox, oldest first.
pub async fn list(State(state): State<AppState>) -> Json<Vec<Detail>> {
    Json(
        state
            .sandboxes
            .list()
            .into_iter()
            .map(|v| Detail::new(v, None))
            .collect(),
    )
}

/// `GET /v1/sandboxes/:id`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Detail>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let threads = sandbox
        .threads_snapshot()
        .iter()
        .map(|t| Summary::of(t))
        .collect();
    let mut detail = Detail::new(sandbox.view(), Some(threads));
    detail.model_usage = Some(state.sandboxes.model_usage(&sandbox.id));
    Ok(Json(detail))
}

/// `DELETE /v1/sandboxes/:id`: 204 once the container is gone.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/sandboxes/:id/exec` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecBody {
    pub(super) command: String,
    #[serde(default)]
    pub(super) cwd: Option<String>,
    #[serde(default)]
    pub(super) envs: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
}

/// `POST /v1/sandboxes/:id/exec` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResponse {
    stdout: String,
    stderr: String,
    exit_code: i32,
    timed_out: bool,
    stdout_truncated: bool,
    stderr_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `POST /v1/sandboxes/:id/exec`.
pub async fn exec(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExecBody>,
) -> Result<Json<ExecResponse>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let params = ExecParams {
        command: body.command,
        cwd: body.cwd,
        envs: body.envs.unwrap_or_default(),
        timeout_ms: body.timeout_ms,
    };
    let result = state.sandboxes.exec(&sandbox, params).await?;
    let mut notes = Vec::new();
    if result.timed_out {
        notes.push(format!(
            "the command timed out after {} ms and its process group was killed",
            result.timeout_ms
        ));
    }
    if result.stdout_truncated || result.stderr_truncated {
        notes.push(format!(
            "output beyond {} bytes per stream was dropped",
            state.sandboxes.settings().exec_output_limit
        ));
    }
    let response = ExecResponse {
        stdout: result.stdout,
        stderr: result.stderr,
        exit_code: result.exit_code,
        timed_out: result.timed_out,
        stdout_truncated: result.stdout_truncated,
        stderr_truncated: result.stderr_truncated,
        error: (!notes.is_empty()).then(|| notes.join("; ")),
    };
    Ok(Json(response))
}

/// `POST /v1/sandboxes/:id/git/clone` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneBody {
    url: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    depth: Option<u32>,
}

/// `POST /v1/sandboxes/:id/git/clone` response.
#[derive(Debug, Serialize)]
pub struct CloneResponse {
    path: String,
    branch: String,
}

/// `POST /v1/sandboxes/:id/git/clone`.
pub async fn git_clone(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CloneBody>,
) -> Result<Json<CloneResponse>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let params = CloneParams {
        url: body.url,
        path: body.path,
        token: body.token,
        depth: body.depth,
    };
    let cloned = state.sandboxes.git_clone(&sandbox, params).await?;
    Ok(Json(CloneResponse {
        path: cloned.path,
        branch: cloned.branch,
    }))
}

//! E2B's control plane over the sandbox domain: create (`POST /sandboxes` and
//! `/v2/sandboxes`), connect, kill, info, and the absolute timeout (`endAt`).
//!
//! - `list.rs`: the lists (filters and `x-next-token` pages).
//! - `pause.rs`: pause and resume (the cgroup freezer), and what is not supported.
//!
//! Templates: `base` is the daemon's default image with nothing added (unless an agent
//! named `base` exists); any other template is an agent slug, its image and Sandbox
//! config applied. Sandboxes made through the relay API are listed here too, with
//! their agent as the template.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{auth, ControlError, E2bState, ENVD_VERSION};
use crate::agents::AgentDef;
use crate::sandbox::{Attributes, CreateSandbox, Sandbox, SandboxError, Status};

mod list;
mod network;
mod pause;

pub use list::{list, list_v1};
pub use pause::{pause, resume, unsupported};

/// The template that is the default image as it is.
pub const BASE_TEMPLATE: &str = "base";

/// The longest timeout a call may set (a day, as E2B's own limit for paid teams).
const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// The timeout when a create call gives none (E2B's API default).
const DEFAULT_TIMEOUT_SECS: u64 = 15;

/// At most this many metadata entries, each key and value at most this long.
const MAX_METADATA: usize = 64;
const MAX_METADATA_LEN: usize = 1024;

/// The largest page of a list.
const MAX_PAGE: usize = 100;

/// `POST /sandboxes` body (E2B's `NewSandbox`). Fields without a counterpart here
/// are refused when set (see `network.rs`); `secure` is always on.
#[derive(Debug, Deserialize)]
struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: String,
    /// Seconds.
    timeout: Option<u64>,
    metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "envVars")]
    env_vars: Option<BTreeMap<String, String>>,
    #[serde(rename = "autoPause")]
    auto_pause: Option<bool>,
    #[serde(rename = "autoPauseMemory")]
    auto_pause_memory: Option<bool>,
    #[serde(rename = "autoResume")]
    auto_resume: Option<AutoResume>,
    #[serde(rename = "allow_internet_access", alias = "allowInternetAccess")]
    allow_internet_access: Option<bool>,
    network: Option<network::Network>,
    mcp: Option<serde_json::Value>,
    iam: Option<serde_json::Value>,
    #[serde(rename = "volumeMounts")]
    volume_mounts: Option<serde_json::Value>,
}

/// `autoResume` of create: resume a paused sandbox on traffic.
#[derive(Debug, Deserialize)]
struct AutoResume {
    enabled: Option<bool>,
}

/// `POST /sandboxes/{id}/timeout` and `/connect` body.
#[derive(Debug, Deserialize)]
struct TimeoutBody {
    /// Seconds.
    timeout: u64,
}

/// `POST /sandboxes/{id}/refreshes` body.
#[derive(Debug, Deserialize)]
struct RefreshBody {
    /// Seconds.
    duration: Option<u64>,
}

/// What create and connect answer (E2B's `Sandbox`).
#[derive(Debug, Serialize)]
struct Created {
    #[serde(rename = "templateID")]
    template_id: String,
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "clientID")]
    client_id: &'static str,
    #[serde(rename = "envdVersion")]
    envd_version: &'static str,
    #[serde(rename = "envdAccessToken")]
    envd_access_token: String,
    /// What getHost requests must carry (`allowPublicTraffic: false`).
    #[serde(rename = "trafficAccessToken", skip_serializing_if = "Option::is_none")]
    traffic_access_token: Option<String>,
    domain: String,
}

/// An item of a list, and (with the token and domain) the detail of one sandbox.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    #[serde(rename = "templateID")]
    template_id: String,
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "clientID")]
    client_id: &'static str,
    started_at: String,
    end_at: String,
    cpu_count: u64,
    #[serde(rename = "memoryMB")]
    memory_mb: u64,
    #[serde(rename = "diskSizeMB")]
    disk_size_mb: u64,
    metadata: BTreeMap<String, String>,
    state: &'static str,
    envd_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    envd_access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic_access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|e| ControlError::bad_request(format!("body: {e}")))
}

fn timeout_secs(secs: u64) -> Result<Duration, ControlError> {
    if secs > MAX_TIMEOUT_SECS {
        return Err(ControlError::bad_request(format!(
            "timeout must be at most {MAX_TIMEOUT_SECS} seconds"
        )));
    }
    Ok(Duration::from_secs(secs))
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), ControlError> {
    if metadata.len() > MAX_METADATA {
        return Err(ControlError::bad_request(format!(
            "metadata: at most {MAX_METADATA} entries"
        )));
    }
    if metadata
        .iter()
        .any(|(k, v)| k.is_empty() || k.len() > MAX_METADATA_LEN || v.len() > MAX_METADATA_LEN)
    {
        return Err(ControlError::bad_request(format!(
            "metadata: keys must be non-empty, keys and values at most {MAX_METADATA_LEN} bytes"
        )));
    }
    Ok(())
}

/// A live sandbox by its E2B id (either of its ids), running or paused; one that is
/// neither is gone, as it would be on E2B.
fn running(state: &E2bState, id: &str) -> Result<Arc<Sandbox>, ControlError> {
    let gone = || ControlError::new(StatusCode::NOT_FOUND, format!("sandbox {id:?} not found"));
    let sandbox = state.sandboxes.get(id).map_err(|_| gone())?;
    // Paused when idle is still running to E2B: its next use resumes it.
    if !matches!(sandbox.status(), Status::Active | Status::Paused) {
        return Err(gone());
    }
    Ok(sandbox)
}

fn created(state: &E2bState, sandbox: &Sandbox) -> Created {
    Created {
        template_id: sandbox.agent_slug.clone(),
        sandbox_id: sandbox.sandbox_id.clone(),
        client_id: "sandboxd",
        envd_version: ENVD_VERSION,
        envd_access_token: auth::access_token(state, sandbox),
        traffic_access_token: auth::traffic_token(state, sandbox),
        domain: state.domain.clone(),
    }
}

/// When a sandbox ends: its deadline, else its idle expiry from now, else never
/// (the year 9999).
fn end_at(sandbox: &Sandbox) -> SystemTime {
    sandbox
        .deadline()
        .or_else(|| sandbox.ttl.map(|ttl| SystemTime::now() + ttl))
        .unwrap_or_else(|| SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799))
}

fn listed(state: &E2bState, sandbox: &Sandbox, detail: bool) -> Listed {
    let settings = state.sandboxes.settings();
    let config = &sandbox.agent.sandbox;
    Listed {
        template_id: sandbox.agent_slug.clone(),
        sandbox_id: sandbox.sandbox_id.clone(),
        client_id: "sandboxd",
        started_at: crate::rfc3339::format(sandbox.created_at),
        end_at: crate::rfc3339::format(end_at(sandbox)),
        cpu_count: config.cpu_count.unwrap_or(settings.default_cpus).ceil() as u64,
        memory_mb: config.memory_mb.unwrap_or(settings.default_memory_mb),
        disk_size_mb: settings.disk_mb,
        metadata: sandbox.attributes.metadata.clone(),
        state: if sandbox.held() { "paused" } else { "running" },
        envd_version: ENVD_VERSION,
        envd_access_token: detail.then(|| auth::access_token(state, sandbox)),
        traffic_access_token: auth::traffic_token(state, sandbox).filter(|_| detail),
        domain: detail.then(|| state.domain.clone()),
    }
}

/// `POST /sandboxes`, `POST /v2/sandboxes`: 201 once the sandbox runs.
pub async fn create(State(state): State<E2bState>, body: Bytes) -> Result<Response, ControlError> {
    let body: NewSandbox = parse(&body)?;
    let pause_at_deadline = body.auto_pause == Some(true);
    if pause_at_deadline && body.auto_pause_memory == Some(false) {
        return Err(ControlError::bad_request(
            "a filesystem-only pause (keepMemory: false) is not supported by sandboxd: \
             a paused sandbox always keeps its memory",
        ));
    }
    if body.auto_resume.as_ref().and_then(|a| a.enabled) == Some(true) {
        return Err(ControlError::bad_request(
            "autoResume is not supported by sandboxd: resume a paused sandbox with connect",
        ));
    }
    network::refuse_unsupported(
        body.network.as_ref(),
        body.mcp.as_ref(),
        body.iam.as_ref(),
        body.volume_mounts.as_ref(),
    )?;
    let egress = network::egress(body.allow_internet_access, body.network.as_ref())?;
    let lifetime = timeout_secs(body.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS))?;
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let template = body.template_id;
    let definition = match state.sandboxes.agents().get(&template) {
        Some(_) => None,
        None if template == BASE_TEMPLATE => {
            let mut base = AgentDef::default();
            base.sandbox.sudo = state.base_sudo;
            Some(base)
        }
        None => {
            return Err(ControlError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "template {:?} not found: use \"base\" or an agent's slug",
                    template.chars().take(100).collect::<String>()
                ),
            ))
        }
    };
    let call = CreateSandbox {
        agent: template,
        envs: body.env_vars.unwrap_or_default(),
        // No idle expiry: an E2B sandbox lives until its absolute deadline.
        timeout_ms: Some(0),
        definition,
        attributes: Attributes {
            metadata,
            pause_at_deadline,
            port_access: Some(network::port_access(body.network.as_ref())),
        },
        lifetime_ms: Some(lifetime.as_millis() as u64),
        network_allow_out: egress.allow,
        network_deny_out: egress.deny,
        ..CreateSandbox::default()
    };
    let sandbox = state.sandboxes.create(call).await?;
    if let Err(e) = sandbox.ensure_active() {
        // E2B has no failed sandboxes: say why, and leave nothing behind.
        let _ = state.sandboxes.delete(&sandbox.id).await;
        return Err(ControlError::new(
            StatusCode::BAD_GATEWAY,
            format!("the sandbox failed to start: {e}"),
        ));
    }
    Ok((StatusCode::CREATED, Json(created(&state, &sandbox))).into_response())
}

/// `POST /sandboxes/{id}/connect`: the sandbox's connection details. A running one
/// (200) has its timeout extended to at least `timeout` seconds from now, never
/// shortened; a paused one is resumed (201) and ends `timeout` seconds from now.
pub async fn connect(
    State(state): State<E2bState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let body: TimeoutBody = parse(&body)?;
    let timeout = timeout_secs(body.timeout)?;
    let sandbox = running(&state, &id)?;
    let status = if sandbox.held() {
        pause::resume_for(&state, &sandbox, timeout).await?;
        StatusCode::CREATED
    } else {
        extend(&sandbox, timeout)?;
        StatusCode::OK
    };
    Ok((status, Json(created(&state, &sandbox))).into_response())
}

/// Moves the deadline to `from_now` from now unless it is later already.
fn extend(sandbox: &Sandbox, from_now: Duration) -> Result<(), ControlError> {
    let wanted = SystemTime::now() + from_now;
    match sandbox.deadline() {
        // A relay sandbox (idle expiry, or none): connecting does not add a deadline.
        None => Ok(()),
        Some(current) if current >= wanted => Ok(()),
        Some(_) => Ok(sandbox.set_deadline(Some(wanted))?),
    }
}

/// `POST /sandboxes/{id}/timeout`: the sandbox ends `timeout` seconds from now
/// (sooner or later than before).
pub async fn set_timeout(
    State(state): State<E2bState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let body: TimeoutBody = parse(&body)?;
    let sandbox = running(&state, &id)?;
    pause::refuse_held(&sandbox)?;
    let deadline = SystemTime::now() + timeout_secs(body.timeout)?;
    sandbox.set_deadline(Some(deadline))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/refreshes`: extends the deadline by `duration` seconds
/// from now (never shortens it).
pub async fn refresh(
    State(state): State<E2bState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let body: RefreshBody = if body.is_empty() {
        RefreshBody { duration: None }
    } else {
        parse(&body)?
    };
    let sandbox = running(&state, &id)?;
    pause::refuse_held(&sandbox)?;
    extend(
        &sandbox,
        timeout_secs(body.duration.unwrap_or(DEFAULT_TIMEOUT_SECS))?,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /sandboxes/{id}`: 204, or 404 for a sandbox that does not exist (the SDK
/// turns that into `false`).
pub async fn kill(
    State(state): State<E2bState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ControlError> {
    let sandbox = running(&state, &id)?;
    match state.sandboxes.delete(&sandbox.id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(SandboxError::NotFound(_)) => Err(ControlError::new(
            StatusCode::NOT_FOUND,
            format!("sandbox {id:?} not found"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /sandboxes/{id}`.
pub async fn info(
    State(state): State<E2bState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ControlError> {
    let sandbox = running(&state, &id)?;
    Ok(Json(
        serde_json::to_value(listed(&state, &sandbox, true)).unwrap_or_default(),
    ))
}

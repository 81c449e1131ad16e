//! E2B's control plane over the sandbox domain: create (`POST /sandboxes` and
//! `/v2/sandboxes`), connect, kill, info, list (with metadata and state filters and
//! `x-next-token` pages), and the absolute timeout (`endAt`).
//!
//! Templates: `base` is the daemon's default image with nothing added (unless an agent
//! named `base` exists); any other template is an agent slug, its image and Sandbox
//! config applied. Sandboxes made through the relay API are listed here too, with
//! their agent as the template.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{auth, ControlError, E2bState, ENVD_VERSION};
use crate::agents::AgentDef;
use crate::sandbox::{Attributes, CreateSandbox, Sandbox, SandboxError, Status};

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

/// `POST /sandboxes` body (E2B's `NewSandbox`); fields this daemon does not act on
/// are accepted and ignored, as the SDKs send them all.
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

/// A running sandbox by its E2B id (either of its ids); one that is not running is
/// gone, as it would be on E2B. One paused for being idle counts as running.
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
        domain: state.domain.clone(),
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
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
        started_at: rfc3339(sandbox.created_at),
        end_at: rfc3339(end_at(sandbox)),
        cpu_count: config.cpu_count.unwrap_or(settings.default_cpus).ceil() as u64,
        memory_mb: config.memory_mb.unwrap_or(settings.default_memory_mb),
        disk_size_mb: settings.disk_mb,
        metadata: sandbox.attributes.metadata.clone(),
        state: "running",
        envd_version: ENVD_VERSION,
        envd_access_token: detail.then(|| auth::access_token(state, sandbox)),
        domain: detail.then(|| state.domain.clone()),
    }
}

/// `POST /sandboxes`, `POST /v2/sandboxes`: 201 once the sandbox runs.
pub async fn create(State(state): State<E2bState>, body: Bytes) -> Result<Response, ControlError> {
    let body: NewSandbox = parse(&body)?;
    if body.auto_pause == Some(true) {
        return Err(ControlError::new(
            StatusCode::NOT_IMPLEMENTED,
            "autoPause is not supported by sandboxd yet: a sandbox is killed at its timeout",
        ));
    }
    let lifetime = timeout_secs(body.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS))?;
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let template = body.template_id;
    let definition = match state.sandboxes.agents().get(&template) {
        Some(_) => None,
        None if template == BASE_TEMPLATE => Some(AgentDef::default()),
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
        attributes: Attributes { metadata },
        lifetime_ms: Some(lifetime.as_millis() as u64),
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

/// `POST /sandboxes/{id}/connect`: the sandbox's connection details; its timeout is
/// extended to at least `timeout` seconds from now, never shortened.
pub async fn connect(
    State(state): State<E2bState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ControlError> {
    let body: TimeoutBody = parse(&body)?;
    let sandbox = running(&state, &id)?;
    extend(&sandbox, timeout_secs(body.timeout)?)?;
    Ok(Json(
        serde_json::to_value(created(&state, &sandbox)).unwrap_or_default(),
    ))
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

/// `GET /sandboxes` (deprecated): every running sandbox, with an optional
/// `metadata` filter.
pub async fn list_v1(
    State(state): State<E2bState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<serde_json::Value>>, ControlError> {
    let mut filter = Filter::parse(query.as_deref().unwrap_or(""))?;
    filter.limit = usize::MAX;
    let (page, _) = filter.page(&state);
    Ok(Json(page))
}

/// `GET /v2/sandboxes`: a page of sandboxes; the next page's token is the
/// `x-next-token` header.
pub async fn list(
    State(state): State<E2bState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ControlError> {
    let filter = Filter::parse(query.as_deref().unwrap_or(""))?;
    let (page, next) = filter.page(&state);
    let mut response = Json(page).into_response();
    if let Some(token) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert("x-next-token", token);
    }
    Ok(response)
}

/// The query of a list.
#[derive(Debug, Default)]
struct Filter {
    metadata: Vec<(String, String)>,
    /// Whether running sandboxes are asked for (paused ones never exist here).
    running: bool,
    started_after: Option<SystemTime>,
    template: Option<String>,
    ascending: bool,
    limit: usize,
    /// The sort key of the last item of the previous page.
    after: Option<(i64, String)>,
}

impl Filter {
    fn parse(query: &str) -> Result<Self, ControlError> {
        let mut filter = Self {
            limit: MAX_PAGE,
            ..Self::default()
        };
        let mut states = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "metadata" => {
                    // An encoded `k=v&…` string, its keys and values encoded again.
                    for (k, v) in url::form_urlencoded::parse(value.as_bytes()) {
                        let k = percent_decoded(&k);
                        let v = percent_decoded(&v);
                        filter.metadata.push((k, v));
                    }
                }
                "state" => states.extend(value.split(',').map(str::to_owned)),
                "startedAfter" => {
                    let t = humantime::parse_rfc3339_weak(&value)
                        .map_err(|e| ControlError::bad_request(format!("startedAfter: {e}")))?;
                    filter.started_after = Some(t);
                }
                "template" => filter.template = Some(value.into_owned()),
                "order" => match &*value {
                    "asc" => filter.ascending = true,
                    "desc" => filter.ascending = false,
                    other => {
                        return Err(ControlError::bad_request(format!(
                            "order: {other:?} is not asc or desc"
                        )))
                    }
                },
                "limit" => {
                    let limit: usize = value
                        .parse()
                        .map_err(|_| ControlError::bad_request("limit: not a number"))?;
                    if !(1..=MAX_PAGE).contains(&limit) {
                        return Err(ControlError::bad_request(format!(
                            "limit: between 1 and {MAX_PAGE}"
                        )));
                    }
                    filter.limit = limit;
                }
                "nextToken" => {
                    let bad = || ControlError::bad_request("nextToken: not a token of this API");
                    let (ms, id) = value.split_once('.').ok_or_else(bad)?;
                    filter.after = Some((ms.parse().map_err(|_| bad())?, id.to_owned()));
                }
                _ => {}
            }
        }
        for state in &states {
            match state.as_str() {
                "running" => filter.running = true,
                "paused" => {}
                other => {
                    return Err(ControlError::bad_request(format!(
                        "state: {other:?} is not running or paused"
                    )))
                }
            }
        }
        if states.is_empty() {
            filter.running = true;
        }
        Ok(filter)
    }

    /// The matching sandboxes after the token, at most a page, and the next token.
    fn page(&self, state: &E2bState) -> (Vec<serde_json::Value>, Option<String>) {
        if !self.running {
            return (Vec::new(), None);
        }
        let mut matching: Vec<(i64, String, Arc<Sandbox>)> = state
            .sandboxes
            .list()
            .into_iter()
            .filter(|view| matches!(view.status, Status::Active | Status::Paused))
            .filter_map(|view| state.sandboxes.peek(&view.id))
            .filter(|sb| {
                self.metadata
                    .iter()
                    .all(|(k, v)| sb.attributes.metadata.get(k) == Some(v))
                    && self.template.as_ref().is_none_or(|t| *t == sb.agent_slug)
                    && self.started_after.is_none_or(|t| sb.created_at > t)
            })
            .map(|sb| (crate::store::millis(sb.created_at), sb.id.clone(), sb))
            .collect();
        matching.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        if !self.ascending {
            matching.reverse();
        }
        let start = match &self.after {
            None => 0,
            Some((ms, id)) => matching
                .iter()
                .position(|(m, i, _)| {
                    let key = (*m, i.as_str());
                    let after = (*ms, id.as_str());
                    if self.ascending {
                        key > after
                    } else {
                        key < after
                    }
                })
                .unwrap_or(matching.len()),
        };
        let rest = &matching[start..];
        let page: Vec<_> = rest.iter().take(self.limit).collect();
        let next = (rest.len() > page.len())
            .then(|| page.last().map(|(ms, id, _)| format!("{ms}.{id}")))
            .flatten();
        let items = page
            .iter()
            .map(|(_, _, sb)| serde_json::to_value(listed(state, sb, false)).unwrap_or_default())
            .collect();
        (items, next)
    }
}

/// Undoes the second encoding the SDK gives metadata keys and values.
fn percent_decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

/// Pause, fork and snapshots: not supported yet, said plainly.
pub async fn unsupported() -> ControlError {
    ControlError::new(
        StatusCode::NOT_IMPLEMENTED,
        "pause, fork and snapshots are not supported by sandboxd yet",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_parse() {
        let f = Filter::parse(
            "metadata=a%3D1%26b%3Dx%2520y&state=running,paused&limit=2&order=asc&nextToken=5.sb_x",
        )
        .expect("parses");
        assert_eq!(
            f.metadata,
            vec![("a".into(), "1".into()), ("b".into(), "x y".into())]
        );
        assert!(f.running && f.ascending);
        assert_eq!(f.limit, 2);
        assert_eq!(f.after, Some((5, "sb_x".into())));
        let paused = Filter::parse("state=paused").expect("parses");
        assert!(!paused.running);
        assert!(Filter::parse("state=gone").is_err());
        assert!(Filter::parse("limit=0").is_err());
        assert!(Filter::parse("nextToken=x").is_err());
    }
}

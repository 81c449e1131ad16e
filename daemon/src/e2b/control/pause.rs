//! Pause and resume (E2B's `pause`, `connect` of a paused sandbox, and the deprecated
//! `resume`), over the cgroup freezer: a paused sandbox keeps its memory and
//! processes, which carry on where they were once it is resumed. While paused, its
//! envd answers 502 (`isRunning` is false), its deadline does not run, and it is
//! listed with state `paused`. Resuming gives it `timeout` seconds from then, as E2B
//! does. A sandbox created with `autoPause` is paused at its deadline instead of
//! being killed.
//!
//! Snapshots, forks and network updates are not supported: they answer 501 with
//! E2B's `{code, message}`.

use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{created, parse, running, timeout_secs, ControlError, E2bState, DEFAULT_TIMEOUT_SECS};
use crate::sandbox::Sandbox;

/// `POST /sandboxes/{id}/pause` body.
#[derive(Debug, Default, Deserialize)]
struct PauseBody {
    /// Keep the memory (the only kind of pause here); `false` asks for a
    /// filesystem-only snapshot that cold-boots on resume.
    memory: Option<bool>,
}

/// `POST /sandboxes/{id}/resume` body (deprecated; the SDKs use connect).
#[derive(Debug, Default, Deserialize)]
struct ResumeBody {
    /// Seconds.
    timeout: Option<u64>,
    #[serde(rename = "autoPause")]
    auto_pause: Option<bool>,
}

/// `POST /sandboxes/{id}/pause`: 204 once frozen; 409 when it is paused already.
pub async fn pause(
    State(state): State<E2bState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let body: PauseBody = if body.is_empty() {
        PauseBody::default()
    } else {
        parse(&body)?
    };
    if body.memory == Some(false) {
        return Err(ControlError::new(
            StatusCode::NOT_IMPLEMENTED,
            "a filesystem-only pause (keepMemory: false) is not supported by sandboxd: \
             a paused sandbox always keeps its memory",
        ));
    }
    let sandbox = running(&state, &id)?;
    if state.sandboxes.pause_held(&sandbox).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::new(
            StatusCode::CONFLICT,
            format!("sandbox {:?} is already paused", sandbox.sandbox_id),
        ))
    }
}

/// `POST /sandboxes/{id}/resume`: 201 with the connection details once running
/// again; 409 when it was not paused.
pub async fn resume(
    State(state): State<E2bState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let body: ResumeBody = if body.is_empty() {
        ResumeBody::default()
    } else {
        parse(&body)?
    };
    let sandbox = running(&state, &id)?;
    if body
        .auto_pause
        .is_some_and(|a| a != sandbox.attributes.pause_at_deadline)
    {
        return Err(ControlError::bad_request(
            "autoPause is chosen when the sandbox is created, not when it is resumed",
        ));
    }
    if !sandbox.held() {
        return Err(ControlError::new(
            StatusCode::CONFLICT,
            format!("sandbox {:?} is already running", sandbox.sandbox_id),
        ));
    }
    let timeout = timeout_secs(body.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS))?;
    resume_for(&state, &sandbox, timeout).await?;
    Ok((StatusCode::CREATED, Json(created(&state, &sandbox))).into_response())
}

/// Resumes a paused sandbox; one with a deadline (an E2B sandbox) then ends
/// `timeout` from now.
pub(super) async fn resume_for(
    state: &E2bState,
    sandbox: &Sandbox,
    timeout: Duration,
) -> Result<(), ControlError> {
    state.sandboxes.resume_held(sandbox).await?;
    if sandbox.deadline().is_some() {
        sandbox.set_deadline(Some(SystemTime::now() + timeout))?;
    }
    Ok(())
}

/// Fails for a paused sandbox: its timeout is set when it is resumed.
pub(super) fn refuse_held(sandbox: &Sandbox) -> Result<(), ControlError> {
    if sandbox.held() {
        return Err(ControlError::new(
            StatusCode::CONFLICT,
            format!(
                "sandbox {:?} is paused: connect to resume it (with the timeout to give it)",
                sandbox.sandbox_id
            ),
        ));
    }
    Ok(())
}

/// Snapshots, forks and network updates: not supported, said plainly.
pub async fn unsupported() -> ControlError {
    ControlError::new(
        StatusCode::NOT_IMPLEMENTED,
        "snapshots, forks and network updates are not supported by sandboxd",
    )
}

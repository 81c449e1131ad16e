//! `/v1/quarantine`: sandboxes of this daemon that its store has no record of, stopped
//! and kept rather than deleted (see the sandbox domain's `quarantine.rs`): list them,
//! and remove one for good.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, AppState};
use crate::sandbox::Quarantined;

/// `GET /v1/quarantine`.
pub async fn list(State(state): State<AppState>) -> Json<Vec<Quarantined>> {
    Json(state.sandboxes.quarantined())
}

/// `DELETE /v1/quarantine/:id`: its container, home disk and directory go.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.purge_quarantined(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

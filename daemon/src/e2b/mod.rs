//! The E2B-compatible API: E2B's control plane (`/sandboxes`, `/v2/sandboxes`) and
//! the envd API of every sandbox (`/health`, `/files`, and the Connect RPC services
//! `process.Process` and `filesystem.Filesystem`) on one address, so the unmodified
//! `e2b` SDKs run against sandboxd with `E2B_API_URL` and `E2B_SANDBOX_URL` pointing
//! at it.
//!
//! It is a surface over the same [`Sandboxes`] domain as the relay API: the same
//! sandboxes, limits and store. Control-plane calls carry the daemon's API key
//! (`X-API-Key`); envd calls carry `E2b-Sandbox-Id` and `X-Access-Token`, the
//! sandbox's token derived from the daemon's secret (see [`auth`]).
//!
//! - `control.rs`: create, connect, kill, info, list, timeout (the lifecycle REST).
//! - `envd/`: the envd API of one sandbox, chosen by its `E2b-Sandbox-Id` header.
//! - `host.rs`: `getHost(port)`, requests routed to a sandbox's port by their Host.

mod auth;
mod control;
mod envd;
mod host;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};

use crate::auth::ApiKey;
use crate::sandbox::{SandboxError, Sandboxes};
use crate::tokens::Signer;

/// The envd version reported to the SDKs. The SDKs switch features on by it: 0.6.4
/// enables recursive watches (0.1.4), stdin control (0.3.0), the default user (0.4.0),
/// `closeStdin` (0.5.2), octet-stream uploads (0.5.7), file metadata (0.6.2), entries
/// in watch events (0.6.3) and watches of network mounts (0.6.4), all implemented.
pub const ENVD_VERSION: &str = "0.6.4";

/// What every handler of this surface can reach.
#[derive(Debug, Clone)]
pub struct E2bState {
    /// The sandbox domain.
    pub sandboxes: Arc<Sandboxes>,
    /// The daemon's API key (what `E2B_API_KEY` must be).
    pub api_key: ApiKey,
    /// Derives each sandbox's envd access token.
    pub signer: Signer,
    /// The `domain` reported to clients (`localhost:<port>` of this listener).
    pub domain: String,
    /// Request body limit of control-plane calls and RPCs.
    pub max_body_bytes: usize,
    /// The processes started through envd, per sandbox.
    pub processes: Arc<envd::Processes>,
    /// The polling directory watchers (`CreateWatcher`), of every sandbox.
    pub watchers: Arc<envd::Watchers>,
    /// Forwards `getHost` traffic to sandboxes (no proxy from the environment).
    pub http: reqwest::Client,
    /// `sudo` works in sandboxes of the `base` template (`--e2b-base-sudo`).
    pub base_sudo: bool,
}

impl E2bState {
    /// A state over the domain.
    pub fn new(
        sandboxes: Arc<Sandboxes>,
        api_key: ApiKey,
        signer: Signer,
        domain: String,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            sandboxes,
            api_key,
            signer,
            domain,
            max_body_bytes,
            processes: Arc::new(envd::Processes::default()),
            watchers: Arc::new(envd::Watchers::default()),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            base_sudo: false,
        }
    }

    /// With `sudo` in the `base` template's sandboxes.
    pub fn with_base_sudo(mut self, on: bool) -> Self {
        self.base_sudo = on;
        self
    }
}

/// The whole E2B surface.
pub fn app(state: E2bState) -> Router {
    let control = Router::new()
        .route("/sandboxes", post(control::create).get(control::list_v1))
        .route("/v2/sandboxes", post(control::create).get(control::list))
        .route("/sandboxes/{id}", get(control::info).delete(control::kill))
        .route("/sandboxes/{id}/timeout", post(control::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(control::refresh))
        .route("/sandboxes/{id}/connect", post(control::connect))
        .route("/sandboxes/{id}/resume", post(control::resume))
        .route("/sandboxes/{id}/pause", post(control::pause))
        .route("/sandboxes/{id}/network", put(control::unsupported))
        .route("/sandboxes/{id}/fork", post(control::unsupported))
        .route("/sandboxes/{id}/snapshots", post(control::unsupported))
        .route("/snapshots", get(control::unsupported))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    Router::new()
        .merge(control)
        .merge(envd::router(state.clone()))
        .fallback(no_route)
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), host::route))
        .with_state(state)
}

async fn no_route() -> ControlError {
    ControlError::new(
        StatusCode::NOT_FOUND,
        "no such route in the E2B API of sandboxd",
    )
}

/// A failure of a control-plane call: E2B's `{code, message}` body, the code being
/// the HTTP status (the JS SDK reads it from the body).
#[derive(Debug)]
pub struct ControlError {
    status: StatusCode,
    message: String,
}

impl ControlError {
    /// An error with a status and a message for the client.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("e2b: {}", self.message);
            "internal error; see the daemon's log".to_owned()
        } else {
            self.message
        };
        let body = serde_json::json!({"code": self.status.as_u16(), "message": message});
        (self.status, Json(body)).into_response()
    }
}

impl From<SandboxError> for ControlError {
    fn from(e: SandboxError) -> Self {
        Self::new(status_of(&e), e.to_string())
    }
}

/// The HTTP status of a domain failure (as the relay API maps it, in E2B's terms:
/// a sandbox that is not running is gone).
fn status_of(e: &SandboxError) -> StatusCode {
    match e {
        SandboxError::AgentNotFound(_) | SandboxError::NotFound(_) => StatusCode::NOT_FOUND,
        SandboxError::NotActive { .. } => StatusCode::NOT_FOUND,
        SandboxError::Invalid(_) | SandboxError::BadPath(_) => StatusCode::BAD_REQUEST,
        SandboxError::NotReady(_) | SandboxError::ProxyUnavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        SandboxError::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
        SandboxError::DiskFull { .. } | SandboxError::HostDiskFull(_) | SandboxError::Disk(_) => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        SandboxError::Engine(_) | SandboxError::Init(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

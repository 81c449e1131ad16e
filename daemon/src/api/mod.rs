//! The HTTP API (axum). Handlers extract and validate, call the domain, and map the
//! result; [`app`] builds the router so tests can drive it without a socket.

mod agents;
mod chat;
mod error;
mod events;
mod files;
mod json;
mod metrics;
mod narrow;
mod quarantine;
mod sandboxes;
mod terminal;
mod threads;
mod tokens;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use error::ApiError;
pub use json::{ApiJson, ApiQuery};

use crate::auth::ApiKey;
use crate::readiness::{Phase, Readiness};
use crate::sandbox::Sandboxes;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The sandbox domain.
    pub sandboxes: Arc<Sandboxes>,
    /// Start-up progress.
    pub readiness: Arc<Readiness>,
    /// The API key.
    pub api_key: ApiKey,
    /// Signs and verifies chat tokens.
    pub signer: crate::tokens::Signer,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Origins allowed to call from a browser (`*`: any).
    pub cors_origins: Vec<String>,
    /// Agent definitions that were skipped at start-up, and why.
    pub agent_problems: Arc<Vec<crate::agents::LoadProblem>>,
    /// The agents directory's loader (also builds sources deployed through the API).
    pub agent_files: Arc<crate::agents::watch::AgentFiles>,
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    // Everything but chat takes the API key only.
    let admin = Router::new()
        .route("/sandboxes", post(sandboxes::create).get(sandboxes::list))
        .route(
            "/sandboxes/{id}",
            get(sandboxes::get).delete(sandboxes::delete),
        )
        .route("/sandboxes/{id}/exec", post(sandboxes::exec))
        .route("/sandboxes/{id}/exec/stream", post(terminal::exec_stream))
        .route("/sandboxes/{id}/terminal", get(terminal::terminal))
        .route("/sandboxes/{id}/git/clone", post(sandboxes::git_clone))
        .route(
            "/sandboxes/{id}/files",
            post(files::write).get(files::read).delete(files::remove),
        )
        .route("/sandboxes/{id}/files/list", get(files::list))
        .route("/sandboxes/{id}/files/info", get(files::info))
        .route("/sandboxes/{id}/files/exists", get(files::exists))
        .route("/sandboxes/{id}/files/mkdir", post(files::mkdir))
        .route("/sandboxes/{id}/files/rename", post(files::rename))
        .route(
            "/sandboxes/{id}/threads",
            get(threads::list).post(threads::create),
        )
        .route(
            "/sandboxes/{id}/threads/{thread_id}",
            get(threads::get)
                .patch(threads::patch)
                .delete(threads::delete),
        )
        .route(
            "/sandboxes/{id}/threads/{thread_id}/events",
            get(events::page),
        )
        .route(
            "/sandboxes/{id}/threads/{thread_id}/events/stream",
            get(events::stream),
        )
        .route(
            "/sandboxes/{id}/threads/{thread_id}/permissions/{request_id}",
            post(threads::answer_permission),
        )
        .route("/quarantine", get(quarantine::list))
        .route(
            "/quarantine/{id}",
            axum::routing::delete(quarantine::remove),
        )
        .route("/agents", get(agents::list))
        .route("/agents/problems", get(agents::list_problems))
        .route("/agents/reload", post(agents::reload))
        .route(
            "/agents/{slug}/env",
            get(agents::env_list).put(agents::env_set),
        )
        .route(
            "/agents/{slug}/env/{name}",
            axum::routing::delete(agents::env_remove),
        )
        .route("/agents/{slug}/code", axum::routing::put(agents::put_code))
        .route(
            "/agents/{slug}",
            get(agents::get).put(agents::put).delete(agents::delete),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    // The token route takes the key and answers errors in the shape `exchangeToken`
    // renders (`flat_errors` wraps the key check, so it sees every refusal).
    let token_route = Router::new()
        .route("/tokens", post(tokens::create))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .route_layer(middleware::map_response(tokens::flat_errors));
    // Chat also takes a token scoped to the agent.
    let chat = Router::new()
        .route("/chat/{slug}", post(chat::post))
        .route(
            "/chat/{slug}/{sandbox_id}/stream",
            get(chat::resume).delete(chat::cancel),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_key_or_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route(
            "/metrics",
            get(metrics::metrics)
                .route_layer(middleware::from_fn_with_state(state.clone(), require_key)),
        )
        .nest("/v1", admin.merge(token_route).merge(chat))
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        // Bodies are bounded by `ApiJson` (it knows the configured limit and answers
        // 413 in our JSON shape); axum's own default of 2 MiB would be too small.
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .layer(cors(&state.cors_origins))
        .with_state(state)
}

/// Lets browser pages of the allowed origins call the API with a bearer token (the
/// way `@21st-sdk/react` and `useChat` reach the relay): preflights are answered
/// before authentication, and the headers naming a chat's sandbox and thread are
/// readable by the page. Credentials (cookies) are never allowed: authority comes
/// only from the `Authorization` header.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    let origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::PATCH,
            axum::http::Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            header::HeaderName::from_static("x-sandbox-id"),
            header::HeaderName::from_static("x-thread-id"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// The API's OpenAPI 3.1 description (`daemon/api/openapi.json`).
const OPENAPI: &str = include_str!("../../api/openapi.json");

/// `GET /openapi.json`.
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// `GET /healthz`: 200 once sandboxes can be served, 503 with the phase before. A
/// ready daemon checks its network and the state disk's free space on every call, so
/// 200 means a create would succeed (`low_disk`: under the reserve, creates refused).
async fn healthz(State(state): State<AppState>) -> Response {
    match state.readiness.phase() {
        Phase::Ready => match state.sandboxes.check_network().await {
            Ok(()) => match state.sandboxes.state_disk().filter(|d| d.low()) {
                None => Json(serde_json::json!({ "status": "ok" })).into_response(),
                Some(disk) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({
                        "status": "low_disk",
                        "error": disk.reason(&state.sandboxes.settings().state_dir),
                        "freeBytes": disk.free_bytes,
                        "reserveBytes": disk.reserve_bytes,
                    })),
                )
                    .into_response(),
            },
            Err(why) => {
                state.readiness.request_recheck();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({ "status": "error", "error": why })),
                )
                    .into_response()
            }
        },
        Phase::Starting(what) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "starting", "phase": what })),
        )
            .into_response(),
        Phase::Failed(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "error", "error": why })),
        )
            .into_response(),
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The API key: everything.
    Key,
    /// A chat token: chat of its agents, sandboxes of its owner.
    Token(crate::tokens::Claims),
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

fn missing_credentials() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing credentials: send the header `Authorization: Bearer <api key or token>`",
    )
    .into_response()
}

fn invalid_key() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "invalid API key (the daemon printed where its key is stored at start-up)",
    )
    .into_response()
}

/// Requires the API key. A valid chat token is recognised and refused with 403.
async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match bearer(&req) {
        None => missing_credentials(),
        Some(key) if state.api_key.matches(key) => next.run(req).await,
        Some(token) if state.signer.verify(token).is_ok() => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "chat tokens only authorize /v1/chat/*; this endpoint needs the API key",
        )
        .into_response(),
        Some(_) => invalid_key(),
    }
}

/// Requires the API key or a valid chat token; records which in the request.
async fn require_key_or_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match bearer(&req) {
        None => return missing_credentials(),
        Some(key) if state.api_key.matches(key) => Principal::Key,
        Some(token) if token.matches('.').count() == 2 => match state.signer.verify(token) {
            Ok(claims) => Principal::Token(claims),
            Err(e) => {
                return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
                    .into_response()
            }
        },
        Some(_) => return invalid_key(),
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

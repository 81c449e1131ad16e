//! The envd API of a sandbox, chosen by the `E2b-Sandbox-Id` header every SDK envd
//! call carries, and authenticated by the sandbox's access token (`X-Access-Token`;
//! `/health` needs none, as in envd).
//!
//! - `connect.rs`: the Connect protocol (JSON codec, unary and server streams).
//! - `process/`: `process.Process` (start, connect, list, input, signals).
//! - `filesystem.rs`: `filesystem.Filesystem` (stat, list, mkdir, move, remove).
//! - `watch.rs`: its watches (`WatchDir`, and the polling watchers).
//! - `entry.rs`: envd's `EntryInfo`, as both of them report a file.
//! - `files.rs`: `GET`/`POST /files` (download and upload, streamed).

pub(crate) mod connect;
mod entry;
mod files;
mod filesystem;
mod process;
mod watch;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use process::Processes;
pub use watch::Watchers;

use super::{auth, E2bState};
use crate::names::ROOT;
use crate::sandbox::{paths, Sandbox, Status};
use connect::{Code, RpcError};

/// The sandbox an envd call is for, resolved by [`resolve`].
#[derive(Debug, Clone)]
pub struct Target(pub Arc<Sandbox>);

/// The envd routes.
pub fn router(state: E2bState) -> Router<E2bState> {
    Router::new()
        .route("/health", get(health))
        .route(
            "/files",
            get(files::download)
                // Streamed: bounded by the sandbox's disk, not by the request limit.
                .post(files::upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/process.Process/{method}", post(process::call))
        .route("/filesystem.Filesystem/{method}", post(filesystem::call))
        .route_layer(middleware::from_fn_with_state(state, resolve))
}

/// Finds the sandbox named by `E2b-Sandbox-Id` and checks the access token: a sandbox
/// that does not run answers 502 (what E2B's proxy answers for a dead sandbox, and
/// what the SDK reads as "not running"); a wrong token 401.
async fn resolve(State(state): State<E2bState>, mut request: Request, next: Next) -> Response {
    let rpc = request.uri().path().contains('.');
    // A signed file URL carries no headers: its signature names the sandbox.
    if request.uri().path() == "/files" && !request.headers().contains_key("x-access-token") {
        let query: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        if query.contains_key("signature") {
            // HEAD reads too (it says whether the file exists, and its size): a
            // signature for writing does not answer it.
            let operation = match *request.method() {
                axum::http::Method::GET | axum::http::Method::HEAD => "read",
                axum::http::Method::POST => "write",
                _ => return envd_error(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
            };
            return match auth::signed_sandbox(&state, operation, &query) {
                Ok(sandbox) => {
                    // An idle sandbox may have been paused: the call resumes it.
                    let _awake = match state.sandboxes.awake(&sandbox).await {
                        Ok(guard) => guard,
                        Err(e) => return envd_error(StatusCode::BAD_GATEWAY, e.to_string()),
                    };
                    request.extensions_mut().insert(Target(sandbox));
                    next.run(request).await
                }
                Err(message) => envd_error(StatusCode::UNAUTHORIZED, message),
            };
        }
    }
    let id = request
        .headers()
        .get("e2b-sandbox-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let fail = |status: StatusCode, code: Code, message: String| {
        if rpc {
            RpcError::new(code, message).into_response()
        } else {
            envd_error(status, message)
        }
    };
    if id.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            "missing the E2b-Sandbox-Id header".into(),
        );
    }
    // A sandbox paused when idle is still running to an E2B client; one a client
    // paused is not.
    let sandbox = match state.sandboxes.get(&id) {
        Ok(sb) if matches!(sb.status(), Status::Active | Status::Paused) && !sb.held() => sb,
        _ => {
            return fail(
                StatusCode::BAD_GATEWAY,
                Code::Unavailable,
                format!(
                    "sandbox {:?} is not running",
                    id.chars().take(64).collect::<String>()
                ),
            )
        }
    };
    if request.uri().path() != "/health"
        && !auth::token_matches(&state, &sandbox, request.headers())
    {
        return fail(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "missing or wrong X-Access-Token (the envdAccessToken of create or connect)".into(),
        );
    }
    if request.uri().path() == "/health" {
        return StatusCode::NO_CONTENT.into_response();
    }
    // Resumed if it was paused, and kept awake while the call is answered (a process
    // keeps it awake for as long as it runs).
    let _awake = match state.sandboxes.awake(&sandbox).await {
        Ok(guard) => guard,
        Err(e) => return fail(StatusCode::BAD_GATEWAY, Code::Unavailable, e.to_string()),
    };
    request.extensions_mut().insert(Target(sandbox));
    next.run(request).await
}

/// envd's error body: `{code, message}` with the HTTP status as the code.
pub fn envd_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"code": status.as_u16(), "message": message.into()});
    (status, axum::Json(body)).into_response()
}

/// `GET /health`: answered by the resolver (204 while the sandbox runs or is paused
/// when idle, 502 otherwise); this route only makes the path known.
async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// The home of an account.
fn home(user: &str) -> &'static str {
    if user == ROOT {
        "/root"
    } else {
        crate::names::HOME
    }
}

/// Resolves a path as envd does: `~` is the account's home, a relative path is under
/// it; then normalized and checked like every path of the domain.
pub fn resolve_path(path: &str, user: &str) -> Result<String, RpcError> {
    let home = home(user);
    if path.trim().is_empty() {
        return Err(RpcError::invalid("the path is empty"));
    }
    let absolute = if path == "~" {
        home.to_owned()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("{home}/{rest}")
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{home}/{path}")
    };
    paths::resolve(&absolute).map_err(|e| RpcError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_accounts_home() {
        assert_eq!(resolve_path("a/b", "user").expect("ok"), "/home/user/a/b");
        assert_eq!(resolve_path("~/x", "root").expect("ok"), "/root/x");
        assert_eq!(resolve_path("~", "user").expect("ok"), "/home/user");
        assert_eq!(resolve_path("/tmp/../etc", "user").expect("ok"), "/etc");
        assert!(resolve_path("", "user").is_err());
    }
}

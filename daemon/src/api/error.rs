//! `ApiError`: every failure of the HTTP API as one status and one JSON shape,
//! `{"error": {"code": "<snake_case>", "message": "<what went wrong and what to do>"}}`.
//!
//! Internal failures (500) are logged in full and shown to the client only as a short
//! message; everything a client can cause maps to a 4xx that says what to fix.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandbox_init::protocol::ErrorKind;

use crate::docker::EngineError;
use crate::init_client::InitError;
use crate::sandbox::disk::DiskError;
use crate::sandbox::{GitFailureKind, SandboxError};
use crate::store::StoreError;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Message for a person.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with code `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 for an unknown route.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; the README lists the API",
        )
    }

    /// 405 for a known route with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not accept that method",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = self.code, error = %self.message, "internal error");
            "internal error; the daemon's log has the details".to_owned()
        } else {
            self.message
        };
        let body = serde_json::json!({ "error": { "code": self.code, "message": message } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read: the connection cannot be reused.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        let message = e.to_string();
        match e {
            SandboxError::AgentNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "agent_not_found", message)
            }
            SandboxError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "sandbox_not_found", message)
            }
            SandboxError::ThreadNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "thread_not_found", message)
            }
            SandboxError::ThreadBusy(_) => Self::new(StatusCode::CONFLICT, "thread_busy", message),
            SandboxError::ProxyUnavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
            }
            SandboxError::NotActive { .. } => {
                Self::new(StatusCode::CONFLICT, "sandbox_not_active", message)
            }
            SandboxError::Invalid(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
            }
            SandboxError::BadPath(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_path", message),
            SandboxError::NotReady(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
            }
            SandboxError::Git(failure) => {
                let (status, code) = match failure.kind {
                    GitFailureKind::InvalidUrl => (StatusCode::BAD_REQUEST, "invalid_url"),
                    GitFailureKind::Auth => (StatusCode::FORBIDDEN, "git_auth_failed"),
                    GitFailureKind::NotFound => (StatusCode::NOT_FOUND, "git_repo_not_found"),
                    GitFailureKind::Unreachable => (StatusCode::BAD_GATEWAY, "git_unreachable"),
                    GitFailureKind::TargetExists => (StatusCode::CONFLICT, "path_exists"),
                    GitFailureKind::Other => (StatusCode::BAD_GATEWAY, "git_failed"),
                };
                Self::new(status, code, message)
            }
            SandboxError::Engine(e) => e.into(),
            SandboxError::Init(e) => e.into(),
            SandboxError::Store(e) => e.into(),
            SandboxError::Disk(e) => e.into(),
            SandboxError::DiskFull { .. } | SandboxError::HostDiskFull(_) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                message,
            ),
            SandboxError::PermissionNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "permission_not_found", message)
            }
            SandboxError::PermissionAnswered(_) => {
                Self::new(StatusCode::CONFLICT, "permission_answered", message)
            }
            SandboxError::QuotaExceeded(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::Full(_) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                message,
            ),
            StoreError::Busy(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_busy", message)
            }
            StoreError::Damaged(_) | StoreError::Other(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", message)
            }
        }
    }
}

impl From<DiskError> for ApiError {
    fn from(e: DiskError) -> Self {
        let message = e.to_string();
        match e {
            DiskError::LowSpace { .. } => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                message,
            ),
            DiskError::Io { .. } | DiskError::Tool { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "sandbox_disk", message)
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::Unreachable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "docker_unavailable",
                message,
            ),
            EngineError::NotFound(_) | EngineError::Refused(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "docker_error", message)
            }
            EngineError::Timeout(_) => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "docker_timeout", message)
            }
        }
    }
}

impl From<InitError> for ApiError {
    fn from(e: InitError) -> Self {
        let message = e.to_string();
        match e {
            InitError::Unreachable(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "sandbox_unreachable",
                format!("{message}; its container may have stopped (see GET /v1/sandboxes/:id)"),
            ),
            InitError::Closed(_) => Self::new(StatusCode::BAD_GATEWAY, "sandbox_gone", message),
            InitError::Busy(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "sandbox_busy", message)
            }
            // The sandbox's side broke the conversation: a bad gateway, not our fault.
            InitError::Protocol(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "sandbox_protocol", message)
            }
            InitError::Untrusted(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "sandbox_untrusted", message)
            }
            InitError::Remote { kind, .. } => {
                let (status, code) = match kind {
                    ErrorKind::NotFound => (StatusCode::NOT_FOUND, "path_not_found"),
                    ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "path_exists"),
                    ErrorKind::NotADirectory => (StatusCode::BAD_REQUEST, "not_a_directory"),
                    ErrorKind::IsADirectory => (StatusCode::BAD_REQUEST, "is_a_directory"),
                    ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
                    ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_path"),
                    ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                    ErrorKind::NoSpace => {
                        (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
                    }
                    ErrorKind::Protocol | ErrorKind::Io => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "sandbox_io")
                    }
                };
                Self::new(status, code, message)
            }
        }
    }
}

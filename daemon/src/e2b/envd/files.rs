//! `GET /files` (download) and `POST /files` (upload), envd's file transfer.

use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;

use super::{envd_error, Target};

/// `GET /files?path=&username=`.
pub async fn download(Extension(Target(_sandbox)): Extension<Target>) -> Response {
    envd_error(StatusCode::NOT_IMPLEMENTED, "not supported by sandboxd yet")
}

/// `POST /files?path=&username=`.
pub async fn upload(Extension(Target(_sandbox)): Extension<Target>) -> Response {
    envd_error(StatusCode::NOT_IMPLEMENTED, "not supported by sandboxd yet")
}

//! `filesystem.Filesystem`: stat, list, mkdir, move and remove through the domain's
//! files layer (sandbox-init), as the calling account.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;

use super::connect::{self, Code, RpcError};
use super::Target;

/// `POST /filesystem.Filesystem/{method}`.
pub async fn call(
    Extension(Target(_sandbox)): Extension<Target>,
    Path(method): Path<String>,
    _headers: HeaderMap,
    _body: Bytes,
) -> Response {
    connect::unary_response::<()>(Err(RpcError::new(
        Code::Unimplemented,
        format!("filesystem.Filesystem/{method} is not supported by sandboxd yet"),
    )))
}

//! `GET /files` (download) and `POST /files` (upload), envd's file transfer, through
//! the domain's files layer as the account named by `username` (default `user`).
//!
//! Uploads are `application/octet-stream` (one file at `path`) or
//! `multipart/form-data` (parts named `file`; without `path` each part's filename is
//! its destination, which is how `writeFiles` batches). A request's files are written
//! all or none. Bodies are bounded by the daemon's request limit, a gzip body
//! (`Content-Encoding: gzip`, octet-stream) by it once inflated too; a download is
//! gzipped when the client accepts it. A signed URL (see `auth::signed_sandbox`) reaches here with
//! its sandbox already found by its signature.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::connect::{Code, RpcError};
use super::{envd_error, resolve_path, Target};
use crate::e2b::{auth, E2bState};

#[derive(Debug, Deserialize)]
pub struct FilesQuery {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

/// envd's REST error for an RPC-style failure.
fn error(e: RpcError) -> Response {
    let status = match e.code {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument | Code::AlreadyExists => StatusCode::BAD_REQUEST,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::BAD_GATEWAY,
        Code::DeadlineExceeded | Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    envd_error(status, e.message)
}

fn user_of(query: &FilesQuery) -> Result<&'static str, RpcError> {
    auth::user_named(query.username.as_deref().unwrap_or("")).map_err(|e| {
        // envd answers an unknown user with 401.
        RpcError::new(Code::Unauthenticated, e)
    })
}

/// `GET /files?path=&username=`: the file's bytes.
pub async fn download(
    State(state): State<E2bState>,
    Extension(Target(sandbox)): Extension<Target>,
    Query(query): Query<FilesQuery>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let user = user_of(&query)?;
        let path = resolve_path(query.path.as_deref().unwrap_or(""), user)?;
        let limit = state.max_body_bytes as u64;
        let (_, bytes) = state
            .sandboxes
            .read_file(&sandbox, user, &path, limit)
            .await?;
        Ok::<_, RpcError>(bytes)
    };
    let bytes = match result.await {
        Ok(bytes) => bytes,
        Err(e) => return error(e),
    };
    if accepts_gzip(&headers) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zipped =
            std::io::Write::write_all(&mut encoder, &bytes).and_then(|()| encoder.finish());
        if let Ok(zipped) = zipped {
            return (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                zipped,
            )
                .into_response();
        }
    }
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// Whether `Accept-Encoding` lists gzip (without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next() == Some("gzip") && !parts.any(|p| p == "q=0" || p == "q=0.0")
        })
}

/// Inflates a gzip body, refusing one that inflates past `limit` bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, RpcError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RpcError::invalid(format!("body: not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(RpcError::new(
            Code::ResourceExhausted,
            format!("body: inflates past {limit} bytes (--max-body-bytes)"),
        ));
    }
    Ok(out)
}

/// `POST /files?path=&username=`: writes the body's files; answers their entries.
pub async fn upload(
    State(state): State<E2bState>,
    Extension(Target(sandbox)): Extension<Target>,
    Query(query): Query<FilesQuery>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let result = async {
        let user = user_of(&query)?;
        let gzip = match headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?"))
        {
            None | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(RpcError::new(
                    Code::Unimplemented,
                    format!("Content-Encoding {other:?}: only gzip is supported"),
                ))
            }
        };
        if headers
            .keys()
            .any(|k| k.as_str().starts_with("x-metadata-"))
        {
            return Err(RpcError::new(
                Code::Unimplemented,
                "file metadata is not supported by sandboxd yet",
            ));
        }
        let files = read_files(&state, request, query.path.as_deref(), user, gzip).await?;
        let entries = state.sandboxes.write_files(&sandbox, user, files).await?;
        Ok(entries
            .iter()
            .map(|e| json!({"name": e.name, "type": "file", "path": e.path}))
            .collect::<Vec<_>>())
    };
    match result.await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => error(e),
    }
}

/// The (path, bytes) of an upload body.
async fn read_files(
    state: &E2bState,
    request: Request,
    path: Option<&str>,
    user: &str,
    gzip: bool,
) -> Result<Vec<(String, Vec<u8>)>, RpcError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !content_type.starts_with("multipart/form-data") {
        let path = path.ok_or_else(|| RpcError::invalid("path is required"))?;
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| RpcError::invalid(format!("body: {e}")))?;
        let content = if gzip {
            gunzip(&body, state.max_body_bytes)?
        } else {
            body.to_vec()
        };
        return Ok(vec![(resolve_path(path, user)?, content)]);
    }
    if gzip {
        return Err(RpcError::new(
            Code::Unimplemented,
            "a gzip multipart body is not supported: send application/octet-stream",
        ));
    }
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| RpcError::invalid(format!("body: {e}")))?;
    let mut files = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| RpcError::invalid(format!("body: {e}")))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let target = match path {
            Some(p) => p.to_owned(),
            None => field
                .file_name()
                .map(str::to_owned)
                .ok_or_else(|| RpcError::invalid("a part has no filename and path is not given"))?,
        };
        let bytes = field
            .bytes()
            .await
            .map_err(|e| RpcError::invalid(format!("body: {e}")))?;
        files.push((resolve_path(&target, user)?, bytes.to_vec()));
    }
    if files.is_empty() {
        return Err(RpcError::invalid("the body holds no part named file"));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated_and_bombs_are_refused() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, "br, gzip".parse().expect("header"));
        assert!(accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, "gzip;q=0".parse().expect("header"));
        assert!(!accepts_gzip(&headers));

        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &vec![0u8; 1 << 20]).expect("compress");
        let bomb = encoder.finish().expect("finish");
        assert_eq!(gunzip(&bomb, 1 << 20).expect("fits").len(), 1 << 20);
        let e = gunzip(&bomb, 1000).expect_err("refused");
        assert_eq!(e.code, Code::ResourceExhausted);
        assert!(gunzip(b"not gzip", 10).is_err());
    }
}

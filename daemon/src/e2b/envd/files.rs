//! `GET /files` (download) and `POST /files` (upload), envd's file transfer, through
//! the domain as the account named by `username` (default `user`).
//!
//! Both stream: a download is sent chunk by chunk as sandbox-init reads it (gzipped on
//! the fly when the client accepts it), an upload is handed to sandbox-init chunk by
//! chunk as it arrives (inflated on the fly for `Content-Encoding: gzip`), so the
//! daemon holds a frame or two of a file whatever its size; the sandbox's disk is the
//! bound. Uploads are `application/octet-stream` (one file at `path`) or
//! `multipart/form-data` (parts named `file`; without `path` each part's filename is
//! its destination, which is how `writeFiles` batches), written all or none, with the
//! `X-Metadata-<key>` headers as each file's metadata (`user.e2b.<key>` attributes,
//! keys lowercased as envd does). A signed URL (see `auth::signed_sandbox`) reaches
//! here with its sandbox already found by its signature.

use std::collections::BTreeMap;
use std::io::Write as _;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::connect::{Code, RpcError};
use super::{envd_error, resolve_path, Target};
use crate::e2b::{auth, E2bState};
use crate::sandbox::transfer::{Download, Upload};

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

/// How much compressed input is inflated at a time: deflate expands at most about
/// 1000 times, so one step yields about a megabyte at most.
const INFLATE_STEP: usize = 1024;

/// `GET /files?path=&username=`: the file's bytes, streamed.
pub async fn download(
    State(state): State<E2bState>,
    Extension(Target(sandbox)): Extension<Target>,
    Query(query): Query<FilesQuery>,
    headers: HeaderMap,
) -> Response {
    let opened = async {
        let user = auth::files_account(query.username.as_deref())?;
        let path = resolve_path(query.path.as_deref().unwrap_or(""), user)?;
        Ok::<_, RpcError>(state.sandboxes.read_stream(&sandbox, user, &path).await?)
    };
    let download = match opened.await {
        Ok(download) => download,
        Err(e) => return error(e),
    };
    if download.size == 0 && !accepts_gzip(&headers) {
        return (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Vec::new(),
        )
            .into_response();
    }
    let gzip = accepts_gzip(&headers)
        .then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    // Pulled by the response: the next chunk is read only once the client took the
    // last one.
    let body = futures_util::stream::unfold(
        Some((download, gzip)),
        |state: Option<(Download, Option<flate2::write::GzEncoder<Vec<u8>>>)>| async move {
            let (mut download, mut gzip) = state?;
            loop {
                let chunk = match download.next().await {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        tracing::warn!("e2b: a download broke off: {e}");
                        return Some((Err(std::io::Error::other(e.to_string())), None));
                    }
                };
                let Some(bytes) = chunk else {
                    // The end: what the encoder still holds, then nothing more.
                    return match gzip.take().map(|g| g.finish()) {
                        Some(Ok(tail)) => Some((Ok(Bytes::from(tail)), None)),
                        Some(Err(e)) => Some((Err(e), None)),
                        None => None,
                    };
                };
                let out = match gzip.as_mut() {
                    None => bytes,
                    Some(encoder) => {
                        if let Err(e) = encoder.write_all(&bytes) {
                            return Some((Err(e), None));
                        }
                        std::mem::take(encoder.get_mut())
                    }
                };
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), Some((download, gzip))));
                }
            }
        },
    );
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().expect("static"),
    );
    if accepts_gzip(&headers) {
        h.insert(header::CONTENT_ENCODING, "gzip".parse().expect("static"));
    }
    response
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

/// Feeds a body to the current file of an upload, inflating it on the way when it is
/// gzipped, a bounded step at a time.
struct Sink {
    inflate: Option<flate2::write::GzDecoder<Vec<u8>>>,
}

impl Sink {
    async fn write(&mut self, upload: &mut Upload, bytes: &[u8]) -> Result<(), RpcError> {
        let Some(decoder) = self.inflate.as_mut() else {
            return Ok(upload.write(bytes).await?);
        };
        for step in bytes.chunks(INFLATE_STEP) {
            decoder
                .write_all(step)
                .map_err(|e| RpcError::invalid(format!("body: not valid gzip: {e}")))?;
            let out = std::mem::take(decoder.get_mut());
            if !out.is_empty() {
                upload.write(&out).await?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self, upload: &mut Upload) -> Result<(), RpcError> {
        if let Some(decoder) = self.inflate.take() {
            let out = decoder
                .finish()
                .map_err(|e| RpcError::invalid(format!("body: not valid gzip: {e}")))?;
            upload.write(&out).await?;
        }
        Ok(())
    }
}

/// The `X-Metadata-<key>` headers, keys lowercased (as envd).
fn metadata_of(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix("x-metadata-")?;
            (!key.is_empty()).then(|| {
                (
                    key.to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
        })
        .collect()
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
        let user = auth::files_account(query.username.as_deref())?;
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
        let metadata = metadata_of(&headers);
        let mut upload = state.sandboxes.write_stream(&sandbox, user).await?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.starts_with("multipart/form-data") {
            if gzip {
                return Err(RpcError::new(
                    Code::Unimplemented,
                    "a gzip multipart body is not supported: send application/octet-stream",
                ));
            }
            write_parts(
                &state,
                request,
                &mut upload,
                query.path.as_deref(),
                user,
                &metadata,
            )
            .await?;
        } else {
            let path = query
                .path
                .as_deref()
                .ok_or_else(|| RpcError::invalid("path is required"))?;
            upload
                .start_file(&resolve_path(path, user)?, metadata)
                .await?;
            let mut sink = Sink {
                inflate: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())),
            };
            let mut body = request.into_body().into_data_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| RpcError::invalid(format!("body: {e}")))?;
                sink.write(&mut upload, &chunk).await?;
            }
            sink.finish(&mut upload).await?;
        }
        let entries = upload.commit().await?;
        Ok(entries
            .iter()
            .map(|e| {
                let mut v = json!({"name": e.name, "type": "file", "path": e.path});
                if !e.metadata.is_empty() {
                    v["metadata"] = json!(e.metadata);
                }
                v
            })
            .collect::<Vec<Value>>())
    };
    match result.await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => error(e),
    }
}

/// Streams the parts named `file` of a multipart body into the upload.
async fn write_parts(
    state: &E2bState,
    request: Request,
    upload: &mut Upload,
    path: Option<&str>,
    user: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<(), RpcError> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| RpcError::invalid(format!("body: {e}")))?;
    let mut count = 0;
    while let Some(mut field) = multipart
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
        upload
            .start_file(&resolve_path(&target, user)?, metadata.clone())
            .await?;
        count += 1;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| RpcError::invalid(format!("body: {e}")))?
        {
            upload.write(&chunk).await?;
        }
    }
    if count == 0 {
        return Err(RpcError::invalid("the body holds no part named file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated_and_metadata_headers_are_read() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, "br, gzip".parse().expect("header"));
        assert!(accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, "gzip;q=0".parse().expect("header"));
        assert!(!accepts_gzip(&headers));
        headers.insert("X-Metadata-Owner-Team", "infra".parse().expect("header"));
        assert_eq!(
            metadata_of(&headers),
            BTreeMap::from([("owner-team".to_owned(), "infra".to_owned())])
        );
    }
}

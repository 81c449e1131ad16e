//! `/v1/sandboxes/:id/files…`: every verb of the `@21st-sdk/node` files client.
//!
//! Content is text in JSON. `encoding: "base64"` (on a write, per file or for the whole
//! call; on a read, as a query parameter) carries binary files byte for byte. A text read
//! of a file that is not UTF-8 is refused rather than mangled.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use sandbox_init::protocol::{EntryKind, FileEntry};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, ApiQuery, AppState};
use crate::names::USER;
use crate::rfc3339;

/// How content is carried in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text (the default).
    #[default]
    Utf8,
    /// Base64 of the raw bytes.
    Base64,
}

impl Encoding {
    fn decode(self, path: &str, content: String) -> Result<Vec<u8>, ApiError> {
        match self {
            Encoding::Utf8 => Ok(content.into_bytes()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(content.as_bytes())
                .map_err(|e| {
                    ApiError::bad_request(format!("{path}: content is not valid base64: {e}"))
                }),
        }
    }
}

/// `POST …/files` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBody {
    files: WriteFiles,
    #[serde(default)]
    encoding: Encoding,
}

/// `{path: content}` (SDK) or `[{path, content, encoding?}]` (API reference).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "files as {\"path\": \"content\"} or [{\"path\", \"content\", \"encoding\"?}]"
)]
pub enum WriteFiles {
    /// `{path: content}`
    Map(BTreeMap<String, String>),
    /// `[{path, content, encoding?}]`
    List(Vec<WriteFile>),
}

/// One file of the list shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    path: String,
    content: String,
    #[serde(default)]
    encoding: Option<Encoding>,
}

/// `FileEntryInfo` of the SDK.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryInfo {
    name: String,
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    mode: u32,
    permissions: String,
    owner: String,
    group: String,
    modified_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    symlink_target: Option<String>,
}

impl From<FileEntry> for EntryInfo {
    fn from(e: FileEntry) -> Self {
        Self {
            permissions: permissions(e.kind, e.mode),
            kind: if e.kind == EntryKind::Dir {
                "dir"
            } else {
                "file"
            },
            name: e.name,
            path: e.path,
            size: e.size,
            mode: e.mode,
            owner: e.owner,
            group: e.group,
            modified_time: rfc3339::format_ms(e.modified_ms),
            symlink_target: e.symlink_target,
        }
    }
}

/// `ls -l` style permissions: `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`.
fn permissions(kind: EntryKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
        EntryKind::Other => '?',
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// `POST …/files` response.
#[derive(Debug, Serialize)]
pub struct Written {
    files: Vec<EntryInfo>,
}

/// `POST /v1/sandboxes/:id/files`: writes one or more files, all or nothing.
pub async fn write(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WriteBody>,
) -> Result<Json<Written>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let files = match body.files {
        WriteFiles::Map(map) => map
            .into_iter()
            .map(|(path, content)| {
                let bytes = body.encoding.decode(&path, content)?;
                Ok((path, bytes))
            })
            .collect::<Result<Vec<_>, ApiError>>()?,
        WriteFiles::List(list) => list
            .into_iter()
            .map(|f| {
                let bytes = f
                    .encoding
                    .unwrap_or(body.encoding)
                    .decode(&f.path, f.content)?;
                Ok((f.path, bytes))
            })
            .collect::<Result<Vec<_>, ApiError>>()?,
    };
    let entries = state.sandboxes.write_files(&sandbox, USER, files).await?;
    Ok(Json(Written {
        files: entries.into_iter().map(EntryInfo::from).collect(),
    }))
}

/// `?path=` (and for reads `&encoding=`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    path: String,
    #[serde(default)]
    encoding: Encoding,
}

/// `GET …/files` response.
#[derive(Debug, Serialize)]
pub struct FileContent {
    path: String,
    content: String,
    encoding: Encoding,
}

/// `GET /v1/sandboxes/:id/files?path=`: one file's content.
pub async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<FileContent>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let limit = state.max_body_bytes as u64;
    let (path, bytes) = state
        .sandboxes
        .read_file(&sandbox, USER, &query.path, limit)
        .await?;
    let content = match query.encoding {
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(&bytes),
        Encoding::Utf8 => String::from_utf8(bytes).map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_text",
                format!("{path} is not UTF-8 text; read it with encoding=base64"),
            )
        })?,
    };
    Ok(Json(FileContent {
        path,
        content,
        encoding: query.encoding,
    }))
}

/// `DELETE /v1/sandboxes/:id/files?path=`: a file or a directory tree.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<StatusCode, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    state
        .sandboxes
        .remove_file(&sandbox, USER, &query.path)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?path=&depth=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    path: String,
    #[serde(default)]
    depth: Option<u32>,
}

/// `GET /v1/sandboxes/:id/files/list?path=&depth=`.
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<EntryInfo>>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let entries = state
        .sandboxes
        .list_files(&sandbox, USER, &query.path, query.depth.unwrap_or(1))
        .await?;
    Ok(Json(entries.into_iter().map(EntryInfo::from).collect()))
}

/// `GET /v1/sandboxes/:id/files/info?path=`.
pub async fn info(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<EntryInfo>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let entry = state
        .sandboxes
        .file_info(&sandbox, USER, &query.path)
        .await?;
    Ok(Json(entry.into()))
}

/// `GET /v1/sandboxes/:id/files/exists?path=`: `true` or `false`.
pub async fn exists(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<bool>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    Ok(Json(
        state
            .sandboxes
            .file_exists(&sandbox, USER, &query.path)
            .await?,
    ))
}

/// `POST …/files/mkdir` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkdirBody {
    path: String,
}

/// `POST /v1/sandboxes/:id/files/mkdir`: `true` if created, `false` if it existed.
pub async fn mkdir(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MkdirBody>,
) -> Result<Json<bool>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    Ok(Json(
        state.sandboxes.make_dir(&sandbox, USER, &body.path).await?,
    ))
}

/// `POST …/files/rename` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenameBody {
    old_path: String,
    new_path: String,
}

/// `POST /v1/sandboxes/:id/files/rename`: the entry at its new path.
pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenameBody>,
) -> Result<Json<EntryInfo>, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let entry = state
        .sandboxes
        .rename_file(&sandbox, USER, &body.old_path, &body.new_path)
        .await?;
    Ok(Json(entry.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_look_like_ls() {
        assert_eq!(permissions(EntryKind::File, 0o644), "-rw-r--r--");
        assert_eq!(permissions(EntryKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(permissions(EntryKind::Symlink, 0o777), "lrwxrwxrwx");
    }

    #[test]
    fn both_body_shapes_parse() {
        let map: WriteBody =
            serde_json::from_str(r#"{"files": {"a": "x"}, "encoding": "base64"}"#).expect("map");
        assert!(matches!(map.files, WriteFiles::Map(_)));
        assert_eq!(map.encoding, Encoding::Base64);
        let list: WriteBody = serde_json::from_str(
            r#"{"files": [{"path": "a", "content": "x", "encoding": "utf8"}]}"#,
        )
        .expect("list");
        assert!(matches!(list.files, WriteFiles::List(_)));
    }
}

//! `filesystem.Filesystem`: stat, list, mkdir, move and remove through the domain's
//! files layer (sandbox-init), as the calling account; the watches are in `watch.rs`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};

use super::connect::{self, Code, RpcError};
use super::entry::entry_info;
use super::{resolve_path, watch, Target};
use crate::e2b::{auth, E2bState};
use crate::sandbox::{files::MAX_LIST_DEPTH, Sandbox};

#[derive(Debug, Deserialize)]
struct PathRequest {
    #[serde(default)]
    path: String,
    #[serde(default)]
    depth: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct MoveRequest {
    source: String,
    destination: String,
}

/// `POST /filesystem.Filesystem/{method}`.
pub async fn call(
    State(state): State<E2bState>,
    Extension(Target(sandbox)): Extension<Target>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match auth::rpc_account(&headers) {
        Ok(user) => user,
        Err(e) if method == "WatchDir" => return connect::stream_error(e),
        Err(e) => return connect::unary_response::<Value>(Err(e)),
    };
    if method == "WatchDir" {
        return watch::watch_dir(&state, sandbox, user, &headers, &body).await;
    }
    let result = async {
        match method.as_str() {
            "Stat" => {
                let req: PathRequest = connect::unary_request(&headers, &body)?;
                let path = resolve_path(&req.path, user)?;
                let entry = state.sandboxes.file_info(&sandbox, user, &path).await?;
                Ok(json!({ "entry": entry_info(&entry) }))
            }
            "ListDir" => {
                let req: PathRequest = connect::unary_request(&headers, &body)?;
                list(&state, &sandbox, user, &req).await
            }
            "MakeDir" => {
                let req: PathRequest = connect::unary_request(&headers, &body)?;
                let path = resolve_path(&req.path, user)?;
                if !state.sandboxes.make_dir(&sandbox, user, &path).await? {
                    return Err(RpcError::new(
                        Code::AlreadyExists,
                        format!("{path} exists already"),
                    ));
                }
                let entry = state.sandboxes.file_info(&sandbox, user, &path).await?;
                Ok(json!({ "entry": entry_info(&entry) }))
            }
            "Move" => {
                let req: MoveRequest = connect::unary_request(&headers, &body)?;
                let from = resolve_path(&req.source, user)?;
                let to = resolve_path(&req.destination, user)?;
                let entry = state
                    .sandboxes
                    .rename_file(&sandbox, user, &from, &to)
                    .await?;
                Ok(json!({ "entry": entry_info(&entry) }))
            }
            "Remove" => {
                let req: PathRequest = connect::unary_request(&headers, &body)?;
                let path = resolve_path(&req.path, user)?;
                // envd removes as `rm -rf` does: a path that is not there is no error.
                match state.sandboxes.remove_file(&sandbox, user, &path).await {
                    Ok(()) => Ok(json!({})),
                    Err(e) => match RpcError::from(e) {
                        gone if gone.code == Code::NotFound => Ok(json!({})),
                        other => Err(other),
                    },
                }
            }
            "CreateWatcher" => watch::create(&state, sandbox.clone(), user, &headers, &body).await,
            "GetWatcherEvents" => watch::events(&state, &sandbox, &headers, &body),
            "RemoveWatcher" => watch::remove(&state, &sandbox, &headers, &body),
            _ => Err(RpcError::new(
                Code::Unimplemented,
                "no such method of filesystem.Filesystem",
            )),
        }
    };
    connect::unary_response(result.await)
}

async fn list(
    state: &E2bState,
    sandbox: &Sandbox,
    user: &str,
    req: &PathRequest,
) -> Result<Value, RpcError> {
    // envd treats depth 0 as 1.
    let depth = req.depth.unwrap_or(1).max(1);
    if depth > MAX_LIST_DEPTH {
        return Err(RpcError::invalid(format!(
            "depth must be at most {MAX_LIST_DEPTH}"
        )));
    }
    let path = resolve_path(&req.path, user)?;
    let entries = state
        .sandboxes
        .list_files(sandbox, user, &path, depth)
        .await?;
    let entries: Vec<Value> = entries.iter().map(entry_info).collect();
    Ok(json!({ "entries": entries }))
}

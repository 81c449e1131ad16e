//! `filesystem.Filesystem`: stat, list, mkdir, move and remove through the domain's
//! files layer (sandbox-init), as the calling account; the watches are in `watch.rs`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use sandbox_init::protocol::{EntryKind, FileEntry};
use serde::Deserialize;
use serde_json::{json, Value};

use super::connect::{self, Code, RpcError};
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

/// envd's `EntryInfo` in protojson.
pub fn entry_info(entry: &FileEntry) -> Value {
    let kind = match entry.kind {
        EntryKind::File => "FILE_TYPE_FILE",
        EntryKind::Dir => "FILE_TYPE_DIRECTORY",
        EntryKind::Symlink => "FILE_TYPE_SYMLINK",
        EntryKind::Other => "FILE_TYPE_UNSPECIFIED",
    };
    let modified =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(entry.modified_ms.max(0) as u64);
    let mut info = json!({
        "name": entry.name,
        "type": kind,
        "path": entry.path,
        "size": entry.size.to_string(),
        "mode": entry.mode & 0o777,
        "permissions": permissions(entry),
        "owner": entry.owner,
        "group": entry.group,
        "modifiedTime": humantime::format_rfc3339_millis(modified).to_string(),
    });
    if let Some(target) = &entry.symlink_target {
        info["symlinkTarget"] = json!(absolute_target(&entry.path, target));
    }
    if !entry.metadata.is_empty() {
        info["metadata"] = json!(entry.metadata);
    }
    info
}

/// A symlink's target as envd reports it: absolute, a relative target taken from the
/// link's directory, `.` and `..` folded lexically (the target need not exist).
fn absolute_target(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let base = if target.starts_with('/') {
        ""
    } else {
        link.rsplit_once('/').map_or("", |(dir, _)| dir)
    };
    for part in base.split('/').chain(target.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The `ls -l` form of an entry's type and permission bits, as Go prints a file mode.
fn permissions(entry: &FileEntry) -> String {
    let kind = match entry.kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'L',
        EntryKind::File => '-',
        EntryKind::Other => '?',
    };
    let bits = "rwxrwxrwx";
    let mut out = String::from(kind);
    for (i, c) in bits.chars().enumerate() {
        out.push(if entry.mode & (1 << (8 - i)) != 0 {
            c
        } else {
            '-'
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_are_reported_absolute() {
        let t = |link, target| absolute_target(link, target);
        assert_eq!(t("/home/user/link", "one.txt"), "/home/user/one.txt");
        assert_eq!(
            t("/home/user/link", "tree/one.txt"),
            "/home/user/tree/one.txt"
        );
        assert_eq!(t("/home/user/a/link", "../b/./c"), "/home/user/b/c");
        assert_eq!(t("/home/user/link", "/etc/hosts"), "/etc/hosts");
        assert_eq!(t("/link", "../../x"), "/x");
    }

    #[test]
    fn entries_map_to_envd_entry_info() {
        let entry = FileEntry {
            name: "a.txt".into(),
            path: "/home/user/a.txt".into(),
            kind: EntryKind::File,
            size: 12,
            mode: 0o644,
            owner: "user".into(),
            group: "user".into(),
            modified_ms: 1_000,
            symlink_target: None,
            metadata: [("k".to_owned(), "v".to_owned())].into(),
        };
        let info = entry_info(&entry);
        assert_eq!(info["type"], "FILE_TYPE_FILE");
        assert_eq!(info["size"], "12");
        assert_eq!(info["permissions"], "-rw-r--r--");
        assert_eq!(info["modifiedTime"], "1970-01-01T00:00:01.000Z");
        assert_eq!(info["metadata"], json!({"k": "v"}));
        let dir = FileEntry {
            kind: EntryKind::Dir,
            mode: 0o755,
            ..entry
        };
        assert_eq!(permissions(&dir), "drwxr-xr-x");
    }
}

//! Directory watches of `filesystem.Filesystem`: the `WatchDir` server stream (JS and
//! async Python SDKs) and the polling watchers of the sync Python SDK
//! (`CreateWatcher`, `GetWatcherEvents`, `RemoveWatcher`), both over sandbox-init's
//! inotify watches.
//!
//! A stream's watch ends when its client goes away, at its `Connect-Timeout-Ms`
//! deadline, or with its sandbox. A polling watcher keeps at most [`MAX_PENDING`]
//! events between two polls: past that, events were lost, and the watcher answers
//! every later poll with that error (as envd does once its watcher failed) until it is
//! removed. Polling watchers end with their sandbox and are forgotten then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::Response;
use sandbox_init::protocol::{WatchEvent, WatchOp, WatchRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::connect::{self, Code, RpcError};
use super::entry::entry_info;
use super::resolve_path;
use crate::e2b::E2bState;
use crate::sandbox::Sandbox;

/// The most events a polling watcher keeps between two polls.
pub const MAX_PENDING: usize = 10_000;
/// The most polling watchers a sandbox may have.
pub const MAX_POLLERS: usize = 8;
/// How often a silent stream sends a keepalive (HTTP/1.1 notices a client that left
/// only when it writes).
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// `WatchDirRequest` and `CreateWatcherRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchParams {
    #[serde(default)]
    path: String,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    include_entry: bool,
    #[serde(default)]
    allow_network_mounts: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatcherId {
    #[serde(default)]
    watcher_id: String,
}

/// One event in protojson (`FilesystemEvent`).
fn event_json(event: &WatchEvent) -> Value {
    let kind = match event.op {
        WatchOp::Create => "EVENT_TYPE_CREATE",
        WatchOp::Write => "EVENT_TYPE_WRITE",
        WatchOp::Remove => "EVENT_TYPE_REMOVE",
        WatchOp::Rename => "EVENT_TYPE_RENAME",
        WatchOp::Chmod => "EVENT_TYPE_CHMOD",
    };
    let mut out = json!({"name": event.name, "type": kind});
    if let Some(entry) = &event.entry {
        out["entry"] = entry_info(entry);
    }
    out
}

fn watch_request(params: &WatchParams, user: &str) -> Result<WatchRequest, RpcError> {
    Ok(WatchRequest {
        path: resolve_path(&params.path, user)?,
        recursive: params.recursive,
        include_entry: params.include_entry,
        allow_network_mounts: params.allow_network_mounts,
        as_user: user.to_owned(),
    })
}

/// `WatchDir`: a server stream of `start`, then `filesystem` events and keepalives.
pub async fn watch_dir(
    state: &E2bState,
    sandbox: Arc<Sandbox>,
    user: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let started = async {
        let params: WatchParams = connect::stream_request(headers, body)?;
        let deadline = connect::timeout_ms(headers)?.map(Duration::from_millis);
        let request = watch_request(&params, user)?;
        let watch = state.sandboxes.watch_dir(&sandbox, request, true).await?;
        Ok::<_, RpcError>((watch, deadline))
    };
    let (mut watch, deadline) = match started.await {
        Ok(started) => started,
        Err(e) => return connect::stream_error(e),
    };
    let (tx, response) = connect::stream_response();
    tokio::spawn(async move {
        if !tx.send(&json!({"start": {}})).await {
            return;
        }
        let deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PROBE_EVERY, PROBE_EVERY);
        loop {
            let batch = tokio::select! {
                batch = watch.watch.next() => batch,
                _ = ping.tick() => {
                    if !tx.send(&json!({"keepalive": {}})).await {
                        return;
                    }
                    continue;
                }
                // The client went away: dropping the watch ends it in the sandbox.
                () = tx.closed() => return,
                () = sandbox.deleted.cancelled() => {
                    return tx.end(Some(RpcError::new(Code::Unavailable, "the sandbox is gone"))).await;
                }
                () = &mut deadline => {
                    return tx.end(Some(RpcError::new(Code::DeadlineExceeded, "the watch reached its deadline"))).await;
                }
            };
            match batch {
                Ok(Some(events)) => {
                    for event in &events {
                        // A client that does not read holds this send; its sandbox
                        // going away still ends the stream.
                        let message = json!({"filesystem": event_json(event)});
                        tokio::select! {
                            sent = tx.send(&message) => {
                                if !sent {
                                    return;
                                }
                            }
                            () = sandbox.deleted.cancelled() => return,
                        }
                    }
                }
                Ok(None) => return tx.end(None).await,
                Err(e) => return tx.end(Some(e.into())).await,
            }
        }
    });
    response
}

/// The polling watchers of every sandbox, by id.
#[derive(Debug, Default)]
pub struct Watchers {
    by_id: Mutex<HashMap<String, Arc<Poller>>>,
}

#[derive(Debug)]
struct Poller {
    sandbox: Arc<Sandbox>,
    pending: Mutex<Result<Vec<Value>, RpcError>>,
    stop: CancellationToken,
}

impl Watchers {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Poller>>> {
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| !p.sandbox.deleted.is_cancelled());
        map
    }

    fn find(
        &self,
        sandbox: &Sandbox,
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<(String, Arc<Poller>), RpcError> {
        let req: WatcherId = connect::unary_request(headers, body)?;
        self.map()
            .get(&req.watcher_id)
            .filter(|p| p.sandbox.id == sandbox.id)
            .cloned()
            .map(|p| (req.watcher_id.clone(), p))
            .ok_or_else(|| {
                RpcError::new(
                    Code::NotFound,
                    format!(
                        "watcher with id {} not found",
                        req.watcher_id.chars().take(64).collect::<String>()
                    ),
                )
            })
    }
}

/// `CreateWatcher`: starts a polling watcher; `{watcherId}`.
pub async fn create(
    state: &E2bState,
    sandbox: Arc<Sandbox>,
    user: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, RpcError> {
    let params: WatchParams = connect::unary_request(headers, body)?;
    let request = watch_request(&params, user)?;
    let count = state
        .watchers
        .map()
        .values()
        .filter(|p| p.sandbox.id == sandbox.id)
        .count();
    if count >= MAX_POLLERS {
        return Err(RpcError::new(
            Code::ResourceExhausted,
            format!("at most {MAX_POLLERS} watchers per sandbox: remove one first"),
        ));
    }
    let mut watch = state.sandboxes.watch_dir(&sandbox, request, false).await?;
    let id = format!("w{:016x}", rand::random::<u64>());
    let poller = Arc::new(Poller {
        sandbox: sandbox.clone(),
        pending: Mutex::new(Ok(Vec::new())),
        stop: CancellationToken::new(),
    });
    state.watchers.map().insert(id.clone(), poller.clone());
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                batch = watch.watch.next() => batch,
                () = poller.stop.cancelled() => return,
                () = poller.sandbox.deleted.cancelled() => return,
            };
            let mut pending = poller.pending.lock().unwrap_or_else(|p| p.into_inner());
            let failure = match batch {
                Ok(Some(events)) => match pending.as_mut() {
                    Ok(list) if list.len() + events.len() <= MAX_PENDING => {
                        list.extend(events.iter().map(event_json));
                        continue;
                    }
                    Ok(_) => RpcError::new(
                        Code::ResourceExhausted,
                        format!(
                            "more than {MAX_PENDING} events between two polls: events were lost"
                        ),
                    ),
                    Err(_) => return,
                },
                Ok(None) => RpcError::new(Code::NotFound, "the watched directory went away"),
                Err(e) => e.into(),
            };
            *pending = Err(failure);
            return;
        }
    });
    Ok(json!({ "watcherId": id }))
}

/// `GetWatcherEvents`: the events since the last poll, `{events}`.
pub fn events(
    state: &E2bState,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, RpcError> {
    let (_, poller) = state.watchers.find(sandbox, body, headers)?;
    let mut pending = poller.pending.lock().unwrap_or_else(|p| p.into_inner());
    match pending.as_mut() {
        Ok(list) => Ok(json!({ "events": std::mem::take(list) })),
        Err(e) => Err(e.clone()),
    }
}

/// `RemoveWatcher`: stops a polling watcher.
pub fn remove(
    state: &E2bState,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, RpcError> {
    let (id, poller) = state.watchers.find(sandbox, body, headers)?;
    poller.stop.cancel();
    state.watchers.map().remove(&id);
    Ok(json!({}))
}

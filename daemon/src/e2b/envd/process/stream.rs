//! The stream side of a process: what one `Start` or `Connect` call receives
//! (`start`, output, keepalives, then the end), fed from the process's owner task.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use serde_json::json;
use tokio::sync::mpsc;

use super::super::connect::{self, Code, RpcError, StreamSender};
use super::table::{Event, Proc};
use super::{KEEPALIVE_SECS, PROBE_EVERY};

/// Streams a process's events: `start`, output, then its end. With `rx` the stream
/// is already attached (a `Start`); otherwise it attaches now (a `Connect`).
pub(super) fn attach(
    proc: Arc<Proc>,
    rx: Option<mpsc::Receiver<Event>>,
    headers: &HeaderMap,
) -> Response {
    let keepalive = headers
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.clamp(KEEPALIVE_SECS.0, KEEPALIVE_SECS.1)));
    let (tx, response) = connect::stream_response();
    let attached = match rx {
        Some(rx) => Ok(rx),
        None => proc.subscribe(),
    };
    tokio::spawn(async move {
        let pid = proc.pid;
        if !tx.send(&json!({"event": {"start": {"pid": pid}}})).await {
            return;
        }
        match attached {
            Err(outcome) => deliver_last(tx, outcome).await,
            Ok(rx) => forward(tx, rx, keepalive).await,
        }
    });
    response
}

async fn forward(tx: StreamSender, mut rx: mpsc::Receiver<Event>, keepalive: Option<Duration>) {
    let period = keepalive.unwrap_or(PROBE_EVERY).min(PROBE_EVERY);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            _ = ping.tick() => {
                if !tx.send(&json!({"event": {"keepalive": {}}})).await {
                    return;
                }
                continue;
            }
            // The client went away: dropping `rx` detaches this stream.
            () = tx.closed() => return,
        };
        let Some(event) = event else {
            return tx
                .end(Some(RpcError::new(
                    Code::Unavailable,
                    "the process stream ended",
                )))
                .await;
        };
        let data = |key: &str, bytes: &[u8]| json!({"event": {"data": {key: base64::engine::general_purpose::STANDARD.encode(bytes)}}});
        let sent = match &event {
            Event::Stdout(b) => tx.send(&data("stdout", b)).await,
            Event::Stderr(b) => tx.send(&data("stderr", b)).await,
            Event::Pty(b) => tx.send(&data("pty", b)).await,
            Event::End(_) | Event::Failed(_) => return deliver_last(tx, event).await,
        };
        if !sent {
            return;
        }
    }
}

async fn deliver_last(tx: StreamSender, event: Event) {
    match event {
        Event::End(end) => {
            if tx.send(&json!({"event": {"end": end}})).await {
                tx.end(None).await;
            }
        }
        Event::Failed(e) => tx.end(Some(e)).await,
        Event::Stdout(_) | Event::Stderr(_) | Event::Pty(_) => tx.end(None).await,
    }
}

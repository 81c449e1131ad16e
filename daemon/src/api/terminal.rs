//! Live processes over the relay API, for `sandboxd shell` and `sandboxd exec`:
//! - `GET /v1/sandboxes/:id/terminal?cols=&rows=&cwd=&command=` upgrades to a
//!   WebSocket carrying an interactive terminal (`bash -il`, or `bash -lc <command>`):
//!   binary messages both ways are the terminal's bytes; the client may send the text
//!   messages `{"resize":{"cols":C,"rows":R}}` and `{"signal":N}`; the server ends with
//!   the text message `{"exit":{"code":C,"signal":S,"exitCode":E}}` and closes.
//! - `POST /v1/sandboxes/:id/exec/stream` (the body of `/exec`) answers NDJSON as the
//!   command writes: `{"stdout":"<base64>"}`, `{"stderr":"<base64>"}`, then
//!   `{"exit":{…}}` (or `{"error":{"message":…}}`).
//!
//! Either way the process lives as long as its client: a closed socket or dropped
//! response kills everything it started. Output is never queued beyond a few frames:
//! a slow client slows the process down.

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use sandbox_init::protocol::{ExecRequest, ExitInfo, Frame, PtySize, Reply, Request};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::sandboxes::ExecBody;
use super::{ApiError, ApiJson, ApiQuery, AppState};
use crate::init_client::{Conn, FrameWriter, InitError};
use crate::names::USER;
use crate::sandbox::{paths, Sandbox, SandboxError};

/// The exit code of a command its timeout killed (as `timeout(1)` and `/exec` report).
const TIMEOUT_EXIT_CODE: i32 = 124;
/// The longest timeout a streamed exec may ask for (a day, as `/exec`).
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// `GET /v1/sandboxes/:id/terminal` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalQuery {
    #[serde(default)]
    cols: Option<u16>,
    #[serde(default)]
    rows: Option<u16>,
    #[serde(default)]
    cwd: Option<String>,
    /// A command for `bash -lc` instead of an interactive shell.
    #[serde(default)]
    command: Option<String>,
}

/// The client's text messages on a terminal socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    #[serde(default)]
    resize: Option<PtySize>,
    #[serde(default)]
    signal: Option<i32>,
}

/// `GET /v1/sandboxes/:id/terminal` (see the module).
pub async fn terminal(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<TerminalQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let awake = state.sandboxes.awake(&sandbox).await?;
    let argv = match query.command {
        Some(command) => vec!["bash".into(), "-lc".into(), command],
        None => vec!["bash".into(), "-il".into()],
    };
    let request = ExecRequest {
        argv,
        env: vec![
            ("TERM".into(), "xterm-256color".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
        ],
        cwd: Some(cwd(&sandbox, query.cwd.as_deref())?),
        user: USER.into(),
        timeout_ms: None,
        stdin: false,
        output_limit: None,
    };
    let size = PtySize {
        cols: query.cols.unwrap_or(80).clamp(1, 10_000),
        rows: query.rows.unwrap_or(24).clamp(1, 10_000),
    };
    let (conn, _pid) = sandbox.init.spawn_pty(request, size).await?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _awake = awake;
        let _busy = sandbox.busy();
        session(socket, conn, &sandbox).await;
    }))
}

fn cwd(sandbox: &Sandbox, cwd: Option<&str>) -> Result<String, ApiError> {
    Ok(match cwd {
        Some(cwd) => paths::resolve(cwd).map_err(SandboxError::from)?,
        None => sandbox.cwd.clone(),
    })
}

/// The frames a connection's reader task passes on.
type FrameInbox = mpsc::Receiver<Result<Option<Frame<Reply>>, InitError>>;

/// Reads a connection's frames on a task of its own (reading a frame is not
/// cancel-safe), a few at a time.
fn frames(conn: Conn) -> (FrameInbox, FrameWriter, tokio::task::JoinHandle<()>) {
    let (mut reader, writer) = conn.split();
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        loop {
            let frame = reader.recv().await;
            let last = !matches!(frame, Ok(Some(Frame::Stdout(_) | Frame::Stderr(_))));
            if tx.send(frame).await.is_err() || last {
                return;
            }
        }
    });
    (rx, writer, task)
}

async fn session(socket: WebSocket, conn: Conn, sandbox: &Sandbox) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut frames, mut writer, reader) = frames(conn);
    let exit = loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(Some(Frame::Stdout(b) | Frame::Stderr(b)))) => {
                    if ws_tx.send(Message::Binary(b.into())).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(Some(Frame::Message(Reply::Exited(exit))))) => break Some(exit),
                _ => break None,
            },
            message = ws_rx.next() => {
                let frame = match message {
                    Some(Ok(Message::Binary(b))) => Frame::Stdin(b.to_vec()),
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ClientMessage>(&t) {
                        Ok(ClientMessage { resize: Some(size), .. }) => Frame::Message(Request::Resize { size }),
                        Ok(ClientMessage { signal: Some(signal), .. }) => Frame::Message(Request::Signal { signal }),
                        _ => continue,
                    },
                    Some(Ok(_)) => continue,
                    // The client left: dropping the connection kills the session.
                    Some(Err(_)) | None => break None,
                };
                if writer.send(&frame).await.is_err() {
                    break None;
                }
            }
            () = sandbox.deleted.cancelled() => break None,
        }
    };
    reader.abort();
    drop(writer);
    if let Some(exit) = exit {
        let _ = ws_tx
            .send(Message::Text(exit_json(&exit).to_string().into()))
            .await;
    }
    let _ = ws_tx.send(Message::Close(None)).await;
}

/// `{"exit":{code, signal, exitCode}}`; `exitCode` is what a shell would report.
fn exit_json(exit: &ExitInfo) -> serde_json::Value {
    let exit_code = match (exit.code, exit.signal) {
        _ if exit.timed_out => TIMEOUT_EXIT_CODE,
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    };
    json!({"exit": {"code": exit.code, "signal": exit.signal, "timedOut": exit.timed_out, "exitCode": exit_code}})
}

/// `POST /v1/sandboxes/:id/exec/stream` (see the module).
pub async fn exec_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExecBody>,
) -> Result<Response, ApiError> {
    let sandbox = state.sandboxes.get(&id)?;
    let awake = state.sandboxes.awake(&sandbox).await?;
    let timeout_ms = body
        .timeout_ms
        .unwrap_or(state.sandboxes.settings().exec_timeout_ms);
    let request = ExecRequest {
        argv: vec!["bash".into(), "-lc".into(), body.command],
        env: body.envs.unwrap_or_default().into_iter().collect(),
        cwd: Some(cwd(&sandbox, body.cwd.as_deref())?),
        user: USER.into(),
        timeout_ms: Some(timeout_ms.clamp(1, MAX_TIMEOUT_MS)),
        stdin: false,
        output_limit: None,
    };
    let (conn, _pid) = sandbox.init.spawn(request).await?;
    let (lines_tx, lines_rx) = mpsc::channel::<String>(4);
    tokio::spawn(async move {
        let _awake = awake;
        let _busy = sandbox.busy();
        let (mut frames, writer, reader) = frames(conn);
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        loop {
            let line = tokio::select! {
                frame = frames.recv() => match frame {
                    Some(Ok(Some(Frame::Stdout(b)))) => json!({"stdout": b64(&b)}),
                    Some(Ok(Some(Frame::Stderr(b)))) => json!({"stderr": b64(&b)}),
                    Some(Ok(Some(Frame::Message(Reply::Exited(exit))))) => exit_json(&exit),
                    Some(Err(e)) => json!({"error": {"message": e.to_string()}}),
                    _ => json!({"error": {"message": "the sandbox stopped"}}),
                },
                () = sandbox.deleted.cancelled() => json!({"error": {"message": "the sandbox was deleted"}}),
                // The client went away: dropping the connection kills the command.
                () = lines_tx.closed() => break,
            };
            let last = line.get("stdout").is_none() && line.get("stderr").is_none();
            if lines_tx.send(format!("{line}\n")).await.is_err() || last {
                break;
            }
        }
        reader.abort();
        drop(writer);
    });
    let stream = futures_util::stream::unfold(lines_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_carry_a_shell_exit_code() {
        let code = |exit: ExitInfo| exit_json(&exit)["exit"]["exitCode"].clone();
        let exited = ExitInfo {
            code: Some(3),
            ..ExitInfo::default()
        };
        assert_eq!(code(exited), json!(3));
        let killed = ExitInfo {
            signal: Some(9),
            ..ExitInfo::default()
        };
        assert_eq!(code(killed), json!(137));
        let timed_out = ExitInfo {
            signal: Some(9),
            timed_out: true,
            ..ExitInfo::default()
        };
        assert_eq!(code(timed_out), json!(TIMEOUT_EXIT_CODE));
        let resize: ClientMessage =
            serde_json::from_str(r#"{"resize":{"cols":100,"rows":30}}"#).expect("json");
        assert_eq!(
            resize.resize,
            Some(PtySize {
                cols: 100,
                rows: 30
            })
        );
    }
}

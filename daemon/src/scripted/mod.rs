//! `sandboxd scripted-model`: an Anthropic-compatible Messages API and an
//! OpenAI-compatible Responses API ([`openai`]) that play a script of replies, for
//! hermetic agent runs. Point the daemon's `--model-upstream` (Claude Code) or
//! `--openai-upstream` (Codex) at it and the real CLI runs its real loop against
//! replies you wrote.
//!
//! A script is a JSON array of replies (or `{"replies": [...]}`); each request to
//! `POST /v1/messages` or `POST /v1/responses` takes the next one (a `toolUse` is a
//! `function_call` on the Responses API: `{"name": "exec_command", "input": {"cmd":
//! "ls"}}` is Codex's shell):
//!
//! ```json
//! [
//!   {"text": "Let me look.", "toolUse": {"name": "Bash", "input": {"command": "ls"}}},
//!   {"thinking": "The listing shows…", "text": "There are two files."},
//!   {"text": "slow reply", "chunkDelayMs": 200},
//!   {"error": {"status": 529, "type": "overloaded_error", "message": "try later"}}
//! ]
//! ```
//!
//! The script is played per conversation (see [`conversation`]): every conversation
//! starts at the first reply, so parallel and repeated chats get the same replies, and a
//! retried request gets the same reply as the first time. When a conversation runs
//! past the script, it gets the text `[scripted-model: script exhausted]`. A tool call
//! may name a custom tool by its short name. Streaming and non-streaming requests are both
//! served; `--log FILE` appends every request body as one JSON line.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;

mod openai;
use serde_json::{json, Value};

mod conversation;

/// One scripted reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reply {
    /// Extended thinking shown before the rest.
    #[serde(default)]
    pub thinking: Option<String>,
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
    /// A tool call after the text (the turn then waits for its result).
    #[serde(default)]
    pub tool_use: Option<ToolUse>,
    /// An API error instead of a message.
    #[serde(default)]
    pub error: Option<ApiError>,
    /// Pause between streamed chunks, in milliseconds.
    #[serde(default)]
    pub chunk_delay_ms: Option<u64>,
    /// Play this reply only in conversations whose first user message contains this
    /// text (see [`conversation`]).
    #[serde(default)]
    pub prompt: Option<String>,
}

/// A scripted tool call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolUse {
    /// Tool name (`Bash`, `Write`, …).
    pub name: String,
    /// Its input.
    pub input: Value,
    /// Its id (generated when absent).
    #[serde(default)]
    pub id: Option<String>,
}

/// A scripted API error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Anthropic error type (`overloaded_error`, `invalid_request_error`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Message.
    pub message: String,
}

/// Parses a script file's text.
pub fn parse_script(text: &str) -> Result<Vec<Reply>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Script {
        List(Vec<Reply>),
        Object { replies: Vec<Reply> },
    }
    match serde_json::from_str::<Script>(text) {
        Ok(Script::List(r) | Script::Object { replies: r }) => Ok(r),
        Err(_) => {
            // Parse again as a list to give the precise error.
            serde_json::from_str::<Vec<Reply>>(text).map_err(|e| e.to_string())
        }
    }
}

#[derive(Debug)]
struct Player {
    replies: Vec<Reply>,
    /// The Responses API's cursor: the next reply, and which reply each
    /// conversation seen so far got.
    next: Mutex<(usize, std::collections::HashMap<String, usize>)>,
    log: Option<Mutex<std::fs::File>>,
    headers_log: Option<Mutex<std::fs::File>>,
}

/// Where the scripted model logs what it receives.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    /// Every request body, one JSON line each.
    pub bodies: Option<PathBuf>,
    /// Every request's path and credentials (`x-api-key`, `authorization`,
    /// `openai-organization`, `openai-project`), one JSON line each: what the model
    /// upstream was given.
    pub headers: Option<PathBuf>,
}

fn append(path: Option<PathBuf>) -> std::io::Result<Option<Mutex<std::fs::File>>> {
    path.map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map(Mutex::new)
    })
    .transpose()
}

/// Serves `script` on `listener` until cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    replies: Vec<Reply>,
    logs: Logs,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let player = Arc::new(Player {
        replies,
        next: Mutex::new((0, std::collections::HashMap::new())),
        log: append(logs.bodies)?,
        headers_log: append(logs.headers)?,
    });
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/responses", post(openai::responses))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"type": "error", "error": {"type": "not_found_error",
                    "message": "scripted-model serves POST /v1/messages and /v1/responses only"}})),
            )
        })
        .with_state(player);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

async fn count_tokens(Json(body): Json<Value>) -> Json<Value> {
    Json(json!({ "input_tokens": estimate_tokens(&body.to_string()) }))
}

pub(crate) fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64 / 4).max(1)
}

impl Player {
    /// Logs a request's path and credentials.
    fn log_headers(&self, path: &str, headers: &axum::http::HeaderMap) {
        let Some(log) = &self.headers_log else { return };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let line = json!({ "path": path, "x-api-key": header("x-api-key"),
                           "authorization": header("authorization"),
                           "openai-organization": header("openai-organization"),
                           "openai-project": header("openai-project") });
        use std::io::Write;
        let mut file = log.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(file, "{line}");
    }

    /// Logs a request body.
    fn log_body(&self, body: &Value) {
        if let Some(log) = &self.log {
            use std::io::Write;
            let mut file = log.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(file, "{body}");
        }
    }

    /// Logs a request body and picks its reply in script order: the next one, or the
    /// one a request with the same `conversation` got before (a retry). The Responses
    /// API plays this way; the Messages API plays per conversation.
    fn reply_for(&self, body: &Value, conversation: String) -> Reply {
        self.log_body(body);
        let mut guard = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let (next, seen) = &mut *guard;
        let index = *seen.entry(conversation).or_insert_with(|| {
            *next += 1;
            *next - 1
        });
        self.replies.get(index).cloned().unwrap_or_else(|| Reply {
            text: Some("[scripted-model: script exhausted]".into()),
            ..Reply::default()
        })
    }
}

/// Plays `events` as an SSE body, `delay` before each.
fn sse_body(events: Vec<String>, delay: Duration) -> Response {
    let stream = futures_util::stream::unfold(events.into_iter(), move |mut it| async move {
        let event = it.next()?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(event)), it))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn messages(
    State(player): State<Arc<Player>>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    player.log_headers("/v1/messages", &headers);
    player.log_body(&body);
    let mut reply = conversation::pick(&player.replies, &body)
        .cloned()
        .unwrap_or_else(|| Reply {
            text: Some("[scripted-model: script exhausted]".into()),
            ..Reply::default()
        });
    if let Some(tool) = &mut reply.tool_use {
        tool.name = conversation::tool_name(&body, &tool.name);
    }
    if let Some(e) = &reply.error {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"type": "error", "error": {"type": e.kind, "message": e.message}});
        return (status, Json(body)).into_response();
    }
    let model = body["model"]
        .as_str()
        .unwrap_or("scripted-model")
        .to_owned();
    let input_tokens = estimate_tokens(&body["messages"].to_string());
    let id = format!("msg_{}", crate::names::new_id(""));
    let blocks = content_blocks(&reply);
    let output_tokens: u64 = blocks.iter().map(|b| estimate_tokens(&b.to_string())).sum();
    let stop_reason = if reply.tool_use.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if body["stream"] != json!(true) {
        return Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
        }))
        .into_response();
    }
    let events = stream_events(
        &id,
        &model,
        &blocks,
        stop_reason,
        input_tokens,
        output_tokens,
    );
    sse_body(
        events,
        Duration::from_millis(reply.chunk_delay_ms.unwrap_or(0)),
    )
}

/// The message content of a reply.
fn content_blocks(reply: &Reply) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(thinking) = &reply.thinking {
        blocks.push(json!({"type": "thinking", "thinking": thinking, "signature": "scripted"}));
    }
    if let Some(text) = &reply.text {
        blocks.push(json!({"type": "text", "text": text}));
    }
    if let Some(tool) = &reply.tool_use {
        let id = tool
            .id
            .clone()
            .unwrap_or_else(|| format!("toolu_{}", crate::names::new_id("")));
        blocks.push(json!({"type": "tool_use", "id": id, "name": tool.name, "input": tool.input}));
    }
    blocks
}

/// The SSE events of a streamed message, text split into word-sized deltas.
fn stream_events(
    id: &str,
    model: &str,
    blocks: &[Value],
    stop_reason: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let (start, deltas): (Value, Vec<Value>) = match block["type"].as_str() {
            Some("text") => (
                json!({"type": "text", "text": ""}),
                pieces(block["text"].as_str().unwrap_or_default())
                    .into_iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            Some("thinking") => (
                json!({"type": "thinking", "thinking": ""}),
                pieces(block["thinking"].as_str().unwrap_or_default())
                    .into_iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .chain([json!({"type": "signature_delta", "signature": "scripted"})])
                    .collect(),
            ),
            _ => {
                let input = block["input"].to_string();
                (
                    json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                    pieces(&input)
                        .into_iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect(),
                )
            }
        };
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for delta in deltas {
            out.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        out.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": output_tokens}}),
    ));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

/// Splits text after each space, keeping every character.
pub(crate) fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if c == ' ' || current.len() >= 24 {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_in_both_shapes_and_typos_are_errors() {
        assert_eq!(parse_script(r#"[{"text": "hi"}]"#).expect("list").len(), 1);
        let r = parse_script(r#"{"replies": [{"toolUse": {"name": "Bash", "input": {}}}]}"#)
            .expect("object");
        assert_eq!(
            r[0].tool_use.as_ref().map(|t| t.name.as_str()),
            Some("Bash")
        );
        let e = parse_script(r#"[{"txt": "hi"}]"#).unwrap_err();
        assert!(e.contains("txt"), "{e}");
    }

    #[test]
    fn pieces_keep_every_character() {
        let text = "Hello there, a very-long-word-without-any-spaces-at-all ok";
        assert_eq!(pieces(text).concat(), text);
        assert!(pieces(text).len() > 3);
    }

    #[test]
    fn a_tool_reply_streams_its_input_as_json_deltas() {
        let reply = Reply {
            text: Some("Running.".into()),
            tool_use: Some(ToolUse {
                name: "Bash".into(),
                input: json!({"command": "ls -la"}),
                id: Some("toolu_1".into()),
            }),
            ..Reply::default()
        };
        let blocks = content_blocks(&reply);
        let events = stream_events("m", "x", &blocks, "tool_use", 5, 5).concat();
        assert!(
            events.contains(
                r#""content_block":{"id":"toolu_1","input":{},"name":"Bash","type":"tool_use"}"#
            ) || events.contains("toolu_1")
        );
        let json: String = events
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["delta"]["partial_json"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&json).expect("input"),
            json!({"command": "ls -la"})
        );
        assert!(events.contains(r#""stop_reason":"tool_use""#));
    }
}

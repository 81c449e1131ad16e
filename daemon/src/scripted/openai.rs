//! The scripted model's OpenAI Responses API (`POST /v1/responses`), as the Codex CLI
//! (0.171) reads it: a reply's `thinking` is a reasoning item (its summary), its `text`
//! an assistant message, its `toolUse` a `function_call` (Codex's shell is
//! `exec_command` with `{"cmd": …}`), streamed as `response.*` SSE events and closed by
//! `response.completed` with the usage. A request's conversation is its `input`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{estimate_tokens, pieces, sse_body, Player, Reply};

/// `POST /v1/responses`.
pub(super) async fn responses(
    State(player): State<Arc<Player>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    player.log_headers("/v1/responses", &headers);
    let reply = player.reply_for(&body, body["input"].to_string());
    if let Some(e) = &reply.error {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"type": e.kind, "message": e.message, "code": e.kind}});
        return (status, Json(body)).into_response();
    }
    let model = body["model"].as_str().unwrap_or("scripted-model");
    let id = format!("resp_{}", crate::names::new_id(""));
    let items = output_items(&reply);
    let input_tokens = estimate_tokens(&body["input"].to_string());
    let output_tokens: u64 = items.iter().map(|i| estimate_tokens(&i.to_string())).sum();
    let response = |status: &str, output: &[Value], usage: Value| {
        json!({ "id": id, "object": "response", "status": status, "model": model,
                "output": output, "usage": usage })
    };
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": { "cached_tokens": 0 },
        "output_tokens": output_tokens,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": input_tokens + output_tokens,
    });
    if body["stream"] != json!(true) {
        return Json(response("completed", &items, usage)).into_response();
    }
    let mut events = vec![
        event(
            "response.created",
            json!({ "response": response("in_progress", &[], Value::Null) }),
        ),
        event(
            "response.in_progress",
            json!({ "response": response("in_progress", &[], Value::Null) }),
        ),
    ];
    for (index, item) in items.iter().enumerate() {
        events.extend(item_events(index, item));
    }
    events.push(event(
        "response.completed",
        json!({ "response": response("completed", &items, usage) }),
    ));
    sse_body(
        events,
        Duration::from_millis(reply.chunk_delay_ms.unwrap_or(0)),
    )
}

fn event(kind: &str, mut data: Value) -> String {
    data["type"] = json!(kind);
    format!("event: {kind}\ndata: {data}\n\n")
}

/// The output items of a reply, complete.
fn output_items(reply: &Reply) -> Vec<Value> {
    let new_id = |prefix: &str| format!("{prefix}_{}", crate::names::new_id(""));
    let mut items = Vec::new();
    if let Some(thinking) = &reply.thinking {
        items.push(json!({ "id": new_id("rs"), "type": "reasoning",
            "summary": [{ "type": "summary_text", "text": thinking }] }));
    }
    if let Some(text) = &reply.text {
        items.push(
            json!({ "id": new_id("msg"), "type": "message", "role": "assistant",
            "status": "completed",
            "content": [{ "type": "output_text", "text": text, "annotations": [] }] }),
        );
    }
    if let Some(tool) = &reply.tool_use {
        let call_id = tool.id.clone().unwrap_or_else(|| new_id("call"));
        items.push(
            json!({ "id": new_id("fc"), "type": "function_call", "status": "completed",
            "name": tool.name, "call_id": call_id, "arguments": tool.input.to_string() }),
        );
    }
    items
}

/// The events streaming one item: added, its deltas, done.
fn item_events(index: usize, item: &Value) -> Vec<String> {
    let item_id = item["id"].clone();
    let mut shell = item.clone();
    let mut deltas = Vec::new();
    match item["type"].as_str() {
        Some("message") => {
            shell["status"] = json!("in_progress");
            shell["content"] = json!([]);
            let text = item["content"][0]["text"].as_str().unwrap_or_default();
            let part = json!({ "type": "output_text", "text": "", "annotations": [] });
            let at = json!({ "item_id": item_id, "output_index": index, "content_index": 0 });
            let with = |mut v: Value, extra: Value| {
                if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
                    v.extend(extra);
                }
                v
            };
            deltas.push(event(
                "response.content_part.added",
                with(at.clone(), json!({ "part": part })),
            ));
            for piece in pieces(text) {
                deltas.push(event(
                    "response.output_text.delta",
                    with(at.clone(), json!({ "delta": piece })),
                ));
            }
            deltas.push(event(
                "response.output_text.done",
                with(at.clone(), json!({ "text": text })),
            ));
            deltas.push(event(
                "response.content_part.done",
                with(at, json!({ "part": item["content"][0] })),
            ));
        }
        Some("reasoning") => {
            shell["summary"] = json!([]);
            let text = item["summary"][0]["text"].as_str().unwrap_or_default();
            let at = json!({ "item_id": item_id, "output_index": index, "summary_index": 0 });
            for piece in pieces(text) {
                let mut data = at.clone();
                data["delta"] = json!(piece);
                deltas.push(event("response.reasoning_summary_text.delta", data));
            }
            let mut data = at;
            data["text"] = json!(text);
            deltas.push(event("response.reasoning_summary_text.done", data));
        }
        Some("function_call") => {
            shell["status"] = json!("in_progress");
            shell["arguments"] = json!("");
            let arguments = item["arguments"].as_str().unwrap_or_default();
            let at = json!({ "item_id": item_id, "output_index": index });
            for piece in pieces(arguments) {
                let mut data = at.clone();
                data["delta"] = json!(piece);
                deltas.push(event("response.function_call_arguments.delta", data));
            }
            let mut data = at;
            data["arguments"] = json!(arguments);
            deltas.push(event("response.function_call_arguments.done", data));
        }
        _ => {}
    }
    let mut out = vec![event(
        "response.output_item.added",
        json!({ "output_index": index, "item": shell }),
    )];
    out.extend(deltas);
    out.push(event(
        "response.output_item.done",
        json!({ "output_index": index, "item": item }),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::ToolUse;

    #[test]
    fn a_reply_streams_reasoning_text_and_a_function_call() {
        let reply = Reply {
            thinking: Some("hmm".into()),
            text: Some("Running it now.".into()),
            tool_use: Some(ToolUse {
                name: "exec_command".into(),
                input: json!({ "cmd": "echo hi" }),
                id: Some("call_1".into()),
            }),
            ..Reply::default()
        };
        let items = output_items(&reply);
        let types: Vec<&str> = items.iter().filter_map(|i| i["type"].as_str()).collect();
        assert_eq!(types, ["reasoning", "message", "function_call"]);
        assert_eq!(items[2]["arguments"], r#"{"cmd":"echo hi"}"#);
        let events: Vec<Value> = items
            .iter()
            .enumerate()
            .flat_map(|(i, item)| item_events(i, item))
            .filter_map(|e| {
                e.lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| serde_json::from_str(d).ok())
            })
            .collect();
        let text: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(text, "Running it now.");
        let done = events
            .iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .count();
        assert_eq!(done, 3);
        assert!(events.iter().all(|e| e["type"].is_string()));
    }
}

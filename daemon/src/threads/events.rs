//! Session events: what happened in a thread, as the universal session updates of
//! agent runtimes (`sessionUpdate`: `user_message_chunk`, `agent_message_chunk`,
//! `agent_thought_chunk`, `tool_call`, `tool_call_update`, `plan`, `usage_update`,
//! `session_info_update`, `permission_request`, `permission_resolved`), derived from
//! the UI message chunks a turn streams.

use serde_json::{json, Value};

/// The session updates one UI message chunk stands for (often none).
pub fn from_chunk(chunk: &Value) -> Vec<Value> {
    let text = |key: &str| chunk[key].as_str().unwrap_or_default().to_owned();
    match chunk["type"].as_str().unwrap_or_default() {
        "text-delta" => vec![json!({
            "sessionUpdate": "agent_message_chunk",
            "content": { "type": "text", "text": text("delta") },
        })],
        "reasoning-delta" => vec![json!({
            "sessionUpdate": "agent_thought_chunk",
            "content": { "type": "text", "text": text("delta") },
        })],
        "tool-input-available" => {
            let tool = text("toolName");
            let mut updates = vec![json!({
                "sessionUpdate": "tool_call",
                "toolCallId": text("toolCallId"),
                "title": tool,
                "kind": tool_kind(&tool),
                "status": "pending",
                "rawInput": chunk["input"],
            })];
            if tool == "TodoWrite" {
                updates.push(plan(&chunk["input"]));
            }
            updates
        }
        "tool-output-available" => vec![json!({
            "sessionUpdate": "tool_call_update",
            "toolCallId": text("toolCallId"),
            "status": "completed",
            "rawOutput": chunk["output"],
        })],
        "tool-output-error" => vec![json!({
            "sessionUpdate": "tool_call_update",
            "toolCallId": text("toolCallId"),
            "status": "failed",
            "rawOutput": chunk["errorText"],
        })],
        "message-metadata" => {
            let meta = &chunk["messageMetadata"];
            if meta.get("inputTokens").is_none() {
                return Vec::new();
            }
            vec![json!({
                "sessionUpdate": "usage_update",
                "inputTokens": meta["inputTokens"],
                "outputTokens": meta["outputTokens"],
                "totalCostUsd": meta["totalCostUsd"],
                "durationMs": meta["durationMs"],
            })]
        }
        "data-permission-request" => {
            let mut update = chunk["data"].clone();
            update["sessionUpdate"] = if update["status"] == "resolved" {
                json!("permission_resolved")
            } else {
                json!("permission_request")
            };
            vec![update]
        }
        _ => Vec::new(),
    }
}

/// The session updates a batch of chunks stands for, with the deltas of one part that
/// follow each other merged into one update: the event log grows with the number of
/// batches the runner stores, not with the number of deltas the CLI prints.
pub fn from_chunks<'a>(chunks: impl IntoIterator<Item = &'a Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    // The part whose delta made the last update, while nothing else came between.
    let mut open: Option<(&str, &str)> = None;
    for chunk in chunks {
        let kind = chunk["type"].as_str().unwrap_or_default();
        let id = chunk["id"].as_str().unwrap_or_default();
        let delta = matches!(kind, "text-delta" | "reasoning-delta");
        if delta && open == Some((kind, id)) {
            let text = chunk["delta"].as_str().unwrap_or_default();
            if let Some(Value::String(merged)) =
                out.last_mut().and_then(|u| u.pointer_mut("/content/text"))
            {
                merged.push_str(text);
                continue;
            }
        }
        open = delta.then_some((kind, id));
        out.extend(from_chunk(chunk));
    }
    out
}

/// The user's message, as the updates that echo it.
pub fn user_message(message: &Value) -> Vec<Value> {
    message["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] == "text")
        .map(|p| {
            json!({
                "sessionUpdate": "user_message_chunk",
                "content": { "type": "text", "text": p["text"] },
            })
        })
        .collect()
}

/// Claude's todo list as a plan.
fn plan(input: &Value) -> Value {
    let entries: Vec<Value> = input["todos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|todo| {
            json!({
                "content": todo["content"],
                "status": todo["status"],
                "priority": todo.get("priority").cloned().unwrap_or(json!("medium")),
            })
        })
        .collect();
    json!({ "sessionUpdate": "plan", "entries": entries })
}

/// What kind of action a Claude Code tool is.
fn tool_kind(tool: &str) -> &'static str {
    match tool {
        "Read" | "NotebookRead" => "read",
        "Edit" | "MultiEdit" | "Write" | "NotebookEdit" => "edit",
        "Bash" | "BashOutput" | "KillShell" => "execute",
        "Grep" | "Glob" | "LS" => "search",
        "WebFetch" | "WebSearch" => "fetch",
        "Task" | "TodoWrite" | "ExitPlanMode" => "think",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_session_updates() {
        let kinds = |chunk: Value| -> Vec<String> {
            from_chunk(&chunk)
                .iter()
                .map(|u| u["sessionUpdate"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            kinds(json!({"type": "text-delta", "id": "t", "delta": "hi"})),
            ["agent_message_chunk"]
        );
        assert_eq!(
            kinds(json!({"type": "reasoning-delta", "id": "r", "delta": "hm"})),
            ["agent_thought_chunk"]
        );
        assert_eq!(
            kinds(
                json!({"type": "tool-input-available", "toolCallId": "c", "toolName": "TodoWrite",
                         "input": {"todos": [{"content": "a", "status": "pending"}]}})
            ),
            ["tool_call", "plan"]
        );
        assert_eq!(
            kinds(json!({"type": "tool-output-error", "toolCallId": "c", "errorText": "no"})),
            ["tool_call_update"]
        );
        assert_eq!(
            kinds(json!({"type": "message-metadata", "messageMetadata": {"inputTokens": 3}})),
            ["usage_update"]
        );
        assert!(kinds(json!({"type": "text-start", "id": "t"})).is_empty());
        let plan = &from_chunk(&json!({"type": "tool-input-available", "toolCallId": "c",
            "toolName": "TodoWrite", "input": {"todos": [{"content": "a", "status": "pending"}]}}))
            [1];
        assert_eq!(plan["entries"][0]["content"], "a");
        let bash = &from_chunk(&json!({"type": "tool-input-available", "toolCallId": "c",
            "toolName": "Bash", "input": {"command": "ls"}}))[0];
        assert_eq!(bash["kind"], "execute");
        assert_eq!(bash["rawInput"]["command"], "ls");
    }

    #[test]
    fn deltas_of_one_part_in_a_row_make_one_update() {
        let chunks = [
            json!({"type": "text-delta", "id": "a", "delta": "Hel"}),
            json!({"type": "text-delta", "id": "a", "delta": "lo"}),
            json!({"type": "reasoning-delta", "id": "a", "delta": "hm"}),
            json!({"type": "reasoning-delta", "id": "a", "delta": "m"}),
            json!({"type": "text-delta", "id": "a", "delta": "!"}),
            json!({"type": "text-end", "id": "a"}),
            json!({"type": "text-start", "id": "b"}),
            json!({"type": "text-delta", "id": "b", "delta": "x"}),
            json!({"type": "text-delta", "id": "c", "delta": "y"}),
            json!({"type": "tool-output-error", "toolCallId": "t", "errorText": "no"}),
            json!({"type": "text-delta", "id": "c", "delta": "z"}),
        ];
        let updates: Vec<(String, String)> = from_chunks(&chunks)
            .iter()
            .map(|u| {
                let text = u["content"]["text"].as_str().unwrap_or_default().to_owned();
                (u["sessionUpdate"].as_str().unwrap().to_owned(), text)
            })
            .collect();
        let expected = [
            ("agent_message_chunk", "Hello"),
            ("agent_thought_chunk", "hmm"),
            ("agent_message_chunk", "!"),
            ("agent_message_chunk", "x"),
            ("agent_message_chunk", "y"),
            ("tool_call_update", ""),
            ("agent_message_chunk", "z"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, t)| (k.to_string(), t.to_string()))
            .collect();
        assert_eq!(updates, expected);
    }

    #[test]
    fn the_user_message_is_echoed_by_text_part() {
        let updates = user_message(&json!({"role": "user", "parts": [
            {"type": "text", "text": "one"}, {"type": "file", "url": "x"}, {"type": "text", "text": "two"}
        ]}));
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[1]["content"]["text"], "two");
    }
}

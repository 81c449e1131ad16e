//! Claude Code's `stream-json` output (with partial messages) translated into AI SDK UI
//! message stream chunks.
//!
//! Only chunk types and fields that strict clients accept are emitted: `ai` 5.0.x
//! validates chunks with strict schemas, so no `finishReason`, no `abort.reason`, no
//! `title`/`toolMetadata`, no v6-only types. Claude's tools run in the sandbox, so tool
//! chunks are `dynamic` and `providerExecuted`.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::runner::chunks::{chunk, tool_input_available, tool_input_start};
use crate::runner::runtime::{Outcome, Translate};

/// What a block of the current model message is.
#[derive(Debug, Clone)]
enum Block {
    Text {
        id: String,
    },
    Reasoning {
        id: String,
    },
    Tool {
        id: String,
        name: String,
        json: String,
    },
    Other,
}

/// The translator's state for one turn.
#[derive(Debug, Default)]
pub struct Translator {
    /// The current model message id.
    message_id: Option<String>,
    /// Blocks of the current message by index.
    blocks: HashMap<u64, Block>,
    /// Whether a step is open.
    in_step: bool,
    /// Tool calls whose input was announced (to complete them from `assistant` lines).
    tools_available: HashSet<String>,
    /// Tool calls seen at all.
    tools_started: HashSet<String>,
    /// Text and reasoning block ids already streamed (so `assistant` lines are not
    /// re-emitted).
    streamed: HashSet<String>,
    /// The result, once seen.
    pub outcome: Outcome,
    /// The session's running cost as the last turn's result reported it: (session
    /// id, USD). Claude Code reports a resumed session's total, not the turn's.
    session_cost: Option<(String, f64)>,
    /// What the next turn needs to know, once this one reported its cost.
    kept: Option<Value>,
}

impl Translator {
    /// A translator for a turn of a thread whose last turn kept `state`.
    pub fn resuming(state: &Value) -> Self {
        let cost = &state["sessionCost"];
        Self {
            session_cost: cost["sessionId"]
                .as_str()
                .zip(cost["usd"].as_f64())
                .map(|(id, usd)| (id.to_owned(), usd)),
            ..Self::default()
        }
    }

    /// This turn's cost from the session's running total: what it added since the
    /// last turn of the same session (all of it for a new session, or when the total
    /// went down, as when a session was started afresh under its old id).
    fn turn_cost(&mut self, reported: f64) -> f64 {
        let session = self.outcome.session_id.clone().unwrap_or_default();
        let before = match &self.session_cost {
            Some((id, usd)) if *id == session && *usd <= reported => *usd,
            _ => 0.0,
        };
        self.kept = Some(serde_json::json!({
            "sessionCost": { "sessionId": session, "usd": reported }
        }));
        reported - before
    }

    /// Translates one line of Claude's stdout; returns the chunks it yields.
    pub fn line(&mut self, line: &Value) -> Vec<Value> {
        // Subagent traffic (inside a Task tool call) is not part of the main message.
        if line.get("parent_tool_use_id").is_some_and(|p| !p.is_null()) {
            return Vec::new();
        }
        if let Some(sid) = line.get("session_id").and_then(Value::as_str) {
            self.outcome
                .session_id
                .get_or_insert_with(|| sid.to_owned());
        }
        match line.get("type").and_then(Value::as_str) {
            Some("stream_event") => line
                .get("event")
                .map(|e| self.stream_event(e))
                .unwrap_or_default(),
            Some("assistant") => self.assistant(line),
            Some("user") => self.user(line),
            Some("result") => self.result(line),
            _ => Vec::new(),
        }
    }

    fn stream_event(&mut self, event: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.message_id = event
                    .pointer("/message/id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.blocks.clear();
                out.extend(self.close_step());
                out.push(chunk("start-step", json!({})));
                self.in_step = true;
            }
            Some("content_block_start") => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = event.get("content_block").cloned().unwrap_or_default();
                let id = format!(
                    "{}:{index}",
                    self.message_id.as_deref().unwrap_or("message")
                );
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        out.push(chunk("text-start", json!({ "id": id })));
                        self.streamed.insert(id.clone());
                        self.blocks.insert(index, Block::Text { id });
                    }
                    Some("thinking") => {
                        out.push(chunk("reasoning-start", json!({ "id": id })));
                        self.streamed.insert(id.clone());
                        self.blocks.insert(index, Block::Reasoning { id });
                    }
                    Some("tool_use") => {
                        let tool_id = block
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or(&id)
                            .to_owned();
                        let name = block
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("tool")
                            .to_owned();
                        out.push(tool_input_start(&tool_id, &name));
                        self.tools_started.insert(tool_id.clone());
                        self.blocks.insert(
                            index,
                            Block::Tool {
                                id: tool_id,
                                name,
                                json: String::new(),
                            },
                        );
                    }
                    _ => {
                        self.blocks.insert(index, Block::Other);
                    }
                }
            }
            Some("content_block_delta") => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = event.get("delta").cloned().unwrap_or_default();
                match (
                    self.blocks.get_mut(&index),
                    delta.get("type").and_then(Value::as_str),
                ) {
                    (Some(Block::Text { id }), Some("text_delta")) => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        out.push(chunk("text-delta", json!({ "id": id, "delta": text })));
                    }
                    (Some(Block::Reasoning { id }), Some("thinking_delta")) => {
                        let text = delta.get("thinking").and_then(Value::as_str).unwrap_or("");
                        out.push(chunk("reasoning-delta", json!({ "id": id, "delta": text })));
                    }
                    (Some(Block::Tool { id, json: buf, .. }), Some("input_json_delta")) => {
                        let part = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        buf.push_str(part);
                        out.push(chunk(
                            "tool-input-delta",
                            json!({ "toolCallId": id, "inputTextDelta": part }),
                        ));
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                out.extend(self.close_block(index));
            }
            Some("message_stop") => out.extend(self.close_step()),
            _ => {}
        }
        out
    }

    /// A complete model message: only what was not streamed (tool calls whose blocks
    /// were not seen, text without partial messages).
    fn assistant(&mut self, line: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        let message_id = line
            .pointer("/message/id")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_owned();
        let content = line
            .pointer("/message/content")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (index, block) in content.iter().enumerate() {
            let id = format!("{message_id}:{index}");
            match block.get("type").and_then(Value::as_str) {
                Some("text") if !self.streamed.contains(&id) => {
                    let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                    self.streamed.insert(id.clone());
                    out.push(chunk("text-start", json!({ "id": id })));
                    out.push(chunk("text-delta", json!({ "id": id, "delta": text })));
                    out.push(chunk("text-end", json!({ "id": id })));
                }
                Some("tool_use") => {
                    let tool_id = block.get("id").and_then(Value::as_str).unwrap_or(&id);
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("tool");
                    if self.tools_started.insert(tool_id.to_owned()) {
                        out.push(tool_input_start(tool_id, name));
                    }
                    if self.tools_available.insert(tool_id.to_owned()) {
                        let input = block.get("input").cloned().unwrap_or(json!({}));
                        out.push(tool_input_available(tool_id, name, input));
                    }
                }
                _ => {}
            }
        }
        if let Some(error) = line.get("error").and_then(Value::as_str) {
            self.outcome.error.get_or_insert_with(|| model_error(error));
        }
        out
    }

    /// Tool results.
    fn user(&mut self, line: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        let Some(content) = line.pointer("/message/content").and_then(Value::as_array) else {
            if line.pointer("/message/content").and_then(Value::as_str)
                == Some("[Request interrupted by user]")
            {
                self.outcome.interrupted = true;
            }
            return out;
        };
        for block in content {
            match block.get("type").and_then(Value::as_str) {
                Some("tool_result") => {
                    let Some(id) = block.get("tool_use_id").and_then(Value::as_str) else {
                        continue;
                    };
                    if !self.tools_started.contains(id) {
                        continue;
                    }
                    let text = tool_result_text(block.get("content"));
                    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                        out.push(chunk(
                            "tool-output-error",
                            json!({ "toolCallId": id, "errorText": text,
                                    "providerExecuted": true, "dynamic": true }),
                        ));
                    } else {
                        let output = line
                            .get("tool_use_result")
                            .filter(|r| r.is_object())
                            .cloned()
                            .unwrap_or(Value::String(text));
                        out.push(chunk(
                            "tool-output-available",
                            json!({ "toolCallId": id, "output": output,
                                    "providerExecuted": true, "dynamic": true }),
                        ));
                    }
                }
                Some("text")
                    if block
                        .get("text")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.starts_with("[Request interrupted by user")) =>
                {
                    self.outcome.interrupted = true;
                }
                _ => {}
            }
        }
        out
    }

    fn result(&mut self, line: &Value) -> Vec<Value> {
        let mut out = self.close_open_blocks();
        out.extend(self.close_step());
        let cost = line
            .get("total_cost_usd")
            .and_then(Value::as_f64)
            .map(|total| crate::usd::round(self.turn_cost(total)));
        let o = &mut self.outcome;
        o.finished = true;
        o.total_cost_usd = cost;
        o.duration_ms = line.get("duration_ms").and_then(Value::as_u64);
        o.num_turns = line.get("num_turns").and_then(Value::as_u64);
        o.result_text = line
            .get("result")
            .and_then(Value::as_str)
            .map(str::to_owned);
        o.subtype = line
            .get("subtype")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let usage = line.get("usage");
        let field = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
        o.input_tokens = Some(
            field("input_tokens").unwrap_or(0)
                + field("cache_creation_input_tokens").unwrap_or(0)
                + field("cache_read_input_tokens").unwrap_or(0),
        );
        o.output_tokens = field("output_tokens");
        let subtype = line.get("subtype").and_then(Value::as_str).unwrap_or("");
        let is_error = line.get("is_error").and_then(Value::as_bool) == Some(true);
        let terminal = line.get("terminal_reason").and_then(Value::as_str);
        if matches!(terminal, Some(t) if t.starts_with("aborted")) {
            o.interrupted = true;
        }
        if o.interrupted {
            return out;
        }
        let reason = match subtype {
            "error_max_turns" => Some("the agent reached its turn limit (maxTurns)".to_owned()),
            "error_max_budget_usd" => {
                Some("the agent reached its cost limit (maxBudgetUsd)".to_owned())
            }
            "error_during_execution" => Some(format!(
                "the agent failed: {}",
                errors_text(line).unwrap_or_else(|| "an error during execution".into())
            )),
            _ if is_error => Some(
                line.get("result")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| errors_text(line))
                    .unwrap_or_else(|| "the model request failed".into()),
            ),
            _ => None,
        };
        if let Some(reason) = reason {
            // A hint from the assistant's error kind comes first; the CLI's own text
            // (with the upstream's message) follows it.
            o.error = Some(match o.error.take() {
                Some(hint) if !reason.contains(&hint) => format!("{hint}: {reason}"),
                Some(hint) => hint,
                None => reason,
            });
        }
        out
    }

    /// Ends blocks the CLI left open (an interrupted stream).
    pub fn close_open_blocks(&mut self) -> Vec<Value> {
        let mut indexes: Vec<u64> = self.blocks.keys().copied().collect();
        indexes.sort_unstable();
        indexes
            .into_iter()
            .filter_map(|index| self.close_block(index))
            .collect()
    }

    /// Ends the block at `index`: its end chunk, or a tool call's complete input.
    fn close_block(&mut self, index: u64) -> Option<Value> {
        match self.blocks.remove(&index)? {
            Block::Text { id } => Some(chunk("text-end", json!({ "id": id }))),
            Block::Reasoning { id } => Some(chunk("reasoning-end", json!({ "id": id }))),
            Block::Tool { id, name, json } if self.tools_available.insert(id.clone()) => {
                let input = serde_json::from_str(&json).unwrap_or(json!({}));
                Some(tool_input_available(&id, &name, input))
            }
            _ => None,
        }
    }

    /// Ends the open step, if any.
    pub fn close_step(&mut self) -> Vec<Value> {
        if std::mem::take(&mut self.in_step) {
            vec![chunk("finish-step", json!({}))]
        } else {
            Vec::new()
        }
    }
}

impl Translate for Translator {
    fn line(&mut self, line: &Value) -> Vec<Value> {
        Translator::line(self, line)
    }

    fn ends_turn(&self, line: &Value) -> bool {
        line["type"] == "result"
    }

    fn close(&mut self) -> Vec<Value> {
        let mut out = self.close_open_blocks();
        out.extend(self.close_step());
        out
    }

    fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn runtime_state(&self) -> Option<Value> {
        self.kept.clone()
    }
}

fn tool_result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn errors_text(line: &Value) -> Option<String> {
    let errors: Vec<&str> = line
        .get("errors")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn model_error(kind: &str) -> String {
    let hint = match kind {
        "authentication_failed" => {
            "the model API refused the credentials; check the daemon's ANTHROPIC_API_KEY"
        }
        "billing_error" => "the model API account has a billing problem",
        "rate_limit" => "the model API rate limit was hit; retry later",
        "overloaded" => "the model API is overloaded; retry later",
        "invalid_request" => "the model API rejected the request",
        "model_not_found" => "the model does not exist; check the agent's model",
        "server_error" => "the model API failed",
        "max_output_tokens" => "the reply hit the output token limit",
        _ => "the model request failed",
    };
    format!("{hint} ({kind})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> (Vec<Value>, Outcome) {
        let mut t = Translator::default();
        let mut out = Vec::new();
        for l in lines {
            out.extend(t.line(&serde_json::from_str(l).expect("json")));
        }
        (out, t.outcome)
    }

    fn types(chunks: &[Value]) -> Vec<&str> {
        chunks.iter().filter_map(|c| c["type"].as_str()).collect()
    }

    // Lines as the real CLI (2.1.330) prints them, trimmed of fields that do not matter.
    const TEXT_TURN: &[&str] = &[
        r#"{"type":"system","subtype":"init","cwd":"/home/user","session_id":"s1","tools":["Bash"]}"#,
        r#"{"type":"system","subtype":"status","status":"requesting","session_id":"s1"}"#,
        r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_1","content":[]}},"session_id":"s1","parent_tool_use_id":null}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}},"session_id":"s1","parent_tool_use_id":null}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello "}},"session_id":"s1","parent_tool_use_id":null}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"there"}},"session_id":"s1","parent_tool_use_id":null}"#,
        r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"text","text":"Hello there"}]},"parent_tool_use_id":null,"session_id":"s1"}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_stop","index":0},"session_id":"s1","parent_tool_use_id":null}"#,
        r#"{"type":"stream_event","event":{"type":"message_delta","delta":{"stop_reason":"end_turn"}},"session_id":"s1","parent_tool_use_id":null}"#,
        r#"{"type":"stream_event","event":{"type":"message_stop"},"session_id":"s1","parent_tool_use_id":null}"#,
        r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":430,"num_turns":1,"result":"Hello there","session_id":"s1","total_cost_usd":0.000188,"usage":{"input_tokens":12,"cache_creation_input_tokens":3,"cache_read_input_tokens":5,"output_tokens":7},"terminal_reason":"completed"}"#,
    ];

    #[test]
    fn a_text_turn_streams_once_and_reports_usage() {
        let (chunks, outcome) = run(TEXT_TURN);
        assert_eq!(
            types(&chunks),
            vec![
                "start-step",
                "text-start",
                "text-delta",
                "text-delta",
                "text-end",
                "finish-step"
            ]
        );
        assert_eq!(
            chunks[2],
            json!({"type": "text-delta", "id": "msg_1:0", "delta": "Hello "})
        );
        assert_eq!(outcome.session_id.as_deref(), Some("s1"));
        assert_eq!(outcome.input_tokens, Some(20));
        assert_eq!(outcome.output_tokens, Some(7));
        assert_eq!(outcome.total_cost_usd, Some(0.000188));
        assert_eq!(outcome.duration_ms, Some(430));
        assert!(outcome.finished && outcome.error.is_none());
    }

    #[test]
    fn a_tool_call_is_a_provider_executed_dynamic_tool() {
        let (chunks, _) = run(&[
            r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_1"}},"parent_tool_use_id":null}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01","name":"Bash","input":{}}},"parent_tool_use_id":null}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"command\""}},"parent_tool_use_id":null}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":": \"ls\"}"}},"parent_tool_use_id":null}"#,
            r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"tool_use","id":"toolu_01","name":"Bash","input":{"command":"ls"}}]},"parent_tool_use_id":null}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_stop","index":0},"parent_tool_use_id":null}"#,
            r#"{"type":"stream_event","event":{"type":"message_stop"},"parent_tool_use_id":null}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_01","type":"tool_result","content":"a\nb","is_error":false}]},"parent_tool_use_id":null,"tool_use_result":{"stdout":"a\nb","stderr":"","interrupted":false}}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_02","type":"tool_result","content":"x","is_error":true}]},"parent_tool_use_id":null}"#,
        ]);
        assert_eq!(
            types(&chunks),
            vec![
                "start-step",
                "tool-input-start",
                "tool-input-delta",
                "tool-input-delta",
                "tool-input-available",
                "finish-step",
                "tool-output-available"
            ]
        );
        assert_eq!(
            chunks[4],
            json!({"type": "tool-input-available", "toolCallId": "toolu_01", "toolName": "Bash",
                   "input": {"command": "ls"}, "providerExecuted": true, "dynamic": true})
        );
        assert_eq!(chunks[6]["output"]["stdout"], "a\nb");
    }

    #[test]
    fn tool_errors_and_subagents() {
        let (chunks, _) = run(&[
            r#"{"type":"assistant","message":{"id":"m","content":[{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"/x"}}]},"parent_tool_use_id":null}"#,
            r#"{"type":"assistant","message":{"id":"sub","content":[{"type":"text","text":"inner"}]},"parent_tool_use_id":"t1"}"#,
            r#"{"type":"user","message":{"content":[{"tool_use_id":"t1","type":"tool_result","content":[{"type":"text","text":"no such file"}],"is_error":true}]},"parent_tool_use_id":null}"#,
        ]);
        assert_eq!(
            types(&chunks),
            vec![
                "tool-input-start",
                "tool-input-available",
                "tool-output-error"
            ]
        );
        assert_eq!(chunks[2]["errorText"], "no such file");
    }

    #[test]
    fn limits_and_model_errors_become_messages() {
        let (_, o) = run(&[
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"session_id":"s","errors":[]}"#,
        ]);
        assert!(
            o.error.as_deref().is_some_and(|e| e.contains("maxTurns")),
            "{o:?}"
        );
        let (_, o) = run(&[
            r#"{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"API Error: 401"}]},"error":"authentication_failed","parent_tool_use_id":null}"#,
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 401 invalid x-api-key"}"#,
        ]);
        assert!(
            o.error
                .as_deref()
                .is_some_and(|e| e.contains("credentials")),
            "{o:?}"
        );
    }

    #[test]
    fn an_interrupt_closes_open_blocks_without_an_error() {
        let (chunks, o) = run(&[
            r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"m"}},"parent_tool_use_id":null}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}},"parent_tool_use_id":null}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"one "}},"parent_tool_use_id":null}"#,
            r#"{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"one "}]},"parent_tool_use_id":null,"aborted":true}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"[Request interrupted by user]"}]},"parent_tool_use_id":null}"#,
            r#"{"type":"result","subtype":"error_during_execution","is_error":true,"terminal_reason":"aborted_streaming","errors":[]}"#,
        ]);
        assert_eq!(
            types(&chunks),
            vec![
                "start-step",
                "text-start",
                "text-delta",
                "text-end",
                "finish-step"
            ]
        );
        assert!(o.interrupted && o.error.is_none(), "{o:?}");
    }

    #[test]
    fn a_resumed_sessions_running_total_becomes_the_turns_cost() {
        let result = |session: &str, total: f64| {
            serde_json::json!({"type": "result", "subtype": "success", "session_id": session,
                               "total_cost_usd": total, "usage": {}})
        };
        let mut first = Translator::resuming(&Value::Null);
        first.line(&result("s1", 0.01));
        assert_eq!(first.outcome.total_cost_usd, Some(0.01));
        let kept = Translate::runtime_state(&first).expect("kept");
        let mut second = Translator::resuming(&kept);
        second.line(&result("s1", 0.03));
        let cost = second.outcome.total_cost_usd.expect("cost");
        assert!((cost - 0.02).abs() < 1e-12, "{cost}");
        let kept = Translate::runtime_state(&second).expect("kept");
        let mut other = Translator::resuming(&kept);
        other.line(&result("s2", 0.005));
        assert_eq!(other.outcome.total_cost_usd, Some(0.005), "a new session");
        let mut afresh = Translator::resuming(&kept);
        afresh.line(&result("s1", 0.004));
        assert_eq!(afresh.outcome.total_cost_usd, Some(0.004), "started afresh");
    }
}

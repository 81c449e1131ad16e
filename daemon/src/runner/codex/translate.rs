//! `codex exec --json` events translated into the same AI SDK UI message chunks as a
//! Claude turn: `agent_message` items become text, `reasoning` items reasoning, and
//! each command execution, file change, MCP tool call, web search and to-do list a
//! dynamic, provider-executed tool part with its input and output.
//!
//! Only a failed turn (`turn.failed`) is an error. Codex's non-fatal events — `error`
//! items (a warning) and top-level `error` events ("Reconnecting… 1/5") — become a
//! transient `data-notice` chunk, never an `error` chunk (the AI SDK client fails a
//! stream on one).
//!
//! `turn.completed.usage` is the session's running total across resumes; the turn's
//! own usage is that total minus the one the thread's last turn reported, kept as the
//! runtime's state between turns.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::runner::chunks::{chunk, tool_input_available, tool_input_start};
use crate::runner::runtime::{Outcome, Translate};

/// Codex's running token totals of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    input: u64,
    cached_input: u64,
    output: u64,
}

impl Totals {
    fn from_usage(usage: &Value) -> Self {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
        Self {
            input: n("input_tokens"),
            cached_input: n("cached_input_tokens"),
            output: n("output_tokens"),
        }
    }
}

/// The translator's state for one turn.
#[derive(Debug, Default)]
pub struct Translator {
    /// The session the thread's last turn reported totals for, and those totals.
    previous: Option<(String, Totals)>,
    /// This turn's session totals, once reported.
    totals: Option<Totals>,
    in_step: bool,
    /// Tool parts started (by item id).
    tools: HashSet<String>,
    /// Tool parts ended.
    ended: HashSet<String>,
    /// Text and reasoning items already streamed.
    streamed: HashSet<String>,
    /// The last non-fatal error, for a failed turn without a message.
    last_notice: Option<String>,
    /// The outcome so far.
    pub outcome: Outcome,
}

/// The longest notice message kept.
const MAX_NOTICE: usize = 2000;

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Translator {
    /// A translator given the runtime state the thread's last turn kept.
    pub fn new(state: &Value) -> Self {
        let previous = state["session"].as_str().map(|session| {
            (
                session.to_owned(),
                Totals {
                    input: state["inputTokens"].as_u64().unwrap_or(0),
                    cached_input: state["cachedInputTokens"].as_u64().unwrap_or(0),
                    output: state["outputTokens"].as_u64().unwrap_or(0),
                },
            )
        });
        Self {
            previous,
            ..Self::default()
        }
    }

    /// Translates one event.
    pub fn line(&mut self, line: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        match line["type"].as_str() {
            Some("thread.started") => {
                if let Some(id) = line["thread_id"].as_str() {
                    self.outcome.session_id.get_or_insert_with(|| id.to_owned());
                }
            }
            Some("turn.started") => out.extend(self.open_step()),
            Some("item.started") | Some("item.updated") => {
                out.extend(self.open_step());
                out.extend(self.item_started(&line["item"]));
            }
            Some("item.completed") => {
                out.extend(self.open_step());
                out.extend(self.item_completed(&line["item"]));
            }
            Some("turn.completed") => {
                out.extend(self.close());
                self.turn_completed(&line["usage"]);
            }
            Some("turn.failed") => {
                out.extend(self.close());
                let message = line["error"]["message"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| self.last_notice.clone())
                    .unwrap_or_else(|| "the turn failed".into());
                self.outcome.finished = true;
                self.outcome.error = Some(format!("Codex: {}", clip(&message, MAX_NOTICE)));
            }
            Some("error") => {
                let message = line["message"].as_str().unwrap_or("an error");
                out.push(self.notice("codex-error", message));
            }
            _ => {}
        }
        out
    }

    fn open_step(&mut self) -> Option<Value> {
        (!std::mem::replace(&mut self.in_step, true)).then(|| chunk("start-step", json!({})))
    }

    /// Ends the open step and any tool part left running.
    pub fn close(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut open: Vec<&String> = self.tools.difference(&self.ended).collect();
        open.sort();
        for id in open {
            out.push(chunk(
                "tool-output-error",
                json!({ "toolCallId": id, "errorText": "the turn ended before the tool did",
                        "providerExecuted": true, "dynamic": true }),
            ));
        }
        self.ended.extend(self.tools.iter().cloned());
        if std::mem::take(&mut self.in_step) {
            out.push(chunk("finish-step", json!({})));
        }
        out
    }

    fn notice(&mut self, kind: &str, message: &str) -> Value {
        let message = clip(message, MAX_NOTICE);
        self.last_notice = Some(message.clone());
        // Transient: the client hears of it, the message does not keep it.
        json!({
            "type": "data-notice",
            "data": { "notice": kind, "message": message },
            "transient": true,
        })
    }

    /// A tool item's name and input.
    fn tool_of(item: &Value) -> Option<(String, Value)> {
        match item["type"].as_str()? {
            "command_execution" => Some(("shell".into(), json!({ "command": item["command"] }))),
            "file_change" => Some(("file_change".into(), json!({ "changes": item["changes"] }))),
            "mcp_tool_call" => Some((
                format!(
                    "mcp__{}__{}",
                    item["server"].as_str().unwrap_or("server"),
                    item["tool"].as_str().unwrap_or("tool")
                ),
                item["arguments"].clone(),
            )),
            "web_search" => Some(("web_search".into(), json!({ "query": item["query"] }))),
            "todo_list" => Some(("todo_list".into(), json!({}))),
            _ => None,
        }
    }

    fn item_id(item: &Value) -> Option<String> {
        item["id"].as_str().map(str::to_owned)
    }

    fn item_started(&mut self, item: &Value) -> Vec<Value> {
        let (Some(id), Some((name, input))) = (Self::item_id(item), Self::tool_of(item)) else {
            return Vec::new();
        };
        if !self.tools.insert(id.clone()) {
            return Vec::new();
        }
        vec![
            tool_input_start(&id, &name),
            tool_input_available(&id, &name, input),
        ]
    }

    fn item_completed(&mut self, item: &Value) -> Vec<Value> {
        let Some(id) = Self::item_id(item) else {
            return Vec::new();
        };
        let text = item["text"].as_str().unwrap_or_default();
        match item["type"].as_str() {
            Some("agent_message") if self.streamed.insert(id.clone()) => vec![
                chunk("text-start", json!({ "id": id })),
                chunk("text-delta", json!({ "id": id, "delta": text })),
                chunk("text-end", json!({ "id": id })),
            ],
            Some("reasoning") if self.streamed.insert(id.clone()) => vec![
                chunk("reasoning-start", json!({ "id": id })),
                chunk("reasoning-delta", json!({ "id": id, "delta": text })),
                chunk("reasoning-end", json!({ "id": id })),
            ],
            Some("error") => {
                let message = item["message"].as_str().unwrap_or("a warning");
                vec![self.notice("codex-warning", message)]
            }
            _ => {
                let mut out = self.item_started(item);
                if self.tools.contains(&id) && self.ended.insert(id.clone()) {
                    out.push(tool_output(&id, item));
                }
                out
            }
        }
    }

    fn turn_completed(&mut self, usage: &Value) {
        let totals = Totals::from_usage(usage);
        // The totals the session had before this turn: the last turn's, when it was the
        // same session and they do not exceed this turn's (a session started afresh
        // counts from zero).
        let before = match (&self.previous, &self.outcome.session_id) {
            (Some((session, prev)), Some(now))
                if session == now && prev.input <= totals.input && prev.output <= totals.output =>
            {
                *prev
            }
            _ => Totals::default(),
        };
        self.totals = Some(totals);
        let o = &mut self.outcome;
        o.finished = true;
        o.input_tokens = Some(totals.input - before.input);
        o.output_tokens = Some(totals.output - before.output);
        o.total_cost_usd = Some(0.0);
    }
}

/// A completed tool item's output chunk.
fn tool_output(id: &str, item: &Value) -> Value {
    let status = item["status"].as_str().unwrap_or("completed");
    let failed = matches!(status, "failed" | "declined");
    let output = match item["type"].as_str() {
        Some("command_execution") => json!({
            "output": item["aggregated_output"],
            "exitCode": item["exit_code"],
            "status": status,
        }),
        Some("file_change") => json!({ "changes": item["changes"], "status": status }),
        Some("mcp_tool_call") => {
            if let Some(message) = item["error"]["message"].as_str() {
                return chunk(
                    "tool-output-error",
                    json!({ "toolCallId": id, "errorText": message,
                            "providerExecuted": true, "dynamic": true }),
                );
            }
            item["result"].clone()
        }
        Some("todo_list") => json!({ "items": item["items"] }),
        _ => json!({ "action": item["action"], "status": status }),
    };
    if failed && item["type"] != "command_execution" {
        return chunk(
            "tool-output-error",
            json!({ "toolCallId": id, "errorText": format!("{status}: {output}"),
                    "providerExecuted": true, "dynamic": true }),
        );
    }
    chunk(
        "tool-output-available",
        json!({ "toolCallId": id, "output": output, "providerExecuted": true, "dynamic": true }),
    )
}

impl Translate for Translator {
    fn line(&mut self, line: &Value) -> Vec<Value> {
        Translator::line(self, line)
    }

    fn ends_turn(&self, line: &Value) -> bool {
        matches!(
            line["type"].as_str(),
            Some("turn.completed" | "turn.failed")
        )
    }

    fn close(&mut self) -> Vec<Value> {
        Translator::close(self)
    }

    fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn runtime_state(&self) -> Option<Value> {
        let totals = self.totals?;
        let session = self.outcome.session_id.as_deref()?;
        Some(json!({
            "session": session,
            "inputTokens": totals.input,
            "cachedInputTokens": totals.cached_input,
            "outputTokens": totals.output,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut Translator, lines: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        for l in lines {
            out.extend(t.line(&serde_json::from_str(l).expect("json")));
        }
        out.extend(t.close());
        out
    }

    fn types(chunks: &[Value]) -> Vec<&str> {
        chunks.iter().filter_map(|c| c["type"].as_str()).collect()
    }

    // As codex 0.171 prints them (see docs/research/codex-cli.md).
    const SHELL_TURN: &[&str] = &[
        r#"{"type":"thread.started","thread_id":"01a2285b-4d99-7d40-8180-f3b52160087d"}"#,
        r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `gpt-5-codex` not found."}}"#,
        r#"{"type":"turn.started"}"#,
        r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc 'echo hi'","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc 'echo hi'","aggregated_output":"hi\n","exit_code":0,"status":"completed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_2","type":"reasoning","text":"thinking"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Done."}}"#,
        r#"{"type":"turn.completed","usage":{"input_tokens":240,"cached_input_tokens":0,"output_tokens":24,"reasoning_output_tokens":0}}"#,
    ];

    #[test]
    fn a_shell_turn_becomes_tool_reasoning_and_text_parts() {
        let mut t = Translator::new(&Value::Null);
        let chunks = run(&mut t, SHELL_TURN);
        assert_eq!(
            types(&chunks),
            vec![
                "start-step",
                "data-notice",
                "tool-input-start",
                "tool-input-available",
                "tool-output-available",
                "reasoning-start",
                "reasoning-delta",
                "reasoning-end",
                "text-start",
                "text-delta",
                "text-end",
                "finish-step",
            ]
        );
        assert_eq!(chunks[3]["input"]["command"], "/bin/bash -lc 'echo hi'");
        assert_eq!(chunks[4]["output"]["output"], "hi\n");
        assert_eq!(chunks[4]["output"]["exitCode"], 0);
        assert!(!types(&chunks).contains(&"error"));
        let o = t.outcome.clone();
        assert!(o.finished && o.error.is_none());
        assert_eq!(
            o.session_id.as_deref(),
            Some("01a2285b-4d99-7d40-8180-f3b52160087d")
        );
        assert_eq!((o.input_tokens, o.output_tokens), (Some(240), Some(24)));
    }

    #[test]
    fn usage_is_the_turns_own_not_the_sessions_total() {
        let mut first = Translator::new(&Value::Null);
        run(&mut first, SHELL_TURN);
        let kept = first.runtime_state().expect("state");
        let mut second = Translator::new(&kept);
        run(
            &mut second,
            &[
                r#"{"type":"thread.started","thread_id":"01a2285b-4d99-7d40-8180-f3b52160087d"}"#,
                r#"{"type":"turn.completed","usage":{"input_tokens":600,"output_tokens":30}}"#,
            ],
        );
        assert_eq!(
            (second.outcome.input_tokens, second.outcome.output_tokens),
            (Some(360), Some(6))
        );
        // Another session (started afresh) counts from zero.
        let mut fresh = Translator::new(&kept);
        run(
            &mut fresh,
            &[
                r#"{"type":"thread.started","thread_id":"other"}"#,
                r#"{"type":"turn.completed","usage":{"input_tokens":100,"output_tokens":5}}"#,
            ],
        );
        assert_eq!(fresh.outcome.input_tokens, Some(100));
    }

    #[test]
    fn file_changes_and_mcp_calls_are_tool_parts_too() {
        let mut t = Translator::new(&Value::Null);
        let chunks = run(
            &mut t,
            &[
                r#"{"type":"item.completed","item":{"id":"f","type":"file_change","changes":[{"path":"a.txt","kind":"add"}],"status":"completed"}}"#,
                r#"{"type":"item.started","item":{"id":"m","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"x"},"status":"in_progress"}}"#,
                r#"{"type":"item.completed","item":{"id":"m","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"x"},"error":{"message":"offline"},"status":"failed"}}"#,
                r#"{"type":"item.completed","item":{"id":"w","type":"web_search","query":"rust","status":"completed"}}"#,
            ],
        );
        let names: Vec<&str> = chunks
            .iter()
            .filter(|c| c["type"] == "tool-input-available")
            .filter_map(|c| c["toolName"].as_str())
            .collect();
        assert_eq!(names, ["file_change", "mcp__docs__search", "web_search"]);
        let ends: Vec<&str> = chunks
            .iter()
            .filter(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("tool-output"))
            })
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(
            ends,
            [
                "tool-output-available",
                "tool-output-error",
                "tool-output-available"
            ]
        );
        assert_eq!(chunks[3]["output"]["changes"][0]["path"], "a.txt");
    }

    #[test]
    fn only_a_failed_turn_is_an_error() {
        let mut t = Translator::new(&Value::Null);
        let chunks = run(
            &mut t,
            &[
                r#"{"type":"thread.started","thread_id":"t"}"#,
                r#"{"type":"turn.started"}"#,
                r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
                r#"{"type":"item.started","item":{"id":"c","type":"command_execution","command":"sleep 9","status":"in_progress"}}"#,
                r#"{"type":"turn.failed","error":{"message":"unexpected status 401"}}"#,
            ],
        );
        assert!(!types(&chunks).contains(&"error"), "{chunks:?}");
        assert!(types(&chunks).contains(&"tool-output-error"));
        assert_eq!(types(&chunks).last(), Some(&"finish-step"));
        assert!(t
            .outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("401")));
        assert!(t.runtime_state().is_none());
    }
}

//! Folds UI message stream chunks into the assistant `UIMessage` the way the AI SDK's
//! client does, so what is persisted equals what a client that watched the stream holds.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// An assistant message being built from chunks.
///
/// Parts are only ever appended, so the indexes below stay valid; they make every
/// chunk cost time proportional to its own size, not to the message's (the chunks
/// come from the CLI's output, which is hostile input).
#[derive(Debug, Clone)]
pub struct Folded {
    id: String,
    parts: Vec<Value>,
    metadata: Map<String, Value>,
    /// Text parts still streaming, oldest first (deltas go to the last).
    texts: Vec<usize>,
    /// Reasoning parts still streaming, oldest first.
    reasonings: Vec<usize>,
    /// Tool parts by tool call id (the latest part of an id).
    tools: HashMap<String, usize>,
    /// Data parts by (type, id).
    data: HashMap<(String, String), usize>,
}

impl Folded {
    /// An empty assistant message.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            parts: Vec::new(),
            metadata: Map::new(),
            texts: Vec::new(),
            reasonings: Vec::new(),
            tools: HashMap::new(),
            data: HashMap::new(),
        }
    }

    /// The message as a `UIMessage`.
    pub fn message(&self) -> Value {
        let mut message = json!({ "id": self.id, "role": "assistant", "parts": self.parts });
        if !self.metadata.is_empty() {
            message["metadata"] = Value::Object(self.metadata.clone());
        }
        message
    }

    fn tool(&mut self, id: &str) -> Option<&mut Value> {
        let index = *self.tools.get(id)?;
        self.parts.get_mut(index)
    }

    fn push(&mut self, part: Value) -> usize {
        self.parts.push(part);
        self.parts.len() - 1
    }

    /// Applies one chunk.
    pub fn apply(&mut self, chunk: &Value) {
        let call = chunk["toolCallId"].as_str().unwrap_or_default();
        match chunk["type"].as_str().unwrap_or_default() {
            "start-step" => {
                self.push(json!({ "type": "step-start" }));
            }
            "text-start" => {
                let index = self.push(json!({ "type": "text", "text": "", "state": "streaming" }));
                self.texts.push(index);
            }
            "reasoning-start" => {
                let index =
                    self.push(json!({ "type": "reasoning", "text": "", "state": "streaming" }));
                self.reasonings.push(index);
            }
            kind @ ("text-delta" | "reasoning-delta") => {
                let open = if kind == "text-delta" {
                    &self.texts
                } else {
                    &self.reasonings
                };
                let delta = chunk["delta"].as_str().unwrap_or_default();
                if let Some(Value::String(text)) = open
                    .last()
                    .and_then(|&i| self.parts.get_mut(i))
                    .and_then(|p| p.get_mut("text"))
                {
                    // Appended in place: a delta costs its own length.
                    text.push_str(delta);
                }
            }
            kind @ ("text-end" | "reasoning-end") => {
                let open = if kind == "text-end" {
                    &mut self.texts
                } else {
                    &mut self.reasonings
                };
                if let Some(part) = open.pop().and_then(|i| self.parts.get_mut(i)) {
                    part["state"] = json!("done");
                }
            }
            "tool-input-start" => {
                let index = self.push(json!({
                    "type": "dynamic-tool",
                    "toolName": chunk["toolName"],
                    "toolCallId": call,
                    "state": "input-streaming",
                    "input": null,
                    "providerExecuted": true,
                }));
                self.tools.insert(call.to_owned(), index);
            }
            "tool-input-available" => {
                if self.tool(call).is_none() {
                    self.apply(&json!({ "type": "tool-input-start", "toolCallId": call,
                                        "toolName": chunk["toolName"] }));
                }
                if let Some(part) = self.tool(call) {
                    part["state"] = json!("input-available");
                    part["input"] = chunk["input"].clone();
                }
            }
            "tool-output-available" => {
                if let Some(part) = self.tool(call) {
                    part["state"] = json!("output-available");
                    part["output"] = chunk["output"].clone();
                }
            }
            "tool-output-error" => {
                if let Some(part) = self.tool(call) {
                    part["state"] = json!("output-error");
                    part["errorText"] = chunk["errorText"].clone();
                }
            }
            "message-metadata" | "start" | "finish" => {
                if let Some(Value::Object(meta)) = chunk.get("messageMetadata") {
                    merge(&mut self.metadata, meta);
                }
            }
            kind if kind.starts_with("data-") && chunk.get("transient") != Some(&json!(true)) => {
                let mut part = json!({ "type": kind, "data": chunk["data"] });
                let Some(id) = chunk.get("id") else {
                    self.push(part);
                    return;
                };
                part["id"] = id.clone();
                // Keyed by the id's JSON text: ids are strings, but nothing makes them so.
                let key = (kind.to_owned(), id.to_string());
                match self.data.get(&key).and_then(|&i| self.parts.get_mut(i)) {
                    Some(existing) => *existing = part,
                    None => {
                        let index = self.push(part);
                        self.data.insert(key, index);
                    }
                }
            }
            _ => {}
        }
    }

    /// Marks every part still streaming as done (a turn that ended abruptly).
    pub fn settle(&mut self) {
        for index in self.texts.drain(..).chain(self.reasonings.drain(..)) {
            if let Some(part) = self.parts.get_mut(index) {
                part["state"] = json!("done");
            }
        }
    }
}

/// Deep-merges `from` into `into`, as the client merges message metadata.
fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_text_tools_and_metadata() {
        let mut f = Folded::new("a1");
        for c in [
            json!({"type": "start", "messageId": "a1"}),
            json!({"type": "start-step"}),
            json!({"type": "text-start", "id": "m:0"}),
            json!({"type": "text-delta", "id": "m:0", "delta": "Hel"}),
            json!({"type": "text-delta", "id": "m:0", "delta": "lo"}),
            json!({"type": "text-end", "id": "m:0"}),
            json!({"type": "tool-input-start", "toolCallId": "t", "toolName": "Bash"}),
            json!({"type": "tool-input-delta", "toolCallId": "t", "inputTextDelta": "{"}),
            json!({"type": "tool-input-available", "toolCallId": "t", "toolName": "Bash", "input": {"command": "ls"}}),
            json!({"type": "finish-step"}),
            json!({"type": "tool-output-available", "toolCallId": "t", "output": "x"}),
            json!({"type": "message-metadata", "messageMetadata": {"sessionId": "s", "usage": {"a": 1}}}),
            json!({"type": "message-metadata", "messageMetadata": {"usage": {"b": 2}}}),
            json!({"type": "finish"}),
        ] {
            f.apply(&c);
        }
        assert_eq!(
            f.message(),
            json!({
                "id": "a1", "role": "assistant",
                "parts": [
                    {"type": "step-start"},
                    {"type": "text", "text": "Hello", "state": "done"},
                    {"type": "dynamic-tool", "toolName": "Bash", "toolCallId": "t",
                     "state": "output-available", "input": {"command": "ls"},
                     "output": "x", "providerExecuted": true}
                ],
                "metadata": {"sessionId": "s", "usage": {"a": 1, "b": 2}}
            })
        );
    }

    #[test]
    fn settle_finishes_interrupted_parts() {
        let mut f = Folded::new("a");
        f.apply(&json!({"type": "text-start", "id": "x"}));
        f.apply(&json!({"type": "text-delta", "id": "x", "delta": "par"}));
        f.settle();
        assert_eq!(f.message()["parts"][0]["state"], "done");
        assert_eq!(f.message()["parts"][0]["text"], "par");
    }
}

//! Folds UI message stream chunks into the assistant `UIMessage` the way the AI SDK's
//! client does, so what is persisted equals what a client that watched the stream holds.

use serde_json::{json, Map, Value};

/// An assistant message being built from chunks.
#[derive(Debug, Clone)]
pub struct Folded {
    id: String,
    parts: Vec<Value>,
    metadata: Map<String, Value>,
}

impl Folded {
    /// An empty assistant message.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            parts: Vec::new(),
            metadata: Map::new(),
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

    fn find(&mut self, kind: &str, key: &str, id: &str) -> Option<&mut Value> {
        self.parts
            .iter_mut()
            .rev()
            .find(|p| p["type"] == kind && p[key] == id)
    }

    fn tool(&mut self, id: &str) -> Option<&mut Value> {
        self.find("dynamic-tool", "toolCallId", id)
    }

    /// Applies one chunk.
    pub fn apply(&mut self, chunk: &Value) {
        let id = chunk["id"].as_str().unwrap_or_default().to_owned();
        let call = chunk["toolCallId"].as_str().unwrap_or_default().to_owned();
        match chunk["type"].as_str().unwrap_or_default() {
            "start-step" => self.parts.push(json!({ "type": "step-start" })),
            "text-start" => self
                .parts
                .push(json!({ "type": "text", "text": "", "state": "streaming" })),
            "reasoning-start" => self
                .parts
                .push(json!({ "type": "reasoning", "text": "", "state": "streaming" })),
            kind @ ("text-delta" | "reasoning-delta") => {
                let part_type = if kind == "text-delta" {
                    "text"
                } else {
                    "reasoning"
                };
                let delta = chunk["delta"].as_str().unwrap_or_default();
                if let Some(part) = self
                    .parts
                    .iter_mut()
                    .rev()
                    .find(|p| p["type"] == part_type && p["state"] == "streaming")
                {
                    let text = format!("{}{delta}", part["text"].as_str().unwrap_or_default());
                    part["text"] = Value::String(text);
                }
            }
            kind @ ("text-end" | "reasoning-end") => {
                let part_type = if kind == "text-end" {
                    "text"
                } else {
                    "reasoning"
                };
                if let Some(part) = self
                    .parts
                    .iter_mut()
                    .rev()
                    .find(|p| p["type"] == part_type && p["state"] == "streaming")
                {
                    part["state"] = json!("done");
                }
                let _ = id;
            }
            "tool-input-start" => self.parts.push(json!({
                "type": "dynamic-tool",
                "toolName": chunk["toolName"],
                "toolCallId": call,
                "state": "input-streaming",
                "input": null,
                "providerExecuted": true,
            })),
            "tool-input-available" => {
                if self.tool(&call).is_none() {
                    self.apply(&json!({ "type": "tool-input-start", "toolCallId": call,
                                        "toolName": chunk["toolName"] }));
                }
                if let Some(part) = self.tool(&call) {
                    part["state"] = json!("input-available");
                    part["input"] = chunk["input"].clone();
                }
            }
            "tool-output-available" => {
                if let Some(part) = self.tool(&call) {
                    part["state"] = json!("output-available");
                    part["output"] = chunk["output"].clone();
                }
            }
            "tool-output-error" => {
                if let Some(part) = self.tool(&call) {
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
                if let Some(id) = chunk.get("id") {
                    part["id"] = id.clone();
                    if let Some(existing) = self
                        .parts
                        .iter_mut()
                        .find(|p| p["type"] == kind && p.get("id") == Some(id))
                    {
                        *existing = part;
                        return;
                    }
                }
                self.parts.push(part);
            }
            _ => {}
        }
    }

    /// Marks every part still streaming as done (a turn that ended abruptly).
    pub fn settle(&mut self) {
        for part in &mut self.parts {
            if part["state"] == "streaming" {
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

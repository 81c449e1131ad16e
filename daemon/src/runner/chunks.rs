//! UI message stream chunks that every runtime's translator emits the same way.

use serde_json::{json, Map, Value};

/// A chunk of type `kind` with `fields`.
pub fn chunk(kind: &str, fields: Value) -> Value {
    let mut map = Map::new();
    map.insert("type".into(), Value::String(kind.into()));
    if let Value::Object(extra) = fields {
        map.extend(extra);
    }
    Value::Object(map)
}

/// A `tool-input-start` chunk of a tool run in the sandbox.
pub fn tool_input_start(id: &str, name: &str) -> Value {
    chunk(
        "tool-input-start",
        json!({ "toolCallId": id, "toolName": name, "providerExecuted": true, "dynamic": true }),
    )
}

/// A `tool-input-available` chunk of a tool run in the sandbox.
pub fn tool_input_available(id: &str, name: &str, input: Value) -> Value {
    chunk(
        "tool-input-available",
        json!({ "toolCallId": id, "toolName": name, "input": input,
                "providerExecuted": true, "dynamic": true }),
    )
}

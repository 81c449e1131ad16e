//! Which reply of the script a request gets: the script is played per conversation.
//! A request's reply is the script's entry number N, where N is how many assistant
//! messages its conversation already holds: the first request of every conversation
//! gets the first reply, the request after a tool result the next one, and a later
//! turn of the same thread (the conversation so far, resumed) continues the script.
//! So the same chat gives the same stream every time, in any order and in parallel,
//! and a retried request gets the same reply again.
//!
//! One script can hold the replies of many conversations: a reply with `"prompt": "…"`
//! answers the turns whose prompt (the user's words: the last text of the latest user
//! message that is not a tool result) contains that text, the first such reply the
//! turn's first request, the next one the request after it (a tool result), and so on.
//! The replies without a prompt are the script of every other conversation, by the
//! count above.
//!
//! A scripted tool call may name a tool by its short name (`save_note`): when the
//! request offers no tool of that name but exactly one MCP tool `mcp__<server>__save_note`,
//! the call goes to that one, so a test need not know the server name.

use serde_json::Value;

use super::Reply;

/// The reply for a Messages API request body, if the script has one.
pub fn pick<'a>(replies: &'a [Reply], body: &Value) -> Option<&'a Reply> {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // The turn: from the latest user prompt on.
    let start = messages.iter().rposition(is_prompt);
    if let Some(start) = start {
        let prompt = last_text(&messages[start]);
        let mine = |r: &&Reply| {
            r.prompt
                .as_ref()
                .is_some_and(|p| prompt.contains(p.as_str()))
        };
        if replies.iter().any(|r| mine(&r)) {
            let index = messages[start..]
                .iter()
                .filter(|m| m["role"] == "assistant")
                .count();
            return replies.iter().filter(mine).nth(index);
        }
    }
    replies
        .iter()
        .filter(|r| r.prompt.is_none())
        .nth(reply_index(body))
}

/// Whether a message is a user's prompt (not a tool result).
fn is_prompt(message: &Value) -> bool {
    if message["role"] != "user" {
        return false;
    }
    match &message["content"] {
        Value::String(_) => true,
        Value::Array(blocks) => !blocks.iter().any(|b| b["type"] == "tool_result"),
        _ => false,
    }
}

/// The last text of a message.
fn last_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .rev()
            .find_map(|b| b["text"].as_str())
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// The index of the reply for a Messages API request body.
pub fn reply_index(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .map(|messages| messages.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0)
}

/// The tool name to call: `name` itself, or the one MCP tool of the request ending in
/// `__name`.
pub fn tool_name(body: &Value, name: &str) -> String {
    let offered: Vec<&str> = body["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    if offered.contains(&name) {
        return name.to_owned();
    }
    let suffix = format!("__{name}");
    let mut matches = offered
        .iter()
        .filter(|t| t.starts_with("mcp__") && t.ends_with(&suffix));
    match (matches.next(), matches.next()) {
        (Some(only), None) => (*only).to_owned(),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_conversation_plays_the_script_from_its_start() {
        let first = json!({"messages": [{"role": "user", "content": "hi"}]});
        let after_tool = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use"}]},
            {"role": "user", "content": [{"type": "tool_result"}]}]});
        assert_eq!(reply_index(&first), 0);
        assert_eq!(reply_index(&first), 0, "again: the same reply");
        assert_eq!(reply_index(&after_tool), 1);
    }

    #[test]
    fn replies_can_belong_to_prompts() {
        let script = crate::scripted::parse_script(
            r#"[{"text": "default"}, {"text": "a1", "prompt": "alpha"},
                {"text": "a2", "prompt": "alpha"}]"#,
        )
        .expect("script");
        let alpha = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>not beta</system-reminder>"},
            {"type": "text", "text": "please alpha"}]}]});
        assert_eq!(
            pick(&script, &alpha).and_then(|r| r.text.as_deref()),
            Some("a1")
        );
        let other = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>alpha</system-reminder>"},
            {"type": "text", "text": "beta"}]}]});
        assert_eq!(
            pick(&script, &other).and_then(|r| r.text.as_deref()),
            Some("default")
        );
        let later = json!({"messages": [{"role": "user", "content": "beta"},
            {"role": "assistant", "content": "default"}, {"role": "user", "content": "more"}]});
        assert!(pick(&script, &later).is_none(), "past the script");
        let next_turn = json!({"messages": [{"role": "user", "content": "beta"},
            {"role": "assistant", "content": "default"}, {"role": "user", "content": "now alpha"},
            {"role": "assistant", "content": [{"type": "tool_use"}]},
            {"role": "user", "content": [{"type": "tool_result"}, {"type": "text", "text": "x"}]}]});
        assert_eq!(
            pick(&script, &next_turn).and_then(|r| r.text.as_deref()),
            Some("a2")
        );
    }

    #[test]
    fn short_tool_names_find_their_mcp_tool() {
        let body = json!({"tools": [{"name": "Bash"}, {"name": "mcp__agent__save_note"}]});
        assert_eq!(tool_name(&body, "save_note"), "mcp__agent__save_note");
        assert_eq!(tool_name(&body, "Bash"), "Bash");
        assert_eq!(tool_name(&body, "missing"), "missing");
    }
}

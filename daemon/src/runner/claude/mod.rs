//! The Claude Code runtime: how its CLI is started for a turn (its arguments and
//! environment, from the agent's definition and the request's overrides), its
//! control channel (permission questions, interrupts) and where it records sessions.
//! Its `stream-json` output is translated by [`translate`].

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

mod translate;

use super::runtime::DEFAULT_PERMISSION_MODE;
use super::runtime::{Ask, Interrupt, Launch, Runtime, Session, Translate, TurnInput, TurnOptions};
use crate::agents::{AgentDef, SystemPrompt};
use crate::init_client::{InitClient, InitError};
use crate::threads::PermissionReply;
use sandbox_init::protocol::ErrorKind;

/// The CLI's arguments (without the program).
pub fn args(agent: &AgentDef, options: &TurnOptions, session: &Session) -> Vec<String> {
    let mut args: Vec<String> = [
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--include-partial-messages",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mode = options
        .permission_mode
        .clone()
        .or_else(|| agent.permission_mode.clone())
        .unwrap_or_else(|| DEFAULT_PERMISSION_MODE.to_owned());
    if mode != "bypassPermissions" {
        // Whatever the mode leaves to a prompt is asked on the control channel, and
        // the runner takes it to the clients.
        args.extend(["--permission-prompt-tool".into(), "stdio".into()]);
    }
    args.extend(["--permission-mode".into(), mode]);
    if let Some(effort) = &options.effort {
        args.extend(["--effort".into(), effort.clone()]);
    }
    if let Some(model) = options.model.as_ref().or(agent.model.as_ref()) {
        args.extend(["--model".into(), model.clone()]);
    }
    match options
        .system_prompt
        .as_ref()
        .or(agent.system_prompt.as_ref())
    {
        Some(SystemPrompt::Text(text)) => args.extend(["--system-prompt".into(), text.clone()]),
        Some(SystemPrompt::Preset {
            append: Some(append),
            ..
        }) => args.extend(["--append-system-prompt".into(), append.clone()]),
        Some(SystemPrompt::Preset { append: None, .. }) | None => {}
    }
    if let Some(turns) = options.max_turns.or(agent.max_turns) {
        args.extend(["--max-turns".into(), turns.to_string()]);
    }
    if let Some(budget) = options.max_budget_usd.or(agent.max_budget_usd) {
        args.extend(["--max-budget-usd".into(), budget.to_string()]);
    }
    let disallowed = options
        .disallowed_tools
        .clone()
        .unwrap_or_else(|| agent.disallowed_tools.clone());
    if !disallowed.is_empty() {
        args.extend(["--disallowedTools".into(), disallowed.join(",")]);
    }
    if let Some(servers) = agent.mcp_servers.as_ref().filter(|s| !s.is_empty()) {
        let config = serde_json::json!({ "mcpServers": servers });
        args.extend(["--mcp-config".into(), config.to_string()]);
    }
    match session {
        // Equals form: a value starting with '-' must not be read as a flag.
        Session::Start(id) => args.push(format!("--session-id={id}")),
        Session::Resume(id) => args.push(format!("--resume={id}")),
    }
    args
}

/// The CLI's environment: the sandbox's own model endpoint and token, and no
/// traffic beyond the model.
pub fn env(base_url: &str, token: &str) -> Vec<(String, String)> {
    [
        ("HOME", "/home/user"),
        ("ANTHROPIC_BASE_URL", base_url),
        ("ANTHROPIC_API_KEY", token),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_TELEMETRY", "1"),
        ("DISABLE_ERROR_REPORTING", "1"),
        ("CLAUDE_CODE_DISABLE_TERMINAL_TITLE", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The Claude Code runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claude;

impl Runtime for Claude {
    fn name(&self) -> &'static str {
        "claude-code"
    }

    fn cli(&self) -> &'static str {
        "the Claude Code CLI"
    }

    fn missing_hint(&self) -> &'static str {
        "start the daemon with --claude-bin, or use an image that has `claude`"
    }

    fn check(&self, _agent: &AgentDef, _options: &TurnOptions) -> Result<(), String> {
        Ok(())
    }

    fn launch(&self, input: &TurnInput<'_>) -> Result<Launch, String> {
        let mut argv = vec![input.program.to_owned()];
        argv.extend(args(input.agent, input.options, input.session));
        let user_line = json!({
            "type": "user",
            "message": { "role": "user", "content": input.prompt },
            "parent_tool_use_id": null,
            "session_id": "",
        });
        Ok(Launch {
            argv,
            env: env(input.base_url, input.token),
            stdin: format!("{user_line}\n").into_bytes(),
            // Kept open for the control channel; the CLI exits when it closes.
            close_stdin: false,
            files: Vec::new(),
        })
    }

    fn translator(&self, state: &Value) -> Box<dyn Translate> {
        Box::new(translate::Translator::resuming(state))
    }

    /// Claude Code records session `id` as `~/.claude/projects/<cwd>/<id>.jsonl`.
    fn session_recorded<'a>(&'a self, init: &'a InitClient, id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let file = format!("{id}.jsonl");
            match init
                .list("/home/user/.claude/projects", 2, crate::names::USER)
                .await
            {
                Ok(entries) => entries.iter().any(|e| e.name == file),
                Err(InitError::Remote {
                    kind: ErrorKind::NotFound,
                    ..
                }) => false,
                Err(_) => true,
            }
        })
    }

    fn interrupt(&self, message_id: &str) -> Interrupt {
        let line = json!({
            "type": "control_request",
            "request_id": format!("interrupt_{message_id}"),
            "request": { "subtype": "interrupt" }
        });
        Interrupt::Stdin(format!("{line}\n").into_bytes())
    }

    fn permission_request(&self, line: &Value) -> Option<Ask> {
        if line["type"] != "control_request" || line["request"]["subtype"] != "can_use_tool" {
            return None;
        }
        let request = &line["request"];
        Some(Ask {
            request_id: line["request_id"].as_str().unwrap_or_default().to_owned(),
            tool_call_id: request["tool_use_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            tool: request["tool_name"].as_str().unwrap_or_default().to_owned(),
            input: request["input"].clone(),
        })
    }

    fn permission_response(&self, ask: &Ask, reply: PermissionReply) -> Option<Vec<u8>> {
        let decision = match reply {
            PermissionReply::Once | PermissionReply::Always => {
                json!({ "behavior": "allow", "updatedInput": ask.input })
            }
            PermissionReply::Reject => json!({
                "behavior": "deny",
                "message": "The user rejected this tool call.",
            }),
        };
        let line = json!({
            "type": "control_response",
            "response": { "subtype": "success", "request_id": ask.request_id,
                          "response": decision },
        });
        Some(format!("{line}\n").into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::{PresetName, PresetTag};

    #[test]
    fn the_request_overrides_the_agent() {
        let agent = AgentDef {
            model: Some("agent-model".into()),
            max_turns: Some(9),
            disallowed_tools: vec!["WebFetch".into()],
            system_prompt: Some(SystemPrompt::Text("agent prompt".into())),
            ..Default::default()
        };
        let options = TurnOptions {
            model: Some("call-model".into()),
            system_prompt: Some(SystemPrompt::Preset {
                kind: PresetTag::Preset,
                preset: PresetName::ClaudeCode,
                append: Some("Be brief.".into()),
            }),
            disallowed_tools: Some(vec!["Bash".into(), "Write".into()]),
            max_budget_usd: Some(0.5),
            ..Default::default()
        };
        let a = args(&agent, &options, &Session::Resume("s-1".into())).join(" ");
        assert!(a.contains("--model call-model"), "{a}");
        assert!(a.contains("--append-system-prompt Be brief."), "{a}");
        assert!(!a.contains("--system-prompt "), "{a}");
        assert!(a.contains("--max-turns 9"), "{a}");
        assert!(a.contains("--max-budget-usd 0.5"), "{a}");
        assert!(a.contains("--disallowedTools Bash,Write"), "{a}");
        assert!(a.contains("--permission-mode bypassPermissions"), "{a}");
        assert!(!a.contains("--permission-prompt-tool"), "{a}");
        assert!(a.ends_with("--resume=s-1"), "{a}");
        let asking = TurnOptions {
            permission_mode: Some("default".into()),
            effort: Some("high".into()),
            ..Default::default()
        };
        let a = args(&agent, &asking, &Session::Start("s".into())).join(" ");
        assert!(
            a.contains("--permission-prompt-tool stdio --permission-mode default"),
            "{a}"
        );
        assert!(a.contains("--effort high"), "{a}");
    }

    #[test]
    fn a_first_turn_fixes_the_session_id() {
        let a = args(
            &AgentDef::default(),
            &TurnOptions::default(),
            &Session::Start("u".into()),
        );
        assert_eq!(a.last().map(String::as_str), Some("--session-id=u"));
        assert!(a.contains(&"--include-partial-messages".to_owned()));
    }
}

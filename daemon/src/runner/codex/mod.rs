//! The Codex runtime: a turn is one `codex exec --json` (OpenAI Codex CLI 0.171) in the
//! sandbox, as `user`, in the agent's cwd, its home (`~/.codex`, sessions included)
//! kept in the sandbox. The first turn records Codex's thread id; later turns run
//! `codex exec resume <id>`.
//!
//! Codex talks to the model through a custom provider pointed at the model proxy's
//! OpenAI route, its key read from `SANDBOXD_MODEL_TOKEN`: the sandbox's own token,
//! never the real key (Codex hands its whole environment to every command it runs and
//! snapshots it under its home). Codex's own sandbox cannot run in a container
//! (bubblewrap needs user namespaces), so it runs with approvals and its sandbox off:
//! the container is the boundary, as with Claude Code's `bypassPermissions`.
//!
//! What Codex has no equivalent for is refused ([`Codex::check`], a 422 at the API).

pub mod translate;

use futures_util::future::BoxFuture;
use sandbox_init::protocol::ExecRequest;
use serde_json::Value;

use super::runtime::DEFAULT_PERMISSION_MODE;
use super::runtime::{Interrupt, Launch, Runtime, Session, Translate, TurnInput, TurnOptions};
use crate::agents::{AgentDef, SystemPrompt};
use crate::init_client::InitClient;

/// The variable Codex reads its provider key from (the sandbox's token).
pub const TOKEN_ENV: &str = "SANDBOXD_MODEL_TOKEN";

/// Where Codex keeps its home in the sandbox (`$HOME/.codex`, its default).
pub const HOME: &str = "/home/user/.codex";

/// Thinking levels (`thinking`) Codex has (`model_reasoning_effort`).
const EFFORTS: &[&str] = &["low", "medium", "high", "xhigh"];

/// The Codex runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Codex;

/// A TOML string (a JSON string is one: the same escapes, `\uXXXX` included).
fn toml_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The prompt's text: a string, or the text blocks of content blocks (Codex exec
/// takes no inline images).
fn prompt_text(prompt: &Value) -> Result<String, String> {
    match prompt {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for block in blocks {
                match block["type"].as_str() {
                    Some("text") => parts.push(block["text"].as_str().unwrap_or_default()),
                    Some(other) => {
                        return Err(format!(
                            "the codex runtime takes text only; a {other} part cannot be sent \
                             to Codex"
                        ))
                    }
                    None => {}
                }
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err("the message has no text".into()),
    }
}

/// Where a system prompt that replaces Codex's own is written in the sandbox (Codex
/// reads it from a file; 0.171 ignores `base_instructions`): named by its content, so
/// threads with different prompts do not overwrite each other's.
fn instructions_file(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    format!("{HOME}/sandboxd/instructions-{:016x}.md", hasher.finish())
}

/// The arguments after `codex` (without the prompt, which goes on stdin).
pub fn args(
    agent: &AgentDef,
    options: &TurnOptions,
    session: &Session,
    base_url: &str,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["exec".into()];
    if matches!(session, Session::Resume(_)) {
        args.push("resume".into());
    }
    args.extend(
        [
            "--json",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
        ]
        .map(String::from),
    );
    if let Some(model) = options.model.as_ref().or(agent.model.as_ref()) {
        args.extend(["-m".into(), model.clone()]);
    }
    let provider = format!(
        "model_providers.sandboxd={{name={},base_url={},env_key={},wire_api=\"responses\"}}",
        toml_string("sandboxd"),
        toml_string(&format!("{}/v1", base_url.trim_end_matches('/'))),
        toml_string(TOKEN_ENV),
    );
    args.extend([
        "-c".into(),
        "model_provider=sandboxd".into(),
        "-c".into(),
        provider,
    ]);
    match options
        .system_prompt
        .as_ref()
        .or(agent.system_prompt.as_ref())
    {
        Some(SystemPrompt::Text(text)) => args.extend([
            "-c".into(),
            format!(
                "model_instructions_file={}",
                toml_string(&instructions_file(text))
            ),
        ]),
        Some(SystemPrompt::Preset {
            append: Some(append),
            ..
        }) => args.extend([
            "-c".into(),
            format!("developer_instructions={}", toml_string(append)),
        ]),
        Some(SystemPrompt::Preset { append: None, .. }) | None => {}
    }
    if let Some(effort) = &options.effort {
        args.extend([
            "-c".into(),
            format!("model_reasoning_effort={}", toml_string(effort)),
        ]);
    }
    if let Session::Resume(id) = session {
        // `--` so an id is never read as a flag.
        args.extend(["--".into(), id.clone()]);
    }
    // The prompt comes on stdin: safe for any text.
    args.push("-".into());
    args
}

impl Runtime for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn cli(&self) -> &'static str {
        "the Codex CLI"
    }

    fn missing_hint(&self) -> &'static str {
        "start the daemon with --codex-bin (scripts/serve installs it), or use an image \
         that has `codex`"
    }

    fn check(&self, agent: &AgentDef, options: &TurnOptions) -> Result<(), String> {
        let refuse = |setting: &str, why: &str| {
            Err(format!(
                "{setting} cannot be honoured by the codex runtime: {why}"
            ))
        };
        if options.max_turns.or(agent.max_turns).is_some() {
            return refuse("maxTurns", "Codex has no limit on the steps of a turn");
        }
        let disallowed = options
            .disallowed_tools
            .as_ref()
            .unwrap_or(&agent.disallowed_tools);
        if !disallowed.is_empty() {
            return refuse(
                "disallowedTools",
                "Codex cannot disable single tools (its shell runs every command)",
            );
        }
        if agent.mcp_servers.as_ref().is_some_and(|s| !s.is_empty()) {
            return refuse(
                "mcpServers",
                "sandboxd does not configure MCP servers for Codex",
            );
        }
        let mode = options
            .permission_mode
            .as_deref()
            .or(agent.permission_mode.as_deref())
            .unwrap_or(DEFAULT_PERMISSION_MODE);
        if mode != DEFAULT_PERMISSION_MODE {
            return refuse(
                &format!("permissionMode {mode:?}"),
                "Codex asks no approvals when run by the daemon and its own sandbox cannot run \
                 inside a container; only \"bypassPermissions\" (the sandbox is the boundary) \
                 can be honoured",
            );
        }
        if let Some(effort) = options.effort.as_deref() {
            if !EFFORTS.contains(&effort) {
                return refuse(
                    &format!("thinking {effort:?}"),
                    &format!("Codex's reasoning efforts are {}", EFFORTS.join(", ")),
                );
            }
        }
        Ok(())
    }

    fn launch(&self, input: &TurnInput<'_>) -> Result<Launch, String> {
        let prompt = prompt_text(input.prompt)?;
        let files = match input
            .options
            .system_prompt
            .as_ref()
            .or(input.agent.system_prompt.as_ref())
        {
            Some(SystemPrompt::Text(text)) => {
                vec![(instructions_file(text), text.clone().into_bytes())]
            }
            _ => Vec::new(),
        };
        let mut argv = vec![input.program.to_owned()];
        argv.extend(args(
            input.agent,
            input.options,
            input.session,
            input.base_url,
        ));
        Ok(Launch {
            argv,
            env: vec![
                ("HOME".into(), "/home/user".into()),
                (TOKEN_ENV.into(), input.token.to_owned()),
                ("NO_COLOR".into(), "1".into()),
            ],
            stdin: prompt.into_bytes(),
            close_stdin: true,
            files,
        })
    }

    fn translator(&self, state: &Value) -> Box<dyn Translate> {
        Box::new(translate::Translator::new(state))
    }

    /// Codex records a session as `~/.codex/sessions/YYYY/MM/DD/rollout-<ts>-<id>.jsonl`.
    fn session_recorded<'a>(&'a self, init: &'a InitClient, id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let request = ExecRequest {
                argv: [
                    "find",
                    &format!("{HOME}/sessions"),
                    "-name",
                    &format!("rollout-*-{id}.jsonl"),
                    "-print",
                    "-quit",
                ]
                .map(String::from)
                .to_vec(),
                env: Vec::new(),
                cwd: None,
                user: crate::names::USER.into(),
                timeout_ms: Some(10_000),
                stdin: false,
                output_limit: Some(4096),
            };
            match init.exec(request).await {
                // `find` fails when the directory does not exist: nothing recorded.
                Ok(found) => !found.stdout.is_empty(),
                Err(_) => true,
            }
        })
    }

    fn interrupt(&self, _message_id: &str) -> Interrupt {
        Interrupt::Signal(libc::SIGINT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::{PresetName, PresetTag};

    #[test]
    fn a_first_turn_and_a_resumed_one() {
        let agent = AgentDef {
            model: Some("gpt-5-codex".into()),
            system_prompt: Some(SystemPrompt::Text("Be \"terse\".\nAlways.".into())),
            ..Default::default()
        };
        let options = TurnOptions {
            effort: Some("high".into()),
            ..Default::default()
        };
        let a = args(
            &agent,
            &options,
            &Session::Start("x".into()),
            "http://10.0.0.1:9/",
        );
        let text = a.join(" ");
        assert_eq!(&a[..2], ["exec", "--json"]);
        assert!(text.contains("-m gpt-5-codex"), "{text}");
        assert!(
            text.contains(r#"base_url="http://10.0.0.1:9/v1",env_key="SANDBOXD_MODEL_TOKEN""#),
            "{text}"
        );
        assert!(
            text.contains(r#"model_instructions_file="/home/user/.codex/sandboxd/instructions-"#),
            "{text}"
        );
        assert!(text.contains(r#"model_reasoning_effort="high""#), "{text}");
        assert_eq!(a.last().map(String::as_str), Some("-"));
        let r = args(&agent, &options, &Session::Resume("-id".into()), "http://h");
        assert_eq!(&r[..3], ["exec", "resume", "--json"]);
        assert_eq!(&r[r.len() - 3..], ["--", "-id", "-"]);
        let preset = AgentDef {
            system_prompt: Some(SystemPrompt::Preset {
                kind: PresetTag::Preset,
                preset: PresetName::ClaudeCode,
                append: Some("extra".into()),
            }),
            ..Default::default()
        };
        let p = args(
            &preset,
            &TurnOptions::default(),
            &Session::Start("x".into()),
            "h",
        );
        assert!(
            p.contains(&r#"developer_instructions="extra""#.to_owned()),
            "{p:?}"
        );
    }

    #[test]
    fn what_codex_cannot_honour_is_refused_by_name() {
        let ok = AgentDef::default();
        Codex.check(&ok, &TurnOptions::default()).expect("plain");
        for (agent, options, named) in [
            (
                AgentDef {
                    max_turns: Some(3),
                    ..Default::default()
                },
                TurnOptions::default(),
                "maxTurns",
            ),
            (
                ok.clone(),
                TurnOptions {
                    disallowed_tools: Some(vec!["Bash".into()]),
                    ..Default::default()
                },
                "disallowedTools",
            ),
            (
                ok.clone(),
                TurnOptions {
                    permission_mode: Some("plan".into()),
                    ..Default::default()
                },
                "permissionMode",
            ),
            (
                ok.clone(),
                TurnOptions {
                    effort: Some("max".into()),
                    ..Default::default()
                },
                "thinking",
            ),
        ] {
            let e = Codex.check(&agent, &options).expect_err(named);
            assert!(e.contains(named) && e.contains("codex"), "{e}");
        }
    }

    #[test]
    fn prompts_are_text() {
        assert_eq!(prompt_text(&Value::from("hi")).as_deref(), Ok("hi"));
        let blocks =
            serde_json::json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        assert_eq!(prompt_text(&blocks).as_deref(), Ok("a\n\nb"));
        let image = serde_json::json!([{"type": "image", "source": {}}]);
        assert!(prompt_text(&image).unwrap_err().contains("image"));
    }
}

//! What a turn of an agent defined in code adds to the Claude Code CLI, and the files
//! it puts into the sandbox first.
//!
//! - Tools: the agent's bundle and the runtime are written (as root, read-only to
//!   `user`) under `/opt/sandboxd/agent/<bundle hash>/`; Claude Code starts the runtime
//!   as a stdio MCP server named `agent` (`--mcp-config`), so the tool `save_note` is
//!   offered to the model as `mcp__agent__save_note`. A call runs under Node as `user`
//!   in the sandbox: input validated with the tool's zod schema, `execute(args, context)`
//!   bounded in time, its content (or error) the tool result.
//! - Hooks: Claude Code command hooks (`--settings`) run the runtime, which calls the
//!   agent's hook: `SessionStart` → `onStart`, `PreToolUse` → `onToolCall` (returning
//!   `false` denies the call and the model is told), `PostToolUse` and
//!   `PostToolUseFailure` → `onToolResult`, `PostToolBatch` → `onStepFinish`. A hook
//!   that throws or hangs past its bound lets the turn go on; the runtime reports it as
//!   a system message, which the runner records in the thread's events ([`hook_event`]).
//! - `onFinish` and `onError` are run by the daemon once the turn has ended ([`after`]),
//!   in the sandbox under Node as `user` like the others: `onFinish` with the result,
//!   cost, usage, duration and turns the CLI reported, `onError` when the turn ended in
//!   an error (a failed model request, a limit, a CLI that crashed). Claude Code's own
//!   `Stop` hook runs before the CLI knows the turn's cost, and its `StopFailure` hook
//!   did not run for failed model requests. One that throws, hangs or never yields is
//!   stopped after its bound and recorded in the thread's events.
//! - Environment: the agent's variables (`sandboxd env set`) are in the CLI's
//!   environment, so tools and hooks get them as `process.env` and `context.env`.

use std::path::Path;

use serde_json::{json, Value};

use super::code::{bundles_dir, AgentCode, MAX_BUNDLE, RUNTIME_JS, TOOLS_SERVER};
use super::AgentDef;
use crate::init_client::InitClient;
use sandbox_init::protocol::ExecRequest;

/// Where the agent's code goes in a sandbox.
pub const DIR: &str = "/opt/sandboxd/agent";

/// How long a hook may run.
pub const HOOK_TIMEOUT_MS: u64 = 10_000;

/// The marker of a failed hook in a system message.
const HOOK_MARKER: &str = "[sandboxd agent hook]";

/// What a turn of a code agent adds.
#[derive(Debug, Default)]
pub struct CodeTurn {
    /// Written into the sandbox as root before the CLI starts: (path, content, mode).
    pub files: Vec<(String, Vec<u8>, Option<u32>)>,
    /// Extra CLI arguments.
    pub args: Vec<String>,
    /// Extra environment of the CLI.
    pub env: Vec<(String, String)>,
    /// The hooks the daemon runs when the turn has ended.
    pub after: Option<AfterTurn>,
}

/// `onFinish` / `onError` of a code agent, run by the daemon after a turn.
#[derive(Debug, Clone)]
pub struct AfterTurn {
    runtime: String,
    entry: String,
    env: Vec<(String, String)>,
    on_finish: bool,
    on_error: bool,
}

/// How a turn ended, for [`after`].
#[derive(Debug, Clone, Default)]
pub struct Ended {
    /// The turn's error, for a person (`None`: it succeeded).
    pub error: Option<String>,
    /// The result text the CLI reported.
    pub text: String,
    /// The result's subtype (`success`, `error_max_turns`, …).
    pub subtype: String,
    /// Cost in USD.
    pub cost_usd: f64,
    /// Wall time, in milliseconds.
    pub duration_ms: u64,
    /// Model turns.
    pub turns: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
}

/// Prepares the turn: adds the tools' MCP server to `agent.mcp_servers` (so the CLI's
/// `--mcp-config` carries it) and returns the rest.
pub fn prepare(
    agent: &mut AgentDef,
    state_dir: &Path,
    vars: Vec<(String, String)>,
    tool_timeout_ms: u64,
) -> Result<CodeTurn, String> {
    let mut turn = CodeTurn::default();
    if !vars.is_empty() {
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        turn.env
            .push(("SANDBOXD_AGENT_ENV".into(), names.join(",")));
    }
    turn.env.extend(vars);
    let Some(code) = agent.code.clone() else {
        return Ok(turn);
    };
    let bundle = read_bundle(state_dir, &code)?;
    let dir = format!("{DIR}/{}", code.bundle);
    let runtime = format!("{dir}/runtime.mjs");
    let entry = format!("{dir}/agent.mjs");
    turn.files = vec![
        (runtime.clone(), RUNTIME_JS.as_bytes().to_vec(), Some(0o644)),
        (entry.clone(), bundle, Some(0o644)),
    ];
    turn.env.push((
        "SANDBOXD_TOOL_TIMEOUT_MS".into(),
        tool_timeout_ms.to_string(),
    ));
    turn.env.push((
        "SANDBOXD_HOOK_TIMEOUT_MS".into(),
        HOOK_TIMEOUT_MS.to_string(),
    ));
    if let Some(model) = &agent.model {
        turn.env.push(("SANDBOXD_MODEL".into(), model.clone()));
    }
    if !code.tools.is_empty() || agent.mcp_servers.as_ref().is_some_and(|s| !s.is_empty()) {
        // Offer the agent's tools and its MCP servers' tools with every request, as the
        // platform does, instead of behind Claude Code's tool search.
        turn.env.push(("ENABLE_TOOL_SEARCH".into(), "false".into()));
    }
    if !code.tools.is_empty() {
        let servers = agent.mcp_servers.get_or_insert_with(Default::default);
        servers.insert(
            TOOLS_SERVER.into(),
            json!({ "type": "stdio", "command": "node", "args": [runtime, "mcp", entry] }),
        );
    }
    if let Some(settings) = hook_settings(&code, &runtime, &entry) {
        turn.args
            .extend(["--settings".into(), settings.to_string()]);
    }
    let has = |hook: &str| code.hooks.iter().any(|h| h == hook);
    if has("onFinish") || has("onError") {
        let mut env = turn.env.clone();
        env.push(("HOME".into(), crate::names::HOME.into()));
        turn.after = Some(AfterTurn {
            runtime,
            entry,
            env,
            on_finish: has("onFinish"),
            on_error: has("onError"),
        });
    }
    Ok(turn)
}

fn read_bundle(state_dir: &Path, code: &AgentCode) -> Result<Vec<u8>, String> {
    let path = bundles_dir(state_dir).join(format!("{}.mjs", code.bundle));
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "the bundle of {} is missing ({e}); reload the agents",
            code.path
        )
    })?;
    if bytes.len() as u64 > MAX_BUNDLE {
        return Err(format!("the bundle of {} is too large", code.path));
    }
    Ok(bytes)
}

/// Claude Code settings with a command hook for each hook the agent has.
fn hook_settings(code: &AgentCode, runtime: &str, entry: &str) -> Option<Value> {
    let mut hooks = serde_json::Map::new();
    for (hook, event) in [
        ("onStart", "SessionStart"),
        ("onToolCall", "PreToolUse"),
        ("onToolResult", "PostToolUse"),
        ("onToolResult", "PostToolUseFailure"),
        ("onStepFinish", "PostToolBatch"),
    ] {
        if !code.hooks.iter().any(|h| h == hook) {
            continue;
        }
        let command = format!("node {runtime} hook {event} {entry}");
        // The runtime stops the hook itself; Claude Code's own bound is a backstop.
        let handler = json!({ "type": "command", "command": command,
                              "timeout": HOOK_TIMEOUT_MS / 1000 + 5 });
        let matcher = if event.contains("ToolUse") || event == "PostToolBatch" {
            json!({ "matcher": "*", "hooks": [handler] })
        } else {
            json!({ "hooks": [handler] })
        };
        hooks.insert(event.into(), json!([matcher]));
    }
    (!hooks.is_empty()).then(|| json!({ "hooks": hooks }))
}

/// Writes the turn's files into the sandbox (as root, so `user` cannot change them).
pub async fn install(
    init: &InitClient,
    files: &[(String, Vec<u8>, Option<u32>)],
) -> Result<(), String> {
    if files.is_empty() {
        return Ok(());
    }
    let root = crate::names::ROOT;
    let parent = Path::new(&files[0].0).parent().unwrap_or(Path::new("/"));
    let mut dir = std::path::PathBuf::from("/");
    for part in parent.components().skip(1) {
        dir.push(part);
        // Exists already on later turns; a real failure shows in the write below.
        let _ = init.mkdir(&dir.to_string_lossy(), root).await;
    }
    init.write_files(files, root)
        .await
        .map(|_| ())
        .map_err(|e| format!("could not install the agent's code in the sandbox: {e}"))
}

/// How much longer than its own bound a hook the daemon runs may take before it is
/// killed (one that never yields cannot stop itself).
const AFTER_GRACE_MS: u64 = 2_000;

/// The longest result text given to `onFinish`.
const MAX_HOOK_TEXT: usize = 64 << 10;

/// Runs `onFinish` (the turn succeeded) or `onError` (it failed) in the sandbox, if the
/// agent has it; returns the thread event of a hook that failed.
pub async fn after(
    init: &InitClient,
    cwd: &str,
    hooks: &AfterTurn,
    ended: &Ended,
) -> Option<Value> {
    let (name, payload) = match &ended.error {
        Some(error) if hooks.on_error => ("onError", json!({ "error": { "message": error } })),
        None if hooks.on_finish => {
            let text: String = ended.text.chars().take(MAX_HOOK_TEXT).collect();
            let payload = json!({
                "result": { "text": text, "subtype": ended.subtype },
                "cost": ended.cost_usd,
                "duration": ended.duration_ms,
                "turns": ended.turns,
                "usage": { "inputTokens": ended.input_tokens, "outputTokens": ended.output_tokens },
            });
            ("onFinish", payload)
        }
        _ => return None,
    };
    let mut env = hooks.env.clone();
    env.push(("SANDBOXD_HOOK_PAYLOAD".into(), payload.to_string()));
    let request = ExecRequest {
        argv: vec![
            "node".into(),
            hooks.runtime.clone(),
            "run-hook".into(),
            name.into(),
            hooks.entry.clone(),
        ],
        env,
        cwd: Some(cwd.to_owned()),
        user: crate::names::USER.into(),
        // The runtime stops a hook that yields; this stops one that never does.
        timeout_ms: Some(HOOK_TIMEOUT_MS + AFTER_GRACE_MS),
        stdin: false,
        output_limit: Some(64 << 10),
    };
    let started = std::time::Instant::now();
    let failure = match init.exec(request).await {
        Err(e) => Some(format!("{name} could not run: {e}")),
        Ok(done) if done.exit.timed_out => Some(format!(
            "{name} failed: the {name} hook did not finish within {} ms and was killed",
            HOOK_TIMEOUT_MS + AFTER_GRACE_MS
        )),
        Ok(done) => {
            let stdout = String::from_utf8_lossy(&done.stdout);
            let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
            match last.and_then(|l| serde_json::from_str::<Value>(l).ok()) {
                Some(v) if v["ok"] == true => None,
                Some(v) if v["error"].is_string() => Some(format!(
                    "{name} failed: {}",
                    v["error"].as_str().unwrap_or_default()
                )),
                _ => {
                    let stderr = String::from_utf8_lossy(&done.stderr);
                    let tail: String = stderr.trim().chars().rev().take(1000).collect();
                    let tail: String = tail.chars().rev().collect();
                    Some(format!(
                        "{name} failed: the hook runner ended without a result: {tail}"
                    ))
                }
            }
        }
    };
    tracing::info!(
        hook = name,
        ms = started.elapsed().as_millis() as u64,
        failed = failure.is_some(),
        "agent hook ran after the turn"
    );
    failure.map(|message| {
        let message: String = message.chars().take(2000).collect();
        json!({ "sessionUpdate": "agent_hook_error", "message": message })
    })
}

/// The thread event for a CLI line reporting a failed hook, if it is one.
pub fn hook_event(line: &Value) -> Option<Value> {
    if line["type"] != "system" || line["subtype"] != "informational" {
        return None;
    }
    let content = line["content"].as_str()?;
    let at = content.find(HOOK_MARKER)?;
    let message: String = content[at + HOOK_MARKER.len()..]
        .trim()
        .chars()
        .take(2000)
        .collect();
    Some(json!({ "sessionUpdate": "agent_hook_error", "message": message }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::code::ToolInfo;

    #[test]
    fn a_code_agent_gets_its_tools_server_hooks_and_env() {
        let state = tempfile::tempdir().expect("tempdir");
        let dir = bundles_dir(state.path());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("abc.mjs"), "export default 1").expect("write");
        let mut agent = AgentDef {
            model: Some("m".into()),
            code: Some(AgentCode {
                path: "/p/agents/a.ts".into(),
                bundle: "abc".into(),
                tools: vec![ToolInfo {
                    name: "t".into(),
                    model_name: "mcp__agent__t".into(),
                    description: String::new(),
                    input_schema: json!({}),
                }],
                hooks: vec!["onToolCall".into(), "onFinish".into(), "onError".into()],
            }),
            ..Default::default()
        };
        let vars = vec![("TOKEN".to_owned(), "secret".to_owned())];
        let turn = prepare(&mut agent, state.path(), vars, 5000).expect("prepare");
        let server = &agent.mcp_servers.as_ref().expect("servers")["agent"];
        assert_eq!(server["args"][1], "mcp");
        assert_eq!(turn.files.len(), 2);
        assert!(turn.files[0].0.starts_with("/opt/sandboxd/agent/abc/"));
        let args = turn.args.join(" ");
        assert!(
            args.contains("PreToolUse") && !args.contains("PostToolUse"),
            "{args}"
        );
        // onFinish and onError are the daemon's to run, after the turn.
        assert!(!args.contains("Stop"), "{args}");
        let after = turn.after.as_ref().expect("after-turn hooks");
        assert!(after.on_finish && after.on_error);
        assert!(after.env.contains(&("TOKEN".into(), "secret".into())));
        assert!(!args.contains("secret"), "values stay out of the arguments");
        assert!(turn
            .env
            .contains(&("SANDBOXD_AGENT_ENV".into(), "TOKEN".into())));
        assert!(turn.env.contains(&("TOKEN".into(), "secret".into())));
    }

    #[test]
    fn failed_hooks_become_events() {
        let line = json!({"type": "system", "subtype": "informational",
            "content": "PreToolUse:Bash says: [sandboxd agent hook] onToolCall failed: boom"});
        assert_eq!(
            hook_event(&line).expect("event")["message"],
            "onToolCall failed: boom"
        );
        assert!(hook_event(&json!({"type": "system", "subtype": "init"})).is_none());
    }
}

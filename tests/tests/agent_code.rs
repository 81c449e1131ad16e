//! Agents written in TypeScript with the real `@21st-sdk/agent` and `zod` (the example
//! project's `node_modules`, installed by `scripts/test`), loaded in a container, their
//! tools and hooks run in the sandbox by the real Claude Code CLI against a scripted
//! model that calls the tools by name.

use std::time::Instant;

use sandboxd_e2e::{
    chat_ids, text_of, user_message, workspace, Daemon, Options, ScriptedModel, StatusCode,
};
use serde_json::{json, Value};

const TOOLS_AGENT: &str = r#"
import { agent, tool } from "@21st-sdk/agent"
import { z } from "zod"
import { mkdirSync, writeFileSync } from "node:fs"

export default agent({
  systemPrompt: "Use the tools.",
  tools: {
    write_file: tool({
      description: "Write a file under /home/user",
      inputSchema: z.object({ path: z.string(), text: z.string() }),
      execute: async ({ path, text }) => {
        mkdirSync(`/home/user/${path}`.replace(/\/[^/]*$/, ""), { recursive: true })
        writeFileSync(`/home/user/${path}`, text)
        return { content: [{ type: "text", text: `wrote ${path} as ${process.getuid()}` }] }
      },
    }),
    blocked_tool: tool({
      description: "Never runs: onToolCall blocks it",
      inputSchema: z.object({}),
      execute: async () => {
        writeFileSync("/home/user/blocked-ran", "yes")
        return { content: [{ type: "text", text: "ran" }] }
      },
    }),
    boom: tool({
      description: "Throws",
      inputSchema: z.object({}),
      execute: async () => { throw new Error("kaboom") },
    }),
    hang: tool({
      description: "Never returns",
      inputSchema: z.object({}),
      execute: () => new Promise(() => {}),
    }),
    spin: tool({
      description: "Blocks Node's event loop forever",
      inputSchema: z.object({}),
      execute: () => { while (true) {} },
    }),
    show_env: tool({
      description: "Reports whether the agent's variable arrived",
      inputSchema: z.object({}),
      execute: async (_args, context) => ({
        content: [{ type: "text", text: `token arrived: ${
          context.env?.API_TOKEN === "tok-SECRET-123" && process.env.API_TOKEN === "tok-SECRET-123"}` }],
      }),
    }),
  },
  onStart: async ({ sessionId }) => writeFileSync("/home/user/started.txt", sessionId),
  onToolCall: async ({ toolName }) => {
    if (toolName.endsWith("__blocked_tool")) return false
    if (toolName.endsWith("__hang")) return new Promise(() => {})
  },
  onStepFinish: async () => writeFileSync("/home/user/step.txt", "a step"),
  onFinish: async (payload) => {
    writeFileSync("/home/user/finished.json", JSON.stringify(payload))
    if (payload.result.text === "Finish spins.") while (true) {}
  },
  onError: async ({ error }) => {
    writeFileSync("/home/user/error.json", JSON.stringify({
      isError: error instanceof Error, message: error.message,
      token: process.env.API_TOKEN ?? null }))
    throw new Error("onError broke too")
  },
  onToolResult: async ({ toolName }) => {
    if (toolName.endsWith("__boom")) throw new Error("hook broke")
  },
})
"#;

const PLAIN_AGENT: &str = r#"
import { agent } from "@21st-sdk/agent"

export default agent({ maxTurns: 3, maxSandboxBudgetUsd: 0.001 })
"#;

/// A conversation of the script: its replies carry the prompt they answer.
fn conversation(prompt: &str, tool: &str, input: Value, then: &str) -> Vec<Value> {
    vec![
        json!({ "prompt": prompt,
                "toolUse": { "name": tool, "input": input, "id": call_id(prompt) } }),
        json!({ "prompt": prompt, "text": then }),
    ]
}

/// The tool call id of the conversation started by `prompt` (set by the script).
fn call_id(prompt: &str) -> String {
    format!("toolu_{}", prompt.replace('-', "_"))
}

/// The text of the tool result the model got in the conversation started by `prompt`.
fn tool_result(model: &ScriptedModel, prompt: &str) -> (String, bool) {
    let id = call_id(prompt);
    for request in model.requests() {
        for message in request["messages"].as_array().into_iter().flatten() {
            for block in message["content"].as_array().into_iter().flatten() {
                if block["type"] == "tool_result" && block["tool_use_id"] == id.as_str() {
                    let text = match &block["content"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    return (text, block["is_error"] == true);
                }
            }
        }
    }
    panic!("the model never got a tool result for {prompt:?}");
}

/// A chat of `slug` that must succeed; returns (sandbox, thread, chunks).
async fn chat(d: &Daemon, slug: &str, prompt: &str) -> (String, String, Vec<Value>) {
    let res = d
        .request("POST", &format!("/v1/chat/{slug}"))
        .json(&json!({ "messages": [user_message(prompt)] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::OK);
    let (sandbox, thread) = chat_ids(&res);
    let chunks = sandboxd_e2e::sse_chunks(&res.text().await.expect("body"));
    assert!(
        !chunks.iter().any(|c| c["type"] == "error"),
        "{prompt}: {chunks:?}"
    );
    (sandbox, thread, chunks)
}

/// A log line without its terminal colours.
fn without_colours(line: &str) -> String {
    let mut out = String::new();
    let mut escape = false;
    for c in line.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (false, c) => out.push(c),
            (true, 'm') => escape = false,
            (true, _) => {}
        }
    }
    out
}

#[tokio::test]
async fn typescript_agents_load_in_a_container_and_their_tools_and_hooks_run_in_the_sandbox() {
    let agents = sandboxd_e2e::ts_agents_dir();
    std::fs::write(agents.path().join("tools.ts"), TOOLS_AGENT).expect("write");
    std::fs::write(agents.path().join("plain.ts"), PLAIN_AGENT).expect("write");
    std::fs::write(
        agents.path().join("broken.ts"),
        "export default agent({ oops: \n",
    )
    .expect("write");
    std::fs::write(agents.path().join("noexport.ts"), "export const x = 1\n").expect("write");
    let state = sandboxd_e2e::StateDir::new();

    let mut script = Vec::new();
    for (prompt, tool, input, then) in [
        (
            "write-file",
            "write_file",
            json!({ "path": "out/hello.txt", "text": "hi from the tool" }),
            "The file is written.",
        ),
        ("blocked", "blocked_tool", json!({}), "It was blocked."),
        ("boom", "boom", json!({}), "It threw."),
        ("hang", "hang", json!({}), "It hung."),
        ("invalid", "write_file", json!({ "path": 42 }), "Bad input."),
        ("env", "show_env", json!({}), "Env checked."),
        ("spin", "spin", json!({}), "It spun."),
    ] {
        script.extend(conversation(prompt, tool, input, then));
    }
    // A failed model request ends the turn in an error: onError runs.
    script.push(json!({ "prompt": "fail", "error": { "status": 400,
        "type": "invalid_request_error", "message": "scripted refusal" } }));
    script.push(json!({ "prompt": "endless-finish", "text": "Finish spins." }));
    script.push(json!({ "prompt": "plain", "text": "Plain reply." }));
    let model = ScriptedModel::start(&Value::Array(script));
    let mut options = Options {
        reuse: Some((state.path().to_owned(), agents.path().to_owned())),
        ..Options::default()
    }
    .with_model(&model);
    options
        .args
        .extend(["--agent-tool-timeout-ms".into(), "3000".into()]);
    let d = Daemon::start_with(options).await;

    // Every good file loaded, with where it came from; the bad ones are reported.
    let (status, tools) = d.call("GET", "/v1/agents/tools", None).await;
    assert_eq!(status, StatusCode::OK, "{tools}");
    assert_eq!(tools["source"], "file");
    let code = &tools["definition"]["code"];
    assert!(
        code["path"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/tools.ts"),
        "{code}"
    );
    let names: Vec<&str> = code["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["modelName"].as_str())
        .collect();
    assert!(names.contains(&"mcp__agent__write_file"), "{names:?}");
    assert_eq!(
        code["tools"][0]["inputSchema"]["type"], "object",
        "zod became JSON Schema: {code}"
    );
    assert_eq!(
        code["hooks"],
        json!([
            "onStart",
            "onToolCall",
            "onToolResult",
            "onStepFinish",
            "onFinish",
            "onError"
        ])
    );
    // The package's defaults: a string prompt is appended to the Claude Code preset.
    assert_eq!(
        tools["definition"]["systemPrompt"],
        json!({ "type": "preset", "preset": "claude_code", "append": "Use the tools." })
    );
    assert_eq!(tools["definition"]["permissionMode"], "bypassPermissions");
    assert_eq!(
        d.call("GET", "/v1/agents/plain", None).await.0,
        StatusCode::OK
    );
    let (_, problems) = d.call("GET", "/v1/agents/problems", None).await;
    let problem = |file: &str| sandboxd_e2e::agent_problem(&problems, file);
    assert!(problem("broken.ts").contains("broken.ts:"), "{problems}");
    assert!(
        problem("noexport.ts").contains("export default agent"),
        "{problems}"
    );
    assert_eq!(
        d.call("GET", "/v1/agents/broken", None).await.0,
        StatusCode::NOT_FOUND
    );

    // Variables: set through the API, listed by name only.
    let (status, set) = d
        .call(
            "PUT",
            "/v1/agents/tools/env",
            Some(json!({ "vars": { "API_TOKEN": "tok-SECRET-123" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let (_, listed) = d.call("GET", "/v1/agents/tools/env", None).await;
    assert_eq!(listed, json!({ "names": ["API_TOKEN"] }));
    // And through the CLI, which prints names only.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(sandboxd_e2e::daemon_bin("debug"))
            .args(args)
            .args(["--url", &d.url])
            .env("SANDBOXD_API_KEY", &d.key)
            .output()
            .expect("sandboxd env");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let set = cli(&["env", "set", "tools", "OTHER", "cli-SECRET-456"]);
    assert!(
        set.contains("OTHER") && !set.contains("cli-SECRET"),
        "{set}"
    );
    assert_eq!(cli(&["env", "list", "tools"]), "API_TOKEN\nOTHER\n");
    cli(&["env", "remove", "tools", "OTHER"]);
    assert_eq!(cli(&["env", "list", "tools"]), "API_TOKEN\n");

    // A tool that writes a file: it runs in the sandbox as `user`, its text reaches the
    // model and the stream. The same chat three times in parallel plays the same script.
    let plain_started = Instant::now();
    let (plain_sandbox, plain_thread, plain) = chat(&d, "plain", "plain").await;
    let plain_ids = (plain_sandbox, plain_thread);
    let plain_ms = plain_started.elapsed().as_millis();
    assert_eq!(text_of(&plain), "Plain reply.");
    // maxSandboxBudgetUsd: that reply spent the plain agent's sandbox budget, so the
    // model proxy refuses the next turn's request.
    let (status, _, refused) = d
        .chat(
            "plain",
            json!({ "sandboxId": plain_ids.0, "threadId": plain_ids.1,
                    "messages": [user_message("plain again")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let error = refused
        .iter()
        .find(|c| c["type"] == "error")
        .unwrap_or_else(|| panic!("no error: {refused:?}"));
    assert!(error.to_string().contains("maxSandboxBudgetUsd"), "{error}");
    let tool_started = Instant::now();
    let first = chat(&d, "tools", "write-file").await;
    let tool_ms = tool_started.elapsed().as_millis();
    let (second, third) = tokio::join!(
        chat(&d, "tools", "write-file"),
        chat(&d, "tools", "write-file"),
    );
    for (sandbox, _, chunks) in [&first, &second, &third] {
        assert_eq!(text_of(chunks), "The file is written.");
        let input = chunks
            .iter()
            .find(|c| c["type"] == "tool-input-available")
            .expect("a tool call in the stream");
        assert_eq!(input["toolName"], "mcp__agent__write_file");
        let output = chunks
            .iter()
            .find(|c| c["type"] == "tool-output-available")
            .expect("its output in the stream");
        assert!(
            output.to_string().contains("wrote out/hello.txt as 1000"),
            "{output}"
        );
        let cat = d.exec(sandbox, "cat /home/user/out/hello.txt").await;
        assert_eq!(cat["stdout"], "hi from the tool", "{cat}");
    }
    // onStart and onStepFinish ran in the sandbox with their payloads; onFinish, run
    // after the turn, got the cost, usage and turns the CLI reported.
    let hooks = d
        .exec(
            &first.0,
            "cat /home/user/step.txt; echo; cat /home/user/started.txt; echo; \
             cat /home/user/finished.json",
        )
        .await;
    let out = hooks["stdout"].as_str().unwrap_or_default();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{hooks}");
    assert_eq!(lines[0], "a step", "onStepFinish: {hooks}");
    assert!(lines[1].len() > 8, "no session id: {hooks}");
    let finished: Value = serde_json::from_str(lines[2]).expect("onFinish's payload");
    assert_eq!(
        finished["result"],
        json!({ "text": "The file is written.", "subtype": "success" })
    );
    let cost = finished["cost"].as_f64().unwrap_or_default();
    assert!(cost > 0.0, "onFinish got no cost: {finished}");
    let metadata = first
        .2
        .iter()
        .find(|c| c["type"] == "message-metadata")
        .expect("metadata");
    assert_eq!(
        finished["cost"], metadata["messageMetadata"]["totalCostUsd"],
        "{metadata}"
    );
    assert!(
        finished["usage"]["inputTokens"].as_u64().unwrap_or(0) > 0,
        "{finished}"
    );
    assert!(
        finished["usage"]["outputTokens"].as_u64().unwrap_or(0) > 0,
        "{finished}"
    );
    assert_eq!(
        finished["turns"], 2,
        "a tool call and the reply: {finished}"
    );
    assert!(finished["duration"].as_u64().unwrap_or(0) > 0, "{finished}");
    let (text, is_error) = tool_result(&model, "write-file");
    assert!(text.contains("wrote out/hello.txt") && !is_error, "{text}");

    // onToolCall returning false: denied, the model told, the tool never ran.
    let (sandbox, _, _) = chat(&d, "tools", "blocked").await;
    let (text, is_error) = tool_result(&model, "blocked");
    assert!(
        is_error && text.contains("onToolCall hook blocked"),
        "{text}"
    );
    let ls = d
        .exec(&sandbox, "test -e /home/user/blocked-ran; echo $?")
        .await;
    assert_eq!(ls["stdout"], "1\n", "the blocked tool ran");

    // A throwing tool is an error result with its message; the throwing onToolResult
    // hook is in the thread's events and the turn still completed.
    let (sandbox, thread, chunks) = chat(&d, "tools", "boom").await;
    assert_eq!(text_of(&chunks), "It threw.");
    let (text, is_error) = tool_result(&model, "boom");
    assert!(is_error && text.contains("kaboom"), "{text}");
    let (_, events) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events?offset=0&limit=1000"),
            None,
        )
        .await;
    assert!(
        events
            .to_string()
            .contains("onToolResult failed: hook broke"),
        "{events}"
    );

    // A hanging tool is stopped after its bound; its hanging onToolCall hook too (the
    // call then goes on), recorded in the events; invalid input is an error result.
    let (sandbox, thread, _) = chat(&d, "tools", "hang").await;
    let (_, events) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events?offset=0&limit=1000"),
            None,
        )
        .await;
    assert!(
        events
            .to_string()
            .contains("onToolCall failed: the onToolCall hook did not finish within 10000 ms"),
        "{events}"
    );
    let (text, is_error) = tool_result(&model, "hang");
    assert!(
        is_error && text.contains("did not finish within 3000 ms"),
        "{text}"
    );
    chat(&d, "tools", "invalid").await;
    let (text, is_error) = tool_result(&model, "invalid");
    assert!(
        is_error && text.contains("invalid input for write_file"),
        "{text}"
    );

    // The variable reached the tool (context.env and process.env) and nothing shows it.
    chat(&d, "tools", "env").await;
    let (text, _) = tool_result(&model, "env");
    assert!(text.contains("token arrived: true"), "{text}");
    let (_, agent) = d.call("GET", "/v1/agents/tools", None).await;
    assert!(!agent.to_string().contains("tok-SECRET-123"));
    let (_, all) = d.call("GET", "/v1/agents", None).await;
    assert!(!all.to_string().contains("tok-SECRET-123"));
    assert!(
        !d.log_text().contains("tok-SECRET-123"),
        "the value was logged"
    );

    // A tool that blocks Node's event loop is stopped at its bound; the turn goes on.
    let (_, _, chunks) = chat(&d, "tools", "spin").await;
    assert_eq!(text_of(&chunks), "It spun.");
    let (text, is_error) = tool_result(&model, "spin");
    assert!(
        is_error && text.contains("spin failed: it did not finish within 3000 ms and was stopped"),
        "{text}"
    );

    // A turn that fails runs onError in the sandbox, with an Error and the agent's
    // variables; its throwing is recorded and the turn's own error is the stream's.
    let fail_started = Instant::now();
    let (status, headers, chunks) = d
        .chat("tools", json!({ "messages": [user_message("fail")] }))
        .await;
    let fail_ms = fail_started.elapsed().as_millis();
    assert_eq!(status, StatusCode::OK);
    let error = chunks
        .iter()
        .find(|c| c["type"] == "error")
        .unwrap_or_else(|| panic!("no error: {chunks:?}"));
    assert!(error.to_string().contains("scripted refusal"), "{error}");
    let header = |name: &str| headers[name].to_str().expect("an id").to_owned();
    let (sandbox, thread) = (header("x-sandbox-id"), header("x-thread-id"));
    let ran = d.exec(&sandbox, "cat /home/user/error.json").await;
    let ran: Value = serde_json::from_str(ran["stdout"].as_str().unwrap_or_default())
        .unwrap_or_else(|_| panic!("onError did not run: {ran}"));
    assert_eq!(ran["isError"], true, "{ran}");
    assert!(
        ran["message"]
            .as_str()
            .unwrap_or_default()
            .contains("scripted refusal"),
        "{ran}"
    );
    assert_eq!(ran["token"], "tok-SECRET-123");
    let (_, events) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events?offset=0&limit=1000"),
            None,
        )
        .await;
    assert!(
        events
            .to_string()
            .contains("onError failed: onError broke too"),
        "{events}"
    );
    let (_, got) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}"),
            None,
        )
        .await;
    assert_eq!(got["status"], "error", "{got}");

    // An onFinish that never yields is killed at its bound and recorded; the turn
    // completed.
    let (sandbox, thread, chunks) = chat(&d, "tools", "endless-finish").await;
    assert_eq!(text_of(&chunks), "Finish spins.");
    let (_, events) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events?offset=0&limit=1000"),
            None,
        )
        .await;
    assert!(
        events
            .to_string()
            .contains("onFinish failed: the onFinish hook did not finish within 12000 ms"),
        "{events}"
    );
    // How long onError took in the daemon (its log: `hook="onError" ms=N`).
    let log = d.log_text();
    let hook_ms: Vec<String> = log
        .lines()
        .map(without_colours)
        .filter(|l| l.contains("agent hook ran after the turn") && l.contains("onError"))
        .filter_map(|l| {
            let at = l.find(" ms=")? + 4;
            Some(l[at..].chars().take_while(char::is_ascii_digit).collect())
        })
        .collect();

    // A new file takes effect on reload (and, polled, without one).
    std::fs::write(
        agents.path().join("later.mjs"),
        "import { agent } from \"@21st-sdk/agent\"\nexport default agent({ model: \"m-later\" })\n",
    )
    .expect("write");
    let reload_started = Instant::now();
    let (status, reloaded) = d.call("POST", "/v1/agents/reload", None).await;
    let reload_ms = reload_started.elapsed().as_millis();
    assert_eq!(status, StatusCode::OK, "{reloaded}");
    let (_, later) = d.call("GET", "/v1/agents/later", None).await;
    assert_eq!(later["definition"]["model"], "m-later", "{later}");

    println!(
        "timing: loading the agents directory (5 code files) {reload_ms} ms; a chat with a \
         new sandbox and one plain reply {plain_ms} ms; the same with one custom tool call \
         {tool_ms} ms; a failed chat with onError {fail_ms} ms; onError itself (daemon log) {hook_ms:?} ms"
    );
}

#[test]
fn the_example_projects_own_test_passes() {
    let project = workspace().join("examples/ts-agent");
    assert!(
        project.join("node_modules/@21st-sdk/agent").is_dir(),
        "run `npm ci` in {} first (scripts/test does)",
        project.display()
    );
    let label = format!("sandboxd.test=example-{}", std::process::id());
    let out = std::process::Command::new("node")
        .args(["--test", "test/"])
        .current_dir(&project)
        .env("SANDBOXD_BIN", sandboxd_e2e::daemon_bin("debug"))
        .env("SANDBOXD_CLAUDE_BIN", sandboxd_e2e::claude_bin())
        .env("SANDBOXD_TEST_LABEL", &label)
        .output()
        .expect("node --test");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(report.contains("# pass 1"), "{report}");
    let left = sandboxd_e2e::containers_labelled(&label);
    assert!(
        left.is_empty(),
        "the example's test left containers: {left:?}"
    );
}

/// A remote MCP server (streamable HTTP, JSON replies) with one tool, `echo`.
const MCP_SERVER: &str = r#"
import http from "node:http"
http.createServer(async (req, res) => {
  let body = ""
  for await (const chunk of req) body += chunk
  if (req.method !== "POST") return res.writeHead(405).end()
  const msg = JSON.parse(body || "{}")
  if (msg.id === undefined) return res.writeHead(202).end()
  const result = msg.method === "initialize"
    ? { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: "local", version: "1" } }
    : msg.method === "tools/list"
    ? { tools: [{ name: "echo", description: "Echo", inputSchema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] } }] }
    : msg.method === "tools/call"
    ? { content: [{ type: "text", text: "remote echo: " + msg.params.arguments.text }] }
    : {}
  res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result }))
}).listen(8765, "127.0.0.1")
"#;

#[tokio::test]
async fn mcp_servers_of_a_typescript_agent_reach_the_runtime() {
    let agents = sandboxd_e2e::ts_agents_dir();
    let server = serde_json::to_string(MCP_SERVER).expect("a JS string");
    let agent = format!(
        r#"import {{ agent, Sandbox }} from "@21st-sdk/agent"
export default agent({{
  mcpServers: [{{ name: "local", url: "http://127.0.0.1:8765/mcp" }}],
  sandbox: Sandbox({{
    files: {{ "mcp.mjs": {server} }},
    setup: ["setsid nohup node /home/user/mcp.mjs >/tmp/mcp.log 2>&1 </dev/null & for i in $(seq 100); do curl -s -o /dev/null -X POST localhost:8765 && break; sleep 0.1; done"],
  }}),
}})
"#
    );
    std::fs::write(agents.path().join("remote.ts"), agent).expect("write");
    let state = sandboxd_e2e::StateDir::new();
    let model = ScriptedModel::start(&json!([
        { "prompt": "remote", "toolUse": { "name": "mcp__local__echo", "input": { "text": "hi" },
                                            "id": call_id("remote") } },
        { "prompt": "remote", "text": "Echoed." }
    ]));
    let d = Daemon::start_with(
        Options {
            reuse: Some((state.path().to_owned(), agents.path().to_owned())),
            ..Options::default()
        }
        .with_model(&model),
    )
    .await;
    let (_, got) = d.call("GET", "/v1/agents/remote", None).await;
    assert_eq!(
        got["definition"]["mcpServers"]["local"],
        json!({ "type": "http", "url": "http://127.0.0.1:8765/mcp" }),
        "{got}"
    );
    let (_, _, chunks) = chat(&d, "remote", "remote").await;
    assert_eq!(text_of(&chunks), "Echoed.");
    let (text, is_error) = tool_result(&model, "remote");
    assert!(!is_error && text.contains("remote echo: hi"), "{text}");
}

/// An agent deployed through the API as source: one file, its imports from the agents
/// directory's project.
const DEPLOYED_AGENT: &str = r#"
import { agent, tool } from "@21st-sdk/agent"
import { z } from "zod"
import { writeFileSync } from "node:fs"

export default agent({
  model: "claude-sonnet-4-6",
  tools: {
    stamp: tool({
      description: "Writes a stamp file",
      inputSchema: z.object({ word: z.string() }),
      execute: async ({ word }) => {
        writeFileSync("/home/user/stamp.txt", word)
        return { content: [{ type: "text", text: `stamped ${word}` }] }
      },
    }),
  },
})
"#;

#[tokio::test]
async fn a_typescript_agent_deployed_through_the_api_is_built_in_a_container_and_runs() {
    let agents = sandboxd_e2e::ts_agents_dir();
    std::fs::write(agents.path().join("plain.ts"), PLAIN_AGENT).expect("write");
    let state = sandboxd_e2e::StateDir::new();
    let model = ScriptedModel::start(&json!([
        { "prompt": "stamp", "toolUse": { "name": "stamp", "input": { "word": "deployed" },
                                           "id": call_id("stamp") } },
        { "prompt": "stamp", "text": "Stamped." }
    ]));
    let options = || {
        Options {
            reuse: Some((state.path().to_owned(), agents.path().to_owned())),
            ..Options::default()
        }
        .with_model(&model)
    };
    let d = Daemon::start_with(options()).await;

    // Only with the API key.
    let body = json!({ "source": DEPLOYED_AGENT });
    let res = d
        .anonymous("PUT", "/v1/agents/stamper/code")
        .json(&body)
        .send()
        .await
        .expect("anonymous deploy");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A source that does not build is refused with the build's error; nothing is kept.
    let (status, refused) = d
        .call(
            "PUT",
            "/v1/agents/broken/code",
            Some(json!({ "source": "export default agent({ oops: \n" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.to_string().contains("broken.ts:"), "{refused}");
    assert_eq!(
        d.call("GET", "/v1/agents/broken", None).await.0,
        StatusCode::NOT_FOUND
    );
    // Source over a file's agent is refused, and nothing of it comes back on a reload.
    let (status, refused) = d
        .call("PUT", "/v1/agents/plain/code", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let (status, _) = d.call("POST", "/v1/agents/reload", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, plain) = d.call("GET", "/v1/agents/plain", None).await;
    assert_eq!(plain["source"], "file", "{plain}");

    let deploy_started = Instant::now();
    let (status, deployed) = d
        .call("PUT", "/v1/agents/stamper/code", Some(body.clone()))
        .await;
    let deploy_ms = deploy_started.elapsed().as_millis();
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    assert_eq!(deployed["source"], "api");
    assert_eq!(
        deployed["definition"]["code"]["tools"][0]["modelName"],
        "mcp__agent__stamp"
    );
    let (status, _) = d
        .call("PUT", "/v1/agents/stamper/code", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "replaced");
    // Listed with its origin, next to the agents directory's.
    let (_, list) = d.call("GET", "/v1/agents", None).await;
    let origin = |slug: &str| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|a| a["slug"] == slug)
            .map(|a| a["source"].clone())
    };
    assert_eq!(origin("stamper"), Some(json!("api")), "{list}");
    assert_eq!(origin("plain"), Some(json!("file")), "{list}");

    // Its tool runs in the sandbox.
    let (sandbox, _, chunks) = chat(&d, "stamper", "stamp").await;
    assert_eq!(text_of(&chunks), "Stamped.");
    let (text, is_error) = tool_result(&model, "stamp");
    assert!(!is_error && text.contains("stamped deployed"), "{text}");
    let cat = d.exec(&sandbox, "cat /home/user/stamp.txt").await;
    assert_eq!(cat["stdout"], "deployed", "{cat}");

    // A reload and a restart keep it (built again from the kept source).
    let (status, _) = d.call("POST", "/v1/agents/reload", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        d.call("GET", "/v1/agents/stamper", None).await.1["source"],
        "api"
    );
    d.delete_sandbox(&sandbox).await;
    drop(d);
    let d = Daemon::start_with(options()).await;
    let (status, again) = d.call("GET", "/v1/agents/stamper", None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["source"], "api");
    assert_eq!(
        again["definition"]["code"]["tools"][0]["name"], "stamp",
        "{again}"
    );

    // Removed, it stays removed across reloads.
    let (status, _) = d.call("DELETE", "/v1/agents/stamper", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = d.call("POST", "/v1/agents/reload", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        d.call("GET", "/v1/agents/stamper", None).await.0,
        StatusCode::NOT_FOUND
    );
    println!("timing: deploying an agent's source through the API {deploy_ms} ms");
}

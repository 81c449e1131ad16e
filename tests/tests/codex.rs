//! The codex runtime end to end: the real Codex CLI (0.171) in real sandboxes against
//! the scripted model's Responses API, through the model proxy's OpenAI route. A shell
//! command run in the sandbox, a resumed second turn, the key kept out of the sandbox,
//! per-turn usage, cancel, background mode, a restart mid-turn, a session Codex never
//! recorded, and what Codex cannot honour refused with 422.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sandboxd_e2e::{
    chat_ids, chunk_types, sse_chunks, text_of, user_message, Daemon, Options, ScriptedModel,
    StatusCode,
};
use serde_json::{json, Value};

/// The daemon's OpenAI key in these tests: it must reach the upstream, never a sandbox.
const KEY: &str = "sk-openai-real-upstream-secret";

fn agent() -> Value {
    json!({ "name": "Codex agent", "runtime": "codex", "systemPrompt": "CODEX-PROMPT-7731 You are terse." })
}

fn options(model: &ScriptedModel) -> Options {
    Options::default()
        .agent("codex", agent())
        .with_codex(model, KEY)
}

fn metadata(chunks: &[Value]) -> Value {
    chunks
        .iter()
        .find(|c| c["type"] == "message-metadata")
        .map(|c| c["messageMetadata"].clone())
        .expect("message-metadata chunk")
}

/// What the scripted model counts as a request's input tokens.
fn input_tokens(request: &Value) -> u64 {
    (request["input"].to_string().len() as u64 / 4).max(1)
}

/// Waits until the thread's stored messages contain `text`.
async fn stored(d: &Daemon, sandbox: &str, thread: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = d.thread(sandbox, thread).await;
        if t["messages"].to_string().contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "{text:?} never stored: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_codex_turn_runs_a_command_streams_it_and_the_next_turn_resumes() {
    let model = ScriptedModel::start(&json!([
        { "thinking": "Let me write the file.", "toolUse": { "name": "exec_command", "input": {
            "cmd": "echo codex-ran > /home/user/codex.txt && cat /home/user/codex.txt" } } },
        { "text": "Wrote it." },
        { "text": "You asked me to write a file." }
    ]));
    let d = Daemon::start_with(options(&model)).await;
    let (status, _, first) = d
        .chat(
            "codex",
            json!({ "messages": [user_message("please write the file")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first:?}");
    let types = chunk_types(&first);
    assert_eq!(types.first().map(String::as_str), Some("start"));
    assert_eq!(&types[types.len() - 2..], ["finish", "[DONE]"], "{types:?}");
    assert!(!types.iter().any(|t| t == "error"), "{first:?}");
    for expected in [
        "start-step",
        "reasoning-start",
        "tool-input-start",
        "tool-input-available",
        "tool-output-available",
        "text-start",
        "finish-step",
    ] {
        assert!(types.iter().any(|t| t == expected), "{expected}: {types:?}");
    }
    let input = first
        .iter()
        .find(|c| c["type"] == "tool-input-available")
        .expect("tool input");
    assert_eq!(input["toolName"], "shell");
    assert_eq!(input["dynamic"], true);
    assert_eq!(input["providerExecuted"], true);
    assert!(
        input["input"]["command"]
            .as_str()
            .is_some_and(|c| c.contains("echo codex-ran")),
        "{input}"
    );
    let output = first
        .iter()
        .find(|c| c["type"] == "tool-output-available")
        .expect("tool output");
    assert_eq!(output["output"]["output"], "codex-ran\n", "{output}");
    assert_eq!(output["output"]["exitCode"], 0, "{output}");
    assert_eq!(text_of(&first), "Wrote it.");
    let meta = metadata(&first);
    let session = meta["sessionId"].as_str().expect("sessionId").to_owned();
    let (sandbox, thread) = (
        meta["sandboxId"].as_str().expect("sandboxId").to_owned(),
        meta["threadId"].as_str().expect("threadId").to_owned(),
    );

    // The command ran in the sandbox, as `user`.
    let made = d
        .exec(
            &sandbox,
            "cat /home/user/codex.txt && stat -c %U /home/user/codex.txt",
        )
        .await;
    assert_eq!(made["stdout"], "codex-ran\nuser\n", "{made}");
    // The system prompt reached the model; the real key reached the upstream and only it.
    let requests = model.requests();
    assert_eq!(requests.len(), 2, "one request per model step");
    assert!(
        requests[0]["input"]
            .to_string()
            .contains("CODEX-PROMPT-7731"),
        "{}",
        requests[0]["input"]
    );
    let credentials = model.credentials();
    assert!(!credentials.is_empty());
    for c in &credentials {
        assert_eq!(c["path"], "/v1/responses");
        assert_eq!(c["authorization"], format!("Bearer {KEY}"), "{c}");
    }
    // Usage is this turn's: both of its requests.
    let turn_one = input_tokens(&requests[0]) + input_tokens(&requests[1]);
    assert_eq!(meta["inputTokens"], turn_one, "{meta}");

    // The second turn resumes Codex's session: the model sees the first turn.
    let (status, _, second) = d
        .chat(
            "codex",
            json!({ "sandboxId": sandbox, "threadId": thread,
                    "messages": [user_message("what did I ask?")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second:?}");
    assert_eq!(text_of(&second), "You asked me to write a file.");
    let last = model.requests().last().cloned().expect("a third request");
    let history = last["input"].to_string();
    assert!(
        history.contains("please write the file") && history.contains("function_call_output"),
        "the second turn did not resume the session: {history}"
    );
    let meta2 = metadata(&second);
    assert_eq!(meta2["sessionId"], session.as_str());
    // Codex reports the session's running total; the turn's own usage is its request.
    assert_eq!(meta2["inputTokens"], input_tokens(&last), "{meta2}");
    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(
        t["usage"]["inputTokens"],
        turn_one + input_tokens(&last),
        "{t}"
    );
    let messages = t["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4, "{t}");
    let tool = messages[1]["parts"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["type"] == "dynamic-tool"))
        .expect("a stored tool part");
    assert_eq!(tool["state"], "output-available", "{tool}");
    // The session events tell the same story as the stream.
    let (_, events) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events"),
            None,
        )
        .await;
    let updates: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["payload"]["sessionUpdate"].as_str())
        .collect();
    for expected in [
        "user_message_chunk",
        "agent_thought_chunk",
        "tool_call",
        "tool_call_update",
        "agent_message_chunk",
        "usage_update",
        "session_info_update",
    ] {
        assert!(updates.contains(&expected), "{expected}: {updates:?}");
    }
    // The proxy metered the sandbox's three requests.
    let (_, detail) = d
        .call("GET", &format!("/v1/sandboxes/{sandbox}"), None)
        .await;
    assert_eq!(detail["modelUsage"]["requests"], 3, "{detail}");
    assert!(
        detail["modelUsage"]["inputTokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{detail}"
    );

    // The key is nowhere in the sandbox: not in a file (Codex's home, its shell
    // snapshots and sessions included), an environment or a command line. The check
    // spells the key in two halves, so its own command line does not hold it.
    let (head, tail) = KEY.split_at(8);
    let leak = d
        .exec(
            &sandbox,
            &format!(
                "key() {{ printf '%s%s\\n' '{head}' '{tail}'; }}; \
                 grep -rlsF -f <(key) /home/user /tmp /etc /var/tmp 2>/dev/null; \
                 cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' \
                 | grep -cF -f <(key); ls /home/user/.codex/sessions >/dev/null && echo has-sessions"
            ),
        )
        .await;
    assert_eq!(leak["stdout"], "0\nhas-sessions\n", "{leak}");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn what_codex_cannot_honour_is_refused_before_anything_runs() {
    let model = ScriptedModel::start(&json!([]));
    let d = Daemon::start_with(
        options(&model).agent("limited", json!({ "runtime": "codex", "maxTurns": 3 })),
    )
    .await;
    for (slug, options, named) in [
        ("limited", json!({}), "maxTurns"),
        (
            "codex",
            json!({ "permissionMode": "plan" }),
            "permissionMode",
        ),
        (
            "codex",
            json!({ "disallowedTools": ["Bash"] }),
            "disallowedTools",
        ),
        ("codex", json!({ "maxTurns": 2 }), "maxTurns"),
    ] {
        let (status, _, body) = d
            .chat(
                slug,
                json!({ "messages": [user_message("hi")], "options": options }),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{options}: {body:?}"
        );
        let message = body[0]["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named) && message.contains("codex"),
            "{options}: {message}"
        );
    }
    let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    assert!(model.requests().is_empty());
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_codex_turn_is_cancelled_mid_command_and_the_thread_goes_on_in_the_background() {
    let model = ScriptedModel::start(&json!([
        { "toolUse": { "name": "exec_command", "input": { "cmd": "sleep 300" } } },
        { "text": "after the cancel" }
    ]));
    let d = Daemon::start_with(options(&model)).await;
    let res = d
        .request("POST", "/v1/chat/codex")
        .json(&json!({ "messages": [user_message("wait a while")] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::OK);
    let (sandbox, thread) = chat_ids(&res);
    let mut stream = res.bytes_stream();
    let mut body = String::new();
    while !body.contains("tool-input-available") {
        let bytes = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("the command started within 60 s")
            .expect("more")
            .expect("bytes");
        body.push_str(&String::from_utf8_lossy(&bytes));
    }
    let asked = Instant::now();
    let (status, cancelled) = d
        .call("DELETE", &format!("/v1/chat/codex/{sandbox}/stream"), None)
        .await;
    eprintln!(
        "the codex turn stopped {:?} after the cancel",
        asked.elapsed()
    );
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    while let Some(bytes) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&bytes.expect("bytes")));
    }
    let types = chunk_types(&sse_chunks(&body));
    assert_eq!(
        &types[types.len() - 3..],
        ["abort", "finish", "[DONE]"],
        "{types:?}"
    );
    assert!(!types.iter().any(|t| t == "error"), "{types:?}");
    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "cancelled", "{t}");
    assert!(
        t["messages"][1]["parts"].to_string().contains("sleep 300"),
        "{t}"
    );
    // Neither Codex nor its command is left running.
    sandboxd_e2e::eventually(Duration::from_secs(20), "codex and its command end", || {
        let d = &d;
        let sandbox = sandbox.clone();
        async move {
            let ps = d
                .exec(
                    &sandbox,
                    "ps -eo args | grep -cE '^(sleep 300|/.sandboxd/bin/codex)' || true",
                )
                .await;
            ps["stdout"] == "0\n"
        }
    })
    .await;

    // The next turn, in the background, resumes the thread.
    let (status, started) = d
        .call(
            "POST",
            "/v1/chat/codex",
            Some(
                json!({ "sandboxId": sandbox, "threadId": thread, "mode": "background",
                         "messages": [user_message("go on")] }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["status"], "running");
    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(
        t["messages"][3]["parts"]
            .to_string()
            .contains("after the cancel"),
        "{t}"
    );
    let last = model.requests().last().cloned().expect("a request");
    assert!(
        last["input"].to_string().contains("wait a while"),
        "the turn after the cancel did not resume the session: {last}"
    );
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_codex_turn_cut_by_a_restart_is_resumed_by_the_next_turn() {
    let model = ScriptedModel::start(&json!([
        { "toolUse": { "name": "exec_command", "input": { "cmd": "sleep 300" } } },
        { "text": "picked up again" }
    ]));
    let mut first = Daemon::start_with(options(&model)).await;
    let sandbox = first.create_sandbox(json!({ "agent": "codex" })).await;
    let (status, started) = first
        .call(
            "POST",
            "/v1/chat/codex",
            Some(json!({ "sandboxId": sandbox, "mode": "background",
                         "messages": [user_message("start a long job")] })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let thread = started["threadId"].as_str().expect("threadId").to_owned();
    stored(&first, &sandbox, &thread, "sleep 300").await;
    first.kill();

    let second = Daemon::start_with(Options {
        agents: Vec::new(),
        reuse: Some((first.state_dir.clone(), first.agents_dir.clone())),
        ..Options::default().with_codex(&model, KEY)
    })
    .await;
    let t = second.thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "error", "{t}");
    assert_eq!(t["error"], "interrupted by a daemon restart");
    assert!(
        t["messages"][1]["parts"].to_string().contains("sleep 300"),
        "{t}"
    );
    let (status, _, chunks) = second
        .chat(
            "codex",
            json!({ "sandboxId": sandbox, "threadId": thread,
                    "messages": [user_message("go on")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{chunks:?}");
    assert_eq!(text_of(&chunks), "picked up again");
    let last = model.requests().last().cloned().expect("a request");
    assert!(
        last["input"].to_string().contains("start a long job"),
        "the turn after the restart did not resume the session: {last}"
    );
    assert_eq!(
        second.thread(&sandbox, &thread).await["status"],
        "completed"
    );
    second.delete_sandbox(&sandbox).await;
    second.assert_no_leaks();
    drop(second);
    drop(first);
}

#[tokio::test]
async fn a_codex_session_that_was_never_recorded_is_started_afresh() {
    let model = ScriptedModel::start(&json!([
        { "text": "first" },
        { "text": "fresh again" },
        { "text": "resumed the fresh one" }
    ]));
    let d = Daemon::start_with(options(&model)).await;
    let sandbox = d.create_sandbox(json!({ "agent": "codex" })).await;
    let (status, headers, chunks) = d
        .chat(
            "codex",
            json!({ "sandboxId": sandbox, "messages": [user_message("one")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "first");
    let thread = headers["x-thread-id"].to_str().expect("thread").to_owned();
    let old = metadata(&chunks)["sessionId"].clone();
    let out = d
        .exec(&sandbox, "rm -rf /home/user/.codex/sessions && echo gone")
        .await;
    assert_eq!(out["stdout"], "gone\n", "{out}");
    let next = |text: &str| json!({ "sandboxId": sandbox, "threadId": thread, "messages": [user_message(text)] });
    let (status, _, chunks) = d.chat("codex", next("two")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "fresh again", "{chunks:?}");
    let meta = metadata(&chunks);
    assert_ne!(meta["sessionId"], old, "a new session");
    // A new session counts its usage from zero.
    let request = model.requests().last().cloned().expect("a request");
    assert_eq!(meta["inputTokens"], input_tokens(&request), "{meta}");
    // And the thread goes on in the new one.
    let (status, _, chunks) = d.chat("codex", next("three")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "resumed the fresh one");
    assert_eq!(metadata(&chunks)["sessionId"], meta["sessionId"]);
    let last = model.requests().last().cloned().expect("a request");
    assert!(last["input"].to_string().contains("two"), "{last}");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

/// A codex turn's daemon overhead: the same plain text turn, resuming a session, through
/// the daemon (chat request to `[DONE]`) and run directly in the same sandbox (timed
/// inside it). Printed, not asserted: the machine is shared.
#[tokio::test]
async fn codex_turn_overhead_is_reported() {
    // Codex hands its environment, the sandbox's own token (never the real key), to the
    // commands it runs: the first turn keeps it for the direct runs. Every later
    // request gets the same short text (the script is exhausted).
    let model = ScriptedModel::start(&json!([
        { "toolUse": { "name": "exec_command", "input": {
            "cmd": "printenv SANDBOXD_MODEL_TOKEN > /tmp/token" } } },
        { "text": "kept" }
    ]));
    let d = Daemon::start_with(options(&model)).await;
    let sandbox = d.create_sandbox(json!({ "agent": "codex" })).await;
    let (status, _, _) = d
        .chat(
            "codex",
            json!({ "sandboxId": sandbox, "messages": [user_message("keep the token")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut daemon = Vec::new();
    for i in 0..9 {
        let started = Instant::now();
        let (status, _, chunks) = d
            .chat(
                "codex",
                json!({ "sandboxId": sandbox, "messages": [user_message(&format!("turn {i}"))] }),
            )
            .await;
        daemon.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status, StatusCode::OK);
        assert!(text_of(&chunks).contains("script exhausted"), "{chunks:?}");
    }
    // Like the daemon's measured turns, the direct ones resume a session (started by an
    // unmeasured first run).
    let script = r#"T=$(cat /tmp/token)
flags=(--json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
  -c model_provider=sandboxd
  -c "model_providers.sandboxd={name=\"sandboxd\",base_url=\"$URL/v1\",env_key=\"SANDBOXD_MODEL_TOKEN\",wire_api=\"responses\"}"
  -c 'model_instructions_file="/tmp/p.md"')
export SANDBOXD_MODEL_TOKEN=$T
echo start | /.sandboxd/bin/codex exec "${flags[@]}" - >/tmp/out.jsonl 2>/dev/null
id=$(grep -o '"thread_id":"[^"]*"' /tmp/out.jsonl | cut -d'"' -f4)
for i in 1 2 3 4 5 6 7 8 9; do
  s=$(date +%s%N)
  echo "direct $i" | /.sandboxd/bin/codex exec resume "${flags[@]}" -- "$id" - >/tmp/out.jsonl 2>/dev/null
  e=$(date +%s%N)
  grep -q turn.completed /tmp/out.jsonl && echo $(( (e - s) / 1000 ))
done"#;
    let proxy = proxy_url(&d);
    let out = d
        .exec(
            &sandbox,
            &format!("echo 'CODEX-PROMPT-7731 You are terse.' > /tmp/p.md; URL={proxy}; {script}"),
        )
        .await;
    let direct: Vec<f64> = out["stdout"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|us| us / 1e3)
        .collect();
    assert_eq!(direct.len(), 9, "{out}");
    let p50 = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (through, alone) = (p50(daemon.clone()), p50(direct.clone()));
    println!(
        "codex turn: through the daemon p50 {through:.0} ms {daemon:.0?}; codex alone in the \
         sandbox p50 {alone:.0} ms {direct:.0?}; daemon overhead {:+.0} ms",
        through - alone
    );
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

/// The model proxy's base URL as sandboxes reach it (from the daemon's log).
fn proxy_url(d: &Daemon) -> String {
    d.log_text()
        .lines()
        .find_map(|l| {
            let rest = &l[l.find("model proxy: http://")? + "model proxy: ".len()..];
            rest.split_whitespace().next().map(str::to_owned)
        })
        .expect("the proxy's address in the daemon's log")
}

//! Chat end to end: the real claude binary in real sandboxes against the scripted
//! model, streamed as the AI SDK UI message stream. Turns, tool calls, resume,
//! cancel, disconnect and reconnect, background runs, conflicts and failures.

use std::time::Duration;

use futures_util::StreamExt;
use sandboxd_e2e::{
    chunk_types, sse_chunks, text_of, user_message, Daemon, Options, ScriptedModel, StatusCode,
};
use serde_json::{json, Value};

fn ids(chunks: &[Value]) -> (String, String) {
    let meta = chunks
        .iter()
        .find(|c| c["type"] == "message-metadata")
        .expect("message-metadata chunk");
    (
        meta["messageMetadata"]["sandboxId"]
            .as_str()
            .expect("sandboxId")
            .to_owned(),
        meta["messageMetadata"]["threadId"]
            .as_str()
            .expect("threadId")
            .to_owned(),
    )
}

#[tokio::test]
async fn a_text_turn_streams_the_protocol_and_is_persisted() {
    let model = ScriptedModel::start(&json!([{ "text": "Hello there, friend." }]));
    let mut options = Options::default().with_model(&model);
    options
        .env
        .push(("ANTHROPIC_API_KEY".into(), "sk-real-upstream-secret".into()));
    let d = Daemon::start_with(options).await;
    let (status, headers, chunks) = d
        .chat("test", json!({ "messages": [user_message("say hello")], "id": "chat-1", "trigger": "submit-message" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{chunks:?}");
    assert_eq!(headers["x-vercel-ai-ui-message-stream"], "v1");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(
        chunk_types(&chunks),
        vec![
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "text-delta",
            "text-end",
            "finish-step",
            "message-metadata",
            "finish",
            "[DONE]"
        ],
        "{chunks:?}"
    );
    assert_eq!(text_of(&chunks), "Hello there, friend.");
    let meta = &chunks[8]["messageMetadata"];
    for key in ["sessionId", "sandboxId", "threadId"] {
        assert!(meta[key].is_string(), "{key}: {meta}");
    }
    assert!(
        meta["totalCostUsd"].as_f64().is_some_and(|c| c > 0.0),
        "{meta}"
    );
    assert!(
        meta["inputTokens"].as_u64().is_some_and(|n| n > 0),
        "{meta}"
    );
    assert!(
        meta["outputTokens"].as_u64().is_some_and(|n| n > 0),
        "{meta}"
    );
    assert!(meta["durationMs"].is_u64(), "{meta}");
    let (sandbox, thread) = ids(&chunks);
    assert_eq!(headers["x-sandbox-id"], sandbox.as_str());
    assert_eq!(headers["x-thread-id"], thread.as_str());

    // Persisted: the user message and the folded assistant message, usage, status.
    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(t["completedAt"].is_string() && t["error"].is_null(), "{t}");
    let messages = t["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{t}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["parts"][0]["text"], "say hello");
    assert_eq!(messages[1]["id"], chunks[0]["messageId"]);
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["parts"],
        json!([{"type": "step-start"}, {"type": "text", "text": "Hello there, friend.", "state": "done"}])
    );
    assert_eq!(messages[1]["metadata"]["sessionId"], meta["sessionId"]);
    assert_eq!(t["usage"]["inputTokens"], meta["inputTokens"]);
    assert_eq!(t["usage"]["totalCostUsd"], meta["totalCostUsd"]);
    assert!(t["usage"]["totalTokens"].as_u64().is_some_and(|n| n > 0));
    // The sandbox lists the thread.
    let (_, detail) = d
        .call("GET", &format!("/v1/sandboxes/{sandbox}"), None)
        .await;
    assert_eq!(detail["threads"][0]["id"], thread.as_str());
    assert_eq!(detail["threads"][0]["status"], "completed");
    // The proxy metered the sandbox's model traffic.
    assert!(
        detail["modelUsage"]["requests"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{detail}"
    );
    assert!(
        detail["modelUsage"]["outputTokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{detail}"
    );
    // Operators see it in the metrics (API key only).
    let metrics = d.metrics().await;
    assert!(metrics.contains("sandboxd_ready 1"), "{metrics}");
    assert!(
        metrics.contains("sandboxd_sandboxes{status=\"active\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("sandboxd_turns_streaming 0"), "{metrics}");
    let requests = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sandboxd_model_requests "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(requests.is_some_and(|n| n >= 1), "{metrics}");
    let res = d
        .anonymous("GET", "/metrics")
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The real upstream key never entered the sandbox: not in files, not in any
    // process environment (the CLI got a sandbox token instead).
    let leak = d
        .exec(
            &sandbox,
            "grep -rls sk-real-upstream-secret /home/user /tmp /etc 2>/dev/null; \
             cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c sk-real-upstream-secret",
        )
        .await;
    assert_eq!(leak["stdout"], "0\n", "{leak}");

    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_tool_call_changes_the_sandbox_and_the_next_turn_resumes_the_session() {
    let model = ScriptedModel::start(&json!([
        { "text": "Writing it.", "toolUse": { "name": "Bash", "input": {
            "command": "echo 'made by claude' > note.txt && cat note.txt", "description": "write" } } },
        { "text": "Written." },
        { "text": "You asked me to write a note." }
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let (status, _, first) = d
        .chat(
            "test",
            json!({ "messages": [user_message("write a note")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let types = chunk_types(&first);
    for expected in [
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} missing: {types:?}"
        );
    }
    let available = first
        .iter()
        .find(|c| c["type"] == "tool-input-available")
        .expect("input");
    assert_eq!(available["toolName"], "Bash");
    assert_eq!(available["dynamic"], true);
    assert_eq!(available["providerExecuted"], true);
    let output = first
        .iter()
        .find(|c| c["type"] == "tool-output-available")
        .expect("output");
    assert_eq!(output["output"]["stdout"], "made by claude");
    let (sandbox, thread) = ids(&first);

    // The tool really ran in the sandbox, as user, in the cwd.
    let file = d
        .exec(
            &sandbox,
            "cat /home/user/note.txt; stat -c %U /home/user/note.txt",
        )
        .await;
    assert_eq!(file["stdout"], "made by claude\nuser\n");

    // Second turn on the same thread: the same Claude session, whole history sent.
    let (status, _, second) = d
        .chat("test", json!({ "sandboxId": sandbox, "threadId": thread,
                              "messages": [user_message("write a note"), user_message("what did I ask?")] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{second:?}");
    assert_eq!(text_of(&second), "You asked me to write a note.");
    let session = |c: &[Value]| {
        c.iter()
            .find(|x| x["type"] == "message-metadata")
            .map(|x| x["messageMetadata"]["sessionId"].clone())
    };
    assert_eq!(session(&first), session(&second));
    let requests = model.requests();
    let last = requests.last().expect("requests").to_string();
    assert!(
        last.contains("write a note")
            && last.contains("made by claude")
            && last.contains("what did I ask?"),
        "{last}"
    );

    let t = d.settled_thread(&sandbox, &thread).await;
    let messages = t["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4, "{t}");
    let tool = messages[1]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["type"] == "dynamic-tool")
        .cloned()
        .expect("tool part");
    assert_eq!(tool["state"], "output-available");
    assert_eq!(tool["toolName"], "Bash");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn options_reach_the_cli() {
    let model = ScriptedModel::start(&json!([{ "text": "ok" }]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let (status, _, chunks) = d
        .chat("test", json!({
            "messages": [user_message("hi")],
            "options": {
                "model": "claude-scripted-1",
                "systemPrompt": { "type": "preset", "preset": "claude_code", "append": "MARKER-7731" },
                "disallowedTools": ["Bash"],
                "maxTurns": 3
            }
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{chunks:?}");
    let request = &model.requests()[0];
    assert_eq!(request["model"], "claude-scripted-1");
    assert!(request["system"].to_string().contains("MARKER-7731"));
    let tools: Vec<&str> = request["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !tools.contains(&"Bash") && tools.contains(&"Read"),
        "{tools:?}"
    );
    let (sandbox, _) = ids(&chunks);
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn cancel_in_the_middle_keeps_what_was_produced() {
    let model = ScriptedModel::start(&json!([
        { "text": "one two three four five six seven eight nine ten eleven twelve", "chunkDelayMs": 250 },
        { "text": "after the cancel", "prompt": "again" }
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let res = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "messages": [user_message("count")] }))
        .send()
        .await
        .expect("chat");
    let (sandbox, thread) = sandboxd_e2e::chat_ids(&res);
    let mut stream = res.bytes_stream();
    let mut body = String::new();
    while !body.contains("text-delta") {
        body.push_str(&String::from_utf8_lossy(
            &stream.next().await.expect("more").expect("bytes"),
        ));
    }
    let (status, cancelled) = d
        .call("DELETE", &format!("/v1/chat/test/{sandbox}/stream"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    while let Some(bytes) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&bytes.expect("bytes")));
    }
    let chunks = sse_chunks(&body);
    let types = chunk_types(&chunks);
    assert_eq!(
        &types[types.len() - 3..],
        ["abort", "finish", "[DONE]"],
        "{types:?}"
    );
    assert!(!types.contains(&"error".to_owned()), "{types:?}");
    let partial = text_of(&chunks);
    assert!(
        partial.starts_with("one") && !partial.contains("twelve"),
        "{partial}"
    );

    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "cancelled", "{t}");
    let kept = t["messages"][1]["parts"].to_string();
    assert!(kept.contains("one"), "{t}");
    // Nothing is left running, and the thread takes a new turn.
    let (status, _) = d
        .call("DELETE", &format!("/v1/chat/test/{sandbox}/stream"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, next) = d
        .chat("test", json!({ "sandboxId": sandbox, "threadId": thread, "messages": [user_message("again")] }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&next), "after the cancel");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_disconnected_client_resumes_the_stream_and_the_turn_completes() {
    let model = ScriptedModel::start(&json!([
        { "text": "alpha beta gamma delta epsilon zeta", "chunkDelayMs": 150 }
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let res = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "messages": [user_message("greek")] }))
        .send()
        .await
        .expect("chat");
    let (sandbox, thread) = sandboxd_e2e::chat_ids(&res);
    let mut stream = res.bytes_stream();
    let mut first = String::new();
    while !first.contains("text-delta") {
        first.push_str(&String::from_utf8_lossy(
            &stream.next().await.expect("more").expect("bytes"),
        ));
    }
    drop(stream); // The client goes away; the turn goes on.

    let res = d
        .request("GET", &format!("/v1/chat/test/{sandbox}/stream"))
        .send()
        .await
        .expect("resume");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-vercel-ai-ui-message-stream"], "v1");
    let replay = sse_chunks(&res.text().await.expect("body"));
    let original = sse_chunks(&first);
    assert_eq!(
        replay[0], original[0],
        "the replay starts with the same start chunk"
    );
    assert_eq!(text_of(&replay), "alpha beta gamma delta epsilon zeta");
    assert_eq!(
        chunk_types(&replay).last().map(String::as_str),
        Some("[DONE]")
    );

    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "completed");
    assert!(t["messages"][1]["parts"].to_string().contains("zeta"));
    // Nothing active any more: 204, as the AI SDK expects.
    let res = d
        .request("GET", &format!("/v1/chat/test/{sandbox}/stream"))
        .send()
        .await
        .expect("resume");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn background_runs_conflicts_and_errors() {
    let model = ScriptedModel::start(&json!([
        { "text": "slow background answer", "chunkDelayMs": 300 },
        { "error": { "status": 403, "type": "permission_error", "message": "scripted refusal" } }
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, thread) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/threads"),
            Some(json!({ "name": "Background" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{thread}");
    assert_eq!(thread["name"], "Background");
    assert_eq!(thread["status"], "active");
    let thread = thread["id"].as_str().expect("id").to_owned();

    let (status, accepted) = d
        .call(
            "POST",
            "/v1/chat/test",
            Some(json!({ "sandboxId": id, "threadId": thread,
              "mode": "background", "messages": [user_message("work")] })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(
        accepted,
        json!({ "sandboxId": id, "threadId": thread, "status": "running" })
    );
    // A second turn while the first streams: 409.
    let (status, busy) = d
        .call(
            "POST",
            "/v1/chat/test",
            Some(json!({ "sandboxId": id, "threadId": thread,
              "messages": [user_message("more")] })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert_eq!(busy["error"]["code"], "thread_busy");
    let (_, listed) = d
        .call("GET", &format!("/v1/sandboxes/{id}/threads"), None)
        .await;
    assert_eq!(listed[0]["status"], "streaming");
    let t = d.settled_thread(&id, &thread).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(t["messages"][1]["parts"]
        .to_string()
        .contains("slow background answer"));

    // A model failure ends the stream with an error chunk and the thread in error.
    let (status, _, chunks) = d
        .chat(
            "test",
            json!({ "sandboxId": id, "threadId": thread, "messages": [user_message("fail")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let types = chunk_types(&chunks);
    assert!(types.contains(&"error".to_owned()), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("[DONE]"));
    let error = chunks
        .iter()
        .find(|c| c["type"] == "error")
        .expect("error chunk");
    assert!(
        error["errorText"]
            .as_str()
            .is_some_and(|e| e.contains("scripted refusal")),
        "{error}"
    );
    let t = d.settled_thread(&id, &thread).await;
    assert_eq!(t["status"], "error");
    assert!(t["error"].is_string());

    // Client errors.
    for (body, status, needle) in [
        (
            json!({ "threadId": thread, "messages": [user_message("x")] }),
            StatusCode::BAD_REQUEST,
            "threadId needs sandboxId",
        ),
        (
            json!({ "sandboxId": id, "messages": [] }),
            StatusCode::BAD_REQUEST,
            "no user message",
        ),
        (
            json!({ "sandboxId": id, "threadId": "th_nope", "messages": [user_message("x")] }),
            StatusCode::NOT_FOUND,
            "th_nope",
        ),
        (
            json!({ "sandboxId": "sb_nope", "messages": [user_message("x")] }),
            StatusCode::NOT_FOUND,
            "sb_nope",
        ),
        (
            json!({ "sandboxId": id, "messages": [user_message("x")], "mode": "later" }),
            StatusCode::BAD_REQUEST,
            "mode",
        ),
        (
            json!({ "sandboxId": id, "messages": [user_message("x")], "options": { "permissionMode": "yolo" } }),
            StatusCode::BAD_REQUEST,
            "yolo",
        ),
        (
            json!({ "sandboxId": id, "messages": [user_message("x")], "options": { "maxTokens": 1 } }),
            StatusCode::BAD_REQUEST,
            "maxTokens",
        ),
        (
            json!({ "messages": "hi" }),
            StatusCode::BAD_REQUEST,
            "wrong shape",
        ),
    ] {
        let (got, err) = d.call("POST", "/v1/chat/test", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{body}: {err}"
        );
    }
    let (got, _) = d
        .call(
            "POST",
            "/v1/chat/nope",
            Some(json!({ "messages": [user_message("x")] })),
        )
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND);

    // Deleting the thread, then the sandbox.
    let (status, _) = d
        .call(
            "DELETE",
            &format!("/v1/sandboxes/{id}/threads/{thread}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = d
        .call("GET", &format!("/v1/sandboxes/{id}/threads/{thread}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_sandbox_without_claude_gets_an_actionable_error() {
    let model = ScriptedModel::start(&json!([{ "text": "never" }]));
    let d = Daemon::start_with(Options {
        args: vec!["--model-upstream".into(), model.url.clone()],
        env: vec![
            ("SANDBOXD_CLAUDE_BIN".into(), String::new()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ],
        ..Options::default()
    })
    .await;
    let (status, _, chunks) = d
        .chat("test", json!({ "messages": [user_message("hi")] }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let error = chunks
        .iter()
        .find(|c| c["type"] == "error")
        .expect("error chunk");
    let text = error["errorText"].as_str().unwrap_or_default();
    assert!(
        text.contains("not available in the sandbox") && text.contains("--claude-bin"),
        "{text}"
    );
    let (sandbox, thread) = ids(&chunks);
    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "error");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn the_turn_limit_ends_the_stream_with_an_actionable_error() {
    let model = ScriptedModel::start(&json!([
        { "toolUse": { "name": "Bash", "input": { "command": "echo step", "description": "step" } } },
        { "toolUse": { "name": "Bash", "input": { "command": "echo again", "description": "again" } } }
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let (status, _, chunks) = d
        .chat(
            "test",
            json!({ "messages": [user_message("loop")], "options": { "maxTurns": 1 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let error = chunks
        .iter()
        .find(|c| c["type"] == "error")
        .expect("error chunk");
    assert!(
        error["errorText"]
            .as_str()
            .is_some_and(|e| e.contains("maxTurns")),
        "{error}"
    );
    let (sandbox, thread) = ids(&chunks);
    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "error");
    assert!(
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("turn limit")),
        "{t}"
    );
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn threads_of_one_sandbox_run_at_the_same_time() {
    let model = ScriptedModel::start(&json!([
        { "text": "first thread answer", "chunkDelayMs": 100, "prompt": "one" },
        { "text": "second thread answer", "chunkDelayMs": 100, "prompt": "two" }
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let start = |text: &'static str| {
        d.call(
            "POST",
            "/v1/chat/test",
            Some(json!({ "sandboxId": id, "mode": "background",
                                                    "messages": [user_message(text)] })),
        )
    };
    let ((s1, a), (s2, b)) = tokio::join!(start("one"), start("two"));
    assert_eq!(
        (s1, s2),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED),
        "{a} {b}"
    );
    let (_, listed) = d
        .call("GET", &format!("/v1/sandboxes/{id}/threads"), None)
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let mut answers = Vec::new();
    for accepted in [a, b] {
        let t = d
            .settled_thread(&id, accepted["threadId"].as_str().expect("thread"))
            .await;
        assert_eq!(t["status"], "completed", "{t}");
        answers.push(t["messages"][1]["parts"].to_string());
    }
    assert!(
        answers.iter().any(|a| a.contains("first thread answer")),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|a| a.contains("second thread answer")),
        "{answers:?}"
    );
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn sigterm_with_an_open_stream_still_stops_the_daemon() {
    let model = ScriptedModel::start(&json!([
        { "text": "a b c d e f g h i j k l m n o p q r s t", "chunkDelayMs": 1000 }
    ]));
    let mut d = Daemon::start_with(Options::default().with_model(&model)).await;
    let res = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "messages": [user_message("slow")] }))
        .send()
        .await
        .expect("chat");
    let mut stream = res.bytes_stream();
    let _ = stream.next().await;
    let started = std::time::Instant::now();
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );
    drop(stream);
}

/// The cost of a turn is that turn's: Claude Code reports a resumed session's running
/// total, so a thread whose turns each cost about the same says so, and its usage is
/// their sum, not a sum of running totals.
#[tokio::test]
async fn each_turn_costs_what_it_used_and_the_thread_adds_them_up() {
    let model = ScriptedModel::start(&json!([
        { "text": "one" }, { "text": "two" }, { "text": "three" }, { "text": "four" }
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let cost = |chunks: &[Value]| {
        chunks
            .iter()
            .find(|c| c["type"] == "message-metadata")
            .and_then(|c| c["messageMetadata"]["totalCostUsd"].as_f64())
            .expect("a cost")
    };
    let (_, _, first) = d
        .chat("test", json!({ "messages": [user_message("one")] }))
        .await;
    let (sandbox, thread) = ids(&first);
    let mut costs = vec![cost(&first)];
    for text in ["two", "three"] {
        let (_, _, chunks) = d
            .chat(
                "test",
                json!({ "sandboxId": sandbox, "threadId": thread,
                        "messages": [user_message(text)] }),
            )
            .await;
        costs.push(cost(&chunks));
    }
    assert!(costs.iter().all(|c| *c > 0.0), "{costs:?}");
    for later in &costs[1..] {
        assert!(
            *later < costs[0] * 1.6,
            "a later turn is charged the running total: {costs:?}"
        );
    }
    let t = d.settled_thread(&sandbox, &thread).await;
    let total = t["usage"]["totalCostUsd"].as_f64().expect("usage");
    let sum: f64 = costs.iter().sum();
    assert!((total - sum).abs() < 1e-9, "thread {total} vs turns {sum}");

    // A call's `maxSandboxBudgetUsd` caps the sandbox for that call (it can only
    // narrow the agent's cap): below what the sandbox has spent, the model is not
    // called; the next call without it goes on.
    let turn = |text: &str, options: Value| {
        json!({ "sandboxId": sandbox, "threadId": thread,
                "messages": [user_message(text)], "options": options })
    };
    let (status, _, capped) = d
        .chat(
            "test",
            turn("four", json!({ "maxSandboxBudgetUsd": total / 2.0 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let error = capped
        .iter()
        .find(|c| c["type"] == "error")
        .unwrap_or_else(|| panic!("no error: {:?}", chunk_types(&capped)));
    assert!(
        error.to_string().contains("options.maxSandboxBudgetUsd"),
        "{error}"
    );
    let (status, _, chunks) = d
        .chat("test", turn("four", json!({ "maxSandboxBudgetUsd": -1 })))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{chunks:?}");
    let (_, _, after) = d.chat("test", turn("four", json!({}))).await;
    assert_eq!(text_of(&after), "four");
}

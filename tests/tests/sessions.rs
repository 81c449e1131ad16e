//! Session events and permissions, with the real CLI against a scripted model: each
//! thread keeps an ordered event log (paged, and streamed live with `Last-Event-ID`),
//! and with `permissionMode: "default"` Claude's tool permission requests reach the
//! client, which answers `once`, `always` or `reject`.

use std::time::Duration;

use futures_util::StreamExt;
use sandboxd_e2e::{user_message, Daemon, Options, ScriptedModel, StatusCode};
use serde_json::{json, Value};

/// Every event of a thread.
async fn events(d: &Daemon, sandbox: &str, thread: &str) -> Vec<Value> {
    let (status, body) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events?offset=0&limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

fn updates(events: &[Value], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["payload"]["sessionUpdate"] == kind)
        .map(|e| e["payload"].clone())
        .collect()
}

/// Starts a background turn on a thread.
async fn background_turn(d: &Daemon, sandbox: &str, thread: &str, text: &str) {
    let (status, body) = d
        .call(
            "POST",
            "/v1/chat/test",
            Some(
                json!({ "sandboxId": sandbox, "threadId": thread, "mode": "background",
                         "messages": [user_message(text)] }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// Waits for the thread's next unanswered permission request; returns it.
async fn pending_request(d: &Daemon, sandbox: &str, thread: &str, seen: usize) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = events(d, sandbox, thread).await;
        if let Some(request) = updates(&all, "permission_request").get(seen) {
            return request.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no permission request #{seen}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn answer(d: &Daemon, sandbox: &str, thread: &str, id: &str, reply: &str) -> StatusCode {
    d.call(
        "POST",
        &format!("/v1/sandboxes/{sandbox}/threads/{thread}/permissions/{id}"),
        Some(json!({ "reply": reply })),
    )
    .await
    .0
}

async fn file(d: &Daemon, sandbox: &str, path: &str) -> String {
    let out = d.exec(sandbox, &format!("cat {path} 2>&1")).await;
    out["stdout"].as_str().unwrap_or_default().trim().to_owned()
}

fn bash(command: &str) -> Value {
    json!({ "toolUse": { "name": "Bash", "input": { "command": command, "description": "run" } } })
}

#[tokio::test]
async fn permission_requests_are_answered_once_always_or_reject() {
    let model = ScriptedModel::start(&json!([
        bash("echo one > /home/user/once.txt"),
        { "text": "wrote once" },
        bash("echo two > /home/user/always.txt"),
        { "text": "wrote always" },
        bash("echo three > /home/user/again.txt"),
        { "text": "wrote again" },
        bash("echo no > /home/user/rejected.txt"),
        { "text": "understood" },
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let sandbox = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, thread) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{sandbox}/threads"),
            Some(json!({ "name": "asks", "permissionMode": "default" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{thread}");
    let thread = thread["id"].as_str().expect("id").to_owned();

    // once: the chat stream shows the request; the client goes away while it is
    // pending, answers, and a resumed stream sees the turn finish.
    let chat = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "sandboxId": sandbox, "threadId": thread,
                       "messages": [user_message("write once")] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(chat.status(), StatusCode::OK);
    let mut stream = chat.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("data-permission-request") {
        let chunk = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("the request reaches the stream")
            .expect("more stream")
            .expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    let request = pending_request(&d, &sandbox, &thread, 0).await;
    assert_eq!(request["toolName"], "Bash");
    assert_eq!(
        request["input"]["command"],
        "echo one > /home/user/once.txt"
    );
    let id = request["requestId"].as_str().expect("requestId").to_owned();
    assert!(seen.contains(&id), "the stream names the request: {seen}");
    assert_eq!(
        file(&d, &sandbox, "/home/user/once.txt").await,
        "cat: /home/user/once.txt: No such file or directory"
    );
    assert_eq!(
        answer(&d, &sandbox, &thread, &id, "once").await,
        StatusCode::OK
    );
    assert_eq!(
        answer(&d, &sandbox, &thread, &id, "once").await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        answer(&d, &sandbox, &thread, "no-such-request", "once").await,
        StatusCode::NOT_FOUND
    );
    let resumed = d
        .request(
            "GET",
            &format!("/v1/chat/test/{sandbox}/stream?threadId={thread}"),
        )
        .send()
        .await
        .expect("resume");
    // The turn may already be over (then there is nothing to resume: 204).
    if resumed.status() == StatusCode::OK {
        let text = resumed.text().await.expect("resumed body");
        let chunks = sandboxd_e2e::sse_chunks(&text);
        let said: String = chunks
            .iter()
            .filter(|c| c["type"] == "text-delta")
            .filter_map(|c| c["delta"].as_str())
            .collect();
        assert_eq!(said, "wrote once", "{text}");
        assert!(text.contains("\"reply\":\"once\"") && text.ends_with("data: [DONE]\n\n"));
    } else {
        assert_eq!(resumed.status(), StatusCode::NO_CONTENT);
    }
    let settled = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(settled["status"], "completed", "{settled}");
    assert!(
        settled["messages"].to_string().contains("wrote once"),
        "{settled}"
    );
    assert_eq!(file(&d, &sandbox, "/home/user/once.txt").await, "one");

    // always: allowed now, and the next Bash call is not asked about.
    background_turn(&d, &sandbox, &thread, "write always").await;
    let request = pending_request(&d, &sandbox, &thread, 1).await;
    let id = request["requestId"].as_str().expect("requestId").to_owned();
    assert_eq!(
        answer(&d, &sandbox, &thread, &id, "always").await,
        StatusCode::OK
    );
    assert_eq!(
        d.settled_thread(&sandbox, &thread).await["status"],
        "completed"
    );
    assert_eq!(file(&d, &sandbox, "/home/user/always.txt").await, "two");
    background_turn(&d, &sandbox, &thread, "write again").await;
    assert_eq!(
        d.settled_thread(&sandbox, &thread).await["status"],
        "completed"
    );
    assert_eq!(file(&d, &sandbox, "/home/user/again.txt").await, "three");
    let all = events(&d, &sandbox, &thread).await;
    assert_eq!(updates(&all, "permission_request").len(), 2, "{all:?}");
    let resolved: Vec<Value> = updates(&all, "permission_resolved")
        .iter()
        .map(|u| u["reply"].clone())
        .collect();
    assert_eq!(resolved, vec![json!("once"), json!("always")]);
    let (_, detail) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}"),
            None,
        )
        .await;
    assert_eq!(
        detail["settings"]["alwaysAllowed"],
        json!(["Bash"]),
        "{detail}"
    );

    // reject, in a thread of its own: nothing runs, and the agent is told.
    let (_, other) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{sandbox}/threads"),
            Some(json!({ "permissionMode": "default" })),
        )
        .await;
    let other = other["id"].as_str().expect("id").to_owned();
    background_turn(&d, &sandbox, &other, "try it").await;
    let request = pending_request(&d, &sandbox, &other, 0).await;
    let id = request["requestId"].as_str().expect("requestId").to_owned();
    assert_eq!(
        answer(&d, &sandbox, &other, &id, "reject").await,
        StatusCode::OK
    );
    assert_eq!(
        d.settled_thread(&sandbox, &other).await["status"],
        "completed"
    );
    assert!(file(&d, &sandbox, "/home/user/rejected.txt")
        .await
        .contains("No such file"));
    let all = events(&d, &sandbox, &other).await;
    let failed = updates(&all, "tool_call_update");
    assert_eq!(failed.len(), 1, "{all:?}");
    assert_eq!(failed[0]["status"], "failed");
    let last_request = model.requests().last().cloned().expect("requests");
    assert!(
        last_request.to_string().contains("rejected this tool call"),
        "the model was not told: {last_request}"
    );

    // Bad answers.
    assert_eq!(
        d.call(
            "POST",
            &format!("/v1/sandboxes/{sandbox}/threads/{other}/permissions/{id}"),
            Some(json!({ "reply": "sometimes" })),
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn events_are_ordered_paged_and_streamed_live_from_an_offset() {
    let model = ScriptedModel::start(&json!([
        { "thinking": "Plan first.", "toolUse": { "name": "TodoWrite", "input": { "todos": [
            { "content": "say hello", "status": "in_progress", "activeForm": "Saying hello" }
        ] } } },
        { "text": "Hello from the events test." },
        { "text": "Second turn.", "chunkDelayMs": 50 },
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let sandbox = d.create_sandbox(json!({ "agent": "test" })).await;
    let (_, thread) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{sandbox}/threads"),
            Some(json!({ "thinking": "low" })),
        )
        .await;
    let thread = thread["id"].as_str().expect("id").to_owned();

    // A follower from the start, attached before anything happened.
    let live = d
        .request(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events/stream"),
        )
        .send()
        .await
        .expect("stream");
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let mut live = live.bytes_stream();

    background_turn(&d, &sandbox, &thread, "plan and greet").await;
    assert_eq!(
        d.settled_thread(&sandbox, &thread).await["status"],
        "completed"
    );
    let all = events(&d, &sandbox, &thread).await;
    let seqs: Vec<u64> = all
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "ordered, gapless"
    );
    assert!(all
        .iter()
        .all(|e| e["at"].as_str().is_some_and(|t| t.ends_with('Z'))));
    let kinds: Vec<&str> = all
        .iter()
        .filter_map(|e| e["payload"]["sessionUpdate"].as_str())
        .collect();
    for kind in [
        "user_message_chunk",
        "session_info_update",
        "agent_thought_chunk",
        "tool_call",
        "plan",
        "tool_call_update",
        "agent_message_chunk",
        "usage_update",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(kinds.first(), Some(&"user_message_chunk"));
    assert_eq!(kinds.last(), Some(&"session_info_update"));
    let plan = &updates(&all, "plan")[0];
    assert_eq!(plan["entries"][0]["content"], "say hello");
    let text: String = updates(&all, "agent_message_chunk")
        .iter()
        .filter_map(|u| u["content"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from the events test.");

    // Paging.
    let (_, page) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events?offset=2&limit=3"),
            None,
        )
        .await;
    let page_seqs: Vec<u64> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(page_seqs, vec![3, 4, 5]);
    assert_eq!(page["nextOffset"], 5);
    assert_eq!(page["hasMore"], true);
    for bad in ["limit=0", "limit=5000", "offset=-1", "offset=x"] {
        let (status, body) = d
            .call(
                "GET",
                &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events?{bad}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // The follower got every event, in order, with its seq as the SSE id.
    let mut text = String::new();
    let total = all.len();
    while text.matches("\n\n").count() < total {
        let chunk = tokio::time::timeout(Duration::from_secs(30), live.next())
            .await
            .expect("live events")
            .expect("more")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ids: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|n| n.parse().expect("numeric id"))
        .collect();
    assert_eq!(ids, seqs);

    // Reconnecting with Last-Event-ID replays what came after it, then follows the
    // next turn live; thread settings changed with PATCH apply to that turn.
    let (status, patched) = d
        .call(
            "PATCH",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}"),
            Some(json!({ "model": "claude-test-model", "thinking": null })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["settings"], json!({ "model": "claude-test-model" }));
    let (status, _) = d
        .call(
            "PATCH",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}"),
            Some(json!({ "permissionMode": "yolo" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let from = total as u64 - 1;
    let again = d
        .request(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events/stream"),
        )
        .header("Last-Event-ID", from.to_string())
        .send()
        .await
        .expect("reconnect");
    let mut again = again.bytes_stream();
    background_turn(&d, &sandbox, &thread, "again").await;
    assert_eq!(
        d.settled_thread(&sandbox, &thread).await["status"],
        "completed"
    );
    let after = events(&d, &sandbox, &thread).await;
    let mut text = String::new();
    while text.matches("\n\n").count() < after.len() - from as usize {
        let chunk = tokio::time::timeout(Duration::from_secs(30), again.next())
            .await
            .expect("events after the reconnect")
            .expect("more")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let first_id = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id");
    assert_eq!(first_id, (from + 1).to_string());
    let models: Vec<Value> = model
        .requests()
        .iter()
        .map(|r| r["model"].clone())
        .collect();
    assert_eq!(
        models.last(),
        Some(&json!("claude-test-model")),
        "{models:?}"
    );

    // Deleting the thread ends its followers.
    let (status, _) = d
        .call(
            "DELETE",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(_)) = again.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the follower stream did not end");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn sandboxd_chat_asks_on_the_terminal() {
    let model = ScriptedModel::start(&json!([
        bash("echo asked > /home/user/asked.txt"),
        { "text": "wrote it" },
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let (url, key) = (d.url.clone(), d.key.clone());
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(sandboxd_e2e::daemon_bin("debug"))
            .args([
                "chat",
                "test",
                "write the file",
                "--permission-mode",
                "default",
            ])
            .args(["--url", &url])
            .env("SANDBOXD_API_KEY", key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sandboxd chat");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"a\n")
            .expect("answer");
        child.wait_with_output().expect("output")
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("? allow Bash(") && stderr.contains("→ always"),
        "{stderr}"
    );
    assert!(stdout.contains("wrote it"), "{stdout}");
    let sandbox = stdout
        .split("sandbox ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the sandbox id in the summary line")
        .to_owned();
    assert_eq!(file(&d, &sandbox, "/home/user/asked.txt").await, "asked");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

//! Restarts on the same state directory, with the real engine and the real CLI:
//! sandboxes are re-adopted by label and work as before, a sandbox whose container
//! vanished is `error`, an unowned labelled container is quarantined (stopped, kept,
//! removed only when an operator asks), a turn cut by
//! `kill -9` is marked interrupted with its messages kept and the next turn resumes
//! the same Claude session, and SIGTERM lets a running turn finish.

use std::process::Command;
use std::time::Duration;

use sandboxd_e2e::{
    docker_inspect, text_of, user_message, Daemon, Options, ScriptedModel, StatusCode,
};
use serde_json::{json, Value};

fn again(d: &Daemon, model: &ScriptedModel) -> Options {
    Options {
        agents: Vec::new(),
        reuse: Some((d.state_dir.clone(), d.agents_dir.clone())),
        ..Options::default().with_model(model)
    }
}

async fn sandbox(d: &Daemon, id: &str) -> Value {
    let (status, body) = d.call("GET", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Starts a streaming turn in a sandbox; returns its thread and the task reading its
/// whole body.
async fn streamed_turn(
    d: &Daemon,
    sandbox: &str,
    text: &str,
) -> (String, tokio::task::JoinHandle<String>) {
    let response = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "sandboxId": sandbox, "messages": [user_message(text)] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, thread) = sandboxd_e2e::chat_ids(&response);
    let reading = tokio::spawn(async move { response.text().await.expect("body") });
    (thread, reading)
}

/// Waits until the thread's stored messages contain `text`.
async fn streaming_began(d: &Daemon, sandbox: &str, thread: &str, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = d.thread(sandbox, thread).await;
        if t["messages"].to_string().contains(text) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{text:?} never streamed: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sandboxes_survive_a_restart_and_lost_or_unowned_containers_are_settled() {
    let model = ScriptedModel::start(&json!([
        { "text": "first answer", "prompt": "one" },
        { "text": "second answer", "prompt": "two" },
    ]));
    let mut first = Daemon::start_with(
        Options::default()
            .agent(
                "kept",
                json!({ "name": "Kept", "sandbox": { "networkDenyOut": ["10.213.9.0/24"] } }),
            )
            .with_model(&model),
    )
    .await;
    let kept = first.create_sandbox(json!({ "agent": "kept" })).await;
    let lost = first.create_sandbox(json!({ "agent": "test" })).await;
    first
        .exec(&kept, "echo still here > /home/user/note.txt")
        .await;
    let (status, _, chunks) = first
        .chat(
            "kept",
            json!({ "sandboxId": kept, "messages": [user_message("one")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "first answer");
    let thread_id = chunks
        .iter()
        .find_map(|c| c["messageMetadata"]["threadId"].as_str())
        .expect("thread id")
        .to_owned();
    let before = first.thread(&kept, &thread_id).await;
    let usage_before = sandbox(&first, &kept).await["modelUsage"].clone();
    assert!(
        usage_before["requests"].as_u64() >= Some(1),
        "{usage_before}"
    );
    // Many writers at once: every one of them is kept.
    let threads_path = format!("/v1/sandboxes/{kept}/threads");
    let creates = (0..24).map(|i| {
        first.call(
            "POST",
            &threads_path,
            Some(json!({ "name": format!("parallel {i}") })),
        )
    });
    for (status, body) in futures_util::future::join_all(creates).await {
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    assert!(first.terminate().success(), "SIGTERM exits cleanly");
    // While it is down: one container vanishes, and a stranger claims the label.
    let lost_container = lost.replacen("sb_", "sbx-", 1);
    let instance = docker_inspect(
        &lost_container,
        "{{index .Config.Labels \"sandboxd.instance\"}}",
    )
    .expect("instance label");
    let rm = Command::new("docker")
        .args(["rm", "-f", &lost_container])
        .output()
        .expect("docker rm");
    assert!(rm.status.success());
    let stranger = Command::new("docker")
        .args([
            "run",
            "-d",
            "--label",
            &format!("sandboxd.instance={instance}"),
            "--label",
            &format!("sandboxd.test={}", first.label),
            "--label",
            "sandboxd.sandbox=sb_nobodyknowsthis",
            "--entrypoint",
            "sleep",
            "sandboxd/default:bookworm",
            "600",
        ])
        .output()
        .expect("docker run");
    assert!(
        stranger.status.success(),
        "{}",
        String::from_utf8_lossy(&stranger.stderr)
    );
    let stranger = String::from_utf8_lossy(&stranger.stdout).trim().to_owned();

    let second = Daemon::start_with(again(&first, &model)).await;
    // Re-adopted: same record, exec and files work, the thread and its messages are
    // there, and a new turn resumes the same Claude session.
    let got = sandbox(&second, &kept).await;
    assert_eq!(got["status"], "active", "{got}");
    assert_eq!(got["modelUsage"], usage_before, "model usage was not kept");
    let out = second.exec(&kept, "cat /home/user/note.txt").await;
    assert_eq!(out["stdout"], "still here\n");
    let (_, listed) = second
        .call("GET", &format!("/v1/sandboxes/{kept}/threads"), None)
        .await;
    let mut names: Vec<String> = listed
        .as_array()
        .expect("threads")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .filter(|n| n.starts_with("parallel "))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 24, "{listed}");
    let after = second.thread(&kept, &thread_id).await;
    assert_eq!(after["messages"], before["messages"]);
    assert_eq!(after["status"], "completed");
    let (status, _, chunks) = second
        .chat(
            "kept",
            json!({ "sandboxId": kept, "threadId": thread_id, "messages": [user_message("two")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "second answer");
    let last = model.requests().last().cloned().expect("a request");
    assert!(
        last["messages"].to_string().contains("first answer"),
        "the second turn did not resume the session: {last}"
    );
    // The sandbox's egress rules were put back.
    let rules = Command::new("iptables")
        .args(["-w", "-S"])
        .output()
        .expect("iptables");
    assert!(
        String::from_utf8_lossy(&rules.stdout).contains(kept.trim_start_matches("sb_")),
        "egress rules of {kept} missing after the restart"
    );

    let gone = sandbox(&second, &lost).await;
    assert_eq!(gone["status"], "error");
    assert!(
        gone["error"]
            .as_str()
            .is_some_and(|e| e.contains("container is gone")),
        "{gone}"
    );
    // No store knew the stranger: it is stopped and kept until an operator says.
    assert_eq!(
        docker_inspect(&stranger, "{{.State.Status}}").as_deref(),
        Some("exited"),
        "the unowned container was not stopped and kept"
    );
    let (_, quarantined) = second.call("GET", "/v1/quarantine", None).await;
    assert_eq!(quarantined[0]["id"], "sb_nobodyknowsthis", "{quarantined}");
    assert_eq!(quarantined[0]["directory"], Value::Null, "{quarantined}");
    let (status, body) = second
        .call("DELETE", "/v1/quarantine/sb_nobodyknowsthis", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let stranger_state = docker_inspect(&stranger, "{{.State.Status}}");
    assert!(
        stranger_state.is_none(),
        "the removed container is still there: {stranger_state:?}"
    );
    let (status, _) = second
        .call("DELETE", "/v1/quarantine/sb_nobodyknowsthis", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    second.delete_sandbox(&kept).await;
    second.delete_sandbox(&lost).await;
    second.assert_no_leaks();
    drop(second);
    drop(first);
}

#[tokio::test]
async fn a_turn_cut_by_kill_9_is_marked_interrupted_and_the_thread_goes_on() {
    let model = ScriptedModel::start(&json!([
        { "text": "a b c d e f g h i j k l m n o p q r s t u v w x y z", "chunkDelayMs": 300 },
        { "text": "picked up again", "prompt": "go on" },
    ]));
    let mut first = Daemon::start_with(Options::default().with_model(&model)).await;
    let sandbox_id = first.create_sandbox(json!({ "agent": "test" })).await;
    let (status, started) = first
        .call(
            "POST",
            "/v1/chat/test",
            Some(json!({ "sandboxId": sandbox_id, "mode": "background",
                         "messages": [user_message("tell me the alphabet")] })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let thread_id = started["threadId"].as_str().expect("threadId").to_owned();
    // Kill it once some of the answer is out (and so persisted).
    streaming_began(&first, &sandbox_id, &thread_id, "c d").await;
    first.kill();

    let second = Daemon::start_with(again(&first, &model)).await;
    let t = second.thread(&sandbox_id, &thread_id).await;
    assert_eq!(t["status"], "error", "{t}");
    assert_eq!(t["error"], "interrupted by a daemon restart");
    let messages = t["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["role"], "user");
    assert!(
        messages[1]["parts"].to_string().contains("a b c"),
        "the partial answer was not kept: {t}"
    );
    assert!(
        !messages[1]["parts"].to_string().contains("\"streaming\""),
        "the interrupted answer still says it is streaming: {t}"
    );
    let (_, events) = second
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox_id}/threads/{thread_id}/events"),
            None,
        )
        .await;
    let last = events["events"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .expect("events");
    assert_eq!(last["payload"]["sessionUpdate"], "session_info_update");
    assert_eq!(last["payload"]["status"], "error");

    let (status, _, chunks) = second
        .chat(
            "test",
            json!({ "sandboxId": sandbox_id, "threadId": thread_id,
                    "messages": [user_message("go on")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "picked up again");
    let last = model.requests().last().cloned().expect("a request");
    assert!(
        last["messages"]
            .to_string()
            .contains("tell me the alphabet"),
        "the new turn did not resume the session: {last}"
    );
    assert_eq!(
        second.thread(&sandbox_id, &thread_id).await["status"],
        "completed"
    );
    second.delete_sandbox(&sandbox_id).await;
    second.assert_no_leaks();
    drop(second);
    drop(first);
}

#[tokio::test]
async fn sigterm_lets_a_running_turn_finish_and_its_client_sees_the_end() {
    let model = ScriptedModel::start(&json!([
        { "text": "one two three four five", "chunkDelayMs": 300 },
    ]));
    let mut d = Daemon::start_with(Options::default().with_model(&model)).await;
    let sandbox_id = d.create_sandbox(json!({ "agent": "test" })).await;
    let (thread_id, reading) = streamed_turn(&d, &sandbox_id, "count").await;
    streaming_began(&d, &sandbox_id, &thread_id, "one").await;
    assert!(d.terminate().success());
    let body = reading.await.expect("joined");
    let chunks = sandboxd_e2e::sse_chunks(&body);
    assert_eq!(text_of(&chunks), "one two three four five", "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert!(
        d.log_text().contains("waiting up to"),
        "the shutdown did not wait for the turn"
    );
}

#[tokio::test]
async fn sigterm_stops_a_turn_that_outlasts_the_grace_and_tells_its_client() {
    let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    let model = ScriptedModel::start(&json!([
        { "text": words.join(" "), "chunkDelayMs": 500 },
        { "text": "after the stop", "prompt": "go on" },
    ]));
    let mut first = Daemon::start_with(Options::default().with_model(&model)).await;
    let sandbox_id = first.create_sandbox(json!({ "agent": "test" })).await;
    let (thread_id, reading) = streamed_turn(&first, &sandbox_id, "talk long").await;
    streaming_began(&first, &sandbox_id, &thread_id, "w1").await;
    assert!(first.terminate().success());

    let body = reading.await.expect("joined");
    let chunks = sandboxd_e2e::sse_chunks(&body);
    let error = chunks
        .iter()
        .find(|c| c["type"] == "error")
        .unwrap_or_else(|| panic!("no error chunk: {body}"));
    assert!(
        error["errorText"]
            .as_str()
            .is_some_and(|e| e.contains("shutting down")),
        "{error}"
    );
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let partial = text_of(&chunks);
    assert!(
        partial.starts_with("w0 w1") && !partial.contains("w59"),
        "{partial}"
    );

    let second = Daemon::start_with(again(&first, &model)).await;
    let t = second.thread(&sandbox_id, &thread_id).await;
    assert_eq!(t["status"], "error", "{t}");
    assert!(
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("shutting down")),
        "{t}"
    );
    let (status, _, chunks) = second
        .chat(
            "test",
            json!({ "sandboxId": sandbox_id, "threadId": thread_id,
                    "messages": [user_message("go on")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "after the stop");
    second.delete_sandbox(&sandbox_id).await;
    drop(second);
    drop(first);
}

#[tokio::test]
async fn a_session_that_was_never_recorded_is_started_instead_of_resumed() {
    // A turn cut off before the CLI wrote its session (say, by a restart) leaves a
    // thread whose session does not exist; the next turn must not fail on it.
    let model = ScriptedModel::start(&json!([
        { "text": "first", "prompt": "one" },
        { "text": "fresh again", "prompt": "two" },
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let sandbox_id = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, headers, chunks) = d
        .chat(
            "test",
            json!({ "sandboxId": sandbox_id, "messages": [user_message("one")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "first");
    let thread_id = headers["x-thread-id"].to_str().expect("thread").to_owned();
    let out = d
        .exec(
            &sandbox_id,
            "rm -rf /home/user/.claude/projects && echo gone",
        )
        .await;
    assert_eq!(out["stdout"], "gone\n", "{out}");
    let (status, _, chunks) = d
        .chat(
            "test",
            json!({ "sandboxId": sandbox_id, "threadId": thread_id,
                    "messages": [user_message("two")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&chunks), "fresh again", "{chunks:?}");
    assert_eq!(
        d.thread(&sandbox_id, &thread_id).await["status"],
        "completed"
    );
    d.delete_sandbox(&sandbox_id).await;
    d.assert_no_leaks();
}

//! A client (any holder of the API key, through E2B's pause) freezes a sandbox while
//! relay work runs in it. What was in flight must end at once with an error that says
//! why, not hang until someone resumes the sandbox and then fail as a protocol breach;
//! a turn cancelled while its sandbox is frozen must stop at once too.

use std::time::{Duration, Instant};

use sandboxd_e2e::{free_port, user_message, Daemon, Options, ScriptedModel, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn work_in_flight_when_a_client_pauses_ends_at_once_and_says_why() {
    // A slow reply, so the turn is still streaming when the sandbox is frozen.
    let model = ScriptedModel::start(&json!([
        { "prompt": "count", "text": "one two three four five six seven eight nine ten",
          "chunkDelayMs": 1000 },
        { "prompt": "again", "text": "after the pause" }
    ]));
    let port = free_port();
    let mut options = Options::default().with_model(&model);
    options
        .args
        .extend(["--e2b-listen".to_owned(), format!("127.0.0.1:{port}")]);
    let d = Daemon::start_with(options).await;
    let http = reqwest::Client::new();
    let power = |id: &str, action: &str| {
        http.post(format!("http://127.0.0.1:{port}/sandboxes/{id}/{action}"))
            .header("X-API-Key", &d.key)
            .json(&json!({}))
            .send()
    };

    // An exec in flight: 6 s of timeout, a command that would run for 60.
    let sandbox = d.create_sandbox(json!({ "agent": "test" })).await;
    let exec = d
        .request("POST", &format!("/v1/sandboxes/{sandbox}/exec"))
        .json(&json!({ "command": "sleep 60", "timeoutMs": 6000 }))
        .send();
    let exec = tokio::spawn(exec);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let paused_at = Instant::now();
    let res = power(&sandbox, "pause").await.expect("pause");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = tokio::time::timeout(Duration::from_secs(60), exec)
        .await
        .expect("the exec did not end within 60 s of the pause")
        .expect("join")
        .expect("exec");
    let answered = paused_at.elapsed();
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    eprintln!("an exec in flight at a pause: {status} after {answered:?}: {body}");
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("paused"), "{body}");
    let res = power(&sandbox, "resume").await.expect("resume");
    assert!(res.status().is_success(), "{}", res.status());
    // The command it ran is gone once the sandbox runs again.
    sandboxd_e2e::eventually(
        Duration::from_secs(30),
        "the paused exec's command ends",
        || {
            let d = &d;
            let sandbox = &sandbox;
            async move {
                let out = d.exec(sandbox, "pgrep -x sleep || true").await;
                out["stdout"] == ""
            }
        },
    )
    .await;

    // A turn in flight, cancelled while its sandbox is frozen.
    let res = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "sandboxId": sandbox, "messages": [user_message("count")] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::OK);
    let (_, thread) = sandboxd_e2e::chat_ids(&res);
    let stream = tokio::spawn(res.text());
    // Frozen once the reply is streaming (the CLI asked the model), not at a guess:
    // under load the CLI may take seconds to start.
    sandboxd_e2e::eventually(Duration::from_secs(60), "the turn asked the model", || {
        let asked = !model.requests().is_empty();
        async move { asked }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let res = power(&sandbox, "pause").await.expect("pause");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let asked = Instant::now();
    let (status, cancelled) = d
        .call("DELETE", &format!("/v1/chat/test/{sandbox}/stream"), None)
        .await;
    let answered = asked.elapsed();
    eprintln!("a cancel on a paused sandbox: {status} after {answered:?}: {cancelled}");
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let body = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("the stream did not end after the cancel")
        .expect("join")
        .expect("body");
    assert!(body.contains("\"abort\""), "{body}");
    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "cancelled", "{t}");
    // Resumed, the thread takes its next turn.
    let res = power(&sandbox, "resume").await.expect("resume");
    assert!(res.status().is_success(), "{}", res.status());
    let (status, _, next) = d
        .chat(
            "test",
            json!({ "sandboxId": sandbox, "threadId": thread,
                    "messages": [user_message("again")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sandboxd_e2e::text_of(&next), "after the pause");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

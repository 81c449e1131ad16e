//! Sandbox expiry: `timeoutMs` ends a sandbox after that long without activity; a
//! running exec or turn is activity, and expiry never interrupts a turn.

use std::time::{Duration, Instant};

use sandboxd_e2e::{docker_inspect, user_message, Daemon, Options, ScriptedModel, StatusCode};
use serde_json::{json, Value};

/// The sandbox as the list shows it (listing is not activity for a sandbox).
async fn listed(d: &Daemon, id: &str) -> Value {
    let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
    list.as_array()
        .and_then(|l| l.iter().find(|s| s["id"] == id).cloned())
        .expect("listed")
}

async fn wait_expired(d: &Daemon, id: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if listed(d, id).await["status"] == "expired" {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{id} did not expire within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn idle_sandboxes_expire_and_running_work_keeps_them_alive() {
    let model = ScriptedModel::start(&json!([
        { "text": "one two three four five six seven eight nine ten", "chunkDelayMs": 400 }
    ]));
    let d = Daemon::start_with(
        Options::default()
            .agent("brief", json!({ "sandbox": { "timeoutMs": 1500 } }))
            .with_model(&model),
    )
    .await;

    // Idle: expires, its container goes, GET says why, exec is refused, delete works.
    let idle = d
        .create_sandbox(json!({ "agent": "test", "timeoutMs": 1500 }))
        .await;
    wait_expired(&d, &idle, Duration::from_secs(15)).await;
    let (_, detail) = d.call("GET", &format!("/v1/sandboxes/{idle}"), None).await;
    assert_eq!(detail["status"], "expired");
    assert!(
        detail["error"]
            .as_str()
            .is_some_and(|e| e.contains("1500 ms without activity")),
        "{detail}"
    );
    let name = idle.replacen("sb_", "sbx-", 1);
    sandboxd_e2e::eventually(
        Duration::from_secs(10),
        "the expired container to go",
        || {
            let name = name.clone();
            async move { docker_inspect(&name, "{{.Id}}").is_none() }
        },
    )
    .await;
    let (status, _) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{idle}/exec"),
            Some(json!({"command": "true"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    d.delete_sandbox(&idle).await;

    // A running exec longer than the timeout is activity.
    let working = d.create_sandbox(json!({ "agent": "brief" })).await;
    let out = d.exec(&working, "sleep 4; echo finished").await;
    assert_eq!(out["stdout"], "finished\n");
    assert_eq!(listed(&d, &working).await["status"], "active");
    wait_expired(&d, &working, Duration::from_secs(15)).await;
    d.delete_sandbox(&working).await;

    // A turn longer than the timeout is never interrupted.
    let chatting = d.create_sandbox(json!({ "agent": "brief" })).await;
    let (status, _, chunks) = d
        .chat(
            "brief",
            json!({ "sandboxId": chatting, "messages": [user_message("count")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = chunks.iter().filter_map(|c| c["type"].as_str()).collect();
    assert!(
        !types.contains(&"error") && !types.contains(&"abort"),
        "{types:?}"
    );
    let text: String = chunks
        .iter()
        .filter(|c| c["type"] == "text-delta")
        .filter_map(|c| c["delta"].as_str())
        .collect();
    assert!(text.contains("ten"), "{text}");
    wait_expired(&d, &chatting, Duration::from_secs(15)).await;
    d.delete_sandbox(&chatting).await;
    d.assert_no_leaks();
}

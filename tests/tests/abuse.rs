//! Abuse, each case leaving the daemon responsive and bounded: 1 GiB on stdout, a
//! 100 MiB body, malformed JSON on every endpoint, 200 concurrent execs across 10
//! sandboxes, and 100 SSE streams that are never read. Figures are printed.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sandboxd_e2e::{rss_kib, user_message, Daemon, Options, ScriptedModel, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_gigabyte_of_stdout_and_a_huge_body_cost_the_daemon_nothing() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let before = rss_kib(d.pid());
    let started = Instant::now();
    let out = d.exec(&id, "head -c 1G /dev/zero; echo done >&2").await;
    let elapsed = started.elapsed();
    let after = rss_kib(d.pid());
    assert_eq!(out["stdoutTruncated"], true);
    assert_eq!(out["stdout"].as_str().map(str::len), Some(8 * 1024 * 1024));
    assert_eq!(out["stderr"], "done\n");
    println!("1 GiB stdout: {elapsed:?}; daemon RSS {before} KiB -> {after} KiB");
    assert!(
        after < before + 64 * 1024,
        "daemon RSS grew from {before} to {after} KiB"
    );

    // 100 MiB over the limit: refused from the header, not read.
    let body = vec![b'x'; 100 * 1024 * 1024];
    let started = Instant::now();
    let res = d
        .request("POST", &format!("/v1/sandboxes/{id}/files"))
        .body(body)
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    println!("100 MiB body refused in {:?}", started.elapsed());
    assert_eq!(d.exec(&id, "echo alive").await["stdout"], "alive\n");
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400_on_every_endpoint() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let posts = [
        "/v1/sandboxes".to_owned(),
        format!("/v1/sandboxes/{id}/exec"),
        format!("/v1/sandboxes/{id}/files"),
        format!("/v1/sandboxes/{id}/files/mkdir"),
        format!("/v1/sandboxes/{id}/files/rename"),
        format!("/v1/sandboxes/{id}/git/clone"),
        format!("/v1/sandboxes/{id}/threads"),
        "/v1/chat/test".to_owned(),
        "/v1/tokens".to_owned(),
    ];
    for path in &posts {
        for body in ["{", "[1, 2]", "\"text\"", "{\"messages\": 5, \"command\": 5, \"files\": 5, \"path\": 5, \"url\": 5, \"agent\": 5, \"name\": 5, \"oldPath\": 5, \"agents\": 5}"] {
            let res = d.request("POST", path).body(body).send().await.expect("sent");
            let status = res.status();
            let json: serde_json::Value = res.json().await.expect("JSON error");
            assert_eq!(status, StatusCode::BAD_REQUEST, "POST {path} {body}: {json}");
            // POST /v1/tokens answers `{"error": message, "code", "message"}` (what
            // `@21st-sdk/nextjs` shows); every other route `{"error": {code, message}}`.
            let message = json["error"]["message"]
                .as_str()
                .or_else(|| json["message"].as_str());
            assert!(message.is_some_and(|m| !m.is_empty()), "{json}");
        }
    }
    for path in [
        format!("/v1/sandboxes/{id}/files?path=x&depth=nope"),
        format!("/v1/sandboxes/{id}/files/list?path=x&depth=-1"),
        format!("/v1/sandboxes/{id}/files/info"),
    ] {
        let (status, json) = d.call("GET", &path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "GET {path}: {json}");
    }
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn two_hundred_concurrent_execs_across_ten_sandboxes_are_all_answered() {
    let d = Daemon::start().await;
    let ids = join_all((0..10).map(|_| d.create_sandbox(json!({ "agent": "test" })))).await;
    let started = Instant::now();
    let calls = (0..200).map(|i| {
        let id = ids[i % ids.len()].clone();
        let d = &d;
        async move {
            let t = Instant::now();
            let out = d
                .exec(&id, &format!("echo {i}; echo $(({i} * 2)) >&2"))
                .await;
            (i, out, t.elapsed())
        }
    });
    let results = join_all(calls).await;
    let total = started.elapsed();
    let mut latencies: Vec<Duration> = Vec::new();
    for (i, out, latency) in results {
        assert_eq!(out["stdout"], format!("{i}\n"));
        assert_eq!(out["stderr"], format!("{}\n", i * 2));
        assert_eq!(out["exitCode"], 0);
        latencies.push(latency);
    }
    latencies.sort();
    println!(
        "200 concurrent execs over 10 sandboxes: {total:?} total, p50 {:?}, p99 {:?}, daemon RSS {} KiB",
        latencies[100],
        latencies[197],
        rss_kib(d.pid())
    );
    for id in &ids {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_hundred_unread_streams_keep_the_daemon_bounded() {
    let text: String = (0..400).map(|i| format!("word{i} ")).collect();
    let model = ScriptedModel::start(&json!([{ "text": text, "chunkDelayMs": 5 }]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let res = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "messages": [user_message("talk a lot")], "mode": "background" }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: serde_json::Value = res.json().await.expect("json");
    let sandbox = accepted["sandboxId"].as_str().expect("sandbox").to_owned();
    let thread = accepted["threadId"].as_str().expect("thread").to_owned();
    let before = rss_kib(d.pid());
    // 100 followers that never read their bodies.
    let mut held = Vec::new();
    for _ in 0..100 {
        let res = d
            .request("GET", &format!("/v1/chat/test/{sandbox}/stream"))
            .send()
            .await
            .expect("stream");
        held.push(res);
    }
    let t = d.settled_thread(&sandbox, &thread).await;
    assert_eq!(t["status"], "completed");
    let after = rss_kib(d.pid());
    println!("100 unread streams: daemon RSS {before} KiB -> {after} KiB");
    assert!(
        after < before + 64 * 1024,
        "daemon RSS grew from {before} to {after} KiB"
    );
    // Still responsive with the streams open.
    assert_eq!(d.exec(&sandbox, "echo ok").await["stdout"], "ok\n");
    drop(held);
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}
